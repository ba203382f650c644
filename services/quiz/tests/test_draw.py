"""The draw, exhaustively: quotas are met exactly, questions never repeat, the same seed
gives the same attempt, impossibility is detected exactly when brute force finds no
valid selection, and every valid selection can come out. Groups draw only their topics."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.quiz import domain
from services.quiz.domain import ContestSettings, DrawImpossible, Group, QuestionRef, Quotas

TOPICS = ("Luật", "Đô thị", "Lịch sử", "Môi trường")


@st.composite
def banks(draw: st.DrawFn, max_size: int = 40) -> list[QuestionRef]:
    size = draw(st.integers(min_value=0, max_value=max_size))
    return [
        QuestionRef(uuid.UUID(int=n), draw(st.sampled_from(TOPICS)), draw(st.integers(min_value=1, max_value=3)))
        for n in range(size)
    ]


@st.composite
def quota_maps(draw: st.DrawFn, max_each: int = 8) -> Quotas:
    topics = draw(st.dictionaries(st.sampled_from(TOPICS), st.integers(min_value=0, max_value=max_each), max_size=3))
    difficulties = draw(st.dictionaries(st.integers(min_value=1, max_value=3),
                                        st.integers(min_value=0, max_value=max_each), max_size=3))
    return Quotas(topics, difficulties)


seeds = st.integers(min_value=0, max_value=2**63 - 1)


def meets_quotas(selection: Sequence[QuestionRef], count: int, quotas: Quotas) -> bool:
    """The semantics, spelled out: exact counts for the named topics and difficulties, the
    rest from topics (difficulties) the maps do not name."""
    if len(selection) != count or len({q.id for q in selection}) != count:
        return False
    topics = Counter(q.topic for q in selection)
    difficulties = Counter(q.difficulty for q in selection)
    return (
        all(topics[t] == n for t, n in quotas.topics.items())
        and all(difficulties[d] == n for d, n in quotas.difficulties.items())
        and sum(n for t, n in topics.items() if t not in quotas.topics) == count - sum(quotas.topics.values())
        and sum(n for d, n in difficulties.items() if d not in quotas.difficulties)
        == count - sum(quotas.difficulties.values())
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(bank=banks(), quotas=quota_maps(), count=st.integers(min_value=0, max_value=25), seed=seeds)
def test_a_draw_meets_the_quotas_exactly_never_repeats_and_replays(
    bank: list[QuestionRef], quotas: Quotas, count: int, seed: int
) -> None:
    problem = domain.draw_problem(bank, count, quotas)
    if problem is not None:
        with pytest.raises(DrawImpossible) as raised:
            domain.draw_questions(bank, count, quotas, seed)
        assert raised.value.field == problem.field and raised.value.message
        return
    drawn = domain.draw_questions(bank, count, quotas, seed)
    by_id = {q.id: q for q in bank}
    assert meets_quotas([by_id[i] for i in drawn], count, quotas)
    assert drawn == domain.draw_questions(list(bank), count, quotas, seed)


@settings(max_examples=300)
@given(bank=banks(max_size=10), quotas=quota_maps(max_each=4), count=st.integers(min_value=0, max_value=6))
def test_impossible_quotas_are_detected_exactly_when_no_selection_exists(
    bank: list[QuestionRef], quotas: Quotas, count: int
) -> None:
    possible = any(meets_quotas(c, count, quotas) for c in itertools.combinations(bank, count))
    assert (domain.draw_problem(bank, count, quotas) is None) == possible


def test_every_valid_selection_can_come_out() -> None:
    """The walk takes a question whenever some completion exists with it, so no valid
    selection is unreachable (the draw is not tied to one way of filling the quotas)."""
    bank = [QuestionRef(uuid.UUID(int=n), topic, difficulty) for n, (topic, difficulty) in enumerate(
        [("Luật", 1), ("Luật", 2), ("Luật", 3), ("Đô thị", 1), ("Đô thị", 2), ("Lịch sử", 3), ("Lịch sử", 1)])]
    quotas = Quotas({"Luật": 2}, {1: 1})
    valid = {frozenset(q.id for q in c) for c in itertools.combinations(bank, 4) if meets_quotas(c, 4, quotas)}
    seen = {frozenset(domain.draw_questions(bank, 4, quotas, seed)) for seed in range(3000)}
    assert seen == valid and len(valid) > 5


def test_the_shown_order_varies_too() -> None:
    bank = [QuestionRef(uuid.UUID(int=n), TOPICS[n % 4], n % 3 + 1) for n in range(8)]
    orders = {tuple(domain.draw_questions(bank, 8, Quotas({"Luật": 2}), seed)) for seed in range(200)}
    assert len(orders) > 150


def test_topics_compare_ignoring_case_and_spacing() -> None:
    bank = [QuestionRef(uuid.UUID(int=n), "Cải cách  hành chính" if n < 5 else "Khác", 1) for n in range(10)]
    drawn = domain.draw_questions(bank, 6, Quotas({"cải cách hành chính": 4}), 3)
    assert sum(1 for i in drawn if i.int < 5) == 4


@pytest.mark.parametrize(("quotas", "count", "field"), [
    (Quotas(), 11, "question_count"),
    (Quotas({"Luật": 5}), 6, "quotas.topics.Luật"),  # 4 questions of Luật
    (Quotas({"Luật": 1}), 8, "quotas.topics"),  # 7 more from other topics, which have 6
    (Quotas({}, {3: 4}), 5, "quotas.difficulties.3"),
    (Quotas({}, {1: 0, 2: 0}), 5, "quotas.difficulties"),  # only 3 questions of difficulty 3
    (Quotas({"Luật": 4}, {3: 3}), 6, "quotas"),  # each alone is fine, not both: Luật has no difficulty 3
    (Quotas({"Luật": 7}), 6, "quotas.topics"),
])
def test_the_problem_names_the_setting_that_cannot_be_met(quotas: Quotas, count: int, field: str) -> None:
    # 4 × Luật (difficulty 1, 2), 3 × Đô thị (difficulty 1), 3 × Lịch sử (difficulty 3)
    bank = [QuestionRef(uuid.UUID(int=n), t, d) for n, (t, d) in enumerate(
        [("Luật", 1), ("Luật", 2), ("Luật", 1), ("Luật", 2), ("Đô thị", 1), ("Đô thị", 1), ("Đô thị", 1),
         ("Lịch sử", 3), ("Lịch sử", 3), ("Lịch sử", 3)])]
    problem = domain.draw_problem(bank, count, quotas)
    assert problem is not None and problem.field == field and problem.message
    with pytest.raises(DrawImpossible):
        domain.draw_questions(bank, count, quotas, 1)


def test_a_remainder_the_other_topics_cannot_fill_names_the_topic_quotas() -> None:
    bank = [QuestionRef(uuid.UUID(int=n), "Luật" if n < 8 else "Khác", 1) for n in range(10)]
    problem = domain.draw_problem(bank, 6, Quotas({"Luật": 3}))
    assert problem is not None and problem.field == "quotas.topics"
    assert "3" in problem.message and "2" in problem.message


def test_a_bank_listing_a_question_twice_is_a_bug_not_a_draw() -> None:
    ref = QuestionRef(uuid.uuid4(), "Luật", 1)
    with pytest.raises(ValueError):
        domain.draw_questions([ref, ref], 1, None, 1)


# --- groups --------------------------------------------------------------------------------

CIVIL = Group("cbcc", "Cán bộ, công chức", ("Luật", "Đô thị"))
CITIZENS = Group("nhan_dan", "Nhân dân", ("Lịch sử",))
GROUPED = ContestSettings((CIVIL, CITIZENS), default_group=None)


@pytest.mark.parametrize(("settings", "token_group", "resolved"), [
    (ContestSettings(), None, None),
    (ContestSettings(), "tự do", "tự do"),  # no groups: kept as the token says, for reports
    (GROUPED, "cbcc", "cbcc"),
    (GROUPED, "CBCC", "cbcc"),
    (GROUPED, "Cán bộ,  công chức", "cbcc"),  # registration stores what people chose, by name
    (GROUPED, "nhân dân", "nhan_dan"),
    (ContestSettings((CIVIL, CITIZENS), default_group="nhan_dan"), "học sinh", "nhan_dan"),
    (ContestSettings((CIVIL, CITIZENS), default_group="nhan_dan"), None, "nhan_dan"),
])
def test_the_attempts_group(settings: ContestSettings, token_group: str | None, resolved: str | None) -> None:
    assert domain.resolve_group(settings, token_group) == resolved


@pytest.mark.parametrize("token_group", [None, "", "học sinh"])
def test_a_group_is_required_when_the_contest_has_groups_and_no_default(token_group: str | None) -> None:
    with pytest.raises(domain.GroupRequired):
        domain.resolve_group(GROUPED, token_group)


@settings(max_examples=200)
@given(bank=banks(max_size=60), seed=seeds, count=st.integers(min_value=1, max_value=8))
def test_groups_draw_only_their_topics(bank: list[QuestionRef], seed: int, count: int) -> None:
    from datetime import UTC, datetime, timedelta

    round_ = domain.Round(
        id=uuid.uuid4(), contest_id=uuid.uuid4(), number=1, title="Tuần 1", opens_at=datetime(2025, 3, 3, tzinfo=UTC),
        closes_at=datetime(2025, 3, 3, tzinfo=UTC) + timedelta(days=7), question_count=count, time_limit_s=900,
        grace_s=30, max_attempts=3, quotas=Quotas({"Đô thị": 1, "Lịch sử": 1}), settings=GROUPED,
        question_ids=tuple(q.id for q in bank),
    )
    by_id = {q.id: q for q in bank}
    for group, topics in (("cbcc", {"Luật", "Đô thị"}), ("nhan_dan", {"Lịch sử"}), (None, set(TOPICS))):
        try:
            drawn = domain.attempt_draw(bank, round_, group, seed)
        except DrawImpossible:
            continue
        assert {by_id[i].topic for i in drawn} <= topics
        assert len(set(drawn)) == count
        # The topic quotas bind the groups whose question set has the topic, and only them.
        if group == "cbcc":
            assert sum(1 for i in drawn if by_id[i].topic == "Đô thị") == 1
        if group == "nhan_dan":
            assert sum(1 for i in drawn if by_id[i].topic == "Lịch sử") == count
    problems = domain.round_draw_problems(bank, round_, GROUPED)
    for group, problem in problems:
        with pytest.raises(DrawImpossible):
            domain.attempt_draw(bank, round_, group, seed)
        assert problem.field


def test_group_quotas_keep_the_topics_of_the_group() -> None:
    quotas = Quotas({"luật": 3, "Lịch sử": 2}, {1: 4})
    assert domain.group_quotas(quotas, CIVIL) == Quotas({"luật": 3}, {1: 4})
    assert domain.group_quotas(quotas, None) is quotas
    assert domain.group_quotas(quotas, Group("all", "Mọi người")) is quotas
