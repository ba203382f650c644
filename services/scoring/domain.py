"""Scoring rules: pure functions over plain data, no I/O (DESIGN.md "Facts from real contests").

- An answer is right only when exactly the key's set of options is chosen.
- The best attempt of a participant counts; the earliest among equal ones.
- The final ranking follows the contest's tie-break criteria in their configured order,
  then always submitted_at and participant id, so it never depends on chance or on the
  order rows arrive in.
- The live board orders by one exact integer per participant (Redis sorted-set score).
- An entry counts only if the round's rules accept it (every question answered, when
  the round requires it); one that does not is kept for its author but never ranked.
- Rounds with groups rank each group apart, each with its own prize plan.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from fractions import Fraction
from typing import Any, Literal, get_args
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Criterion = Literal["correct", "prediction_error", "duration", "submitted_at", "started_at", "attempts_used"]
CRITERIA: tuple[Criterion, ...] = get_args(Criterion)
# The most common order in real contests (DESIGN.md), used when a round names none.
DEFAULT_TIE_BREAK: tuple[Criterion, ...] = ("correct", "prediction_error", "duration", "submitted_at")

PredictionTarget = Literal["participants", "all_correct"]
PREDICTION_TARGETS: tuple[PredictionTarget, ...] = get_args(PredictionTarget)

PrizeScope = Literal["round", "contest"]
PRIZE_SCOPES: tuple[PrizeScope, ...] = get_args(PrizeScope)

_ONE_MS = timedelta(milliseconds=1)


# --- scoring one attempt ---------------------------------------------------------------

def score(
    answers: Mapping[str, Collection[str]],
    question_ids: Sequence[str],
    answer_key: Mapping[str, Collection[str]],
) -> tuple[int, int]:
    """(correct, total) of one attempt. Unanswered questions count wrong, answers to
    questions outside the attempt are ignored, and a question missing from the key can
    never be right (an empty key must not reward an empty answer)."""
    correct = sum(
        1 for question_id in question_ids
        if answer_is_correct(answers.get(question_id), answer_key.get(question_id, ()))
    )
    return correct, len(question_ids)


def answer_is_correct(chosen: Collection[str] | None, key: Collection[str]) -> bool:
    """One answer is right only when exactly the key's set of options is chosen; nothing
    chosen is wrong, and an empty key can never be right. quiz shows reviews with its own
    copy of this rule (services/quiz/domain.py `answer_is_correct`); the two are checked
    against each other."""
    return bool(key) and chosen is not None and set(chosen) == set(key)


def duration_ms(started_at: datetime, submitted_at: datetime) -> int:
    """Whole milliseconds from start to submission; never negative (clocks of two
    machines may disagree by a little)."""
    return max(0, (submitted_at - started_at) // _ONE_MS)


def submitted_offset_s(opens_at: datetime, submitted_at: datetime) -> int:
    """Whole seconds from the round's opening to the submission; never negative."""
    return max(0, int((submitted_at - opens_at).total_seconds()))


def answered_all(answers: Mapping[str, Collection[str]], question_ids: Sequence[str]) -> bool:
    """Every question of the attempt has at least one option chosen."""
    return all(answers.get(q) for q in question_ids)


def entry_counts(require_all_answered: bool, answered_every_question: bool) -> bool:
    """Whether an entry takes part in boards, ranking and truth. Real contests often
    say "an entry counts only if every question is answered" (DESIGN.md)."""
    return answered_every_question or not require_all_answered


def freeze_at(closes_at: datetime, freeze_s: int) -> datetime | None:
    """From this instant until the round is final the public board shows how it stood
    then; None when the round never freezes."""
    return closes_at - timedelta(seconds=freeze_s) if freeze_s > 0 else None


# Entries submitted before the freeze are written to the frozen boards as well from this
# long before freeze_at on: a board read on a machine whose clock runs a little ahead may
# take the frozen copy early, and must still see every one of them.
FREEZE_CLOCK_MARGIN = timedelta(minutes=1)
# The largest headcount registration accepts for a unit (its HEADCOUNT_MAX).
MAX_HEADCOUNT = 10_000_000


def freeze_is_near(freeze_at: datetime | None, now: datetime) -> bool:
    return freeze_at is not None and now >= freeze_at - FREEZE_CLOCK_MARGIN


def on_frozen_board(submitted_at: datetime, freeze_at: datetime | None, now: datetime) -> bool:
    """Whether an entry is written to the frozen boards too: it was submitted before the
    freeze, and the copy may have been taken already."""
    return freeze_at is not None and freeze_is_near(freeze_at, now) and submitted_at < freeze_at


def must_freeze_before_writing(freeze_at: datetime | None, now: datetime, submitted: Iterable[datetime]) -> bool:
    """Take the frozen copy before writing these entries: the freeze has begun, or one of
    them was submitted after it (it must never reach the copy)."""
    return freeze_at is not None and (now >= freeze_at or any(s >= freeze_at for s in submitted))


# --- the live board's score ------------------------------------------------------------

CORRECT_BITS, DURATION_BITS, OFFSET_BITS = 7, 22, 24
MAX_CORRECT = (1 << CORRECT_BITS) - 1  # 127; attempts have at most 35 questions
MAX_DURATION_MS = (1 << DURATION_BITS) - 1  # ~70 minutes; time limits are 10-15
MAX_OFFSET_S = (1 << OFFSET_BITS) - 1  # ~194 days; rounds last a week or two
_DURATION_SHIFT = OFFSET_BITS
_CORRECT_SHIFT = OFFSET_BITS + DURATION_BITS
# A Redis score is a double: integers below 2**53 are held exactly, so ZADD GT and
# ZREVRANGE compare exactly what live_score computed.
LIVE_SCORE_LIMIT = 1 << (CORRECT_BITS + DURATION_BITS + OFFSET_BITS)
assert LIVE_SCORE_LIMIT <= 1 << 53


def live_score(correct: int, duration_ms: int, submitted_offset_s: int) -> int:
    """Higher is better: more correct, then shorter duration, then earlier submission.
    Durations and offsets beyond their fields saturate (they then tie with each other)."""
    if not 0 <= correct <= MAX_CORRECT:
        raise ValueError(f"correct must be within 0..{MAX_CORRECT}, not {correct}")
    duration = min(max(duration_ms, 0), MAX_DURATION_MS)
    offset = min(max(submitted_offset_s, 0), MAX_OFFSET_S)
    return (correct << _CORRECT_SHIFT) | ((MAX_DURATION_MS - duration) << _DURATION_SHIFT) | (MAX_OFFSET_S - offset)


def decode_live_score(live: float) -> tuple[int, int]:
    """(correct, duration_ms) of a live score (Redis hands scores back as floats)."""
    value = int(live)
    return value >> _CORRECT_SHIFT, MAX_DURATION_MS - ((value >> _DURATION_SHIFT) & MAX_DURATION_MS)


# --- results, rankings, prizes ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Result:
    """One scored attempt."""

    attempt_id: UUID
    participant_id: UUID
    attempt_number: int
    correct: int
    total: int
    duration_ms: int
    started_at: datetime
    submitted_at: datetime
    prediction: int | None = None
    unit_id: UUID | None = None
    group: str | None = None
    # False: kept for its author, never ranked (see entry_counts).
    counts: bool = True


@dataclass(frozen=True, slots=True)
class BestAttempt:
    """The attempt that counts for a participant, and how many attempts they used (the
    highest attempt number seen: an attempt started and never submitted still counts)."""

    result: Result
    attempts_used: int

    @property
    def participant_id(self) -> UUID:
        return self.result.participant_id


@dataclass(frozen=True, slots=True)
class RankedEntry:
    rank: int
    best: BestAttempt
    prediction_error: int | None

    @property
    def participant_id(self) -> UUID:
        return self.best.result.participant_id


@dataclass(frozen=True, slots=True)
class PrizeTier:
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Winner:
    rank: int
    participant_id: UUID
    prize: str
    correct: int
    duration_ms: int
    prediction_error: int | None
    unit_id: UUID | None
    group: str | None = None


def _prize_plan(raw: Iterable[Mapping[str, Any]]) -> tuple[PrizeTier, ...]:
    plan = tuple(PrizeTier(str(p["name"]), int(p["count"])) for p in raw)
    if any(p.count < 0 for p in plan):
        raise ValueError("a prize count cannot be negative")
    return plan


@dataclass(frozen=True, slots=True)
class RoundRules:
    """The parts of a round's rules that ranking, prizes, boards need."""

    tie_break: tuple[Criterion, ...] = DEFAULT_TIE_BREAK
    prizes: tuple[PrizeTier, ...] = ()
    prize_scope: PrizeScope = "round"
    prediction_target: PredictionTarget | None = None
    # Group codes in their configured order; empty: one ranking for everyone.
    groups: tuple[str, ...] = ()
    # (group code, plan) pairs for groups with a plan of their own; the others use `prizes`.
    group_prizes: tuple[tuple[str, tuple[PrizeTier, ...]], ...] = ()
    require_all_answered: bool = False
    freeze_s: int = 0

    def prizes_for(self, group: str | None) -> tuple[PrizeTier, ...]:
        for code, plan in self.group_prizes:
            if code == group:
                return plan
        return self.prizes

    @classmethod
    def from_mapping(cls, rules: Mapping[str, Any]) -> RoundRules:
        """From the `rules` stored with a round (round.opened's fields); ValueError when
        they name a criterion, scope or target this service does not know."""
        prediction = rules.get("prediction") or None
        target = prediction.get("target") if isinstance(prediction, Mapping) else None
        if target is not None and target not in PREDICTION_TARGETS:
            raise ValueError(f"unknown prediction target {target!r}")
        scope = rules.get("prize_scope") or "round"
        if scope not in PRIZE_SCOPES:
            raise ValueError(f"unknown prize scope {scope!r}")
        groups = tuple(str(g["code"]) if isinstance(g, Mapping) else str(g) for g in rules.get("groups") or ())
        if len(set(groups)) != len(groups):
            raise ValueError("a group is named twice")
        group_prizes = tuple(
            (str(code), _prize_plan(plan)) for code, plan in sorted((rules.get("group_prizes") or {}).items())
        )
        freeze_s = int(rules.get("freeze_s") or 0)
        if freeze_s < 0:
            raise ValueError("freeze_s cannot be negative")
        return cls(
            tie_break=parse_tie_break(rules.get("tie_break") or DEFAULT_TIE_BREAK),
            prizes=_prize_plan(rules.get("prizes") or ()),
            prize_scope=scope,
            prediction_target=target,
            groups=groups,
            group_prizes=group_prizes,
            require_all_answered=bool(rules.get("require_all_answered")),
            freeze_s=freeze_s,
        )


def parse_tie_break(criteria: Iterable[str]) -> tuple[Criterion, ...]:
    parsed: list[Criterion] = []
    for criterion in criteria:
        if criterion not in CRITERIA:
            raise ValueError(f"unknown tie-break criterion {criterion!r}")
        if criterion in parsed:
            raise ValueError(f"tie-break criterion {criterion!r} named twice")
        parsed.append(criterion)  # type: ignore[arg-type]
    return tuple(parsed)


def attempt_order_key(result: Result) -> tuple[int, int, datetime, int, UUID]:
    """Better attempts sort first: more correct, shorter, earlier; the attempt number and
    id only settle exact ties so the choice never depends on row order."""
    return (-result.correct, result.duration_ms, result.submitted_at, result.attempt_number, result.attempt_id)


def best_attempt_per_participant(results: Iterable[Result]) -> list[BestAttempt]:
    """Among counting attempts only; attempts used counts every attempt, counting or
    not. A participant with no counting attempt is no entrant."""
    best: dict[UUID, Result] = {}
    used: dict[UUID, int] = {}
    for result in results:
        pid = result.participant_id
        used[pid] = max(used.get(pid, 0), result.attempt_number)
        if not result.counts:
            continue
        current = best.get(pid)
        if current is None or attempt_order_key(result) < attempt_order_key(current):
            best[pid] = result
    return [BestAttempt(result, used[pid]) for pid, result in best.items()]


def prediction_truth(target: PredictionTarget | None, best_results: Sequence[BestAttempt]) -> int | None:
    """The true figure a round's prediction question asked for; None when it asked none."""
    if target is None:
        return None
    if target == "participants":
        return len({b.participant_id for b in best_results})
    if target == "all_correct":
        return sum(1 for b in best_results if b.result.correct == b.result.total)
    raise ValueError(f"unknown prediction target {target!r}")


def prediction_error(prediction: int | None, truth: int | None) -> int | None:
    if prediction is None or truth is None:
        return None
    return abs(prediction - truth)


def _criterion_value(criterion: Criterion, best: BestAttempt, error: int | None) -> Any:
    result = best.result
    if criterion == "correct":
        return -result.correct
    if criterion == "prediction_error":
        # No prediction (or nothing to compare it with) ranks after every prediction.
        return (1, 0) if error is None else (0, error)
    if criterion == "duration":
        return result.duration_ms
    if criterion == "submitted_at":
        return result.submitted_at
    if criterion == "started_at":
        return result.started_at
    if criterion == "attempts_used":
        return best.attempts_used
    raise ValueError(f"unknown tie-break criterion {criterion!r}")


def final_ranking(
    best_results: Iterable[BestAttempt], tie_break: Sequence[str], truth: int | None
) -> list[RankedEntry]:
    """Distinct ranks 1..n by the configured criteria in order, then submitted_at, then
    participant id: two entrants never share a rank and never draw lots."""
    criteria = parse_tie_break(tie_break)
    with_errors = [(best, prediction_error(best.result.prediction, truth)) for best in best_results]

    def key(item: tuple[BestAttempt, int | None]) -> tuple[Any, ...]:
        best, error = item
        configured = tuple(_criterion_value(c, best, error) for c in criteria)
        return (*configured, best.result.submitted_at, best.participant_id)

    with_errors.sort(key=key)
    return [RankedEntry(rank, best, error) for rank, (best, error) in enumerate(with_errors, start=1)]


def allocate_prizes(
    ranking: Sequence[RankedEntry],
    prizes: Sequence[PrizeTier],
    ineligible: Collection[UUID] = frozenset(),
    *,
    group: str | None = None,
) -> list[Winner]:
    """Walk the prize plan in order, giving each tier's prizes to the next best entrants.
    One prize per person; `ineligible` are those who may not win again (prize scope
    `contest`: winners of the contest's earlier rounds). A tie at a prize boundary
    cannot happen: the ranking is total (final_ranking)."""
    awarded: set[UUID] = set(ineligible)
    candidates = iter(ranking)
    winners: list[Winner] = []
    for tier in prizes:
        given = 0
        while given < tier.count:
            entry = next(candidates, None)
            if entry is None:
                return winners
            if entry.participant_id in awarded:
                continue
            awarded.add(entry.participant_id)
            result = entry.best.result
            winners.append(
                Winner(
                    rank=entry.rank,
                    participant_id=entry.participant_id,
                    prize=tier.name,
                    correct=result.correct,
                    duration_ms=result.duration_ms,
                    prediction_error=entry.prediction_error,
                    unit_id=result.unit_id,
                    group=group,
                )
            )
            given += 1
    return winners


@dataclass(frozen=True, slots=True)
class GroupRanking:
    group: str | None
    ranking: list[RankedEntry]


def final_standings(best_results: Iterable[BestAttempt], rules: RoundRules, truth: int | None) -> list[GroupRanking]:
    """One ranking for everyone, or one per configured group (in the configured order).
    An entrant is in the group of the attempt that counts. In a round with groups an
    entrant of no configured group is ranked in none (quiz does not let one start)."""
    best = list(best_results)
    if not rules.groups:
        return [GroupRanking(None, final_ranking(best, rules.tie_break, truth))]
    by_group: dict[str, list[BestAttempt]] = defaultdict(list)
    for b in best:
        if b.result.group is not None:
            by_group[b.result.group].append(b)
    return [GroupRanking(g, final_ranking(by_group.get(g, []), rules.tie_break, truth)) for g in rules.groups]


def award_prizes(
    standings: Sequence[GroupRanking], rules: RoundRules, ineligible: Collection[UUID] = frozenset()
) -> list[Winner]:
    """Each group's plan down its own ranking; one prize per person across the round and,
    through `ineligible`, across the contest when the scope says so."""
    awarded: set[UUID] = set(ineligible)
    winners: list[Winner] = []
    for standing in standings:
        won = allocate_prizes(standing.ranking, rules.prizes_for(standing.group), awarded, group=standing.group)
        awarded.update(w.participant_id for w in won)
        winners.extend(won)
    return winners



def lineage(unit_id: UUID, parent_of: Mapping[UUID, UUID | None]) -> tuple[UUID, ...]:
    """The unit and its ancestors, nearest first: an entry counts on the board of every
    unit above its own. Stops at an unknown unit and at a cycle in bad data."""
    chain = [unit_id]
    parent = parent_of.get(unit_id)
    while parent is not None and parent not in chain:
        chain.append(parent)
        parent = parent_of.get(parent)
    return tuple(chain)


def units_with_new_lineage(old: Mapping[UUID, UUID | None], new: Mapping[UUID, UUID | None]) -> set[UUID]:
    """Units whose chain of ancestors differs between two trees: the boards their
    entrants count on changed (a unit moved, or one above it did)."""
    return {u for u in old.keys() | new.keys() if lineage(u, old) != lineage(u, new)}


# --- participation, collective ranking, reports ----------------------------------------

def exact_rate(value: float) -> Fraction:
    """A configured rate as the decimal the organiser typed (0.8 is 4/5, not the double
    nearest to it): a unit at exactly 80 % meets a minimum of 0.8."""
    return Fraction(repr(float(value)))


@dataclass(frozen=True, slots=True)
class UnitParticipation:
    """A unit's figures over its whole subtree (a district counts its wards): headcount,
    distinct participants with a submitted attempt, submitted attempts."""

    unit_id: UUID
    code: str
    name: str
    block: str
    parent_id: UUID | None
    headcount: int
    participants: int
    attempts: int
    is_leaf: bool

    @property
    def exact_rate(self) -> Fraction | None:
        return Fraction(self.participants, self.headcount) if self.headcount > 0 else None

    @property
    def rate(self) -> float | None:
        exact = self.exact_rate
        return None if exact is None else float(exact)

    @property
    def complete(self) -> bool:
        exact = self.exact_rate
        return exact is not None and exact >= 1


def by_rate(unit: UnitParticipation) -> tuple[Fraction, int, str, UUID]:
    """Best first: higher rate, then more participants, then unit code (then id, so two
    units never tie)."""
    return (-(unit.exact_rate or Fraction(0)), -unit.participants, unit.code, unit.unit_id)


def top_units(units: Iterable[UnitParticipation], n: int = 10) -> list[UnitParticipation]:
    return sorted((u for u in units if u.headcount > 0), key=by_rate)[:n]


@dataclass(frozen=True, slots=True)
class MinRate:
    """Units with min_headcount <= headcount <= max_headcount (None: no upper bound)
    must reach min_rate to be eligible for a collective prize."""

    min_headcount: int
    max_headcount: int | None
    min_rate: float

    def applies_to(self, headcount: int) -> bool:
        return self.min_headcount <= headcount and (self.max_headcount is None or headcount <= self.max_headcount)


def min_rate_problems(rules: Sequence[MinRate]) -> list[tuple[int, str]]:
    """(index, Vietnamese message) for each rule that is wrong on its own or overlaps an
    earlier one: a unit size must have at most one minimum."""
    problems: list[tuple[int, str]] = []
    for i, rule in enumerate(rules):
        if rule.min_headcount < 0:
            problems.append((i, "Biên chế tối thiểu không được âm."))
        elif rule.max_headcount is not None and rule.max_headcount < rule.min_headcount:
            problems.append((i, "Biên chế tối đa phải lớn hơn hoặc bằng biên chế tối thiểu."))
        elif not 0 <= rule.min_rate <= 1:
            problems.append((i, "Tỷ lệ tối thiểu phải trong khoảng 0..1."))
        else:
            for j, earlier in enumerate(rules[:i]):
                if _overlap(rule, earlier):
                    problems.append((i, f"Khoảng biên chế chồng lấn với quy định thứ {j + 1}."))
                    break
    return problems


def _overlap(a: MinRate, b: MinRate) -> bool:
    a_hi = math.inf if a.max_headcount is None else a.max_headcount
    b_hi = math.inf if b.max_headcount is None else b.max_headcount
    return a.min_headcount <= b_hi and b.min_headcount <= a_hi


def parse_min_rates(text: str) -> list[MinRate]:
    """The compact query form `0-99:0.9,100-:0.7` (sizes min-max, max optional); ValueError
    when malformed."""
    rules: list[MinRate] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        sizes, sep, rate = part.partition(":")
        low, dash, high = sizes.partition("-")
        if not sep or not dash:
            raise ValueError(f"không đúng dạng tối_thiểu-tối_đa:tỷ_lệ: {part!r}")
        try:
            rules.append(MinRate(int(low), int(high) if high.strip() else None, float(rate)))
        except ValueError:
            raise ValueError(f"không đúng dạng tối_thiểu-tối_đa:tỷ_lệ: {part!r}") from None
    return rules


@dataclass(frozen=True, slots=True)
class CollectiveEntry:
    unit: UnitParticipation
    rank: int | None  # None: below the minimum rate for its size, listed but not ranked
    eligible: bool
    min_rate: float | None


def collective_ranking(
    units: Iterable[UnitParticipation], min_rates: Sequence[MinRate] = ()
) -> dict[str, list[CollectiveEntry]]:
    """Units ranked by participation rate within each block (blocks in name order). Only
    units with a block and a headcount take part. Eligible units get ranks 1..n (higher
    rate, then more participants, then code); units below the minimum rate for their
    size follow, unranked."""
    blocks: dict[str, list[CollectiveEntry]] = {}
    by_block: dict[str, list[UnitParticipation]] = defaultdict(list)
    for unit in units:
        if unit.block and unit.headcount > 0:
            by_block[unit.block].append(unit)
    for block in sorted(by_block):
        eligible: list[CollectiveEntry] = []
        below: list[CollectiveEntry] = []
        for unit in sorted(by_block[block], key=by_rate):
            rule = next((r for r in min_rates if r.applies_to(unit.headcount)), None)
            ok = rule is None or (unit.exact_rate or Fraction(0)) >= exact_rate(rule.min_rate)
            entry = CollectiveEntry(unit, None, ok, None if rule is None else rule.min_rate)
            (eligible if ok else below).append(entry)
        blocks[block] = [
            CollectiveEntry(e.unit, rank, True, e.min_rate) for rank, e in enumerate(eligible, start=1)
        ] + below
    return blocks


def units_below_target(units: Iterable[UnitParticipation], target_rate: float) -> list[UnitParticipation]:
    """Leaf units with a headcount whose rate is under the target, lowest rate first:
    the ones a nudge asks coordinators to push."""
    target = exact_rate(target_rate)
    below = [u for u in units if u.is_leaf and u.headcount > 0 and (u.exact_rate or Fraction(0)) < target]
    return sorted(below, key=lambda u: (u.exact_rate, u.code, u.unit_id))


@dataclass(frozen=True, slots=True)
class ScoreBand:
    label: str
    min_correct: int
    max_correct: int
    entries: int


# One band per score up to the largest attempts of real contests (DESIGN.md: 5-35).
_ONE_BAND_PER_SCORE_UP_TO = 35


def score_bands(entries_by_score: Mapping[tuple[int, int], int]) -> tuple[list[ScoreBand], int]:
    """Bands of entries by correct answers, and the number of entries with every answer
    right. `entries_by_score`: (correct, total) → entries. One band per score 0..max
    total when attempts have at most 35 questions, else 10 equal bands."""
    all_correct = sum(n for (correct, total), n in entries_by_score.items() if correct == total)
    if not entries_by_score:
        return [], 0
    top = max(total for _, total in entries_by_score)
    width = 1 if top <= _ONE_BAND_PER_SCORE_UP_TO else math.ceil((top + 1) / 10)
    counts: dict[int, int] = defaultdict(int)
    for (correct, _), n in entries_by_score.items():
        counts[correct // width] += n
    bands = []
    for i in range(top // width + 1):
        low, high = i * width, min(top, (i + 1) * width - 1)
        label = str(low) if low == high else f"{low}-{high}"
        bands.append(ScoreBand(label, low, high, counts.get(i, 0)))
    return bands, all_correct


# --- scheduled nudges ------------------------------------------------------------------

def _vietnam() -> tzinfo:
    try:
        return ZoneInfo("Asia/Ho_Chi_Minh")
    except ZoneInfoNotFoundError:  # no tz database on the machine: Vietnam keeps UTC+7 all year
        return timezone(timedelta(hours=7), "ICT")


VIETNAM = _vietnam()


def parse_local_time(text: str) -> time:
    """`HH:MM`, 24-hour; ValueError otherwise."""
    hours, sep, minutes = text.partition(":")
    if not (sep and len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit()):
        raise ValueError(f"giờ phải có dạng HH:MM, không phải {text!r}")
    return time(int(hours), int(minutes))  # raises ValueError for 24:00 or 08:60


def due_slots(now: datetime, times_local: Iterable[str], lateness: timedelta) -> list[tuple[date, str]]:
    """The (local day, HH:MM) slots whose time has come and is at most `lateness` ago: a
    worker down at 08:00 still sends at 08:20, not at 23:00."""
    local_now = now.astimezone(VIETNAM)
    due: list[tuple[date, str]] = []
    for text in times_local:
        at = parse_local_time(text)
        for day in (local_now.date() - timedelta(days=1), local_now.date()):
            slot = datetime.combine(day, at, VIETNAM)
            if slot <= local_now < slot + lateness:
                due.append((day, text))
    return due
