"""Issue 3 through the routes, against the real PostgreSQL and Redis: contest and round
settings, groups at start, quotas, require-all-answered, replays, the timing edges, the
attempts limit under simultaneous starts, the bank listing and all-or-nothing imports."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import openpyxl
import pytest

from services.core.testing import running_app
from services.quiz import domain
from services.quiz.app import create_app
from services.quiz.settings import QuizSettings
from services.quiz.tests.conftest import CSV_HEADER, Admin, outbox_events, stamp, topic_bank


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


TWO_GROUPS = [
    {"code": "cbcc", "name": "Cán bộ, công chức", "topics": ["Luật", "Đô thị"]},
    {"code": "nhan_dan", "name": "Nhân dân", "topics": ["Lịch sử"]},
]
# Luật: 3 of difficulty 1 and 3 of difficulty 2; Đô thị: 4 of difficulty 2; Lịch sử: 6 of difficulty 3.
BANK = {("Luật", 1): 3, ("Luật", 2): 3, ("Đô thị", 2): 4, ("Lịch sử", 3): 6}


def topic_of(question: dict[str, Any]) -> str:
    return str(question["text"].split(" về ")[1].split(" mức ")[0])


async def start(client: httpx.AsyncClient, round_id: str, who: Any, stamped: dict[str, str] | None = None
                ) -> httpx.Response:
    return await client.post(f"/api/rounds/{round_id}/attempts", headers={**who.headers, **(stamped or {})})


async def submit(client: httpx.AsyncClient, attempt_id: str, who: Any, answers: dict[str, list[str]] | None = None,
                 stamped: dict[str, str] | None = None) -> httpx.Response:
    return await client.post(f"/api/attempts/{attempt_id}/submit", json={"answers": answers or {}, "prediction": 7},
                             headers={**who.headers, **(stamped or {})})


# --- contest settings ----------------------------------------------------------------------

async def test_contest_settings_are_created_read_listed_and_patched(client: httpx.AsyncClient, admin: Admin) -> None:
    created = await client.post("/api/admin/contests", headers=admin.headers, json={
        "slug": "cchc", "title": "Cải cách hành chính", "tie_break": ["correct", "duration", "prediction_error"],
        "prize_scope": "contest", "groups": TWO_GROUPS, "require_all_answered": True, "default_group": "nhan_dan"})
    assert created.status_code == 201, created.text
    contest_id = created.json()["id"]
    assert (await admin.questions(contest_id, topic_bank(BANK))).status_code == 200
    path = f"/api/admin/contests/{contest_id}"

    detail = (await client.get(path, headers=admin.headers)).json()
    assert detail["groups"] == TWO_GROUPS and detail["default_group"] == "nhan_dan"
    assert detail["require_all_answered"] is True and detail["prize_scope"] == "contest"
    assert detail["tie_break"] == ["correct", "duration", "prediction_error"]
    assert detail["question_count"] == 16 and detail["rounds"] == []
    assert {t["topic"]: (t["count"], t["difficulties"]) for t in detail["bank_topics"]} == {
        "Luật": (6, {"1": 3, "2": 3, "3": 0}), "Đô thị": (4, {"1": 0, "2": 4, "3": 0}),
        "Lịch sử": (6, {"1": 0, "2": 0, "3": 6})}
    listed = (await client.get("/api/admin/contests", headers=admin.headers)).json()
    assert [(c["id"], c["slug"], c["groups"]) for c in listed] == [(contest_id, "cchc", TWO_GROUPS)]

    public = (await client.get("/api/contests/cchc")).json()
    assert public["groups"] == [{"code": "cbcc", "name": "Cán bộ, công chức"}, {"code": "nhan_dan", "name": "Nhân dân"}]
    assert public["require_all_answered"] is True

    # Only what is sent changes; null clears the default group.
    patched = await client.patch(path, headers=admin.headers, json={"title": "Tên mới", "default_group": None})
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Tên mới" and patched.json()["default_group"] is None
    assert patched.json()["groups"] == TWO_GROUPS and patched.json()["prize_scope"] == "contest"
    patched = await client.patch(path, headers=admin.headers, json={
        "groups": TWO_GROUPS[:1], "require_all_answered": False, "prize_scope": "round", "tie_break": ["correct"]})
    assert patched.status_code == 200
    assert (patched.json()["groups"], patched.json()["require_all_answered"], patched.json()["prize_scope"],
            patched.json()["tie_break"]) == (TWO_GROUPS[:1], False, "round", ["correct"])

    for body, field in [
        ({"default_group": "nhan_dan"}, "default_group"),  # no such group any more
        ({"groups": [TWO_GROUPS[0], TWO_GROUPS[0]]}, "groups"),
        ({"groups": [{"code": "Có dấu", "name": "x"}]}, "groups.0.code"),
        ({"title": None}, "title"),
        ({"tie_break": ["luck"]}, "tie_break"),
        ({"slug": "khac"}, "slug"),
    ]:
        refused = await client.patch(path, headers=admin.headers, json=body)
        assert refused.status_code == 422, body
        assert field in {e["field"] for e in refused.json()["errors"]}, refused.json()
    assert (await client.get(path, headers=admin.headers)).json()["title"] == "Tên mới"

    bad_default = await client.post("/api/admin/contests", headers=admin.headers, json={
        "slug": "khac", "title": "x", "groups": TWO_GROUPS, "default_group": "hoc_sinh"})
    assert bad_default.status_code == 422 and bad_default.json()["errors"][0]["field"] == "default_group"
    unknown = f"/api/admin/contests/{uuid.uuid4()}"
    assert (await client.get(unknown, headers=admin.headers)).status_code == 404
    assert (await client.patch(unknown, headers=admin.headers, json={"title": "x"})).status_code == 404


async def test_organiser_reads_need_an_organiser(client: httpx.AsyncClient, person: Any) -> None:
    someone = person()
    for method, path in [
        ("GET", "/api/admin/contests"), ("GET", f"/api/admin/contests/{uuid.uuid4()}"),
        ("PATCH", f"/api/admin/contests/{uuid.uuid4()}"), ("GET", f"/api/admin/rounds/{uuid.uuid4()}"),
        ("PATCH", f"/api/admin/rounds/{uuid.uuid4()}"), ("GET", f"/api/admin/contests/{uuid.uuid4()}/questions"),
        ("GET", f"/api/admin/attempts/{uuid.uuid4()}/replay"),
    ]:
        kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
        assert (await client.request(method, path, **kwargs)).status_code == 401, path
        assert (await client.request(method, path, headers=someone.headers, **kwargs)).status_code == 403, path


# --- round settings ------------------------------------------------------------------------

async def test_round_settings_are_stored_and_shown(client: httpx.AsyncClient, admin: Admin) -> None:
    contest_id = await admin.contest("cchc", groups=TWO_GROUPS)
    await admin.questions(contest_id, topic_bank(BANK))
    round_id = await admin.round(
        contest_id, opens_at="2030-03-04T10:00:00+07:00", closes_at="2030-03-11T09:00:00+07:00", question_count=5,
        time_limit_s=900, max_attempts=3, quotas={"topics": {"Luật": 2, "Lịch sử": 3}, "difficulties": {"3": 2}},
        group_prizes={"cbcc": [{"name": "Giải Nhất", "count": 1}], "nhan_dan": [{"name": "Giải Nhì", "count": 2}]},
        freeze_minutes=60)

    detail = (await client.get(f"/api/admin/rounds/{round_id}", headers=admin.headers)).json()
    assert at(detail["opens_at"]) == datetime(2030, 3, 4, 3, 0, tzinfo=UTC)
    assert detail["opens_at_local"] == "2030-03-04T10:00:00+07:00"
    assert detail["closes_at_local"] == "2030-03-11T09:00:00+07:00"
    assert detail["status"] == "scheduled" and detail["opened_at"] is None and detail["snapshot_size"] is None
    assert detail["quotas"] == {"topics": {"Luật": 2, "Lịch sử": 3}, "difficulties": {"3": 2}}
    assert detail["group_prizes"] == {"cbcc": [{"name": "Giải Nhất", "count": 1}],
                                      "nhan_dan": [{"name": "Giải Nhì", "count": 2}]}
    assert detail["freeze_minutes"] == 60 and detail["max_attempts"] == 3
    assert detail["prediction"] == {"text": "Bao nhiêu người tham gia?", "target": "participants"}
    assert detail["groups"] == TWO_GROUPS and detail["require_all_answered"] is False
    # Topic quotas bind the groups that have the topic: civil servants take 2 of Luật and 3 of Đô thị,
    # but none of their topics has difficulty 3; citizens take 3 of Lịch sử and have no other topic for the rest.
    assert [(p["group"], p["field"]) for p in detail["draw_problems"]] == [
        ("cbcc", "quotas.difficulties.3"), ("nhan_dan", "quotas.topics")]

    public = (await client.get("/api/contests/cchc")).json()
    [shown] = public["rounds"]
    assert shown["opens_at_local"] == "2030-03-04T10:00:00+07:00" and at(shown["closes_at"]) == at(detail["closes_at"])
    assert (shown["question_count"], shown["time_limit_s"], shown["max_attempts"]) == (5, 900, 3)
    assert shown["prizes"] == [{"name": "Giải Nhất", "count": 1}] and shown["group_prizes"] == detail["group_prizes"]
    assert shown["prediction"] == {"text": "Bao nhiêu người tham gia?"}  # the target is for organisers
    assert shown["status"] == "scheduled" and shown["freeze_minutes"] == 60
    no_prediction = await admin.round(contest_id, number=2, prediction=None)
    assert (await client.get("/api/contests/cchc")).json()["rounds"][1]["prediction"] is None
    assert (await client.get(f"/api/admin/rounds/{no_prediction}", headers=admin.headers)).json()["quotas"] == {
        "topics": {}, "difficulties": {}}
    assert (await client.get(f"/api/admin/rounds/{uuid.uuid4()}", headers=admin.headers)).status_code == 404

    listed = (await client.get("/api/admin/contests", headers=admin.headers)).json()
    assert [r["id"] for r in listed[0]["rounds"]] == [round_id, no_prediction]


async def test_round_settings_are_validated(client: httpx.AsyncClient, admin: Admin) -> None:
    contest_id = await admin.contest(groups=TWO_GROUPS)
    path = f"/api/admin/contests/{contest_id}/rounds"
    base: dict[str, Any] = {"number": 1, "title": "Tuần 1", "opens_at": "2030-03-04T10:00:00+07:00",
                            "closes_at": "2030-03-11T09:00:00+07:00", "question_count": 20, "time_limit_s": 900}
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"quotas": {"topics": {"Luật": 15, "Đô thị": 6}}}, {"quotas.topics"}),
        ({"quotas": {"topics": {"Luật": 10}, "difficulties": {"1": 10, "2": 11}}}, {"quotas.difficulties"}),
        ({"quotas": {"topics": {"Luật": 21}, "difficulties": {"3": 21}}}, {"quotas.topics", "quotas.difficulties"}),
        ({"quotas": {"difficulties": {"4": 1}}}, {"quotas.difficulties.4.[key]"}),
        ({"quotas": {"topics": {"Luật": -1}}}, {"quotas.topics.Luật"}),
        ({"quotas": {"levels": {}}}, {"quotas.levels"}),
        ({"group_prizes": {"hoc_sinh": [{"name": "Nhất", "count": 1}]}}, {"group_prizes.hoc_sinh"}),
        ({"freeze_minutes": 1441}, {"freeze_minutes"}),
        ({"freeze_minutes": -1}, {"freeze_minutes"}),
    ]
    for change, fields in cases:
        r = await client.post(path, json={**base, **change}, headers=admin.headers)
        assert r.status_code == 422, change
        assert {e["field"] for e in r.json()["errors"]} == fields, r.json()
        assert all(e["message"] for e in r.json()["errors"])
    ok = await client.post(path, json={**base, "quotas": {"topics": {"Luật": 20}, "difficulties": {"1": 0}},
                                       "freeze_minutes": 1440}, headers=admin.headers)
    assert ok.status_code == 201


async def test_a_round_changes_freely_while_scheduled_and_only_its_close_once_open(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    contest_id = await admin.contest()
    await admin.questions(contest_id, topic_bank(BANK))
    now = datetime.now(UTC).replace(microsecond=0)
    later = await admin.round(contest_id, number=2, opens_at=(now + timedelta(days=7)).isoformat(),
                              closes_at=(now + timedelta(days=14)).isoformat())
    path = f"/api/admin/rounds/{later}"

    changed = await client.patch(path, headers=admin.headers, json={
        "title": "Tuần hai", "question_count": 6, "time_limit_s": 900, "grace_s": 10, "max_attempts": None,
        "prediction": None, "prizes": [{"name": "Giải Ba", "count": 3}], "freeze_minutes": 15,
        "quotas": {"topics": {"Luật": 2}, "difficulties": {"3": 1}}, "group_prizes": None,
        "opens_at": (now + timedelta(days=8)).isoformat()})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["title"], body["question_count"], body["time_limit_s"], body["grace_s"], body["max_attempts"],
            body["prediction"], body["prizes"], body["freeze_minutes"], body["quotas"]) == (
        "Tuần hai", 6, 900, 10, None, None, [{"name": "Giải Ba", "count": 3}], 15,
        {"topics": {"Luật": 2}, "difficulties": {"3": 1}})
    assert at(body["opens_at"]) == now + timedelta(days=8) and body["number"] == 2
    assert (await client.get(path, headers=admin.headers)).json() == body

    for change, field in [
        ({"closes_at": (now + timedelta(days=8)).isoformat()}, "closes_at"),  # not after the opening
        ({"opens_at": "2030-03-04T10:00:00"}, "opens_at"),
        ({"question_count": 1}, "quotas.topics"),  # the quotas no longer fit
        ({"title": None}, "title"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"contest_id": str(uuid.uuid4())}, "contest_id"),
    ]:
        refused = await client.patch(path, headers=admin.headers, json=change)
        assert refused.status_code == 422, change
        assert field in {e["field"] for e in refused.json()["errors"]}, refused.json()
    first = await admin.round(contest_id, number=1)
    taken = await client.patch(path, headers=admin.headers, json={"number": 1})
    assert taken.status_code == 409 and taken.json()["code"] == "round_number_taken"
    assert (await client.patch(f"/api/admin/rounds/{uuid.uuid4()}", headers=admin.headers,
                               json={"title": "x"})).status_code == 404

    # Round 1 is open (its first start opens it): only a later close is allowed now.
    assert (await start(client, first, person())).status_code == 201
    open_path = f"/api/admin/rounds/{first}"
    closes_at = at((await client.get(open_path, headers=admin.headers)).json()["closes_at"])
    for change in ({"title": "Đổi tên"}, {"question_count": 3}, {"opens_at": now.isoformat()},
                   {"closes_at": (closes_at - timedelta(minutes=1)).isoformat()},
                   {"closes_at": (closes_at + timedelta(days=1)).isoformat(), "title": "Đổi tên"}):
        locked = await client.patch(open_path, headers=admin.headers, json=change)
        assert locked.status_code == 409, change
        assert locked.json()["code"] == "round_locked" and locked.json()["round_status"] == "open"
        assert locked.json()["reason"]
    extended = await client.patch(open_path, headers=admin.headers,
                                  json={"closes_at": (closes_at + timedelta(days=1)).isoformat()})
    assert extended.status_code == 200 and at(extended.json()["closes_at"]) == closes_at + timedelta(days=1)
    assert extended.json()["title"] == "Tuần 1" and extended.json()["status"] == "open"
    announced = await outbox_events(pool, "round.opened")  # again, with the new close, for scoring
    assert [at(e["data"]["closes_at"]) for e in announced] == [closes_at, closes_at + timedelta(days=1)]

    await client.post(f"/api/admin/rounds/{first}/close", headers=admin.headers)
    closed = await client.patch(open_path, headers=admin.headers,
                                json={"closes_at": (closes_at + timedelta(days=2)).isoformat()})
    assert closed.status_code == 409 and closed.json()["round_status"] == "closed"


# --- groups and quotas at start ----------------------------------------------------------

async def test_each_group_draws_from_its_topics_within_the_quotas(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    contest_id = await admin.contest("cchc", groups=TWO_GROUPS, require_all_answered=True)
    await admin.questions(contest_id, topic_bank(BANK))
    round_id = await admin.round(contest_id, question_count=4, prediction=None, freeze_minutes=30,
                                 quotas={"topics": {"Luật": 2}},
                                 group_prizes={"cbcc": [{"name": "Giải Nhất", "count": 1}]})

    civil_servants = [person(f"Công chức {i}", "cbcc") for i in range(5)]
    for who in civil_servants:
        attempt = (await start(client, round_id, who)).json()
        topics = [topic_of(q) for q in attempt["questions"]]
        assert len(topics) == 4 and topics.count("Luật") == 2 and set(topics) <= {"Luật", "Đô thị"}
    citizen = person("Người dân", "Nhân dân")  # registration stores the group's name as people chose it
    started = await start(client, round_id, citizen)
    assert started.status_code == 201
    assert {topic_of(q) for q in started.json()["questions"]} == {"Lịch sử"}
    attempt_id = started.json()["attempt_id"]
    assert (await submit(client, attempt_id, citizen)).status_code == 202
    [submitted] = [e for e in await outbox_events(pool, "attempt.submitted")]
    assert submitted["data"]["group"] == "nhan_dan"
    assert await pool.fetchval("SELECT \"group\" FROM attempts WHERE id = $1", uuid.UUID(attempt_id)) == "nhan_dan"

    for token_group in (None, "hoc_sinh"):
        refused = await start(client, round_id, person("Học sinh", token_group))
        assert refused.status_code == 409 and refused.json()["code"] == "group_required"

    [opened] = await outbox_events(pool, "round.opened")
    data = opened["data"]
    assert data["groups"] == [{"code": "cbcc", "name": "Cán bộ, công chức"}, {"code": "nhan_dan", "name": "Nhân dân"}]
    assert data["group_prizes"] == {"cbcc": [{"name": "Giải Nhất", "count": 1}]}
    assert data["require_all_answered"] is True and data["freeze_s"] == 1800
    assert len(data["answer_key"]) == 16  # the whole snapshot, every group's questions

    # A default group set now applies to rounds that open later, not to this one.
    await client.patch(f"/api/admin/contests/{contest_id}", headers=admin.headers, json={"default_group": "nhan_dan"})
    assert (await start(client, round_id, person("Học sinh", None))).json()["code"] == "group_required"
    next_round = await admin.round(contest_id, number=2, question_count=3, prediction=None)
    late = await start(client, next_round, person("Học sinh", None))
    assert late.status_code == 201 and {topic_of(q) for q in late.json()["questions"]} == {"Lịch sử"}


async def test_a_bank_that_cannot_meet_the_quotas_refuses_the_start_naming_the_quota(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    contest_id = await admin.contest()
    await admin.questions(contest_id, topic_bank(BANK))
    round_id = await admin.round(contest_id, question_count=8, quotas={"topics": {"Luật": 7}})
    check = (await client.get(f"/api/admin/rounds/{round_id}", headers=admin.headers)).json()
    assert [(p["group"], p["field"]) for p in check["draw_problems"]] == [(None, "quotas.topics.Luật")]

    refused = await start(client, round_id, person())
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "bank_too_small" and problem["field"] == "quotas.topics.Luật"
    assert "Luật" in problem["errors"][0]["message"] and "6" in problem["errors"][0]["message"]
    english = await client.post(f"/api/rounds/{round_id}/attempts",
                                headers={**person().headers, "Accept-Language": "en"})
    assert "question bank" in english.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 0
    # The round opened all the same (with its snapshot), and says why it cannot draw.
    check = (await client.get(f"/api/admin/rounds/{round_id}", headers=admin.headers)).json()
    assert check["status"] == "open" and check["snapshot_size"] == 16 and len(check["draw_problems"]) == 1


async def test_answered_all_tells_scoring_whether_every_question_was_answered(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    contest_id = await admin.contest(require_all_answered=True)
    await admin.questions(contest_id, topic_bank(BANK))
    round_id = await admin.round(contest_id, question_count=3, prediction=None)
    partial, complete = person("Thiếu"), person("Đủ")
    given: dict[str, dict[str, list[str]]] = {}
    for who in (partial, complete):
        attempt = (await start(client, round_id, who)).json()
        ids = [q["id"] for q in attempt["questions"]]
        given[who.name] = {i: ["A"] for i in ids} if who is complete else {ids[0]: ["A"], ids[1]: []}
        r = await submit(client, attempt["attempt_id"], who, given[who.name])
        assert r.status_code == 202, r.text  # never refused: the submission must be durable
    events = {e["data"]["name"]: e["data"] for e in await outbox_events(pool, "attempt.submitted")}
    assert events["Thiếu"]["answered_all"] is False and events["Đủ"]["answered_all"] is True
    assert events["Thiếu"]["answers"] == given["Thiếu"]  # as given; scoring decides that it does not count
    assert len(events["Đủ"]["question_ids"]) == 3


# --- replay ------------------------------------------------------------------------------

async def test_an_attempt_replays_from_its_seed(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    contest_id = await admin.contest(groups=TWO_GROUPS)
    await admin.questions(contest_id, topic_bank(BANK))
    round_id = await admin.round(contest_id, question_count=5, prediction=None, quotas={"topics": {"Đô thị": 2}})
    people = [person("Công chức", "cbcc"), person("Người dân", "nhan_dan")]
    attempts = [(await start(client, round_id, who)).json() for who in people]
    first = attempts[0]["questions"][0]["id"]
    await submit(client, attempts[0]["attempt_id"], people[0], {first: ["C", "A"]})

    for who, attempt in zip(people, attempts, strict=True):
        replay = await client.get(f"/api/admin/attempts/{attempt['attempt_id']}/replay", headers=admin.headers)
        assert replay.status_code == 200, replay.text
        body = replay.json()
        shown = [q["id"] for q in attempt["questions"]]
        assert body["matches"] is True and body["question_ids"] == shown == body["replayed_question_ids"]
        assert body["group"] == ("cbcc" if who is people[0] else "nhan_dan") and int(body["seed"]) >= 0
        assert [q["options"] for q in body["questions"]] == [[o["id"] for o in q["options"]]
                                                            for q in attempt["questions"]]
        assert all(q["correct"] == ["B"] for q in body["questions"])
    submitted = (await client.get(f"/api/admin/attempts/{attempts[0]['attempt_id']}/replay",
                                  headers=admin.headers)).json()
    assert submitted["questions"][0]["chosen"] == ["A", "C"] and submitted["questions"][1]["chosen"] == []

    # A stored draw that the seed does not give is caught.
    stored = [uuid.UUID(q["id"]) for q in attempts[1]["questions"]]
    await pool.execute("UPDATE attempts SET question_ids = $2 WHERE id = $1", uuid.UUID(attempts[1]["attempt_id"]),
                       stored[::-1])
    tampered = (await client.get(f"/api/admin/attempts/{attempts[1]['attempt_id']}/replay",
                                 headers=admin.headers)).json()
    assert tampered["matches"] is False and tampered["replayed_question_ids"] != tampered["question_ids"]
    assert (await client.get(f"/api/admin/attempts/{uuid.uuid4()}/replay", headers=admin.headers)).status_code == 404


# --- timing edges, on the gateway's stamp ----------------------------------------------------

async def test_start_one_second_before_the_close_and_submit_within_the_grace(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    closes_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    contest_id = await admin.contest()
    await admin.questions(contest_id, topic_bank(BANK))
    round_id = await admin.round(contest_id, closes_at=closes_at.isoformat(), time_limit_s=600, grace_s=30,
                                 prediction=None)
    just_in, in_grace, too_late = person("Kịp"), person("Trong gia hạn"), person("Trễ")

    at_close = await start(client, round_id, person("Đúng lúc đóng"), stamped=stamp(closes_at))
    assert at_close.status_code == 409 and at_close.json()["code"] == "round_not_open"
    assert at_close.json()["round_status"] == "closed"
    one_second_before = closes_at - timedelta(seconds=1)
    ids = {}
    for who in (just_in, in_grace, too_late):
        r = await start(client, round_id, who, stamped=stamp(one_second_before))
        assert r.status_code == 201, r.text
        assert at(r.json()["deadline_at"]) == one_second_before + timedelta(seconds=600)
        ids[who.name] = r.json()["attempt_id"]

    deadline = one_second_before + timedelta(seconds=600)
    assert (await submit(client, ids["Kịp"], just_in, stamped=stamp(deadline))).status_code == 202
    assert (await submit(client, ids["Trong gia hạn"], in_grace,
                         stamped=stamp(deadline + timedelta(seconds=29)))).status_code == 202
    late = await submit(client, ids["Trễ"], too_late, stamped=stamp(deadline + timedelta(seconds=31)))
    assert late.status_code == 409 and late.json()["code"] == "deadline_passed"
    stamps = sorted(at(e["data"]["submitted_at"]) for e in await outbox_events(pool, "attempt.submitted"))
    assert stamps == [deadline, deadline + timedelta(seconds=29)]


# --- the attempts limit under simultaneous starts ----------------------------------------------

@pytest.mark.parametrize("simultaneous", [2, 5])
@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_simultaneous_starts_never_exceed_the_attempts_limit(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool, simultaneous: int, max_attempts: int
) -> None:
    round_id = await admin.open_round(max_attempts=max_attempts, prediction=None)
    an = person()
    for _ in range(max_attempts - 1):
        earlier = (await start(client, round_id, an)).json()
        assert (await submit(client, earlier["attempt_id"], an)).status_code == 202

    results = await asyncio.gather(*[start(client, round_id, an) for _ in range(simultaneous)])
    assert sorted(r.status_code for r in results) == [200] * (simultaneous - 1) + [201]
    assert {(r.json()["attempt_id"], r.json()["attempt_number"]) for r in results} == {
        (results[0].json()["attempt_id"], max_attempts)}
    assert await pool.fetchval("SELECT count(*) FROM attempts") == max_attempts

    assert (await submit(client, results[0].json()["attempt_id"], an)).status_code == 202
    after = await asyncio.gather(*[start(client, round_id, an) for _ in range(simultaneous)])
    assert {(r.status_code, r.json()["code"], r.json()["attempts_used"]) for r in after} == {
        (409, "attempts_exhausted", max_attempts)}
    assert await pool.fetchval("SELECT count(*) FROM attempts") == max_attempts


async def test_starts_spread_over_two_api_processes_never_exceed_the_limit(
    admin: Admin, person: Any, pool: asyncpg.Pool, settings: QuizSettings
) -> None:
    """Two app instances, each with its own pool and question cache, as two gunicorn workers."""
    round_id = await admin.open_round(max_attempts=2, prediction=None)
    people = [person(f"Người {i}") for i in range(4)]
    async with running_app(create_app(settings)) as other:
        for _ in range(2):
            results = await asyncio.gather(*[
                start(client, round_id, who) for who in people for client in (admin.client, other, admin.client)])
            by_person: dict[str, set[str]] = {}
            for r in results:
                assert r.status_code in (200, 201), r.text
                by_person.setdefault(r.request.headers["authorization"], set()).add(r.json()["attempt_id"])
            assert all(len(ids) == 1 for ids in by_person.values())
            for who in people:
                attempt_id = await pool.fetchval(
                    "SELECT id FROM attempts WHERE participant_id = $1 AND submitted_at IS NULL", who.id)
                assert (await submit(other, str(attempt_id), who)).status_code == 202
        third = await asyncio.gather(*[start(c, round_id, people[0]) for c in (admin.client, other)])
        assert {r.status_code for r in third} == {409}
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 8
    assert await pool.fetchval("SELECT max(attempt_number) FROM attempts") == 2


# --- the question bank -------------------------------------------------------------------------

async def test_organisers_list_the_bank_with_the_correct_letters(client: httpx.AsyncClient, admin: Admin) -> None:
    contest_id = await admin.contest()
    await admin.questions(contest_id, topic_bank(BANK) + "Luật,3,Câu nhiều đáp án?,a,b,c,d,\"A, C\",Vì.\n".encode())
    path = f"/api/admin/contests/{contest_id}/questions"

    everything = await client.get(path, headers=admin.headers, params={"limit": 500})
    assert everything.status_code == 200 and everything.headers["x-total-count"] == "17"
    assert len(everything.json()) == 17
    several = next(q for q in everything.json() if q["text"] == "Câu nhiều đáp án?")
    assert several["correct"] == ["A", "C"] and several["topic"] == "Luật" and several["difficulty"] == 3
    assert [o["id"] for o in several["options"]] == ["A", "B", "C", "D"] and several["explanation"] == "Vì."

    page_one = await client.get(path, headers=admin.headers, params={"topic": "luật", "limit": 4})
    page_two = await client.get(path, headers=admin.headers, params={"topic": "Luật", "limit": 4, "offset": 4})
    assert page_one.headers["x-total-count"] == page_two.headers["x-total-count"] == "7"
    ids = [q["id"] for q in page_one.json() + page_two.json()]
    assert len(ids) == len(set(ids)) == 7 and {q["topic"] for q in page_one.json()} == {"Luật"}
    beyond = await client.get(path, headers=admin.headers, params={"topic": "Luật", "offset": 50})
    assert beyond.json() == [] and beyond.headers["x-total-count"] == "7"
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
        assert (await client.get(path, headers=admin.headers, params=params)).status_code == 422
    unknown = await client.get(f"/api/admin/contests/{uuid.uuid4()}/questions", headers=admin.headers)
    assert unknown.status_code == 404


BAD_ROWS = [
    ["Luật", "1", "Câu hợp lệ?", "a", "b", "c", "d", "B", ""],                     # 2: fine
    ["Luật", "1", "Thiếu phương án?", "a", "", "", "", "A", ""],                    # 3: fewer than 2 options
    ["Luật", "1", "Đáp án trỏ vào ô trống?", "a", "b", "", "d", "C", ""],           # 4: correct names an empty option
    ["Luật", "1", "câu  HỢP LỆ?", "a", "b", "c", "d", "B", ""],                     # 5: duplicate of row 2
    ["Luật", "1", "Đã có trong ngân hàng?", "a", "b", "c", "d", "B", ""],           # 6: duplicate of the bank
    ["Luật", "4", "Độ khó sai?", "a", "b", "c", "d", "B", ""],                      # 7: bad difficulty
    ["Luật", "1", "", "a", "b", "c", "d", "B", ""],                                 # 8: empty question
    ["Luật", "2", "Câu cũng hợp lệ?", "a", "b", "c", "d", "A,D", ""],               # 9: fine
]
EXPECTED_ERRORS = [(3, "option_b"), (4, "correct"), (5, "question"), (6, "question"), (7, "difficulty"),
                   (8, "question")]


def as_csv(rows: list[list[str]]) -> bytes:
    return (CSV_HEADER + "".join(",".join(f'"{c}"' for c in row) + "\n" for row in rows)).encode()


def as_xlsx(rows: list[list[str]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(CSV_HEADER.strip().split(","))
    for row in rows:
        # As Excel users type them: numbers as numbers, empty cells as nothing.
        sheet.append([int(c) if c.isdigit() else (c or None) for c in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(("make_file", "filename"), [(as_csv, "bank.csv"), (as_xlsx, "bank.xlsx")])
async def test_an_import_with_every_kind_of_bad_row_names_them_all_and_imports_nothing(
    client: httpx.AsyncClient, admin: Admin, pool: asyncpg.Pool, make_file: Any, filename: str
) -> None:
    contest_id = await admin.contest()
    assert (await admin.questions(contest_id, as_csv([["Luật", "1", "Đã có trong  ngân hàng?", "a", "b", "", "",
                                                       "A", ""]]))).json() == {"imported": 1}
    r = await admin.questions(contest_id, make_file(BAD_ROWS), filename)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_questions"
    assert sorted((e["row"], e["field"]) for e in r.json()["errors"]) == EXPECTED_ERRORS
    assert all(e["message"] for e in r.json()["errors"])
    assert "dòng 2" in next(e["message"] for e in r.json()["errors"] if e["row"] == 5)
    assert await pool.fetchval("SELECT count(*) FROM questions") == 1

    good = [row for number, row in enumerate(BAD_ROWS, start=2) if number in (2, 9)]
    fixed = await admin.questions(contest_id, make_file(good), filename)
    assert fixed.status_code == 200 and fixed.json() == {"imported": 2}
    stored = {r["text"]: list(r["correct"]) for r in await pool.fetch("SELECT text, correct FROM questions")}
    assert stored == {"Đã có trong ngân hàng?": ["A"], "Câu hợp lệ?": ["B"], "Câu cũng hợp lệ?": ["A", "D"]}


# --- the example, through the API alone ----------------------------------------------

async def test_a_four_week_contest_with_two_groups_is_configured_through_the_api(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    """Two groups, 20 questions from 3 topics in 15 minutes, at most 3 attempts a week,
    a prediction of participants, prizes 1/2/3/10 per group, one prize per person per contest."""
    created = await client.post("/api/admin/contests", headers=admin.headers, json={
        "slug": "cchc-2026", "title": "Tìm hiểu cải cách hành chính 2026", "prize_scope": "contest",
        "tie_break": ["correct", "prediction_error", "duration", "submitted_at"],
        "groups": [
            {"code": "cbcc", "name": "Cán bộ, công chức, viên chức",
             "topics": ["Cải cách hành chính", "Chuyển đổi số", "Pháp luật"]},
            {"code": "nhan_dan", "name": "Nhân dân", "topics": ["Đời sống đô thị", "Chuyển đổi số", "Lịch sử"]},
        ]})
    assert created.status_code == 201
    contest_id = created.json()["id"]
    bank = {(topic, difficulty): 6 for topic in ("Cải cách hành chính", "Chuyển đổi số", "Pháp luật",
                                                  "Đời sống đô thị", "Lịch sử") for difficulty in (1, 2, 3)}
    assert (await admin.questions(contest_id, topic_bank(bank))).json() == {"imported": 90}

    # Weekly: Monday 10:00 to the next Monday 09:00, Vietnam's time, from 4 March 2030.
    first_monday = datetime(2030, 3, 4, 3, 0, tzinfo=UTC)
    prizes = [{"name": "Giải Nhất", "count": 1}, {"name": "Giải Nhì", "count": 2}, {"name": "Giải Ba", "count": 3},
              {"name": "Giải Khuyến khích", "count": 10}]
    rounds = []
    for week in range(4):
        opens = first_monday + timedelta(weeks=week)
        rounds.append(await admin.round(
            contest_id, number=week + 1, opens_at=vietnam_time(opens),
            closes_at=vietnam_time(opens + timedelta(weeks=1, hours=-1)), question_count=20, time_limit_s=900,
            max_attempts=3, prediction={"text": "Có bao nhiêu người tham gia tuần thi này?", "target": "participants"},
            prizes=prizes, quotas={"topics": {"Chuyển đổi số": 6}}))

    page = (await client.get("/api/contests/cchc-2026")).json()
    assert [r["opens_at_local"] for r in page["rounds"]] == [
        "2030-03-04T10:00:00+07:00", "2030-03-11T10:00:00+07:00", "2030-03-18T10:00:00+07:00",
        "2030-03-25T10:00:00+07:00"]
    assert [r["closes_at_local"] for r in page["rounds"]] == [
        "2030-03-11T09:00:00+07:00", "2030-03-18T09:00:00+07:00", "2030-03-25T09:00:00+07:00",
        "2030-04-01T09:00:00+07:00"]
    for shown in page["rounds"]:
        assert (shown["question_count"], shown["time_limit_s"], shown["max_attempts"]) == (20, 900, 3)
        assert shown["prizes"] == prizes and shown["group_prizes"] is None
    assert all(not r["draw_problems"] for r in [
        (await client.get(f"/api/admin/rounds/{round_id}", headers=admin.headers)).json() for round_id in rounds])

    # Week 1, as the gateway stamps the requests: Tuesday 20:00 in Hà Nội.
    tuesday_evening = datetime(2030, 3, 5, 13, 0, tzinfo=UTC)
    own_topics = {"cbcc": {"Cải cách hành chính", "Chuyển đổi số", "Pháp luật"},
                  "nhan_dan": {"Đời sống đô thị", "Chuyển đổi số", "Lịch sử"}}
    for group in ("cbcc", "nhan_dan"):
        who = person(f"Người nhóm {group}", group)
        for number in range(1, 4):
            started = await start(client, rounds[0], who, stamp(tuesday_evening))
            assert started.status_code == 201 and started.json()["attempt_number"] == number
            questions = started.json()["questions"]
            topics = [topic_of(q) for q in questions]
            assert len(questions) == 20 and set(topics) <= own_topics[group] and topics.count("Chuyển đổi số") == 6
            assert at(started.json()["deadline_at"]) == tuesday_evening + timedelta(minutes=15)
            submitted = await submit(client, started.json()["attempt_id"], who,
                                     stamped=stamp(tuesday_evening + timedelta(minutes=14)))
            assert submitted.status_code == 202
        refused = await start(client, rounds[0], who, stamp(tuesday_evening))
        assert refused.json()["code"] == "attempts_exhausted"
    early = await start(client, rounds[1], person("Sớm", "cbcc"), stamp(tuesday_evening))
    assert early.status_code == 409 and early.json()["round_status"] == "scheduled"

    [opened] = await outbox_events(pool, "round.opened")
    data = opened["data"]
    assert data["round_id"] == rounds[0]
    assert (data["prize_scope"], data["prizes"], data["group_prizes"], data["max_attempts"]) == (
        "contest", prizes, None, 3)
    assert data["prediction"]["target"] == "participants" and len(data["answer_key"]) == 90
    assert [g["code"] for g in data["groups"]] == ["cbcc", "nhan_dan"]
    assert len(await outbox_events(pool, "attempt.submitted")) == 6


def vietnam_time(moment: datetime) -> str:
    """As an organiser in Vietnam writes it."""
    return domain.local_time(moment).isoformat()
