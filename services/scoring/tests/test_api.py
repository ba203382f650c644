"""The routes, in-process, against the real PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg
import orjson
import pytest

from services.core.events import WINNERS_ANNOUNCED
from services.core.testing import running_app
from services.scoring.app import create_app
from services.scoring.tests import builders as ev
from services.scoring.worker import ScoringConsumer

Token = Callable[..., str]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(test_env: dict[str, str]):  # type: ignore[no-untyped-def]
    return create_app()


async def test_attempt_result_pending_scored_and_hidden_from_others(
    app, consumer: ScoringConsumer, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    round_id, me, rival = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id)])
    mine = ev.attempt_submitted(round_id, me, correct=7, duration_s=250)
    await consumer.on_attempts_submitted([mine, ev.attempt_submitted(round_id, rival, correct=9)])
    async with running_app(app) as client:
        url = f"/api/attempts/{mine.data['attempt_id']}/result"
        r = await client.get(url, headers=_auth(make_token(id=me)))
        assert r.status_code == 200
        assert r.json() == {"status": "scored", "correct": 7, "total": 10, "duration_ms": 250_000, "rank": 2,
                            "counts": True}

        r = await client.get(url, headers=_auth(make_token(id=rival)))
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"

        r = await client.get(f"/api/attempts/{uuid.uuid4()}/result", headers=_auth(make_token(id=me)))
        assert r.status_code == 200
        assert r.json() == {"status": "pending", "correct": None, "total": None, "duration_ms": None, "rank": None,
                            "counts": None}

        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, headers=_auth(make_token(role="organiser")))).status_code == 403
        assert (await client.get("/api/attempts/not-a-uuid/result", headers=_auth(make_token()))).status_code == 422


async def test_leaderboard_order_fields_filters_and_limits(
    app, consumer: ScoringConsumer  # type: ignore[no-untyped-def]
) -> None:
    round_id = uuid.uuid4()
    city, ward = uuid.uuid4(), uuid.uuid4()
    an, binh, chi, dung = (uuid.uuid4() for _ in range(4))
    await consumer.on_units_changed(
        [ev.units_changed([(city, "UBND Thành phố", None), (ward, "Phường Cửa Nam", city)])]
    )
    await consumer.on_participants_registered(
        [
            ev.participant_registered(an, "Trần Văn An", ward, "cbcc"),
            ev.participant_registered(binh, "Lê Thị Bình", city),
            ev.participant_registered(chi, "Phạm Chí", ward, "cbcc"),
        ]
    )
    await consumer.on_round_opened([ev.round_opened(round_id)])
    await consumer.on_attempts_submitted(
        [
            ev.attempt_submitted(round_id, an, correct=9, duration_s=200, unit_id=ward, group="cbcc"),
            ev.attempt_submitted(round_id, binh, correct=9, duration_s=100, unit_id=city),
            ev.attempt_submitted(round_id, chi, correct=10, duration_s=600, unit_id=ward, group="cbcc"),
            # Never registered here: the name the attempt carried, and no unit.
            ev.attempt_submitted(round_id, dung, correct=3, name="Võ Dũng"),
        ]
    )
    async with running_app(app) as client:
        r = await client.get(f"/api/rounds/{round_id}/leaderboard")
        assert r.status_code == 200
        assert r.json() == {
            "entries": [
                {"rank": 1, "participant_id": str(chi), "name": "Phạm Chí", "unit": "Phường Cửa Nam",
                 "correct": 10, "duration_ms": 600_000},
                {"rank": 2, "participant_id": str(binh), "name": "Lê Thị Bình", "unit": "UBND Thành phố",
                 "correct": 9, "duration_ms": 100_000},
                {"rank": 3, "participant_id": str(an), "name": "Trần Văn An", "unit": "Phường Cửa Nam",
                 "correct": 9, "duration_ms": 200_000},
                {"rank": 4, "participant_id": str(dung), "name": "Võ Dũng", "unit": None,
                 "correct": 3, "duration_ms": 300_000},
            ],
            "frozen": False,
            "frozen_at": None,
        }

        def ids(response) -> list[str]:  # type: ignore[no-untyped-def]
            return [e["participant_id"] for e in response.json()["entries"]]

        assert ids(await client.get(f"/api/rounds/{round_id}/leaderboard?limit=2")) == [str(chi), str(binh)]
        assert ids(await client.get(f"/api/rounds/{round_id}/leaderboard?unit_id={ward}")) == [str(chi), str(an)]
        assert ids(await client.get(f"/api/rounds/{round_id}/leaderboard?unit_id={city}")) == [
            str(chi), str(binh), str(an)
        ]
        assert ids(await client.get(f"/api/rounds/{round_id}/leaderboard?group=cbcc")) == [str(chi), str(an)]
        assert (await client.get(f"/api/rounds/{uuid.uuid4()}/leaderboard")).json() == {
            "entries": [], "frozen": False, "frozen_at": None
        }

        for query in ("limit=0", "limit=101", "unit_id=x", f"unit_id={ward}&group=cbcc"):
            r = await client.get(f"/api/rounds/{round_id}/leaderboard?{query}")
            assert r.status_code == 422, query
            assert r.json()["errors"][0]["field"] in ("limit", "unit_id", "group")


async def test_my_standing(app, consumer: ScoringConsumer, make_token: Token) -> None:  # type: ignore[no-untyped-def]
    round_id, me = uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id)])
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, me, correct=6, duration_s=42),
         ev.attempt_submitted(round_id, uuid.uuid4(), correct=8)]
    )
    async with running_app(app) as client:
        r = await client.get(f"/api/rounds/{round_id}/leaderboard/me", headers=_auth(make_token(id=me)))
        assert r.json() == {"rank": 2, "correct": 6, "duration_ms": 42_000, "unit_rank": None, "group_rank": None}

        r = await client.get(f"/api/rounds/{round_id}/leaderboard/me", headers=_auth(make_token()))
        assert r.status_code == 404
        assert r.json()["code"] == "not_ranked"
        assert r.json()["detail"] == "Bạn chưa có kết quả trong vòng thi này."
        assert (await client.get(f"/api/rounds/{round_id}/leaderboard/me")).status_code == 401


async def test_winners_and_their_announcement(
    app, consumer: ScoringConsumer, pool: asyncpg.Pool, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    round_id, ward = uuid.uuid4(), uuid.uuid4()
    an, binh = uuid.uuid4(), uuid.uuid4()
    await consumer.on_units_changed([ev.units_changed([(ward, "Xã Tân Lập", None)])])
    await consumer.on_participants_registered(
        [ev.participant_registered(an, "Trần Văn An", ward), ev.participant_registered(binh, "Lê Thị Bình", ward)]
    )
    await consumer.on_round_opened([ev.round_opened(round_id)])
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, an, correct=10, prediction=2, unit_id=ward),
         ev.attempt_submitted(round_id, binh, correct=9, prediction=2, unit_id=ward)]
    )
    organiser = _auth(make_token(role="organiser"))
    announce = f"/api/admin/rounds/{round_id}/announce"
    async with running_app(app) as client:
        assert (await client.get(f"/api/rounds/{round_id}/winners")).json() == {"status": "pending", "winners": []}
        r = await client.post(announce, headers=organiser)
        assert (r.status_code, r.json()["code"]) == (409, "not_final")
        r = await client.post(announce, headers={**organiser, "Accept-Language": "en"})
        assert r.json()["detail"] == "The round is not final yet; its winners cannot be announced."

        await consumer.on_rounds_closed([ev.round_closed(round_id, submitted_count=2)])
        expected = [
            {"rank": 1, "participant_id": str(an), "name": "Trần Văn An", "unit": "Xã Tân Lập", "prize": "Giải Nhất",
             "group": None},
            {"rank": 2, "participant_id": str(binh), "name": "Lê Thị Bình", "unit": "Xã Tân Lập", "prize": "Giải Nhì",
             "group": None},
        ]
        assert (await client.get(f"/api/rounds/{round_id}/winners")).json() == {"status": "final", "winners": expected}

        assert (await client.post(announce, headers=_auth(make_token()))).status_code == 403
        assert (await client.post(announce)).status_code == 401
        assert (await client.post(f"/api/admin/rounds/{uuid.uuid4()}/announce", headers=organiser)).status_code == 404
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE type = $1", WINNERS_ANNOUNCED) == 0

        r = await client.post(announce, headers=organiser)
        assert r.status_code == 202
        assert r.json() == {"round_id": str(round_id), "status": "announced"}
        assert (await client.get(f"/api/rounds/{round_id}/winners")).json() == {
            "status": "announced", "winners": expected
        }
        bodies = await pool.fetch("SELECT body FROM outbox WHERE type = $1", WINNERS_ANNOUNCED)
        assert len(bodies) == 1
        data = orjson.loads(bodies[0]["body"])["data"]
        assert data == {
            "round_id": str(round_id),
            "contest_id": str(uuid.UUID(int=1)),
            "contest_title": "Tìm hiểu pháp luật năm 2025",
            "round_title": "Tuần 1",
            "summary": {"participants": 2, "attempts": 2, "all_correct": 1},
            "winners": [
                {"participant_id": str(an), "name": "Trần Văn An", "rank": 1, "prize": "Giải Nhất", "correct": 10,
                 "duration_ms": 300_000, "group": None},
                {"participant_id": str(binh), "name": "Lê Thị Bình", "rank": 2, "prize": "Giải Nhì", "correct": 9,
                 "duration_ms": 300_000, "group": None},
            ],
        }

        r = await client.post(announce, headers=organiser)
        assert (r.status_code, r.json()["code"]) == (409, "already_announced")
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE type = $1", WINNERS_ANNOUNCED) == 1
        assert (await client.get(f"/api/rounds/{uuid.uuid4()}/winners")).status_code == 404


async def test_health_and_readiness(app) -> None:  # type: ignore[no-untyped-def]
    async with running_app(app) as client:
        assert (await client.get("/healthz")).json()["service"] == "scoring"
        r = await client.get("/readyz")
        assert r.status_code == 200
        assert r.json()["checks"] == {"postgres": "ok", "redis": "ok"}
