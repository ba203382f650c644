"""`python -m services.notify.worker` as a real process: refuses to start with a broken
template, and otherwise consumes from RabbitMQ, mails and texts, stops cleanly on SIGTERM,
and — killed with SIGKILL in the middle of a batch and started again — misses no winner
and doubles none."""

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
from services.core.events import SUBSCRIPTIONS
from services.notify.settings import DEFAULT_TEMPLATES_DIR
from services.notify.tests.support import (
    FakeSmsProvider,
    Gate,
    SmtpServer,
    e164,
    participant_registered,
    phone_of,
    wait_for,
    winners_announced,
)

REPO = Path(__file__).resolve().parents[3]


async def start_worker(
    env: dict[str, str], smtp: SmtpServer, mail_dir: Path, **extra: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.notify.worker",
        cwd=REPO,
        env={
            **os.environ, **env, "SMTP_PORT": str(smtp.port), "BUS_RETRY_DELAYS_S": "[1]",
            "DEV_MAIL_DIR": str(mail_dir), "SMTP_RATE_PER_S": "0", "SMS_RATE_PER_S": "0", **extra,
        },
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_broken_template_stops_the_worker_at_start_up(
    test_env: dict[str, str], smtp: SmtpServer, tmp_path: Path
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, broken)
    (broken / "en" / "winner.html").write_text("<p>{{ prize | no_such_filter }}</p>", encoding="utf-8")

    process = await start_worker(test_env, smtp, tmp_path / "mail", TEMPLATES_DIR=str(broken))
    _, stderr = await asyncio.wait_for(process.communicate(), 20)

    assert process.returncode != 0
    assert "TemplateCatalogError" in stderr.decode() and "en/winner.html" in stderr.decode()


async def test_the_worker_mails_and_texts_winners_and_stops_on_sigterm(
    test_env: dict[str, str],
    smtp: SmtpServer,
    pool: asyncpg.Pool,
    tmp_path: Path,
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    publisher = await bus_factory("notify", retry_delays_s=(1,))  # same queue names; deleted afterwards
    await publisher.declare_consumer_queues(SUBSCRIPTIONS["notify"])
    winner = uuid.uuid4()
    mail_dir = tmp_path / "mail"
    process = await start_worker(test_env, smtp, mail_dir)  # SMS through the console provider
    try:
        await publisher.publish(participant_registered(winner, "Vũ Thị Mai", "mai@example.vn"))
        await publisher.publish(winners_announced([(winner, "Vũ Thị Mai", 1, "Giải Nhất")]))
        with contextlib.suppress(AssertionError):  # the assertions below show the worker's log
            await wait_for(lambda: len(smtp.inbox.received) >= 2 and any(mail_dir.glob("*.sms.txt")), timeout_s=20)
        await asyncio.sleep(0.3)  # room for a duplicate, were there one
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 15)

    log = stderr.decode()[-3000:]
    subjects = sorted(str(r.message["Subject"]) for r in smtp.inbox.to("mai@example.vn"))
    assert [s.split()[0] for s in subjects] == ["Chúc", "Xác"], log  # the prize, and the sign-up confirmation
    (sms_file,) = mail_dir.glob("*.sms.txt")
    text = sms_file.read_text(encoding="utf-8")
    assert f"To: {e164(phone_of(winner))}" in text and "Chuc mung Vu Thi Mai dat Giai Nhat" in text
    statuses = await pool.fetch("SELECT channel, template, status FROM deliveries ORDER BY channel, template")
    assert [tuple(r) for r in statuses] == [
        ("email", "signup", "sent"), ("email", "winner", "sent"), ("sms", "winner", "sent")
    ]
    assert process.returncode == 0, log


async def test_a_worker_killed_mid_batch_and_restarted_misses_no_winner_and_doubles_none(
    test_env: dict[str, str],
    smtp: SmtpServer,
    sms: FakeSmsProvider,
    pool: asyncpg.Pool,
    tmp_path: Path,
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    publisher = await bus_factory("notify", retry_delays_s=(1,))
    await publisher.declare_consumer_queues(SUBSCRIPTIONS["notify"])
    people = [(uuid.uuid4(), f"Người đoạt giải {n}") for n in range(1, 9)]
    for person, name in people:  # contacts first, without email: no sign-up mail muddies the count
        await publisher.publish(participant_registered(person, name, None))
    await wait_for_count(pool, "SELECT count(*) FROM contacts", len(people), test_env, smtp, tmp_path)
    await pool.execute("UPDATE contacts SET email = 'w' || substr(person_id::text, 1, 8) || '@example.vn'")
    addresses = {p: str(await pool.fetchval("SELECT email FROM contacts WHERE person_id = $1", p)) for p, _ in people}

    # After the first message is accepted (email or SMS), the servers hold every other one:
    # the worker is then waiting for an answer when it is killed, with exactly one message out.
    gate = Gate(after=1)
    smtp.inbox.gate = sms.gate = gate
    gate.arm()
    # One send at a time, so "the first accepted" is also "the first committed" before the next starts.
    # The sweeper leaves fresh rows to the handler (min age 60 s), so nothing else sends meanwhile.
    worker_env = {"SMS_PROVIDER": "http", "SMS_HTTP_URL": sms.url, "SEND_CONCURRENCY": "1", "SMS_HTTP_TIMEOUT_S": "30",
                  "SMTP_TIMEOUT_S": "30", "SWEEP_INTERVAL_S": "0.5"}
    first = await start_worker(test_env, smtp, tmp_path / "mail", **worker_env, SWEEP_MIN_AGE_S="60")
    announced = winners_announced([(p, name, rank, "Giải Khuyến khích") for rank, (p, name) in enumerate(people, 1)])
    await publisher.publish(announced)
    try:
        await wait_for(lambda: gate.accepted == 1 and gate.held == 1, timeout_s=20, what="one sent, one held")
    finally:
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.communicate(), 15)
    assert first.returncode == -signal.SIGKILL
    gate.release()  # the held message is answered "try again" to a dead worker: not delivered

    second = await start_worker(test_env, smtp, tmp_path / "mail", **worker_env, SWEEP_MIN_AGE_S="0")
    try:
        await wait_for(
            lambda: len(smtp.inbox.received) + len(sms.accepted) >= 2 * len(people), timeout_s=30, what="all sent"
        )
        await asyncio.sleep(1)  # room for a duplicate, were there one
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(second.communicate(), 15)

    log = stderr.decode()[-3000:]
    assert sorted(r.recipient for r in smtp.inbox.received) == sorted(addresses.values()), log
    assert sorted(r.to for r in sms.accepted) == sorted(e164(phone_of(p)) for p, _ in people), log
    rows = await pool.fetch("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    assert {r["status"]: r["n"] for r in rows} == {"sent": 2 * len(people)}


async def wait_for_count(
    pool: asyncpg.Pool, query: str, expected: int, env: dict[str, str], smtp: SmtpServer, tmp_path: Path
) -> None:
    """Run a worker until `query` counts `expected` (here: until the contacts are in)."""
    process = await start_worker(env, smtp, tmp_path / "mail")
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while await pool.fetchval(query) != expected:
            assert asyncio.get_running_loop().time() < deadline, "contacts did not arrive"
            await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 15)
