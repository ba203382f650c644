"""Issue 3's rules (pure): rankings against a brute-force reference, prizes per group,
entries that do not count, the freeze, collective ranking, reports, scheduled nudges."""

from __future__ import annotations

import functools
import itertools
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring import domain
from services.scoring.domain import BestAttempt, MinRate, PrizeTier, Result, RoundRules, UnitParticipation

T0 = datetime(2025, 3, 3, 3, 0, tzinfo=UTC)
GROUPS = ("cbcc", "dan")


# --- a brute-force statement of the ranking rules, written apart from domain.py --------

def _reference_order(entries: list[BestAttempt], criteria: list[str], truth: int | None) -> list[BestAttempt]:
    """Compare two entries criterion by criterion (DESIGN.md: correct ↓, |prediction −
    truth| ↑ with no prediction last, duration ↑, submitted_at ↑, started_at ↑, attempts
    used ↑), then earliest submission, then participant id."""

    def error(entry: BestAttempt) -> float:
        p = entry.result.prediction
        return float("inf") if p is None or truth is None else float(abs(p - truth))

    def compare(a: BestAttempt, b: BestAttempt) -> int:
        x: Any
        y: Any
        for criterion in [*criteria, "submitted_at"]:
            if criterion == "correct":
                x, y = b.result.correct, a.result.correct  # more is better
            elif criterion == "prediction_error":
                x, y = error(a), error(b)
            elif criterion == "duration":
                x, y = a.result.duration_ms, b.result.duration_ms
            elif criterion == "submitted_at":
                x, y = a.result.submitted_at, b.result.submitted_at
            elif criterion == "started_at":
                x, y = a.result.started_at, b.result.started_at
            else:
                x, y = a.attempts_used, b.attempts_used
            if x != y:
                return -1 if x < y else 1
        return (a.participant_id > b.participant_id) - (a.participant_id < b.participant_id)

    return sorted(entries, key=functools.cmp_to_key(compare))


@st.composite
def entries(draw: st.DrawFn, max_size: int = 14) -> list[BestAttempt]:
    """Few distinct values per field, so that ties on every criterion are common."""
    people = draw(st.lists(st.uuids(), unique=True, max_size=max_size))
    made = []
    for pid in people:
        started = T0 + timedelta(seconds=draw(st.integers(0, 2)))
        duration = draw(st.sampled_from([1000, 2000]))
        made.append(
            BestAttempt(
                Result(
                    attempt_id=uuid.uuid4(),
                    participant_id=pid,
                    attempt_number=1,
                    correct=draw(st.integers(0, 3)),
                    total=3,
                    duration_ms=duration,
                    started_at=started,
                    submitted_at=started + timedelta(milliseconds=duration + 1000 * draw(st.integers(0, 1))),
                    prediction=draw(st.none() | st.integers(0, 4)),
                    group=draw(st.sampled_from(GROUPS)),
                ),
                draw(st.integers(1, 3)),
            )
        )
    return made


# Any subset of the six criteria, in any order.
tie_breaks = st.lists(st.sampled_from(domain.CRITERIA), unique=True)
truths = st.none() | st.integers(0, 4)


@settings(max_examples=300)
@given(entries(), tie_breaks, truths, st.randoms(use_true_random=False))
def test_final_ranking_equals_the_brute_force_reference(
    best: list[BestAttempt], criteria: list[str], truth: int | None, rnd: random.Random
) -> None:
    ranking = domain.final_ranking(best, criteria, truth)
    assert [e.best for e in ranking] == _reference_order(best, criteria, truth)
    # Total: ranks 1..n, nobody shares one.
    assert [e.rank for e in ranking] == list(range(1, len(best) + 1))
    assert len({e.participant_id for e in ranking}) == len(best)
    # Independent of the order entries arrive in.
    shuffled = rnd.sample(best, len(best))
    assert [e.participant_id for e in domain.final_ranking(shuffled, criteria, truth)] == [
        e.participant_id for e in ranking
    ]


prize_plans = st.lists(st.tuples(st.sampled_from(["Nhất", "Nhì", "Ba", "KK"]), st.integers(0, 3)), max_size=4)


def _reference_winners(
    best: list[BestAttempt], rules: RoundRules, truth: int | None, ineligible: set[uuid.UUID]
) -> list[tuple[str | None, int, uuid.UUID, str]]:
    taken = set(ineligible)
    won = []
    for group in rules.groups or (None,):
        members = [b for b in best if group is None or b.result.group == group]
        plan = dict(rules.group_prizes).get(group, rules.prizes) if group is not None else rules.prizes
        prizes = [tier.name for tier in plan for _ in range(tier.count)]
        for rank, entry in enumerate(_reference_order(members, list(rules.tie_break), truth), start=1):
            if not prizes:
                break
            if entry.participant_id in taken:
                continue
            taken.add(entry.participant_id)
            won.append((group, rank, entry.participant_id, prizes.pop(0)))
    return won


@settings(max_examples=300)
@given(entries(), tie_breaks, truths, prize_plans, st.none() | prize_plans, st.booleans(), st.data())
def test_prizes_per_group_follow_the_reference(
    best: list[BestAttempt],
    criteria: list[str],
    truth: int | None,
    plan: list[tuple[str, int]],
    citizens_plan: list[tuple[str, int]] | None,
    grouped: bool,
    data: st.DataObject,
) -> None:
    tiers = tuple(PrizeTier(n, c) for n, c in plan)
    rules = RoundRules(
        tie_break=domain.parse_tie_break(criteria),
        prizes=tiers,
        groups=GROUPS if grouped else (),
        group_prizes=() if citizens_plan is None else (("dan", tuple(PrizeTier(n, c) for n, c in citizens_plan)),),
    )
    # Winners of earlier rounds of the contest (prize scope `contest`).
    ineligible = set(data.draw(st.lists(st.sampled_from([b.participant_id for b in best]), unique=True))
                     if best else [])
    winners = domain.award_prizes(domain.final_standings(best, rules, truth), rules, ineligible)
    assert [(w.group, w.rank, w.participant_id, w.prize) for w in winners] == _reference_winners(
        best, rules, truth, ineligible
    )
    assert len({w.participant_id for w in winners}) == len(winners)  # one prize per person
    assert not ineligible & {w.participant_id for w in winners}


def test_groups_rank_apart_with_their_own_plans() -> None:
    def entry(group: str, correct: int, n: int) -> BestAttempt:
        return BestAttempt(
            Result(uuid.uuid4(), uuid.UUID(int=n), 1, correct, 10, 1000, T0, T0 + timedelta(seconds=n), group=group),
            1,
        )

    best = [entry("cbcc", 9, 1), entry("dan", 10, 2), entry("dan", 8, 3), entry("cbcc", 10, 4), entry("khac", 10, 5)]
    rules = RoundRules.from_mapping(
        {
            "groups": [{"code": "cbcc", "name": "Cán bộ"}, {"code": "dan", "name": "Nhân dân"}],
            "prizes": [{"name": "Nhất", "count": 1}],
            "group_prizes": {"dan": [{"name": "Nhất (dân)", "count": 1}, {"name": "KK (dân)", "count": 1}]},
        }
    )
    standings = domain.final_standings(best, rules, None)
    assert [(s.group, [e.participant_id.int for e in s.ranking]) for s in standings] == [
        ("cbcc", [4, 1]), ("dan", [2, 3])
    ]
    winners = domain.award_prizes(standings, rules, ineligible={uuid.UUID(int=4)})
    # Entrant 4 won earlier in the contest: the prize passes to the next; entrant 5's
    # group is not one of the round's, so they are ranked nowhere.
    assert [(w.group, w.rank, w.participant_id.int, w.prize) for w in winners] == [
        ("cbcc", 2, 1, "Nhất"), ("dan", 1, 2, "Nhất (dân)"), ("dan", 2, 3, "KK (dân)")
    ]


def test_round_rules_read_the_new_fields() -> None:
    rules = RoundRules.from_mapping(
        {"groups": [{"code": "a", "name": "A"}, {"code": "b", "name": "B"}],
         "group_prizes": {"b": [{"name": "x", "count": 2}]}, "require_all_answered": True, "freeze_s": 900,
         "prizes": [{"name": "y", "count": 1}]}
    )
    assert rules.groups == ("a", "b")
    assert rules.prizes_for("b") == (PrizeTier("x", 2),)
    assert rules.prizes_for("a") == rules.prizes_for(None) == (PrizeTier("y", 1),)
    assert rules.require_all_answered and rules.freeze_s == 900
    old = RoundRules.from_mapping({"prizes": [{"name": "y", "count": 1}]})  # a round.opened from before issue 3
    assert (old.groups, old.group_prizes, old.require_all_answered, old.freeze_s) == ((), (), False, 0)
    for bad in ({"groups": [{"code": "a"}, {"code": "a"}]}, {"freeze_s": -1},
                {"group_prizes": {"a": [{"name": "x", "count": -1}]}}):
        with pytest.raises(ValueError):
            RoundRules.from_mapping(bad)


# --- entries that do not count ---------------------------------------------------------

def test_answered_all_needs_a_choice_for_every_question() -> None:
    assert domain.answered_all({"q1": ["A"], "q2": ["B", "C"]}, ["q1", "q2"])
    assert not domain.answered_all({"q1": ["A"]}, ["q1", "q2"])
    assert not domain.answered_all({"q1": ["A"], "q2": []}, ["q1", "q2"])
    assert domain.answered_all({"q1": ["A"], "stray": []}, ["q1"])


@pytest.mark.parametrize(("required", "answered", "counts"),
                         [(False, False, True), (False, True, True), (True, True, True), (True, False, False)])
def test_entry_counts(required: bool, answered: bool, counts: bool) -> None:
    assert domain.entry_counts(required, answered) is counts


def test_best_attempt_skips_entries_that_do_not_count_but_counts_them_as_used() -> None:
    pid, other = uuid.UUID(int=1), uuid.UUID(int=2)

    def result(who: uuid.UUID, n: int, correct: int, counts: bool) -> Result:
        return Result(uuid.uuid4(), who, n, correct, 10, 1000, T0, T0 + timedelta(seconds=n), counts=counts)

    rows = [result(pid, 1, 7, True), result(pid, 2, 10, False), result(other, 1, 10, False)]
    best = domain.best_attempt_per_participant(rows)
    assert [(b.participant_id, b.result.correct, b.attempts_used) for b in best] == [(pid, 7, 2)]
    assert domain.prediction_truth("participants", best) == 1
    assert domain.prediction_truth("all_correct", best) == 0


# --- freeze ----------------------------------------------------------------------------

def test_freeze_instants() -> None:
    closes = T0 + timedelta(days=7)
    assert domain.freeze_at(closes, 0) is None
    at = domain.freeze_at(closes, 1800)
    assert at == closes - timedelta(minutes=30)
    margin = domain.FREEZE_CLOCK_MARGIN
    before, after = at - timedelta(seconds=1), at + timedelta(seconds=1)
    # Pre-freeze entries go to the frozen boards once the freeze is near, never later ones.
    assert not domain.on_frozen_board(before, at, at - margin - timedelta(seconds=1))
    assert domain.on_frozen_board(before, at, at - margin)
    assert domain.on_frozen_board(before, at, after)
    assert not domain.on_frozen_board(at, at, after)
    assert not domain.on_frozen_board(before, None, after)
    # The copy comes first once the freeze has begun or an entry is from after it.
    assert not domain.must_freeze_before_writing(at, before, [before])
    assert domain.must_freeze_before_writing(at, before, [before, at])
    assert domain.must_freeze_before_writing(at, at, [])
    assert not domain.must_freeze_before_writing(None, after, [after])


# --- units -----------------------------------------------------------------------------

def test_units_with_new_lineage() -> None:
    city, d1, d2, ward, street, lone = (uuid.UUID(int=i) for i in range(1, 7))
    old = {city: None, d1: city, d2: city, ward: d1, street: ward, lone: None}
    assert domain.units_with_new_lineage(old, dict(old)) == set()
    moved = {**old, ward: d2}
    assert domain.units_with_new_lineage(old, moved) == {ward, street}
    renamed_root = {k: v for k, v in old.items() if k != lone}
    assert domain.units_with_new_lineage(old, renamed_root) == set()  # a root dropped: no board changes
    assert domain.units_with_new_lineage(old, {**old, d1: None}) == {d1, ward, street}


def _unit(code: str, headcount: int, participants: int, block: str = "Xã, phường", leaf: bool = True,
          unit_id: uuid.UUID | None = None) -> UnitParticipation:
    return UnitParticipation(unit_id or uuid.uuid4(), code, f"Đơn vị {code}", block, None, headcount, participants,
                             participants * 2, leaf)


def test_rates_are_exact() -> None:
    unit = _unit("A", 3, 1)
    assert unit.exact_rate == Fraction(1, 3) and unit.rate == pytest.approx(1 / 3)
    assert not unit.complete and _unit("B", 3, 3).complete and _unit("C", 3, 4).complete
    assert _unit("D", 0, 5).rate is None and not _unit("D", 0, 5).complete
    assert domain.exact_rate(0.8) == Fraction(4, 5)


def test_collective_ranking_within_blocks_with_minimum_rates() -> None:
    units = [
        _unit("X1", 10, 10),  # 100 %
        _unit("X2", 200, 150),  # 75 %, large: needs 70 %
        _unit("X3", 10, 5),  # 50 %, small: needs 80 % → not eligible
        _unit("X4", 20, 10),  # 50 %, more participants than X3
        _unit("X5", 100, 70, block="Cơ quan hành chính"),  # 70 % exactly meets 0.7
        _unit("X6", 0, 3),  # no headcount: not ranked
        _unit("X7", 5, 5, block=""),  # no block: not ranked
        _unit("X8", 20, 10),  # ties X4 on rate and participants: the code decides
    ]
    rules = [MinRate(0, 99, 0.8), MinRate(100, None, 0.7)]
    ranked = domain.collective_ranking(units, rules)
    assert list(ranked) == ["Cơ quan hành chính", "Xã, phường"]
    assert [(e.unit.code, e.rank, e.eligible, e.min_rate) for e in ranked["Xã, phường"]] == [
        ("X1", 1, True, 0.8), ("X2", 2, True, 0.7), ("X4", None, False, 0.8), ("X8", None, False, 0.8),
        ("X3", None, False, 0.8),
    ]
    assert [(e.unit.code, e.rank) for e in ranked["Cơ quan hành chính"]] == [("X5", 1)]
    without = domain.collective_ranking(units)
    assert [(e.unit.code, e.rank) for e in without["Xã, phường"]] == [
        ("X1", 1), ("X2", 2), ("X4", 3), ("X8", 4), ("X3", 5)
    ]


@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 30), st.integers(0, 40)), max_size=25),
       st.floats(0, 1))
def test_collective_ranking_properties(raw: list[tuple[str, int, int]], minimum: float) -> None:
    units = [_unit(f"U{i:02}", h, p, block=b) for i, (b, h, p) in enumerate(raw)]
    ranked = domain.collective_ranking(units, [MinRate(0, None, minimum)])
    for block, listed in ranked.items():
        assert {e.unit.unit_id for e in listed} == {u.unit_id for u in units if u.block == block and u.headcount}
        eligible = [e for e in listed if e.eligible]
        assert [e.rank for e in eligible] == list(range(1, len(eligible) + 1))
        assert listed[: len(eligible)] == eligible  # the ineligible follow, unranked
        assert all(e.rank is None and (e.unit.exact_rate or 0) < domain.exact_rate(minimum)
                   for e in listed[len(eligible):])
        rates = [e.unit.exact_rate or Fraction(0) for e in eligible]
        assert rates == sorted(rates, reverse=True)


def test_min_rate_rules_are_checked_and_parsed() -> None:
    good = [MinRate(0, 49, 0.9), MinRate(50, 199, 0.8), MinRate(200, None, 0.7)]
    assert domain.min_rate_problems(good) == []
    assert [i for i, _ in domain.min_rate_problems([MinRate(0, 50, 0.9), MinRate(50, None, 0.8)])] == [1]
    assert [i for i, _ in domain.min_rate_problems([MinRate(10, 5, 0.9)])] == [0]
    assert [i for i, _ in domain.min_rate_problems([MinRate(100, None, 0.9), MinRate(0, 1000, 0.5)])] == [1]
    assert domain.parse_min_rates("0-49:0.9, 50-199:0.8,200-:0.7") == good
    assert domain.parse_min_rates("") == []
    for bad in ("0-49", "0:0.9", "a-b:0.1", "0-1:x"):
        with pytest.raises(ValueError):
            domain.parse_min_rates(bad)


def test_top_units_and_units_below_target() -> None:
    units = [_unit("B", 10, 10), _unit("A", 10, 10), _unit("C", 10, 2), _unit("D", 0, 0),
             _unit("E", 10, 7, leaf=False), _unit("F", 4, 3)]
    assert [u.code for u in domain.top_units(units, 3)] == ["A", "B", "F"]  # 100 %, 100 % by code, 75 %
    # Leaves with a headcount under 80 %, lowest first; E has sub-units, D no headcount.
    assert [u.code for u in domain.units_below_target(units, 0.8)] == ["C", "F"]
    assert [u.code for u in domain.units_below_target(units, 0.75)] == ["C"]
    assert domain.units_below_target(units, 0) == []


# --- reports ---------------------------------------------------------------------------

def test_score_bands_one_per_score() -> None:
    bands, all_correct = domain.score_bands({(20, 20): 3, (18, 20): 2, (0, 20): 1, (5, 5): 4})
    assert [b.label for b in bands] == [str(i) for i in range(21)]
    assert {b.label: b.entries for b in bands if b.entries} == {"0": 1, "5": 4, "18": 2, "20": 3}
    assert all_correct == 7
    assert domain.score_bands({}) == ([], 0)


def test_score_bands_for_long_attempts_are_ranges() -> None:
    bands, all_correct = domain.score_bands({(0, 60): 1, (59, 60): 2, (60, 60): 1, (6, 60): 5})
    assert [b.label for b in bands][:2] == ["0-6", "7-13"] and bands[-1].label == "56-60"
    assert sum(b.entries for b in bands) == 9 and bands[0].entries == 6 and all_correct == 1


@given(st.dictionaries(st.tuples(st.integers(0, 40), st.integers(1, 40)).filter(lambda t: t[0] <= t[1]),
                       st.integers(1, 5), max_size=15))
def test_score_bands_cover_every_entry_once(by_score: dict[tuple[int, int], int]) -> None:
    bands, all_correct = domain.score_bands(by_score)
    assert sum(b.entries for b in bands) == sum(by_score.values())
    assert all_correct == sum(n for (c, t), n in by_score.items() if c == t)
    if bands:
        assert bands[0].min_correct == 0
        assert all(a.max_correct + 1 == b.min_correct for a, b in itertools.pairwise(bands))


# --- scheduled nudges ------------------------------------------------------------------

def _hanoi(day: int, hour: int, minute: int) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=domain.VIETNAM)


def test_due_slots_in_vietnam_time() -> None:
    times, hour = ["08:00", "16:00"], timedelta(hours=1)
    assert domain.due_slots(_hanoi(3, 7, 59), times, hour) == []
    assert domain.due_slots(_hanoi(3, 8, 0), times, hour) == [(date(2025, 3, 3), "08:00")]
    assert domain.due_slots(_hanoi(3, 8, 59), times, hour) == [(date(2025, 3, 3), "08:00")]
    assert domain.due_slots(_hanoi(3, 9, 0), times, hour) == []  # too late: not sent at all
    # 08:00 in Hanoi is 01:00 UTC.
    assert domain.due_slots(datetime(2025, 3, 3, 1, 5, tzinfo=UTC), times, hour) == [(date(2025, 3, 3), "08:00")]
    # A slot just before midnight stays due after it, on its own day.
    assert domain.due_slots(_hanoi(4, 0, 10), ["23:50"], hour) == [(date(2025, 3, 3), "23:50")]


@pytest.mark.parametrize("bad", ["8:00", "24:00", "08:60", "0800", "ab:cd", ""])
def test_local_times_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        domain.parse_local_time(bad)
