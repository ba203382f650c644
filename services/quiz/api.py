"""The quiz's HTTP routes (DESIGN.md "HTTP contract"): parse, call domain and store, answer."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from redis.exceptions import RedisError

from services.core.auth import Principal
from services.core.http import ArrivedAt, Db, Organiser, Participant, RedisClient, json_response
from services.core.problems import Problem
from services.core.uploads import read_uploaded_table
from services.quiz import domain, store
from services.quiz.domain import Attempt, Contest, ContestSettings, Group, Prediction, Prize, Question, Quotas, Round
from services.quiz.settings import QuizSettings

log = logging.getLogger(__name__)
router = APIRouter()

# problem codes → (title, Vietnamese, English), registered by app.create_app
MESSAGES: dict[str, tuple[str, str, str]] = {
    "round_not_open": ("Conflict", "Vòng thi hiện không mở.", "The round is not open."),
    "attempts_exhausted": (
        "Conflict", "Bạn đã dùng hết số lượt thi của vòng này.", "You have used all your attempts in this round."
    ),
    "no_questions": ("Conflict", "Vòng thi chưa có câu hỏi.", "The round has no questions."),
    "attempt_conflict": (
        "Conflict", "Lượt thi đang được tạo, vui lòng thử lại.", "The attempt is being created; please try again."
    ),
    "deadline_passed": ("Conflict", "Đã hết thời gian làm bài.", "The time for this attempt is over."),
    "already_submitted": ("Conflict", "Bài thi này đã được nộp.", "This attempt has already been submitted."),
    "slug_taken": ("Conflict", "Mã cuộc thi đã được dùng.", "The contest slug is taken."),
    "round_number_taken": ("Conflict", "Cuộc thi đã có vòng thi số này.", "The contest already has this round number."),
    "invalid_questions": (
        "Unprocessable Content",
        "Tệp câu hỏi có lỗi; chưa câu hỏi nào được nhập.",
        "The question file has errors; nothing was imported.",
    ),
    "group_required": (
        "Conflict",
        "Cuộc thi xếp hạng theo nhóm; tài khoản của bạn chưa thuộc nhóm dự thi nào của cuộc thi.",
        "This contest ranks groups separately and your account belongs to none of its groups.",
    ),
    "bank_too_small": (
        "Conflict",
        "Ngân hàng câu hỏi không đủ để tạo đề theo cấu hình của vòng thi. Vui lòng báo ban tổ chức.",
        "The question bank cannot give an attempt as the round is configured. Please tell the organisers.",
    ),
    "review_not_available": (
        "Conflict",
        "Đáp án chỉ được công bố sau khi vòng thi kết thúc và mọi lượt thi đã hết giờ.",
        "The answers are shown only once the round has closed and every attempt in it has ended.",
    ),
    "round_locked": (
        "Conflict",
        "Vòng thi đã mở: chỉ còn được lùi thời điểm đóng khi vòng thi đang mở.",
        "The round has opened: only a later closing time can still be set while it is open.",
    ),
}

# Kept for an hour after the attempt ends: enough for a reload, then Redis forgets it.
AUTOSAVE_KEEP = timedelta(hours=1)


async def _settings(request: Request) -> QuizSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _questions(request: Request) -> store.RoundQuestions:
    return request.app.state.round_questions  # type: ignore[no-any-return]


Settings = Annotated[QuizSettings, Depends(_settings)]
Questions = Annotated[store.RoundQuestions, Depends(_questions)]
OptionId = Annotated[str, StringConstraints(pattern=r"^[A-F]$")]
Answers = Annotated[dict[UUID, Annotated[list[OptionId], Field(max_length=6)]], Field(max_length=100)]


def _now() -> datetime:
    return datetime.now(UTC)


# --- public -----------------------------------------------------------------------------

class RoundOut(BaseModel):
    id: UUID
    number: int
    title: str
    opens_at: datetime
    closes_at: datetime
    status: domain.RoundStatus

    @classmethod
    def of(cls, round_: Round, now: datetime) -> RoundOut:
        return cls(
            id=round_.id, number=round_.number, title=round_.title, opens_at=round_.opens_at,
            closes_at=round_.closes_at, status=domain.round_status(round_, now),
        )


class PrizeOut(BaseModel):
    name: str
    count: int


def _prizes_out(prizes: tuple[Prize, ...]) -> list[PrizeOut]:
    return [PrizeOut(name=p.name, count=p.count) for p in prizes]


def _group_prizes_out(round_: Round) -> dict[str, list[PrizeOut]] | None:
    if round_.group_prizes is None:
        return None
    return {code: _prizes_out(prizes) for code, prizes in round_.group_prizes.items()}


class PublicPredictionOut(BaseModel):
    text: str


class RoundRulesOut(RoundOut):
    """A round as the contest page shows it: its rules and prizes, times in Vietnam's too."""

    opens_at_local: datetime
    closes_at_local: datetime
    question_count: int
    time_limit_s: int
    max_attempts: int | None
    prizes: list[PrizeOut]
    group_prizes: dict[str, list[PrizeOut]] | None
    prediction: PublicPredictionOut | None
    freeze_minutes: int

    @classmethod
    def of(cls, round_: Round, now: datetime) -> RoundRulesOut:
        return cls(
            **RoundOut.of(round_, now).model_dump(),
            opens_at_local=domain.local_time(round_.opens_at),
            closes_at_local=domain.local_time(round_.closes_at),
            question_count=round_.question_count,
            time_limit_s=round_.time_limit_s,
            max_attempts=round_.max_attempts,
            prizes=_prizes_out(round_.prizes),
            group_prizes=_group_prizes_out(round_),
            prediction=PublicPredictionOut(text=round_.prediction.text) if round_.prediction else None,
            freeze_minutes=round_.freeze_minutes,
        )


class GroupOut(BaseModel):
    code: str
    name: str


class ContestSummaryOut(BaseModel):
    id: UUID
    slug: str
    title: str
    rounds: list[RoundOut]


class ContestOut(BaseModel):
    id: UUID
    slug: str
    title: str
    rules: str
    rounds: list[RoundRulesOut]
    groups: list[GroupOut]
    require_all_answered: bool


@router.get("/api/contests")
async def list_contests(db: Db) -> list[ContestSummaryOut]:
    found = await store.contests(db)
    rounds = await store.rounds_of(db, [c.id for c in found])
    now = _now()
    return [
        ContestSummaryOut(id=c.id, slug=c.slug, title=c.title, rounds=[RoundOut.of(r, now) for r in rounds[c.id]])
        for c in found
    ]


@router.get("/api/contests/{slug}")
async def get_contest(slug: str, db: Db) -> ContestOut:
    contest = await store.contest_by_slug(db, slug)
    if contest is None:
        raise Problem(404, "not_found")
    rounds = (await store.rounds_of(db, [contest.id]))[contest.id]
    now = _now()
    return ContestOut(
        id=contest.id, slug=contest.slug, title=contest.title, rules=contest.rules,
        rounds=[RoundRulesOut.of(r, now) for r in rounds],
        groups=[GroupOut(code=g.code, name=g.name) for g in contest.settings.groups],
        require_all_answered=contest.settings.require_all_answered,
    )


# --- attempts (participants) ------------------------------------------------------------

class OptionOut(BaseModel):
    id: str
    text: str


class QuestionOut(BaseModel):
    id: UUID
    text: str
    multiple: bool
    options: list[OptionOut]


class PredictionOut(BaseModel):
    text: str


class AttemptOut(BaseModel):
    attempt_id: UUID
    round_id: UUID
    round_number: int
    contest_slug: str
    deadline_at: datetime
    attempt_number: int
    questions: list[QuestionOut]
    prediction: PredictionOut | None
    answers: dict[str, list[str]]


class AttemptStateOut(AttemptOut):
    submitted_at: datetime | None
    status: domain.AttemptStatus


class ShownQuestions:
    """The JSON of each attempt's questions as shown (options in the attempt's seeded
    order), kept per attempt in process memory: it never changes once drawn, and the
    seeded shuffles plus building it were the largest part of a start or resume."""

    def __init__(self, max_attempts: int = 2048) -> None:
        self._by_attempt: OrderedDict[UUID, orjson.Fragment] = OrderedDict()
        self._max_attempts = max_attempts

    async def of(self, db: Db, questions: store.RoundQuestions, attempt: Attempt) -> orjson.Fragment:
        shown = self._by_attempt.get(attempt.id)
        if shown is not None:
            self._by_attempt.move_to_end(attempt.id)
            return shown
        bank = await questions.of_round(db, attempt.round_id)
        shown = orjson.Fragment(orjson.dumps([
            {
                "id": str(question.id), "text": question.text, "multiple": question.multiple,
                "options": [{"id": o.id, "text": o.text} for o in domain.shuffled_options(question, attempt.seed)],
            }
            for question in (bank[question_id] for question_id in attempt.question_ids)
        ]))
        self._by_attempt[attempt.id] = shown
        if len(self._by_attempt) > self._max_attempts:
            self._by_attempt.popitem(last=False)
        return shown


async def _shown_questions(request: Request) -> ShownQuestions:
    return request.app.state.shown_questions  # type: ignore[no-any-return]


Shown = Annotated[ShownQuestions, Depends(_shown_questions)]


async def _attempt_out(
    db: Db, redis: RedisClient, questions: Questions, shown: Shown, attempt: Attempt, round_: Round,
    contest_slug: str, *, new: bool = False,
) -> dict[str, Any]:
    """An `AttemptOut` as plain data, for `json_response` (the hot path of every start)."""
    answers: dict[str, list[str]]
    if new:
        answers = {}
    elif attempt.submitted_at is not None:
        answers = attempt.answers or {}
    else:
        try:
            answers = await store.saved_answers(redis, attempt.id)
        except (RedisError, OSError) as exc:  # a convenience copy: the attempt goes on without it
            log.warning("autosave unavailable", extra={"attempt_id": str(attempt.id), "error": repr(exc)})
            answers = {}
    return {
        "attempt_id": attempt.id,
        "round_id": attempt.round_id,
        "round_number": round_.number,
        "contest_slug": contest_slug,
        "deadline_at": attempt.deadline_at,
        "attempt_number": attempt.attempt_number,
        "questions": await shown.of(db, questions, attempt),
        "prediction": {"text": round_.prediction.text} if round_.prediction else None,
        "answers": answers,
    }


@router.post(
    "/api/rounds/{round_id}/attempts",
    status_code=201,
    response_model=AttemptOut,
    responses={200: {"model": AttemptOut, "description": "The participant's running attempt, resumed"}},
)
async def start_attempt(
    round_id: UUID,
    who: Participant,
    db: Db,
    redis: RedisClient,
    questions: Questions,
    shown: Shown,
    arrived: ArrivedAt,
) -> Response:
    found = await store.round_with_slug(db, round_id)
    if found is None:
        raise Problem(404, "not_found")
    round_, contest_slug = found
    # Two simultaneous starts both see n attempts and both try number n+1; the UNIQUE
    # constraint lets one in, and the other goes round again and resumes that attempt.
    for _ in range(3):
        attempts = await store.attempts_of(db, round_id, who.id)
        running = domain.running_attempt(attempts, round_.grace_s, arrived)
        if running is not None:
            return json_response(await _attempt_out(db, redis, questions, shown, running, round_, contest_slug))
        if not domain.accepts_start(round_, arrived):
            raise Problem(409, "round_not_open", round_status=domain.round_status(round_, arrived))
        if not domain.has_attempts_left(round_, len(attempts)):
            raise Problem(409, "attempts_exhausted", max_attempts=round_.max_attempts, attempts_used=len(attempts))
        if round_.opened_at is None:
            await store.open_round(db, round_id, arrived)
            reread = await store.round_by_id(db, round_id)
            if reread is None or reread.opened_at is None:
                raise Problem(409, "round_not_open", round_status="scheduled")
            round_ = reread
        attempt = _new_attempt(round_, await questions.draw_pool(db, round_), who, attempts, arrived)
        if await store.insert_attempt(db, attempt):
            return json_response(
                await _attempt_out(db, redis, questions, shown, attempt, round_, contest_slug, new=True), 201
            )
    raise Problem(409, "attempt_conflict")


def _new_attempt(
    round_: Round, bank: tuple[domain.QuestionRef, ...], who: Principal, earlier: list[Attempt], started_at: datetime
) -> Attempt:
    if not round_.question_ids:
        raise Problem(409, "no_questions")
    try:
        group = domain.resolve_group(round_.settings or ContestSettings(), who.group)
    except domain.GroupRequired:
        raise Problem(409, "group_required", group=who.group) from None
    seed = secrets.randbits(63)  # fits bigint; stored, so the draw can be replayed
    try:
        question_ids = domain.attempt_draw(bank, round_, group, seed)
    except domain.DrawImpossible as exc:
        log.warning("draw impossible", extra={"round_id": str(round_.id), "group": group, "field": exc.field})
        raise Problem(409, "bank_too_small", field=exc.field, group=group,
                      errors=[{"field": exc.field, "message": exc.message}]) from None
    return Attempt(
        id=uuid.uuid4(),
        round_id=round_.id,
        participant_id=who.id,
        participant_name=who.name,
        unit_id=who.unit_id,
        group=group,
        attempt_number=max((a.attempt_number for a in earlier), default=0) + 1,
        seed=seed,
        question_ids=tuple(question_ids),
        started_at=started_at,
        deadline_at=domain.deadline(started_at, round_.time_limit_s),
    )


async def _own_attempt(db: Db, attempt_id: UUID, who: Principal) -> tuple[Attempt, Round]:
    found = await store.attempt_with_round(db, attempt_id, who.id)
    if found is None:
        raise Problem(404, "not_found")
    return found


def _deadline_passed(attempt: Attempt) -> Problem:
    return Problem(409, "deadline_passed", deadline_at=attempt.deadline_at.isoformat())


async def _own_attempt_and_slug(db: Db, attempt_id: UUID, who: Principal) -> tuple[Attempt, Round, str]:
    found = await store.attempt_with_round_and_slug(db, attempt_id, who.id)
    if found is None:
        raise Problem(404, "not_found")
    return found


@router.get("/api/attempts/{attempt_id}", response_model=AttemptStateOut)
async def get_attempt(
    attempt_id: UUID, who: Participant, db: Db, redis: RedisClient, questions: Questions, shown: Shown
) -> Response:
    attempt, round_, contest_slug = await _own_attempt_and_slug(db, attempt_id, who)
    view = await _attempt_out(db, redis, questions, shown, attempt, round_, contest_slug)
    return json_response(view | {
        "submitted_at": attempt.submitted_at,
        "status": domain.attempt_status(attempt, round_.grace_s, _now()),
    })


class ReviewQuestionOut(BaseModel):
    id: UUID
    text: str
    multiple: bool
    options: list[OptionOut]  # in the order the attempt showed them
    chosen: list[str]  # as submitted; empty when the attempt was never submitted
    correct: list[str]
    is_correct: bool
    explanation: str


class ReviewOut(BaseModel):
    attempt_id: UUID
    round_id: UUID
    submitted_at: datetime | None
    questions: list[ReviewQuestionOut]


@router.get("/api/attempts/{attempt_id}/review")
async def review_attempt(attempt_id: UUID, who: Participant, db: Db, questions: Questions) -> ReviewOut:
    """The attempt's questions with the answers given and the right ones, once no attempt
    of the round can still be submitted (domain.review_available)."""
    attempt, round_ = await _own_attempt(db, attempt_id, who)
    now = _now()
    if not domain.review_available(round_, now):
        raise Problem(409, "review_not_available", round_status=domain.round_status(round_, now),
                      available_at=domain.review_available_at(round_).isoformat())
    bank = await questions.of_round(db, attempt.round_id)
    answers = (attempt.answers or {}) if attempt.submitted_at is not None else {}
    reviewed: list[ReviewQuestionOut] = []
    for question in (bank[q] for q in attempt.question_ids if q in bank):
        chosen = sorted(answers.get(str(question.id), []))
        reviewed.append(ReviewQuestionOut(
            id=question.id, text=question.text, multiple=question.multiple,
            options=[OptionOut(id=o.id, text=o.text) for o in domain.shuffled_options(question, attempt.seed)],
            chosen=chosen, correct=sorted(question.correct),
            is_correct=domain.answer_is_correct(chosen, question.correct), explanation=question.explanation,
        ))
    return ReviewOut(attempt_id=attempt.id, round_id=attempt.round_id, submitted_at=attempt.submitted_at,
                     questions=reviewed)


class MyAttemptOut(BaseModel):
    attempt_id: UUID
    round_id: UUID
    round_number: int
    round_title: str
    contest_slug: str
    contest_title: str
    attempt_number: int
    started_at: datetime
    deadline_at: datetime
    submitted_at: datetime | None
    status: domain.AttemptStatus


HISTORY_LIMIT = 200


@router.get("/api/me/attempts")
async def my_attempts(
    who: Participant,
    db: Db,
    contest: Annotated[str | None, Query(min_length=1, max_length=100, description="contest slug or id")] = None,
) -> list[MyAttemptOut]:
    """The caller's attempts across rounds, the latest started first (at most 200)."""
    contest_id: UUID | None = None
    contest_slug: str | None = None
    if contest is not None:
        try:
            contest_id = UUID(contest)
        except ValueError:
            contest_slug = contest
    lines = await store.attempts_of_participant(
        db, who.id, contest_id=contest_id, contest_slug=contest_slug, limit=HISTORY_LIMIT)
    if not lines and contest is not None and await _contest_missing(db, contest_id, contest_slug):
        raise Problem(404, "not_found")
    now = _now()
    return [
        MyAttemptOut(
            attempt_id=line.attempt_id, round_id=line.round_id, round_number=line.round_number,
            round_title=line.round_title, contest_slug=line.contest_slug, contest_title=line.contest_title,
            attempt_number=line.attempt_number, started_at=line.started_at, deadline_at=line.deadline_at,
            submitted_at=line.submitted_at,
            status=domain.attempt_status_at(line.submitted_at, line.deadline_at, line.grace_s, now),
        )
        for line in lines
    ]


async def _contest_missing(db: Db, contest_id: UUID | None, contest_slug: str | None) -> bool:
    if contest_id is not None:
        return await store.contest_by_id(db, contest_id) is None
    return contest_slug is None or await store.contest_by_slug(db, contest_slug) is None


class AnswersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answers: Answers


class SavedOut(BaseModel):
    saved_at: datetime


@router.put("/api/attempts/{attempt_id}/answers")
async def save_answers(
    attempt_id: UUID,
    body: AnswersIn,
    who: Participant,
    db: Db,
    redis: RedisClient,
    questions: Questions,
    arrived: ArrivedAt,
) -> SavedOut:
    attempt, round_ = await _own_attempt(db, attempt_id, who)
    if attempt.submitted_at is not None:
        raise Problem(409, "already_submitted")
    if not domain.accepts_submit(arrived, attempt, round_.grace_s):
        raise _deadline_passed(attempt)
    bank = await questions.of_round(db, attempt.round_id)
    if errors := domain.answer_errors(body.answers, set(attempt.question_ids), bank):
        raise Problem(422, "validation", errors=errors)
    saved_at = _now()
    try:
        await store.save_answers(
            redis, attempt.id, body.answers, saved_at, domain.submit_cutoff(attempt, round_.grace_s) + AUTOSAVE_KEEP
        )
    except (RedisError, OSError) as exc:
        log.warning("autosave failed", extra={"attempt_id": str(attempt.id), "error": repr(exc)})
        raise Problem(503, "unavailable", headers={"Retry-After": "5"}) from None
    return SavedOut(saved_at=saved_at)


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answers: Answers = Field(default_factory=dict)
    prediction: int | None = Field(default=None, ge=0, le=2**63 - 1)


class SubmitOut(BaseModel):
    attempt_id: UUID
    status: Literal["received"]


@router.post("/api/attempts/{attempt_id}/submit", status_code=202)
async def submit_attempt(
    attempt_id: UUID,
    body: SubmitIn,
    who: Participant,
    db: Db,
    redis: RedisClient,
    questions: Questions,
    settings: Settings,
    arrived: ArrivedAt,
) -> SubmitOut:
    try:
        attempt = await store.submit_with_outbox(
            db, questions, attempt_id=attempt_id, participant_id=who.id, arrived_at=arrived,
            answers=body.answers, prediction=body.prediction, in_flight_margin_s=settings.in_flight_margin_s,
        )
    except store.InvalidAnswers as exc:
        raise Problem(422, "validation", errors=exc.errors) from None
    if attempt is None:
        raise await _why_not_submitted(db, attempt_id, who, arrived, body)
    try:
        await store.forget_answers(redis, attempt_id)
    except (RedisError, OSError) as exc:  # it expires on its own anyway
        log.warning("autosave not deleted", extra={"attempt_id": str(attempt_id), "error": repr(exc)})
    return SubmitOut(attempt_id=attempt_id, status="received")


async def _why_not_submitted(db: Db, attempt_id: UUID, who: Principal, arrived: datetime, body: SubmitIn) -> Problem:
    """Off the hot path: the claim matched nothing, find out which rule refused it."""
    attempt, round_ = await _own_attempt(db, attempt_id, who)
    if attempt.submitted_at is not None:
        return Problem(409, "already_submitted")
    if not domain.accepts_submit(arrived, attempt, round_.grace_s):
        return _deadline_passed(attempt)
    if round_.prediction is not None and body.prediction is None:
        return Problem(422, "validation", errors=[
            {"field": "prediction", "message": "Vòng thi này yêu cầu trả lời câu hỏi dự đoán."}
        ])
    # Stamped in time, but it reached the database after the in-flight margin (or after
    # the round was finalised): too late to be counted.
    return _deadline_passed(attempt)


# --- organisers -------------------------------------------------------------------------

TopicName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=domain.MAX_TOPIC_CHARS)]
GroupCode = Annotated[str, StringConstraints(pattern=domain.GROUP_CODE.pattern)]


def _not_null(value: object) -> object:
    # Runs only for fields the caller sent: leaving a field out keeps it, null does not clear it.
    if value is None:
        raise ValueError("Không được để trống trường này.")
    return value


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: GroupCode
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    topics: list[TopicName] = Field(default_factory=list, max_length=100)  # empty = every topic

    def as_group(self) -> Group:
        return Group(self.code, self.name, tuple(domain.normalised_text(t) for t in self.topics))


def _groups(value: list[GroupIn] | None) -> list[GroupIn] | None:
    codes = [g.code for g in value or ()]
    if repeated := sorted({c for c in codes if codes.count(c) > 1}):
        raise ValueError(f"Mã nhóm bị lặp lại: {', '.join(repeated)}.")
    return value


class ContestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{2,60}$")]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    rules: Annotated[str, StringConstraints(max_length=20000)] = ""
    tie_break: list[str] = Field(default_factory=lambda: list(domain.DEFAULT_TIE_BREAK), max_length=10)
    prize_scope: str = "round"
    groups: list[GroupIn] = Field(default_factory=list, max_length=20)
    require_all_answered: bool = False
    default_group: GroupCode | None = None

    @field_validator("tie_break")
    @classmethod
    def _tie_break(cls, value: list[str]) -> list[str]:
        return list(domain.validate_tie_break(value))

    @field_validator("prize_scope")
    @classmethod
    def _prize_scope(cls, value: str) -> str:
        return domain.validate_prize_scope(value)

    @field_validator("groups")
    @classmethod
    def _unique_groups(cls, value: list[GroupIn]) -> list[GroupIn]:
        return _groups(value) or []

    def settings(self) -> ContestSettings:
        return ContestSettings(tuple(g.as_group() for g in self.groups), self.default_group, self.require_all_answered)


class ContestPatchIn(BaseModel):
    """Only the fields sent change. Rounds already opened keep the settings they opened with."""

    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)] | None = None
    rules: Annotated[str, StringConstraints(max_length=20000)] | None = None
    tie_break: Annotated[list[str], Field(max_length=10)] | None = None
    prize_scope: str | None = None
    groups: Annotated[list[GroupIn], Field(max_length=20)] | None = None
    require_all_answered: bool | None = None
    default_group: GroupCode | None = None  # null: no default group

    check_required = field_validator("title", "rules", "tie_break", "prize_scope", "groups", "require_all_answered",
                                     mode="before")(_not_null)

    @field_validator("tie_break")
    @classmethod
    def _tie_break(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(domain.validate_tie_break(value))

    @field_validator("prize_scope")
    @classmethod
    def _prize_scope(cls, value: str | None) -> str | None:
        return None if value is None else domain.validate_prize_scope(value)

    @field_validator("groups")
    @classmethod
    def _unique_groups(cls, value: list[GroupIn] | None) -> list[GroupIn] | None:
        return _groups(value)

    def changes(self) -> dict[str, Any]:
        changes: dict[str, Any] = {name: getattr(self, name) for name in self.model_fields_set}
        if "groups" in changes:
            changes["groups"] = tuple(g.as_group() for g in self.groups or ())
        if "tie_break" in changes:
            changes["tie_break"] = tuple(changes["tie_break"])
        return changes


class ContestCreatedOut(BaseModel):
    id: UUID
    slug: str


def _settings_invalid(errors: list[dict[str, str]]) -> Problem:
    return Problem(422, "validation", errors=errors)


@router.post("/api/admin/contests", status_code=201)
async def create_contest(body: ContestIn, who: Organiser, db: Db) -> ContestCreatedOut:
    try:
        contest_id = await store.create_contest(
            db, slug=body.slug, title=body.title, rules=body.rules, tie_break=body.tie_break,
            prize_scope=body.prize_scope, settings=body.settings(),
        )
    except store.SettingsInvalid as exc:
        raise _settings_invalid(exc.errors) from None
    if contest_id is None:
        raise Problem(409, "slug_taken", slug=body.slug)
    return ContestCreatedOut(id=contest_id, slug=body.slug)


class PredictionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    target: Literal["participants", "all_correct"]


class PrizeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    count: int = Field(ge=1, le=100000)


QuotaCount = Annotated[int, Field(ge=0, le=100)]


class QuotasIn(BaseModel):
    """Exact numbers of questions per topic and per difficulty in each attempt; the rest of
    the attempt comes from the topics (difficulties) not named. A topic quota binds the
    groups whose question set has that topic."""

    model_config = ConfigDict(extra="forbid")
    topics: Annotated[dict[TopicName, QuotaCount], Field(max_length=100)] = Field(default_factory=dict)
    difficulties: dict[Literal["1", "2", "3"], QuotaCount] = Field(default_factory=dict)

    def as_quotas(self) -> Quotas:
        return Quotas({domain.normalised_text(t): n for t, n in self.topics.items()},
                      {int(d): n for d, n in self.difficulties.items()})


GroupPrizesIn = Annotated[dict[GroupCode, Annotated[list[PrizeIn], Field(max_length=50)]], Field(max_length=20)]


def _with_offset(value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError("Thời gian phải ghi kèm múi giờ, ví dụ 2025-03-03T10:00:00+07:00.")
    return value


class RoundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: int = Field(ge=1, le=1000)
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    opens_at: datetime
    closes_at: datetime
    question_count: int = Field(ge=1, le=100)
    # Real contests allow 10-15 minutes. The live leaderboard packs durations into
    # 22 bits of milliseconds (about 69 minutes; docs/decisions.md), so limit + grace stays below that.
    time_limit_s: int = Field(ge=60, le=3600)
    grace_s: int = Field(default=30, ge=0, le=300)
    max_attempts: int | None = Field(default=None, ge=1, le=domain.MAX_ATTEMPTS)
    prediction: PredictionIn | None = None
    prizes: list[PrizeIn] = Field(default_factory=list, max_length=50)
    quotas: QuotasIn | None = None
    group_prizes: GroupPrizesIn | None = None  # absent: `prizes` apply to each group
    freeze_minutes: int = Field(default=0, ge=0, le=1440)

    check_offsets = field_validator("opens_at", "closes_at")(_with_offset)

    @field_validator("closes_at")
    @classmethod
    def _after_opening(cls, value: datetime, info: ValidationInfo) -> datetime:
        opens_at = info.data.get("opens_at")
        if opens_at is not None and value <= opens_at:
            raise ValueError("Thời điểm đóng phải sau thời điểm mở vòng thi.")
        return value


def _group_prizes(value: dict[str, list[PrizeIn]] | None) -> dict[str, tuple[Prize, ...]] | None:
    if value is None:
        return None
    return {code: tuple(Prize(p.name, p.count) for p in prizes) for code, prizes in value.items()}


def _prediction(value: PredictionIn | None) -> Prediction | None:
    return Prediction(value.text, value.target) if value else None


class RoundPatchIn(BaseModel):
    """Only the fields sent change; null clears `max_attempts` (unlimited), `prediction`
    and `group_prizes`. Allowed while the round is scheduled; once open, only a later `closes_at`."""

    model_config = ConfigDict(extra="forbid")
    number: int | None = Field(default=None, ge=1, le=1000)
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    question_count: int | None = Field(default=None, ge=1, le=100)
    time_limit_s: int | None = Field(default=None, ge=60, le=3600)
    grace_s: int | None = Field(default=None, ge=0, le=300)
    max_attempts: int | None = Field(default=None, ge=1, le=domain.MAX_ATTEMPTS)
    prediction: PredictionIn | None = None
    prizes: Annotated[list[PrizeIn], Field(max_length=50)] | None = None
    quotas: QuotasIn | None = None
    group_prizes: GroupPrizesIn | None = None
    freeze_minutes: int | None = Field(default=None, ge=0, le=1440)

    check_required = field_validator("number", "title", "opens_at", "closes_at", "question_count", "time_limit_s",
                                     "grace_s", "prizes", "quotas", "freeze_minutes", mode="before")(_not_null)
    check_offsets = field_validator("opens_at", "closes_at")(_with_offset)

    def changes(self) -> dict[str, Any]:
        changes: dict[str, Any] = {name: getattr(self, name) for name in self.model_fields_set}
        if "prediction" in changes:
            changes["prediction"] = _prediction(self.prediction)
        if "prizes" in changes:
            changes["prizes"] = tuple(Prize(p.name, p.count) for p in self.prizes or ())
        if "quotas" in changes:
            changes["quotas"] = self.quotas.as_quotas() if self.quotas else Quotas()
        if "group_prizes" in changes:
            changes["group_prizes"] = _group_prizes(self.group_prizes)
        return changes


class CreatedOut(BaseModel):
    id: UUID


@router.post("/api/admin/contests/{contest_id}/rounds", status_code=201)
async def create_round(contest_id: UUID, body: RoundIn, who: Organiser, db: Db) -> CreatedOut:
    contest = await store.contest_by_id(db, contest_id)
    if contest is None:
        raise Problem(404, "not_found")
    quotas = body.quotas.as_quotas() if body.quotas else Quotas()
    group_prizes = _group_prizes(body.group_prizes)
    if errors := domain.quota_errors(quotas, body.question_count, contest.settings) + domain.group_prize_errors(
            group_prizes, contest.settings):
        raise _settings_invalid(errors)
    try:
        round_id = await store.create_round(
            db, contest_id, number=body.number, title=body.title, opens_at=body.opens_at,
            closes_at=body.closes_at, question_count=body.question_count, time_limit_s=body.time_limit_s,
            grace_s=body.grace_s, max_attempts=body.max_attempts, prediction=_prediction(body.prediction),
            prizes=[Prize(p.name, p.count) for p in body.prizes], quotas=quotas, group_prizes=group_prizes,
            freeze_minutes=body.freeze_minutes,
        )
    except store.ContestNotFound:
        raise Problem(404, "not_found") from None
    except store.DuplicateRoundNumber:
        raise Problem(409, "round_number_taken", number=body.number) from None
    return CreatedOut(id=round_id)


class QuotasOut(BaseModel):
    topics: dict[str, int]
    difficulties: dict[str, int]


class AdminPredictionOut(BaseModel):
    text: str
    target: str


class GroupSettingsOut(BaseModel):
    code: str
    name: str
    topics: list[str]


def _groups_out(settings: ContestSettings) -> list[GroupSettingsOut]:
    return [GroupSettingsOut(code=g.code, name=g.name, topics=list(g.topics)) for g in settings.groups]


class AdminRoundOut(BaseModel):
    id: UUID
    contest_id: UUID
    number: int
    title: str
    status: domain.RoundStatus
    opens_at: datetime
    closes_at: datetime
    opens_at_local: datetime
    closes_at_local: datetime
    question_count: int
    time_limit_s: int
    grace_s: int
    max_attempts: int | None
    prediction: AdminPredictionOut | None
    prizes: list[PrizeOut]
    group_prizes: dict[str, list[PrizeOut]] | None
    quotas: QuotasOut
    freeze_minutes: int
    opened_at: datetime | None
    closed_at: datetime | None
    finalised_at: datetime | None
    snapshot_size: int | None  # questions in the bank snapshot, once the round opened

    @classmethod
    def of(cls, round_: Round, now: datetime) -> AdminRoundOut:
        quotas = round_.quotas.as_json()
        return cls(
            id=round_.id, contest_id=round_.contest_id, number=round_.number, title=round_.title,
            status=domain.round_status(round_, now), opens_at=round_.opens_at, closes_at=round_.closes_at,
            opens_at_local=domain.local_time(round_.opens_at), closes_at_local=domain.local_time(round_.closes_at),
            question_count=round_.question_count, time_limit_s=round_.time_limit_s, grace_s=round_.grace_s,
            max_attempts=round_.max_attempts,
            prediction=AdminPredictionOut(text=round_.prediction.text, target=round_.prediction.target)
            if round_.prediction else None,
            prizes=_prizes_out(round_.prizes), group_prizes=_group_prizes_out(round_),
            quotas=QuotasOut(topics=quotas["topics"], difficulties=quotas["difficulties"]),
            freeze_minutes=round_.freeze_minutes, opened_at=round_.opened_at, closed_at=round_.closed_at,
            finalised_at=round_.finalised_at,
            snapshot_size=None if round_.question_ids is None else len(round_.question_ids),
        )


class DrawProblemOut(BaseModel):
    group: str | None
    field: str
    message: str


class AdminRoundDetailOut(AdminRoundOut):
    # The groups its attempts are drawn for: as copied when the round opened, else the contest's now.
    groups: list[GroupSettingsOut]
    require_all_answered: bool
    # Groups whose attempts the bank (the snapshot once opened) cannot give as configured.
    draw_problems: list[DrawProblemOut]


async def _round_detail(db: Db, questions: Questions, round_: Round, contest: Contest) -> AdminRoundDetailOut:
    settings = round_.settings or contest.settings
    bank: Sequence[domain.QuestionRef]
    if round_.opened_at is not None:
        bank = await questions.draw_pool(db, round_)
    else:
        bank = await store.bank_of(db, contest.id)
    problems = domain.round_draw_problems(bank, round_, settings)
    return AdminRoundDetailOut(
        **AdminRoundOut.of(round_, _now()).model_dump(),
        groups=_groups_out(settings),
        require_all_answered=settings.require_all_answered,
        draw_problems=[DrawProblemOut(group=group, field=p.field, message=p.message) for group, p in problems],
    )


@router.get("/api/admin/rounds/{round_id}")
async def get_round(round_id: UUID, who: Organiser, db: Db, questions: Questions) -> AdminRoundDetailOut:
    found = await store.round_with_contest(db, round_id)
    if found is None:
        raise Problem(404, "not_found")
    return await _round_detail(db, questions, *found)


@router.patch("/api/admin/rounds/{round_id}")
async def update_round(
    round_id: UUID, body: RoundPatchIn, who: Organiser, db: Db, questions: Questions
) -> AdminRoundDetailOut:
    try:
        round_, contest = await store.update_round(db, round_id, body.changes())
    except store.RoundNotFound:
        raise Problem(404, "not_found") from None
    except store.RoundLocked as exc:
        raise Problem(409, "round_locked", round_status=exc.status, reason=exc.reason) from None
    except store.SettingsInvalid as exc:
        raise _settings_invalid(exc.errors) from None
    except store.DuplicateRoundNumber:
        raise Problem(409, "round_number_taken", number=body.number) from None
    return await _round_detail(db, questions, round_, contest)


class AdminContestOut(BaseModel):
    id: UUID
    slug: str
    title: str
    rules: str
    tie_break: list[str]
    prize_scope: str
    groups: list[GroupSettingsOut]
    default_group: str | None
    require_all_answered: bool
    rounds: list[AdminRoundOut]

    @classmethod
    def of(cls, contest: Contest, rounds: list[Round], now: datetime) -> AdminContestOut:
        return cls(
            id=contest.id, slug=contest.slug, title=contest.title, rules=contest.rules,
            tie_break=list(contest.tie_break), prize_scope=contest.prize_scope,
            groups=_groups_out(contest.settings), default_group=contest.settings.default_group,
            require_all_answered=contest.settings.require_all_answered,
            rounds=[AdminRoundOut.of(r, now) for r in rounds],
        )


class BankTopicOut(BaseModel):
    topic: str
    count: int
    difficulties: dict[str, int]


class AdminContestDetailOut(AdminContestOut):
    question_count: int  # in the bank
    bank_topics: list[BankTopicOut]  # what quotas and groups can draw on


async def _contest_detail(db: Db, contest: Contest) -> AdminContestDetailOut:
    rounds = (await store.rounds_of(db, [contest.id]))[contest.id]
    bank = await store.bank_of(db, contest.id)
    by_topic: dict[str, dict[str, int]] = {}
    for question in bank:
        counts = by_topic.setdefault(question.topic, {str(d): 0 for d in domain.DIFFICULTIES})
        counts[str(question.difficulty)] += 1
    return AdminContestDetailOut(
        **AdminContestOut.of(contest, rounds, _now()).model_dump(),
        question_count=len(bank),
        bank_topics=[BankTopicOut(topic=topic, count=sum(counts.values()), difficulties=counts)
                     for topic, counts in sorted(by_topic.items())],
    )


@router.get("/api/admin/contests")
async def list_admin_contests(who: Organiser, db: Db) -> list[AdminContestOut]:
    found = await store.contests(db)
    rounds = await store.rounds_of(db, [c.id for c in found])
    now = _now()
    return [AdminContestOut.of(c, rounds[c.id], now) for c in found]


@router.get("/api/admin/contests/{contest_id}")
async def get_admin_contest(contest_id: UUID, who: Organiser, db: Db) -> AdminContestDetailOut:
    contest = await store.contest_by_id(db, contest_id)
    if contest is None:
        raise Problem(404, "not_found")
    return await _contest_detail(db, contest)


@router.patch("/api/admin/contests/{contest_id}")
async def update_contest(contest_id: UUID, body: ContestPatchIn, who: Organiser, db: Db) -> AdminContestDetailOut:
    """Changes apply to the rounds still to open: an opened round keeps the settings it announced."""
    try:
        contest = await store.update_contest(db, contest_id, body.changes())
    except store.SettingsInvalid as exc:
        raise _settings_invalid(exc.errors) from None
    if contest is None:
        raise Problem(404, "not_found")
    return await _contest_detail(db, contest)


class AdminOptionOut(BaseModel):
    id: str
    text: str


class AdminQuestionOut(BaseModel):
    id: UUID
    topic: str
    difficulty: int
    text: str
    options: list[AdminOptionOut]
    correct: list[str]
    explanation: str

    @classmethod
    def of(cls, question: Question) -> AdminQuestionOut:
        return cls(
            id=question.id, topic=question.topic, difficulty=question.difficulty, text=question.text,
            options=[AdminOptionOut(id=o.id, text=o.text) for o in question.options],
            correct=list(question.correct), explanation=question.explanation,
        )


@router.get("/api/admin/contests/{contest_id}/questions")
async def list_questions(
    contest_id: UUID,
    who: Organiser,
    db: Db,
    response: Response,
    topic: Annotated[str | None, Query(max_length=domain.MAX_TOPIC_CHARS)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[AdminQuestionOut]:
    """A page of the bank with the correct letters; `X-Total-Count` tells how many match."""
    if await store.contest_by_id(db, contest_id) is None:
        raise Problem(404, "not_found")
    wanted = domain.normalised_text(topic) if topic else None
    total, found = await store.questions_of(db, contest_id, topic=wanted, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(total)
    return [AdminQuestionOut.of(q) for q in found]


class ReplayQuestionOut(BaseModel):
    id: UUID
    options: list[str]  # option letters in the order the attempt showed them
    correct: list[str]
    chosen: list[str] | None  # as submitted; null when not submitted


class ReplayOut(BaseModel):
    attempt_id: UUID
    round_id: UUID
    participant_id: UUID
    group: str | None
    attempt_number: int
    seed: str  # a 63-bit integer, as text so that JavaScript keeps every digit
    question_ids: list[UUID]  # as stored when the attempt started
    replayed_question_ids: list[UUID] | None  # drawn again from the seed; null when the draw fails now
    matches: bool
    problem: str | None
    questions: list[ReplayQuestionOut]


@router.get("/api/admin/attempts/{attempt_id}/replay")
async def replay_attempt(attempt_id: UUID, who: Organiser, db: Db, questions: Questions) -> ReplayOut:
    """Audit: draw the attempt again from its stored seed, the round's snapshot and the
    settings the round opened with, and compare with what was stored."""
    found = await store.attempt_with_round_admin(db, attempt_id)
    if found is None:
        raise Problem(404, "not_found")
    attempt, round_ = found
    pool = await questions.draw_pool(db, round_)
    replayed: list[UUID] | None
    problem: str | None = None
    try:
        replayed = domain.attempt_draw(pool, round_, attempt.group, attempt.seed)
    except domain.DrawImpossible as exc:
        replayed, problem = None, exc.message
    bank = await questions.of_round(db, round_.id)
    shown = [bank[q] for q in attempt.question_ids if q in bank]
    answers = attempt.answers if attempt.submitted_at is not None else None
    return ReplayOut(
        attempt_id=attempt.id, round_id=attempt.round_id, participant_id=attempt.participant_id,
        group=attempt.group, attempt_number=attempt.attempt_number, seed=str(attempt.seed),
        question_ids=list(attempt.question_ids), replayed_question_ids=replayed,
        matches=replayed == list(attempt.question_ids), problem=problem,
        questions=[
            ReplayQuestionOut(
                id=q.id, options=[o.id for o in domain.shuffled_options(q, attempt.seed)], correct=list(q.correct),
                chosen=None if answers is None else answers.get(str(q.id), []),
            )
            for q in shown
        ],
    )


class ImportedOut(BaseModel):
    imported: int


_MULTIPART_FILE: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "CSV (UTF-8) or XLSX: topic, difficulty, question, "
                                                   "option_a..option_d[, option_e, option_f], correct, explanation"}},
        }}},
    }
}


@router.post("/api/admin/contests/{contest_id}/questions/import", openapi_extra=_MULTIPART_FILE)
async def import_questions(
    contest_id: UUID, who: Organiser, db: Db, settings: Settings, request: Request
) -> ImportedOut:
    # The upload is read here rather than as a parameter, so that a caller without the
    # organiser role is refused before a byte of it is read.
    table = await read_uploaded_table(
        request, max_bytes=settings.import_max_bytes, max_rows=settings.import_max_rows,
        unsupported_code="unsupported_file",
    )
    try:
        imported = await store.import_questions(db, contest_id, table.records())
    except store.ContestNotFound:
        raise Problem(404, "not_found") from None
    except store.QuestionRowsInvalid as exc:
        raise Problem(422, "invalid_questions", errors=[e.as_dict() for e in exc.errors]) from None
    return ImportedOut(imported=imported)


class ClosedOut(BaseModel):
    id: UUID
    status: domain.RoundStatus


@router.post("/api/admin/rounds/{round_id}/close", status_code=202)
async def close_round(round_id: UUID, who: Organiser, db: Db) -> ClosedOut:
    round_ = await store.close_round(db, round_id)
    if round_ is None:
        raise Problem(404, "not_found")
    # The database stamped closed_at; never judge it by an app clock that runs behind.
    now = max(_now(), round_.closed_at or _now())
    return ClosedOut(id=round_.id, status=domain.round_status(round_, now))
