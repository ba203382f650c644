"""Sign-up confirmations, one-time codes, participation nudges and the organisers' round
summary, end to end through the handlers: real SMTP server, real HTTP SMS provider, real
PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.core.bus import Bus
from services.core.events import SUBSCRIPTIONS, Event
from services.notify.tests.support import (
    Answer,
    FakeSmsProvider,
    SenderFactory,
    SmtpServer,
    code_requested,
    e164,
    participant_registered,
    participation_nudge,
    phone_of,
    staff_changed,
    winners_announced,
)
from services.notify.worker import DeliveriesPending, DeliverySender, ProviderUnreachable, handlers


async def handle(pool: asyncpg.Pool, sender: DeliverySender, *events: Event) -> None:
    routes = handlers(pool, sender, site_url="https://hoithi.example.vn")
    for event in events:
        await routes[event.type]([event])


async def rows(pool: asyncpg.Pool, template: str) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM deliveries WHERE template = $1 ORDER BY recipient", template))


# --- sign-up confirmation -----------------------------------------------------------------

async def test_sign_up_is_confirmed_by_email_once_and_not_without_an_address(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    with_email, without = uuid.uuid4(), uuid.uuid4()
    registered = participant_registered(with_email, "Ngô Thị Hạnh", "hanh@example.vn", phone="0903 123 456")
    no_address = participant_registered(without, "Lý Văn Sơn", None)
    sender = make_sender(smtp, sms)

    await handlers(pool, sender, site_url="https://hoithi.example.vn")[registered.type]([registered, no_address])
    await handle(pool, sender, registered)  # redelivered

    (email,) = smtp.inbox.received
    assert email.recipient == "hanh@example.vn"
    assert email.message["Subject"] == "Xác nhận đăng ký tham gia Hội thi – Ngô Thị Hạnh"
    assert "Số điện thoại đăng nhập: 0903 123 456" in email.text
    assert "https://hoithi.example.vn" in email.text and 'href="https://hoithi.example.vn"' in email.html
    assert sms.requests == []  # no SMS for a sign-up: the number is the login just typed
    (row,) = await rows(pool, "signup")
    assert (row["status"], row["channel"], row["person_id"], row["attempts"]) == ("sent", "email", with_email, 1)
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 2


async def test_an_english_speaking_participant_gets_english(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    await handle(pool, make_sender(smtp), participant_registered(uuid.uuid4(), "Anna Le", "anna@example.com",
                                                                 locale="en-GB"))
    (email,) = smtp.inbox.received
    assert email.message["Subject"] == "Your registration for the contest – Anna Le"
    assert (await rows(pool, "signup"))[0]["language"] == "en"


async def test_sign_up_confirmation_waits_out_an_smtp_outage(
    pool: asyncpg.Pool, smtp_down: SmtpServer, make_sender: SenderFactory
) -> None:
    registered = participant_registered(uuid.uuid4(), "Ngô Thị Hạnh", "hanh@example.vn")
    sender = make_sender(smtp_down)
    with pytest.raises(ProviderUnreachable, match="smtp"):
        await handle(pool, sender, registered)
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 1  # the contact is kept all the same

    await smtp_down.start()
    assert await sender.sweep_once(min_age_s=0, max_backoff_s=0) == 1
    assert [r.recipient for r in smtp_down.inbox.received] == ["hanh@example.vn"]


# --- one-time codes -----------------------------------------------------------------------

async def test_a_code_by_sms_goes_to_the_number_with_its_validity_and_leaves_no_trace(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    requested = code_requested("sms", "0912345678", "482913", purpose="password_reset", valid_for_s=300)
    sender = make_sender(smtp, sms)
    await handle(pool, sender, requested, requested)

    (request,) = sms.requests
    assert request.to == "+84912345678"
    assert request.text == (
        "482913 la ma dat lai mat khau Hoi thi, hieu luc trong 5 phut. Khong chia se ma nay cho bat ky ai."
    )
    assert smtp.inbox.received == []
    (row,) = await rows(pool, "code")
    assert (row["status"], row["channel"], row["person_id"]) == ("sent", "sms", None)
    assert row["idempotency_key"] == f"{requested.id}:{requested.data['request_id']}:sms"
    assert "code" not in row["context"]  # the code is gone from the database once sent
    assert row["context"]["minutes_valid"] == 5


async def test_a_code_by_email(pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider,
                               make_sender: SenderFactory) -> None:
    await handle(pool, make_sender(smtp, sms), code_requested("email", "thu@example.vn", "771204"))

    (email,) = smtp.inbox.received
    assert email.recipient == "thu@example.vn"
    assert email.message["Subject"] == "Mã xác nhận đăng ký Hội thi"
    assert "Xin chào Đặng Thị Thu" in email.text
    assert "771204" in email.text and "771204" in email.html
    assert "hiệu lực trong 10 phút" in email.text
    assert sms.requests == []


async def test_a_code_that_expired_before_it_could_go_out_is_not_sent(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    late = code_requested("sms", "0912345678", occurred_at=datetime.now(UTC) - timedelta(minutes=20))
    await handle(pool, make_sender(smtp, sms), late)

    (row,) = await rows(pool, "code")
    assert (row["status"], row["last_error"]) == ("failed", "Expired: expired before it could be sent")
    assert sms.requests == []


async def test_a_code_to_a_bad_recipient_fails_with_the_reason(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    await handle(pool, make_sender(smtp, sms), code_requested("email", "thu.example.vn"),
                 code_requested("sms", "0241234567"))

    failed = {r["channel"]: r["last_error"] for r in await rows(pool, "code")}
    assert failed == {
        "email": "InvalidEmailAddress: not an email address: 'thu.example.vn'",
        "sms": "InvalidPhoneNumber: not a Vietnamese mobile number: '0241234567'",
    }
    assert smtp.inbox.received == [] and sms.requests == []


# --- participation nudges -----------------------------------------------------------------

class Units:
    """Two units below target with coordinators, one without any, and people who must not
    be nudged: an organiser and a coordinator of a unit that is not listed."""

    def __init__(self) -> None:
        self.phuong, self.xa, self.empty, self.other = (uuid.uuid4() for _ in range(4))
        self.lan, self.minh, self.tuan = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.staff = [
            staff_changed(self.lan, "Trịnh Thị Lan", "coordinator", unit_id=self.phuong, email="lan@example.vn",
                          phone="0971111111"),
            staff_changed(self.minh, "Đỗ Quang Minh", "coordinator", unit_id=self.phuong, email="minh@example.vn",
                          phone="0972222222", locale="en"),
            staff_changed(self.tuan, "Bùi Văn Tuấn", "coordinator", unit_id=self.xa, email="tuan@example.vn",
                          phone="0973333333"),
            staff_changed(uuid.uuid4(), "Người khác", "coordinator", unit_id=self.other, email="khac@example.vn",
                          phone="0974444444"),
            staff_changed(uuid.uuid4(), "Ban Tổ chức", "organiser", email="btc@example.vn", phone="0975555555"),
        ]
        self.nudge = participation_nudge([
            {"unit_id": self.phuong, "code": "P07", "name": "Phường Lê Chân", "participants": 1234,
             "headcount": 4000, "rate": 0.3085},
            {"unit_id": self.xa, "code": "X02", "name": "Xã An Hòa", "participants": 40, "headcount": 90,
             "rate": 40 / 90},
            {"unit_id": self.empty, "code": "X09", "name": "Xã Không Người", "participants": 0, "headcount": 10,
             "rate": 0.0},
        ])


async def test_each_coordinator_of_each_listed_unit_gets_one_email_and_one_sms(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    units = Units()
    sender = make_sender(smtp, sms)
    await handle(pool, sender, *units.staff)
    for _ in range(3):
        await handle(pool, sender, units.nudge)

    assert sorted(r.recipient for r in smtp.inbox.received) == ["lan@example.vn", "minh@example.vn", "tuan@example.vn"]
    assert sorted(r.to for r in sms.requests) == ["+84971111111", "+84972222222", "+84973333333"]
    assert {(r["channel"], r["status"], r["attempts"]) for r in await rows(pool, "nudge")} == {
        ("email", "sent", 1), ("sms", "sent", 1)
    }

    (lan,) = smtp.inbox.to("lan@example.vn")
    assert lan.message["Subject"] == "Đơn vị Phường Lê Chân: tỷ lệ tham gia 30,9%, mục tiêu 80% – Tìm hiểu Luật Đất đai"
    assert "Số người đã tham gia: 1.234 / 4.000 người" in lan.text
    assert "cần thêm ít nhất 1.966 người" in lan.text
    assert "tham gia Tuần 2 của đơn vị Phường Lê Chân (P07)" in lan.text
    (minh,) = smtp.inbox.to("minh@example.vn")  # locale en
    assert "People who took part: 1,234 of 4,000" in minh.text and "30.9%" in minh.text
    (tuan_sms,) = [r for r in sms.requests if r.to == "+84973333333"]
    assert tuan_sms.text == (
        "BTC Tim hieu Luat Dat dai: don vi Xa An Hoa moi co 40/90 nguoi tham gia (44,4%), muc tieu 80%. "
        "De nghi Anh/Chi don doc don vi tham gia."
    )


async def test_a_nudge_with_one_coordinator_failing_sends_the_rest(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    units = Units()
    sms.per_number["+84971111111"] = Answer(503)
    sender = make_sender(smtp, sms)
    await handle(pool, sender, *units.staff)

    with pytest.raises(DeliveriesPending, match="1 sms"):
        await handle(pool, sender, units.nudge)
    del sms.per_number["+84971111111"]
    await handle(pool, sender, units.nudge)

    assert sorted(r.to for r in sms.accepted) == ["+84971111111", "+84972222222", "+84973333333"]
    assert len(smtp.inbox.received) == 3


# --- the organisers' round summary --------------------------------------------------------

async def test_every_organiser_gets_the_round_summary_with_the_winners(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    units = Units()
    winner = uuid.uuid4()
    second_organiser = staff_changed(uuid.uuid4(), "Phó ban Tổ chức", "organiser", email="pho@example.vn")
    no_address = staff_changed(uuid.uuid4(), "Thư ký", "organiser")
    sender = make_sender(smtp, sms)
    await handle(pool, sender, *units.staff, second_organiser, no_address)
    await handlers(pool, sender)["participant.registered"]([participant_registered(winner, "Mai Anh Thư", None)])
    announced = winners_announced(
        [(winner, "Mai Anh Thư", 1, "Giải Nhất")], summary={"participants": 15234, "attempts": 40120, "all_correct": 87}
    )

    await handle(pool, sender, announced)
    await handle(pool, sender, announced)

    summaries = {r.recipient: r for r in smtp.inbox.received}
    assert set(summaries) == {"btc@example.vn", "pho@example.vn"}  # organisers only, coordinators not
    text = summaries["btc@example.vn"].text
    assert summaries["btc@example.vn"].message["Subject"] == (
        "Tổng hợp kết quả Tuần 3 – Cuộc thi trực tuyến tìm hiểu Luật Giao thông"
    )
    for line in ("Số người tham gia: 15.234", "Số lượt dự thi: 40.120", "Số bài trả lời đúng tất cả các câu: 87",
                 "Số người đoạt giải: 1", "1. Mai Anh Thư – Giải Nhất, đúng 20 câu"):
        assert line in text
    assert "<td style=\"padding: 2px 12px 2px 0;\">Mai Anh Thư</td>" in summaries["pho@example.vn"].html
    assert {(r["channel"], r["status"]) for r in await rows(pool, "organiser_summary")} == {("email", "sent")}
    assert [r.to for r in sms.requests] == [e164(phone_of(winner))]  # the winner's SMS only


async def test_an_announcement_without_a_summary_still_informs_organisers(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory
) -> None:
    sender = make_sender(smtp)
    await handle(pool, sender, staff_changed(uuid.uuid4(), "Ban Tổ chức", "organiser", email="btc@example.vn"))
    await handle(pool, sender, winners_announced([]))  # an older scoring: no summary, and no winners

    (email,) = smtp.inbox.received
    assert "Số người tham gia: —" in email.text
    assert "(không có)" in email.text


async def test_codes_and_nudges_arrive_through_the_bus(
    pool: asyncpg.Pool,
    smtp: SmtpServer,
    sms: FakeSmsProvider,
    make_sender: SenderFactory,
    bus_factory: Callable[..., Awaitable[Bus]],
) -> None:
    bus = await bus_factory("notify", retry_delays_s=(1,))
    routes = handlers(pool, make_sender(smtp, sms))
    await bus.declare_consumer_queues(SUBSCRIPTIONS["notify"])
    units = Units()
    stop = asyncio.Event()
    consumer = asyncio.create_task(bus.consume(routes, batch_size=10, stop=stop))
    try:
        for event in units.staff:
            await bus.publish(event)
        await wait_for_rows(pool, "SELECT count(*) FROM contacts", len(units.staff))
        await bus.publish(units.nudge)
        await bus.publish(code_requested("sms", "0909123456", "246810"))
        await wait_for_rows(pool, "SELECT count(*) FROM deliveries WHERE status = 'sent'", 3 + 3 + 1)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, 10)

    assert sorted(r.to for r in sms.requests) == ["+84909123456", "+84971111111", "+84972222222", "+84973333333"]
    assert len(smtp.inbox.received) == 3


async def wait_for_rows(pool: asyncpg.Pool, query: str, expected: int, timeout_s: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (found := await pool.fetchval(query)) != expected:
        assert loop.time() < deadline, f"{query}: {found}, expected {expected}"
        await asyncio.sleep(0.1)
