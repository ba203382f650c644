"""A participant's history across rounds (GET /api/me/attempts) and the review of an
attempt with the right answers (GET /api/attempts/{id}/review), against the real
PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from services.quiz import store
from services.quiz.settings import QuizSettings
from services.quiz.tests.conftest import Admin, add_attempt, bank_csv, make_round, stamp


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _start(client: httpx.AsyncClient, round_id: str, who: Any, when: datetime | None = None) -> dict[str, Any]:
    headers = {**who.headers, **(stamp(when) if when else {})}
    r = await client.post(f"/api/rounds/{round_id}/attempts", headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


async def _submit(client: httpx.AsyncClient, attempt_id: str, who: Any, answers: dict[str, list[str]],
                  when: datetime | None = None) -> None:
    headers = {**who.headers, **(stamp(when) if when else {})}
    r = await client.post(f"/api/attempts/{attempt_id}/submit", json={"answers": answers}, headers=headers)
    assert r.status_code == 202, r.text


# --- history ---------------------------------------------------------------------------

async def test_my_attempts_across_rounds_latest_first_with_their_status(
    client: httpx.AsyncClient, admin: Admin, person: Any
) -> None:
    first = await admin.contest("thi-thu")
    assert (await admin.questions(first, bank_csv(12))).status_code == 200
    week1 = await admin.round(first, number=1, prediction=None, max_attempts=None)
    week2 = await admin.round(first, number=2, prediction=None, title="Tuần 2 — luật đất đai")
    second = await admin.contest("thi-hai", title="Hội thi thứ hai")
    await admin.questions(second, bank_csv(6))
    other_round = await admin.round(second, number=1, prediction=None)
    empty_contest = await admin.contest("chua-thi")

    an, binh = person("An"), person("Bình")
    now = datetime.now(UTC).replace(microsecond=0)
    expired = await _start(client, week1, an, now - timedelta(minutes=50))  # 600 s + 30 s grace: long over
    submitted = await _start(client, week1, an, now - timedelta(minutes=8))
    await _submit(client, submitted["attempt_id"], an, {}, now - timedelta(minutes=7))
    running = await _start(client, week2, an, now - timedelta(minutes=5))
    elsewhere = await _start(client, other_round, an, now - timedelta(minutes=1))
    await _start(client, week1, binh)  # someone else's: never listed

    r = await client.get("/api/me/attempts", headers=an.headers)
    assert r.status_code == 200, r.text
    mine = r.json()
    assert [(a["attempt_id"], a["status"]) for a in mine] == [
        (elsewhere["attempt_id"], "running"), (running["attempt_id"], "running"),
        (submitted["attempt_id"], "submitted"), (expired["attempt_id"], "expired"),
    ]
    line = mine[2]
    assert set(line) == {"attempt_id", "round_id", "round_number", "round_title", "contest_slug", "contest_title",
                         "attempt_number", "started_at", "deadline_at", "submitted_at", "status"}
    assert (line["round_id"], line["round_number"], line["round_title"], line["contest_slug"]) == (
        week1, 1, "Tuần 1", "thi-thu")
    assert line["attempt_number"] == 2 and mine[3]["attempt_number"] == 1
    assert at(line["started_at"]) == now - timedelta(minutes=8)
    assert at(line["deadline_at"]) == now + timedelta(minutes=2)
    assert at(line["submitted_at"]) == now - timedelta(minutes=7)
    assert mine[0]["submitted_at"] is None and mine[0]["contest_title"] == "Hội thi thứ hai"
    assert mine[1]["round_title"] == "Tuần 2 — luật đất đai" and mine[1]["round_number"] == 2

    # One contest, by slug or by id.
    by_slug = (await client.get("/api/me/attempts", params={"contest": "thi-thu"}, headers=an.headers)).json()
    assert [a["attempt_id"] for a in by_slug] == [a["attempt_id"] for a in mine[1:]]
    by_id = (await client.get("/api/me/attempts", params={"contest": second}, headers=an.headers)).json()
    assert [a["attempt_id"] for a in by_id] == [elsewhere["attempt_id"]]
    none_yet = await client.get("/api/me/attempts", params={"contest": empty_contest}, headers=an.headers)
    assert none_yet.status_code == 200 and none_yet.json() == []
    for unknown in ("khong-co", str(uuid.uuid4())):
        r = await client.get("/api/me/attempts", params={"contest": unknown}, headers=an.headers)
        assert r.status_code == 404, unknown
    r = await client.get("/api/me/attempts", params={"contest": ""}, headers=an.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "contest"

    # The start and the attempt itself now say which round (and contest) they belong to.
    state = (await client.get(f"/api/attempts/{running['attempt_id']}", headers=an.headers)).json()
    assert (state["round_id"], state["round_number"], state["contest_slug"]) == (week2, 2, "thi-thu")
    assert (running["round_id"], running["round_number"], running["contest_slug"]) == (week2, 2, "thi-thu")
    assert elsewhere["contest_slug"] == "thi-hai"


async def test_my_attempts_need_a_participant(client: httpx.AsyncClient, organiser: dict[str, str]) -> None:
    assert (await client.get("/api/me/attempts")).status_code == 401
    assert (await client.get("/api/me/attempts", headers=organiser)).status_code == 403


async def test_history_is_capped_and_read_through_its_index(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool)
    await store.open_round(pool, round_id, datetime.now(UTC))
    me = uuid.uuid4()
    started = datetime.now(UTC) - timedelta(days=1)
    for number in range(1, 206):
        await add_attempt(pool, round_id, participant_id=me, number=number,
                          started_at=started + timedelta(seconds=number))
    # Many other people's attempts, so that reading everyone's would show.
    await pool.execute(
        "INSERT INTO attempts (round_id, participant_id, participant_name, attempt_number, seed, question_ids,"
        " started_at, deadline_at) SELECT $1, gen_random_uuid(), 'Khác', 1, 1, '{}', now(), now()"
        " FROM generate_series(1, 3000)",
        round_id,
    )
    await pool.execute("ANALYZE attempts")

    lines = await store.attempts_of_participant(pool, me)
    assert [line.attempt_number for line in lines] == list(range(205, 5, -1))

    async with pool.acquire() as conn, conn.transaction():
        # Off, a sequential scan would still be chosen if no index served the query.
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(
            f"EXPLAIN {store.ATTEMPTS_OF_PARTICIPANT}", me, None, None, 200))
    assert "attempts_by_participant" in plan, plan
    assert "Seq Scan on attempts" not in plan, plan


# --- review ----------------------------------------------------------------------------

async def _key(pool: asyncpg.Pool) -> dict[str, tuple[list[str], str]]:
    rows = await pool.fetch("SELECT id, correct, explanation FROM questions")
    return {str(r["id"]): (sorted(r["correct"]), r["explanation"]) for r in rows}


async def test_review_waits_for_the_round_to_end_then_shows_the_answers(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool, settings: QuizSettings
) -> None:
    from services.quiz.worker import RoundClock

    round_id = await admin.open_round(questions=12, question_count=5, prediction=None, max_attempts=None)
    an, binh, stranger = person("An"), person("Bình"), person("Người lạ")
    attempt = await _start(client, round_id, an)
    late = await _start(client, round_id, binh)
    key = await _key(pool)
    shown = attempt["questions"]
    right, wrong, partial = shown[0]["id"], shown[1]["id"], shown[2]["id"]
    wrong_choice = next(o["id"] for o in shown[1]["options"] if o["id"] not in key[wrong][0])
    # One right option of the key and one wrong (bank_csv's keys are B or A,C, never D).
    answers = {right: key[right][0], wrong: [wrong_choice], partial: [key[partial][0][0], "D"]}
    await _submit(client, attempt["attempt_id"], an, answers)
    path = f"/api/attempts/{attempt['attempt_id']}/review"

    # Open: no answers for anyone.
    r = await client.get(path, headers=an.headers)
    assert r.status_code == 409, r.text
    body = r.json()
    assert (body["code"], body["round_status"]) == ("review_not_available", "open")
    assert at(body["available_at"]) > datetime.now(UTC)
    assert body["detail"].startswith("Đáp án chỉ được công bố")

    # Closed, but Bình's attempt still runs: the key would reach him.
    assert (await client.post(f"/api/admin/rounds/{round_id}/close", headers=admin.headers)).status_code == 202
    r = await client.get(path, headers=an.headers)
    assert (r.status_code, r.json()["round_status"]) == (409, "closed")

    # Bình submits; the clock makes the round final; the review is there.
    await _submit(client, late["attempt_id"], binh, {})
    clock = RoundClock(pool, in_flight_margin_s=settings.in_flight_margin_s)
    await clock.tick()
    assert await pool.fetchval("SELECT finalised_at IS NOT NULL FROM rounds WHERE id = $1", uuid.UUID(round_id))
    r = await client.get(path, headers=an.headers)
    assert r.status_code == 200, r.text
    review = r.json()
    assert (review["attempt_id"], review["round_id"]) == (attempt["attempt_id"], round_id)
    assert review["submitted_at"] is not None
    # As the participant saw them: the same questions, in the same order, options too.
    assert [q["id"] for q in review["questions"]] == [q["id"] for q in shown]
    for seen, reviewed in zip(shown, review["questions"], strict=True):
        assert (reviewed["text"], reviewed["multiple"], reviewed["options"]) == (
            seen["text"], seen["multiple"], seen["options"])
        assert (reviewed["correct"], reviewed["explanation"]) == key[seen["id"]]
        assert reviewed["explanation"].startswith("Giải thích")
    by_id = {q["id"]: q for q in review["questions"]}
    assert (by_id[right]["chosen"], by_id[right]["is_correct"]) == (key[right][0], True)
    assert (by_id[wrong]["chosen"], by_id[wrong]["is_correct"]) == ([wrong_choice], False)
    assert by_id[partial]["chosen"] == sorted(answers[partial]) and by_id[partial]["is_correct"] is False
    unanswered = [q for q in review["questions"] if q["id"] not in answers]
    assert unanswered and all(q["chosen"] == [] and q["is_correct"] is False for q in unanswered)

    # Someone else's attempt, or none at all: not found. Organisers use the replay.
    for other_id in (attempt["attempt_id"], str(uuid.uuid4())):
        assert (await client.get(f"/api/attempts/{other_id}/review", headers=stranger.headers)).status_code == 404
    assert (await client.get(path, headers=admin.headers)).status_code == 403
    assert (await client.get(path)).status_code == 401


async def test_review_of_a_closed_round_once_its_last_attempt_is_over(
    client: httpx.AsyncClient, admin: Admin, person: Any, pool: asyncpg.Pool
) -> None:
    """Without the clock: closed long enough ago that no attempt (time limit + grace) can
    still be submitted. An attempt never submitted shows nothing chosen."""
    round_id = await admin.open_round(questions=8, question_count=4, prediction=None, time_limit_s=600, grace_s=30)
    an = person()
    attempt = await _start(client, round_id, an)  # never submitted
    await pool.execute("UPDATE rounds SET closed_at = now() - interval '629 seconds' WHERE id = $1",
                       uuid.UUID(round_id))
    path = f"/api/attempts/{attempt['attempt_id']}/review"
    r = await client.get(path, headers=an.headers)
    assert (r.status_code, r.json()["round_status"]) == (409, "closed")
    await pool.execute("UPDATE rounds SET closed_at = now() - interval '631 seconds' WHERE id = $1",
                       uuid.UUID(round_id))
    r = await client.get(path, headers=an.headers)
    assert r.status_code == 200, r.text
    review = r.json()
    assert review["submitted_at"] is None and len(review["questions"]) == 4
    assert all(q["chosen"] == [] and q["is_correct"] is False and q["correct"] for q in review["questions"])
