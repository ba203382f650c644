"""All SQL of the scoring service (schema `scoring`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias
from uuid import UUID

import asyncpg

from services.core import outbox
from services.core.events import Event
from services.scoring.domain import BestAttempt, Result, Winner

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


# --- rounds ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OpenedRound:
    round_id: UUID
    contest_id: UUID
    contest_title: str
    round_title: str
    opens_at: datetime
    closes_at: datetime
    rules: dict[str, Any]
    answer_key: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class AnswerKey:
    """What scoring an attempt of a round needs."""

    round_id: UUID
    opens_at: datetime
    answers: dict[str, list[str]]


async def upsert_round(conn: Conn, r: OpenedRound) -> None:
    """round.opened again (a redelivery or a correction) updates what quiz owns and
    keeps what scoring learnt since (closing, finalisation)."""
    await conn.execute(
        """
        INSERT INTO rounds (round_id, contest_id, contest_title, round_title, opens_at, closes_at, rules, answer_key)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (round_id) DO UPDATE SET
            contest_id = EXCLUDED.contest_id, contest_title = EXCLUDED.contest_title,
            round_title = EXCLUDED.round_title, opens_at = EXCLUDED.opens_at, closes_at = EXCLUDED.closes_at,
            rules = EXCLUDED.rules, answer_key = EXCLUDED.answer_key
        """,
        r.round_id, r.contest_id, r.contest_title, r.round_title, r.opens_at, r.closes_at, r.rules, r.answer_key,
    )


async def answer_keys(conn: Conn, round_ids: Sequence[UUID]) -> dict[UUID, AnswerKey]:
    rows = await conn.fetch(
        "SELECT round_id, opens_at, answer_key FROM rounds WHERE round_id = ANY($1::uuid[])", list(round_ids)
    )
    return {r["round_id"]: AnswerKey(r["round_id"], r["opens_at"], r["answer_key"]) for r in rows}


async def close_round(conn: Conn, round_id: UUID, closed_at: datetime, submitted_count: int) -> bool:
    """Record round.closed; False when the round is unknown (round.opened not seen yet).
    A later round.closed (the round re-closed after more attempts ended) may raise the
    count, never lower it."""
    status = await conn.execute(
        """
        UPDATE rounds SET closed_at = greatest(closed_at, $2),
                          submitted_count = greatest(submitted_count, $3)
        WHERE round_id = $1
        """,
        round_id, closed_at, submitted_count,
    )
    return status != "UPDATE 0"


async def closed_unfinalised(conn: Conn, round_ids: Sequence[UUID]) -> list[UUID]:
    """Of these rounds, those waiting to be finalised (cheap: open rounds drop out)."""
    rows = await conn.fetch(
        """
        SELECT round_id FROM rounds
        WHERE round_id = ANY($1::uuid[]) AND closed_at IS NOT NULL AND finalised_at IS NULL
        """,
        list(round_ids),
    )
    return [r["round_id"] for r in rows]


async def all_round_ids(conn: Conn) -> list[UUID]:
    return [r["round_id"] for r in await conn.fetch("SELECT round_id FROM rounds ORDER BY opens_at, round_id")]


async def opens_at(conn: Conn, round_id: UUID) -> datetime | None:
    value: datetime | None = await conn.fetchval("SELECT opens_at FROM rounds WHERE round_id = $1", round_id)
    return value


# --- participants and units ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ParticipantCopy:
    participant_id: UUID
    full_name: str
    unit_id: UUID | None
    group: str | None


@dataclass(frozen=True, slots=True)
class UnitCopy:
    id: UUID
    code: str
    name: str
    parent_id: UUID | None
    block: str
    headcount: int


async def upsert_participants(conn: Conn, participants: Sequence[ParticipantCopy], *, overwrite: bool) -> None:
    """`overwrite`: registration's own event wins; what attempt.submitted carries only
    fills in participants not known yet. Sorted, so concurrent batches lock rows in the
    same order and never deadlock."""
    unique = sorted({p.participant_id: p for p in participants}.values(), key=lambda p: p.participant_id)
    if not unique:
        return
    conflict = (
        'DO UPDATE SET full_name = EXCLUDED.full_name, unit_id = EXCLUDED.unit_id, "group" = EXCLUDED."group"'
        if overwrite
        else "DO NOTHING"
    )
    await conn.execute(
        f"""
        INSERT INTO participants (participant_id, full_name, unit_id, "group")
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[])
        ON CONFLICT (participant_id) {conflict}
        """,
        [p.participant_id for p in unique],
        [p.full_name for p in unique],
        [p.unit_id for p in unique],
        [p.group for p in unique],
    )


async def replace_units(conn: asyncpg.Connection, units: Sequence[UnitCopy], taken_at: datetime) -> bool:
    """Apply a units.changed snapshot unless a newer one was applied already (events
    arrive in any order); True when applied. Call inside a transaction."""
    newer = await conn.fetchval(
        """
        INSERT INTO units_snapshot (singleton, taken_at) VALUES (true, $1)
        ON CONFLICT (singleton) DO UPDATE SET taken_at = EXCLUDED.taken_at
            WHERE units_snapshot.taken_at <= EXCLUDED.taken_at
        RETURNING taken_at
        """,
        taken_at,
    )
    if newer is None:
        return False
    unique = list({u.id: u for u in units}.values())
    await conn.execute("DELETE FROM units WHERE NOT (id = ANY($1::uuid[]))", [u.id for u in unique])
    await conn.execute(
        """
        INSERT INTO units (id, code, name, parent_id, block, headcount)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::int[])
        ON CONFLICT (id) DO UPDATE SET code = EXCLUDED.code, name = EXCLUDED.name, parent_id = EXCLUDED.parent_id,
                                       block = EXCLUDED.block, headcount = EXCLUDED.headcount
        """,
        [u.id for u in unique],
        [u.code for u in unique],
        [u.name for u in unique],
        [u.parent_id for u in unique],
        [u.block for u in unique],
        [u.headcount for u in unique],
    )
    return True


async def unit_parents(conn: Conn, unit_ids: Sequence[UUID] | None = None) -> dict[UUID, UUID | None]:
    """id → parent of the given units and all their ancestors (of every unit when None)."""
    if unit_ids is None:
        rows = await conn.fetch("SELECT id, parent_id FROM units")
    else:
        # UNION (not UNION ALL) ends the walk even if bad data has a cycle.
        rows = await conn.fetch(
            """
            WITH RECURSIVE chain AS (
                SELECT id, parent_id FROM units WHERE id = ANY($1::uuid[])
                UNION
                SELECT u.id, u.parent_id FROM units u JOIN chain c ON u.id = c.parent_id
            )
            SELECT id, parent_id FROM chain
            """,
            list(unit_ids),
        )
    return {r["id"]: r["parent_id"] for r in rows}


async def unit_names(conn: Conn) -> dict[UUID, str]:
    return {r["id"]: r["name"] for r in await conn.fetch("SELECT id, name FROM units")}


async def participants(conn: Conn) -> list[ParticipantCopy]:
    rows = await conn.fetch('SELECT participant_id, full_name, unit_id, "group" FROM participants')
    return [ParticipantCopy(r["participant_id"], r["full_name"], r["unit_id"], r["group"]) for r in rows]


# --- results ---------------------------------------------------------------------------

_RESULT_COLUMNS = (
    'attempt_id, participant_id, attempt_number, correct, total, duration_ms, started_at, submitted_at, prediction,'
    ' unit_id, "group"'
)


def _result(row: asyncpg.Record) -> Result:
    return Result(
        attempt_id=row["attempt_id"],
        participant_id=row["participant_id"],
        attempt_number=row["attempt_number"],
        correct=row["correct"],
        total=row["total"],
        duration_ms=row["duration_ms"],
        started_at=row["started_at"],
        submitted_at=row["submitted_at"],
        prediction=row["prediction"],
        unit_id=row["unit_id"],
        group=row["group"],
    )


async def insert_results_with_outbox(
    conn: asyncpg.Connection,
    results: Sequence[tuple[UUID, Result]],
    scored_event: Callable[[UUID, Result], Event],
) -> set[UUID]:
    """Insert (round_id, result) pairs in one statement and, in the same transaction, an
    event for each row that was new; the attempt ids inserted. A redelivered attempt
    inserts nothing and emits nothing."""
    unique = sorted({r.attempt_id: (rid, r) for rid, r in results}.values(), key=lambda pair: pair[1].attempt_id)
    if not unique:
        return set()
    async with conn.transaction():
        rows = await conn.fetch(
            """
            INSERT INTO results (attempt_id, round_id, participant_id, unit_id, "group", attempt_number, correct, total,
                                 duration_ms, started_at, submitted_at, prediction)
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int[], $7::int[],
                                 $8::int[], $9::bigint[], $10::timestamptz[], $11::timestamptz[], $12::bigint[])
            ON CONFLICT (attempt_id) DO NOTHING
            RETURNING attempt_id
            """,
            [r.attempt_id for _, r in unique],
            [rid for rid, _ in unique],
            [r.participant_id for _, r in unique],
            [r.unit_id for _, r in unique],
            [r.group for _, r in unique],
            [r.attempt_number for _, r in unique],
            [r.correct for _, r in unique],
            [r.total for _, r in unique],
            [r.duration_ms for _, r in unique],
            [r.started_at for _, r in unique],
            [r.submitted_at for _, r in unique],
            [r.prediction for _, r in unique],
        )
        inserted = {row["attempt_id"] for row in rows}
        await outbox.add_events(conn, [scored_event(rid, r) for rid, r in unique if r.attempt_id in inserted])
    return inserted


async def best_attempts(conn: Conn, round_id: UUID) -> list[BestAttempt]:
    """domain.best_attempt_per_participant done by PostgreSQL (same order, tested to
    agree): a round can hold hundreds of thousands of attempts, only the best of each
    participant need leave the database."""
    rows = await conn.fetch(
        f"""
        SELECT DISTINCT ON (participant_id) {_RESULT_COLUMNS},
               max(attempt_number) OVER (PARTITION BY participant_id) AS attempts_used
        FROM results WHERE round_id = $1
        ORDER BY participant_id, correct DESC, duration_ms, submitted_at, attempt_number, attempt_id
        """,
        round_id,
    )
    return [BestAttempt(_result(r), r["attempts_used"]) for r in rows]


async def results_scored_since(conn: Conn, since: datetime, round_ids: Sequence[UUID]) -> list[tuple[UUID, Result]]:
    rows = await conn.fetch(
        f"""
        SELECT round_id, {_RESULT_COLUMNS} FROM results
        WHERE scored_at >= $1 AND round_id = ANY($2::uuid[])
        """,
        since,
        list(round_ids),
    )
    return [(r["round_id"], _result(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    attempt_id: UUID
    round_id: UUID
    participant_id: UUID
    correct: int
    total: int
    duration_ms: int


async def result_of_attempt(conn: Conn, attempt_id: UUID) -> AttemptResult | None:
    row = await conn.fetchrow(
        "SELECT attempt_id, round_id, participant_id, correct, total, duration_ms FROM results WHERE attempt_id = $1",
        attempt_id,
    )
    return AttemptResult(**dict(row)) if row else None


async def count_results(conn: Conn, round_id: UUID) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM results WHERE round_id = $1", round_id))


# --- finalisation and winners ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RoundToFinalise:
    round_id: UUID
    contest_id: UUID
    rules: dict[str, Any]
    submitted_count: int
    scored_count: int

    @property
    def complete(self) -> bool:
        return self.scored_count >= self.submitted_count


async def lock_round_to_finalise(conn: asyncpg.Connection, round_id: UUID) -> RoundToFinalise | None:
    """The round, locked until the transaction ends, if it is closed and not finalised:
    two workers finalising at once would otherwise both write winners."""
    row = await conn.fetchrow(
        """
        SELECT round_id, contest_id, rules, submitted_count FROM rounds
        WHERE round_id = $1 AND closed_at IS NOT NULL AND finalised_at IS NULL
        FOR UPDATE
        """,
        round_id,
    )
    if row is None:
        return None
    scored = await count_results(conn, round_id)
    return RoundToFinalise(row["round_id"], row["contest_id"], row["rules"], row["submitted_count"] or 0, scored)


async def contest_winners(conn: Conn, contest_id: UUID, *, except_round: UUID) -> set[UUID]:
    rows = await conn.fetch(
        """
        SELECT DISTINCT w.participant_id FROM winners w JOIN rounds r USING (round_id)
        WHERE r.contest_id = $1 AND w.round_id <> $2
        """,
        contest_id,
        except_round,
    )
    return {r["participant_id"] for r in rows}


async def save_final(conn: asyncpg.Connection, round_id: UUID, truth: int | None, winners: Sequence[Winner]) -> None:
    """Winners with the names and units known now (a snapshot: the list is what was
    decided, even if someone renames later), and the round marked final."""
    if winners:
        await conn.execute(
            """
            INSERT INTO winners (round_id, rank, participant_id, name, unit_name, prize, correct, duration_ms,
                                 prediction_error)
            SELECT $1, w.rank, w.participant_id, coalesce(p.full_name, ''), u.name, w.prize, w.correct,
                   w.duration_ms, w.prediction_error
            FROM unnest($2::int[], $3::uuid[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::uuid[])
                 AS w(rank, participant_id, prize, correct, duration_ms, prediction_error, unit_id)
            LEFT JOIN participants p ON p.participant_id = w.participant_id
            LEFT JOIN units u ON u.id = coalesce(w.unit_id, p.unit_id)
            """,
            round_id,
            [w.rank for w in winners],
            [w.participant_id for w in winners],
            [w.prize for w in winners],
            [w.correct for w in winners],
            [w.duration_ms for w in winners],
            [w.prediction_error for w in winners],
            [w.unit_id for w in winners],
        )
    await conn.execute("UPDATE rounds SET finalised_at = now(), truth = $2 WHERE round_id = $1", round_id, truth)


WinnersStatus = Literal["pending", "final", "announced"]


@dataclass(frozen=True, slots=True)
class WinnerRow:
    rank: int
    participant_id: UUID
    name: str
    unit_name: str | None
    prize: str
    correct: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RoundWinners:
    round_id: UUID
    contest_title: str
    round_title: str
    status: WinnersStatus
    winners: list[WinnerRow]


def _status(row: Mapping[str, Any]) -> WinnersStatus:
    if row["announced_at"] is not None:
        return "announced"
    return "final" if row["finalised_at"] is not None else "pending"


async def _winner_rows(conn: Conn, round_id: UUID) -> list[WinnerRow]:
    rows = await conn.fetch(
        """
        SELECT rank, participant_id, name, unit_name, prize, correct, duration_ms
        FROM winners WHERE round_id = $1 ORDER BY rank
        """,
        round_id,
    )
    return [WinnerRow(**dict(r)) for r in rows]


async def round_winners(conn: Conn, round_id: UUID) -> RoundWinners | None:
    row = await conn.fetchrow(
        "SELECT contest_title, round_title, finalised_at, announced_at FROM rounds WHERE round_id = $1", round_id
    )
    if row is None:
        return None
    status = _status(row)
    winners = await _winner_rows(conn, round_id) if status != "pending" else []
    return RoundWinners(round_id, row["contest_title"], row["round_title"], status, winners)


AnnounceOutcome = Literal["announced", "unknown_round", "not_final", "already_announced"]


async def announce_with_outbox(
    pool: asyncpg.Pool, round_id: UUID, announced_event: Callable[[RoundWinners], Event]
) -> AnnounceOutcome:
    """Mark the winners announced and queue winners.announced in one transaction; the row
    lock makes two simultaneous announcements one announcement and one conflict."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT contest_title, round_title, finalised_at, announced_at FROM rounds
            WHERE round_id = $1 FOR UPDATE
            """,
            round_id,
        )
        if row is None:
            return "unknown_round"
        status = _status(row)
        if status == "pending":
            return "not_final"
        if status == "announced":
            return "already_announced"
        await conn.execute("UPDATE rounds SET announced_at = now() WHERE round_id = $1", round_id)
        winners = RoundWinners(round_id, row["contest_title"], row["round_title"], "announced",
                               await _winner_rows(conn, round_id))
        await outbox.add_events(conn, [announced_event(winners)])
    return "announced"
