"""All SQL of notify (schema `notify`): contacts and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from services.notify.domain import AttemptOutcome, Contact, DeliveryStatus, PlannedDelivery

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class DeliveryToSend:
    id: uuid.UUID
    recipient: str
    template: str
    context: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class SweepCandidate:
    id: uuid.UUID
    attempts: int
    idle_s: float


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: uuid.UUID
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
        INSERT INTO contacts (person_id, kind, full_name, email, phone, updated_at)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
        ON CONFLICT (person_id) DO UPDATE
           SET kind = EXCLUDED.kind, full_name = EXCLUDED.full_name, email = EXCLUDED.email,
               phone = EXCLUDED.phone, updated_at = EXCLUDED.updated_at
         WHERE contacts.updated_at <= EXCLUDED.updated_at
        """,
        [c.person_id for c in contacts],
        [c.kind for c in contacts],
        [c.full_name for c in contacts],
        [c.email for c in contacts],
        [c.phone for c in contacts],
        [c.updated_at for c in contacts],
    )


async def contacts_by_id(db: Executor, person_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    rows = await db.fetch(
        "SELECT person_id, kind, full_name, email, phone, updated_at FROM contacts WHERE person_id = ANY($1::uuid[])",
        list(person_ids),
    )
    return {
        r["person_id"]: Contact(r["person_id"], r["kind"], r["full_name"], r["email"], r["phone"], r["updated_at"])
        for r in rows
    }


# --- deliveries: planning and sending ------------------------------------------------------

async def insert_planned(db: Executor, planned: Sequence[PlannedDelivery]) -> int:
    """Queue what is not queued yet; returns how many rows are new."""
    if not planned:
        return 0
    rows = await db.fetch(
        """
        INSERT INTO deliveries (id, idempotency_key, event_id, event_type, channel, recipient, person_id,
                                template, context, status)
        SELECT u.id, u.key, u.event_id, u.event_type, u.channel, u.recipient, u.person_id, u.template,
               u.context, 'queued'
          FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::uuid[],
                      $8::text[], $9::jsonb[])
               AS u(id, key, event_id, event_type, channel, recipient, person_id, template, context)
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
    )
    return len(rows)


async def queued_ids_of_event(db: Executor, event_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await db.fetch(
        "SELECT id FROM deliveries WHERE event_id = $1 AND status = 'queued' ORDER BY created_at, id", event_id
    )
    return [r["id"] for r in rows]


async def lock_if_queued(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> DeliveryToSend | None:
    """Inside a transaction: the delivery, locked until commit, if it is still queued and
    no other sender holds it (SKIP LOCKED: the handler and the sweeper never both send it)."""
    row = await conn.fetchrow(
        """
        SELECT id, recipient, template, context, attempts FROM deliveries
         WHERE id = $1 AND status = 'queued'
           FOR UPDATE SKIP LOCKED
        """,
        delivery_id,
    )
    if row is None:
        return None
    return DeliveryToSend(row["id"], row["recipient"], row["template"], row["context"], row["attempts"])


async def record_attempt(conn: asyncpg.Connection, delivery_id: uuid.UUID, outcome: AttemptOutcome) -> None:
    await conn.execute(
        """
        UPDATE deliveries
           SET status = $2, attempts = $3, last_error = coalesce($4, last_error),
               sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END, updated_at = now()
         WHERE id = $1
        """,
        delivery_id,
        outcome.status,
        outcome.attempts,
        outcome.last_error,
    )


async def sweep_candidates(db: Executor, min_idle_s: float, limit: int) -> list[SweepCandidate]:
    """Queued deliveries untouched for at least `min_idle_s`, oldest first; idle time is
    measured on the database's clock, the one that wrote updated_at."""
    rows = await db.fetch(
        """
        SELECT id, attempts, extract(epoch FROM now() - updated_at)::float8 AS idle_s FROM deliveries
         WHERE status = 'queued' AND updated_at <= now() - make_interval(secs => $1)
         ORDER BY updated_at
         LIMIT $2
        """,
        min_idle_s,
        limit,
    )
    return [SweepCandidate(r["id"], r["attempts"], r["idle_s"]) for r in rows]


# --- deliveries: the organisers' log -------------------------------------------------------

async def list_deliveries(
    db: Executor, *, status: DeliveryStatus | None, recipient: str | None, limit: int, offset: int
) -> list[DeliveryRecord]:
    rows = await db.fetch(
        """
        SELECT id, channel, recipient, template, status, attempts, last_error, created_at, sent_at
          FROM deliveries
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR lower(recipient) = lower($2))
         ORDER BY created_at DESC, id DESC
         LIMIT $3 OFFSET $4
        """,
        status,
        recipient,
        limit,
        offset,
    )
    return [DeliveryRecord(**dict(r)) for r in rows]


async def requeue(db: Executor, delivery_ids: Sequence[uuid.UUID], replayable: Sequence[DeliveryStatus]) -> int:
    """Back to `queued` with a fresh attempts budget (an organiser replays after fixing the
    cause); `last_error` stays until the next attempt. Returns how many changed."""
    rows = await db.fetch(
        """
        UPDATE deliveries SET status = 'queued', attempts = 0, updated_at = now()
         WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])
        RETURNING id
        """,
        list(delivery_ids),
        list(replayable),
    )
    return len(rows)
