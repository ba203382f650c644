"""The quiz's HTTP routes (DESIGN.md "HTTP contract"): parse, call domain and store, answer."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from redis.exceptions import RedisError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from services.core.auth import Principal
from services.core.http import ArrivedAt, Db, Organiser, Participant, RedisClient
from services.core.problems import Problem
from services.quiz import domain, store
from services.quiz.domain import Attempt, Prediction, Prize, Round
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
    "unsupported_file": (
        "Unsupported Media Type",
        "Chỉ nhận tệp CSV (UTF-8) hoặc Excel (.xlsx).",
        "Only CSV (UTF-8) or Excel (.xlsx) files are accepted.",
    ),
}

# Kept for an hour after the attempt ends: enough for a reload, then Redis forgets it.
AUTOSAVE_KEEP = timedelta(hours=1)


def _settings(request: Request) -> QuizSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _questions(request: Request) -> store.RoundQuestions:
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


class ContestSummaryOut(BaseModel):
    id: UUID
    slug: str
    title: str
    rounds: list[RoundOut]


class ContestOut(ContestSummaryOut):
    rules: str


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
        rounds=[RoundOut.of(r, now) for r in rounds],
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
    deadline_at: datetime
    attempt_number: int
    questions: list[QuestionOut]
    prediction: PredictionOut | None
    answers: dict[str, list[str]]


class AttemptStateOut(AttemptOut):
    submitted_at: datetime | None
    status: domain.AttemptStatus


async def _attempt_out(
    db: Db, redis: RedisClient, questions: Questions, attempt: Attempt, round_: Round, *, new: bool = False
) -> AttemptOut:
    bank = await questions.of_round(db, attempt.round_id)
    shown = [bank[question_id] for question_id in attempt.question_ids]
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
    return AttemptOut(
        attempt_id=attempt.id,
        deadline_at=attempt.deadline_at,
        attempt_number=attempt.attempt_number,
        questions=[
            QuestionOut(
                id=q.id, text=q.text, multiple=q.multiple,
                options=[OptionOut(id=o.id, text=o.text) for o in domain.shuffled_options(q, attempt.seed)],
            )
            for q in shown
        ],
        prediction=PredictionOut(text=round_.prediction.text) if round_.prediction else None,
        answers=answers,
    )


@router.post(
    "/api/rounds/{round_id}/attempts",
    status_code=201,
    responses={200: {"model": AttemptOut, "description": "The participant's running attempt, resumed"}},
)
async def start_attempt(
    round_id: UUID,
    who: Participant,
    db: Db,
    redis: RedisClient,
    questions: Questions,
    arrived: ArrivedAt,
    response: Response,
) -> AttemptOut:
    round_ = await store.round_by_id(db, round_id)
    if round_ is None:
        raise Problem(404, "not_found")
    # Two simultaneous starts both see n attempts and both try number n+1; the UNIQUE
    # constraint lets one in, and the other goes round again and resumes that attempt.
    for _ in range(3):
        attempts = await store.attempts_of(db, round_id, who.id)
        running = domain.running_attempt(attempts, round_.grace_s, arrived)
        if running is not None:
            response.status_code = 200
            return await _attempt_out(db, redis, questions, running, round_)
        if not domain.accepts_start(round_, arrived):
            raise Problem(409, "round_not_open", round_status=domain.round_status(round_, arrived))
        if not domain.has_attempts_left(round_, len(attempts)):
            raise Problem(409, "attempts_exhausted", max_attempts=round_.max_attempts, attempts_used=len(attempts))
        if round_.opened_at is None:
            await store.open_round(db, round_id, arrived)
            round_ = await store.round_by_id(db, round_id)
            if round_ is None or round_.opened_at is None:
                raise Problem(409, "round_not_open", round_status="scheduled")
        attempt = _new_attempt(round_, who, attempts, arrived)
        if attempt is None:
            raise Problem(409, "no_questions")
        if await store.insert_attempt(db, attempt):
            return await _attempt_out(db, redis, questions, attempt, round_, new=True)
    raise Problem(409, "attempt_conflict")


def _new_attempt(round_: Round, who: Principal, earlier: list[Attempt], started_at: datetime) -> Attempt | None:
    if not round_.question_ids:
        return None
    seed = secrets.randbits(63)  # fits bigint; stored, so the draw can be replayed
    return Attempt(
        id=uuid.uuid4(),
        round_id=round_.id,
        participant_id=who.id,
        participant_name=who.name,
        unit_id=who.unit_id,
        group=who.group,
        attempt_number=max((a.attempt_number for a in earlier), default=0) + 1,
        seed=seed,
        question_ids=tuple(domain.draw_questions(round_.question_ids, round_.question_count, seed)),
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


@router.get("/api/attempts/{attempt_id}")
async def get_attempt(
    attempt_id: UUID, who: Participant, db: Db, redis: RedisClient, questions: Questions
) -> AttemptStateOut:
    attempt, round_ = await _own_attempt(db, attempt_id, who)
    view = await _attempt_out(db, redis, questions, attempt, round_)
    return AttemptStateOut(
        **view.model_dump(),
        submitted_at=attempt.submitted_at,
        status=domain.attempt_status(attempt, round_.grace_s, _now()),
    )


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

class ContestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{2,60}$")]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    rules: Annotated[str, StringConstraints(max_length=20000)] = ""
    tie_break: list[str] = Field(default_factory=lambda: list(domain.DEFAULT_TIE_BREAK), max_length=10)
    prize_scope: str = "round"

    @field_validator("tie_break")
    @classmethod
    def _tie_break(cls, value: list[str]) -> list[str]:
        return list(domain.validate_tie_break(value))

    @field_validator("prize_scope")
    @classmethod
    def _prize_scope(cls, value: str) -> str:
        return domain.validate_prize_scope(value)


class ContestCreatedOut(BaseModel):
    id: UUID
    slug: str


@router.post("/api/admin/contests", status_code=201)
async def create_contest(body: ContestIn, who: Organiser, db: Db) -> ContestCreatedOut:
    contest_id = await store.create_contest(
        db, slug=body.slug, title=body.title, rules=body.rules, tie_break=body.tie_break,
        prize_scope=body.prize_scope,
    )
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
    max_attempts: int | None = Field(default=None, ge=1)
    prediction: PredictionIn | None = None
    prizes: list[PrizeIn] = Field(default_factory=list, max_length=50)

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _with_offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("Thời gian phải ghi kèm múi giờ, ví dụ 2025-03-03T10:00:00+07:00.")
        return value

    @field_validator("closes_at")
    @classmethod
    def _after_opening(cls, value: datetime, info: ValidationInfo) -> datetime:
        opens_at = info.data.get("opens_at")
        if opens_at is not None and value <= opens_at:
            raise ValueError("Thời điểm đóng phải sau thời điểm mở vòng thi.")
        return value


class CreatedOut(BaseModel):
    id: UUID


@router.post("/api/admin/contests/{contest_id}/rounds", status_code=201)
async def create_round(contest_id: UUID, body: RoundIn, who: Organiser, db: Db) -> CreatedOut:
    try:
        round_id = await store.create_round(
            db, contest_id, number=body.number, title=body.title, opens_at=body.opens_at,
            closes_at=body.closes_at, question_count=body.question_count, time_limit_s=body.time_limit_s,
            grace_s=body.grace_s, max_attempts=body.max_attempts,
            prediction=Prediction(body.prediction.text, body.prediction.target) if body.prediction else None,
            prizes=[Prize(p.name, p.count) for p in body.prizes],
        )
    except store.ContestNotFound:
        raise Problem(404, "not_found") from None
    except store.DuplicateRoundNumber:
        raise Problem(409, "round_number_taken", number=body.number) from None
    return CreatedOut(id=round_id)


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
    # The form is parsed here rather than as a parameter, so that a caller without the
    # organiser role is refused before a byte of the upload is read.
    content = await _uploaded_file(request, settings.import_max_bytes)
    try:
        table = await asyncio.to_thread(domain.read_table, content)  # an XLSX may take a while to parse
    except domain.UnsupportedFile:
        raise Problem(415, "unsupported_file") from None
    try:
        imported = await store.import_questions(db, contest_id, table)
    except store.ContestNotFound:
        raise Problem(404, "not_found") from None
    except store.QuestionRowsInvalid as exc:
        raise Problem(422, "invalid_questions", errors=[e.as_dict() for e in exc.errors]) from None
    return ImportedOut(imported=imported)


async def _uploaded_file(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + 64 * 1024:  # room for the multipart framing
        raise Problem(413, "payload_too_large")
    missing = Problem(422, "validation", errors=[{"field": "file", "message": "Thiếu tệp câu hỏi (trường file)."}])
    try:
        form = await request.form(max_files=1, max_fields=10)
    except MultiPartException:
        raise missing from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise missing
        content = await upload.read(max_bytes + 1)
    finally:
        await form.close()
    if len(content) > max_bytes:
        raise Problem(413, "payload_too_large")
    return content


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
