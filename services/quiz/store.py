"""All of the quiz's persistence: SQL (asyncpg) on the `quiz` schema, the outbox events
written with the changes they describe, and the autosave copies in Redis.

Redis holds autosaved answers only as a convenience copy (so a participant who reloads
the page finds their ticks again); it is never the system of record: the answers that
count are the body of the submit request, stored in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import orjson
from redis.asyncio import Redis

from services.core import outbox
from services.core.events import ATTEMPT_SUBMITTED, ROUND_CLOSED, ROUND_OPENED, Event
from services.quiz import domain
from services.quiz.domain import (
    Attempt,
    Contest,
    ContestSettings,
    Group,
    Option,
    Prediction,
    Prize,
    Question,
    QuestionDraft,
    QuestionRef,
    Quotas,
    Round,
)

log = logging.getLogger(__name__)

# Ids in event data are written as strings: asyncpg's UUID type is not one orjson
# (which encodes the envelope) accepts.

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


class ContestNotFound(LookupError):
    pass


class DuplicateRoundNumber(Exception):
    pass


class RoundNotFound(LookupError):
    pass


class RoundLocked(Exception):
    """The round's settings may no longer change (domain.round_change_refusal)."""

    def __init__(self, reason: str, status: domain.RoundStatus) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class SettingsInvalid(Exception):
    """The settings after a change break a rule; every broken rule, by field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(f"{len(errors)} invalid setting(s)")
        self.errors = errors


class QuestionRowsInvalid(Exception):
    def __init__(self, errors: list[domain.RowError]) -> None:
        super().__init__(f"{len(errors)} invalid row(s)")
        self.errors = errors


class InvalidAnswers(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(f"{len(errors)} invalid answer(s)")
        self.errors = errors


# --- rows → domain --------------------------------------------------------------------

def _groups_json(groups: Sequence[Group]) -> list[dict[str, Any]]:
    return [{"code": g.code, "name": g.name, "topics": list(g.topics)} for g in groups]


def _settings(value: Mapping[str, Any] | None) -> ContestSettings | None:
    if value is None:
        return None
    return ContestSettings(
        groups=tuple(Group(g["code"], g["name"], tuple(g.get("topics", ()))) for g in value.get("groups", ())),
        default_group=value.get("default_group"),
        require_all_answered=bool(value.get("require_all_answered", False)),
    )


def _prizes_json(prizes: Sequence[Prize]) -> list[dict[str, Any]]:
    return [{"name": p.name, "count": p.count} for p in prizes]


def _group_prizes_json(group_prizes: Mapping[str, Sequence[Prize]] | None) -> dict[str, Any] | None:
    return None if group_prizes is None else {code: _prizes_json(p) for code, p in group_prizes.items()}


def _contest(row: asyncpg.Record) -> Contest:
    return Contest(
        id=row["id"],
        slug=row["slug"],
        title=row["title"],
        rules=row["rules"],
        tie_break=tuple(row["tie_break"]),
        prize_scope=row["prize_scope"],
        settings=_settings({"groups": row["groups"], "default_group": row["default_group"],
                            "require_all_answered": row["require_all_answered"]}) or ContestSettings(),
    )


def _round(row: asyncpg.Record) -> Round:
    prediction = row["prediction"]
    group_prizes = row["group_prizes"]
    return Round(
        id=row["id"],
        contest_id=row["contest_id"],
        number=row["number"],
        title=row["title"],
        opens_at=row["opens_at"],
        closes_at=row["closes_at"],
        question_count=row["question_count"],
        time_limit_s=row["time_limit_s"],
        grace_s=row["grace_s"],
        max_attempts=row["max_attempts"],
        prediction=Prediction(prediction["text"], prediction["target"]) if prediction else None,
        prizes=tuple(Prize(p["name"], p["count"]) for p in row["prizes"]),
        quotas=Quotas.from_json(row["quotas"]),
        group_prizes=None if group_prizes is None else {
            code: tuple(Prize(p["name"], p["count"]) for p in prizes) for code, prizes in group_prizes.items()
        },
        freeze_minutes=row["freeze_minutes"],
        question_ids=tuple(row["question_ids"]) if row["question_ids"] is not None else None,
        settings=_settings(row["contest_settings"]),
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
        finalised_at=row["finalised_at"],
    )


def _question(row: asyncpg.Record) -> Question:
    return Question(
        id=row["id"],
        topic=row["topic"],
        difficulty=row["difficulty"],
        text=row["text"],
        options=tuple(Option(o["id"], o["text"]) for o in row["options"]),
        correct=tuple(row["correct"]),
        explanation=row["explanation"],
    )


def _attempt(row: asyncpg.Record) -> Attempt:
    return Attempt(
        id=row["id"],
        round_id=row["round_id"],
        participant_id=row["participant_id"],
        participant_name=row["participant_name"],
        unit_id=row["unit_id"],
        group=row["group"],
        attempt_number=row["attempt_number"],
        seed=row["seed"],
        question_ids=tuple(row["question_ids"]),
        started_at=row["started_at"],
        deadline_at=row["deadline_at"],
        submitted_at=row["submitted_at"],
        answers=row["answers"],
        prediction=row["prediction"],
    )


# --- contests -------------------------------------------------------------------------

async def create_contest(
    conn: Conn,
    *,
    slug: str,
    title: str,
    rules: str,
    tie_break: Sequence[str],
    prize_scope: str,
    settings: ContestSettings = ContestSettings(),
) -> UUID | None:
    """The new contest's id; None when the slug is taken."""
    if errors := domain.contest_settings_errors(settings):
        raise SettingsInvalid(errors)
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO contests (slug, title, rules, tie_break, prize_scope, groups, default_group,"
        " require_all_answered) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (slug) DO NOTHING RETURNING id",
        slug, title, rules, list(tie_break), prize_scope, _groups_json(settings.groups), settings.default_group,
        settings.require_all_answered,
    )


async def update_contest(pool: asyncpg.Pool, contest_id: UUID, changes: Mapping[str, Any]) -> Contest | None:
    """Apply `changes` (Contest fields, or `groups`, `default_group`, `require_all_answered`
    of its settings) and return the contest; None when there is none. Rounds already
    opened keep the settings they opened with."""
    setting_names = {"groups", "default_group", "require_all_answered"}
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM contests WHERE id = $1 FOR UPDATE", contest_id)
        if row is None:
            return None
        current = _contest(row)
        settings = dataclasses.replace(current.settings, **{k: v for k, v in changes.items() if k in setting_names})
        contest = dataclasses.replace(
            current, settings=settings, **{k: v for k, v in changes.items() if k not in setting_names}
        )
        if errors := domain.contest_settings_errors(settings):
            raise SettingsInvalid(errors)
        await conn.execute(
            "UPDATE contests SET title = $2, rules = $3, tie_break = $4, prize_scope = $5, groups = $6,"
            " default_group = $7, require_all_answered = $8 WHERE id = $1",
            contest_id, contest.title, contest.rules, list(contest.tie_break), contest.prize_scope,
            _groups_json(settings.groups), settings.default_group, settings.require_all_answered,
        )
    return contest


async def contest_by_id(conn: Conn, contest_id: UUID) -> Contest | None:
    row = await conn.fetchrow("SELECT * FROM contests WHERE id = $1", contest_id)
    return _contest(row) if row else None


async def contest_by_slug(conn: Conn, slug: str) -> Contest | None:
    row = await conn.fetchrow("SELECT * FROM contests WHERE slug = $1", slug)
    return _contest(row) if row else None


async def contests(conn: Conn) -> list[Contest]:
    return [_contest(row) for row in await conn.fetch("SELECT * FROM contests ORDER BY created_at, slug")]


async def rounds_of(conn: Conn, contest_ids: Sequence[UUID]) -> dict[UUID, list[Round]]:
    found: dict[UUID, list[Round]] = {contest_id: [] for contest_id in contest_ids}
    rows = await conn.fetch(
        "SELECT * FROM rounds WHERE contest_id = ANY($1::uuid[]) ORDER BY contest_id, number", list(contest_ids)
    )
    for row in rows:
        found[row["contest_id"]].append(_round(row))
    return found


# --- rounds ---------------------------------------------------------------------------

async def create_round(
    conn: Conn,
    contest_id: UUID,
    *,
    number: int,
    title: str,
    opens_at: datetime,
    closes_at: datetime,
    question_count: int,
    time_limit_s: int,
    grace_s: int,
    max_attempts: int | None,
    prediction: Prediction | None,
    prizes: Sequence[Prize],
    quotas: Quotas = Quotas(),
    group_prizes: Mapping[str, Sequence[Prize]] | None = None,
    freeze_minutes: int = 0,
) -> UUID:
    try:
        round_id = await conn.fetchval(
            "INSERT INTO rounds (contest_id, number, title, opens_at, closes_at, question_count, time_limit_s,"
            " grace_s, max_attempts, prediction, prizes, quotas, group_prizes, freeze_minutes)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (contest_id, number) DO NOTHING RETURNING id",
            contest_id, number, title, opens_at, closes_at, question_count, time_limit_s, grace_s, max_attempts,
            _prediction_json(prediction), _prizes_json(prizes), quotas.as_json(), _group_prizes_json(group_prizes),
            freeze_minutes,
        )
    except asyncpg.ForeignKeyViolationError:
        raise ContestNotFound(contest_id) from None
    if round_id is None:
        raise DuplicateRoundNumber(number)
    return round_id  # type: ignore[no-any-return]


def _prediction_json(prediction: Prediction | None) -> dict[str, str] | None:
    return {"text": prediction.text, "target": prediction.target} if prediction else None


async def round_by_id(conn: Conn, round_id: UUID) -> Round | None:
    row = await conn.fetchrow("SELECT * FROM rounds WHERE id = $1", round_id)
    return _round(row) if row else None


async def round_with_slug(conn: Conn, round_id: UUID) -> tuple[Round, str] | None:
    """The round and its contest's slug (slugs never change: what clients link by)."""
    row = await conn.fetchrow(
        "SELECT r.*, c.slug AS contest_slug FROM rounds AS r JOIN contests AS c ON c.id = r.contest_id"
        " WHERE r.id = $1",
        round_id,
    )
    return (_round(row), row["contest_slug"]) if row else None


async def round_with_contest(conn: Conn, round_id: UUID) -> tuple[Round, Contest] | None:
    row = await conn.fetchrow(
        "SELECT r.*, c AS contest FROM rounds AS r JOIN contests AS c ON c.id = r.contest_id WHERE r.id = $1",
        round_id,
    )
    return (_round(row), _contest(row["contest"])) if row else None


async def update_round(pool: asyncpg.Pool, round_id: UUID, changes: Mapping[str, Any]) -> tuple[Round, Contest]:
    """Apply `changes` (Round fields) to the round, as far as its status allows
    (domain.round_change_refusal, judged on the database's clock), with the round locked
    so that the clock cannot open it half-changed. A later close of an opened round is
    announced by round.opened again (a snapshot: scoring applies it as a correction)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT r.*, c AS contest, clock_timestamp() AS db_now FROM rounds AS r"
            " JOIN contests AS c ON c.id = r.contest_id WHERE r.id = $1 FOR NO KEY UPDATE OF r",
            round_id,
        )
        if row is None:
            raise RoundNotFound(round_id)
        current, contest = _round(row), _contest(row["contest"])
        now = row["db_now"]
        if reason := domain.round_change_refusal(current, changes.keys(), changes.get("closes_at"), now):
            raise RoundLocked(reason, domain.round_status(current, now))
        round_ = dataclasses.replace(current, **changes)
        # An opened round answers to the settings it opened with, not the contest's now.
        if errors := domain.round_settings_errors(round_, current.settings or contest.settings):
            raise SettingsInvalid(errors)
        try:
            await conn.execute(
                "UPDATE rounds SET number = $2, title = $3, opens_at = $4, closes_at = $5, question_count = $6,"
                " time_limit_s = $7, grace_s = $8, max_attempts = $9, prediction = $10, prizes = $11, quotas = $12,"
                " group_prizes = $13, freeze_minutes = $14 WHERE id = $1",
                round_id, round_.number, round_.title, round_.opens_at, round_.closes_at, round_.question_count,
                round_.time_limit_s, round_.grace_s, round_.max_attempts, _prediction_json(round_.prediction),
                _prizes_json(round_.prizes), round_.quotas.as_json(), _group_prizes_json(round_.group_prizes),
                round_.freeze_minutes,
            )
        except asyncpg.UniqueViolationError:
            raise DuplicateRoundNumber(round_.number) from None
        if current.opened_at is not None and round_.closes_at != current.closes_at:
            await _announce_opened(conn, round_, row["contest_settings"], contest.slug, contest.title)
    return round_, contest


async def close_round(conn: Conn, round_id: UUID) -> Round | None:
    """Stop the round taking new attempts now (idempotent: the first close time stays)."""
    row = await conn.fetchrow(
        "UPDATE rounds SET closed_at = CASE WHEN closed_at IS NULL AND finalised_at IS NULL THEN now()"
        " ELSE closed_at END WHERE id = $1 RETURNING *",
        round_id,
    )
    return _round(row) if row else None


async def rounds_due_to_open(conn: Conn, now: datetime) -> list[UUID]:
    # A round closed before it ever opened is opened (and then finalised) all the same,
    # so that scoring sees round.opened and round.closed for every round.
    rows = await conn.fetch(
        "SELECT id FROM rounds WHERE opened_at IS NULL AND (opens_at <= $1 OR closed_at IS NOT NULL)", now
    )
    return [row["id"] for row in rows]


async def open_round(pool: asyncpg.Pool, round_id: UUID, now: datetime) -> bool:
    """Snapshot the contest's bank and settings into the round and emit round.opened with
    the answer key, in one transaction. The `opened_at IS NULL` guard makes exactly one
    caller win (the clock or a participant's start, whichever comes first); False for the
    others. A bank that cannot give some group its attempts is logged as a warning: the
    round opens all the same (its starts then answer `bank_too_small`)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            UPDATE rounds AS r
            SET opened_at = now(),
                question_ids = coalesce(
                    (SELECT array_agg(q.id ORDER BY q.id) FROM questions AS q WHERE q.contest_id = r.contest_id),
                    '{}'),
                contest_settings = jsonb_build_object(
                    'groups', c.groups, 'default_group', c.default_group,
                    'require_all_answered', c.require_all_answered,
                    'tie_break', c.tie_break, 'prize_scope', c.prize_scope)
            FROM contests AS c
            WHERE r.id = $1 AND c.id = r.contest_id AND r.opened_at IS NULL
              AND (r.opens_at <= $2 OR r.closed_at IS NOT NULL)
            RETURNING r.*, c.slug AS contest_slug, c.title AS contest_title
            """,
            round_id, now,
        )
        if row is None:
            return False
        round_ = _round(row)
        bank = await _announce_opened(conn, round_, row["contest_settings"], row["contest_slug"], row["contest_title"])
    for group, problem in domain.round_draw_problems(bank, round_, round_.settings or ContestSettings()):
        log.warning("round opened with a bank too small for its draw", extra={
            "round_id": str(round_id), "group": group, "field": problem.field, "problem": problem.message})
    log.info("round opened", extra={"round_id": str(round_id), "questions": len(round_.question_ids or ())})
    return True


async def _announce_opened(
    conn: asyncpg.Connection, round_: Round, snapshot: Mapping[str, Any], contest_slug: str, contest_title: str
) -> list[QuestionRef]:
    """Write round.opened for an opened round: its settings, those the contest had when it
    opened (`snapshot`), and the answer key of its whole bank snapshot. Also what the draw
    knows of that snapshot."""
    keys = await conn.fetch(
        "SELECT id, topic, difficulty, correct FROM questions WHERE id = ANY($1::uuid[]) ORDER BY id",
        list(round_.question_ids or ()),
    )
    settings = round_.settings or ContestSettings()
    await outbox.add_events(conn, [Event(ROUND_OPENED, {
        "round_id": str(round_.id),
        "contest_id": str(round_.contest_id),
        "contest_slug": contest_slug,
        "contest_title": contest_title,
        "round_number": round_.number,
        "round_title": round_.title,
        "opens_at": round_.opens_at,
        "closes_at": round_.closes_at,
        "question_count": round_.question_count,
        "time_limit_s": round_.time_limit_s,
        "grace_s": round_.grace_s,
        "max_attempts": round_.max_attempts,
        "tie_break": snapshot["tie_break"],
        "prize_scope": snapshot["prize_scope"],
        "prizes": _prizes_json(round_.prizes),
        "prediction": _prediction_json(round_.prediction),
        "answer_key": {str(k["id"]): sorted(k["correct"]) for k in keys},
        "groups": [{"code": g.code, "name": g.name} for g in settings.groups],
        "group_prizes": _group_prizes_json(round_.group_prizes),
        "require_all_answered": settings.require_all_answered,
        "freeze_s": round_.freeze_minutes * 60,
    })])
    return [QuestionRef(k["id"], k["topic"], k["difficulty"]) for k in keys]


@dataclass(frozen=True, slots=True)
class ClosingRound:
    round: Round
    last_unsubmitted_deadline: datetime | None


async def rounds_closing(conn: Conn) -> tuple[datetime, list[ClosingRound]]:
    """The database's clock and the rounds that are opened, past their close and not
    final yet, each with the latest deadline among its attempts not submitted."""
    rows = await conn.fetch(
        """
        SELECT r.*, clock_timestamp() AS db_now,
               (SELECT max(a.deadline_at) FROM attempts AS a
                WHERE a.round_id = r.id AND a.submitted_at IS NULL) AS last_unsubmitted_deadline
        FROM rounds AS r
        WHERE r.opened_at IS NOT NULL AND r.finalised_at IS NULL
          AND (r.closed_at IS NOT NULL OR r.closes_at <= clock_timestamp())
        """
    )
    now = rows[0]["db_now"] if rows else await conn.fetchval("SELECT clock_timestamp()")
    return now, [ClosingRound(_round(row), row["last_unsubmitted_deadline"]) for row in rows]


async def finalise_round(pool: asyncpg.Pool, round_id: UUID, in_flight_margin_s: int) -> int | None:
    """Mark the round final and emit round.closed with its number of submissions, once.
    None when it is not ready (or already final).

    A submit may have run its UPDATE but not committed yet. Rewriting every attempt
    not submitted (a no-op change) waits for such transactions, so the count below
    includes them; and a submit that arrives while we hold those rows re-checks its
    WHERE on the new row version, where `clock_timestamp()` is by then past its
    deadline + grace + margin, so it is refused rather than accepted after the count.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM rounds WHERE id = $1 AND finalised_at IS NULL FOR NO KEY UPDATE", round_id
        )
        if row is None:
            return None
        round_ = _round(row)
        deadlines = await hold_unsubmitted_attempts(conn, round_id)
        now = await conn.fetchval("SELECT clock_timestamp()")
        if not domain.is_round_final_ready(round_, deadlines, now, in_flight_margin_s):
            return None  # the rollback undoes the rewrite
        submitted_count = await conn.fetchval(
            "SELECT count(*) FROM attempts WHERE round_id = $1 AND submitted_at IS NOT NULL", round_id
        )
        await conn.execute("UPDATE rounds SET finalised_at = now() WHERE id = $1", round_id)
        await outbox.add_events(conn, [Event(ROUND_CLOSED, {
            "round_id": str(round_id),
            "closed_at": domain.effective_close(round_),
            "submitted_count": submitted_count,
        })])
    log.info("round finalised", extra={"round_id": str(round_id), "submitted_count": submitted_count})
    return int(submitted_count)


async def hold_unsubmitted_attempts(conn: asyncpg.Connection, round_id: UUID) -> list[datetime]:
    """Inside a transaction: rewrite (unchanged) the round's attempts not submitted, so
    in-flight submits finish first and later ones re-check their WHERE; their deadlines."""
    rows = await conn.fetch(
        "UPDATE attempts SET deadline_at = deadline_at WHERE round_id = $1 AND submitted_at IS NULL"
        " RETURNING deadline_at",
        round_id,
    )
    return [row["deadline_at"] for row in rows]


# --- the question bank ----------------------------------------------------------------

async def import_questions(pool: asyncpg.Pool, contest_id: UUID, table: Sequence[Sequence[str]]) -> int:
    """Validate every row against the file and the contest's bank and store them all,
    or none (QuestionRowsInvalid with every error)."""
    async with pool.acquire() as conn, conn.transaction():
        # Serialises imports into one contest, so two files cannot both add a question.
        if await conn.fetchval("SELECT id FROM contests WHERE id = $1 FOR UPDATE", contest_id) is None:
            raise ContestNotFound(contest_id)
        existing = [r["text"] for r in await conn.fetch("SELECT text FROM questions WHERE contest_id = $1", contest_id)]
        # Thousands of rows take a while to check: off the event loop, so others are served meanwhile.
        drafts, errors = await asyncio.to_thread(domain.validate_question_rows, table, existing)
        if errors:
            raise QuestionRowsInvalid(errors)
        await _insert_questions(conn, contest_id, drafts)
    return len(drafts)


async def _insert_questions(conn: asyncpg.Connection, contest_id: UUID, drafts: Sequence[QuestionDraft]) -> None:
    await conn.executemany(
        "INSERT INTO questions (contest_id, topic, difficulty, text, options, correct, explanation)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (contest_id, d.topic, d.difficulty, d.text, [{"id": o.id, "text": o.text} for o in d.options],
             list(d.correct), d.explanation)
            for d in drafts
        ],
    )


async def question_count(conn: Conn, contest_id: UUID) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM questions WHERE contest_id = $1", contest_id))


async def questions_of(
    conn: Conn, contest_id: UUID, *, topic: str | None, limit: int, offset: int
) -> tuple[int, list[Question]]:
    """A page of the contest's bank (by topic, then text), with how many questions match in all."""
    rows = await conn.fetch(
        "SELECT q.*, count(*) OVER () AS total FROM questions AS q"
        " WHERE q.contest_id = $1 AND ($2::text IS NULL OR lower(q.topic) = lower($2))"
        " ORDER BY q.topic, q.difficulty, q.text LIMIT $3 OFFSET $4",
        contest_id, topic, limit, offset,
    )
    if rows:
        return int(rows[0]["total"]), [_question(row) for row in rows]
    if offset == 0:
        return 0, []
    total = await conn.fetchval(
        "SELECT count(*) FROM questions WHERE contest_id = $1 AND ($2::text IS NULL OR lower(topic) = lower($2))",
        contest_id, topic,
    )
    return int(total), []


async def bank_of(conn: Conn, contest_id: UUID) -> list[QuestionRef]:
    """What the draw knows of each question of the contest's bank, in snapshot order (by id)."""
    rows = await conn.fetch(
        "SELECT id, topic, difficulty FROM questions WHERE contest_id = $1 ORDER BY id", contest_id
    )
    return [QuestionRef(row["id"], row["topic"], row["difficulty"]) for row in rows]


class RoundQuestions:
    """The questions of each opened round, kept in process memory: a round's snapshot
    never changes once it opened, so starting an attempt costs no question query."""

    def __init__(self, max_rounds: int = 64) -> None:
        self._by_round: OrderedDict[UUID, dict[UUID, Question]] = OrderedDict()
        self._pools: dict[UUID, tuple[QuestionRef, ...]] = {}
        self._max_rounds = max_rounds

    async def draw_pool(self, conn: Conn, round_: Round) -> tuple[QuestionRef, ...]:
        """The round's snapshot as the draw sees it, in snapshot order (what replays use too)."""
        pool = self._pools.get(round_.id)
        if pool is None:
            questions = await self.of_round(conn, round_.id)
            pool = tuple(questions[q].ref for q in round_.question_ids or () if q in questions)
            if round_.id in self._by_round:
                self._pools[round_.id] = pool
        return pool

    async def of_round(self, conn: Conn, round_id: UUID) -> Mapping[UUID, Question]:
        questions = self._by_round.get(round_id)
        if questions is None:
            rows = await conn.fetch(
                "SELECT q.* FROM rounds AS r JOIN questions AS q ON q.id = ANY(r.question_ids)"
                " WHERE r.id = $1 AND r.opened_at IS NOT NULL",
                round_id,
            )
            questions = {row["id"]: _question(row) for row in rows}
            if not rows:
                return questions  # not opened yet: nothing to remember
            self._by_round[round_id] = questions
            while len(self._by_round) > self._max_rounds:
                evicted, _ = self._by_round.popitem(last=False)
                self._pools.pop(evicted, None)
        return questions


# --- attempts -------------------------------------------------------------------------

async def attempts_of(conn: Conn, round_id: UUID, participant_id: UUID) -> list[Attempt]:
    """The participant's attempts in the round, the latest first."""
    rows = await conn.fetch(
        "SELECT * FROM attempts WHERE round_id = $1 AND participant_id = $2 ORDER BY attempt_number DESC",
        round_id, participant_id,
    )
    return [_attempt(row) for row in rows]


async def insert_attempt(conn: Conn, attempt: Attempt) -> bool:
    """False when the participant's attempt of that number exists already: a
    simultaneous start took it (the UNIQUE constraint is the race guard)."""
    try:
        await conn.execute(
            "INSERT INTO attempts (id, round_id, participant_id, participant_name, unit_id, \"group\","
            " attempt_number, seed, question_ids, started_at, deadline_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            attempt.id, attempt.round_id, attempt.participant_id, attempt.participant_name, attempt.unit_id,
            attempt.group, attempt.attempt_number, attempt.seed, list(attempt.question_ids), attempt.started_at,
            attempt.deadline_at,
        )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def attempt_with_round(conn: Conn, attempt_id: UUID, participant_id: UUID) -> tuple[Attempt, Round] | None:
    """The participant's own attempt and its round; None for anyone else's."""
    row = await conn.fetchrow(
        "SELECT a.*, r AS round FROM attempts AS a JOIN rounds AS r ON r.id = a.round_id"
        " WHERE a.id = $1 AND a.participant_id = $2",
        attempt_id, participant_id,
    )
    return (_attempt(row), _round(row["round"])) if row else None


async def attempt_with_round_and_slug(
    conn: Conn, attempt_id: UUID, participant_id: UUID
) -> tuple[Attempt, Round, str] | None:
    """attempt_with_round, with the slug of the round's contest."""
    row = await conn.fetchrow(
        "SELECT a.*, r AS round, c.slug AS contest_slug FROM attempts AS a"
        " JOIN rounds AS r ON r.id = a.round_id JOIN contests AS c ON c.id = r.contest_id"
        " WHERE a.id = $1 AND a.participant_id = $2",
        attempt_id, participant_id,
    )
    return (_attempt(row), _round(row["round"]), row["contest_slug"]) if row else None


@dataclass(frozen=True, slots=True)
class AttemptLine:
    """One line of a participant's history: an attempt with its round and contest."""

    attempt_id: UUID
    round_id: UUID
    round_number: int
    round_title: str
    contest_id: UUID
    contest_slug: str
    contest_title: str
    attempt_number: int
    started_at: datetime
    deadline_at: datetime
    submitted_at: datetime | None
    grace_s: int


# One statement on attempts_by_participant (the test EXPLAINs this very text).
ATTEMPTS_OF_PARTICIPANT = """
    SELECT a.id, a.round_id, a.attempt_number, a.started_at, a.deadline_at, a.submitted_at,
           r.number AS round_number, r.title AS round_title, r.grace_s,
           c.id AS contest_id, c.slug AS contest_slug, c.title AS contest_title
    FROM attempts AS a
    JOIN rounds AS r ON r.id = a.round_id
    JOIN contests AS c ON c.id = r.contest_id
    WHERE a.participant_id = $1
      AND ($2::uuid IS NULL OR c.id = $2) AND ($3::text IS NULL OR c.slug = $3)
    ORDER BY a.started_at DESC, a.attempt_number DESC, a.id
    LIMIT $4
"""


async def attempts_of_participant(
    conn: Conn, participant_id: UUID, *, contest_id: UUID | None = None, contest_slug: str | None = None,
    limit: int = 200,
) -> list[AttemptLine]:
    """The participant's attempts across rounds (of one contest, by id or slug, when
    given), the latest started first."""
    rows = await conn.fetch(ATTEMPTS_OF_PARTICIPANT, participant_id, contest_id, contest_slug, limit)
    return [
        AttemptLine(
            attempt_id=row["id"], round_id=row["round_id"], round_number=row["round_number"],
            round_title=row["round_title"], contest_id=row["contest_id"], contest_slug=row["contest_slug"],
            contest_title=row["contest_title"], attempt_number=row["attempt_number"], started_at=row["started_at"],
            deadline_at=row["deadline_at"], submitted_at=row["submitted_at"], grace_s=row["grace_s"],
        )
        for row in rows
    ]


async def attempt_with_round_admin(conn: Conn, attempt_id: UUID) -> tuple[Attempt, Round] | None:
    """Any attempt and its round, for organisers."""
    row = await conn.fetchrow(
        "SELECT a.*, r AS round FROM attempts AS a JOIN rounds AS r ON r.id = a.round_id WHERE a.id = $1",
        attempt_id,
    )
    return (_attempt(row), _round(row["round"])) if row else None


async def submit_with_outbox(
    pool: asyncpg.Pool,
    questions: RoundQuestions,
    *,
    attempt_id: UUID,
    participant_id: UUID,
    arrived_at: datetime,
    answers: Mapping[UUID, Sequence[str]],
    prediction: int | None,
    in_flight_margin_s: int,
) -> Attempt | None:
    """THE hot path. One statement checks and claims the attempt (owner, not submitted,
    arrived by deadline + grace, prediction given where asked, round not final), so of
    two simultaneous submits exactly one wins; the event goes in with it. None when the
    statement matched nothing (the caller finds out why, off the hot path)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            UPDATE attempts AS a
            SET submitted_at = $3, answers = $4,
                prediction = CASE WHEN r.prediction IS NULL THEN NULL ELSE $5::bigint END
            FROM rounds AS r
            WHERE a.id = $1 AND a.participant_id = $2 AND a.submitted_at IS NULL
              AND r.id = a.round_id AND r.finalised_at IS NULL
              AND $3 <= a.deadline_at + make_interval(secs => r.grace_s)
              AND clock_timestamp() <= a.deadline_at + make_interval(secs => r.grace_s + $6)
              AND (r.prediction IS NULL OR $5::bigint IS NOT NULL)
            RETURNING a.*
            """,
            attempt_id, participant_id, arrived_at, domain.normalised_answers(answers), prediction,
            in_flight_margin_s,
        )
        if row is None:
            return None
        attempt = _attempt(row)
        bank = await questions.of_round(conn, attempt.round_id)
        errors = domain.answer_errors(answers, set(attempt.question_ids), bank)
        if errors:
            raise InvalidAnswers(errors)  # rolls the claim back
        await outbox.add_events(conn, [Event(ATTEMPT_SUBMITTED, {
            "attempt_id": str(attempt.id),
            "round_id": str(attempt.round_id),
            "participant_id": str(attempt.participant_id),
            "name": attempt.participant_name,
            "unit_id": str(attempt.unit_id) if attempt.unit_id else None,
            "group": attempt.group,
            "attempt_number": attempt.attempt_number,
            "started_at": attempt.started_at,
            "submitted_at": attempt.submitted_at,
            "question_ids": [str(q) for q in attempt.question_ids],
            "answers": attempt.answers,
            "prediction": attempt.prediction,
            # Whether it may count where every question must be answered (round.opened's
            # require_all_answered); the submission is kept either way.
            "answered_all": domain.answered_all(attempt.question_ids, attempt.answers),
        })])
    return attempt


# --- autosave (Redis, a convenience copy) ---------------------------------------------

def _autosave_key(attempt_id: UUID) -> str:
    return f"quiz:autosave:{attempt_id}"


async def save_answers(
    redis: Redis, attempt_id: UUID, answers: Mapping[UUID, Sequence[str]], saved_at: datetime, expire_at: datetime
) -> None:
    key = _autosave_key(attempt_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={
            "answers": orjson.dumps(domain.normalised_answers(answers)),
            "saved_at": saved_at.isoformat(),
        })
        pipe.expireat(key, expire_at)
        await pipe.execute()


async def saved_answers(redis: Redis, attempt_id: UUID) -> dict[str, list[str]]:
    raw = await redis.hget(_autosave_key(attempt_id), "answers")
    return orjson.loads(raw) if raw else {}


async def forget_answers(redis: Redis, attempt_id: UUID) -> None:
    await redis.delete(_autosave_key(attempt_id))
