"""The scoring rules, exhaustively: examples for each rule, properties over random data."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring import domain
from services.scoring.domain import BestAttempt, PrizeTier, RankedEntry, Result, RoundRules

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
KEY = {"q1": ["A"], "q2": ["B", "C"], "q3": ["D"]}


# --- score -----------------------------------------------------------------------------

def test_score_counts_exact_option_sets_only() -> None:
    answers = {"q1": ["A"], "q2": ["C", "B"], "q3": ["D", "A"]}
    assert domain.score(answers, ["q1", "q2", "q3"], KEY) == (2, 3)


@pytest.mark.parametrize(
    ("chosen", "right"),
    [
        (["B", "C"], True),
        (["C", "B"], True),
        (["B", "B", "C"], True),
        (["B"], False),
        (["B", "C", "D"], False),
        ([], False),
    ],
)
def test_multiple_answer_question_needs_exactly_the_key(chosen: list[str], right: bool) -> None:
    assert domain.score({"q2": chosen}, ["q2"], KEY) == (int(right), 1)


def test_unanswered_counts_wrong_and_stray_answers_are_ignored() -> None:
    answers = {"q1": ["A"], "q3": ["D"], "elsewhere": ["A"]}
    assert domain.score(answers, ["q1", "q2"], {**KEY, "elsewhere": ["A"]}) == (1, 2)


def test_question_missing_from_key_is_never_right() -> None:
    assert domain.score({"qx": []}, ["qx"], KEY) == (0, 1)
    assert domain.score({"qx": []}, ["qx"], {"qx": []}) == (0, 1)


question_sets = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.sets(st.sampled_from("ABCDEF"), min_size=1, max_size=3).map(sorted),
    min_size=1,
    max_size=12,
)


@given(question_sets, st.data())
def test_score_properties(key: dict[str, list[str]], data: st.DataObject) -> None:
    ids = data.draw(st.lists(st.sampled_from(sorted(key)), unique=True, min_size=1))
    answers = data.draw(
        st.dictionaries(st.sampled_from(sorted(key)), st.lists(st.sampled_from("ABCDEF"), max_size=4))
    )
    correct, total = domain.score(answers, ids, key)
    assert total == len(ids)
    assert 0 <= correct <= total
    expected = sum(1 for q in ids if q in answers and set(answers[q]) == set(key[q]))
    assert correct == expected
    # Answering with the key, shuffled, gets everything right.
    perfect = {q: random.sample(key[q], len(key[q])) for q in ids}
    assert domain.score(perfect, ids, key) == (len(ids), len(ids))


def test_duration_ms_is_whole_milliseconds_and_never_negative() -> None:
    assert domain.duration_ms(T0, T0 + timedelta(minutes=3, microseconds=1999)) == 180_001
    assert domain.duration_ms(T0, T0 - timedelta(seconds=2)) == 0


def test_submitted_offset_s() -> None:
    assert domain.submitted_offset_s(T0, T0 + timedelta(seconds=90.9)) == 90
    assert domain.submitted_offset_s(T0, T0 - timedelta(seconds=5)) == 0


# --- live score ------------------------------------------------------------------------

corrects = st.integers(0, domain.MAX_CORRECT)
durations = st.integers(0, domain.MAX_DURATION_MS)
offsets = st.integers(0, domain.MAX_OFFSET_S)


@given(corrects, durations, offsets, corrects, durations, offsets)
def test_live_score_orders_like_the_tie_break(c1: int, d1: int, o1: int, c2: int, d2: int, o2: int) -> None:
    s1, s2 = domain.live_score(c1, d1, o1), domain.live_score(c2, d2, o2)
    better1, better2 = (-c1, d1, o1), (-c2, d2, o2)
    assert (s1 > s2) == (better1 < better2)
    assert (s1 == s2) == (better1 == better2)


@given(corrects, durations, offsets)
def test_live_score_is_exact_in_a_double_and_decodes(correct: int, duration: int, offset: int) -> None:
    score = domain.live_score(correct, duration, offset)
    assert 0 <= score < 2**53
    assert int(float(score)) == score
    assert domain.decode_live_score(float(score)) == (correct, duration)


def test_live_score_extremes() -> None:
    assert domain.live_score(domain.MAX_CORRECT, 0, 0) == 2**53 - 1
    assert domain.live_score(0, domain.MAX_DURATION_MS, domain.MAX_OFFSET_S) == 0
    # Beyond their fields durations and offsets saturate instead of spilling into the next.
    assert domain.live_score(1, 10**9, 10**9) == domain.live_score(1, domain.MAX_DURATION_MS, domain.MAX_OFFSET_S)
    assert domain.live_score(1, 10**9, 0) > domain.live_score(0, 0, 0)
    for bad in (-1, domain.MAX_CORRECT + 1):
        with pytest.raises(ValueError):
            domain.live_score(bad, 0, 0)


# --- best attempt ----------------------------------------------------------------------

PEOPLE = [uuid.UUID(int=i + 1) for i in range(6)]


@st.composite
def results(draw: st.DrawFn, people: list[uuid.UUID] = PEOPLE, total: int = 5) -> Result:
    """Small value ranges, so that ties on every criterion are common."""
    started = T0 + timedelta(seconds=draw(st.integers(0, 3)))
    duration = draw(st.sampled_from([1000, 2000, 3000]))
    return Result(
        attempt_id=uuid.uuid4(),
        participant_id=draw(st.sampled_from(people)),
        attempt_number=draw(st.integers(1, 4)),
        correct=draw(st.integers(0, total)),
        total=total,
        duration_ms=duration,
        started_at=started,
        submitted_at=started + timedelta(milliseconds=duration) + timedelta(seconds=draw(st.integers(0, 1))),
        prediction=draw(st.none() | st.integers(0, 10)),
    )


def _result(pid: uuid.UUID, number: int, correct: int, duration_s: int, submitted_s: int, **kw: Any) -> Result:
    return Result(
        attempt_id=uuid.uuid4(),
        participant_id=pid,
        attempt_number=number,
        correct=correct,
        total=kw.pop("total", 10),
        duration_ms=duration_s * 1000,
        started_at=kw.pop("started_at", T0 + timedelta(seconds=submitted_s - duration_s)),
        submitted_at=T0 + timedelta(seconds=submitted_s),
        **kw,
    )


def test_best_attempt_is_most_correct_then_fastest_then_earliest() -> None:
    p = PEOPLE[0]
    a1 = _result(p, 1, 7, 100, 1000)
    a2 = _result(p, 2, 8, 300, 2000)
    a3 = _result(p, 3, 8, 200, 3000)
    a4 = _result(p, 4, 8, 200, 4000)  # equal to a3 but later: the earliest counts
    (best,) = domain.best_attempt_per_participant([a4, a1, a3, a2])
    assert best.result == a3
    assert best.attempts_used == 4


@given(st.lists(results(), max_size=30))
def test_best_attempt_properties(rows: list[Result]) -> None:
    best = domain.best_attempt_per_participant(rows)
    assert sorted(b.participant_id for b in best) == sorted({r.participant_id for r in rows})
    for b in best:
        mine = [r for r in rows if r.participant_id == b.participant_id]
        assert b.result in mine
        assert b.attempts_used == max(r.attempt_number for r in mine)
        for other in mine:
            # Nobody's other attempt beats the chosen one.
            assert (-other.correct, other.duration_ms, other.submitted_at) >= (
                -b.result.correct, b.result.duration_ms, b.result.submitted_at
            )
    # The order the rows come in does not change the choice.
    shuffled = random.sample(rows, len(rows))
    assert {b.participant_id: b for b in domain.best_attempt_per_participant(shuffled)} == {
        b.participant_id: b for b in best
    }


# --- prediction truth ------------------------------------------------------------------

def test_prediction_truth() -> None:
    best = [
        BestAttempt(_result(PEOPLE[0], 1, 10, 100, 200), 1),
        BestAttempt(_result(PEOPLE[1], 1, 9, 100, 200), 1),
        BestAttempt(_result(PEOPLE[2], 2, 10, 100, 200), 2),
    ]
    assert domain.prediction_truth("participants", best) == 3
    assert domain.prediction_truth("all_correct", best) == 2
    assert domain.prediction_truth(None, best) is None
    assert domain.prediction_truth("participants", []) == 0
    with pytest.raises(ValueError):
        domain.prediction_truth("guesses", best)  # type: ignore[arg-type]


# --- final ranking ---------------------------------------------------------------------

def _reference_cmp(a: RankedEntry | BestAttempt, b: BestAttempt, criteria: list[str], truth: int | None) -> int:
    """An independent statement of the tie-break rules: -1 when a ranks before b."""

    def err(x: BestAttempt) -> float:
        p = x.result.prediction
        return float("inf") if p is None or truth is None else abs(p - truth)

    a = a.best if isinstance(a, RankedEntry) else a
    values = {
        "correct": lambda x: -x.result.correct,
        "prediction_error": err,
        "duration": lambda x: x.result.duration_ms,
        "submitted_at": lambda x: x.result.submitted_at,
        "started_at": lambda x: x.result.started_at,
        "attempts_used": lambda x: x.attempts_used,
    }
    for criterion in [*criteria, "submitted_at"]:
        va, vb = values[criterion](a), values[criterion](b)
        if va != vb:
            return -1 if va < vb else 1
    return -1 if a.participant_id < b.participant_id else (1 if a.participant_id > b.participant_id else 0)


criteria_orders = st.permutations(list(domain.CRITERIA)).flatmap(
    lambda order: st.integers(0, len(order)).map(lambda n: order[:n])
)


@st.composite
def best_attempt_lists(draw: st.DrawFn) -> list[BestAttempt]:
    people = [uuid.uuid4() for _ in range(draw(st.integers(0, 12)))]
    return [
        BestAttempt(
            draw(results(people=[p])),
            draw(st.integers(1, 3)),
        )
        for p in people
    ]


@given(best_attempt_lists(), criteria_orders, st.none() | st.integers(0, 10))
def test_final_ranking_properties(best: list[BestAttempt], criteria: list[str], truth: int | None) -> None:
    ranking = domain.final_ranking(best, criteria, truth)
    # A permutation with distinct ranks 1..n.
    assert sorted(e.participant_id for e in ranking) == sorted(b.participant_id for b in best)
    assert [e.rank for e in ranking] == list(range(1, len(best) + 1))
    # Each neighbour pair is in the order the criteria say, never a draw.
    for before, after in itertools.pairwise(ranking):
        assert _reference_cmp(before, after.best, criteria, truth) == -1
    # Input order does not matter.
    again = domain.final_ranking(random.sample(best, len(best)), criteria, truth)
    assert [e.participant_id for e in again] == [e.participant_id for e in ranking]
    for entry in ranking:
        p = entry.best.result.prediction
        assert entry.prediction_error == (None if p is None or truth is None else abs(p - truth))


def test_ranking_by_the_most_common_rule() -> None:
    a, b, c, d, e = PEOPLE[:5]
    best = [
        BestAttempt(_result(a, 1, 9, 100, 500, prediction=95), 1),  # off by 5
        BestAttempt(_result(b, 1, 9, 300, 400, prediction=101), 1),  # off by 1
        BestAttempt(_result(c, 1, 9, 50, 300, prediction=None), 1),  # no prediction: worst among 9s
        BestAttempt(_result(d, 1, 10, 500, 900, prediction=0), 1),  # most correct wins whatever else
        BestAttempt(_result(e, 1, 9, 90, 450, prediction=105), 1),  # off by 5, faster than a
    ]
    ranking = domain.final_ranking(best, domain.DEFAULT_TIE_BREAK, truth=100)
    assert [x.participant_id for x in ranking] == [d, b, e, a, c]
    assert [x.prediction_error for x in ranking] == [100, 1, 5, 5, None]


def test_ranking_by_duration_before_prediction() -> None:
    a, b = PEOPLE[:2]
    best = [
        BestAttempt(_result(a, 1, 9, 100, 500, prediction=100), 1),
        BestAttempt(_result(b, 1, 9, 90, 600, prediction=0), 1),
    ]
    assert [x.participant_id for x in domain.final_ranking(best, ["correct", "duration", "prediction_error"], 100)] == [
        b, a
    ]
    assert [x.participant_id for x in domain.final_ranking(best, ["correct", "prediction_error", "duration"], 100)] == [
        a, b
    ]


def test_ranking_by_started_at_and_attempts_used() -> None:
    a, b = PEOPLE[:2]
    best = [
        BestAttempt(_result(a, 3, 9, 100, 500, started_at=T0), 3),
        BestAttempt(_result(b, 1, 9, 100, 500, started_at=T0 + timedelta(seconds=1)), 1),
    ]
    assert [x.participant_id for x in domain.final_ranking(best, ["correct", "started_at"], None)] == [a, b]
    assert [x.participant_id for x in domain.final_ranking(best, ["correct", "attempts_used"], None)] == [b, a]


def test_complete_ties_fall_to_submission_time_then_participant_id() -> None:
    a, b, c = PEOPLE[:3]
    best = [
        BestAttempt(_result(c, 1, 9, 100, 500), 1),
        BestAttempt(_result(b, 1, 9, 100, 400), 1),
        BestAttempt(_result(a, 1, 9, 100, 500), 1),
    ]
    assert [x.participant_id for x in domain.final_ranking(best, ["correct"], None)] == [b, a, c]


def test_unknown_or_repeated_criteria_are_refused() -> None:
    with pytest.raises(ValueError):
        domain.final_ranking([], ["correct", "luck"], None)
    with pytest.raises(ValueError):
        domain.parse_tie_break(["correct", "duration", "correct"])


# --- prizes ----------------------------------------------------------------------------

def _ranking(n: int) -> list[RankedEntry]:
    best = [BestAttempt(_result(uuid.UUID(int=i + 1), 1, 10 - i % 10, 100 + i, 500 + i), 1) for i in range(n)]
    return domain.final_ranking(best, ["correct", "duration"], None)


def test_prizes_go_down_the_ranking_in_plan_order() -> None:
    ranking = _ranking(10)
    plan = [PrizeTier("Giải Nhất", 1), PrizeTier("Giải Nhì", 2), PrizeTier("Giải Ba", 3)]
    winners = domain.allocate_prizes(ranking, plan)
    assert [(w.rank, w.prize) for w in winners] == [
        (1, "Giải Nhất"), (2, "Giải Nhì"), (3, "Giải Nhì"), (4, "Giải Ba"), (5, "Giải Ba"), (6, "Giải Ba")
    ]
    assert [w.participant_id for w in winners] == [e.participant_id for e in ranking[:6]]
    assert winners[0].correct == ranking[0].best.result.correct


def test_earlier_contest_winners_are_passed_over() -> None:
    ranking = _ranking(5)
    skip = {ranking[0].participant_id, ranking[2].participant_id}
    winners = domain.allocate_prizes(ranking, [PrizeTier("Nhất", 1), PrizeTier("Nhì", 2)], ineligible=skip)
    assert [(w.rank, w.prize) for w in winners] == [(2, "Nhất"), (4, "Nhì"), (5, "Nhì")]


@given(st.integers(0, 30), st.lists(st.tuples(st.text(min_size=1, max_size=5), st.integers(0, 6)), max_size=5))
def test_allocation_properties(entrants: int, plan_raw: list[tuple[str, int]]) -> None:
    ranking = _ranking(entrants)
    plan = [PrizeTier(name, count) for name, count in plan_raw]
    winners = domain.allocate_prizes(ranking, plan)
    assert len(winners) == min(entrants, sum(t.count for t in plan))
    assert len({w.participant_id for w in winners}) == len(winners)
    # The best entrants win, in rank order, and a better rank never gets a later tier.
    assert [w.rank for w in winners] == list(range(1, len(winners) + 1))
    assert [w.prize for w in winners] == [t.name for t in plan for _ in range(t.count)][: len(winners)]


# --- rules and units -------------------------------------------------------------------

def test_round_rules_from_stored_mapping() -> None:
    rules = RoundRules.from_mapping(
        {
            "tie_break": ["correct", "duration", "prediction_error"],
            "prize_scope": "contest",
            "prizes": [{"name": "Giải Nhất", "count": 1}],
            "prediction": {"text": "Bao nhiêu người tham gia?", "target": "participants"},
        }
    )
    assert rules == RoundRules(("correct", "duration", "prediction_error"), (PrizeTier("Giải Nhất", 1),), "contest",
                               "participants")
    assert RoundRules.from_mapping({}) == RoundRules()
    for bad in ({"tie_break": ["speed"]}, {"prize_scope": "forever"}, {"prediction": {"target": "x"}},
                {"prizes": [{"name": "x", "count": -1}]}):
        with pytest.raises(ValueError):
            RoundRules.from_mapping(bad)


def test_lineage_walks_up_to_the_root_and_survives_cycles() -> None:
    city, district, ward, lone = (uuid.UUID(int=i) for i in range(1, 5))
    parents = {city: None, district: city, ward: district}
    assert domain.lineage(ward, parents) == (ward, district, city)
    assert domain.lineage(lone, parents) == (lone,)
    assert domain.lineage(ward, {ward: district, district: ward}) == (ward, district)


@given(st.lists(results(), min_size=1, max_size=20))
def test_live_score_agrees_with_best_attempt_choice(rows: list[Result]) -> None:
    """The live board keeps each participant's highest live score (ZADD GT): that is the
    score of the attempt that counts."""

    def live(r: Result) -> int:
        return domain.live_score(r.correct, r.duration_ms, domain.submitted_offset_s(T0, r.submitted_at))

    for best in domain.best_attempt_per_participant(rows):
        assert live(best.result) == max(live(r) for r in rows if r.participant_id == best.participant_id)
