"""Fixtures of the quiz tests: a migrated, emptied `quiz` schema, the API in-process,
and small builders for contests, rounds and questions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import orjson
import pytest

from services.core.tables import read_table
from services.core.testing import running_app
from services.quiz import domain, store
from services.quiz.app import create_app
from services.quiz.domain import Attempt
from services.quiz.settings import QuizSettings

CSV_HEADER = "topic,difficulty,question,option_a,option_b,option_c,option_d,correct,explanation\n"


def bank_csv(count: int, *, multiple_every: int = 5) -> bytes:
    """A valid question bank of `count` questions; every `multiple_every`-th has two right options."""
    lines = [CSV_HEADER]
    for i in range(count):
        correct = "\"A,C\"" if multiple_every and i % multiple_every == 0 else "B"
        lines.append(f"chu_de_{i % 3},{i % 3 + 1},Câu hỏi số {i} về đô thị?,Đáp án {i}A,Đáp án {i}B,"
                     f"Đáp án {i}C,Đáp án {i}D,{correct},Giải thích {i}\n")
    return "".join(lines).encode()


def topic_bank(counts: dict[tuple[str, int], int], *, prefix: str = "") -> bytes:
    """A valid bank with `counts[(topic, difficulty)]` questions of each kind."""
    lines = [CSV_HEADER]
    for (topic, difficulty), count in counts.items():
        for i in range(count):
            lines.append(f"{topic},{difficulty},{prefix}Câu {i} về {topic} mức {difficulty}?,Một,Hai,Ba,Bốn,B,\n")
    return "".join(lines).encode()


def stamp(moment: datetime) -> dict[str, str]:
    """The gateway's arrival header for `moment`."""
    return {"X-Request-Start": f"t={moment.timestamp():.6f}"}


@pytest.fixture
async def pool(service_pool: Callable[[str], Any]) -> asyncpg.Pool:
    return await service_pool("quiz")


@pytest.fixture
def settings(test_env: dict[str, str]) -> QuizSettings:
    return QuizSettings(in_flight_margin_s=0)


@pytest.fixture
async def client(pool: asyncpg.Pool, redis: Any, settings: QuizSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings)) as http:
        yield http


@pytest.fixture
def organiser(make_token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(role='organiser', name='Ban tổ chức')}"}


class Person:
    """A participant with a token."""

    def __init__(self, make_token: Callable[..., str], name: str = "Nguyễn Văn An", group: str | None = "cbcc") -> None:
        self.id = uuid.uuid4()
        self.unit_id = uuid.uuid4()
        self.name = name
        token = make_token(id=self.id, name=name, unit_id=self.unit_id, group=group)
        self.headers = {"Authorization": f"Bearer {token}"}


@pytest.fixture
def person(make_token: Callable[..., str]) -> Callable[..., Person]:
    return lambda name="Nguyễn Văn An", group="cbcc": Person(make_token, name, group)


class Admin:
    """Drives the organiser routes."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    async def contest(self, slug: str = "thi-thu", **fields: Any) -> str:
        r = await self.client.post("/api/admin/contests", json={"slug": slug, "title": "Hội thi thử", **fields},
                                   headers=self.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def questions(self, contest_id: str, content: bytes, filename: str = "bank.csv") -> httpx.Response:
        return await self.client.post(f"/api/admin/contests/{contest_id}/questions/import",
                                      files={"file": (filename, content, "text/csv")}, headers=self.headers)

    async def round(self, contest_id: str, number: int = 1, **fields: Any) -> str:
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "number": number, "title": f"Tuần {number}",
            "opens_at": (now - timedelta(hours=1)).isoformat(), "closes_at": (now + timedelta(hours=1)).isoformat(),
            "question_count": 5, "time_limit_s": 600, "grace_s": 30, "max_attempts": 3,
            "prediction": {"text": "Bao nhiêu người tham gia?", "target": "participants"},
            "prizes": [{"name": "Giải Nhất", "count": 1}],
        }
        body.update(fields)
        r = await self.client.post(f"/api/admin/contests/{contest_id}/rounds", json=body, headers=self.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def open_round(self, questions: int = 12, **fields: Any) -> str:
        """A contest with a bank and one open round; the round's id."""
        contest_id = await self.contest()
        r = await self.questions(contest_id, bank_csv(questions))
        assert r.status_code == 200, r.text
        return await self.round(contest_id, **fields)


@pytest.fixture
def admin(client: httpx.AsyncClient, organiser: dict[str, str]) -> Admin:
    return Admin(client, organiser)


async def outbox_events(pool: asyncpg.Pool, event_type: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT body FROM outbox WHERE type = $1 ORDER BY id", event_type)
    return [orjson.loads(row["body"]) for row in rows]


async def make_round(pool: asyncpg.Pool, *, questions: int = 10, slug: str | None = None, **fields: Any) -> UUID:
    """A contest with a bank and a round (open now unless told otherwise), through the store."""
    contest_id = await store.create_contest(
        pool, slug=slug or f"c-{uuid.uuid4().hex[:8]}", title="Hội thi", rules="", tie_break=domain.DEFAULT_TIE_BREAK,
        prize_scope="round")
    assert contest_id is not None
    if questions:
        await store.import_questions(pool, contest_id, read_table(bank_csv(questions)).records())
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "number": 1, "title": "Tuần 1", "opens_at": now - timedelta(hours=1), "closes_at": now + timedelta(hours=1),
        "question_count": 5, "time_limit_s": 600, "grace_s": 30, "max_attempts": None, "prediction": None,
        "prizes": [],
    }
    values.update(fields)
    return await store.create_round(pool, contest_id, **values)


async def add_attempt(pool: asyncpg.Pool, round_id: UUID, *, started_at: datetime | None = None,
                      time_limit_s: int = 600, number: int = 1, participant_id: UUID | None = None) -> Attempt:
    """An attempt of a new participant (the round must be opened)."""
    round_ = await store.round_by_id(pool, round_id)
    assert round_ is not None and round_.question_ids is not None
    started = started_at or datetime.now(UTC)
    attempt = Attempt(
        id=uuid.uuid4(), round_id=round_id, participant_id=participant_id or uuid.uuid4(), participant_name="An",
        unit_id=None, group=None, attempt_number=number, seed=7,
        question_ids=tuple(domain.attempt_draw(await store.RoundQuestions().draw_pool(pool, round_), round_, None, 7)),
        started_at=started, deadline_at=domain.deadline(started, time_limit_s),
    )
    assert await store.insert_attempt(pool, attempt)
    return attempt
