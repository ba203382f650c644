"""Issue 3's routes, in-process, against the real PostgreSQL and Redis: the freeze, ranks
in unit and group, entries that do not count, winners per group, reports (JSON, CSV,
XLSX) with coordinator scoping, collective ranking, nudges."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from openpyxl import load_workbook
from redis.asyncio import Redis

from services.core.events import PARTICIPATION_NUDGE
from services.core.testing import running_app
from services.scoring.app import create_app
from services.scoring.leaderboards import Leaderboards, rebuild_leaderboards
from services.scoring.tests import builders as ev
from services.scoring.worker import ScoringConsumer

Token = Callable[..., str]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(test_env: dict[str, str]):  # type: ignore[no-untyped-def]
    return create_app()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- the freeze, and my ranks ----------------------------------------------------------

async def test_the_public_board_freezes_but_organisers_and_my_own_result_stay_live(
    app, pool: asyncpg.Pool, boards: Leaderboards, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    now = datetime.now(UTC)
    freeze = now - timedelta(minutes=20)
    clock = Clock(freeze - timedelta(hours=2))
    consumer = ScoringConsumer(pool, boards, clock=clock)
    round_id, ward = uuid.uuid4(), uuid.uuid4()
    early, late = uuid.uuid4(), uuid.uuid4()
    await consumer.on_units_changed([ev.units_changed([(ward, "Phường Hàng Bạc", None)])])
    await consumer.on_round_opened([ev.round_opened(
        round_id, opens_at=(now - timedelta(days=1)).isoformat(), closes_at=(now + timedelta(minutes=10)).isoformat(),
        freeze_s=1800,
    )])
    await consumer.on_attempts_submitted([ev.attempt_submitted(
        round_id, early, correct=6, unit_id=ward, group="dan", submitted_at=freeze - timedelta(hours=2),
        name="Trước Khóa",
    )])
    clock.now = now
    mine = ev.attempt_submitted(round_id, late, correct=9, unit_id=ward, group="dan",
                                submitted_at=now - timedelta(minutes=1), name="Sau Khóa")
    await consumer.on_attempts_submitted([mine])

    url = f"/api/rounds/{round_id}/leaderboard"
    async with running_app(app) as client:
        for query in ("", f"?unit_id={ward}", "?group=dan"):
            r = await client.get(url + query)
            assert r.status_code == 200
            body = r.json()
            assert body["frozen"] is True, query
            assert abs(datetime.fromisoformat(body["frozen_at"]) - freeze) < timedelta(milliseconds=2)
            assert [e["name"] for e in body["entries"]] == ["Trước Khóa"], query
            assert r.headers["cache-control"] == "public, max-age=2"

        organiser = _auth(make_token(role="organiser"))
        r = await client.get(url + "?live=true", headers=organiser)
        assert r.json()["frozen"] is False and r.json()["frozen_at"] is None
        assert [e["name"] for e in r.json()["entries"]] == ["Sau Khóa", "Trước Khóa"]
        assert r.headers["cache-control"] == "private, no-store"
        # The organiser without ?live=true sees what the public sees.
        assert (await client.get(url, headers=organiser)).json()["frozen"] is True
        assert (await client.get(url + "?live=true")).status_code == 401
        assert (await client.get(url + "?live=true", headers=_auth(make_token()))).status_code == 403
        assert (await client.get(url + "?live=true", headers=_auth(make_token(role="coordinator")))).status_code == 403

        # The late entrant still sees their own result and live ranks.
        me = _auth(make_token(id=late, unit_id=ward, group="dan"))
        r = await client.get(f"/api/rounds/{round_id}/leaderboard/me", headers=me)
        assert r.json() == {"rank": 1, "correct": 9, "duration_ms": 300_000, "unit_rank": 1, "group_rank": 1}
        r = await client.get(f"/api/attempts/{mine.data['attempt_id']}/result", headers=me)
        assert (r.json()["rank"], r.json()["counts"]) == (1, True)


async def test_my_rank_overall_in_my_unit_subtree_and_in_my_group(
    app, consumer: ScoringConsumer, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    round_id = uuid.uuid4()
    city, district, ward, other = (uuid.uuid4() for _ in range(4))
    await consumer.on_units_changed([ev.units_changed(
        [(city, "Thành phố", None), (district, "Quận Hoàn Kiếm", city), (ward, "Phường Tràng Tiền", district),
         (other, "Quận Đống Đa", city)]
    )])
    await consumer.on_round_opened([ev.round_opened(round_id)])
    people = {
        "top": (uuid.uuid4(), other, "cbcc", 10),
        "me": (uuid.uuid4(), ward, "dan", 8),
        "district": (uuid.uuid4(), district, "dan", 9),
        "ward": (uuid.uuid4(), ward, "cbcc", 7),
    }
    await consumer.on_attempts_submitted(
        [ev.attempt_submitted(round_id, p, correct=c, unit_id=u, group=g) for p, u, g, c in people.values()]
    )
    pid, unit, group, _ = people["me"]
    async with running_app(app) as client:
        r = await client.get(f"/api/rounds/{round_id}/leaderboard/me",
                             headers=_auth(make_token(id=pid, unit_id=unit, group=group)))
        # Overall behind 10 and 9; first in the ward; second among "dan" (behind the district's 9).
        assert r.json() == {"rank": 3, "correct": 8, "duration_ms": 300_000, "unit_rank": 1, "group_rank": 2}
        r = await client.get(f"/api/rounds/{round_id}/leaderboard/me",
                             headers=_auth(make_token(id=pid, unit_id=district)))
        assert (r.json()["unit_rank"], r.json()["group_rank"]) == (2, None)  # the district board holds its wards
        r = await client.get(f"/api/rounds/{round_id}/leaderboard?unit_id={city}")
        assert len(r.json()["entries"]) == 4


async def test_my_group_rank_follows_the_group_quiz_resolved(
    app, consumer: ScoringConsumer, redis: Redis, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    """quiz files an attempt under a group code (the token's text matched by name, or the
    contest's default group): the participant's group rank is found there."""
    round_id, me, rival = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(
        round_id, groups=[{"code": "cbcc", "name": "Cán bộ, công chức"}, {"code": "dan", "name": "Nhân dân"}]
    )])
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, rival, correct=9, group="dan"),
                                          ev.attempt_submitted(round_id, me, correct=5, group="dan")])
    async with running_app(app) as client:
        for token_group in ("Nhân dân", None, "dan"):
            r = await client.get(f"/api/rounds/{round_id}/leaderboard/me",
                                 headers=_auth(make_token(id=me, group=token_group)))
            assert (r.json()["rank"], r.json()["group_rank"]) == (2, 2), token_group
        # Redis lost the round's meta: the rebuild brings the group codes back.
        await redis.flushdb()
        await rebuild_leaderboards(consumer.pool, consumer.boards)
        r = await client.get(f"/api/rounds/{round_id}/leaderboard/me", headers=_auth(make_token(id=me)))
        assert r.json()["group_rank"] == 2


async def test_an_entry_that_does_not_count_is_shown_but_not_ranked(
    app, consumer: ScoringConsumer, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    round_id, who = uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(round_id, require_all_answered=True)])
    attempt = ev.attempt_submitted(round_id, who, correct=1, answers={"q1": ["A", "C"]})
    await consumer.on_attempts_submitted([attempt])
    async with running_app(app) as client:
        r = await client.get(f"/api/attempts/{attempt.data['attempt_id']}/result", headers=_auth(make_token(id=who)))
        assert r.json() == {"status": "scored", "correct": 1, "total": 10, "duration_ms": 300_000, "rank": None,
                            "counts": False}
        r = await client.get(f"/api/rounds/{round_id}/leaderboard/me", headers=_auth(make_token(id=who)))
        assert r.status_code == 404
        assert (await client.get(f"/api/rounds/{round_id}/leaderboard")).json()["entries"] == []


async def test_winners_name_their_group_and_the_announcement_carries_the_summary(
    app, consumer: ScoringConsumer, pool: asyncpg.Pool, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    contest, round_id = uuid.uuid4(), uuid.uuid4()
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await consumer.on_round_opened([ev.round_opened(
        round_id, contest, groups=[{"code": "dan", "name": "Nhân dân"}, {"code": "cbcc", "name": "Cán bộ"}],
        prizes=[{"name": "Giải Nhất", "count": 1}], require_all_answered=True,
    )])
    blank = ev.answers_with(10)
    blank["q1"] = []
    await consumer.on_attempts_submitted([
        ev.attempt_submitted(round_id, a, correct=10, group="cbcc", name="An"),
        ev.attempt_submitted(round_id, b, correct=7, group="dan", name="Bình"),
        ev.attempt_submitted(round_id, c, correct=9, group="dan", name="Chi", answers=blank),
        ev.attempt_submitted(round_id, b, correct=10, group="dan", name="Bình", attempt_number=2),
    ])
    await consumer.on_rounds_closed([ev.round_closed(round_id, submitted_count=4)])
    async with running_app(app) as client:
        r = await client.get(f"/api/rounds/{round_id}/winners")
        assert [(w["group"], w["rank"], w["name"], w["prize"]) for w in r.json()["winners"]] == [
            ("dan", 1, "Bình", "Giải Nhất"), ("cbcc", 1, "An", "Giải Nhất")  # the round's group order
        ]
        r = await client.post(f"/api/admin/rounds/{round_id}/announce", headers=_auth(make_token(role="organiser")))
        assert r.status_code == 202
    body = await pool.fetchval("SELECT body FROM outbox WHERE type = 'winners.announced'")
    data = orjson.loads(body)["data"]
    assert data["contest_id"] == str(contest)
    assert data["summary"] == {"participants": 3, "attempts": 4, "all_correct": 2}
    assert [(w["group"], w["name"]) for w in data["winners"]] == [("dan", "Bình"), ("cbcc", "An")]


# --- reports ---------------------------------------------------------------------------

@pytest.fixture
async def contest(consumer: ScoringConsumer) -> dict[str, Any]:
    """Thành phố (TP) ⊃ Quận 1 (Q1) ⊃ Phường 01, 02; and Sở Tư pháp (STP) on its own.
    Two rounds; week 1 requires every question answered."""
    ids = {k: uuid.uuid4() for k in ("TP", "Q1", "P01", "P02", "STP", "contest", "week1", "week2")}
    units = [
        {"id": ids["TP"], "code": "TP", "name": "Thành phố", "parent_id": None, "block": "", "headcount": 10},
        {"id": ids["Q1"], "code": "Q1", "name": "Quận Một", "parent_id": ids["TP"], "block": "Cơ quan hành chính",
         "headcount": 5},
        {"id": ids["P01"], "code": "P01", "name": "Phường Đông Ba", "parent_id": ids["Q1"], "block": "Xã, phường",
         "headcount": 4},
        {"id": ids["P02"], "code": "P02", "name": "Phường Tây Lộc", "parent_id": ids["Q1"], "block": "Xã, phường",
         "headcount": 2},
        {"id": ids["STP"], "code": "STP", "name": "Sở Tư pháp", "parent_id": None, "block": "Cơ quan hành chính",
         "headcount": 3},
    ]
    await consumer.on_units_changed([ev.units_changed(units)])
    await consumer.on_round_opened([ev.round_opened(ids["week1"], ids["contest"], require_all_answered=True)])
    await consumer.on_round_opened([ev.round_opened(ids["week2"], ids["contest"], round_number=2,
                                                    round_title="Tuần 2")])
    a, b, c, d, e, f = (uuid.uuid4() for _ in range(6))
    blank = ev.answers_with(10)
    blank["q2"] = []
    await consumer.on_attempts_submitted([
        ev.attempt_submitted(ids["week1"], a, correct=10, unit_id=ids["P01"]),
        ev.attempt_submitted(ids["week1"], a, correct=7, unit_id=ids["P01"], attempt_number=2),
        ev.attempt_submitted(ids["week1"], b, correct=5, unit_id=ids["P01"]),
        ev.attempt_submitted(ids["week1"], c, correct=9, unit_id=ids["P02"], answers=blank),  # does not count
        ev.attempt_submitted(ids["week1"], e, correct=3),  # no unit
        ev.attempt_submitted(ids["week1"], f, correct=8, unit_id=ids["Q1"]),
        ev.attempt_submitted(ids["week2"], a, correct=9, unit_id=ids["P01"]),
        ev.attempt_submitted(ids["week2"], d, correct=10, unit_id=ids["STP"]),
    ])
    return ids


def _units(body: dict[str, Any]) -> dict[str, tuple]:
    return {u["code"]: (u["headcount"], u["participants"], u["attempts"], u["rate"], u["complete"], u["is_leaf"])
            for u in body["units"]}


async def test_participation_report_as_json(
    app, contest: dict[str, Any], make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    organiser = _auth(make_token(role="organiser"))
    async with running_app(app) as client:
        r = await client.get("/api/reports/participation",
                             params={"contest": str(contest["contest"]), "round": str(contest["week1"])},
                             headers=organiser)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["round_title"], body["participants"], body["attempts"]) == ("Tuần 1", 5, 6)
        # Subtree figures: Q1 counts its wards, TP everything under it (e has no unit).
        assert _units(body) == {
            "P01": (4, 2, 3, 0.5, False, True),
            "P02": (2, 1, 1, 0.5, False, True),
            "Q1": (11, 4, 5, pytest.approx(4 / 11), False, False),
            "STP": (3, 0, 0, 0.0, False, True),
            "TP": (21, 4, 5, pytest.approx(4 / 21), False, False),
        }
        assert body["units_complete"] == 0
        # Entries: a's best (10), b 5, e 3, f 8; c's entry does not count.
        assert {b["band"]: b["entries"] for b in body["score_bands"] if b["entries"]} == {
            "3": 1, "5": 1, "8": 1, "10": 1
        }
        assert [b["band"] for b in body["score_bands"]] == [str(i) for i in range(11)]
        assert body["all_correct"] == 1
        assert [u["code"] for u in body["top_units"]] == ["P01", "P02", "Q1", "TP", "STP"]

        # The whole contest so far, by slug.
        r = await client.get("/api/reports/participation", params={"contest": "demo"}, headers=organiser)
        body = r.json()
        assert (body["round_id"], body["participants"], body["attempts"], body["all_correct"]) == (None, 6, 8, 2)
        assert _units(body)["STP"] == (3, 1, 1, pytest.approx(1 / 3), False, True)
        assert _units(body)["P01"][:3] == (4, 2, 4)


async def test_reports_are_for_staff_and_coordinators_see_their_subtree(
    app, contest: dict[str, Any], make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    params = {"contest": str(contest["contest"]), "round": str(contest["week1"])}
    async with running_app(app) as client:
        coordinator = _auth(make_token(role="coordinator", unit_id=contest["Q1"]))
        r = await client.get("/api/reports/participation", params=params, headers=coordinator)
        assert r.status_code == 200
        body = r.json()
        assert set(_units(body)) == {"Q1", "P01", "P02"}
        assert (body["participants"], body["attempts"], body["all_correct"]) == (4, 5, 1)
        assert {b["band"]: b["entries"] for b in body["score_bands"] if b["entries"]} == {"5": 1, "8": 1, "10": 1}

        assert (await client.get("/api/reports/participation", params=params)).status_code == 401
        r = await client.get("/api/reports/participation", params=params, headers=_auth(make_token()))
        assert r.status_code == 403
        r = await client.get("/api/reports/participation", params=params,
                             headers=_auth(make_token(role="coordinator")))
        assert (r.status_code, r.json()["code"]) == (403, "coordinator_without_unit")
        organiser = _auth(make_token(role="organiser"))
        for bad in ({"contest": str(uuid.uuid4())}, {"contest": "khong-co"},
                    {"contest": str(contest["contest"]), "round": str(uuid.uuid4())}):
            assert (await client.get("/api/reports/participation", params=bad, headers=organiser)).status_code == 404
        r = await client.get("/api/reports/participation", params={**params, "format": "pdf"}, headers=organiser)
        assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "format")
        assert (await client.get("/api/reports/participation", headers=organiser)).status_code == 422


async def test_participation_report_as_csv_and_xlsx(
    app, contest: dict[str, Any], make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    params = {"contest": str(contest["contest"]), "round": str(contest["week1"])}
    organiser = make_token(role="organiser")
    async with running_app(app) as client:
        r = await client.get("/api/reports/participation", params=params,
                             headers={**_auth(organiser), "Accept": "text/csv"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"] == 'attachment; filename="tham-gia-demo-vong-1.csv"'
        assert r.content.startswith("\ufeff".encode())
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert rows[0] == ["Mã đơn vị", "Tên đơn vị", "Khối", "Biên chế", "Số người dự thi", "Lượt thi", "Tỷ lệ (%)",
                           "Gồm đơn vị trực thuộc"]
        assert rows[1:] == [
            ["P01", "Phường Đông Ba", "Xã, phường", "4", "2", "3", "50.0", "Không"],
            ["P02", "Phường Tây Lộc", "Xã, phường", "2", "1", "1", "50.0", "Không"],
            ["Q1", "Quận Một", "Cơ quan hành chính", "11", "4", "5", "36.4", "Có"],
            ["STP", "Sở Tư pháp", "Cơ quan hành chính", "3", "0", "0", "0.0", "Không"],
            ["TP", "Thành phố", "", "21", "4", "5", "19.0", "Có"],
        ]

        for how in ({"headers": {**_auth(organiser), "Accept": XLSX}, "params": params},
                    {"headers": _auth(organiser), "params": {**params, "format": "xlsx"}}):
            r = await client.get("/api/reports/participation", **how)  # type: ignore[arg-type]
            assert r.status_code == 200
            assert r.headers["content-type"] == XLSX
            assert r.headers["content-disposition"] == 'attachment; filename="tham-gia-demo-vong-1.xlsx"'
            book = load_workbook(io.BytesIO(r.content))
            assert book.sheetnames == ["Tổng hợp", "Đơn vị", "Phổ điểm", "Đơn vị dẫn đầu"]
            summary = {row[0]: row[1] for row in book["Tổng hợp"].iter_rows(values_only=True)}
            assert (summary["Vòng thi"], summary["Số người dự thi"], summary["Lượt thi"]) == ("Tuần 1", 5, 6)
            assert (summary["Số đơn vị đạt 100%"], summary["Số bài đúng tất cả"]) == (0, 1)
            units = list(book["Đơn vị"].iter_rows(values_only=True))
            assert units[0][0] == "Mã đơn vị" and len(units) == 6
            assert units[3] == ("Q1", "Quận Một", "Cơ quan hành chính", 11, 4, 5, 36.4, "Có")
            bands = list(book["Phổ điểm"].iter_rows(values_only=True))
            assert bands[0] == ("Số câu đúng", "Số bài") and ("10", 1) in bands and len(bands) == 12
            top = list(book["Đơn vị dẫn đầu"].iter_rows(values_only=True))
            assert [row[:2] for row in top[1:3]] == [(1, "P01"), (2, "P02")]


# --- collective ranking ----------------------------------------------------------------

async def test_collective_ranking_within_blocks_with_minimum_rates(
    app, contest: dict[str, Any], make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    organiser = _auth(make_token(role="organiser"))
    params = {"contest_id": str(contest["contest"]), "round_id": str(contest["week1"])}

    def table(body: dict[str, Any]) -> dict[str, list[tuple]]:
        return {b["block"]: [(u["code"], u["rank"], u["eligible"]) for u in b["units"]] for b in body["blocks"]}

    async with running_app(app) as client:
        r = await client.get("/api/reports/units", params=params, headers=organiser)
        assert r.status_code == 200, r.text
        # Same rate in the wards: more participants first. TP has no block: not ranked.
        assert table(r.json()) == {
            "Cơ quan hành chính": [("Q1", 1, True), ("STP", 2, True)],
            "Xã, phường": [("P01", 1, True), ("P02", 2, True)],
        }

        rules = {"min_rates": [{"min_headcount": 0, "max_headcount": 3, "min_rate": 0.6},
                               {"min_headcount": 4, "max_headcount": None, "min_rate": 0.3}]}
        url = f"/api/admin/contests/{contest['contest']}/collective-rules"
        assert (await client.put(url, json=rules, headers=_auth(make_token()))).status_code == 403
        r = await client.put(url, json=rules, headers=organiser)
        assert r.status_code == 200 and r.json()["min_rates"] == rules["min_rates"]
        assert (await client.get(url, headers=organiser)).json() == {"contest_id": str(contest["contest"]), **rules}
        r = await client.get("/api/reports/units", params=params, headers=organiser)
        assert table(r.json()) == {
            "Cơ quan hành chính": [("Q1", 1, True), ("STP", None, False)],
            "Xã, phường": [("P01", 1, True), ("P02", None, False)],
        }
        p02 = r.json()["blocks"][1]["units"][1]
        assert (p02["min_rate"], p02["rate"], p02["headcount"], p02["participants"]) == (0.6, 0.5, 2, 1)

        # A query overrides the stored rules.
        r = await client.get("/api/reports/units", params={**params, "min_rates": "0-:0.4"}, headers=organiser)
        assert table(r.json())["Cơ quan hành chính"] == [("Q1", None, False), ("STP", None, False)]
        assert table(r.json())["Xã, phường"] == [("P01", 1, True), ("P02", 2, True)]

        # A coordinator sees their subtree's rows, ranked among everyone.
        coordinator = _auth(make_token(role="coordinator", unit_id=contest["P02"]))
        r = await client.get("/api/reports/units", params=params, headers=coordinator)
        assert table(r.json()) == {"Cơ quan hành chính": [], "Xã, phường": [("P02", None, False)]}

        overlapping = {"min_rates": [{"min_headcount": 0, "max_headcount": 10, "min_rate": 0.5},
                                     {"min_headcount": 10, "max_headcount": None, "min_rate": 0.4}]}
        r = await client.put(url, json=overlapping, headers=organiser)
        assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "min_rates.1")
        r = await client.put(url, json={"min_rates": [{"min_headcount": 0, "min_rate": 1.5}]}, headers=organiser)
        assert r.status_code == 422
        r = await client.get("/api/reports/units", params={**params, "min_rates": "abc"}, headers=organiser)
        assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "min_rates")
        assert (await client.get("/api/reports/units", params=params, headers=_auth(make_token()))).status_code == 403


# --- nudges ----------------------------------------------------------------------------

async def test_an_organiser_nudges_units_below_a_target(
    app, contest: dict[str, Any], pool: asyncpg.Pool, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    organiser = _auth(make_token(role="organiser"))
    url = f"/api/admin/contests/{contest['contest']}/nudges"

    async def emitted() -> list[dict[str, Any]]:
        rows = await pool.fetch("SELECT body FROM outbox WHERE type = $1 ORDER BY id", PARTICIPATION_NUDGE)
        return [orjson.loads(r["body"]) for r in rows]

    async with running_app(app) as client:
        r = await client.post(url, json={"round_id": str(contest["week1"]), "target_rate": 0.6}, headers=organiser)
        assert r.status_code == 202
        assert r.json()["units"] == 3
        (event,) = await emitted()
        assert event["id"] == event["data"]["nudge_id"] == r.json()["nudge_id"]
        assert event["data"] == {
            "nudge_id": r.json()["nudge_id"],
            "contest_id": str(contest["contest"]),
            "contest_title": "Tìm hiểu pháp luật năm 2025",
            "round_id": str(contest["week1"]),
            "round_title": "Tuần 1",
            "target_rate": 0.6,
            "units": [
                {"unit_id": str(contest["STP"]), "code": "STP", "name": "Sở Tư pháp", "participants": 0,
                 "headcount": 3, "rate": 0.0},
                {"unit_id": str(contest["P01"]), "code": "P01", "name": "Phường Đông Ba", "participants": 2,
                 "headcount": 4, "rate": 0.5},
                {"unit_id": str(contest["P02"]), "code": "P02", "name": "Phường Tây Lộc", "participants": 1,
                 "headcount": 2, "rate": 0.5},
            ],
        }

        # The same Idempotency-Key answers the first nudge; nothing new goes out.
        keyed = {**organiser, "Idempotency-Key": "nhac-1"}
        first = await client.post(url, json={"target_rate": 0.4}, headers=keyed)
        again = await client.post(url, json={"target_rate": 0.4}, headers=keyed)
        assert first.status_code == again.status_code == 202 and first.json() == again.json()
        assert len(await emitted()) == 2
        assert (await emitted())[1]["data"]["round_id"] is None  # the whole contest so far

        # Nobody below the target: recorded, nothing emitted.
        r = await client.post(url, json={"target_rate": 0}, headers=organiser)
        assert r.status_code == 202 and r.json()["units"] == 0
        assert len(await emitted()) == 2

        bad = [({"target_rate": 1.2}, organiser, 422), ({}, organiser, 422),
               ({"target_rate": 0.5, "round_id": str(uuid.uuid4())}, organiser, 404),
               ({"target_rate": 0.5}, _auth(make_token()), 403),
               ({"target_rate": 0.5}, _auth(make_token(role="coordinator", unit_id=contest["Q1"])), 403)]
        for body, headers, status in bad:
            assert (await client.post(url, json=body, headers=headers)).status_code == status, body
        r = await client.post(f"/api/admin/contests/{uuid.uuid4()}/nudges", json={"target_rate": 0.5},
                              headers=organiser)
        assert r.status_code == 404


async def test_the_nudge_schedule_is_stored_and_checked(
    app, make_token: Token  # type: ignore[no-untyped-def]
) -> None:
    organiser = _auth(make_token(role="organiser"))
    url = f"/api/admin/contests/{uuid.uuid4()}/nudge-schedule"
    async with running_app(app) as client:
        assert (await client.get(url, headers=organiser)).status_code == 404
        body = {"target_rate": 0.9, "times_local": ["16:00", "08:00"], "enabled": True}
        r = await client.put(url, json=body, headers=organiser)
        assert r.status_code == 200
        stored = {**body, "times_local": ["08:00", "16:00"], "round_id": None, "timezone": "Asia/Ho_Chi_Minh",
                  "contest_id": url.split("/")[4]}
        assert r.json() == stored
        assert (await client.get(url, headers=organiser)).json() == stored
        r = await client.put(url, json={**body, "enabled": False}, headers=organiser)
        assert r.json()["enabled"] is False
        for bad in ({**body, "times_local": ["8:00"]}, {**body, "times_local": ["08:00", "08:00"]},
                    {**body, "times_local": []}, {**body, "target_rate": -0.1}):
            r = await client.put(url, json=bad, headers=organiser)
            assert r.status_code == 422, bad
        r = await client.put(url, json={**body, "times_local": ["25:00"]}, headers=organiser)
        assert r.json()["errors"][0]["field"] == "times_local"
        assert (await client.put(url, json=body, headers=_auth(make_token()))).status_code == 403
