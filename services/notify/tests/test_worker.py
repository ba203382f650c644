"""The worker's handlers and sweeper against a real SMTP server (aiosmtpd, started here),
a real HTTP server standing in for the SMS provider, and the real PostgreSQL; one test
through a real RabbitMQ bus. Winner email behaviour here; SMS in test_sms.py, the other
notifications in test_notifications.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.core import outages
from services.core.bus import Bus
from services.core.events import PARTICIPANT_REGISTERED, STAFF_CHANGED, WINNERS_ANNOUNCED, Event
from services.notify import domain, store
from services.notify.tests.support import (
    FakeSmsProvider,
    SenderFactory,
    SmtpServer,
    e164,
    from_the_wire,
    participant_registered,
    phone_of,
    winners_announced,
)
from services.notify.worker import (
    DeliveriesPending,
    DeliverySender,
    ProviderUnreachable,
    handlers,
    on_contacts_changed,
    participant_contact,
    winners_announcement,
)


async def deliveries(pool: asyncpg.Pool, channel: str = "email") -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM deliveries WHERE channel = $1 AND template = 'winner'", channel)
    return {r["recipient"]: r for r in rows}


async def handle(pool: asyncpg.Pool, sender: DeliverySender, *events: Event) -> None:
    routes = handlers(pool, sender)
    for event in events:
        await routes[event.type]([event])


async def register(pool: asyncpg.Pool, *events: Event) -> None:
    """Only the contacts of participant.registered (no sign-up confirmation), so these tests
    see winner messages alone."""
    await on_contacts_changed(pool, participant_contact, list(events))


class Podium:
    """Three winners: two with an email address, one registered without."""

    def __init__(self) -> None:
        self.an, self.binh, self.cuong = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.registrations = [
            participant_registered(self.an, "Nguyễn Thị An", "an@example.vn"),
            participant_registered(self.binh, "Trần Văn Bình", "binh@example.vn"),
            participant_registered(self.cuong, "Lê Cường", None),
        ]
        self.announced = winners_announced(
            [
                (self.an, "Nguyễn Thị An", 1, "Giải Nhất"),
                (self.binh, "Trần Văn Bình", 2, "Giải Nhì"),
                (self.cuong, "Lê Cường", 3, "Giải Ba"),
            ]
        )


async def test_winners_get_one_email_each_and_the_log_says_sent(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    podium = Podium()
    sender = make_sender(smtp)
    await register(pool, *podium.registrations)
    await handle(pool, sender, podium.announced)

    assert sorted(r.recipient for r in smtp.inbox.received) == ["an@example.vn", "binh@example.vn"]
    rows = await deliveries(pool)
    assert set(rows) == {"an@example.vn", "binh@example.vn"}  # Lê Cường has no address: no email planned
    texts = await deliveries(pool, "sms")  # but every winner has a phone
    assert set(texts) == {phone_of(p) for p in (podium.an, podium.binh, podium.cuong)}
    assert {(r["status"], r["attempts"]) for r in texts.values()} == {("sent", 1)}
    for row in rows.values():
        assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
        assert row["sent_at"] is not None
        assert row["event_id"] == podium.announced.id
        assert row["event_type"] == WINNERS_ANNOUNCED
        assert row["template"] == "winner"
        assert row["idempotency_key"] == f"{podium.announced.id}:{row['person_id']}:email"
    assert rows["an@example.vn"]["person_id"] == podium.an


async def test_the_email_as_the_winner_receives_it(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    podium = Podium()
    await register(pool, *podium.registrations)
    await handle(pool, make_sender(smtp), podium.announced)

    (email,) = smtp.inbox.to("binh@example.vn")
    message = email.message
    delivery_id = (await deliveries(pool))["binh@example.vn"]["id"]
    assert message["Subject"] == (
        "Chúc mừng Trần Văn Bình đạt Giải Nhì – Cuộc thi trực tuyến tìm hiểu Luật Giao thông, Tuần 3"
    )
    assert message["From"] == "Ban Tổ chức Hội thi <no-reply@hoithi.local>"
    assert message["To"] == "binh@example.vn"
    assert message["Message-ID"] == f"<{delivery_id}@hoithi.local>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    assert "Kính gửi Trần Văn Bình" in email.text
    assert "Giải Nhì (xếp hạng 2)" in email.text
    assert "<strong>Giải Nhì</strong>" in email.html


async def test_the_same_event_handled_three_times_sends_one_email_and_one_sms_per_winner(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    podium = Podium()
    await register(pool, *podium.registrations)
    for _ in range(3):
        await handle(pool, make_sender(smtp, sms), podium.announced)  # a fresh worker each time, too

    assert sorted(r.recipient for r in smtp.inbox.received) == ["an@example.vn", "binh@example.vn"]
    winners = (podium.an, podium.binh, podium.cuong)
    assert sorted(r.to for r in sms.requests) == sorted(e164(phone_of(p)) for p in winners)
    assert [r["attempts"] for r in (await deliveries(pool)).values()] == [1, 1]
    assert [r["attempts"] for r in (await deliveries(pool, "sms")).values()] == [1, 1, 1]


async def test_smtp_down_keeps_deliveries_queued_without_spending_attempts_then_sends_once(
    pool: asyncpg.Pool, smtp_down: SmtpServer, make_sender: SenderFactory
) -> None:
    podium = Podium()
    sender = make_sender(smtp_down)
    await register(pool, *podium.registrations)

    with pytest.raises(ProviderUnreachable, match="smtp unreachable") as raised:
        await handle(pool, sender, podium.announced)
    assert outages.is_dependency_outage(raised.value)  # what makes the bus wait instead of retrying
    for row in (await deliveries(pool)).values():
        # An outage is not the delivery's failure: no attempt spent, the reason kept.
        assert (row["status"], row["attempts"], row["sent_at"]) == ("queued", 0, None)
        assert row["last_error"].startswith("SMTPConnectError")

    await smtp_down.start()
    await handle(pool, sender, podium.announced)
    await handle(pool, sender, podium.announced)

    assert sorted(r.recipient for r in smtp_down.inbox.received) == ["an@example.vn", "binh@example.vn"]
    for row in (await deliveries(pool)).values():
        assert (row["status"], row["attempts"]) == ("sent", 1)
        assert row["last_error"].startswith("SMTPConnectError")  # why it took two tries stays visible


async def test_transient_failures_up_to_the_limit_make_a_delivery_dead(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    podium = Podium()
    sender = make_sender(smtp, max_send_attempts=2)
    await register(pool, *podium.registrations)
    for address in ("an@example.vn", "binh@example.vn"):
        smtp.inbox.refuse[address] = "451 4.3.0 Mailbox temporarily unavailable"

    with pytest.raises(DeliveriesPending):
        await handle(pool, sender, podium.announced)
    await handle(pool, sender, podium.announced)  # attempts used up: nothing left to retry, no raise

    assert {(r["status"], r["attempts"]) for r in (await deliveries(pool)).values()} == {("dead", 2)}
    smtp.inbox.refuse.clear()
    await handle(pool, sender, podium.announced)
    assert smtp.inbox.received == []  # dead stays dead until an organiser replays it


async def test_a_refused_recipient_fails_with_the_reason_and_the_others_are_sent(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    smtp.inbox.refuse["an@example.vn"] = "550 5.1.1 <an@example.vn>: Recipient address rejected"
    podium = Podium()
    sender = make_sender(smtp)
    await register(pool, *podium.registrations)

    await handle(pool, sender, podium.announced)  # a permanent failure is not retried: no raise
    await handle(pool, sender, podium.announced)

    rows = await deliveries(pool)
    assert (rows["an@example.vn"]["status"], rows["an@example.vn"]["attempts"]) == ("failed", 1)
    assert rows["an@example.vn"]["last_error"] == "550 5.1.1 <an@example.vn>: Recipient address rejected"
    assert rows["binh@example.vn"]["status"] == "sent"
    assert [r.recipient for r in smtp.inbox.received] == ["binh@example.vn"]


async def test_a_4xx_answer_to_a_recipient_is_retried(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    smtp.inbox.refuse["an@example.vn"] = "451 4.7.1 Greylisted, try again later"
    podium = Podium()
    sender = make_sender(smtp)
    await register(pool, *podium.registrations)

    with pytest.raises(DeliveriesPending, match="1 email"):
        await handle(pool, sender, podium.announced)
    row = (await deliveries(pool))["an@example.vn"]
    assert (row["status"], row["attempts"], row["last_error"]) == ("queued", 1, "451 4.7.1 Greylisted, try again later")

    del smtp.inbox.refuse["an@example.vn"]
    await handle(pool, sender, podium.announced)
    assert sorted(r.recipient for r in smtp.inbox.received) == ["an@example.vn", "binh@example.vn"]


async def test_a_winner_without_contact_makes_the_event_retry_until_registration_arrives(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    podium = Podium()
    sender = make_sender(smtp)
    await register(pool, podium.registrations[0], podium.registrations[2])  # Bình's registration is late

    with pytest.raises(DeliveriesPending, match=f"no contact yet for {podium.binh}"):
        await handle(pool, sender, podium.announced)
    assert [r.recipient for r in smtp.inbox.received] == ["an@example.vn"]

    await register(pool, podium.registrations[1])
    await handle(pool, sender, podium.announced)

    assert sorted(r.recipient for r in smtp.inbox.received) == ["an@example.vn", "binh@example.vn"]
    assert {r["status"] for r in (await deliveries(pool)).values()} == {"sent"}
    assert {r["status"] for r in (await deliveries(pool, "sms")).values()} == {"sent"}


async def test_staff_changed_and_participant_registered_keep_contacts(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    staff_id, participant_id = uuid.uuid4(), uuid.uuid4()
    staff = from_the_wire(
        Event(
            STAFF_CHANGED,
            {
                "staff_id": staff_id, "login": "coord1", "full_name": "Phan Văn Điều phối", "role": "coordinator",
                "unit_id": None, "email": "dieuphoi@example.vn", "phone": None,
            },
        )
    )
    later = datetime.now(UTC) + timedelta(minutes=5)
    renamed = participant_registered(participant_id, "Hoàng Thu Hà", "ha.moi@example.vn", occurred_at=later)
    original = participant_registered(participant_id, "Hoang Thu Ha", "ha@example.vn", occurred_at=later - timedelta(1))
    routes = handlers(pool, make_sender(smtp))

    await routes[STAFF_CHANGED]([staff, staff])
    await routes[PARTICIPANT_REGISTERED]([renamed, original])  # one batch, out of order
    await routes[PARTICIPANT_REGISTERED]([original])  # redelivered late

    contacts = await store.contacts_by_id(pool, [staff_id, participant_id])
    assert (contacts[staff_id].kind, contacts[staff_id].email) == ("staff", "dieuphoi@example.vn")
    assert (contacts[participant_id].full_name, contacts[participant_id].email) == ("Hoàng Thu Hà", "ha.moi@example.vn")


async def test_a_malformed_event_raises_so_it_ends_in_the_dead_letter_queue(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    routes = handlers(pool, make_sender(smtp))
    with pytest.raises(ValidationError):
        await routes[WINNERS_ANNOUNCED]([from_the_wire(Event(WINNERS_ANNOUNCED, {"round_id": "x"}))])
    with pytest.raises(ValidationError):
        await routes[PARTICIPANT_REGISTERED]([from_the_wire(Event(PARTICIPANT_REGISTERED, {"full_name": "A"}))])


async def test_concurrent_senders_send_a_delivery_once(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    podium = Podium()
    await register(pool, *podium.registrations)
    await insert_plan_only(pool, podium.announced)  # as if the handler crashed before sending
    (delivery_id,) = [r["id"] for r in (await deliveries(pool)).values() if r["recipient"] == "an@example.vn"]

    results = await asyncio.gather(*(make_sender(smtp).send_if_queued(delivery_id) for _ in range(6)))
    late = await make_sender(smtp).send_if_queued(delivery_id)  # listed it as queued before it was sent

    assert [r.recipient for r in smtp.inbox.received] == ["an@example.vn"]
    assert sum(1 for r in results if r is not None) == 1
    assert late is None


async def test_the_sweeper_sends_what_a_crashed_handler_left_queued(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    podium = Podium()
    await register(pool, *podium.registrations)
    await insert_plan_only(pool, podium.announced)

    patient = make_sender(smtp)
    assert await patient.sweep_once(min_age_s=10, max_backoff_s=600) == 0  # too fresh: its handler may be on it
    assert smtp.inbox.received == []
    assert await patient.sweep_once(min_age_s=0, max_backoff_s=600) == 2

    assert sorted(r.recipient for r in smtp.inbox.received) == ["an@example.vn", "binh@example.vn"]
    assert {r["status"] for r in (await deliveries(pool)).values()} == {"sent"}


async def test_the_sweeper_waits_longer_after_each_failed_attempt(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    podium = Podium()
    await register(pool, *podium.registrations)
    await insert_plan_only(pool, podium.announced)
    await pool.execute("UPDATE deliveries SET attempts = 2, updated_at = now() - interval '30 seconds'")
    sender = make_sender(smtp)

    assert await sender.sweep_once(min_age_s=10, max_backoff_s=600) == 0  # 2 failures: rests 40 s
    await pool.execute("UPDATE deliveries SET updated_at = now() - interval '41 seconds'")
    assert await sender.sweep_once(min_age_s=10, max_backoff_s=600) == 2


async def test_winners_email_end_to_end_through_the_bus(
    pool: asyncpg.Pool,
    smtp: SmtpServer,
    sms: FakeSmsProvider,
    make_sender: SenderFactory,
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    bus = await bus_factory("notify", retry_delays_s=(1,))
    routes = handlers(pool, make_sender(smtp, sms))
    await bus.declare_consumer_queues(sorted(routes))
    stop = asyncio.Event()
    consumer = asyncio.create_task(bus.consume(routes, batch_size=10, stop=stop))
    podium = Podium()
    try:
        # Out of order on purpose: the announcement first, so its first try finds no contacts.
        await bus.publish(podium.announced)
        await asyncio.sleep(0.3)
        for registration in podium.registrations:
            await bus.publish(registration)
        await wait_until(lambda: count_sent(pool), 5, timeout_s=15)  # 2 emails and 3 SMS to winners
        await bus.publish(podium.announced)  # a redelivery sends nothing more
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, 10)

    winner_emails = [r.recipient for r in smtp.inbox.received if r.message["Subject"].startswith("Chúc mừng")]
    assert sorted(winner_emails) == ["an@example.vn", "binh@example.vn"]
    assert len(sms.requests) == 3
    # Each registration also brought its sign-up confirmation, once.
    confirmations = [r.recipient for r in smtp.inbox.received if r.message["Subject"].startswith("Xác nhận")]
    assert sorted(confirmations) == ["an@example.vn", "binh@example.vn"]


async def test_an_smtp_outage_holds_the_event_without_spending_its_retries(
    pool: asyncpg.Pool,
    smtp_down: SmtpServer,
    make_sender: SenderFactory,
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    # A long retry delay: an event that went to the retry queue would still be there.
    bus = await bus_factory("notify", retry_delays_s=(60,))
    routes = handlers(pool, make_sender(smtp_down))
    await bus.declare_consumer_queues(sorted(routes))
    podium = Podium()
    await register(pool, *podium.registrations)
    waits_before = REGISTRY.get_sample_value(
        "hoithi_bus_outage_waits_total", {"service": "notify", "dependency": "smtp"}) or 0.0
    stop = asyncio.Event()
    consumer = asyncio.create_task(bus.consume(
        routes, batch_size=10, stop=stop,
        dependencies=[outages.postgres(pool), outages.tcp("smtp", "127.0.0.1", smtp_down.port)],
    ))
    try:
        await bus.publish(podium.announced)
        for _ in range(200):
            waits = REGISTRY.get_sample_value(
                "hoithi_bus_outage_waits_total", {"service": "notify", "dependency": "smtp"}) or 0.0
            if waits > waits_before:
                break
            await asyncio.sleep(0.05)
        assert waits == waits_before + 1
        await smtp_down.start()
        await wait_until(lambda: count_sent(pool), 5, timeout_s=20)  # 2 emails (and the 3 SMS sent meanwhile)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, 10)

    assert sorted(r.recipient for r in smtp_down.inbox.received) == ["an@example.vn", "binh@example.vn"]
    assert {r["attempts"] for r in (await deliveries(pool)).values()} == {1}
    for name in (bus.topology.queue, bus.topology.retry_queue(60), bus.topology.dead_queue):
        queue = await bus.channel.declare_queue(name, passive=True)
        assert await queue.get(fail=False, timeout=5) is None, name


# --- helpers ----------------------------------------------------------------------------------

async def insert_plan_only(pool: asyncpg.Pool, event: Event) -> None:
    announcement = winners_announcement(event)
    contacts = await store.contacts_by_id(pool, [w.participant_id for w in announcement.winners])
    await store.insert_planned(pool, domain.plan_winner_emails(announcement, contacts).deliveries)


async def count_sent(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent' AND template = 'winner'"))


async def wait_until(probe: Callable[[], Awaitable[int]], expected: int, *, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (value := await probe()) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"still {value}, expected {expected} after {timeout_s} s")
        await asyncio.sleep(0.1)
