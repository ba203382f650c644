"""Benchmark of notify (not a test): `python loadtests/bench_notify.py [--winners N]`.

Localhost only and bounded:
1. messages per second through the SMTP path (render the winner template, build the
   MIME message, send with aiosmtplib) to a local aiosmtpd server running in its own
   thread, one send at a time and eight at a time;
2. the time to notify N winners (default 1,000) end to end through the
   `winners.announced` handler: plan in PostgreSQL, then one email (local aiosmtpd) and
   one SMS (console provider, files in a temporary folder) per winner, each send in its
   own transaction holding its row, the outcome committed.

Provider rate limits are off here (they would measure themselves: at SMS_RATE_PER_S=10,
1,000 SMS take 100 s whatever the code does). Uses its own database (BENCH_DATABASE_URL,
default `hoithi_bench` on the local PostgreSQL; its `notify` schema is recreated) and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402

from services.core.db import create_database_if_missing, create_pool, migrate_service  # noqa: E402
from services.core.events import PARTICIPANT_REGISTERED, WINNERS_ANNOUNCED, Event  # noqa: E402
from services.core.testing import free_port  # noqa: E402
from services.notify import domain  # noqa: E402
from services.notify.mailer import Mailer  # noqa: E402
from services.notify.settings import NotifySettings  # noqa: E402
from services.notify.templating import load_catalog  # noqa: E402
from services.notify.worker import build_sender, handlers, on_contacts_changed, participant_contact  # noqa: E402

BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/hoithi_bench")


class CountingSink:
    """aiosmtpd handler: accepts and counts, keeps nothing."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received += len(envelope.rcpt_tos)
        return "250 OK"


def wire(event: Event) -> Event:
    return Event.from_json(event.to_json())


async def smtp_throughput(settings: NotifySettings, sink: CountingSink, messages: int, concurrency: int) -> float:
    catalog = load_catalog(settings.templates_dir)
    mailer = Mailer(settings)
    context = {
        "full_name": "Nguyễn Thị Ánh", "prize": "Giải Nhất", "rank": 1, "correct": 20,
        "contest_title": "Cuộc thi trực tuyến tìm hiểu Luật Giao thông", "round_title": "Tuần 3",
    }
    gate = asyncio.Semaphore(concurrency)
    before = sink.received

    async def one(n: int) -> None:
        async with gate:
            rendered = catalog.render(domain.WINNER_TEMPLATE, context)
            await mailer.send(mailer.build(uuid.uuid4(), f"winner{n}@example.vn", rendered))

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(messages)))
    elapsed = time.perf_counter() - started
    assert sink.received - before == messages, "the server did not receive every message"
    return messages / elapsed


async def fresh_schema() -> None:
    await create_database_if_missing(BENCH_DATABASE_URL)
    conn = await asyncpg.connect(BENCH_DATABASE_URL)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS notify CASCADE")
    finally:
        await conn.close()
    await migrate_service(BENCH_DATABASE_URL, "notify")


async def notify_winners(settings: NotifySettings, sink: CountingSink, winners: int) -> tuple[float, int, int]:
    """Seconds to handle one announcement of `winners` winners; (seconds, emails, sms)."""
    pool = await create_pool(BENCH_DATABASE_URL, "notify", min_size=2, max_size=settings.db_pool_max)
    try:
        await pool.execute("TRUNCATE contacts, deliveries")
        people = [uuid.uuid4() for _ in range(winners)]
        registrations = [
            wire(Event(PARTICIPANT_REGISTERED, {
                "participant_id": p, "full_name": f"Người thắng giải {n}", "phone": f"098{n:07d}",
                "email": f"winner{n}@example.vn", "unit_id": None, "group": None,
                "registered_at": datetime.now(UTC),
            }))
            for n, p in enumerate(people)
        ]
        await on_contacts_changed(pool, participant_contact, registrations)
        announced = wire(Event(WINNERS_ANNOUNCED, {
            "round_id": uuid.uuid4(), "contest_title": "Cuộc thi trực tuyến tìm hiểu Luật Giao thông",
            "round_title": "Tuần 3", "contest_id": uuid.uuid4(),
            "summary": {"participants": 150_000, "attempts": 420_000, "all_correct": 950},
            "winners": [
                {"participant_id": p, "name": f"Người thắng giải {n}", "rank": n + 1, "prize": "Giải Khuyến khích",
                 "correct": 20, "duration_ms": 300_000, "group": None}
                for n, p in enumerate(people)
            ],
        }))
        sender = build_sender(settings, pool, load_catalog(settings.templates_dir))
        before = sink.received
        started = time.perf_counter()
        await handlers(pool, sender)[WINNERS_ANNOUNCED]([announced])
        elapsed = time.perf_counter() - started
        counts = {
            (r["channel"], r["status"]): r["n"]
            for r in await pool.fetch("SELECT channel, status, count(*) AS n FROM deliveries GROUP BY 1, 2")
        }
        emails, sms = counts.get(("email", "sent"), 0), counts.get(("sms", "sent"), 0)
        assert emails == sms == winners and sink.received - before == winners, counts
        return elapsed, emails, sms
    finally:
        await pool.close()


async def main(winners: int, messages: int) -> None:
    sink = CountingSink()
    port = free_port()
    server = Controller(sink, hostname="127.0.0.1", port=port, server_kwargs={"enable_SMTPUTF8": True})
    server.start()
    results: list[tuple[str, str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-notify-") as folder:
            base: dict[str, Any] = {
                "database_url": BENCH_DATABASE_URL, "smtp_host": "127.0.0.1", "smtp_port": port,
                "sms_provider": "console", "dev_mail_dir": Path(folder), "smtp_rate_per_s": 0,
                "sms_rate_per_s": 0, "db_pool_max": 12, "log_level": "WARNING",
            }
            settings = NotifySettings(**base)
            for concurrency in (1, 8):
                rate = await smtp_throughput(settings, sink, messages, concurrency)
                results.append((f"SMTP path, {messages} messages, {concurrency} in flight", f"{rate:,.0f} msg/s"))
            await fresh_schema()
            for concurrency in (1, 4, 8):
                settings = NotifySettings(**base, send_concurrency=concurrency)
                seconds, emails, sms = await notify_winners(settings, sink, winners)
                results.append((
                    f"notify {winners:,} winners end to end (SEND_CONCURRENCY={concurrency})",
                    f"{seconds:.2f} s ({emails:,} emails + {sms:,} SMS, {(emails + sms) / seconds:,.0f} msg/s)",
                ))
    finally:
        server.stop()

    print(f"\n### notify benchmark ({platform.node()}, Python {platform.python_version()}, {os.cpu_count()} CPUs)\n")
    print("| measurement | result |")
    print("|---|---|")
    for name, value in results:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--winners", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500, help="messages for the SMTP throughput figure")
    arguments = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(arguments.winners, arguments.messages))
