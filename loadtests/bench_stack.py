"""The Hoithi stack for `make bench`: every Procfile process started the way `make run`
starts it (the same commands, the same gunicorn and nginx configs), but on free ports,
in its own database, Redis database and bus prefix, with production-like settings
(LOG_LEVEL=WARNING, no access logs, gunicorn workers chosen for the machine).

Unlike honcho, each process is started here directly (`sh -c <Procfile command>`, each
in its own process group), so that the benchmark knows every pid (for RSS, CPU and the
profiler), can add or remove gunicorn workers (TTIN/TTOU) and restart one process with
other settings. The fault suite (tests/chaos) uses the same stack on private servers: it
kills a process (SIGKILL to its group) or one gunicorn worker, and starts it again.
Localhost only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
from redis import Redis

from services.core.auth import generate_keypair
from services.core.db import create_database_if_missing
from services.core.private_servers import kill_process_group
from services.core.testing import delete_bus as delete_stack_bus
from services.core.testing import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
SERVICES = ("registration", "quiz", "scoring", "notify")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
QUESTIONS_CSV = ROOT / "services" / "quiz" / "seed" / "questions.csv"
ADMIN = ("admin", "admin")  # the development organiser of `seed-demo` (APP_ENV=test)


def refuse_remote(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"bench: {url} is not on this machine; the benchmark only targets 127.0.0.1")


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """name → shell command, as honcho reads it."""
    entries: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        entries[name.strip()] = command.strip()
    return entries


@dataclass
class Process:
    name: str
    command: str
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    cwd: Path = ROOT

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            ["/bin/sh", "-c", self.command], cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout_s: float = 20) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        # Its own process group: the gunicorn master and its workers, nginx and its workers.
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """A crash: SIGKILL to its whole group, then wait until none of it is left."""
        if self.popen is not None:
            kill_process_group(self.popen)


@dataclass
class Stack:
    base_url: str
    database_url: str
    redis_url: str
    amqp_url: str
    bus_prefix: str
    workdir: Path
    env: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    def start(self, names: list[str] | None = None) -> None:
        for name in names or list(self.processes):
            self.processes[name].start()

    def stop(self) -> None:
        # The gateway first (no new requests), then the APIs, then what drains behind them.
        order = ["gateway", *SERVICES, "quiz-clock", "relay-registration", "relay-quiz", "relay-scoring",
                 "scoring-worker", "notify-worker", "mail"]
        for name in order + [n for n in self.processes if n not in order]:
            if name in self.processes:
                self.processes[name].stop()

    def restart(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        process = self.processes[name]
        process.stop()
        if extra_env:
            process.env = {**process.env, **extra_env}
        process.start()

    def pid_of(self, name: str) -> int:
        return self.processes[name].pid

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def kill_gunicorn_worker(self, name: str) -> int:
        """SIGKILL one worker of an API (its master starts a new one); the pid killed."""
        workers = gunicorn_workers(self.pid_of(name))
        if not workers:
            raise RuntimeError(f"{name}: no gunicorn worker to kill")
        os.kill(workers[0], signal.SIGKILL)
        return workers[0]

    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if not p.alive()]

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self.processes[name].log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout_s: float = 90) -> None:
        wait_until_healthy(self.base_url, SERVICES, timeout_s=timeout_s, exited=self._why_dead)

    def _why_dead(self) -> str | None:
        if dead := self.dead():
            tails = "\n".join(f"--- {n}\n{self.log_tail(n)}" for n in dead)
            return f"stack processes exited early: {dead}\n{tails}"
        return None


async def _reset(database_url: str) -> None:
    await create_database_if_missing(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        for schema in SERVICES:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def delete_bus(amqp_url: str, prefix: str, retry_delays_s: tuple[int, ...]) -> None:
    """The run's queues and exchange: a benchmark leaves nothing behind on the broker."""
    await delete_stack_bus(amqp_url, prefix, SERVICES, retry_delays_s)


RETRY_DELAYS_S = (1, 5)


def prepare_stack(
    workdir: Path,
    *,
    database_url: str,
    redis_url: str,
    amqp_url: str,
    workers: Mapping[str, int],
    extra_env: Mapping[str, str] | None = None,
    processes: Iterable[str] | None = None,
) -> Stack:
    """Empty database schemas and Redis db, keys, migrations, the demo seed (units and
    the organiser), the gateway config; the processes (`processes`: those Procfile entries,
    by default all) are defined, not started."""
    for url in (database_url, redis_url, amqp_url):
        refuse_remote(url)
    if urlsplit(database_url).path.lstrip("/") in ("hoithi", "hoithi_test", "hoithi_e2e"):
        raise SystemExit("bench: use a database of its own; it is emptied at every run")
    asyncio.run(_reset(database_url))
    Redis.from_url(redis_url).flushdb()
    keys = workdir / "keys"
    generate_keypair(keys)
    taken: set[int] = set()
    ports = {name: free_port(taken) for name in ("GATEWAY", "SMTP", *(s.upper() for s in SERVICES))}
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "APP_ENV": "test",  # the demo seed (organiser admin/admin) is refused in production
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AMQP_URL": amqp_url,
        "BUS_PREFIX": prefix,
        "BUS_RETRY_DELAYS_S": "[" + ", ".join(map(str, RETRY_DELAYS_S)) + "]",
        # The surge round must turn final within the run: wait 2 s, not 2 min, for
        # submissions stamped in time but still in flight.
        "IN_FLIGHT_MARGIN_S": "2",
        "JWT_PRIVATE_KEY_FILE": str(keys / "signing.pem"),
        "JWT_PUBLIC_KEYS_DIR": str(keys / "public"),
        # The secret nginx adds to what it forwards: only then do the services believe its
        # arrival stamp (deadlines) and client address. One per stack.
        "GATEWAY_KEY": secrets.token_urlsafe(32),
        # Tokens made at the start must outlive the whole run.
        "ACCESS_TOKEN_TTL_S": "3600",
        "NGINX_PREFIX": str(workdir / "nginx"),
        "VAR_DIR": str(workdir / "var"),
        "DEV_MAIL_DIR": str(workdir / "mail"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(ports["SMTP"]),
        "GATEWAY_PORT": str(ports["GATEWAY"]),
        **{f"{s.upper()}_PORT": str(ports[s.upper()]) for s in SERVICES},
        **{f"{s.upper()}_WORKERS": str(workers.get(s, 1)) for s in SERVICES},
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['GATEWAY']}",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    python = str(BIN / "python")
    for args in (
        [python, "-m", "services.core.migrate", "--create-database", *SERVICES],
        [python, "-m", "services.registration", "seed-demo"],
        [python, "deploy/nginx/render.py"],
    ):
        subprocess.run(args, cwd=ROOT, env=env, check=True, timeout=120, capture_output=True)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        base_url=f"http://127.0.0.1:{ports['GATEWAY']}",
        database_url=database_url,
        redis_url=redis_url,
        amqp_url=amqp_url,
        bus_prefix=prefix,
        workdir=workdir,
        env=env,
    )
    wanted = set(processes) if processes is not None else None
    for name, command in procfile().items():
        if wanted is None or name in wanted:
            stack.processes[name] = Process(name, command, dict(env), logs / f"{name}.log")
    return stack


# --- the organiser's side, through the gateway -----------------------------------------

async def login_token(client: httpx.AsyncClient, login: str, password: str) -> str:
    response = await client.post("/api/auth/login", json={"login": login, "password": password})
    response.raise_for_status()
    return str(response.json()["access_token"])


async def create_contest(client: httpx.AsyncClient, token: str, slug: str, title: str) -> str:
    """A contest with the demo question bank."""
    auth = {"Authorization": f"Bearer {token}"}
    created = await client.post("/api/admin/contests", headers=auth, json={"slug": slug, "title": title})
    created.raise_for_status()
    contest_id = str(created.json()["id"])
    imported = await client.post(
        f"/api/admin/contests/{contest_id}/questions/import", headers=auth,
        files={"file": ("questions.csv", QUESTIONS_CSV.read_bytes(), "text/csv")},
    )
    imported.raise_for_status()
    return contest_id


async def create_round(
    client: httpx.AsyncClient, token: str, contest_id: str, number: int, *, opens_at: datetime,
    closes_at: datetime, time_limit_s: int, grace_s: int,
) -> str:
    """20 questions, a prediction question, six prizes (1 first, 2 second, 3 third)."""
    created = await client.post(
        f"/api/admin/contests/{contest_id}/rounds", headers={"Authorization": f"Bearer {token}"},
        json={
            "number": number, "title": f"Tuần {number}", "opens_at": opens_at.isoformat(),
            "closes_at": closes_at.isoformat(), "question_count": 20, "time_limit_s": time_limit_s,
            "grace_s": grace_s, "max_attempts": None,
            "prediction": {"text": "Theo bạn, sẽ có bao nhiêu người tham gia tuần thi này?", "target": "participants"},
            "prizes": [{"name": "Giải Nhất", "count": 1}, {"name": "Giải Nhì", "count": 2},
                       {"name": "Giải Ba", "count": 3}],
        },
    )
    created.raise_for_status()
    return str(created.json()["id"])


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for child in children(current):
            found.append(child)
            todo.append(child)
    return found


def gunicorn_workers(master_pid: int) -> list[int]:
    return children(master_pid)


def set_gunicorn_workers(master_pid: int, wanted: int, timeout_s: float = 30) -> int:
    """TTIN/TTOU the master until it has `wanted` workers that answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        have = len(gunicorn_workers(master_pid))
        if have == wanted:
            return have
        os.kill(master_pid, signal.SIGTTIN if have < wanted else signal.SIGTTOU)
        time.sleep(1.5)
    return len(gunicorn_workers(master_pid))
