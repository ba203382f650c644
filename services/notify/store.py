"""All SQL of notify (schema `notify`): contacts and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from services.notify.domain import AttemptOutcome, Channel, Contact, DeliveryStatus, PlannedDelivery

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class DeliveryToSend:
    id: uuid.UUID
    recipient: str
    template: str
    context: dict[str, Any]
    attempts: int
    channel: Channel = "email"
    language: str = "vi"
    # Its expires_at has passed, on the database's clock.
    expired: bool = False


@dataclass(frozen=True, slots=True)
class QueuedDelivery:
    id: uuid.UUID
    channel: Channel


@dataclass(frozen=True, slots=True)
class SweepCandidate:
    id: uuid.UUID
    attempts: int
    idle_s: float
    channel: Channel = "email"


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    channel: str
    recipient: str
    template: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


# --- contacts ------------------------------------------------------------------------------

async def upsert_contacts(db: Executor, contacts: Sequence[Contact]) -> None:
    """Idempotent; an older change arriving late never overwrites a newer one. The caller
    passes at most one contact per person (domain.newest_contacts)."""
    if not contacts:
        return
    await db.execute(
        """
        INSERT INTO contacts (person_id, kind, full_name, email, phone, updated_at, role, unit_id, locale)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                             $7::text[], $8::uuid[], $9::text[])
        ON CONFLICT (person_id) DO UPDATE
           SET kind = EXCLUDED.kind, full_name = EXCLUDED.full_name, email = EXCLUDED.email,
               phone = EXCLUDED.phone, updated_at = EXCLUDED.updated_at, role = EXCLUDED.role,
               unit_id = EXCLUDED.unit_id, locale = EXCLUDED.locale
         WHERE contacts.updated_at <= EXCLUDED.updated_at
        """,
        [c.person_id for c in contacts],
        [c.kind for c in contacts],
        [c.full_name for c in contacts],
        [c.email for c in contacts],
        [c.phone for c in contacts],
        [c.updated_at for c in contacts],
        [c.role for c in contacts],
        [c.unit_id for c in contacts],
        [c.locale for c in contacts],
    )


_CONTACT_COLUMNS = "person_id, kind, full_name, email, phone, updated_at, role, unit_id, locale"


def _contact(r: asyncpg.Record) -> Contact:
    return Contact(
        r["person_id"], r["kind"], r["full_name"], r["email"], r["phone"], r["updated_at"], r["role"], r["unit_id"],
        r["locale"],
    )


async def contacts_by_id(db: Executor, person_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    rows = await db.fetch(
        f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE person_id = ANY($1::uuid[])", list(person_ids)
    )
    return {r["person_id"]: _contact(r) for r in rows}


async def staff_with_role(db: Executor, role: str) -> list[Contact]:
    rows = await db.fetch(
        f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE kind = 'staff' AND role = $1 ORDER BY person_id", role
    )
    return [_contact(r) for r in rows]


async def coordinators_of_units(db: Executor, unit_ids: Sequence[uuid.UUID], role: str) -> list[Contact]:
    rows = await db.fetch(
        f"""SELECT {_CONTACT_COLUMNS} FROM contacts
             WHERE kind = 'staff' AND role = $2 AND unit_id = ANY($1::uuid[])
             ORDER BY unit_id, person_id""",
        list(unit_ids),
        role,
    )
    return [_contact(r) for r in rows]


# --- deliveries: planning and sending ------------------------------------------------------

async def insert_planned(db: Executor, planned: Sequence[PlannedDelivery]) -> int:
    """Queue what is not queued yet; returns how many rows are new."""
    if not planned:
        return 0
    rows = await db.fetch(
        """
        INSERT INTO deliveries (id, idempotency_key, event_id, event_type, channel, recipient, person_id,
                                template, context, language, expires_at, status)
        SELECT u.id, u.key, u.event_id, u.event_type, u.channel, u.recipient, u.person_id, u.template,
               u.context, u.language, u.expires_at, 'queued'
          FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::uuid[],
                      $8::text[], $9::jsonb[], $10::text[], $11::timestamptz[])
               AS u(id, key, event_id, event_type, channel, recipient, person_id, template, context, language,
                    expires_at)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
        """,
        [p.id for p in planned],
        [p.idempotency_key for p in planned],
        [p.event_id for p in planned],
        [p.event_type for p in planned],
        [p.channel for p in planned],
        [p.recipient for p in planned],
        [p.person_id for p in planned],
        [p.template for p in planned],
        [p.context for p in planned],
        [p.language for p in planned],
        [p.expires_at for p in planned],
    )
    return len(rows)


# A delivery the provider asked us to hold back (429 + Retry-After) is not due before then.
_DUE = "(not_before IS NULL OR not_before <= now())"


async def queued_ids_of_event(db: Executor, event_id: uuid.UUID) -> list[uuid.UUID]:
    return [q.id for q in await due_deliveries_of_events(db, [event_id])]


async def due_deliveries_of_events(db: Executor, event_ids: Sequence[uuid.UUID]) -> list[QueuedDelivery]:
    rows = await db.fetch(
        f"""SELECT id, channel FROM deliveries
             WHERE event_id = ANY($1::uuid[]) AND status = 'queued' AND {_DUE}
             ORDER BY created_at, id""",
        list(event_ids),
    )
    return [QueuedDelivery(r["id"], r["channel"]) for r in rows]


async def queued_count_by_channel(db: Executor, event_ids: Sequence[uuid.UUID]) -> dict[str, int]:
    rows = await db.fetch(
        """SELECT channel, count(*) AS n FROM deliveries
            WHERE event_id = ANY($1::uuid[]) AND status = 'queued' GROUP BY channel ORDER BY channel""",
        list(event_ids),
    )
    return {r["channel"]: int(r["n"]) for r in rows}


async def lock_if_queued(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> DeliveryToSend | None:
    """Inside a transaction: the delivery, locked until commit, if it is still queued and
    no other sender holds it (SKIP LOCKED: the handler and the sweeper never both send it)."""
    row = await conn.fetchrow(
        f"""
        SELECT id, recipient, template, context, attempts, channel, language,
               coalesce(expires_at <= now(), false) AS expired
          FROM deliveries
         WHERE id = $1 AND status = 'queued' AND {_DUE}
           FOR UPDATE SKIP LOCKED
        """,
        delivery_id,
    )
    if row is None:
        return None
    return DeliveryToSend(
        row["id"], row["recipient"], row["template"], row["context"], row["attempts"], row["channel"],
        row["language"], row["expired"],
    )


async def record_attempt(
    conn: asyncpg.Connection, delivery_id: uuid.UUID, outcome: AttemptOutcome, scrub_when_sent: Sequence[str] = ()
) -> None:
    """`scrub_when_sent`: context keys dropped once the message is out (a one-time code has
    no business staying in the database)."""
    await conn.execute(
        """
        UPDATE deliveries
           SET status = $2, attempts = $3, last_error = coalesce($4, last_error),
               sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
               not_before = CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $5) END,
               context = CASE WHEN $2 = 'sent' THEN context - $6::text[] ELSE context END,
               updated_at = now()
         WHERE id = $1
        """,
        delivery_id,
        outcome.status,
        outcome.attempts,
        outcome.last_error,
        outcome.retry_after_s,
        list(scrub_when_sent),
    )


async def sweep_candidates(db: Executor, min_idle_s: float, limit: int) -> list[SweepCandidate]:
    """Queued deliveries untouched for at least `min_idle_s`, oldest first; idle time is
    measured on the database's clock, the one that wrote updated_at."""
    rows = await db.fetch(
        f"""
        SELECT id, attempts, extract(epoch FROM now() - updated_at)::float8 AS idle_s, channel FROM deliveries
         WHERE status = 'queued' AND updated_at <= now() - make_interval(secs => $1) AND {_DUE}
         ORDER BY updated_at
         LIMIT $2
        """,
        min_idle_s,
        limit,
    )
    return [SweepCandidate(r["id"], r["attempts"], r["idle_s"], r["channel"]) for r in rows]


# --- deliveries: the organisers' log -------------------------------------------------------

async def list_deliveries(
    db: Executor,
    *,
    status: DeliveryStatus | None,
    recipient: str | None,
    limit: int,
    offset: int,
    channel: Channel | None = None,
    template: str | None = None,
    event_id: uuid.UUID | None = None,
) -> list[DeliveryRecord]:
    rows = await db.fetch(
        """
        SELECT id, event_id, event_type, channel, recipient, template, status, attempts, last_error, created_at,
               sent_at
          FROM deliveries
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR lower(recipient) = lower($2))
           AND ($5::text IS NULL OR channel = $5) AND ($6::text IS NULL OR template = $6)
           AND ($7::uuid IS NULL OR event_id = $7)
         ORDER BY created_at DESC, id DESC
         LIMIT $3 OFFSET $4
        """,
        status,
        recipient,
        limit,
        offset,
        channel,
        template,
        event_id,
    )
    return [DeliveryRecord(**dict(r)) for r in rows]


async def requeue(db: Executor, delivery_ids: Sequence[uuid.UUID], replayable: Sequence[DeliveryStatus]) -> int:
    """Back to `queued` with a fresh attempts budget (an organiser replays after fixing the
    cause); `last_error` stays until the next attempt. Returns how many changed."""
    rows = await db.fetch(
        """
        UPDATE deliveries SET status = 'queued', attempts = 0, not_before = NULL, updated_at = now()
         WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])
        RETURNING id
        """,
        list(delivery_ids),
        list(replayable),
    )
    return len(rows)
