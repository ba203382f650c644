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
from services.scoring import domain
from services.scoring.domain import BestAttempt, Result, UnitParticipation, Winner

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
    """What scoring an attempt of a round and placing it on the boards need."""

    round_id: UUID
    opens_at: datetime
    answers: dict[str, list[str]]
    require_all_answered: bool = False
    freeze_at: datetime | None = None

    @classmethod
    def of(cls, round_id: UUID, opens_at: datetime, closes_at: datetime, rules: Mapping[str, Any],
           answers: dict[str, list[str]]) -> AnswerKey:
        return cls(round_id, opens_at, answers, bool(rules.get("require_all_answered")),
                   domain.freeze_at(closes_at, int(rules.get("freeze_s") or 0)))


async def upsert_round(conn: Conn, r: OpenedRound) -> None:
    """round.opened again (a redelivery or a correction) updates what quiz owns and
    keeps what scoring learnt since (closing, finalisation). Quiz only ever moves a close
    later, so an old copy retried after a newer one must not shorten the round."""
    await conn.execute(
        """
        INSERT INTO rounds (round_id, contest_id, contest_title, round_title, opens_at, closes_at, rules, answer_key)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (round_id) DO UPDATE SET
            contest_id = EXCLUDED.contest_id, contest_title = EXCLUDED.contest_title,
            round_title = EXCLUDED.round_title, opens_at = EXCLUDED.opens_at,
            closes_at = GREATEST(rounds.closes_at, EXCLUDED.closes_at),
            rules = EXCLUDED.rules, answer_key = EXCLUDED.answer_key
        """,
        r.round_id, r.contest_id, r.contest_title, r.round_title, r.opens_at, r.closes_at, r.rules, r.answer_key,
    )


async def answer_keys(conn: Conn, round_ids: Sequence[UUID]) -> dict[UUID, AnswerKey]:
    rows = await conn.fetch(
        "SELECT round_id, opens_at, closes_at, rules, answer_key FROM rounds WHERE round_id = ANY($1::uuid[])",
        list(round_ids),
    )
    return {
        r["round_id"]: AnswerKey.of(r["round_id"], r["opens_at"], r["closes_at"], r["rules"], r["answer_key"])
        for r in rows
    }


@dataclass(frozen=True, slots=True)
class BoardRound:
    """What rebuilding a round's boards needs to know about it."""

    round_id: UUID
    opens_at: datetime
    freeze_at: datetime | None
    final: bool
    groups: tuple[str, ...] = ()


async def board_round(conn: Conn, round_id: UUID) -> BoardRound | None:
    row = await conn.fetchrow(
        "SELECT opens_at, closes_at, rules, finalised_at FROM rounds WHERE round_id = $1", round_id
    )
    if row is None:
        return None
    rules = domain.RoundRules.from_mapping(row["rules"])
    freeze = domain.freeze_at(row["closes_at"], rules.freeze_s)
    return BoardRound(round_id, row["opens_at"], freeze, row["finalised_at"] is not None, rules.groups)


async def is_final(conn: Conn, round_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT finalised_at IS NOT NULL FROM rounds WHERE round_id = $1", round_id))


@dataclass(frozen=True, slots=True)
class RoundInfo:
    round_id: UUID
    contest_id: UUID
    contest_slug: str | None
    contest_title: str
    round_number: int | None
    round_title: str
    opens_at: datetime
    closes_at: datetime
    closed_at: datetime | None

    def open_at(self, now: datetime) -> bool:
        return self.closed_at is None and self.opens_at <= now < self.closes_at


_ROUND_INFO = (
    "round_id, contest_id, rules->>'contest_slug' AS contest_slug, contest_title,"
    " (rules->>'round_number')::int AS round_number, round_title, opens_at, closes_at, closed_at"
)


async def contest_rounds(conn: Conn, contest: UUID | str) -> list[RoundInfo]:
    """The rounds scoring knows of a contest, by id or by slug, oldest first."""
    if isinstance(contest, UUID):
        where, arg = "contest_id = $1", contest
    else:
        where, arg = "rules->>'contest_slug' = $1", contest  # type: ignore[assignment]
    rows = await conn.fetch(f"SELECT {_ROUND_INFO} FROM rounds WHERE {where} ORDER BY opens_at, round_id", arg)
    return [RoundInfo(**dict(r)) for r in rows]


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


async def round_ids_open_first(conn: Conn) -> list[UUID]:
    """Every round, those not final first (the boards people are watching), newest first."""
    rows = await conn.fetch(
        "SELECT round_id FROM rounds ORDER BY finalised_at IS NOT NULL, opens_at DESC, round_id"
    )
    return [r["round_id"] for r in rows]


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
    arrive in any order); True when applied. Call inside a transaction. Rounds with
    entrants in units whose ancestors changed are queued for a board rebuild in the same
    transaction (see pending_rebuilds)."""
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
    before = await unit_parents(conn)
    moved = domain.units_with_new_lineage(before, {u.id: u.parent_id for u in unique})
    if moved:
        # Sequential scan of results: a units.changed that moves units is rare; an index
        # on unit_id would slow every insert at the deadline instead.
        await conn.execute(
            """
            INSERT INTO pending_rebuilds (round_id)
            SELECT DISTINCT round_id FROM results WHERE unit_id = ANY($1::uuid[]) AND counts
            ON CONFLICT (round_id) DO UPDATE SET requested_at = now()
            """,
            list(moved),
        )
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


async def pending_rebuilds(conn: Conn) -> list[tuple[UUID, datetime]]:
    rows = await conn.fetch("SELECT round_id, requested_at FROM pending_rebuilds ORDER BY requested_at")
    return [(r["round_id"], r["requested_at"]) for r in rows]


async def rebuild_done(conn: Conn, round_id: UUID, requested_at: datetime) -> None:
    """Only the request that was served: one queued again meanwhile stays."""
    await conn.execute(
        "DELETE FROM pending_rebuilds WHERE round_id = $1 AND requested_at = $2", round_id, requested_at
    )


async def unit_names(conn: Conn) -> dict[UUID, str]:
    return {r["id"]: r["name"] for r in await conn.fetch("SELECT id, name FROM units")}


async def participants(conn: Conn) -> list[ParticipantCopy]:
    rows = await conn.fetch('SELECT participant_id, full_name, unit_id, "group" FROM participants')
    return [ParticipantCopy(r["participant_id"], r["full_name"], r["unit_id"], r["group"]) for r in rows]


# --- results ---------------------------------------------------------------------------

_RESULT_COLUMNS = (
    'attempt_id, participant_id, attempt_number, correct, total, duration_ms, started_at, submitted_at, prediction,'
    ' unit_id, "group", counts'
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
        counts=row["counts"],
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
                                 duration_ms, started_at, submitted_at, prediction, counts)
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int[], $7::int[],
                                 $8::int[], $9::bigint[], $10::timestamptz[], $11::timestamptz[], $12::bigint[],
                                 $13::boolean[])
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
            [r.counts for _, r in unique],
        )
        inserted = {row["attempt_id"] for row in rows}
        await outbox.add_events(conn, [scored_event(rid, r) for rid, r in unique if r.attempt_id in inserted])
    return inserted


# domain.best_attempt_per_participant's order, the same in every query that picks a
# participant's best attempt.
_BEST_FIRST = "participant_id, correct DESC, duration_ms, submitted_at, attempt_number, attempt_id"


async def best_attempts(
    conn: Conn, round_id: UUID, *, submitted_before: datetime | None = None
) -> list[BestAttempt]:
    """domain.best_attempt_per_participant done by PostgreSQL (same order, tested to
    agree): a round can hold hundreds of thousands of attempts, only the best of each
    participant need leave the database. `submitted_before`: the board as it stood then
    (a frozen board)."""
    rows = await conn.fetch(
        f"""
        SELECT DISTINCT ON (participant_id) * FROM (
            SELECT {_RESULT_COLUMNS}, max(attempt_number) OVER (PARTITION BY participant_id) AS attempts_used
            FROM results WHERE round_id = $1
        ) AS every_attempt
        WHERE counts AND ($2::timestamptz IS NULL OR submitted_at < $2)
        ORDER BY {_BEST_FIRST}
        """,
        round_id,
        submitted_before,
    )
    return [BestAttempt(_result(r), r["attempts_used"]) for r in rows]


@dataclass(frozen=True, slots=True)
class BoardEntry:
    """Of a participant's best attempt, what placing it on the boards needs."""

    participant_id: UUID
    correct: int
    duration_ms: int
    submitted_at: datetime
    unit_id: UUID | None
    group: str | None


async def board_entries(conn: Conn, round_id: UUID, *, submitted_before: datetime | None = None) -> list[BoardEntry]:
    """best_attempts with only what a board needs (tested to agree): rebuilding the
    boards of a large round is mostly reading and decoding these rows."""
    rows = await conn.fetch(
        f"""
        SELECT DISTINCT ON (participant_id) participant_id, correct, duration_ms, submitted_at, unit_id, "group"
        FROM results
        WHERE round_id = $1 AND counts AND ($2::timestamptz IS NULL OR submitted_at < $2)
        ORDER BY {_BEST_FIRST}
        """,
        round_id,
        submitted_before,
    )
    return [BoardEntry(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class BoardSnapshot:
    """A round's best entries, and those submitted before the freeze (when asked), as one
    snapshot of the database saw them. Every result that snapshot did not see was written
    by transaction `oldest_unseen_xid` or a later one."""

    best: list[BoardEntry]
    before_freeze: list[BoardEntry] | None
    oldest_unseen_xid: int


async def board_snapshot(pool: asyncpg.Pool, round_id: UUID, *, freeze_at: datetime | None) -> BoardSnapshot:
    """One REPEATABLE READ snapshot for the live and the frozen boards (they agree with
    each other), and its xmin: the oldest transaction still writing when it was taken."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        xmin = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        best = await board_entries(conn, round_id)
        before = None if freeze_at is None else await board_entries(conn, round_id, submitted_before=freeze_at)
    return BoardSnapshot(best, before, int(xmin))


async def results_unseen_by(conn: Conn, round_ids: Sequence[UUID], oldest_unseen_xid: int
                            ) -> list[tuple[UUID, Result]]:
    """The results of these rounds a snapshot may have missed: those written by
    transaction `oldest_unseen_xid` or later (a few it saw as well, never one it missed).
    Transaction ids wrap at 2^32, so they are compared by age."""
    rows = await conn.fetch(
        f"""
        SELECT round_id, {_RESULT_COLUMNS} FROM results
        WHERE round_id = ANY($1::uuid[]) AND age(xmin) <= age(($2::bigint % 4294967296)::text::xid)
        """,
        list(round_ids),
        oldest_unseen_xid,
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
    counts: bool


async def result_of_attempt(conn: Conn, attempt_id: UUID) -> AttemptResult | None:
    row = await conn.fetchrow(
        """
        SELECT attempt_id, round_id, participant_id, correct, total, duration_ms, counts
        FROM results WHERE attempt_id = $1
        """,
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
                                 prediction_error, "group")
            SELECT $1, w.rank, w.participant_id, coalesce(p.full_name, ''), u.name, w.prize, w.correct,
                   w.duration_ms, w.prediction_error, w.grp
            FROM unnest($2::int[], $3::uuid[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::uuid[],
                        $9::text[])
                 AS w(rank, participant_id, prize, correct, duration_ms, prediction_error, unit_id, grp)
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
            [w.group for w in winners],
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
    group: str | None = None


@dataclass(frozen=True, slots=True)
class RoundSummary:
    """For the organisers' round summary: distinct participants and attempts submitted
    (counting or not), and participants with a counting entry with every answer right."""

    participants: int
    attempts: int
    all_correct: int


@dataclass(frozen=True, slots=True)
class RoundWinners:
    round_id: UUID
    contest_title: str
    round_title: str
    status: WinnersStatus
    winners: list[WinnerRow]
    contest_id: UUID | None = None
    summary: RoundSummary | None = None


def _status(row: Mapping[str, Any]) -> WinnersStatus:
    if row["announced_at"] is not None:
        return "announced"
    return "final" if row["finalised_at"] is not None else "pending"


async def _winner_rows(conn: Conn, round_id: UUID) -> list[WinnerRow]:
    """Group by group, in the order the round lists its groups, then by rank."""
    rows = await conn.fetch(
        """
        SELECT w.rank, w.participant_id, w.name, w.unit_name, w.prize, w.correct, w.duration_ms, w."group"
        FROM winners w JOIN rounds r USING (round_id)
        WHERE w.round_id = $1
        ORDER BY (SELECT g.position FROM jsonb_array_elements(coalesce(r.rules->'groups', '[]'::jsonb))
                                         WITH ORDINALITY AS g(item, position)
                  WHERE g.item->>'code' = w."group"),
                 w."group", w.rank
        """,
        round_id,
    )
    return [WinnerRow(**dict(r)) for r in rows]


async def round_summary(conn: Conn, round_id: UUID) -> RoundSummary:
    row = await conn.fetchrow(
        """
        SELECT count(DISTINCT participant_id) AS participants, count(*) AS attempts,
               count(DISTINCT participant_id) FILTER (WHERE counts AND correct = total) AS all_correct
        FROM results WHERE round_id = $1
        """,
        round_id,
    )
    return RoundSummary(row["participants"], row["attempts"], row["all_correct"])


async def round_winners(conn: Conn, round_id: UUID) -> RoundWinners | None:
    row = await conn.fetchrow(
        "SELECT contest_id, contest_title, round_title, finalised_at, announced_at FROM rounds WHERE round_id = $1",
        round_id,
    )
    if row is None:
        return None
    status = _status(row)
    winners = await _winner_rows(conn, round_id) if status != "pending" else []
    return RoundWinners(round_id, row["contest_title"], row["round_title"], status, winners, row["contest_id"])


AnnounceOutcome = Literal["announced", "unknown_round", "not_final", "already_announced"]


async def announce_with_outbox(
    pool: asyncpg.Pool, round_id: UUID, announced_event: Callable[[RoundWinners], Event]
) -> AnnounceOutcome:
    """Mark the winners announced and queue winners.announced in one transaction; the row
    lock makes two simultaneous announcements one announcement and one conflict."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT contest_id, contest_title, round_title, finalised_at, announced_at FROM rounds
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
        winners = RoundWinners(
            round_id, row["contest_title"], row["round_title"], "announced", await _winner_rows(conn, round_id),
            row["contest_id"], await round_summary(conn, round_id),
        )
        await outbox.add_events(conn, [announced_event(winners)])
    return "announced"


# --- reports ---------------------------------------------------------------------------

# Every unit with each unit of its subtree (itself included). UNION, not UNION ALL: a
# cycle in bad data ends the walk instead of looping.
_CLOSURE = """
    closure AS (
        SELECT id AS ancestor, id AS unit_id FROM units
        UNION
        SELECT c.ancestor, u.id FROM closure c JOIN units u ON u.parent_id = c.unit_id
    )
"""


async def unit_participation(conn: Conn, round_ids: Sequence[UUID]) -> list[UnitParticipation]:
    """Every unit's figures over its subtree, in these rounds, in one statement: an
    entrant counts in the unit their attempt was made from (or, failing that, their
    registered unit) and in every unit above it."""
    rows = await conn.fetch(
        f"""
        WITH RECURSIVE {_CLOSURE},
        entrants AS (
            SELECT coalesce(r.unit_id, p.unit_id) AS unit_id, r.participant_id, count(*) AS attempts
            FROM results r LEFT JOIN participants p ON p.participant_id = r.participant_id
            WHERE r.round_id = ANY($1::uuid[])
            GROUP BY 1, 2
        ),
        activity AS (
            SELECT c.ancestor AS unit_id, count(DISTINCT e.participant_id) AS participants,
                   sum(e.attempts) AS attempts
            FROM entrants e JOIN closure c ON c.unit_id = e.unit_id
            GROUP BY c.ancestor
        ),
        sizes AS (
            SELECT c.ancestor AS unit_id, sum(u.headcount) AS headcount, count(*) AS members
            FROM closure c JOIN units u ON u.id = c.unit_id
            GROUP BY c.ancestor
        )
        SELECT u.id, u.code, u.name, u.block, u.parent_id, s.headcount,
               coalesce(a.participants, 0) AS participants, coalesce(a.attempts, 0) AS attempts,
               s.members = 1 AS is_leaf
        FROM units u JOIN sizes s ON s.unit_id = u.id LEFT JOIN activity a ON a.unit_id = u.id
        ORDER BY u.code, u.id
        """,
        list(round_ids),
    )
    return [
        UnitParticipation(r["id"], r["code"], r["name"], r["block"], r["parent_id"], int(r["headcount"]),
                          int(r["participants"]), int(r["attempts"]), r["is_leaf"])
        for r in rows
    ]


async def subtree(conn: Conn, unit_id: UUID) -> set[UUID]:
    rows = await conn.fetch(
        """
        WITH RECURSIVE tree AS (
            SELECT id FROM units WHERE id = $1
            UNION
            SELECT u.id FROM units u JOIN tree t ON u.parent_id = t.id
        )
        SELECT id FROM tree
        """,
        unit_id,
    )
    return {r["id"] for r in rows}


@dataclass(frozen=True, slots=True)
class EntryFigures:
    """Entries (a participant's best counting attempt in a round) by (correct, total),
    and the distinct participants and attempts submitted."""

    by_score: dict[tuple[int, int], int]
    participants: int
    attempts: int


async def entry_figures(conn: Conn, round_ids: Sequence[UUID], units: Sequence[UUID] | None) -> EntryFigures:
    """In these rounds; only entrants of these units when given (a coordinator's subtree)."""
    rows = await conn.fetch(
        """
        WITH scoped AS (
            SELECT r.round_id, r.participant_id, r.correct, r.total, r.counts, r.duration_ms, r.submitted_at,
                   r.attempt_number, r.attempt_id
            FROM results r LEFT JOIN participants p ON p.participant_id = r.participant_id
            WHERE r.round_id = ANY($1::uuid[])
              AND ($2::uuid[] IS NULL OR coalesce(r.unit_id, p.unit_id) = ANY($2::uuid[]))
        ),
        best AS (
            SELECT DISTINCT ON (round_id, participant_id) correct, total FROM scoped WHERE counts
            ORDER BY round_id, participant_id, correct DESC, duration_ms, submitted_at, attempt_number, attempt_id
        )
        SELECT correct, total, count(*) AS entries, NULL::bigint AS participants, NULL::bigint AS attempts
        FROM best GROUP BY correct, total
        UNION ALL
        SELECT NULL, NULL, NULL, count(DISTINCT participant_id), count(*) FROM scoped
        """,
        list(round_ids),
        None if units is None else list(units),
    )
    totals = next(r for r in rows if r["correct"] is None)
    return EntryFigures(
        {(r["correct"], r["total"]): r["entries"] for r in rows if r["correct"] is not None},
        totals["participants"],
        totals["attempts"],
    )


@dataclass(frozen=True, slots=True)
class HourCount:
    at: datetime  # the hour's start, UTC
    attempts: int


async def attempts_by_hour(conn: Conn, round_ids: Sequence[UUID], units: Sequence[UUID] | None) -> list[HourCount]:
    """Submitted attempts per hour of submission (UTC hours, whatever the session's time
    zone), the hours with none left out, earliest first; in these rounds, and only of
    entrants of these units when given, counted as entry_figures counts them."""
    rows = await conn.fetch(
        """
        SELECT date_trunc('hour', r.submitted_at, 'UTC') AS at, count(*) AS attempts
        FROM results r LEFT JOIN participants p ON p.participant_id = r.participant_id
        WHERE r.round_id = ANY($1::uuid[])
          AND ($2::uuid[] IS NULL OR coalesce(r.unit_id, p.unit_id) = ANY($2::uuid[]))
        GROUP BY 1
        ORDER BY 1
        """,
        list(round_ids),
        None if units is None else list(units),
    )
    return [HourCount(r["at"], int(r["attempts"])) for r in rows]


# --- collective rules, nudges ----------------------------------------------------------

async def collective_rules(conn: Conn, contest_id: UUID) -> list[domain.MinRate] | None:
    raw = await conn.fetchval("SELECT min_rates FROM collective_rules WHERE contest_id = $1", contest_id)
    if raw is None:
        return None
    return [domain.MinRate(r["min_headcount"], r["max_headcount"], r["min_rate"]) for r in raw]


async def set_collective_rules(conn: Conn, contest_id: UUID, rules: Sequence[domain.MinRate]) -> None:
    await conn.execute(
        """
        INSERT INTO collective_rules (contest_id, min_rates) VALUES ($1, $2)
        ON CONFLICT (contest_id) DO UPDATE SET min_rates = EXCLUDED.min_rates, updated_at = now()
        """,
        contest_id,
        [{"min_headcount": r.min_headcount, "max_headcount": r.max_headcount, "min_rate": r.min_rate} for r in rules],
    )


@dataclass(frozen=True, slots=True)
class NudgeSchedule:
    contest_id: UUID
    target_rate: float
    times_local: list[str]
    round_id: UUID | None
    enabled: bool


async def nudge_schedule(conn: Conn, contest_id: UUID) -> NudgeSchedule | None:
    row = await conn.fetchrow(
        "SELECT contest_id, target_rate, times_local, round_id, enabled FROM nudge_schedules WHERE contest_id = $1",
        contest_id,
    )
    return NudgeSchedule(**dict(row)) if row else None


async def enabled_nudge_schedules(conn: Conn) -> list[NudgeSchedule]:
    rows = await conn.fetch(
        "SELECT contest_id, target_rate, times_local, round_id, enabled FROM nudge_schedules WHERE enabled"
    )
    return [NudgeSchedule(**dict(r)) for r in rows]


async def set_nudge_schedule(conn: Conn, schedule: NudgeSchedule) -> None:
    await conn.execute(
        """
        INSERT INTO nudge_schedules (contest_id, target_rate, times_local, round_id, enabled)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (contest_id) DO UPDATE SET target_rate = EXCLUDED.target_rate,
            times_local = EXCLUDED.times_local, round_id = EXCLUDED.round_id, enabled = EXCLUDED.enabled,
            updated_at = now()
        """,
        schedule.contest_id, schedule.target_rate, schedule.times_local, schedule.round_id, schedule.enabled,
    )


@dataclass(frozen=True, slots=True)
class NudgeRecord:
    nudge_id: UUID
    units: int


async def nudge_by_key(conn: Conn, contest_id: UUID, idempotency_key: str) -> NudgeRecord | None:
    row = await conn.fetchrow(
        "SELECT nudge_id, units FROM nudges WHERE contest_id = $1 AND idempotency_key = $2",
        contest_id, idempotency_key,
    )
    return NudgeRecord(row["nudge_id"], row["units"]) if row else None


async def insert_nudge_with_outbox(
    conn: asyncpg.Connection,
    *,
    nudge_id: UUID,
    contest_id: UUID,
    round_id: UUID | None,
    target_rate: float,
    units: int,
    origin: Literal["organiser", "schedule"],
    idempotency_key: str | None,
    event: Event | None,
) -> NudgeRecord:
    """Record the nudge and queue its event in the caller's transaction. With an
    Idempotency-Key already used for the contest, nothing is written and the first
    nudge is answered (a concurrent twin waits here for the first one's commit)."""
    row = await conn.fetchrow(
        """
        INSERT INTO nudges (nudge_id, contest_id, round_id, target_rate, units, origin, idempotency_key)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (contest_id, idempotency_key) DO NOTHING
        RETURNING nudge_id, units
        """,
        nudge_id, contest_id, round_id, target_rate, units, origin, idempotency_key,
    )
    if row is None:
        first = await nudge_by_key(conn, contest_id, idempotency_key or "")
        assert first is not None  # the conflicting row exists: our insert waited for its commit
        return first
    if event is not None:
        await outbox.add_events(conn, [event])
    return NudgeRecord(row["nudge_id"], row["units"])


async def claim_nudge_slot(conn: asyncpg.Connection, contest_id: UUID, local_date: Any, time_local: str) -> bool:
    """Take the slot for this transaction; False when another worker (or an earlier run)
    has decided it. A concurrent claim waits for ours to commit or roll back."""
    claimed = await conn.fetchval(
        """
        INSERT INTO nudge_slots (contest_id, local_date, time_local) VALUES ($1, $2, $3)
        ON CONFLICT DO NOTHING RETURNING true
        """,
        contest_id, local_date, time_local,
    )
    return bool(claimed)


async def set_slot_nudge(conn: asyncpg.Connection, contest_id: UUID, local_date: Any, time_local: str,
                         nudge_id: UUID) -> None:
    await conn.execute(
        "UPDATE nudge_slots SET nudge_id = $4 WHERE contest_id = $1 AND local_date = $2 AND time_local = $3",
        contest_id, local_date, time_local, nudge_id,
    )
