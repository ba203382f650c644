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
from services.notify.worker import handlers

TokenFactory = Callable[..., str]
URL = "/api/admin/notifications"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def announce_to(pool: asyncpg.Pool, smtp: SmtpServer, make_sender: SenderFactory, *emails: str) -> None:
    """Register one winner per address and handle the announcement (failures tolerated)."""
    people = [(uuid.uuid4(), email) for email in emails]
    routes = handlers(pool, make_sender(smtp))
    await routes["participant.registered"]([participant_registered(p, f"Người {e}", e) for p, e in people])
    await routes["winners.announced"](
        [winners_announced([(p, f"Người {e}", rank, "Giải Khuyến khích") for rank, (p, e) in enumerate(people, 1)])]
    )


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
        "id", "channel", "recipient", "template", "status", "attempts", "last_error", "created_at", "sent_at"
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
