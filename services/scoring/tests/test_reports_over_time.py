"""The participation report's submitted attempts per hour (attempts_over_time), against
the real PostgreSQL: UTC hour buckets, one round or the whole contest, coordinator scoping."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.core.testing import running_app
from services.scoring import store
from services.scoring.app import create_app
from services.scoring.tests import builders as ev
from services.scoring.worker import ScoringConsumer

Token = Callable[..., str]
T0 = ev.OPENS_AT  # 03:00 UTC


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(test_env: dict[str, str]):  # type: ignore[no-untyped-def]
    return create_app()


@pytest.fixture
async def contest(consumer: ScoringConsumer) -> dict[str, Any]:
    """Quận Một (Q1) ⊃ Phường Đông Ba (P01); Sở Tư pháp (STP) apart. Two rounds."""
    ids = {k: uuid.uuid4() for k in ("Q1", "P01", "STP", "contest", "week1", "week2")}
    await consumer.on_units_changed([ev.units_changed([
        (ids["Q1"], "Quận Một", None), (ids["P01"], "Phường Đông Ba", ids["Q1"]), (ids["STP"], "Sở Tư pháp", None),
    ])])
    await consumer.on_round_opened([ev.round_opened(ids["week1"], ids["contest"])])
    await consumer.on_round_opened([ev.round_opened(ids["week2"], ids["contest"], round_number=2,
                                                    round_title="Tuần 2")])
    a, b, c, d = (uuid.uuid4() for _ in range(4))

    def at(round_key: str, who: uuid.UUID, moment: datetime, unit: uuid.UUID | None, number: int = 1) -> Any:
        return ev.attempt_submitted(ids[round_key], who, correct=5, submitted_at=moment, unit_id=unit,
                                    attempt_number=number)

    await consumer.on_attempts_submitted([
        at("week1", a, T0 + timedelta(minutes=10), ids["P01"]),
        at("week1", a, T0 + timedelta(minutes=59, seconds=59, microseconds=999_999), ids["P01"], 2),
        at("week1", b, T0 + timedelta(hours=1), ids["Q1"]),  # the next hour starts exactly here
        at("week1", c, T0 + timedelta(hours=1, minutes=30), ids["STP"]),
        at("week1", d, T0 + timedelta(hours=4, minutes=5), None),  # an hour of its own, hours between empty
        at("week2", a, T0 + timedelta(days=7, minutes=1), ids["P01"]),
        at("week2", c, T0 + timedelta(days=7, minutes=2), ids["STP"]),
    ])
    return ids


def _series(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(p["at"], p["attempts"]) for p in body["attempts_over_time"]]


async def test_submitted_attempts_per_hour_of_a_round_and_of_the_contest(
    app, contest: dict[str, Any], make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    organiser = _auth(make_token(role="organiser"))
    async with running_app(app) as client:
        r = await client.get("/api/reports/participation",
                             params={"contest": str(contest["contest"]), "round": str(contest["week1"])},
                             headers=organiser)
        assert r.status_code == 200, r.text
        body = r.json()
        assert _series(body) == [
            ("2025-03-03T03:00:00Z", 2), ("2025-03-03T04:00:00Z", 2), ("2025-03-03T07:00:00Z", 1),
        ]
        assert sum(n for _, n in _series(body)) == body["attempts"]

        r = await client.get("/api/reports/participation", params={"contest": "demo"}, headers=organiser)
        body = r.json()
        assert _series(body) == [
            ("2025-03-03T03:00:00Z", 2), ("2025-03-03T04:00:00Z", 2), ("2025-03-03T07:00:00Z", 1),
            ("2025-03-10T03:00:00Z", 2),
        ]
        assert sum(n for _, n in _series(body)) == body["attempts"] == 7

        # The exports keep their columns and sheets (the series is in the JSON only).
        r = await client.get("/api/reports/participation", params={"contest": "demo", "format": "csv"},
                             headers=organiser)
        assert r.status_code == 200 and "2025-03-03" not in r.content.decode("utf-8-sig")


async def test_a_coordinator_sees_only_the_attempts_of_their_subtree(
    app, contest: dict[str, Any], make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    params = {"contest": str(contest["contest"]), "round": str(contest["week1"])}
    async with running_app(app) as client:
        district = _auth(make_token(role="coordinator", unit_id=contest["Q1"]))
        body = (await client.get("/api/reports/participation", params=params, headers=district)).json()
        # a twice from P01 in the first hour, b from Q1 itself; not c (STP) nor d (no unit).
        assert _series(body) == [("2025-03-03T03:00:00Z", 2), ("2025-03-03T04:00:00Z", 1)]
        assert sum(n for _, n in _series(body)) == body["attempts"] == 3

        ward = _auth(make_token(role="coordinator", unit_id=contest["P01"]))
        body = (await client.get("/api/reports/participation", params=params, headers=ward)).json()
        assert _series(body) == [("2025-03-03T03:00:00Z", 2)]

        department = _auth(make_token(role="coordinator", unit_id=contest["STP"]))
        body = (await client.get("/api/reports/participation", params={"contest": "demo"}, headers=department)).json()
        assert _series(body) == [("2025-03-03T04:00:00Z", 1), ("2025-03-10T03:00:00Z", 1)]


async def test_hours_are_utc_whatever_the_session_time_zone(pool: asyncpg.Pool, contest: dict[str, Any]) -> None:
    expected = await store.attempts_by_hour(pool, [contest["week1"]], None)
    async with pool.acquire() as conn, conn.transaction():
        # Nepal is UTC+5:45: local hours start at :15 past the UTC hour.
        await conn.execute("SET LOCAL TIME ZONE 'Asia/Kathmandu'")
        assert await store.attempts_by_hour(conn, [contest["week1"]], None) == expected
    assert [(h.at.isoformat(), h.attempts) for h in expected] == [
        ("2025-03-03T03:00:00+00:00", 2), ("2025-03-03T04:00:00+00:00", 2), ("2025-03-03T07:00:00+00:00", 1),
    ]
    assert await store.attempts_by_hour(pool, [uuid.uuid4()], None) == []
