"""Scoring rules: pure functions over plain data, no I/O (DESIGN.md "Facts from real contests").

- An answer is right only when exactly the key's set of options is chosen.
- The best attempt of a participant counts; the earliest among equal ones.
- The final ranking follows the contest's tie-break criteria in their configured order,
  then always submitted_at and participant id, so it never depends on chance or on the
  order rows arrive in.
- The live board orders by one exact integer per participant (Redis sorted-set score).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args
from uuid import UUID

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
    correct = 0
    for question_id in question_ids:
        key = answer_key.get(question_id)
        chosen = answers.get(question_id)
        if key and chosen is not None and set(chosen) == set(key):
            correct += 1
    return correct, len(question_ids)


def duration_ms(started_at: datetime, submitted_at: datetime) -> int:
    """Whole milliseconds from start to submission; never negative (clocks of two
    machines may disagree by a little)."""
    return max(0, (submitted_at - started_at) // _ONE_MS)


def submitted_offset_s(opens_at: datetime, submitted_at: datetime) -> int:
    """Whole seconds from the round's opening to the submission; never negative."""
    return max(0, int((submitted_at - opens_at).total_seconds()))


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


@dataclass(frozen=True, slots=True)
class RoundRules:
    """The parts of a round's rules that ranking and prizes need."""

    tie_break: tuple[Criterion, ...] = DEFAULT_TIE_BREAK
    prizes: tuple[PrizeTier, ...] = ()
    prize_scope: PrizeScope = "round"
    prediction_target: PredictionTarget | None = None

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
        prizes = tuple(PrizeTier(str(p["name"]), int(p["count"])) for p in rules.get("prizes") or ())
        if any(p.count < 0 for p in prizes):
            raise ValueError("a prize count cannot be negative")
        return cls(
            tie_break=parse_tie_break(rules.get("tie_break") or DEFAULT_TIE_BREAK),
            prizes=prizes,
            prize_scope=scope,
            prediction_target=target,
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
    best: dict[UUID, Result] = {}
    used: dict[UUID, int] = {}
    for result in results:
        pid = result.participant_id
        used[pid] = max(used.get(pid, 0), result.attempt_number)
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
) -> list[Winner]:
    """Walk the prize plan in order, giving each tier's prizes to the next best entrants.
    One prize per person; `ineligible` are those who may not win again (prize scope
    `contest`: winners of the contest's earlier rounds)."""
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
                )
            )
            given += 1
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
