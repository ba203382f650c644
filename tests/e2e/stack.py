"""The whole Hoithi stack started the way `make run` starts it (the Procfile under
honcho, nginx in front), but on free ports, its own database, Redis database and bus
prefix, so it never disturbs a stack a developer has running. Bounded in time: every
wait has a deadline and the stack is stopped when the tests end."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import asyncpg
from aiosmtpd.controller import Controller
from redis import Redis

from services.core.auth import generate_keypair
from services.core.db import create_database_if_missing
from services.core.testing import delete_bus, free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
SERVICES = ("registration", "quiz", "scoring", "notify")
# Everything in the Procfile but the development mail server: the test runs its own.
PROCESSES = (
    "gateway", *SERVICES, "quiz-clock", "scoring-worker", "notify-worker",
    "relay-registration", "relay-quiz", "relay-scoring",
)
E2E_DATABASE_URL = os.environ.get("E2E_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/hoithi_e2e")
E2E_REDIS_URL = os.environ.get("E2E_REDIS_URL", "redis://127.0.0.1:6379/10")
AMQP_URL = os.environ.get("E2E_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


class MailBox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


@dataclass
class Stack:
    base_url: str
    mailbox: MailBox
    workdir: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    smtp: Controller | None = None
    bus_prefix: str = field(default="")

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _run(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(args, cwd=ROOT, env=env, check=True, timeout=120, capture_output=True)


async def _reset_database() -> None:
    await create_database_if_missing(E2E_DATABASE_URL)
    conn = await asyncpg.connect(E2E_DATABASE_URL)
    try:
        for schema in SERVICES:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def _delete_queues(prefix: str) -> None:
    await delete_bus(AMQP_URL, prefix, SERVICES, (1, 2))  # BUS_RETRY_DELAYS_S below


def _nginx_prefix() -> str:
    """nginx started as root runs its workers as `nobody`, who must reach the prefix (its
    response cache lives there); pytest's own temporary folders are private (0700)."""
    prefix = Path(tempfile.mkdtemp(prefix="hoithi-nginx-"))
    prefix.chmod(0o755)
    return str(prefix)


def start_stack(workdir: Path, artifacts: Path) -> Stack:
    asyncio.run(_reset_database())
    Redis.from_url(E2E_REDIS_URL).flushdb()
    keys = workdir / "keys"
    generate_keypair(keys)
    mailbox = MailBox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    ports = {name: free_port() for name in ("GATEWAY", *(s.upper() for s in SERVICES))}
    prefix = f"e2e-{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "APP_ENV": "test",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": E2E_DATABASE_URL,
        "REDIS_URL": E2E_REDIS_URL,
        "AMQP_URL": AMQP_URL,
        "BUS_PREFIX": prefix,
        "BUS_RETRY_DELAYS_S": "[1, 2]",
        # How long quiz waits after the close for requests stamped in time but still in flight.
        "IN_FLIGHT_MARGIN_S": "2",
        "JWT_PRIVATE_KEY_FILE": str(keys / "signing.pem"),
        "JWT_PUBLIC_KEYS_DIR": str(keys / "public"),
        "GATEWAY_KEY": secrets.token_urlsafe(32),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST_KIB": "8192",
        "NGINX_PREFIX": _nginx_prefix(),
        "DEV_MAIL_DIR": str(workdir / "mail"),  # the console SMS provider writes here
        "VAR_DIR": str(workdir / "var"),
        "GATEWAY_PORT": str(ports["GATEWAY"]),
        **{f"{s.upper()}_PORT": str(ports[s.upper()]) for s in SERVICES},
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['GATEWAY']}",
        "PYTHONUNBUFFERED": "1",
    }
    python = str(BIN / "python")
    _run([python, "-m", "services.core.migrate", "--create-database", *SERVICES], env)
    _run([python, "-m", "services.registration", "seed-demo"], env)
    _run([python, "-m", "services.quiz", "seed-demo"], env)
    _run([python, "deploy/nginx/render.py"], env)
    artifacts.mkdir(parents=True, exist_ok=True)
    log_path = artifacts / "stack.log"
    stack = Stack(f"http://127.0.0.1:{ports['GATEWAY']}", mailbox, workdir, env, log_path, smtp=smtp, bus_prefix=prefix)
    stack.process = subprocess.Popen(
        [str(BIN / "honcho"), "start", "-f", "Procfile", *PROCESSES],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until_ready(stack, timeout_s=90)
    except BaseException:
        stop_stack(stack)
        raise
    return stack


def _wait_until_ready(stack: Stack, timeout_s: float) -> None:
    def exited() -> str | None:
        if stack.process is not None and stack.process.poll() is not None:
            return f"the stack exited early:\n{stack.log_tail()}"
        return None

    wait_until_healthy(stack.base_url, SERVICES, timeout_s=timeout_s, exited=exited, logs=stack.log_tail)


def stop_stack(stack: Stack) -> None:
    if stack.process is not None and stack.process.poll() is None:
        os.killpg(stack.process.pid, signal.SIGINT)
        try:
            stack.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait(timeout=10)
    if stack.smtp is not None:
        stack.smtp.stop()
    shutil.rmtree(stack.env["NGINX_PREFIX"], ignore_errors=True)
    try:
        asyncio.run(_delete_queues(stack.bus_prefix))
    except Exception as exc:
        print(f"queue cleanup failed: {exc!r}", file=sys.stderr)
