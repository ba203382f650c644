"""The pure rules, exhaustively: statuses over every ordering of times, the submit
boundary to the microsecond, the replayable draw, and question-bank validation."""

from __future__ import annotations

import io
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.tables import read_table
from services.quiz import domain
from services.quiz.domain import Attempt, Option, Question, Round

T0 = datetime(2025, 3, 3, 3, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def make_round(**fields: object) -> Round:
    values: dict[str, object] = {
        "id": uuid.uuid4(), "contest_id": uuid.uuid4(), "number": 1, "title": "Tuần 1",
        "opens_at": T0, "closes_at": T0 + timedelta(days=7), "question_count": 20, "time_limit_s": 900,
        "grace_s": 30, "max_attempts": 3,
    }
    values.update(fields)
    return Round(**values)  # type: ignore[arg-type]


def make_attempt(started_at: datetime = T0, time_limit_s: int = 900, **fields: object) -> Attempt:
    values: dict[str, object] = {
        "id": uuid.uuid4(), "round_id": uuid.uuid4(), "participant_id": uuid.uuid4(), "participant_name": "An",
        "unit_id": None, "group": None, "attempt_number": 1, "seed": 42, "question_ids": (),
        "started_at": started_at, "deadline_at": domain.deadline(started_at, time_limit_s),
    }
    values.update(fields)
    return Attempt(**values)  # type: ignore[arg-type]


# --- round status ------------------------------------------------------------------------

STATUS_ORDER = {"scheduled": 0, "open": 1, "closed": 2, "final": 3}
offsets = st.integers(min_value=-10_000, max_value=10_000).map(lambda s: T0 + timedelta(seconds=s))


@given(
    opens=offsets,
    length=st.integers(min_value=1, max_value=5_000),
    closed=st.none() | offsets,
    finalised=st.none() | offsets,
    moments=st.lists(offsets, min_size=2, max_size=6),
)
def test_round_status_follows_the_times_and_never_goes_back(
    opens: datetime, length: int, closed: datetime | None, finalised: datetime | None, moments: list[datetime]
) -> None:
    round_ = make_round(opens_at=opens, closes_at=opens + timedelta(seconds=length), closed_at=closed,
                        finalised_at=finalised)
    seen = [domain.round_status(round_, now) for now in sorted(moments)]
    assert [STATUS_ORDER[s] for s in seen] == sorted(STATUS_ORDER[s] for s in seen)
    for now, status in zip(sorted(moments), seen, strict=True):
        assert (status == "final") == (finalised is not None)
        if status == "open":
            assert opens <= now < round_.closes_at and (closed is None or closed > now)
            assert domain.accepts_start(round_, now)
        else:
            assert not domain.accepts_start(round_, now)
        if status == "scheduled":
            assert now < opens


def test_round_status_at_each_boundary() -> None:
    round_ = make_round()
    assert domain.round_status(round_, T0 - US) == "scheduled"
    assert domain.round_status(round_, T0) == "open"
    assert domain.round_status(round_, round_.closes_at - US) == "open"
    assert domain.round_status(round_, round_.closes_at) == "closed"
    closed_early = make_round(closed_at=T0 + timedelta(hours=1))
    assert domain.round_status(closed_early, T0 + timedelta(hours=1) - US) == "open"
    assert domain.round_status(closed_early, T0 + timedelta(hours=1)) == "closed"
    assert domain.effective_close(closed_early) == T0 + timedelta(hours=1)
    # Closing a round that has not opened cancels it rather than letting it open later.
    cancelled = make_round(closed_at=T0 - timedelta(days=1))
    assert domain.round_status(cancelled, T0 + timedelta(hours=1)) == "closed"
    assert domain.round_status(make_round(finalised_at=T0), T0 - timedelta(days=9)) == "final"


def test_attempts_left() -> None:
    assert domain.has_attempts_left(make_round(max_attempts=None), 10_000)
    assert domain.has_attempts_left(make_round(max_attempts=3), 2)
    assert not domain.has_attempts_left(make_round(max_attempts=3), 3)


# --- deadlines -----------------------------------------------------------------------------

@given(
    time_limit_s=st.integers(min_value=60, max_value=7200),
    grace_s=st.integers(min_value=0, max_value=600),
    started_us=st.integers(min_value=0, max_value=10**12),
)
def test_submit_is_accepted_up_to_deadline_plus_grace_inclusive(
    time_limit_s: int, grace_s: int, started_us: int
) -> None:
    started = T0 + timedelta(microseconds=started_us)
    attempt = make_attempt(started, time_limit_s)
    last = started + timedelta(seconds=time_limit_s + grace_s)
    assert domain.accepts_submit(started, attempt, grace_s)
    assert domain.accepts_submit(last, attempt, grace_s)
    assert not domain.accepts_submit(last + US, attempt, grace_s)
    assert domain.attempt_status(attempt, grace_s, last) == "running"
    assert domain.attempt_status(attempt, grace_s, last + US) == "expired"


def test_submitted_attempt_is_never_running_and_running_one_is_found() -> None:
    done = make_attempt(submitted_at=T0 + timedelta(minutes=5), attempt_number=2)
    live = make_attempt(attempt_number=1)
    assert domain.attempt_status(done, 30, T0) == "submitted"
    assert domain.running_attempt([done, live], 30, T0 + timedelta(minutes=1)) == live
    assert domain.running_attempt([done, live], 30, T0 + timedelta(minutes=16)) is None


def test_round_is_final_ready_only_when_closed_opened_and_nothing_can_still_arrive() -> None:
    closes = T0 + timedelta(days=7)
    opened = make_round(opened_at=T0)
    assert not domain.is_round_final_ready(opened, [], closes - US)
    assert domain.is_round_final_ready(opened, [], closes)
    assert not domain.is_round_final_ready(make_round(), [], closes), "never opened"
    assert not domain.is_round_final_ready(make_round(opened_at=T0, finalised_at=closes), [], closes)
    last_deadline = closes + timedelta(minutes=10)
    cutoff = last_deadline + timedelta(seconds=30)
    assert not domain.is_round_final_ready(opened, [T0, last_deadline], cutoff)
    assert domain.is_round_final_ready(opened, [T0, last_deadline], cutoff + US)
    # The in-flight margin applies to the close and to every cutoff.
    assert not domain.is_round_final_ready(opened, [last_deadline], cutoff + timedelta(seconds=60), 60)
    assert domain.is_round_final_ready(opened, [last_deadline], cutoff + timedelta(seconds=60) + US, 60)
    assert not domain.is_round_final_ready(opened, [], closes + timedelta(seconds=59), 60)
    early = make_round(opened_at=T0, closed_at=T0 + timedelta(hours=2))
    assert domain.is_round_final_ready(early, [], T0 + timedelta(hours=2))


# --- the draw ------------------------------------------------------------------------------

def refs(ids: list[uuid.UUID]) -> list[domain.QuestionRef]:
    return [domain.QuestionRef(i, f"chu_de_{n % 3}", n % 3 + 1) for n, i in enumerate(ids)]


pools = st.lists(st.uuids(), min_size=0, max_size=60, unique=True)


@given(pool=pools, count=st.integers(min_value=0, max_value=80), seed=st.integers(min_value=0, max_value=2**63 - 1))
def test_draw_is_replayable_and_takes_distinct_questions_of_the_pool(
    pool: list[uuid.UUID], count: int, seed: int
) -> None:
    if count > len(pool):
        with pytest.raises(domain.DrawImpossible) as raised:
            domain.draw_questions(refs(pool), count, None, seed)
        assert raised.value.field == "question_count"
        return
    drawn = domain.draw_questions(refs(pool), count, None, seed)
    assert drawn == domain.draw_questions(refs(list(pool)), count, domain.Quotas(), seed)
    assert len(drawn) == count
    assert len(set(drawn)) == len(drawn)
    assert set(drawn) <= set(pool)


def test_draw_without_quotas_is_the_sample_issue_2_attempts_were_drawn_with() -> None:
    """Attempts stored before quotas existed still replay."""
    import random

    pool = [uuid.UUID(int=i) for i in range(78)]
    for seed in (0, 7, 2**62 + 5):
        assert domain.draw_questions(refs(pool), 20, None, seed) == random.Random(seed).sample(pool, 20)


def test_draw_depends_on_the_seed() -> None:
    pool = refs([uuid.UUID(int=i) for i in range(78)])
    draws = {tuple(domain.draw_questions(pool, 20, None, seed)) for seed in range(50)}
    assert len(draws) == 50
    quota = domain.Quotas({"chu_de_0": 5}, {2: 5})
    assert len({tuple(domain.draw_questions(pool, 20, quota, seed)) for seed in range(50)}) == 50


def test_draw_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError):
        domain.draw_questions(refs([uuid.uuid4()]), -1, None, 1)


@given(
    letters=st.integers(min_value=2, max_value=6),
    seed=st.integers(min_value=0, max_value=2**63 - 1),
    question_id=st.uuids(),
)
def test_shuffled_options_are_a_replayable_permutation(letters: int, seed: int, question_id: uuid.UUID) -> None:
    question = Question(question_id, "t", 1, "Câu?", tuple(Option(c, f"Phương án {c}") for c in "ABCDEF"[:letters]),
                        ("A",))
    shown = domain.shuffled_options(question, seed)
    assert sorted(shown, key=lambda o: o.id) == list(question.options)
    assert shown == domain.shuffled_options(question, seed)


def test_option_order_varies_between_attempts() -> None:
    question = Question(uuid.uuid4(), "t", 1, "Câu?", tuple(Option(c, c) for c in "ABCD"), ("A",))
    orders = {tuple(o.id for o in domain.shuffled_options(question, seed)) for seed in range(200)}
    assert len(orders) == 24  # every permutation of four options turns up


# --- answers -------------------------------------------------------------------------------

def test_answer_errors_name_unknown_questions_and_options() -> None:
    q = Question(uuid.uuid4(), "t", 1, "Câu?", (Option("A", "a"), Option("B", "b"), Option("C", "c")), ("A",))
    other = uuid.uuid4()
    bank = {q.id: q}
    assert domain.answer_errors({q.id: ["A", "C"]}, {q.id}, bank) == []
    errors = domain.answer_errors({q.id: ["D"], other: ["A"]}, {q.id}, bank)
    assert {e["field"] for e in errors} == {f"answers.{q.id}", f"answers.{other}"}
    assert domain.normalised_answers({q.id: ["C", "A", "C"]}) == {str(q.id): ["A", "C"]}


# --- contest settings ----------------------------------------------------------------------

def test_tie_break_must_be_known_criteria_without_repeats() -> None:
    assert domain.validate_tie_break(["correct", "duration", "prediction_error"]) == (
        "correct", "duration", "prediction_error")
    for permutation in itertools.permutations(domain.TIE_BREAK_CRITERIA, 3):
        assert domain.validate_tie_break(list(permutation)) == permutation
    for bad in ([], ["correct", "correct"], ["correct", "speed"]):
        with pytest.raises(ValueError):
            domain.validate_tie_break(bad)
    assert domain.DEFAULT_TIE_BREAK == ("correct", "prediction_error", "duration", "submitted_at")


def test_prize_scope() -> None:
    assert domain.validate_prize_scope("contest") == "contest"
    with pytest.raises(ValueError):
        domain.validate_prize_scope("unit")


# --- question bank files -------------------------------------------------------------------

HEADER = ["topic", "difficulty", "question", "option_a", "option_b", "option_c", "option_d", "correct", "explanation"]


def row(question: str, correct: str = "B", difficulty: str = "1", options: tuple[str, ...] = ("a", "b", "c", "d"),
        topic: str = "do_thi") -> list[str]:
    return [topic, difficulty, question, *options, correct, "Vì thế."]


@pytest.mark.parametrize(("value", "letters"), [
    ("B", ("B",)), (" b ", ("B",)), ("A,C", ("A", "C")), ("c, a", ("A", "C")), ("A;C", ("A", "C")),
    ("A C", ("A", "C")), ("A,A", ("A",)), ("", None), ("AC", None), ("G", None), ("1", None),
])
def test_parse_correct_is_tolerant_of_case_and_spaces(value: str, letters: tuple[str, ...] | None) -> None:
    assert domain.parse_correct(value) == letters


def test_valid_rows_become_drafts() -> None:
    drafts, errors = domain.validate_question_rows(
        [HEADER, row("Câu một?"), ["", "", "", "", "", "", "", "", ""], row("Câu  hai?", correct="a, d", difficulty="3",
                                                                         options=("a", "b", "", "d"))],
        existing_texts=[],
    )
    assert errors == []
    assert [d.text for d in drafts] == ["Câu một?", "Câu hai?"]
    assert drafts[1].correct == ("A", "D") and [o.id for o in drafts[1].options] == ["A", "B", "D"]
    assert drafts[1].difficulty == 3


def test_every_bad_row_is_reported_at_once_with_its_row_number() -> None:
    table = [
        HEADER,
        row("Câu tốt?"),                                              # 2: fine
        row("Chỉ một phương án?", correct="A", options=("a", "", "", "")),  # 3: fewer than 2 options
        row("Đáp án trỏ vào ô trống?", correct="C", options=("a", "b", "", "d")),  # 4: correct names an empty option
        row("Đáp án ngoài bảng?", correct="E"),                       # 5: no option E
        row("câu   TỐT?"),                                            # 6: duplicate of row 2 (case/space)
        row("Độ khó sai?", difficulty="4"),                           # 7
        row("Độ khó chữ?", difficulty="khó"),                         # 8
        row("Đã có trong ngân hàng?"),                                # 9: already in the contest
        row("", correct="X", topic=""),                               # 10: several errors in one row
    ]
    drafts, errors = domain.validate_question_rows(table, existing_texts=["Đã có trong  ngân hàng?"])
    found = {(e.row, e.field) for e in errors}
    assert found == {
        (3, "option_b"),
        (4, "correct"),
        (5, "correct"),
        (6, "question"),
        (7, "difficulty"),
        (8, "difficulty"),
        (9, "question"),
        (10, "topic"), (10, "question"), (10, "correct"),
    }
    assert "dòng 2" in next(e.message for e in errors if e.row == 6)
    assert all(e.message for e in errors)
    assert [d.text for d in drafts] == ["Câu tốt?"]


def test_missing_columns_are_reported_on_the_header_row() -> None:
    _, errors = domain.validate_question_rows([["topic", "question", "option_a"], ["x", "y", "z"]], [])
    assert {(e.row, e.field) for e in errors} == {
        (1, "difficulty"), (1, "option_b"), (1, "option_c"), (1, "option_d"), (1, "correct"), (1, "explanation")}
    _, errors = domain.validate_question_rows([], [])
    assert [e.row for e in errors] == [1]
    _, errors = domain.validate_question_rows([HEADER], [])
    assert [(e.row, e.field) for e in errors] == [(2, "question")]


def test_optional_fifth_and_sixth_options() -> None:
    header = [*HEADER[:7], "option_e", "option_f", "correct", "explanation"]
    drafts, errors = domain.validate_question_rows(
        [header, ["t", "2", "Sáu phương án?", "a", "b", "c", "d", "e", "f", "F", ""]], [])
    assert errors == [] and drafts[0].correct == ("F",) and len(drafts[0].options) == 6


def test_duplicate_options_in_a_row_are_an_error() -> None:
    _, errors = domain.validate_question_rows([HEADER, row("Trùng?", options=("Có", "có", "c", "d"))], [])
    assert [(e.row, e.field) for e in errors] == [(2, "option_b")]


def test_an_xlsx_bank_validates_like_a_csv_one() -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(["do_thi", 2, "Câu hỏi Excel?", "a", "b", "c", "d", "B", None])
    buffer = io.BytesIO()
    workbook.save(buffer)
    drafts, errors = domain.validate_question_rows(read_table(buffer.getvalue()).records(), [])
    assert errors == [] and drafts[0].difficulty == 2 and drafts[0].explanation == ""


# --- issue 3: changing rounds, answered-all, Vietnam's time, settings checks ----------------

@pytest.mark.parametrize(("fields", "changed", "closes_at", "now", "allowed"), [
    ({}, {"title", "quotas"}, None, T0 - US, True),  # scheduled: anything
    ({}, {"closes_at"}, T0 + timedelta(days=1), T0 - US, True),
    ({"opened_at": T0 - timedelta(days=1)}, {"title"}, None, T0 - US, False),  # its snapshot is taken
    ({}, {"title"}, None, T0, False),  # open by the clock, even before the clock opened it
    ({}, {"closes_at"}, T0 + timedelta(days=8), T0, True),  # extend while open
    ({}, {"closes_at"}, T0 + timedelta(days=7), T0, True),  # unchanged
    ({}, {"closes_at"}, T0 + timedelta(days=6), T0, False),  # shorten while open: close it instead
    ({}, {"closes_at", "title"}, T0 + timedelta(days=8), T0, False),
    ({}, {"closes_at"}, T0 + timedelta(days=9), T0 + timedelta(days=7), False),  # closed
    ({"closed_at": T0 + timedelta(hours=1)}, {"closes_at"}, T0 + timedelta(days=9), T0 + timedelta(hours=2), False),
    ({"finalised_at": T0 + timedelta(days=8)}, {"closes_at"}, T0 + timedelta(days=9), T0, False),
])
def test_round_changes_allowed(
    fields: dict[str, object], changed: set[str], closes_at: datetime | None, now: datetime, allowed: bool
) -> None:
    refusal = domain.round_change_refusal(make_round(**fields), changed, closes_at, now)
    assert (refusal is None) == allowed
    if refusal is not None:
        assert "vòng thi" in refusal or "đóng" in refusal


def test_answered_all_needs_a_choice_for_every_question() -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    assert domain.answered_all(ids, {str(ids[0]): ["A"], str(ids[1]): ["B", "C"]})
    assert not domain.answered_all(ids, {str(ids[0]): ["A"], str(ids[1]): []})
    assert not domain.answered_all(ids, {str(ids[0]): ["A"]})
    assert not domain.answered_all(ids, None)
    assert domain.answered_all([], {})


def test_times_are_shown_in_vietnam() -> None:
    shown = domain.local_time(datetime(2025, 3, 3, 3, 0, tzinfo=UTC))
    assert shown.isoformat() == "2025-03-03T10:00:00+07:00"
    assert domain.local_time(datetime(2025, 7, 1, 20, 30, tzinfo=UTC)).isoformat() == "2025-07-02T03:30:00+07:00"


def test_quota_and_settings_errors_name_their_fields() -> None:
    none = domain.ContestSettings()
    assert domain.quota_errors(domain.Quotas({"Luật": 10, "Đô thị": 10}, {1: 5}), 20, none) == []
    errors = domain.quota_errors(domain.Quotas({"Luật": 15, "Đô thị": 10}, {1: 15, 3: 6}), 20, none)
    assert [e["field"] for e in errors] == ["quotas.topics", "quotas.difficulties"]
    twice = domain.Quotas({"Luật": 1, " luật ": 1})
    assert [e["field"] for e in domain.quota_errors(twice, 20, none)] == ["quotas.topics"]
    # Two groups with their own topics: each group's quotas must fit, not their sum.
    separate = domain.ContestSettings((domain.Group("cbcc", "Công chức", ("Luật",)),
                                       domain.Group("nhan_dan", "Nhân dân", ("Đô thị",))))
    assert domain.quota_errors(domain.Quotas({"Luật": 15, "Đô thị": 10}), 20, separate) == []
    [error] = domain.quota_errors(domain.Quotas({"Luật": 21, "Đô thị": 10}), 20, separate)
    assert error["field"] == "quotas.topics" and "Công chức" in error["message"]

    groups = domain.ContestSettings((domain.Group("cbcc", "Công chức"), domain.Group("cbcc", "Khác")), "nhan_dan")
    assert [e["field"] for e in domain.contest_settings_errors(groups)] == ["groups", "default_group"]
    assert domain.contest_settings_errors(domain.ContestSettings((domain.Group("a", "A"),), "a")) == []
    assert [e["field"] for e in domain.contest_settings_errors(domain.ContestSettings((), "a"))] == ["default_group"]

    settings = domain.ContestSettings((domain.Group("cbcc", "Công chức"),))
    round_ = make_round(question_count=5, quotas=domain.Quotas({}, {2: 6}),
                        group_prizes={"cbcc": (domain.Prize("Nhất", 1),), "hs": ()}, closes_at=T0)
    assert [e["field"] for e in domain.round_settings_errors(round_, settings)] == [
        "closes_at", "quotas.difficulties", "group_prizes.hs"]


def test_quotas_round_trip_through_json() -> None:
    quotas = domain.Quotas({"Luật": 3}, {1: 2, 3: 0})
    assert quotas.as_json() == {"topics": {"Luật": 3}, "difficulties": {"1": 2, "3": 0}}
    assert domain.Quotas.from_json(quotas.as_json()) == quotas
    assert domain.Quotas.from_json({}) == domain.Quotas() and not domain.Quotas()
    assert domain.Quotas({"Luật": 0})  # a zero quota still binds: it keeps the topic out


# --- reviews ---------------------------------------------------------------------------

letters = st.lists(st.sampled_from("ABCDEF"), max_size=6)


@given(chosen=st.none() | letters, key=letters)
def test_a_review_judges_an_answer_as_scoring_scores_it(chosen: list[str] | None, key: list[str]) -> None:
    # quiz may not import scoring's code; the two copies of the rule must agree all the same.
    from services.scoring import domain as scoring

    expected = scoring.answer_is_correct(chosen, key)
    assert domain.answer_is_correct(chosen, key) == expected
    answers = {} if chosen is None else {"q": chosen}
    assert scoring.score(answers, ["q"], {"q": key}) == (int(expected), 1)
    assert domain.answer_is_correct(chosen, key) == (bool(key) and chosen is not None and set(chosen) == set(key))


def test_answer_is_correct_examples() -> None:
    assert domain.answer_is_correct(["C", "A"], ("A", "C"))
    assert domain.answer_is_correct(["A", "A", "C"], ("A", "C"))
    assert not domain.answer_is_correct(["A"], ("A", "C"))  # every right option must be chosen
    assert not domain.answer_is_correct(["A", "B", "C"], ("A", "C"))
    assert not domain.answer_is_correct(None, ("B",)) and not domain.answer_is_correct([], ("B",))
    assert not domain.answer_is_correct([], ())  # an empty key rewards nothing


@given(
    opens=offsets,
    length=st.integers(min_value=1, max_value=5_000),
    closed=st.none() | offsets,
    time_limit_s=st.integers(min_value=60, max_value=3600),
    grace_s=st.integers(min_value=0, max_value=300),
    started_after_s=st.integers(min_value=0, max_value=10_000),
    now=offsets,
)
def test_no_review_while_any_attempt_of_the_round_can_still_be_submitted(
    opens: datetime, length: int, closed: datetime | None, time_limit_s: int, grace_s: int,
    started_after_s: int, now: datetime,
) -> None:
    round_ = make_round(opens_at=opens, closes_at=opens + timedelta(seconds=length), closed_at=closed,
                        time_limit_s=time_limit_s, grace_s=grace_s, opened_at=opens)
    started = opens + timedelta(seconds=started_after_s)
    if not domain.accepts_start(round_, started):
        return
    attempt = make_attempt(started, time_limit_s)
    if domain.review_available(round_, now):
        assert domain.round_status(round_, now) == "closed"
        assert not domain.accepts_submit(now, attempt, grace_s)


def test_review_is_available_once_final_or_long_enough_after_the_close() -> None:
    round_ = make_round(time_limit_s=900, grace_s=30, opened_at=T0)
    close = round_.closes_at
    assert not domain.review_available(round_, T0 + timedelta(days=1))  # open
    assert not domain.review_available(round_, close)  # closed, an attempt may still run
    assert domain.review_available_at(round_) == close + timedelta(seconds=930)
    assert not domain.review_available(round_, close + timedelta(seconds=930) - US)
    assert domain.review_available(round_, close + timedelta(seconds=930))
    early = make_round(time_limit_s=900, grace_s=30, opened_at=T0, closed_at=T0 + timedelta(hours=1))
    assert domain.review_available_at(early) == T0 + timedelta(hours=1, seconds=930)
    # Final: every attempt has ended, whatever the clock says.
    final = make_round(opened_at=T0, closed_at=T0 + timedelta(hours=1), finalised_at=T0 + timedelta(hours=1))
    assert domain.review_available(final, T0 + timedelta(hours=1))
    assert not domain.review_available(make_round(), T0 - timedelta(days=1))  # scheduled
