# Hoithi: `make run` starts everything on this machine, `make test` runs the suite.
# Every variable below can be overridden from the environment or the command line.

PYTHON       ?= python3
VENV         ?= .venv
BIN          := $(VENV)/bin
LOCKS        ?= requirements/app.lock requirements/dev.lock
KEYS_DIR     ?= var/keys
MAIL_DIR     ?= var/mail
GATEWAY_PORT ?= 8080
SERVICES     ?= registration quiz scoring notify
PYTEST_ARGS  ?=
BENCH_ARGS   ?=
COMPOSE_FILE ?= docker-compose.yml
LINT_PATHS   ?= services tests deploy web/build.py

.PHONY: venv services run test lint bench chaos clean distclean

venv: $(VENV)/.installed

# A stamp, so the install runs again only when a lock file changes.
$(VENV)/.installed: $(LOCKS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null && \
	    $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "'$(PYTHON) -m venv' failed: install your distribution's venv package (Debian: python3-venv)" >&2; exit 1; \
	  fi; }
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes $(addprefix -r ,$(LOCKS))
	@touch $@

services:
	@bash scripts/ensure-services.sh

run: venv services
	$(BIN)/python -m services.core.auth keygen $(KEYS_DIR)
	$(BIN)/python -m services.core.migrate --create-database $(SERVICES)
	$(BIN)/python -m services.registration seed-demo
	$(BIN)/python -m services.quiz seed-demo
	$(BIN)/python web/build.py
	GATEWAY_PORT=$(GATEWAY_PORT) $(BIN)/python deploy/nginx/render.py
	@echo
	@echo "  Hoithi:  http://127.0.0.1:$(GATEWAY_PORT)   (API under /api, organiser admin/admin)"
	@echo "  Mail:    $(MAIL_DIR)/   (every message the system sends lands here)"
	@echo "  Ctrl-C stops everything."
	@echo
	exec $(BIN)/honcho start -f Procfile

test: venv services
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec $(COMPOSE_FILE)
	$(BIN)/python web/build.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check $(wildcard $(LINT_PATHS))

# The deadline-peak benchmark (loadtests/bench.py, about 10 minutes on 2 cores): starts
# its own stack (database hoithi_bench, Redis db 8), measures, writes docs/benchmarks.md.
# Its load generator is wrk, installed here like the servers when missing.
bench: venv services
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing wrk"; \
	    apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null; \
	  else \
	    echo "wrk is missing: install it (Debian: sudo apt-get install wrk)" >&2; exit 1; \
	  fi; }
	$(BIN)/python loadtests/bench.py $(BENCH_ARGS)

# The fault suite (tests/chaos, about 15 minutes on 2 cores): its own PostgreSQL, Redis and
# RabbitMQ on private ports, the whole stack, a participant load through the gateway, and
# kill -9 of each server and each kind of process in turn; writes docs/reliability.md.
# `make test` runs its short version (two faults). CHAOS_FAULTS=redis,postgres picks some.
chaos: venv services
	CHAOS_FULL=1 $(BIN)/python -m pytest tests/chaos/test_fault_suite.py -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache .hypothesis tests/e2e/artifacts web/dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Also the virtualenv: the next target rebuilds it from the lock files.
distclean: clean
	rm -rf $(VENV)
