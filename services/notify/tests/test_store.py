"""The SQL of notify, against the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from services.notify import domain, store
from services.notify.domain import Contact, PlannedDelivery

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def planned(event_id: uuid.UUID, recipient: str = "a@example.com") -> PlannedDelivery:
    person_id = uuid.uuid4()
    key = domain.idempotency_key(event_id, person_id, "email")
    return PlannedDelivery(
        domain.delivery_id(key), key, event_id, "winners.announced", "email", recipient, person_id, "winner",
        {"full_name": "Đỗ Thị Lan", "rank": 1},
    )


async def test_contact_upsert_is_idempotent_and_a_late_older_change_loses(pool: asyncpg.Pool) -> None:
    pid = uuid.uuid4()
    newer = Contact(pid, "participant", "Đỗ Thị Lan", "lan@example.vn", "0901", T0 + timedelta(hours=1))
    older = Contact(pid, "participant", "Do Thi Lan", "old@example.vn", "0900", T0)

    await store.upsert_contacts(pool, [newer])
    await store.upsert_contacts(pool, [newer])
    await store.upsert_contacts(pool, [older])

    assert await store.contacts_by_id(pool, [pid, uuid.uuid4()]) == {pid: newer}
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 1


async def test_a_newer_change_replaces_the_contact(pool: asyncpg.Pool) -> None:
    pid = uuid.uuid4()
    await store.upsert_contacts(pool, [Contact(pid, "staff", "A", None, None, T0)])
    changed = Contact(pid, "staff", "A", "a@example.vn", "0902", T0 + timedelta(seconds=1))
    await store.upsert_contacts(pool, [changed])
    assert (await store.contacts_by_id(pool, [pid]))[pid] == changed


async def test_insert_planned_ignores_keys_already_there(pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    first, second = planned(event_id), planned(event_id, "b@example.com")

    assert await store.insert_planned(pool, [first]) == 1
    assert await store.insert_planned(pool, [first, second]) == 1
    assert await store.insert_planned(pool, [first, second]) == 0

    row = await pool.fetchrow("SELECT * FROM deliveries WHERE id = $1", first.id)
    assert row["status"] == "queued" and row["attempts"] == 0
    assert row["context"] == {"full_name": "Đỗ Thị Lan", "rank": 1}
    assert row["idempotency_key"] == f"{event_id}:{first.person_id}:email"
    assert sorted(await store.queued_ids_of_event(pool, event_id)) == sorted([first.id, second.id])


async def test_record_attempt_sets_sent_at_only_when_sent_and_keeps_the_last_error(pool: asyncpg.Pool) -> None:
    delivery = planned(uuid.uuid4())
    await store.insert_planned(pool, [delivery])
    async with pool.acquire() as conn:
        await store.record_attempt(conn, delivery.id, domain.AttemptOutcome("queued", 1, "SMTPConnectError: x"))
        row = await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery.id)
        assert (row["status"], row["attempts"], row["last_error"], row["sent_at"]) == (
            "queued", 1, "SMTPConnectError: x", None
        )
        await store.record_attempt(conn, delivery.id, domain.AttemptOutcome("sent", 2, None))
        row = await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery.id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, "SMTPConnectError: x")
    assert row["sent_at"] is not None


async def test_a_locked_delivery_is_skipped_by_another_sender(pool: asyncpg.Pool) -> None:
    delivery = planned(uuid.uuid4())
    await store.insert_planned(pool, [delivery])
    async with pool.acquire() as first, first.transaction():
        assert (await store.lock_if_queued(first, delivery.id)) is not None
        async with pool.acquire() as second, second.transaction():
            await second.execute("SET LOCAL lock_timeout = '2s'")  # waiting instead of skipping fails, not hangs
            assert await store.lock_if_queued(second, delivery.id) is None


async def test_sweep_candidates_are_queued_and_idle_long_enough(pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    idle, fresh, sent = planned(event_id), planned(event_id), planned(event_id)
    await store.insert_planned(pool, [idle, fresh, sent])
    await pool.execute(
        "UPDATE deliveries SET updated_at = now() - interval '1 minute' WHERE id = ANY($1)", [idle.id, sent.id]
    )
    await pool.execute("UPDATE deliveries SET status = 'sent' WHERE id = $1", sent.id)

    candidates = await store.sweep_candidates(pool, 10, 100)

    assert [c.id for c in candidates] == [idle.id]
    assert 55 < candidates[0].idle_s < 120


async def test_requeue_touches_only_failed_and_dead(pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    rows = {status: planned(event_id) for status in domain.DELIVERY_STATUSES}
    await store.insert_planned(pool, list(rows.values()))
    for status, delivery in rows.items():
        await pool.execute("UPDATE deliveries SET status = $2, attempts = 3 WHERE id = $1", delivery.id, status)

    ids = [d.id for d in rows.values()] + [uuid.uuid4()]
    assert await store.requeue(pool, ids, domain.REPLAYABLE_STATUSES) == 2

    rows_after = await pool.fetch("SELECT id, status, attempts FROM deliveries")
    after = {r["id"]: (r["status"], r["attempts"]) for r in rows_after}
    assert after[rows["failed"].id] == ("queued", 0)
    assert after[rows["dead"].id] == ("queued", 0)
    assert after[rows["sent"].id] == ("sent", 3)
    assert after[rows["queued"].id] == ("queued", 3)


async def test_list_filters_by_status_and_recipient_newest_first(pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    older, newer, other = planned(event_id, "Lan@Example.vn"), planned(event_id, "lan@example.vn"), planned(event_id)
    await store.insert_planned(pool, [older, newer, other])
    await pool.execute("UPDATE deliveries SET created_at = now() - interval '1 hour' WHERE id = $1", older.id)
    await pool.execute("UPDATE deliveries SET status = 'failed' WHERE id = $1", other.id)

    by_recipient = await store.list_deliveries(pool, status=None, recipient="LAN@example.vn", limit=10, offset=0)
    assert [r.id for r in by_recipient] == [newer.id, older.id]
    failed = await store.list_deliveries(pool, status="failed", recipient=None, limit=10, offset=0)
    assert [r.id for r in failed] == [other.id]
    page = await store.list_deliveries(pool, status=None, recipient=None, limit=1, offset=2)
    assert [r.id for r in page] == [older.id]


# --- issue 5: staff roles, SMS, Retry-After, expiry, secrets, filters --------------------------

def planned_to(
    event_id: uuid.UUID, channel: domain.Channel = "sms", recipient: str = "0912345678", template: str = "winner",
    **kw: object,
) -> PlannedDelivery:
    person_id = uuid.uuid4()
    key = domain.idempotency_key(event_id, person_id, channel)
    return PlannedDelivery(
        domain.delivery_id(key), key, event_id, "winners.announced", channel, recipient, person_id, template,
        {"full_name": "Đỗ Thị Lan", "code": "123456"}, **kw,  # type: ignore[arg-type]
    )


async def test_staff_contacts_keep_role_unit_and_locale_and_are_found_by_them(pool: asyncpg.Pool) -> None:
    unit_a, unit_b = uuid.uuid4(), uuid.uuid4()
    organiser = Contact(uuid.uuid4(), "staff", "BTC", "btc@example.vn", None, T0, role="organiser", locale="en")
    coord_a = Contact(uuid.uuid4(), "staff", "A", None, "0971111111", T0, role="coordinator", unit_id=unit_a)
    coord_b = Contact(uuid.uuid4(), "staff", "B", None, None, T0, role="coordinator", unit_id=unit_b)
    participant_in_a = Contact(uuid.uuid4(), "participant", "P", None, None, T0, role="coordinator", unit_id=unit_a)
    await store.upsert_contacts(pool, [organiser, coord_a, coord_b, participant_in_a])

    assert await store.staff_with_role(pool, "organiser") == [organiser]
    assert await store.coordinators_of_units(pool, [unit_a], "coordinator") == [coord_a]
    assert {c.person_id for c in await store.coordinators_of_units(pool, [unit_a, unit_b], "coordinator")} == {
        coord_a.person_id, coord_b.person_id
    }

    moved = Contact(coord_a.person_id, "staff", "A", None, "0971111111", T0 + timedelta(minutes=1),
                    role="coordinator", unit_id=unit_b)
    await store.upsert_contacts(pool, [moved])
    assert await store.coordinators_of_units(pool, [unit_a], "coordinator") == []


async def test_a_code_delivery_has_no_person_and_keeps_its_language_and_expiry(pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    key = domain.idempotency_key(event_id, "request-1", "sms")
    code = PlannedDelivery(domain.delivery_id(key), key, event_id, "code.requested", "sms", "0912345678", None,
                           "code", {"code": "1"}, "en", T0)
    assert await store.insert_planned(pool, [code]) == 1
    async with pool.acquire() as conn, conn.transaction():
        locked = await store.lock_if_queued(conn, code.id)
    assert locked is not None
    assert (locked.channel, locked.language, locked.expired) == ("sms", "en", True)  # T0 is in the past


async def test_a_delivery_held_back_by_retry_after_is_not_due_anywhere(pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    held, ready = planned_to(event_id), planned_to(event_id, recipient="0987654321")
    await store.insert_planned(pool, [held, ready])
    async with pool.acquire() as conn:
        await store.record_attempt(conn, held.id, domain.AttemptOutcome("queued", 1, "HTTP 429", 60))
        await store.record_attempt(conn, ready.id, domain.AttemptOutcome("queued", 1, "HTTP 500", None))
        async with conn.transaction():
            assert await store.lock_if_queued(conn, held.id) is None
    assert [q.id for q in await store.due_deliveries_of_events(pool, [event_id])] == [ready.id]
    assert [c.id for c in await store.sweep_candidates(pool, 0, 10)] == [ready.id]
    assert await store.queued_count_by_channel(pool, [event_id]) == {"sms": 2}  # held still counts as waiting
    not_before = await pool.fetchval("SELECT not_before - now() FROM deliveries WHERE id = $1", held.id)
    assert timedelta(seconds=55) < not_before <= timedelta(seconds=60)

    assert await store.requeue(pool, [held.id], ["queued"]) == 1  # a replay forgets the hold
    assert await pool.fetchval("SELECT not_before FROM deliveries WHERE id = $1", held.id) is None


async def test_secrets_leave_the_context_once_sent_and_only_then(pool: asyncpg.Pool) -> None:
    failing, sent = planned_to(uuid.uuid4()), planned_to(uuid.uuid4())
    await store.insert_planned(pool, [failing, sent])
    async with pool.acquire() as conn:
        await store.record_attempt(conn, failing.id, domain.AttemptOutcome("queued", 1, "x"), ["code"])
        await store.record_attempt(conn, sent.id, domain.AttemptOutcome("sent", 1, None), ["code"])
    contexts = {r["id"]: r["context"] for r in await pool.fetch("SELECT id, context FROM deliveries")}
    assert contexts[failing.id] == {"full_name": "Đỗ Thị Lan", "code": "123456"}
    assert contexts[sent.id] == {"full_name": "Đỗ Thị Lan"}


async def test_list_filters_by_channel_template_and_event(pool: asyncpg.Pool) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    sms = planned_to(first)
    email = planned_to(first, "email", "a@example.vn")
    nudge = planned_to(second, "email", "b@example.vn", template="nudge")
    await store.insert_planned(pool, [sms, email, nudge])

    async def ids(**filters: object) -> set[uuid.UUID]:
        found = await store.list_deliveries(pool, status=None, recipient=None, limit=10, offset=0, **filters)  # type: ignore[arg-type]
        return {r.id for r in found}

    assert await ids(channel="sms") == {sms.id}
    assert await ids(channel="email") == {email.id, nudge.id}
    assert await ids(template="nudge") == {nudge.id}
    assert await ids(event_id=first) == {sms.id, email.id}
    assert await ids(event_id=first, channel="email", template="winner") == {email.id}
    assert await ids(event_id=uuid.uuid4()) == set()
    (record,) = await store.list_deliveries(pool, status=None, recipient=None, limit=10, offset=0, channel="sms")
    assert (record.event_id, record.event_type) == (first, "winners.announced")
