"""scoring's routes (DESIGN.md "HTTP contract"): results, live boards, winners.

The live board and ranks come from Redis (one round trip each); results and winners
from PostgreSQL. `GET /api/attempts/{id}/result` answers `pending` both for an attempt
still in flight and for one that does not exist: scoring cannot tell them apart, and
the same answer for both reveals nothing about other people's attempts.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from services.core.events import WINNERS_ANNOUNCED, Event
from services.core.http import Db, Organiser, Participant
from services.core.problems import Problem
from services.scoring import store
from services.scoring.leaderboards import Leaderboards

router = APIRouter()

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
}


def _boards(request: Request) -> Leaderboards:
    return request.app.state.boards  # type: ignore[no-any-return]


Boards = Annotated[Leaderboards, Depends(_boards)]


class AttemptResultOut(BaseModel):
    status: Literal["pending", "scored"]
    correct: int | None = None
    total: int | None = None
    duration_ms: int | None = None
    rank: int | None = None


class BoardEntryOut(BaseModel):
    rank: int
    participant_id: UUID
    name: str | None
    unit: str | None
    correct: int
    duration_ms: int


class LeaderboardOut(BaseModel):
    entries: list[BoardEntryOut]


class StandingOut(BaseModel):
    rank: int
    correct: int
    duration_ms: int


class WinnerOut(BaseModel):
    rank: int
    participant_id: UUID
    name: str
    unit: str | None
    prize: str


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
    return AttemptResultOut(
        status="scored",
        correct=result.correct,
        total=result.total,
        duration_ms=result.duration_ms,
        # The live rank of the participant's best attempt; null for the moment between
        # the result's commit and its board update.
        rank=await boards.rank_of(result.round_id, who.id),
    )


@router.get("/api/rounds/{round_id}/leaderboard")
async def leaderboard(
    round_id: UUID,
    boards: Boards,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    unit_id: UUID | None = None,
    group: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> LeaderboardOut:
    if unit_id is not None and group is not None:
        raise Problem(
            422,
            "validation",
            errors=[{"field": "group", "message": "Chỉ lọc theo một trong hai: đơn vị (unit_id) hoặc nhóm (group)."}],
        )
    rows = await boards.top(round_id, limit, unit_id=unit_id, group=group)
    # Thousands of people refresh the same board at the deadline; a second or two of
    # staleness lets the gateway or browser answer most of them.
    response.headers["Cache-Control"] = "public, max-age=2"
    return LeaderboardOut(
        entries=[
            BoardEntryOut(
                rank=r.rank,
                participant_id=UUID(r.participant_id),
                name=r.name,
                unit=r.unit_name,
                correct=r.correct,
                duration_ms=r.duration_ms,
            )
            for r in rows
        ]
    )


@router.get("/api/rounds/{round_id}/leaderboard/me")
async def my_standing(round_id: UUID, who: Participant, boards: Boards) -> StandingOut:
    standing = await boards.standing(round_id, who.id)
    if standing is None:
        raise Problem(404, "not_ranked")
    return StandingOut(rank=standing.rank, correct=standing.correct, duration_ms=standing.duration_ms)


@router.get("/api/rounds/{round_id}/winners")
async def winners(round_id: UUID, db: Db) -> WinnersOut:
    found = await store.round_winners(db, round_id)
    if found is None:
        raise Problem(404, "not_found")
    return WinnersOut(
        status=found.status,
        winners=[
            WinnerOut(rank=w.rank, participant_id=w.participant_id, name=w.name, unit=w.unit_name, prize=w.prize)
            for w in found.winners
        ],
    )


def _announced_event(found: store.RoundWinners) -> Event:
    return Event(
        WINNERS_ANNOUNCED,
        {
            "round_id": found.round_id,
            "contest_title": found.contest_title,
            "round_title": found.round_title,
            "winners": [
                {
                    # asyncpg hands back its own UUID type, which orjson cannot encode.
                    "participant_id": str(w.participant_id),
                    "name": w.name,
                    "rank": w.rank,
                    "prize": w.prize,
                    "correct": w.correct,
                    "duration_ms": w.duration_ms,
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


