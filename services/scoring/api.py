"""scoring's routes (DESIGN.md "HTTP contract"): results, live boards, winners, reports,
collective ranking, participation nudges.

The live board and ranks come from Redis (one round trip each); results, winners and
reports from PostgreSQL. `GET /api/attempts/{id}/result` answers `pending` both for an
attempt still in flight and for one that does not exist: scoring cannot tell them
apart, and the same answer for both reveals nothing about other people's attempts.

Reports are for staff: an organiser sees every unit, a coordinator the subtree of their
own unit (other units are left out, not refused).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from services.core.auth import Principal
from services.core.events import WINNERS_ANNOUNCED, Event
from services.core.http import Db, Organiser, Participant, Staff, current_principal, json_response
from services.core.problems import Problem
from services.core.spreadsheets import XLSX_MEDIA_TYPE
from services.scoring import domain, nudges, reports, store
from services.scoring.leaderboards import BoardsLost, Leaderboards
from services.scoring.projection import BoardsRebuilding, Projection

router = APIRouter()
T = TypeVar("T")

MESSAGES: dict[str, tuple[str, str, str]] = {
    "not_ranked": (
        "Not Found",
        "Bạn chưa có kết quả trong vòng thi này.",
        "You have no result in this round yet.",
    ),
    "not_final": (
        "Conflict",
        "Vòng thi chưa có kết quả chung cuộc, chưa thể công bố danh sách đoạt giải.",
        "The round is not final yet; its winners cannot be announced.",
    ),
    "already_announced": (
        "Conflict",
        "Danh sách đoạt giải của vòng thi này đã được công bố.",
        "The winners of this round have already been announced.",
    ),
    "board_rebuilding": (
        "Service Unavailable",
        "Bảng xếp hạng đang được dựng lại từ dữ liệu gốc, vui lòng thử lại sau giây lát.",
        "The leaderboard is being rebuilt from the stored results; please try again in a moment.",
    ),
    "coordinator_without_unit": (
        "Forbidden",
        "Tài khoản điều phối viên chưa được gắn với đơn vị nào nên không xem được báo cáo.",
        "This coordinator account has no unit, so it cannot see reports.",
    ),
}


async def _boards(request: Request) -> Leaderboards:
    return request.app.state.boards  # type: ignore[no-any-return]


Boards = Annotated[Leaderboards, Depends(_boards)]


async def _projection(request: Request) -> Projection:
    return request.app.state.projection  # type: ignore[no-any-return]


BoardProjection = Annotated[Projection, Depends(_projection)]


async def _complete(projection: Projection, round_id: UUID, read: Callable[[bool], Awaitable[T]]) -> T:
    """A board read that never answers from boards Redis lost: they are rebuilt first
    (services.scoring.projection), or the caller is asked to come back."""
    try:
        return await projection.read(round_id, read)
    except BoardsRebuilding:
        raise Problem(503, "board_rebuilding", headers={"Retry-After": "2"}) from None


class AttemptResultOut(BaseModel):
    status: Literal["pending", "scored"]
    correct: int | None = None
    total: int | None = None
    duration_ms: int | None = None
    rank: int | None = None
    # False: the round requires every question answered and this attempt left one
    # blank; the result is shown but never ranked.
    counts: bool | None = None


class BoardEntryOut(BaseModel):
    rank: int
    participant_id: UUID
    name: str | None
    unit: str | None
    correct: int
    duration_ms: int


class LeaderboardOut(BaseModel):
    entries: list[BoardEntryOut]
    # True from the round's freeze until it is final: the board as it stood at frozen_at.
    frozen: bool = False
    frozen_at: datetime | None = None


class StandingOut(BaseModel):
    rank: int
    correct: int
    duration_ms: int
    # In the board of the caller's unit (with its subtree) and of their group; null
    # when they have none.
    unit_rank: int | None = None
    group_rank: int | None = None


class WinnerOut(BaseModel):
    rank: int
    participant_id: UUID
    name: str
    unit: str | None
    prize: str
    # The group whose ranking the rank is in; null in a round without groups.
    group: str | None = None


class WinnersOut(BaseModel):
    status: Literal["pending", "final", "announced"]
    winners: list[WinnerOut]


class AnnouncedOut(BaseModel):
    round_id: UUID
    status: Literal["announced"]


@router.get("/api/attempts/{attempt_id}/result")
async def attempt_result(attempt_id: UUID, who: Participant, db: Db, boards: Boards) -> AttemptResultOut:
    result = await store.result_of_attempt(db, attempt_id)
    if result is None:
        return AttemptResultOut(status="pending")
    if result.participant_id != who.id:
        raise Problem(404, "not_found")
    try:
        rank = await boards.rank_of(result.round_id, who.id)
    except BoardsLost:
        # The result itself comes from PostgreSQL; only its rank waits for the boards
        # (rebuilt by the worker's watch or the next board read).
        rank = None
    return AttemptResultOut(
        status="scored",
        correct=result.correct,
        total=result.total,
        duration_ms=result.duration_ms,
        # The live rank of the participant's best attempt; null for the moment between
        # the result's commit and its board update (or the boards' rebuild after Redis
        # lost them), and for an entry that does not count.
        rank=rank,
        counts=result.counts,
    )


@router.get("/api/rounds/{round_id}/leaderboard", response_model=LeaderboardOut)
async def leaderboard(
    round_id: UUID,
    boards: Boards,
    projection: BoardProjection,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    unit_id: UUID | None = None,
    group: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    live: bool = False,
) -> Response:
    """Public; during a round's freeze the board as it stood then. `?live=true` is the
    live board whatever the freeze, for organisers only."""
    if unit_id is not None and group is not None:
        raise Problem(
            422,
            "validation",
            errors=[{"field": "group", "message": "Chỉ lọc theo một trong hai: đơn vị (unit_id) hoặc nhóm (group)."}],
        )
    if live and (await current_principal(request)).role != "organiser":
        raise Problem(403, "forbidden")
    board = await _complete(
        projection,
        round_id,
        lambda complete: boards.top(
            round_id, limit, unit_id=unit_id, group=group, now=datetime.now(UTC), live=live, complete=complete
        ),
    )
    # Thousands of people refresh the same board at the deadline; a second or two of
    # staleness lets the gateway or browser answer most of them. Never the organiser's
    # live view: a shared cache would hand it to everyone.
    # Plain data to `json_response`: a hundred models per miss were a tenth of its CPU.
    response = json_response({
        "entries": [
            {"rank": r.rank, "participant_id": r.participant_id, "name": r.name, "unit": r.unit_name,
             "correct": r.correct, "duration_ms": r.duration_ms}
            for r in board.rows
        ],
        "frozen": board.frozen_at is not None,
        "frozen_at": board.frozen_at,
    })
    response.headers["Cache-Control"] = "private, no-store" if live else "public, max-age=2"
    return response


@router.get("/api/rounds/{round_id}/leaderboard/me")
async def my_standing(
    round_id: UUID, who: Participant, boards: Boards, projection: BoardProjection
) -> StandingOut:
    """Live, frozen or not (participants always see their own result). The unit is the
    token's (quiz stamps it on the attempt); the group is the one quiz resolved the
    token's group to (see Leaderboards.standing)."""
    standing = await _complete(
        projection,
        round_id,
        lambda complete: boards.standing(
            round_id, who.id, unit_id=who.unit_id, group=who.group, complete=complete
        ),
    )
    if standing is None:
        raise Problem(404, "not_ranked")
    return StandingOut(
        rank=standing.rank,
        correct=standing.correct,
        duration_ms=standing.duration_ms,
        unit_rank=standing.unit_rank,
        group_rank=standing.group_rank,
    )


@router.get("/api/rounds/{round_id}/winners")
async def winners(round_id: UUID, db: Db) -> WinnersOut:
    found = await store.round_winners(db, round_id)
    if found is None:
        raise Problem(404, "not_found")
    return WinnersOut(
        status=found.status,
        winners=[
            WinnerOut(rank=w.rank, participant_id=w.participant_id, name=w.name, unit=w.unit_name, prize=w.prize,
                      group=w.group)
            for w in found.winners
        ],
    )


def _announced_event(found: store.RoundWinners) -> Event:
    summary = found.summary or store.RoundSummary(0, 0, 0)
    return Event(
        WINNERS_ANNOUNCED,
        {
            "round_id": found.round_id,
            "contest_id": found.contest_id,
            "contest_title": found.contest_title,
            "round_title": found.round_title,
            "summary": {
                "participants": summary.participants,
                "attempts": summary.attempts,
                "all_correct": summary.all_correct,
            },
            "winners": [
                {
                    # asyncpg hands back its own UUID type, which orjson cannot encode.
                    "participant_id": str(w.participant_id),
                    "name": w.name,
                    "rank": w.rank,
                    "prize": w.prize,
                    "correct": w.correct,
                    "duration_ms": w.duration_ms,
                    "group": w.group,
                }
                for w in found.winners
            ],
        },
    )


@router.post("/api/admin/rounds/{round_id}/announce", status_code=202)
async def announce(round_id: UUID, who: Organiser, db: Db) -> AnnouncedOut:
    outcome = await store.announce_with_outbox(db, round_id, _announced_event)
    if outcome == "unknown_round":
        raise Problem(404, "not_found")
    if outcome != "announced":
        raise Problem(409, outcome)
    return AnnouncedOut(round_id=round_id, status="announced")




# --- reports ---------------------------------------------------------------------------

async def _contest_scope(
    db: Db, contest: str, round_id: UUID | None
) -> tuple[list[store.RoundInfo], store.RoundInfo | None]:
    """The contest's rounds (by id, or by slug) and the chosen one; 404 when scoring
    knows no round of the contest, or the round is not one of them."""
    try:
        key: UUID | str = UUID(contest)
    except ValueError:
        key = contest
    rounds = await store.contest_rounds(db, key)
    if not rounds:
        raise Problem(404, "not_found")
    if round_id is None:
        return rounds, None
    chosen = next((r for r in rounds if r.round_id == round_id), None)
    if chosen is None:
        raise Problem(404, "not_found")
    return rounds, chosen


async def _visible_units(db: Db, who: Principal) -> set[UUID] | None:
    """None: every unit (an organiser); a coordinator sees their unit's subtree."""
    if who.role == "organiser":
        return None
    if who.unit_id is None:
        raise Problem(403, "coordinator_without_unit")
    return await store.subtree(db, who.unit_id)


ContestQuery = Annotated[str, Query(min_length=1, max_length=100, description="contest id (or slug)")]


class ParticipationUnitOut(BaseModel):
    unit_id: UUID
    code: str
    name: str
    block: str
    parent_id: UUID | None
    # Figures over the unit's subtree: a unit with sub-units (is_leaf false) counts them.
    headcount: int
    participants: int
    attempts: int
    rate: float | None
    complete: bool
    is_leaf: bool

    @classmethod
    def of(cls, u: domain.UnitParticipation) -> ParticipationUnitOut:
        return cls(unit_id=u.unit_id, code=u.code, name=u.name, block=u.block, parent_id=u.parent_id,
                   headcount=u.headcount, participants=u.participants, attempts=u.attempts, rate=u.rate,
                   complete=u.complete, is_leaf=u.is_leaf)


class ScoreBandOut(BaseModel):
    band: str
    min_correct: int
    max_correct: int
    entries: int


class HourCountOut(BaseModel):
    at: datetime  # the start of the hour, UTC
    attempts: int


class ParticipationOut(BaseModel):
    contest_id: UUID
    contest_title: str
    round_id: UUID | None
    round_title: str | None
    generated_at: datetime
    participants: int
    attempts: int
    units: list[ParticipationUnitOut]
    units_complete: int
    score_bands: list[ScoreBandOut]
    all_correct: int
    top_units: list[ParticipationUnitOut]
    # Submitted attempts per hour, earliest first; hours without any are left out.
    attempts_over_time: list[HourCountOut]


ReportFormat = Literal["json", "csv", "xlsx"]


def _wanted_format(request: Request, explicit: ReportFormat | None) -> ReportFormat:
    if explicit is not None:
        return explicit
    accept = request.headers.get("accept", "")
    if XLSX_MEDIA_TYPE in accept:
        return "xlsx"
    if "text/csv" in accept:
        return "csv"
    return "json"


@router.get("/api/reports/participation", response_model=ParticipationOut)
async def participation_report(
    request: Request,
    who: Staff,
    db: Db,
    contest: ContestQuery,
    round: UUID | None = None,
    format: ReportFormat | None = None,
) -> ParticipationOut | Response:
    """Per unit participants, attempts, rate; units at 100 %; score bands; all-correct
    entries; top units. JSON, or CSV / XLSX by `Accept` or `?format=`."""
    rounds, chosen = await _contest_scope(db, contest, round)
    visible = await _visible_units(db, who)
    report = await reports.participation_report(db, rounds, chosen, visible, datetime.now(UTC))
    wanted = _wanted_format(request, format)
    if wanted == "csv":
        return Response(reports.to_csv(report), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{reports.file_name(report, "csv")}"',
            "Cache-Control": "private, no-store",
        })
    if wanted == "xlsx":
        body = await run_in_threadpool(reports.to_xlsx, report)
        return Response(body, media_type=XLSX_MEDIA_TYPE, headers={
            "Content-Disposition": f'attachment; filename="{reports.file_name(report, "xlsx")}"',
            "Cache-Control": "private, no-store",
        })
    return ParticipationOut(
        contest_id=report.contest_id,
        contest_title=report.contest_title,
        round_id=None if chosen is None else chosen.round_id,
        round_title=None if chosen is None else chosen.round_title,
        generated_at=report.generated_at,
        participants=report.participants,
        attempts=report.attempts,
        units=[ParticipationUnitOut.of(u) for u in report.units],
        units_complete=report.units_complete,
        score_bands=[ScoreBandOut(band=b.label, min_correct=b.min_correct, max_correct=b.max_correct,
                                  entries=b.entries) for b in report.score_bands],
        all_correct=report.all_correct,
        top_units=[ParticipationUnitOut.of(u) for u in report.top_units],
        attempts_over_time=[HourCountOut(at=h.at, attempts=h.attempts) for h in report.attempts_over_time],
    )


# --- collective ranking ----------------------------------------------------------------

class MinRateIn(BaseModel):
    min_headcount: int = Field(ge=0, le=domain.MAX_HEADCOUNT)
    max_headcount: int | None = Field(default=None, ge=0, le=domain.MAX_HEADCOUNT)
    min_rate: float = Field(ge=0, le=1)


class CollectiveRulesIn(BaseModel):
    min_rates: list[MinRateIn] = Field(max_length=50)


class CollectiveRulesOut(BaseModel):
    contest_id: UUID
    min_rates: list[MinRateIn]


class CollectiveUnitOut(BaseModel):
    rank: int | None  # null: below the minimum rate for its size, listed but not eligible
    eligible: bool
    min_rate: float | None
    unit_id: UUID
    code: str
    name: str
    headcount: int
    participants: int
    rate: float | None


class CollectiveBlockOut(BaseModel):
    block: str
    units: list[CollectiveUnitOut]


class CollectiveOut(BaseModel):
    contest_id: UUID
    round_id: UUID | None
    min_rates: list[MinRateIn]
    blocks: list[CollectiveBlockOut]


def _checked_min_rates(rules: list[domain.MinRate], field: str) -> list[domain.MinRate]:
    problems = domain.min_rate_problems(rules)
    if problems:
        raise Problem(422, "validation", errors=[{"field": f"{field}.{i}", "message": m} for i, m in problems])
    return rules


def _min_rates_out(rules: list[domain.MinRate]) -> list[MinRateIn]:
    return [MinRateIn(min_headcount=r.min_headcount, max_headcount=r.max_headcount, min_rate=r.min_rate)
            for r in rules]


@router.get("/api/reports/units")
async def collective_ranking(
    who: Staff,
    db: Db,
    contest_id: ContestQuery,
    round_id: UUID | None = None,
    min_rates: Annotated[
        str | None, Query(max_length=500, description="overrides the stored rules: `0-99:0.9,100-:0.7`")
    ] = None,
) -> CollectiveOut:
    """Units ranked by participation rate (distinct participants with any submitted
    attempt ÷ headcount, over the unit's subtree) within each block, for the round or
    the whole contest so far. Ranks are over all units; a coordinator sees the rows of
    their subtree."""
    rounds, chosen = await _contest_scope(db, contest_id, round_id)
    if min_rates is not None:
        try:
            rules = _checked_min_rates(domain.parse_min_rates(min_rates), "min_rates")
        except ValueError as exc:
            raise Problem(422, "validation", errors=[{"field": "min_rates", "message": str(exc)}]) from None
    else:
        rules = await store.collective_rules(db, rounds[-1].contest_id) or []
    visible = await _visible_units(db, who)
    scope = [chosen.round_id] if chosen is not None else [r.round_id for r in rounds]
    ranked = domain.collective_ranking(await store.unit_participation(db, scope), rules)
    return CollectiveOut(
        contest_id=rounds[-1].contest_id,
        round_id=None if chosen is None else chosen.round_id,
        min_rates=_min_rates_out(rules),
        blocks=[
            CollectiveBlockOut(
                block=block,
                units=[
                    CollectiveUnitOut(rank=e.rank, eligible=e.eligible, min_rate=e.min_rate, unit_id=e.unit.unit_id,
                                      code=e.unit.code, name=e.unit.name, headcount=e.unit.headcount,
                                      participants=e.unit.participants, rate=e.unit.rate)
                    for e in entries
                    if visible is None or e.unit.unit_id in visible
                ],
            )
            for block, entries in ranked.items()
        ],
    )


@router.put("/api/admin/contests/{contest_id}/collective-rules")
async def set_collective_rules(contest_id: UUID, body: CollectiveRulesIn, who: Organiser, db: Db) -> CollectiveRulesOut:
    """Minimum rates by unit size; ranges may not overlap. Accepted for a contest whose
    first round has not opened yet (scoring learns contests from their rounds)."""
    rules = _checked_min_rates(
        [domain.MinRate(r.min_headcount, r.max_headcount, r.min_rate) for r in body.min_rates], "min_rates"
    )
    await store.set_collective_rules(db, contest_id, rules)
    return CollectiveRulesOut(contest_id=contest_id, min_rates=_min_rates_out(rules))


@router.get("/api/admin/contests/{contest_id}/collective-rules")
async def get_collective_rules(contest_id: UUID, who: Organiser, db: Db) -> CollectiveRulesOut:
    rules = await store.collective_rules(db, contest_id)
    if rules is None:
        raise Problem(404, "not_found")
    return CollectiveRulesOut(contest_id=contest_id, min_rates=_min_rates_out(rules))


# --- participation nudges --------------------------------------------------------------

class NudgeIn(BaseModel):
    round_id: UUID | None = None
    target_rate: float = Field(ge=0, le=1)


class NudgeOut(BaseModel):
    nudge_id: UUID
    units: int


@router.post("/api/admin/contests/{contest_id}/nudges", status_code=202)
async def nudge(
    contest_id: UUID,
    body: NudgeIn,
    who: Organiser,
    db: Db,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> NudgeOut:
    """Emit participation.nudge for the leaf units (with a headcount) below the target
    rate, in the round or the whole contest so far; none is emitted when no unit is
    below. With an `Idempotency-Key` header a repeated request answers the first nudge."""
    rounds, chosen = await _contest_scope(db, str(contest_id), body.round_id)
    sent = await nudges.send_now(db, rounds, chosen, body.target_rate, idempotency_key)
    return NudgeOut(nudge_id=sent.nudge_id, units=sent.units)


class NudgeScheduleIn(BaseModel):
    target_rate: float = Field(ge=0, le=1)
    times_local: list[str] = Field(min_length=1, max_length=24)
    round_id: UUID | None = None
    enabled: bool = True

    @field_validator("times_local")
    @classmethod
    def _times(cls, value: list[str]) -> list[str]:
        for text in value:
            domain.parse_local_time(text)  # ValueError names the bad one, in Vietnamese
        if len(set(value)) != len(value):
            raise ValueError("mỗi giờ chỉ được ghi một lần")
        return sorted(value)


class NudgeScheduleOut(NudgeScheduleIn):
    contest_id: UUID
    timezone: str = "Asia/Ho_Chi_Minh"


@router.put("/api/admin/contests/{contest_id}/nudge-schedule")
async def set_nudge_schedule(
    contest_id: UUID, who: Organiser, db: Db, body: Annotated[NudgeScheduleIn, Body()]
) -> NudgeScheduleOut:
    """Nudge every day at these local times (Asia/Ho_Chi_Minh), about the schedule's
    round or else the round open at that moment (none open: no nudge)."""
    await store.set_nudge_schedule(
        db, store.NudgeSchedule(contest_id, body.target_rate, body.times_local, body.round_id, body.enabled)
    )
    return NudgeScheduleOut(contest_id=contest_id, **body.model_dump())


@router.get("/api/admin/contests/{contest_id}/nudge-schedule")
async def get_nudge_schedule(contest_id: UUID, who: Organiser, db: Db) -> NudgeScheduleOut:
    found = await store.nudge_schedule(db, contest_id)
    if found is None:
        raise Problem(404, "not_found")
    return NudgeScheduleOut(contest_id=contest_id, target_rate=found.target_rate, times_local=found.times_local,
                            round_id=found.round_id, enabled=found.enabled)
