"""SMS through the generic JSON-over-HTTP provider, against a real HTTP server standing in
for it (support.FakeSmsProvider), and through the console provider; the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from services.core.events import Event
from services.notify.tests.support import (
    Answer,
    FakeSmsProvider,
    SenderFactory,
    SmtpServer,
    participant_registered,
    winners_announced,
)
from services.notify.worker import (
    DeliveriesPending,
    ProviderUnreachable,
    handlers,
    on_contacts_changed,
    participant_contact,
)

NAME = "Hoàng Văn Đức"
PHONE = "0987 654 321"  # as a person types it; sent as +84987654321


async def one_winner(pool: asyncpg.Pool, phone: str | None = PHONE) -> Event:
    """A registered winner with a phone and no email address (so only an SMS goes out)."""
    person = uuid.uuid4()
    await on_contacts_changed(pool, participant_contact, [participant_registered(person, NAME, None, phone=phone)])
    return winners_announced([(person, NAME, 1, "Giải Nhất")])


async def handle(pool: asyncpg.Pool, make_sender: SenderFactory, smtp: SmtpServer, sms: FakeSmsProvider | None,
                 event: Event, **settings: object) -> None:
    await handlers(pool, make_sender(smtp, sms, **settings))[event.type]([event])


async def the_sms(pool: asyncpg.Pool) -> asyncpg.Record:
    (row,) = await pool.fetch("SELECT *, not_before - now() AS held_for FROM deliveries WHERE channel = 'sms'")
    return row


async def test_the_request_carries_number_text_token_and_the_delivery_id_as_idempotency_key(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    await handle(pool, make_sender, smtp, sms, announced)

    (request,) = sms.requests
    row = await the_sms(pool)
    assert (row["status"], row["attempts"], row["recipient"]) == ("sent", 1, "0987 654 321")
    assert request.path == "/v1/sms"
    assert request.headers["authorization"] == "Bearer test-token"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == str(row["id"])
    assert request.body == {
        "to": "+84987654321",
        "text": request.text,
        "idempotency_key": str(row["id"]),
    }
    # GSM-7 (the default): Vietnamese without diacritics, within three segments.
    assert request.text.startswith("Chuc mung Hoang Van Duc dat Giai Nhat (hang 1) Tuan 3 - Cuoc thi truc tuyen")
    assert "nhan giai" in request.text
    assert request.text.isascii()


async def test_field_names_sender_extra_fields_and_number_format_come_from_settings(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    await handle(
        pool, make_sender, smtp, sms, announced,
        sms_http_field_to="Phone", sms_http_field_text="Content", sms_http_field_idempotency="RequestId",
        sms_http_field_sender="Brandname", sms_sender="HOITHI", sms_http_extra={"SmsType": 2, "ApiKey": "k"},
        sms_number_format="national", sms_http_token=None,
    )

    (request,) = sms.requests
    row = await the_sms(pool)
    assert set(request.body) == {"Phone", "Content", "RequestId", "Brandname", "SmsType", "ApiKey"}
    assert (request.body["Phone"], request.body["RequestId"], request.body["Brandname"]) == (
        "0987654321", str(row["id"]), "HOITHI"
    )
    assert (request.body["SmsType"], request.body["ApiKey"]) == (2, "k")
    assert "authorization" not in request.headers


async def test_without_gsm7_the_text_keeps_its_diacritics_within_ucs2_segments(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    await handle(pool, make_sender, smtp, sms, announced, sms_gsm7=False, sms_max_segments=2)

    (request,) = sms.requests
    assert request.text.startswith("Chúc mừng Hoàng Văn Đức đạt Giải Nhất")
    assert len(request.text) <= 2 * 67 and request.text.endswith("…")  # the template is longer: cut to fit


async def test_provider_500_then_200_retries_and_sends_once(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    sms.answer_next(Answer(500))

    with pytest.raises(DeliveriesPending, match="1 sms"):
        await handle(pool, make_sender, smtp, sms, announced)
    row = await the_sms(pool)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("queued", 1, None)
    assert row["last_error"].startswith("HTTP 500")

    await handle(pool, make_sender, smtp, sms, announced)  # the bus's retry
    await handle(pool, make_sender, smtp, sms, announced)  # and a redelivery: nothing more

    assert [r.status for r in sms.requests] == [500, 200]
    assert len({r.key for r in sms.requests}) == 1  # both tries carry the same idempotency key
    row = await the_sms(pool)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert row["last_error"].startswith("HTTP 500")  # why it took two tries stays visible


async def test_provider_timing_out_is_retried_with_the_same_key(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    # The provider takes the message but answers after the client gave up: exactly the case
    # where only the provider's deduplication on the key prevents a second SMS.
    sms.answer_next(Answer(200, delay_s=1.5, accept_despite_delay=True))

    with pytest.raises(DeliveriesPending, match="1 sms"):
        await handle(pool, make_sender, smtp, sms, announced, sms_http_timeout_s=0.3)
    row = await the_sms(pool)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["last_error"].startswith("ReadTimeout")

    await handle(pool, make_sender, smtp, sms, announced, sms_http_timeout_s=0.3)

    assert len(sms.requests) == 2
    assert len({r.key for r in sms.requests}) == 1
    assert (await the_sms(pool))["status"] == "sent"


async def test_provider_429_waits_for_retry_after_before_trying_again(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    sms.answer_next(Answer(429, retry_after="120"))

    with pytest.raises(DeliveriesPending, match="1 sms"):
        await handle(pool, make_sender, smtp, sms, announced)
    row = await the_sms(pool)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["last_error"].startswith("HTTP 429")
    assert timedelta(seconds=115) < row["held_for"] <= timedelta(seconds=120)

    # Neither the event's retry nor the sweeper may call the provider before then.
    with pytest.raises(DeliveriesPending, match="1 sms"):
        await handle(pool, make_sender, smtp, sms, announced)
    assert await make_sender(smtp, sms).sweep_once(min_age_s=0, max_backoff_s=0) == 0
    assert len(sms.requests) == 1

    await pool.execute("UPDATE deliveries SET not_before = now() - interval '1 second'")  # two minutes later
    await handle(pool, make_sender, smtp, sms, announced)
    assert [r.status for r in sms.requests] == [429, 200]
    row = await the_sms(pool)
    assert (row["status"], row["attempts"], row["not_before"]) == ("sent", 2, None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_provider_4xx_fails_at_once_with_the_reason(
    status: int, pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    sms.answer_next(Answer(status))

    await handle(pool, make_sender, smtp, sms, announced)  # permanent: no retry of the event
    await handle(pool, make_sender, smtp, sms, announced)

    row = await the_sms(pool)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith(f"HTTP {status}")
    assert len(sms.requests) == 1


@pytest.mark.parametrize("status", [408, 502, 503])
async def test_provider_408_and_5xx_are_transient(
    status: int, pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    sms.answer_next(Answer(status))
    with pytest.raises(DeliveriesPending):
        await handle(pool, make_sender, smtp, sms, announced)
    assert (await the_sms(pool))["status"] == "queued"


@pytest.mark.parametrize("phone", ["0241 3825 123", "12345", "+1 202 555 0143", "0912 345 67", "số của tôi"])
async def test_an_invalid_phone_fails_at_once_without_calling_the_provider(
    phone: str, pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool, phone=phone)

    await handle(pool, make_sender, smtp, sms, announced)
    await make_sender(smtp, sms).sweep_once(min_age_s=0, max_backoff_s=0)

    row = await the_sms(pool)
    assert (row["status"], row["attempts"], row["recipient"]) == ("failed", 1, phone)
    assert row["last_error"] == f"InvalidPhoneNumber: not a Vietnamese mobile number: {phone!r}"
    assert sms.requests == []


async def test_provider_unreachable_spends_no_attempt_however_long_it_lasts(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    sms.stop()  # connection refused from now on

    for _ in range(3):  # more tries than the attempts limit
        with pytest.raises(ProviderUnreachable, match="sms unreachable"):
            await handle(pool, make_sender, smtp, sms, announced, max_send_attempts=2)

    row = await the_sms(pool)
    assert (row["status"], row["attempts"]) == ("queued", 0)
    assert row["last_error"].startswith("ConnectError")


async def test_a_dead_sms_is_sent_once_replayed(
    pool: asyncpg.Pool, smtp: SmtpServer, sms: FakeSmsProvider, make_sender: SenderFactory
) -> None:
    announced = await one_winner(pool)
    sms.answer_next(Answer(503), Answer(503))
    await handle(pool, make_sender, smtp, sms, announced, max_send_attempts=1)
    assert (await the_sms(pool))["status"] == "dead"

    await pool.execute("UPDATE deliveries SET status = 'queued', attempts = 0")  # what replay does
    with pytest.raises(DeliveriesPending):
        await handle(pool, make_sender, smtp, sms, announced)  # the provider still says 503 once
    await make_sender(smtp, sms).sweep_once(min_age_s=0, max_backoff_s=0)

    assert [r.status for r in sms.requests] == [503, 503, 200]
    assert (await the_sms(pool))["status"] == "sent"


async def test_the_console_provider_writes_a_readable_file(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory, tmp_path: Path
) -> None:
    announced = await one_winner(pool)
    await handle(pool, make_sender, smtp, None, announced, dev_mail_dir=tmp_path / "mail", sms_sender="HOITHI")

    (written,) = (tmp_path / "mail").glob("*.sms.txt")
    row = await the_sms(pool)
    text = written.read_text(encoding="utf-8")
    assert written.name.endswith(f"-+84987654321-{row['id'].hex[:8]}.sms.txt")
    assert "To: +84987654321\nFrom: HOITHI\n" in text
    assert f"Idempotency-Key: {row['id']}" in text
    assert "Encoding: gsm7, 2 segment(s)" in text
    assert "Chuc mung Hoang Van Duc dat Giai Nhat" in text
    assert row["status"] == "sent"
