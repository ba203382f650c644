"""The store against the real PostgreSQL: the guards that make each event happen once
and keep round.closed's count exact under concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.core.tables import read_table
from services.quiz import domain, store
from services.quiz.domain import ContestSettings, Group, Prediction, Prize, Quotas
from services.quiz.tests.conftest import add_attempt, bank_csv, make_round, outbox_events

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


# --- issue 3 -----------------------------------------------------------------------------

GROUPS = (Group("cbcc", "Cán bộ, công chức", ("chu_de_0", "chu_de_1")), Group("nhan_dan", "Nhân dân", ("chu_de_2",)))


async def grouped_round(pool: asyncpg.Pool, **fields: object) -> uuid.UUID:
    contest_id = await store.create_contest(
        pool, slug=f"c-{uuid.uuid4().hex[:8]}", title="Hội thi", rules="", tie_break=domain.DEFAULT_TIE_BREAK,
        prize_scope="contest", settings=ContestSettings(GROUPS, "nhan_dan", require_all_answered=True))
    assert contest_id is not None
    await store.import_questions(pool, contest_id, read_table(bank_csv(9)).records())
    values: dict[str, object] = {
        "number": 1, "title": "Tuần 1", "opens_at": NOW - timedelta(hours=1), "closes_at": NOW + timedelta(hours=1),
        "question_count": 3, "time_limit_s": 600, "grace_s": 30, "max_attempts": None, "prediction": None,
        "prizes": [Prize("Giải Nhất", 1)], "quotas": Quotas({"chu_de_0": 1}, {}),
        "group_prizes": {"cbcc": (Prize("Giải Nhất", 1),), "nhan_dan": (Prize("Giải Nhì", 2),)}, "freeze_minutes": 45,
    }
    values.update(fields)
    return await store.create_round(pool, contest_id, **values)  # type: ignore[arg-type]


async def test_opening_copies_the_contest_settings_and_announces_them(pool: asyncpg.Pool) -> None:
    round_id = await grouped_round(pool)
    assert await store.open_round(pool, round_id, datetime.now(UTC))
    round_ = await store.round_by_id(pool, round_id)
    assert round_ is not None and round_.settings == ContestSettings(GROUPS, "nhan_dan", True)
    assert round_.quotas == Quotas({"chu_de_0": 1}, {}) and round_.freeze_minutes == 45

    [event] = await outbox_events(pool, "round.opened")
    data = event["data"]
    assert data["groups"] == [{"code": "cbcc", "name": "Cán bộ, công chức"}, {"code": "nhan_dan", "name": "Nhân dân"}]
    assert data["group_prizes"] == {"cbcc": [{"name": "Giải Nhất", "count": 1}],
                                    "nhan_dan": [{"name": "Giải Nhì", "count": 2}]}
    assert data["require_all_answered"] is True and data["freeze_s"] == 45 * 60
    assert data["prize_scope"] == "contest" and data["prizes"] == [{"name": "Giải Nhất", "count": 1}]
    assert len(data["answer_key"]) == 9

    # The contest changes afterwards: the opened round keeps what it announced.
    changed = await store.update_contest(pool, round_.contest_id, {"groups": (), "default_group": None,
                                                                   "require_all_answered": False})
    assert changed is not None and changed.settings == ContestSettings()
    again = await store.round_by_id(pool, round_id)
    assert again is not None and again.settings == ContestSettings(GROUPS, "nhan_dan", True)


async def test_a_round_without_groups_announces_none(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool)
    await store.open_round(pool, round_id, datetime.now(UTC))
    [event] = await outbox_events(pool, "round.opened")
    assert (event["data"]["groups"], event["data"]["group_prizes"], event["data"]["require_all_answered"],
            event["data"]["freeze_s"]) == ([], None, False, 0)


async def test_a_bank_too_small_for_a_group_is_logged_when_the_round_opens(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    round_id = await grouped_round(pool, question_count=4)  # citizens have 3 questions of chu_de_2
    with caplog.at_level(logging.WARNING, logger="services.quiz.store"):
        assert await store.open_round(pool, round_id, datetime.now(UTC))
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.group == "nhan_dan" and warning.field == "question_count"  # type: ignore[attr-defined]
    assert len(await outbox_events(pool, "round.opened")) == 1


async def test_a_round_is_changed_only_while_its_status_allows(pool: asyncpg.Pool) -> None:
    round_id = await grouped_round(pool, opens_at=NOW + timedelta(days=1), closes_at=NOW + timedelta(days=2))
    changed, contest = await store.update_round(pool, round_id, {"question_count": 4, "quotas": Quotas()})
    assert changed.question_count == 4 and contest.settings.default_group == "nhan_dan"
    stored = await store.round_by_id(pool, round_id)
    assert stored is not None and stored.question_count == 4 and stored.quotas == Quotas()
    with pytest.raises(store.SettingsInvalid) as invalid:
        await store.update_round(pool, round_id, {"group_prizes": {"hoc_sinh": ()}, "closes_at": NOW})
    assert [e["field"] for e in invalid.value.errors] == ["closes_at", "group_prizes.hoc_sinh"]
    with pytest.raises(store.RoundNotFound):
        await store.update_round(pool, uuid.uuid4(), {})

    await store.update_round(pool, round_id, {"opens_at": NOW - timedelta(hours=1)})
    await store.open_round(pool, round_id, datetime.now(UTC))
    with pytest.raises(store.RoundLocked) as locked:
        await store.update_round(pool, round_id, {"question_count": 5})
    assert locked.value.status == "open"
    extended, _ = await store.update_round(pool, round_id, {"closes_at": NOW + timedelta(days=3)})
    assert extended.closes_at == NOW + timedelta(days=3) and extended.question_count == 4


async def test_a_change_waits_for_an_opening_in_progress_and_is_then_refused(pool: asyncpg.Pool) -> None:
    """The clock opening the round and an organiser's change cannot interleave: the
    change locks the row, so it sees the round either scheduled or opened, never half."""
    round_id = await grouped_round(pool)  # due to open
    async with pool.acquire() as clock:
        transaction = clock.transaction()
        await transaction.start()
        await clock.execute("UPDATE rounds SET opened_at = now() WHERE id = $1", round_id)
        changing = asyncio.create_task(store.update_round(pool, round_id, {"question_count": 5}))
        await asyncio.sleep(0.3)
        assert not changing.done()
        await transaction.commit()
    with pytest.raises(store.RoundLocked):
        await asyncio.wait_for(changing, 5)


async def test_the_bank_is_listed_by_page_and_topic(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool, questions=10)
    round_ = await store.round_by_id(pool, round_id)
    assert round_ is not None
    total, first = await store.questions_of(pool, round_.contest_id, topic=None, limit=4, offset=0)
    _, rest = await store.questions_of(pool, round_.contest_id, topic=None, limit=10, offset=4)
    assert total == 10 and len(first) == 4 and len(rest) == 6
    assert len({q.id for q in first + rest}) == 10
    assert [(q.topic, q.difficulty, q.text) for q in first + rest] == sorted((q.topic, q.difficulty, q.text)
                                                                            for q in first + rest)
    total, topic = await store.questions_of(pool, round_.contest_id, topic="CHU_DE_1", limit=50, offset=0)
    assert total == 3 and {q.topic for q in topic} == {"chu_de_1"}
    assert await store.questions_of(pool, round_.contest_id, topic=None, limit=5, offset=20) == (10, [])
    assert await store.questions_of(pool, uuid.uuid4(), topic=None, limit=5, offset=0) == (0, [])


async def test_the_draw_pool_follows_the_snapshot_order_and_is_cached(pool: asyncpg.Pool) -> None:
    round_id = await make_round(pool, questions=6)
    cache = store.RoundQuestions()
    await store.open_round(pool, round_id, datetime.now(UTC))
    round_ = await store.round_by_id(pool, round_id)
    assert round_ is not None
    refs = await cache.draw_pool(pool, round_)
    assert [r.id for r in refs] == list(round_.question_ids or ())
    assert refs == tuple(await store.bank_of(pool, round_.contest_id))
    await pool.execute("UPDATE questions SET topic = 'khác'")
    assert await cache.draw_pool(pool, round_) is refs


async def test_a_later_close_is_announced_with_the_settings_the_round_opened_with(pool: asyncpg.Pool) -> None:
    round_id = await grouped_round(pool)
    await store.open_round(pool, round_id, datetime.now(UTC))
    round_ = await store.round_by_id(pool, round_id)
    assert round_ is not None
    await store.update_contest(pool, round_.contest_id, {"tie_break": ("correct",), "prize_scope": "round",
                                                         "groups": (), "default_group": None})
    await store.update_round(pool, round_id, {"closes_at": round_.closes_at})  # unchanged: nothing to announce
    assert len(await outbox_events(pool, "round.opened")) == 1
    later = round_.closes_at + timedelta(days=1)
    await store.update_round(pool, round_id, {"closes_at": later})
    first, second = await outbox_events(pool, "round.opened")
    assert datetime.fromisoformat(second["data"]["closes_at"]) == later
    assert {k: v for k, v in second["data"].items() if k != "closes_at"} == {
        k: v for k, v in first["data"].items() if k != "closes_at"}
    assert second["data"]["tie_break"] == list(domain.DEFAULT_TIE_BREAK) and second["data"]["prize_scope"] == "contest"
    assert len(second["data"]["groups"]) == 2
