"""Settings shared by the four API processes' gunicorn configs.

Each `deploy/gunicorn/<service>.py` calls `configure(...)` and exposes its result as
module globals, which is how gunicorn reads a config file. Everything is read from the
environment when gunicorn starts:

    BIND_HOST                    127.0.0.1 (0.0.0.0 in containers)
    <SERVICE>_PORT               8001 registration, 8002 quiz, 8003 scoring, 8004 notify
    <SERVICE>_WORKERS            else WEB_WORKERS, else 1
    GUNICORN_TIMEOUT             30 s before a silent worker is killed
    GUNICORN_MAX_REQUESTS        0 (off): recycle a worker after this many requests
    GUNICORN_MAX_REQUESTS_JITTER 0
    LOG_LEVEL                    info
    VAR_DIR                      var: where run-time files go (metrics, control sockets)
    PROMETHEUS_MULTIPROC_DIR     $VAR_DIR/prometheus/<service>; one directory per service,
                                 emptied at start-up, so never share one between two
                                 services on the same machine
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def configure(service: str, default_port: int) -> dict[str, Any]:
    upper = service.upper()
    port = _int(f"{upper}_PORT", default_port)
    workers = _int(f"{upper}_WORKERS", _int("WEB_WORKERS", 1))

    var_dir = Path(os.environ.get("VAR_DIR") or ROOT / "var")
    metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or var_dir / "prometheus" / service).resolve()
    # Set here, in the master, before any worker imports prometheus_client: workers
    # inherit it and so write their metrics to files the /metrics endpoint aggregates.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    def on_starting(server: Any) -> None:
        # Files left by a previous run would be counted again: start empty.
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    settings: dict[str, Any] = {
        "proc_name": f"hoithi-{service}",
        "bind": [f"{os.environ.get('BIND_HOST') or '127.0.0.1'}:{port}"],
        "workers": workers,
        # uvicorn's worker, draining its keep-alive connections when it stops (draining.py).
        "worker_class": "deploy.gunicorn.draining.DrainingUvicornWorker",
        "timeout": _int("GUNICORN_TIMEOUT", 30),
        "graceful_timeout": 20,
        # Longer than the gateway's upstream keepalive_timeout (60 s), so that nginx,
        # not the service, closes idle connections and never reuses a closing one.
        "keepalive": 75,
        # uvicorn would take the client address from X-Forwarded-For of any caller on a
        # trusted address (every local process, every pod with "*"); services believe
        # the gateway's headers only with its key instead (services/core/gateway.py).
        "forwarded_allow_ips": "",
        "max_requests": _int("GUNICORN_MAX_REQUESTS", 0),
        "max_requests_jitter": _int("GUNICORN_MAX_REQUESTS_JITTER", 0),
        # Requests are logged by the service itself, with their request id.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": (os.environ.get("LOG_LEVEL") or "info").lower(),
        "raw_env": [f"PROMETHEUS_MULTIPROC_DIR={metrics_dir}"],
        "on_starting": on_starting,
        "child_exit": child_exit,
    }
    # gunicorn's control socket (for `gunicornc`) defaults to one path per user, which
    # four APIs on one machine would fight over: give each its own, beside the others.
    control_socket = var_dir / "run" / f"gunicorn-{service}.ctl"
    if len(str(control_socket)) < 100:  # the length limit of a Unix socket path
        control_socket.parent.mkdir(parents=True, exist_ok=True)
        settings["control_socket"] = str(control_socket)
    else:
        settings["control_socket_disable"] = True
    if Path("/dev/shm").is_dir():
        # Worker heartbeats on tmpfs: a slow container disk must not make gunicorn
        # think a busy worker is dead.
        settings["worker_tmp_dir"] = "/dev/shm"
    return settings
