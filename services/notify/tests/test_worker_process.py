"""`python -m services.notify.worker` as a real process: refuses to start with a broken
template, and otherwise consumes from RabbitMQ, mails, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from services.core.bus import Bus
from services.notify.settings import DEFAULT_TEMPLATES_DIR
from services.notify.tests.support import SmtpServer, participant_registered, winners_announced

REPO = Path(__file__).resolve().parents[3]


async def start_worker(env: dict[str, str], smtp: SmtpServer, **extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.notify.worker",
        cwd=REPO,
        env={**os.environ, **env, "SMTP_PORT": str(smtp.port), "BUS_RETRY_DELAYS_S": "[1]", **extra},
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_broken_template_stops_the_worker_at_start_up(
    test_env: dict[str, str], smtp: SmtpServer, tmp_path: Path
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, broken)
    (broken / "en" / "winner.html").write_text("<p>{{ prize | no_such_filter }}</p>", encoding="utf-8")

    process = await start_worker(test_env, smtp, TEMPLATES_DIR=str(broken))
    _, stderr = await asyncio.wait_for(process.communicate(), 20)

    assert process.returncode != 0
    assert "TemplateCatalogError" in stderr.decode() and "en/winner.html" in stderr.decode()


async def test_the_worker_mails_winners_and_stops_on_sigterm(
    test_env: dict[str, str],
    smtp: SmtpServer,
    pool: asyncpg.Pool,
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    publisher = await bus_factory("notify", retry_delays_s=(1,))  # same queue names; deleted afterwards
    await publisher.declare_consumer_queues(["participant.registered", "staff.changed", "winners.announced"])
    winner = uuid.uuid4()
    process = await start_worker(test_env, smtp)
    try:
        await publisher.publish(participant_registered(winner, "Vũ Thị Mai", "mai@example.vn"))
        await publisher.publish(winners_announced([(winner, "Vũ Thị Mai", 1, "Giải Nhất")]))
        with contextlib.suppress(TimeoutError):  # the assertions below show the worker's log
            await asyncio.wait_for(smtp.inbox.arrived.wait(), 20)
        await asyncio.sleep(0.3)  # room for a duplicate, were there one
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 15)

    assert [r.recipient for r in smtp.inbox.received] == ["mai@example.vn"], stderr.decode()[-3000:]
    assert await pool.fetchval("SELECT status FROM deliveries") == "sent"
    assert process.returncode == 0, stderr.decode()[-3000:]
