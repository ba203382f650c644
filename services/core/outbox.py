"""The outbox store (all of its SQL). Services write events here inside the transaction
that makes the change; `services.core.relay` publishes and deletes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.core.events import Event


@dataclass(frozen=True, slots=True)
class PendingEvent:
    row_id: int
    type: str
    body: bytes


async def add_events(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Call inside the caller's transaction."""
    if len(events) == 1:
        event = events[0]
        await conn.execute(
            "INSERT INTO outbox (event_id, type, body) VALUES ($1, $2, $3)", event.id, event.type, event.to_json()
        )
    elif events:
        await conn.execute(
            "INSERT INTO outbox (event_id, type, body) SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])",
            [e.id for e in events],
            [e.type for e in events],
            [e.to_json() for e in events],
        )


async def lock_pending(conn: asyncpg.Connection, limit: int) -> list[PendingEvent]:
    """The oldest unpublished events, locked so that parallel relays take different rows."""
    rows = await conn.fetch("SELECT id, type, body FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
    return [PendingEvent(r["id"], r["type"], r["body"]) for r in rows]


async def delete_published(conn: asyncpg.Connection, row_ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", list(row_ids))


async def count_pending(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox"))
