"""The quiz's routes against the real PostgreSQL and Redis, in-process."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import openpyxl
from redis.asyncio import Redis

from services.core.testing import running_app
from services.quiz.api import ShownQuestions
from services.quiz.app import create_app
from services.quiz.settings import QuizSettings
from services.quiz.tests.conftest import CSV_HEADER, Admin, bank_csv, outbox_events, stamp


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- access ------------------------------------------------------------------------------

async def test_admin_routes_need_an_organiser(client: httpx.AsyncClient, person: Any) -> None:
    someone = person()
    contest_id, round_id = uuid.uuid4(), uuid.uuid4()
    routes: list[tuple[str, dict[str, Any]]] = [
        ("/api/admin/contests", {"json": {"slug": "abc", "title": "x"}}),
        (f"/api/admin/contests/{contest_id}/rounds", {"json": {}}),
        (f"/api/admin/contests/{contest_id}/questions/import", {"files": {"file": ("a.csv", b"x", "text/csv")}}),
        (f"/api/admin/rounds/{round_id}/close", {}),
    ]
    for path, kwargs in routes:
        anonymous = await client.post(path, **kwargs)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        forbidden = await client.post(path, headers=someone.headers, **kwargs)
        assert forbidden.status_code == 403, path


async def test_participant_routes_need_a_participant(client: httpx.AsyncClient, organiser: dict[str, str]) -> None:
    attempt_id = uuid.uuid4()
    assert (await client.post(f"/api/rounds/{uuid.uuid4()}/attempts")).status_code == 401
    assert (await client.get(f"/api/attempts/{attempt_id}", headers=organiser)).status_code == 403
    assert (await client.post(f"/api/attempts/{attempt_id}/submit", json={}, headers=organiser)).status_code == 403


# --- organisers ----------------------------------------------------------------------------

async def test_contest_round_and_bank_are_created_and_listed(client: httpx.AsyncClient, admin: Admin) -> None:
    r = await client.post("/api/admin/contests", headers=admin.headers, json={
        "slug": "cchc-2025", "title": "Tìm hiểu cải cách hành chính", "rules": "Thể lệ.",
        "tie_break": ["correct", "duration", "prediction_error"], "prize_scope": "contest"})
    assert r.status_code == 201
    contest_id = r.json()["id"]
    assert r.json()["slug"] == "cchc-2025"

    imported = await admin.questions(contest_id, bank_csv(8))
    assert imported.status_code == 200 and imported.json() == {"imported": 8}
    round_id = await admin.round(contest_id, number=1)
    now = datetime.now(UTC)
    later = await admin.round(contest_id, number=2, opens_at=(now + timedelta(days=7)).isoformat(),
                              closes_at=(now + timedelta(days=14)).isoformat())

    detail = (await client.get("/api/contests/cchc-2025")).json()
    assert detail["id"] == contest_id and detail["title"] == "Tìm hiểu cải cách hành chính"
    assert detail["rules"] == "Thể lệ."
    assert [(x["id"], x["number"], x["title"], x["status"]) for x in detail["rounds"]] == [
        (round_id, 1, "Tuần 1", "open"), (later, 2, "Tuần 2", "scheduled")]
    assert at(detail["rounds"][0]["opens_at"]).utcoffset() is not None

    listed = (await client.get("/api/contests")).json()
    assert [(c["slug"], len(c["rounds"])) for c in listed] == [("cchc-2025", 2)]
    assert (await client.get("/api/contests/khong-co")).status_code == 404


async def test_contest_input_is_validated(client: httpx.AsyncClient, admin: Admin) -> None:
    await admin.contest("trung")
    duplicate = await client.post("/api/admin/contests", json={"slug": "trung", "title": "x"}, headers=admin.headers)
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "slug_taken"
    for body, field in [
        ({"slug": "Có-Dấu", "title": "x"}, "slug"),
        ({"slug": "a", "title": "x"}, "slug"),
        ({"slug": "ok-slug", "title": "x", "tie_break": ["correct", "correct"]}, "tie_break"),
        ({"slug": "ok-slug", "title": "x", "tie_break": ["luck"]}, "tie_break"),
        ({"slug": "ok-slug", "title": "x", "prize_scope": "unit"}, "prize_scope"),
        ({"slug": "ok-slug"}, "title"),
    ]:
        r = await client.post("/api/admin/contests", json=body, headers=admin.headers)
        assert r.status_code == 422, body
        assert field in {e["field"] for e in r.json()["errors"]}, r.json()


async def test_round_input_is_validated(client: httpx.AsyncClient, admin: Admin) -> None:
    contest_id = await admin.contest()
    await admin.round(contest_id, number=1)
    path = f"/api/admin/contests/{contest_id}/rounds"
    base: dict[str, Any] = {"number": 2, "title": "Tuần 2", "opens_at": "2025-03-03T10:00:00+07:00",
            "closes_at": "2025-03-10T09:00:00+07:00", "question_count": 20, "time_limit_s": 900}
    assert (await client.post(path, json=base, headers=admin.headers)).status_code == 201
    duplicate = await client.post(path, json=base, headers=admin.headers)
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "round_number_taken"
    unknown = await client.post(f"/api/admin/contests/{uuid.uuid4()}/rounds", json={**base, "number": 9},
                                headers=admin.headers)
    assert unknown.status_code == 404
    changes: list[tuple[dict[str, Any], str]] = [
        ({"opens_at": "2025-03-03T10:00:00"}, "opens_at"),
        ({"closes_at": "2025-03-03T09:00:00+07:00"}, "closes_at"),
        ({"question_count": 101}, "question_count"),
        ({"time_limit_s": 59}, "time_limit_s"),
        ({"time_limit_s": 3601}, "time_limit_s"),
        ({"grace_s": 301}, "grace_s"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"prediction": {"text": "?", "target": "winners"}}, "prediction.target"),
        ({"prizes": [{"name": "Nhất", "count": 0}]}, "prizes.0.count"),
    ]
    for change, field in changes:
        r = await client.post(path, json={**base, "number": 3, **change}, headers=admin.headers)
        assert r.status_code == 422, change
        assert field in {e["field"] for e in r.json()["errors"]}, r.json()
    naive = await client.post(path, json={**base, "number": 3, "opens_at": "2025-03-03T10:00:00"},
                              headers=admin.headers)
    assert "múi giờ" in naive.json()["errors"][0]["message"]


async def test_bad_import_lists_every_row_and_stores_nothing(
    client: httpx.AsyncClient, admin: Admin, pool: asyncpg.Pool
) -> None:
    contest_id = await admin.contest()
    content = (CSV_HEADER
               + "do_thi,1,Câu hợp lệ?,a,b,c,d,B,\n"
               + "do_thi,1,Thiếu phương án?,a,,,,A,\n"
               + "do_thi,5,Độ khó sai?,a,b,c,d,B,\n"
               + "do_thi,1,Câu hợp lệ?,a,b,c,d,C,\n"
               + "do_thi,1,Đáp án ô trống?,a,b,,d,C,\n").encode()
    r = await admin.questions(contest_id, content)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_questions"
    assert sorted((e["row"], e["field"]) for e in body["errors"]) == [
        (3, "option_b"), (4, "difficulty"), (5, "question"), (6, "correct")]
    assert await pool.fetchval("SELECT count(*) FROM questions") == 0

    # A good file goes in; importing it again is refused as duplicates, one error per row.
    assert (await admin.questions(contest_id, bank_csv(3))).json() == {"imported": 3}
    again = await admin.questions(contest_id, bank_csv(3))
    assert again.status_code == 422 and [e["row"] for e in again.json()["errors"]] == [2, 3, 4]
    assert await pool.fetchval("SELECT count(*) FROM questions") == 3


async def test_import_xlsx_and_refuse_other_files(client: httpx.AsyncClient, admin: Admin) -> None:
    contest_id = await admin.contest()
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(CSV_HEADER.strip().split(","))
    sheet.append(["do_thi", 2, "Câu hỏi trong Excel?", "Một", "Hai", "Ba", "Bốn", "B, D", "Vì vậy."])
    buffer = io.BytesIO()
    workbook.save(buffer)
    r = await admin.questions(contest_id, buffer.getvalue(), "bank.xlsx")
    assert r.status_code == 200 and r.json() == {"imported": 1}

    png = await admin.questions(contest_id, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "anh.png")
    assert png.status_code == 415 and png.json()["code"] == "unsupported_file"
    too_big = await admin.questions(contest_id, b"a" * (10 * 1024 * 1024 + 1))
    assert too_big.status_code == 413
    no_file = await client.post(f"/api/admin/contests/{contest_id}/questions/import", headers=admin.headers,
                                data={"other": "x"})
    assert no_file.status_code == 422 and no_file.json()["errors"][0]["field"] == "file"
    unknown = await admin.questions(str(uuid.uuid4()), bank_csv(1))
    assert unknown.status_code == 404


# --- attempts ------------------------------------------------------------------------------

async def test_start_autosave_resume_submit(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool, redis: Redis
) -> None:
    round_id = await admin.open_round(questions=12, question_count=5)
    an = person()
    started = await client.post(f"/api/rounds/{round_id}/attempts", headers=an.headers)
    assert started.status_code == 201, started.text
    attempt = started.json()
    assert set(attempt) == {"attempt_id", "deadline_at", "attempt_number", "questions", "prediction", "answers",
                            "round_id", "round_number", "contest_slug"}
    assert (attempt["round_id"], attempt["round_number"], attempt["contest_slug"]) == (round_id, 1, "thi-thu")
    assert attempt["attempt_number"] == 1 and attempt["answers"] == {}
    assert attempt["prediction"] == {"text": "Bao nhiêu người tham gia?"}
    assert len(attempt["questions"]) == 5 and len({q["id"] for q in attempt["questions"]}) == 5
    for question in attempt["questions"]:
        assert sorted(o["id"] for o in question["options"]) == ["A", "B", "C", "D"]
        assert question["multiple"] == (" 0 " in question["text"] or " 5 " in question["text"]
                                        or " 10 " in question["text"])
    assert "correct" not in str(attempt) and "explanation" not in str(attempt)

    # round.opened was emitted (by this first start) once, with the key of every question of the bank.
    opened = await outbox_events(pool, "round.opened")
    assert len(opened) == 1
    key = opened[0]["data"]["answer_key"]
    assert len(key) == 12 and all(q["id"] in key for q in attempt["questions"])
    assert opened[0]["data"]["round_id"] == round_id

    first, second = attempt["questions"][0]["id"], attempt["questions"][1]["id"]
    path = f"/api/attempts/{attempt['attempt_id']}"
    saved = await client.put(f"{path}/answers", json={"answers": {first: ["B"], second: ["A", "C"]}},
                             headers=an.headers)
    assert saved.status_code == 200 and "saved_at" in saved.json()
    assert await redis.ttl(f"quiz:autosave:{attempt['attempt_id']}") > 600

    resumed = await client.post(f"/api/rounds/{round_id}/attempts", headers=an.headers)
    assert resumed.status_code == 200
    assert resumed.json() == {**attempt, "answers": {first: ["B"], second: ["A", "C"]}}
    state = (await client.get(path, headers=an.headers)).json()
    assert state["status"] == "running" and state["submitted_at"] is None
    assert state["questions"] == attempt["questions"]
    # Another worker, whose memory never held this attempt, draws the same page again.
    app = client._transport.app  # type: ignore[attr-defined]
    app.state.shown_questions = ShownQuestions()
    assert (await client.get(path, headers=an.headers)).json()["questions"] == attempt["questions"]

    arrival = datetime.now(UTC).replace(microsecond=250000)
    answers = {first: ["B"], second: ["C", "A"]}
    submitted = await client.post(f"{path}/submit", json={"answers": answers, "prediction": 1234},
                                  headers={**an.headers, **stamp(arrival)})
    assert submitted.status_code == 202
    assert submitted.json() == {"attempt_id": attempt["attempt_id"], "status": "received"}
    assert await redis.exists(f"quiz:autosave:{attempt['attempt_id']}") == 0

    [event] = await outbox_events(pool, "attempt.submitted")
    data = event["data"]
    assert data["attempt_id"] == attempt["attempt_id"] and data["round_id"] == round_id
    assert data["participant_id"] == str(an.id) and data["name"] == an.name
    assert data["unit_id"] == str(an.unit_id) and data["group"] == "cbcc" and data["attempt_number"] == 1
    assert data["answers"] == {first: ["B"], second: ["A", "C"]}
    assert data["prediction"] == 1234
    assert at(data["submitted_at"]) == arrival
    assert data["question_ids"] == [q["id"] for q in attempt["questions"]]

    again = await client.post(f"{path}/submit", json={"answers": {}, "prediction": 1}, headers=an.headers)
    assert again.status_code == 409 and again.json()["code"] == "already_submitted"
    late_save = await client.put(f"{path}/answers", json={"answers": {}}, headers=an.headers)
    assert late_save.status_code == 409
    state = (await client.get(path, headers=an.headers)).json()
    assert state["status"] == "submitted" and at(state["submitted_at"]) == arrival
    assert state["answers"] == {first: ["B"], second: ["A", "C"]}
    assert len(await outbox_events(pool, "attempt.submitted")) == 1

    # The next start is a new attempt (3 allowed), with its own draw.
    next_one = await client.post(f"/api/rounds/{round_id}/attempts", headers=an.headers)
    assert next_one.status_code == 201 and next_one.json()["attempt_number"] == 2


async def test_submit_is_judged_on_the_gateway_stamp(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    round_id = await admin.open_round(time_limit_s=600, grace_s=30, max_attempts=None, prediction=None)
    # Started so that deadline + grace is 10 s from now (stamps from the future are fine here).
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=620)
    cutoff = start + timedelta(seconds=630)
    on_time, late, stuck = person("Đúng giờ"), person("Muộn"), person("Kẹt")
    ids = []
    for who in (on_time, late, stuck):
        r = await client.post(f"/api/rounds/{round_id}/attempts", headers={**who.headers, **stamp(start)})
        assert r.status_code == 201
        assert at(r.json()["deadline_at"]) == start + timedelta(seconds=600)
        ids.append(r.json()["attempt_id"])

    refused = await client.post(f"/api/attempts/{ids[1]}/submit", json={"answers": {}},
                                headers={**late.headers, **stamp(cutoff + timedelta(milliseconds=1))})
    assert refused.status_code == 409
    assert refused.json()["code"] == "deadline_passed"
    assert at(refused.json()["deadline_at"]) == start + timedelta(seconds=600)

    accepted = await client.post(f"/api/attempts/{ids[0]}/submit", json={"answers": {}},
                                 headers={**on_time.headers, **stamp(cutoff)})
    assert accepted.status_code == 202, accepted.text
    assert [at(e["data"]["submitted_at"]) for e in await outbox_events(pool, "attempt.submitted")] == [cutoff]

    # Stamped in time, but reaching the database later than deadline + grace + the
    # in-flight margin (0 here): too late to be counted once the round may be final.
    await pool.execute("UPDATE attempts SET deadline_at = deadline_at - interval '1 hour' WHERE id = $1", ids[2])
    stuck_submit = await client.post(f"/api/attempts/{ids[2]}/submit", json={"answers": {}},
                                     headers={**stuck.headers, **stamp(start - timedelta(seconds=3000))})
    assert stuck_submit.status_code == 409 and stuck_submit.json()["code"] == "deadline_passed"
    # The expired attempt is no longer resumed: a new one starts.
    assert (await client.post(f"/api/rounds/{round_id}/attempts", headers=late.headers)).status_code == 200
    fresh = await client.post(f"/api/rounds/{round_id}/attempts", headers=stuck.headers)
    assert fresh.status_code == 201 and fresh.json()["attempt_number"] == 2


async def test_submit_checks_prediction_and_answers(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    round_id = await admin.open_round()
    an = person()
    attempt = (await client.post(f"/api/rounds/{round_id}/attempts", headers=an.headers)).json()
    path = f"/api/attempts/{attempt['attempt_id']}"
    question = attempt["questions"][0]["id"]

    missing = await client.post(f"{path}/submit", json={"answers": {}}, headers=an.headers)
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "prediction"
    negative = await client.post(f"{path}/submit", json={"answers": {}, "prediction": -1}, headers=an.headers)
    assert negative.status_code == 422
    stranger = str(uuid.uuid4())
    for answers, field in [({stranger: ["A"]}, f"answers.{stranger}"), ({question: ["E"]}, f"answers.{question}")]:
        for r in (await client.post(f"{path}/submit", json={"answers": answers, "prediction": 3}, headers=an.headers),
                  await client.put(f"{path}/answers", json={"answers": answers}, headers=an.headers)):
            assert r.status_code == 422
            assert [e["field"] for e in r.json()["errors"]] == [field]
    bad_letter = await client.put(f"{path}/answers", json={"answers": {question: ["Z"]}}, headers=an.headers)
    assert bad_letter.status_code == 422
    assert await pool.fetchval("SELECT count(*) FROM attempts WHERE submitted_at IS NOT NULL") == 0
    assert await outbox_events(pool, "attempt.submitted") == []

    ok = await client.post(f"{path}/submit", json={"answers": {question: ["A"]}, "prediction": 0}, headers=an.headers)
    assert ok.status_code == 202


async def test_another_participants_attempt_is_not_found(
    client: httpx.AsyncClient, admin: Admin, person: Any
) -> None:
    round_id = await admin.open_round()
    owner, other = person("Chủ"), person("Người khác")
    attempt_id = (await client.post(f"/api/rounds/{round_id}/attempts", headers=owner.headers)).json()["attempt_id"]
    for path_id in (attempt_id, str(uuid.uuid4())):
        path = f"/api/attempts/{path_id}"
        assert (await client.get(path, headers=other.headers)).status_code == 404
        assert (await client.put(f"{path}/answers", json={"answers": {}}, headers=other.headers)).status_code == 404
        r = await client.post(f"{path}/submit", json={"answers": {}, "prediction": 1}, headers=other.headers)
        assert r.status_code == 404
    assert (await client.get(f"/api/attempts/{attempt_id}", headers=owner.headers)).status_code == 200


async def test_simultaneous_double_submit_is_accepted_once(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    round_id = await admin.open_round()
    an = person()
    attempt_id = (await client.post(f"/api/rounds/{round_id}/attempts", headers=an.headers)).json()["attempt_id"]
    results = await asyncio.gather(*[
        client.post(f"/api/attempts/{attempt_id}/submit", json={"answers": {}, "prediction": i}, headers=an.headers)
        for i in range(5)
    ])
    assert sorted(r.status_code for r in results) == [202, 409, 409, 409, 409]
    assert len(await outbox_events(pool, "attempt.submitted")) == 1


async def test_start_refused_outside_an_open_round(client: httpx.AsyncClient, admin: Admin, person: Any) -> None:
    contest_id = await admin.contest()
    await admin.questions(contest_id, bank_csv(5))
    now = datetime.now(UTC)
    scheduled = await admin.round(contest_id, number=1, opens_at=(now + timedelta(days=1)).isoformat(),
                                  closes_at=(now + timedelta(days=2)).isoformat())
    ended = await admin.round(contest_id, number=2, opens_at=(now - timedelta(days=2)).isoformat(),
                              closes_at=(now - timedelta(days=1)).isoformat())
    an = person()
    for round_id, status in ((scheduled, "scheduled"), (ended, "closed")):
        r = await client.post(f"/api/rounds/{round_id}/attempts", headers=an.headers)
        assert r.status_code == 409 and r.json()["code"] == "round_not_open"
        assert r.json()["round_status"] == status and r.json()["status"] == 409
    assert (await client.post(f"/api/rounds/{uuid.uuid4()}/attempts", headers=an.headers)).status_code == 404


async def test_a_stamp_sent_around_the_gateway_is_not_believed(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool, settings: QuizSettings
) -> None:
    """Issue 11's forgeries, straight to the quiz port: a stamp from tomorrow opened a
    scheduled round, and one from before the start shortened a duration (a tie-break)."""
    contest_id = await admin.contest()
    await admin.questions(contest_id, bank_csv(8))
    now = datetime.now(UTC)
    tomorrow = await admin.round(contest_id, number=1, opens_at=(now + timedelta(days=1)).isoformat(),
                                 closes_at=(now + timedelta(days=2)).isoformat())
    today = await admin.round(contest_id, number=2, time_limit_s=60, grace_s=0, max_attempts=None, prediction=None)
    an = person()
    async with running_app(create_app(settings), via_gateway=False) as direct:
        early = await direct.post(f"/api/rounds/{tomorrow}/attempts",
                                  headers={**an.headers, **stamp(now + timedelta(days=1, hours=1))})
        assert early.status_code == 409 and early.json()["code"] == "round_not_open"

        started = await direct.post(f"/api/rounds/{today}/attempts", headers=an.headers)
        assert started.status_code == 201
        attempt_id = started.json()["attempt_id"]
        started_at = await pool.fetchval("SELECT started_at FROM attempts WHERE id = $1", uuid.UUID(attempt_id))
        forged = await direct.post(f"/api/attempts/{attempt_id}/submit", json={"answers": {}},
                                   headers={**an.headers, **stamp(started_at + timedelta(milliseconds=1))})
        assert forged.status_code == 202
    submitted_at = at((await outbox_events(pool, "attempt.submitted"))[0]["data"]["submitted_at"])
    assert submitted_at >= now and submitted_at != started_at + timedelta(milliseconds=1)


async def test_max_attempts_holds_under_simultaneous_starts(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    round_id = await admin.open_round(max_attempts=1)
    an = person()
    results = await asyncio.gather(*[client.post(f"/api/rounds/{round_id}/attempts", headers=an.headers)
                                     for _ in range(5)])
    assert sorted(r.status_code for r in results) == [200, 200, 200, 200, 201]
    assert len({r.json()["attempt_id"] for r in results}) == 1
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 1
    assert len(await outbox_events(pool, "round.opened")) == 1

    attempt_id = results[0].json()["attempt_id"]
    submitted = await client.post(f"/api/attempts/{attempt_id}/submit", json={"answers": {}, "prediction": 5},
                                  headers=an.headers)
    assert submitted.status_code == 202
    after = await asyncio.gather(*[client.post(f"/api/rounds/{round_id}/attempts", headers=an.headers)
                                   for _ in range(5)])
    assert {r.status_code for r in after} == {409}
    assert after[0].json()["code"] == "attempts_exhausted" and after[0].json()["max_attempts"] == 1
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 1


async def test_close_then_the_clock_finalises_once(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool, settings: QuizSettings
) -> None:
    from services.quiz.worker import RoundClock

    round_id = await admin.open_round(max_attempts=None)
    people = [person(f"Người {i}") for i in range(3)]
    attempts = [(await client.post(f"/api/rounds/{round_id}/attempts", headers=p.headers)).json()["attempt_id"]
                for p in people]
    for p, attempt_id in zip(people[:2], attempts[:2], strict=True):
        r = await client.post(f"/api/attempts/{attempt_id}/submit", json={"answers": {}, "prediction": 9},
                              headers=p.headers)
        assert r.status_code == 202

    closed = await client.post(f"/api/admin/rounds/{round_id}/close", headers=admin.headers)
    assert closed.status_code == 202 and closed.json() == {"id": round_id, "status": "closed"}
    assert (await client.post(f"/api/admin/rounds/{round_id}/close", headers=admin.headers)).status_code == 202
    assert (await client.post(f"/api/admin/rounds/{uuid.uuid4()}/close", headers=admin.headers)).status_code == 404
    refused = await client.post(f"/api/rounds/{round_id}/attempts", headers=person().headers)
    assert refused.status_code == 409 and refused.json()["round_status"] == "closed"

    clock = RoundClock(pool, in_flight_margin_s=settings.in_flight_margin_s)
    await clock.tick()
    assert await outbox_events(pool, "round.closed") == [], "the third attempt is still running"

    # The running attempt can still be submitted after the close; then the round ends.
    r = await client.post(f"/api/attempts/{attempts[2]}/submit", json={"answers": {}, "prediction": 9},
                          headers=people[2].headers)
    assert r.status_code == 202
    await clock.tick()
    await clock.tick()
    [event] = await outbox_events(pool, "round.closed")
    assert event["data"]["round_id"] == round_id and event["data"]["submitted_count"] == 3
    detail = (await client.get("/api/contests/thi-thu")).json()
    assert detail["rounds"][0]["status"] == "final"
    closed_again = await client.post(f"/api/admin/rounds/{round_id}/close", headers=admin.headers)
    assert closed_again.json()["status"] == "final"
    assert len(await outbox_events(pool, "round.opened")) == 1
