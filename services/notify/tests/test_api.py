"""The organisers' routes: the delivery log and replay, in-process against the real database."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from services.core.testing import running_app
from services.notify.app import create_app
from services.notify.settings import DEFAULT_TEMPLATES_DIR
from services.notify.templating import TemplateCatalogError
from services.notify.tests.support import (
    SenderFactory,
    SmtpServer,
    participant_registered,
    settings_for,
    winners_announced,
)
from services.notify.worker import handlers, on_contacts_changed, participant_contact

TokenFactory = Callable[..., str]
URL = "/api/admin/notifications"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def announce_to(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory, *emails: str, with_phone: bool = False
) -> uuid.UUID:
    """Register one winner per address (contacts only: no sign-up confirmation) and handle
    the announcement (failures tolerated); returns the event id."""
    people = [(uuid.uuid4(), email) for email in emails]
    routes = handlers(pool, make_sender(smtp))
    registrations = [
        participant_registered(p, f"Người {e}", e, **({} if with_phone else {"phone": None})) for p, e in people
    ]
    await on_contacts_changed(pool, participant_contact, registrations)
    announced = winners_announced(
        [(p, f"Người {e}", rank, "Giải Khuyến khích") for rank, (p, e) in enumerate(people, 1)]
    )
    await routes["winners.announced"]([announced])
    return announced.id


@pytest.mark.usefixtures("test_env")
async def test_the_log_lists_deliveries_newest_first_with_filters(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory, make_token: TokenFactory
) -> None:
    smtp.inbox.refuse["bad@example.vn"] = "550 5.1.1 No such user"
    await announce_to(pool, smtp, make_sender, "ok@example.vn", "bad@example.vn")
    await announce_to(pool, smtp, make_sender, "later@example.vn")
    await pool.execute(
        "UPDATE deliveries SET created_at = created_at - interval '1 hour' WHERE recipient <> 'later@example.vn'"
    )
    headers = bearer(make_token(role="organiser"))

    async with running_app(create_app(settings_for(smtp))) as client:
        everything = await client.get(URL, headers=headers)
        failed = await client.get(URL, params={"status": "failed"}, headers=headers)
        by_recipient = await client.get(URL, params={"recipient": "OK@example.vn"}, headers=headers)
        page = await client.get(URL, params={"limit": 1, "offset": 1}, headers=headers)
        bad_status = await client.get(URL, params={"status": "lost"}, headers=headers)
        bad_limit = await client.get(URL, params={"limit": 0}, headers=headers)

    assert everything.status_code == 200
    rows = everything.json()
    assert len(rows) == 3
    assert rows[0]["recipient"] == "later@example.vn"
    assert set(rows[0]) == {
        "id", "event_id", "event_type", "channel", "recipient", "template", "status", "attempts", "last_error",
        "created_at", "sent_at",
    }
    assert (rows[0]["channel"], rows[0]["template"], rows[0]["status"], rows[0]["attempts"]) == (
        "email", "winner", "sent", 1
    )
    assert rows[0]["created_at"].endswith(("Z", "+00:00")) and rows[0]["sent_at"] is not None
    assert [(r["recipient"], r["last_error"], r["sent_at"]) for r in failed.json()] == [
        ("bad@example.vn", "550 5.1.1 No such user", None)
    ]
    assert [r["recipient"] for r in by_recipient.json()] == ["ok@example.vn"]
    assert len(page.json()) == 1 and page.json()[0]["recipient"] != "later@example.vn"
    assert bad_status.status_code == 422 and bad_status.json()["errors"][0]["field"] == "status"
    assert bad_limit.status_code == 422 and bad_limit.json()["errors"][0]["field"] == "limit"


@pytest.mark.usefixtures("test_env")
async def test_the_log_filters_by_channel_template_and_event(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory, make_token: TokenFactory
) -> None:
    first = await announce_to(pool, smtp, make_sender, "mot@example.vn", "hai@example.vn", with_phone=True)
    second = await announce_to(pool, smtp, make_sender, "ba@example.vn", with_phone=True)
    await pool.execute("UPDATE deliveries SET template = 'nudge' WHERE recipient = 'ba@example.vn'")
    headers = bearer(make_token(role="organiser"))

    async with running_app(create_app(settings_for(smtp))) as client:
        async def get(**params: str) -> list[dict[str, str]]:
            response = await client.get(URL, params=params, headers=headers)
            assert response.status_code == 200, response.text
            return list(response.json())

        sms = await get(channel="sms")
        emails_of_first = await get(channel="email", event_id=str(first))
        nudges = await get(template="nudge")
        of_second = await get(event_id=str(second))
        nothing = await get(event_id=str(uuid.uuid4()))
        bad_channel = await client.get(URL, params={"channel": "fax"}, headers=headers)
        bad_event = await client.get(URL, params={"event_id": "nope"}, headers=headers)
        bad_template = await client.get(URL, params={"template": "../x"}, headers=headers)

    assert len(sms) == 3 and {r["channel"] for r in sms} == {"sms"}
    assert all(r["recipient"].startswith("09") for r in sms)
    assert sorted(r["recipient"] for r in emails_of_first) == ["hai@example.vn", "mot@example.vn"]
    assert {r["event_id"] for r in emails_of_first} == {str(first)}
    assert {r["event_type"] for r in emails_of_first} == {"winners.announced"}
    assert [r["recipient"] for r in nudges] == ["ba@example.vn"]
    assert sorted(r["channel"] for r in of_second) == ["email", "sms"]
    assert nothing == []
    assert bad_channel.status_code == 422 and bad_channel.json()["errors"][0]["field"] == "channel"
    assert bad_event.status_code == 422 and bad_event.json()["errors"][0]["field"] == "event_id"
    assert bad_template.status_code == 422 and bad_template.json()["errors"][0]["field"] == "template"


@pytest.mark.usefixtures("test_env")
async def test_replay_requeues_failed_deliveries_and_the_sweeper_sends_them(
    pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory, make_token: TokenFactory
) -> None:
    smtp.inbox.refuse["bad@example.vn"] = "550 5.1.1 No such user"
    await announce_to(pool, smtp, make_sender, "ok@example.vn", "bad@example.vn")
    ids = {r["recipient"]: r["id"] for r in await pool.fetch("SELECT id, recipient FROM deliveries")}
    del smtp.inbox.refuse["bad@example.vn"]  # the organiser had the address fixed at the relay
    headers = bearer(make_token(role="organiser"))

    async with running_app(create_app(settings_for(smtp))) as client:
        replay = await client.post(
            f"{URL}/replay",
            json={"ids": [str(ids["bad@example.vn"]), str(ids["ok@example.vn"]), str(uuid.uuid4())]},
            headers=headers,
        )
        queued = (await client.get(URL, params={"status": "queued"}, headers=headers)).json()

        assert await make_sender(smtp).sweep_once(min_age_s=0, max_backoff_s=0) == 1
        after = {r["recipient"]: r for r in (await client.get(URL, headers=headers)).json()}

    assert replay.status_code == 202
    assert replay.json() == {"requeued": 1}  # the sent one and the unknown id are left alone
    assert [(r["recipient"], r["attempts"]) for r in queued] == [("bad@example.vn", 0)]
    assert (after["bad@example.vn"]["status"], after["bad@example.vn"]["attempts"]) == ("sent", 1)
    assert sorted(r.recipient for r in smtp.inbox.received) == ["bad@example.vn", "ok@example.vn"]


@pytest.mark.usefixtures("test_env")
async def test_replay_validates_its_body(smtp: SmtpServer, pool: asyncpg.Pool, make_token: TokenFactory) -> None:
    headers = bearer(make_token(role="organiser"))
    async with running_app(create_app(settings_for(smtp))) as client:
        empty = await client.post(f"{URL}/replay", json={"ids": []}, headers=headers)
        not_uuid = await client.post(f"{URL}/replay", json={"ids": ["nope"]}, headers=headers)
        missing = await client.post(f"{URL}/replay", json={}, headers=headers)

    assert [r.status_code for r in (empty, not_uuid, missing)] == [422, 422, 422]
    assert empty.json()["errors"][0]["field"] == "ids"
    assert not_uuid.json()["errors"][0]["field"] == "ids.0"
    assert missing.json()["errors"][0]["field"] == "ids"


@pytest.mark.usefixtures("test_env")
@pytest.mark.parametrize("role", ["participant", "coordinator"])
async def test_only_organisers_may_read_or_replay(
    role: str, smtp: SmtpServer, pool: asyncpg.Pool, make_token: TokenFactory
) -> None:
    headers = bearer(make_token(role=role))
    async with running_app(create_app(settings_for(smtp))) as client:
        listed = await client.get(URL, headers=headers)
        replayed = await client.post(f"{URL}/replay", json={"ids": [str(uuid.uuid4())]}, headers=headers)
        anonymous = await client.get(URL)

    assert (listed.status_code, replayed.status_code, anonymous.status_code) == (403, 403, 401)
    assert listed.headers["content-type"] == "application/problem+json"


@pytest.mark.usefixtures("test_env")
async def test_a_broken_template_stops_the_api_at_start_up(smtp: SmtpServer, tmp_path: Path) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, broken)
    (broken / "winner.subject.txt").write_text("{% if %}", encoding="utf-8")

    with pytest.raises(TemplateCatalogError, match=r"winner\.subject\.txt"):
        async with running_app(create_app(settings_for(smtp, templates_dir=broken))):
            pass


@pytest.mark.usefixtures("test_env")
async def test_ready_when_postgres_answers(smtp: SmtpServer, pool: asyncpg.Pool) -> None:
    async with running_app(create_app(settings_for(smtp))) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok"}
