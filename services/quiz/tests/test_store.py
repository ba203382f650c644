"""The store against the real PostgreSQL: the guards that make each event happen once
and keep round.closed's count exact under concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.quiz import store
from services.quiz.domain import Prediction, Prize
from services.quiz.tests.conftest import add_attempt, make_round, outbox_events

NOW = datetime.now(UTC)


async def test_open_round_snapshots_the_bank_and_emits_once(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool, questions=7, question_count=5, max_attempts=3,
                                prizes=[Prize("Giải Nhất", 1)],
                                prediction=Prediction("Bao nhiêu người?", "participants"))
    results = await asyncio.gather(*[store.open_round(pool, round_id, datetime.now(UTC)) for _ in range(6)])
    assert sorted(results) == [False] * 5 + [True]
    round_ = await store.round_by_id(pool, round_id)
    assert round_ is not None and round_.opened_at is not None
    bank = await pool.fetch("SELECT id, correct FROM questions ORDER BY id")
    assert list(round_.question_ids or ()) == [r["id"] for r in bank]

    [event] = await outbox_events(pool, "round.opened")
    data = event["data"]
    assert data["answer_key"] == {str(r["id"]): sorted(r["correct"]) for r in bank}
    assert data["round_id"] == str(round_id) and data["round_number"] == 1 and data["question_count"] == 5
    assert data["tie_break"] == ["correct", "prediction_error", "duration", "submitted_at"]
    assert data["prize_scope"] == "round" and data["prizes"] == [{"name": "Giải Nhất", "count": 1}]
    assert data["prediction"] == {"text": "Bao nhiêu người?", "target": "participants"}
    assert data["max_attempts"] == 3 and data["grace_s"] == 30 and data["contest_title"] == "Hội thi"


async def test_a_round_is_not_opened_before_its_time(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool, opens_at=NOW + timedelta(days=1), closes_at=NOW + timedelta(days=2))
    assert not await store.open_round(pool, round_id, datetime.now(UTC))
    assert await store.rounds_due_to_open(pool, datetime.now(UTC)) == []
    assert await outbox_events(pool, "round.opened") == []


async def test_the_attempt_number_guards_simultaneous_starts(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool)
    await store.open_round(pool, round_id, datetime.now(UTC))
    first = await add_attempt(pool, round_id)
    twin = dataclasses.replace(first, id=uuid.uuid4(), seed=99)
    assert not await store.insert_attempt(pool, twin)
    assert [a.id for a in await store.attempts_of(pool, round_id, first.participant_id)] == [first.id]


async def test_only_one_of_simultaneous_submits_claims_the_attempt(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool)
    await store.open_round(pool, round_id, datetime.now(UTC))
    attempt = await add_attempt(pool, round_id)
    questions = store.RoundQuestions()
    results = await asyncio.gather(*[
        store.submit_with_outbox(pool, questions, attempt_id=attempt.id, participant_id=attempt.participant_id,
                                 arrived_at=datetime.now(UTC), answers={}, prediction=i, in_flight_margin_s=0)
        for i in range(8)
    ])
    assert len([r for r in results if r is not None]) == 1
    assert len(await outbox_events(pool, "attempt.submitted")) == 1
    # Someone else's attempt is never claimed.
    other = await add_attempt(pool, round_id)
    assert await store.submit_with_outbox(
        pool, questions, attempt_id=other.id, participant_id=uuid.uuid4(), arrived_at=datetime.now(UTC),
        answers={}, prediction=None, in_flight_margin_s=0) is None


async def test_finalising_waits_for_a_submit_in_flight_and_counts_it(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool)
    await store.open_round(pool, round_id, datetime.now(UTC))
    attempt = await add_attempt(pool, round_id, started_at=datetime.now(UTC) - timedelta(hours=1))
    await store.close_round(pool, round_id)
    async with pool.acquire() as submitter:
        transaction = submitter.transaction()
        await transaction.start()
        # The claim is made but not committed yet (as if the submit's commit were slow).
        await submitter.execute("UPDATE attempts SET submitted_at = started_at WHERE id = $1", attempt.id)
        finalising = asyncio.create_task(store.finalise_round(pool, round_id, 0))
        await asyncio.sleep(0.5)
        assert not finalising.done(), "the clock must wait for the submit's transaction"
        await transaction.commit()
        assert await asyncio.wait_for(finalising, 5) == 1
    [event] = await outbox_events(pool, "round.closed")
    assert event["data"]["submitted_count"] == 1


async def test_a_submit_blocked_behind_the_finaliser_is_refused_not_lost(pool: asyncpg.Pool) -> None:
    """The submit passed its clock check just before the finaliser took the row; when it
    gets the row the check runs again, and by then it is past deadline + grace + margin."""
    round_id = await make_round(pool, grace_s=0)
    await store.open_round(pool, round_id, datetime.now(UTC))
    db_now = await pool.fetchval("SELECT clock_timestamp()")
    # deadline + grace + margin (2 s) is a second and a half away.
    attempt = await add_attempt(pool, round_id, started_at=db_now - timedelta(seconds=600.5), time_limit_s=600)
    async with pool.acquire() as finaliser:
        transaction = finaliser.transaction()
        await transaction.start()
        assert await store.hold_unsubmitted_attempts(finaliser, round_id) == [attempt.deadline_at]
        submitting = asyncio.create_task(store.submit_with_outbox(
            pool, store.RoundQuestions(), attempt_id=attempt.id, participant_id=attempt.participant_id,
            arrived_at=attempt.deadline_at, answers={}, prediction=None, in_flight_margin_s=2))
        await asyncio.sleep(2.5)
        assert not submitting.done()
        await transaction.commit()
    assert await asyncio.wait_for(submitting, 5) is None
    assert await outbox_events(pool, "attempt.submitted") == []


async def test_close_round_is_idempotent(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool)
    first = await store.close_round(pool, round_id)
    await asyncio.sleep(0.01)
    second = await store.close_round(pool, round_id)
    assert first is not None and second is not None and first.closed_at == second.closed_at
    assert await store.close_round(pool, uuid.uuid4()) is None


async def test_round_questions_are_cached_once_the_round_opened(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool, questions=6)
    cache = store.RoundQuestions(max_rounds=1)
    assert await cache.of_round(pool, round_id) == {}
    await store.open_round(pool, round_id, datetime.now(UTC))
    questions = await cache.of_round(pool, round_id)
    assert len(questions) == 6
    await pool.execute("UPDATE questions SET text = text || ' (sửa)'")
    assert await cache.of_round(pool, round_id) is questions  # no second query


async def test_import_is_all_or_nothing(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool, questions=0)
    round_ = await store.round_by_id(pool, round_id)
    assert round_ is not None
    header = ["topic", "difficulty", "question", "option_a", "option_b", "option_c", "option_d", "correct",
              "explanation"]
    table = [header, ["t", "1", "Tốt?", "a", "b", "", "", "A", ""], ["t", "9", "Xấu?", "a", "b", "", "", "A", ""]]
    with pytest.raises(store.QuestionRowsInvalid) as raised:
        await store.import_questions(pool, round_.contest_id, table)
    assert [(e.row, e.field) for e in raised.value.errors] == [(3, "difficulty")]
    assert await store.question_count(pool, round_.contest_id) == 0
    with pytest.raises(store.ContestNotFound):
        await store.import_questions(pool, uuid.uuid4(), table[:2])
