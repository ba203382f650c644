"""Events as quiz and registration send them (docs/events.md), for the tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services.core.events import (
    ATTEMPT_SUBMITTED,
    PARTICIPANT_REGISTERED,
    ROUND_CLOSED,
    ROUND_OPENED,
    UNITS_CHANGED,
    Event,
)

OPENS_AT = datetime(2025, 3, 3, 3, 0, tzinfo=UTC)  # Monday 10:00 in Hanoi
QUESTIONS = [f"q{i}" for i in range(1, 11)]
ANSWER_KEY = {q: (["A", "C"] if i % 4 == 0 else ["ABCD"[i % 4]]) for i, q in enumerate(QUESTIONS)}


def round_opened(round_id: uuid.UUID, contest_id: uuid.UUID | None = None, **rules: Any) -> Event:
    data: dict[str, Any] = {
        "round_id": str(round_id),
        "contest_id": str(contest_id or uuid.UUID(int=1)),
        "contest_slug": "demo",
        "contest_title": "Tìm hiểu pháp luật năm 2025",
        "round_number": 1,
        "round_title": "Tuần 1",
        "opens_at": OPENS_AT.isoformat(),
        "closes_at": (OPENS_AT + timedelta(days=7)).isoformat(),
        "question_count": len(QUESTIONS),
        "time_limit_s": 900,
        "grace_s": 30,
        "max_attempts": None,
        "tie_break": ["correct", "prediction_error", "duration", "submitted_at"],
        "prize_scope": "round",
        "prizes": [{"name": "Giải Nhất", "count": 1}, {"name": "Giải Nhì", "count": 1}],
        "prediction": {"text": "Có bao nhiêu người tham gia vòng này?", "target": "participants"},
        "answer_key": ANSWER_KEY,
    }
    data.update(rules)
    return Event(ROUND_OPENED, data)


def answers_with(correct: int) -> dict[str, list[str]]:
    """Answers to every question, the first `correct` of them right."""
    wrong = {"A": "B", "B": "C", "C": "D", "D": "A"}
    return {q: (ANSWER_KEY[q] if i < correct else [wrong[ANSWER_KEY[q][0]]]) for i, q in enumerate(QUESTIONS)}


def attempt_submitted(
    round_id: uuid.UUID,
    participant_id: uuid.UUID,
    *,
    correct: int,
    duration_s: float = 300,
    submitted_after_s: float = 3600,
    attempt_number: int = 1,
    prediction: int | None = None,
    name: str = "Nguyễn Văn An",
    unit_id: uuid.UUID | None = None,
    group: str | None = None,
    attempt_id: uuid.UUID | None = None,
    submitted_at: datetime | None = None,
    answers: dict[str, list[str]] | None = None,
    answered_all: bool | None = None,
) -> Event:
    """`answered_all` is left out of the event unless given (quiz before issue 3)."""
    submitted_at = submitted_at or OPENS_AT + timedelta(seconds=submitted_after_s)
    extra: dict[str, Any] = {} if answered_all is None else {"answered_all": answered_all}
    return Event(
        ATTEMPT_SUBMITTED,
        {
            **extra,
            "attempt_id": str(attempt_id or uuid.uuid4()),
            "round_id": str(round_id),
            "participant_id": str(participant_id),
            "name": name,
            "unit_id": str(unit_id) if unit_id else None,
            "group": group,
            "attempt_number": attempt_number,
            "started_at": (submitted_at - timedelta(seconds=duration_s)).isoformat(),
            "submitted_at": submitted_at.isoformat(),
            "question_ids": QUESTIONS,
            "answers": answers if answers is not None else answers_with(correct),
            "prediction": prediction,
        },
    )


def round_closed(round_id: uuid.UUID, submitted_count: int) -> Event:
    return Event(
        ROUND_CLOSED,
        {
            "round_id": str(round_id),
            "closed_at": (OPENS_AT + timedelta(days=7, minutes=16)).isoformat(),
            "submitted_count": submitted_count,
        },
    )


def participant_registered(
    participant_id: uuid.UUID, full_name: str, unit_id: uuid.UUID | None = None, group: str | None = None
) -> Event:
    return Event(
        PARTICIPANT_REGISTERED,
        {
            "participant_id": str(participant_id),
            "full_name": full_name,
            "phone": "0912345678",
            "email": None,
            "unit_id": str(unit_id) if unit_id else None,
            "group": group,
            "registered_at": OPENS_AT.isoformat(),
        },
    )


def units_changed(
    units: Sequence[tuple[uuid.UUID, str, uuid.UUID | None] | dict[str, Any]],
    occurred_at: datetime | None = None,
) -> Event:
    """Units as (id, name, parent) with code from the name, block "Cơ quan hành chính"
    and headcount 50; or as full dicts (id, code, name, parent_id, block, headcount)."""
    payload = [
        {"id": str(u[0]), "code": u[1][:8].upper(), "name": u[1], "parent_id": str(u[2]) if u[2] else None,
         "block": "Cơ quan hành chính", "headcount": 50}
        if isinstance(u, tuple)
        else {**u, "id": str(u["id"]), "parent_id": str(u["parent_id"]) if u.get("parent_id") else None}
        for u in units
    ]
    if occurred_at is None:
        return Event(UNITS_CHANGED, {"units": payload})
    return Event(UNITS_CHANGED, {"units": payload}, occurred_at=occurred_at)
