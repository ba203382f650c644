"""The quiz's rules, pure: round status and what may still change in a round, when an
attempt may start and be submitted, the participant's group, the random draw within
topic and difficulty quotas (replayable from the seed stored with each attempt), and
validation of contest settings and of what organisers upload. No I/O, no framework, no SQL."""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RoundStatus = Literal["scheduled", "open", "closed", "final"]
AttemptStatus = Literal["running", "submitted", "expired"]

TIE_BREAK_CRITERIA = ("correct", "prediction_error", "duration", "submitted_at", "started_at", "attempts_used")
DEFAULT_TIE_BREAK = ("correct", "prediction_error", "duration", "submitted_at")
PRIZE_SCOPES = ("round", "contest")
PREDICTION_TARGETS = ("participants", "all_correct")
OPTION_LETTERS = "ABCDEF"
DIFFICULTIES = (1, 2, 3)
# Real contests allow 1, a handful (7) or unlimited (no limit at all) attempts per round.
MAX_ATTEMPTS = 1000
GROUP_CODE = re.compile(r"^[a-z0-9_]{1,40}$")
# Rounds are shown in Vietnam's time. Vietnam keeps no daylight saving time, so a
# machine without the tz database can fall back on the fixed offset.
try:
    CONTEST_ZONE: Any = ZoneInfo("Asia/Ho_Chi_Minh")
except ZoneInfoNotFoundError:  # pragma: no cover - depends on the machine
    CONTEST_ZONE = timezone(timedelta(hours=7), "ICT")


@dataclass(frozen=True, slots=True)
class Prediction:
    text: str
    target: Literal["participants", "all_correct"]


@dataclass(frozen=True, slots=True)
class Prize:
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Group:
    """A separate ranking with its own question set: civil servants and citizens, say."""

    code: str
    name: str
    topics: tuple[str, ...] = ()  # the bank topics its attempts draw from; empty = every topic

    def draws_from(self, topic: str) -> bool:
        return not self.topics or topic_key(topic) in {topic_key(t) for t in self.topics}


@dataclass(frozen=True, slots=True)
class ContestSettings:
    """The settings of a contest that a round's attempts depend on. Copied into each
    round when it opens (and announced in round.opened), so changing the contest later
    changes the rounds still to open, never one already running or its replays."""

    groups: tuple[Group, ...] = ()
    default_group: str | None = None
    require_all_answered: bool = False

    def group(self, code: str | None) -> Group | None:
        return next((g for g in self.groups if g.code == code), None)


@dataclass(frozen=True, slots=True)
class Contest:
    id: UUID
    slug: str
    title: str
    rules: str
    tie_break: tuple[str, ...]
    prize_scope: str
    settings: ContestSettings = ContestSettings()


@dataclass(frozen=True, slots=True)
class Quotas:
    """Exact numbers of questions per topic and per difficulty in every attempt (see draw_questions)."""

    topics: Mapping[str, int] = field(default_factory=dict)
    difficulties: Mapping[int, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.topics or self.difficulties)

    def as_json(self) -> dict[str, dict[str, int]]:
        return {"topics": dict(self.topics), "difficulties": {str(d): n for d, n in self.difficulties.items()}}

    @classmethod
    def from_json(cls, value: Mapping[str, Mapping[str, int]] | None) -> Quotas:
        value = value or {}
        return cls(dict(value.get("topics", {})), {int(d): n for d, n in value.get("difficulties", {}).items()})


@dataclass(frozen=True, slots=True)
class Round:
    id: UUID
    contest_id: UUID
    number: int
    title: str
    opens_at: datetime
    closes_at: datetime
    question_count: int
    time_limit_s: int
    grace_s: int
    max_attempts: int | None  # None = unlimited
    prediction: Prediction | None = None
    prizes: tuple[Prize, ...] = ()
    quotas: Quotas = Quotas()
    group_prizes: Mapping[str, tuple[Prize, ...]] | None = None  # None = `prizes` for every group
    freeze_minutes: int = 0
    question_ids: tuple[UUID, ...] | None = None  # the bank snapshot, set when the round opens
    settings: ContestSettings | None = None  # the contest's settings, copied when the round opens
    opened_at: datetime | None = None
    closed_at: datetime | None = None  # closed early by an organiser
    finalised_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QuestionRef:
    """What the draw needs to know of a question."""

    id: UUID
    topic: str
    difficulty: int


@dataclass(frozen=True, slots=True)
class Option:
    id: str  # the bank's letter, A..F, whatever order it is shown in
    text: str


@dataclass(frozen=True, slots=True)
class Question:
    id: UUID
    topic: str
    difficulty: int
    text: str
    options: tuple[Option, ...]
    correct: tuple[str, ...]
    explanation: str = ""

    @property
    def multiple(self) -> bool:
        return len(self.correct) > 1

    @property
    def ref(self) -> QuestionRef:
        return QuestionRef(self.id, self.topic, self.difficulty)


@dataclass(frozen=True, slots=True)
class Attempt:
    id: UUID
    round_id: UUID
    participant_id: UUID
    participant_name: str
    unit_id: UUID | None
    group: str | None
    attempt_number: int
    seed: int
    question_ids: tuple[UUID, ...]
    started_at: datetime
    deadline_at: datetime
    submitted_at: datetime | None = None
    answers: dict[str, list[str]] | None = None
    prediction: int | None = None


# --- rounds ---------------------------------------------------------------------------

def effective_close(round_: Round) -> datetime:
    """When the round stopped (or will stop) taking new attempts."""
    if round_.closed_at is not None and round_.closed_at < round_.closes_at:
        return round_.closed_at
    return round_.closes_at


def round_status(round_: Round, now: datetime) -> RoundStatus:
    if round_.finalised_at is not None:
        return "final"
    # An organiser's close wins even over a round that has not opened yet: closing a
    # scheduled round cancels it rather than leaving it to open later.
    if round_.closed_at is not None and round_.closed_at <= now:
        return "closed"
    if now < round_.opens_at:
        return "scheduled"
    if now < round_.closes_at:
        return "open"
    return "closed"


def accepts_start(round_: Round, now: datetime) -> bool:
    return round_status(round_, now) == "open"


def has_attempts_left(round_: Round, attempts_used: int) -> bool:
    return round_.max_attempts is None or attempts_used < round_.max_attempts


def round_change_refusal(
    round_: Round, changed: Collection[str], closes_at: datetime | None, now: datetime
) -> str | None:
    """Why an organiser may not change these settings of the round now, or None.

    Everything may change while the round is scheduled; once it opened, its settings are
    what round.opened announced and what attempts were drawn with, so the only change
    left is to extend `closes_at` while it is still open."""
    status = round_status(round_, now)
    if status == "scheduled" and round_.opened_at is None:
        return None
    if set(changed) <= {"closes_at"} and status == "open" and round_.closed_at is None:
        if closes_at is None or closes_at >= round_.closes_at:
            return None
        return "Khi vòng thi đang mở, chỉ được lùi thời điểm đóng về sau."
    return "Chỉ được sửa vòng thi khi chưa mở (khi đang mở, chỉ được lùi thời điểm đóng)."


def local_time(moment: datetime) -> datetime:
    """The moment as clocks in Vietnam show it (contests publish Asia/Ho_Chi_Minh times)."""
    return moment.astimezone(CONTEST_ZONE)


def is_round_final_ready(
    round_: Round, unsubmitted_deadlines: Iterable[datetime], now: datetime, in_flight_margin_s: float = 0
) -> bool:
    """A round becomes final once it is closed and no attempt can still be submitted.

    `unsubmitted_deadlines` are the deadlines (without grace) of its attempts not yet
    submitted. `in_flight_margin_s` is extra time for requests the gateway stamped in
    time but that have not reached the database yet; the submit statement refuses
    anything later than that, so once it has passed the count of submissions is final.
    """
    if round_.opened_at is None or round_.finalised_at is not None:
        return False
    margin = timedelta(seconds=in_flight_margin_s)
    if now < effective_close(round_) + margin:
        return False
    last_accepted = timedelta(seconds=round_.grace_s) + margin
    return all(now > deadline_at + last_accepted for deadline_at in unsubmitted_deadlines)


# --- attempts -------------------------------------------------------------------------

def deadline(started_at: datetime, time_limit_s: int) -> datetime:
    return started_at + timedelta(seconds=time_limit_s)


def submit_cutoff(attempt: Attempt, grace_s: int) -> datetime:
    """The last arrival instant a submission is accepted at (inclusive)."""
    return attempt.deadline_at + timedelta(seconds=grace_s)


def accepts_submit(arrived_at: datetime, attempt: Attempt, grace_s: int) -> bool:
    return arrived_at <= submit_cutoff(attempt, grace_s)


def attempt_status(attempt: Attempt, grace_s: int, now: datetime) -> AttemptStatus:
    return attempt_status_at(attempt.submitted_at, attempt.deadline_at, grace_s, now)


def attempt_status_at(
    submitted_at: datetime | None, deadline_at: datetime, grace_s: int, now: datetime
) -> AttemptStatus:
    """attempt_status from the attempt's times alone (a history line carries no more)."""
    if submitted_at is not None:
        return "submitted"
    return "running" if now <= deadline_at + timedelta(seconds=grace_s) else "expired"


def running_attempt(attempts: Iterable[Attempt], grace_s: int, now: datetime) -> Attempt | None:
    """The participant's attempt that can still be submitted, to resume instead of starting another."""
    for attempt in attempts:
        if attempt_status(attempt, grace_s, now) == "running":
            return attempt
    return None


class DrawImpossible(ValueError):
    """The pool cannot give an attempt that meets the question count and the quotas.
    `field` names the setting that cannot be met (as the admin API spells it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


_OTHER = object()  # the class of questions whose topic (or difficulty) has no quota


def draw_questions(bank: Sequence[QuestionRef], count: int, quotas: Quotas | None, seed: int) -> list[UUID]:
    """`count` distinct questions of `bank` in the order the attempt shows them, the same
    for the same seed and bank order (CPython's Mersenne Twister), so any attempt can be
    replayed for audit.

    Quotas are exact counts. A topic named in `quotas.topics` gives exactly that many
    questions (0 keeps it out); the rest of the attempt, `count` minus their sum, comes
    from topics the map does not name. Likewise and at the same time for
    `quotas.difficulties`: each question counts toward both its topic's and its
    difficulty's quota. Topics compare without regard to case and spacing.

    Within those constraints every selection is possible: the bank is walked in an order
    shuffled from the seed and each question is taken when some valid completion still
    exists with it (a small transportation problem, topic class × difficulty class, kept
    feasible incrementally), so the walk never dead-ends. The chosen questions are then
    shuffled once more. Without quotas this is `Random(seed).sample(bank, count)`.

    Raises DrawImpossible naming the quota (or `question_count`) the bank cannot meet.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    if len({q.id for q in bank}) != len(bank):
        raise ValueError("the bank lists a question twice")
    rng = random.Random(seed)
    if not quotas:
        if count > len(bank):
            raise _too_few("question_count", len(bank), count)
        return rng.sample([q.id for q in bank], count)

    plan = _QuotaPlan(bank, count, quotas)
    # Fisher-Yates from the end, walked lazily: each step brings a uniformly random
    # question not seen yet, and the walk stops as soon as the attempt is complete.
    order = list(bank)
    chosen: list[UUID] = []
    for last in range(len(order) - 1, -1, -1):
        if len(chosen) == count:
            break
        pick = rng.randrange(last + 1)
        order[pick], order[last] = order[last], order[pick]
        if plan.take(plan.cells[order[last].id]):
            chosen.append(order[last].id)
    if len(chosen) != count:  # pragma: no cover - _QuotaPlan keeps a completion feasible at every step
        raise AssertionError("the draw lost its feasible completion")
    rng.shuffle(chosen)
    return chosen


def draw_problem(bank: Sequence[QuestionRef], count: int, quotas: Quotas | None) -> DrawImpossible | None:
    """Why `draw_questions` would refuse this bank, or None when every seed can draw."""
    try:
        if not quotas:
            if count > len(bank):
                raise _too_few("question_count", len(bank), count)
        else:
            _QuotaPlan(bank, count, quotas)
    except DrawImpossible as problem:
        return problem
    return None


def _too_few(field: str, available: int, needed: int, what: str = "Ngân hàng câu hỏi") -> DrawImpossible:
    return DrawImpossible(field, f"{what} chỉ có {available} câu hỏi, cần {needed}.")


class _QuotaPlan:
    """Topic classes (each quota'd topic, and every other topic together) × difficulty
    classes, with how many questions each class still needs and each cell still offers.
    `flow` is one way to fill the needs from the cells, so the needs stay satisfiable."""

    def __init__(self, bank: Sequence[QuestionRef], count: int, quotas: Quotas) -> None:
        topic_quota: dict[str, int] = {}
        self.topic_names: dict[str, str] = {}
        for topic, n in quotas.topics.items():
            key = topic_key(topic)
            if key in topic_quota:
                raise ValueError(f"topic {topic!r} has two quotas")
            topic_quota[key], self.topic_names[key] = n, topic
        self.topic_quota, self.difficulty_quota = topic_quota, dict(quotas.difficulties)
        if any(n < 0 for n in (*topic_quota.values(), *self.difficulty_quota.values())):
            raise ValueError("quotas must not be negative")
        for field_name, quota in (("quotas.topics", topic_quota), ("quotas.difficulties", self.difficulty_quota)):
            if (total := sum(quota.values())) > count:
                raise DrawImpossible(field_name, f"Tổng định mức ({total}) vượt quá số câu hỏi ({count}).")
        if len(bank) < count:
            raise _too_few("question_count", len(bank), count)

        rows: list[object] = [*topic_quota, _OTHER]
        cols: list[object] = [*self.difficulty_quota, _OTHER]
        self.row_index = {key: i for i, key in enumerate(rows)}
        self.col_index = {key: j for j, key in enumerate(cols)}
        self.row_need = [*topic_quota.values(), count - sum(topic_quota.values())]
        self.col_need = [*self.difficulty_quota.values(), count - sum(self.difficulty_quota.values())]
        self.offer = [[0] * len(cols) for _ in rows]
        self.cells: dict[UUID, tuple[int, int]] = {}
        for question in bank:
            i, j = self.cells[question.id] = self.cell_of(question)
            self.offer[i][j] += 1
        self.flow = [[0] * len(cols) for _ in rows]
        while self._augment():
            pass
        if sum(map(sum, self.flow)) < count:
            raise self._explain(rows, cols, count)

    def cell_of(self, question: QuestionRef) -> tuple[int, int]:
        row = self.row_index.get(topic_key(question.topic), self.row_index[_OTHER])
        col = self.col_index.get(question.difficulty, self.col_index[_OTHER])
        return row, col

    def take(self, cell: tuple[int, int]) -> bool:
        """Consider one more question of `cell`, not seen before: True when it is taken
        (some valid completion uses it), False when it is passed over. Either way the
        remaining needs stay satisfiable by the questions not yet considered."""
        i, j = cell
        taken = self.row_need[i] > 0 and self.col_need[j] > 0 and (self.flow[i][j] > 0 or self._reroute_into(i, j))
        if taken:
            self.flow[i][j] -= 1
            self.row_need[i] -= 1
            self.col_need[j] -= 1
        self.offer[i][j] -= 1  # flow[i][j] is 0 here when not taken, so it still fits the offer
        return taken

    def _augment(self) -> bool:
        """One more unit of flow from a row short of its need to a column short of its
        need, along an alternating path (forward where the cell offers more, backward
        where it carries flow). False when there is none: the flow is maximal."""
        rows, cols = len(self.row_need), len(self.col_need)
        row_short = [self.row_need[i] - sum(self.flow[i]) for i in range(rows)]
        col_short = [self.col_need[j] - sum(self.flow[i][j] for i in range(rows)) for j in range(cols)]
        came_from_row: dict[int, int] = {}  # column -> the row it was reached from
        came_from_col: dict[int, int | None] = {i: None for i in range(rows) if row_short[i] > 0}
        frontier = list(came_from_col)
        while frontier:
            next_rows: list[int] = []
            for i in frontier:
                for j in range(cols):
                    if j in came_from_row or self.flow[i][j] >= self.offer[i][j]:
                        continue
                    came_from_row[j] = i
                    if col_short[j] > 0:
                        self._apply_path(j, came_from_row, came_from_col)
                        return True
                    for back in range(rows):
                        if back not in came_from_col and self.flow[back][j] > 0:
                            came_from_col[back] = j
                            next_rows.append(back)
            frontier = next_rows
        return False

    def _apply_path(self, j: int, came_from_row: dict[int, int], came_from_col: dict[int, int | None]) -> None:
        while True:
            i = came_from_row[j]
            self.flow[i][j] += 1
            previous = came_from_col[i]
            if previous is None:
                return
            self.flow[i][previous] -= 1
            j = previous

    def _reroute_into(self, i0: int, j0: int) -> bool:
        """Shift the flow along an alternating cycle so that cell (i0, j0) carries one
        unit, keeping every row and column total; False when no valid flow uses it."""
        rows, cols = len(self.row_need), len(self.col_need)
        # From column j0 (now one over) back to row i0 (one over too): leave a column
        # through a cell with flow, leave a row through a cell with room.
        came_from_col: dict[int, int] = {}  # row -> the column it was reached from
        came_from_row: dict[int, int | None] = {j0: None}  # column -> the row it was reached from
        frontier = [j0]
        while frontier:
            next_cols: list[int] = []
            for j in frontier:
                for i in range(rows):
                    if i in came_from_col or self.flow[i][j] == 0:
                        continue
                    came_from_col[i] = j
                    if i == i0:
                        self.flow[i0][j0] += 1
                        while True:
                            j = came_from_col[i]
                            self.flow[i][j] -= 1
                            back = came_from_row[j]
                            if back is None:
                                return True
                            self.flow[back][j] += 1
                            i = back
                    for k in range(cols):
                        if k not in came_from_row and (i, k) != (i0, j0) and self.flow[i][k] < self.offer[i][k]:
                            came_from_row[k] = i
                            next_cols.append(k)
            frontier = next_cols
        return False

    def _explain(self, rows: list[object], cols: list[object], count: int) -> DrawImpossible:
        row_offer = [sum(r) for r in self.offer]
        col_offer = [sum(self.offer[i][j] for i in range(len(rows))) for j in range(len(cols))]
        for i, key in enumerate(rows):
            if row_offer[i] >= self.row_need[i]:
                continue
            if key is _OTHER:
                return _too_few("quotas.topics", row_offer[i], self.row_need[i],
                                "Ngoài các chủ đề có định mức, ngân hàng")
            name = self.topic_names[str(key)]
            return _too_few(f"quotas.topics.{name}", row_offer[i], self.row_need[i], f"Chủ đề «{name}»")
        for j, key in enumerate(cols):
            if col_offer[j] >= self.col_need[j]:
                continue
            if key is _OTHER:
                return _too_few("quotas.difficulties", col_offer[j], self.col_need[j],
                                "Ngoài các độ khó có định mức, ngân hàng")
            return _too_few(f"quotas.difficulties.{key}", col_offer[j], self.col_need[j], f"Độ khó {key}")
        return DrawImpossible(
            "quotas", "Ngân hàng câu hỏi không đủ để đáp ứng cùng lúc định mức theo chủ đề và theo độ khó."
        )


# --- groups and the draw of an attempt --------------------------------------------------

class GroupRequired(ValueError):
    """The contest ranks groups separately and the participant belongs to none of them."""


def resolve_group(settings: ContestSettings, token_group: str | None) -> str | None:
    """The group an attempt belongs to. Without groups, whatever the token says (kept for
    reports). With groups, the one the token names (by code, or by code or name ignoring
    case and spacing, since registration stores the text people chose), else the
    contest's default group."""
    if not settings.groups:
        return token_group
    if token_group:
        if settings.group(token_group) is not None:
            return token_group
        wanted = text_key(token_group)
        for group in settings.groups:
            if wanted in (text_key(group.code), text_key(group.name)):
                return group.code
    if settings.default_group is not None and settings.group(settings.default_group) is not None:
        return settings.default_group
    raise GroupRequired(token_group or "")


def group_pool(bank: Sequence[QuestionRef], group: Group | None) -> list[QuestionRef]:
    """The questions a group's attempts draw from, in the bank's order."""
    if group is None or not group.topics:
        return list(bank)
    topics = {topic_key(t) for t in group.topics}
    return [q for q in bank if topic_key(q.topic) in topics]


def group_quotas(quotas: Quotas, group: Group | None) -> Quotas:
    """A round's quotas as they apply to one group: a topic quota binds only the groups
    whose question set has that topic (two groups may draw from disjoint topics);
    difficulty quotas bind every group."""
    if group is None or not group.topics:
        return quotas
    return Quotas({t: n for t, n in quotas.topics.items() if group.draws_from(t)}, quotas.difficulties)


def attempt_draw(bank: Sequence[QuestionRef], round_: Round, group_code: str | None, seed: int) -> list[UUID]:
    """The questions of an attempt of this group, from the round's snapshot (`bank`, in
    snapshot order) and the settings copied when the round opened: what a start draws,
    and what an audit replays."""
    group = (round_.settings or ContestSettings()).group(group_code)
    return draw_questions(group_pool(bank, group), round_.question_count, group_quotas(round_.quotas, group), seed)


def round_draw_problems(
    bank: Sequence[QuestionRef], round_: Round, settings: ContestSettings
) -> list[tuple[str | None, DrawImpossible]]:
    """Each group (None when the contest has none) whose attempts this bank could not draw."""
    groups: Sequence[Group | None] = settings.groups or (None,)
    found: list[tuple[str | None, DrawImpossible]] = []
    for group in groups:
        problem = draw_problem(group_pool(bank, group), round_.question_count, group_quotas(round_.quotas, group))
        if problem is not None:
            found.append((group.code if group else None, problem))
    return found


def quota_errors(quotas: Quotas, question_count: int, settings: ContestSettings) -> list[dict[str, str]]:
    """Quotas that could never be met whatever the bank: as they apply to each group
    (group_quotas), each map sums to at most the question count; and no topic is named
    twice (topics compare ignoring case and spacing)."""
    errors: list[dict[str, str]] = []
    keys = [topic_key(t) for t in quotas.topics]
    if len(set(keys)) != len(keys):
        errors.append({"field": "quotas.topics", "message": "Một chủ đề được đặt định mức hai lần."})
    groups: Sequence[Group | None] = settings.groups or (None,)
    for name in ("topics", "difficulties"):
        for group in groups:
            quota = getattr(group_quotas(quotas, group), name)
            total = sum(quota.values())
            if total > question_count:
                whose = f" (nhóm {group.name})" if group is not None else ""
                errors.append({"field": f"quotas.{name}", "message":
                               f"Tổng định mức{whose} ({total}) vượt quá số câu hỏi của lượt thi ({question_count})."})
                break
    return errors


def group_prize_errors(group_prizes: Mapping[str, object] | None, settings: ContestSettings) -> list[dict[str, str]]:
    if not group_prizes:
        return []
    known = {g.code for g in settings.groups}
    return [
        {"field": f"group_prizes.{code}", "message": "Cuộc thi không có nhóm này."}
        for code in group_prizes if code not in known
    ]


def round_settings_errors(round_: Round, settings: ContestSettings) -> list[dict[str, str]]:
    """A round's settings that contradict each other or the contest's groups."""
    errors: list[dict[str, str]] = []
    if round_.closes_at <= round_.opens_at:
        errors.append({"field": "closes_at", "message": "Thời điểm đóng phải sau thời điểm mở vòng thi."})
    return errors + quota_errors(round_.quotas, round_.question_count, settings) + group_prize_errors(
        round_.group_prizes, settings)


def contest_settings_errors(settings: ContestSettings) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    codes = [g.code for g in settings.groups]
    if repeated := sorted({c for c in codes if codes.count(c) > 1}):
        errors.append({"field": "groups", "message": f"Mã nhóm bị lặp lại: {', '.join(repeated)}."})
    if settings.default_group is not None and settings.default_group not in codes:
        errors.append({"field": "default_group", "message": "Nhóm mặc định phải là một trong các nhóm của cuộc thi."})
    return errors


def answered_all(question_ids: Iterable[UUID], answers: Mapping[str, Sequence[str]] | None) -> bool:
    """Whether every question of the attempt has at least one option chosen."""
    answers = answers or {}
    return all(answers.get(str(question_id)) for question_id in question_ids)


def shuffled_options(question: Question, seed: int) -> list[Option]:
    """The question's options in the order this attempt shows them; ids stay the bank's
    letters, so answers and the answer key never depend on the display order."""
    options = list(question.options)
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes.
    random.Random(f"{seed}:{question.id}").shuffle(options)
    return options


def answer_is_correct(chosen: Collection[str] | None, correct: Collection[str]) -> bool:
    """Scoring's rule (services/scoring/domain.py `answer_is_correct`, used by `score`):
    right only when exactly the key's set of options is chosen; nothing chosen is wrong,
    and an empty key can never be right. No service imports another's code, so the two
    copies are checked against each other (services/quiz/tests/test_domain.py)."""
    return bool(correct) and chosen is not None and set(chosen) == set(correct)


def review_available_at(round_: Round) -> datetime:
    """From when an attempt's review (the correct answers) may be shown: once no attempt of
    the round can still be submitted. An attempt started just before the close runs its
    time limit and grace past it, and a review shown earlier would hand its author, or
    anyone they share it with, the key. A final round has no such attempt left."""
    return effective_close(round_) + timedelta(seconds=round_.time_limit_s + round_.grace_s)


def review_available(round_: Round, now: datetime) -> bool:
    status = round_status(round_, now)
    if status == "final":
        return True
    return status == "closed" and now >= review_available_at(round_)


def answer_key(questions: Iterable[Question]) -> dict[str, list[str]]:
    return {str(q.id): sorted(q.correct) for q in questions}


def answer_errors(
    answers: Mapping[UUID, Sequence[str]], question_ids: Collection[UUID], bank: Mapping[UUID, Question]
) -> list[dict[str, str]]:
    """Every answer must name a question of the attempt and options that question has."""
    errors: list[dict[str, str]] = []
    for question_id, chosen in answers.items():
        field = f"answers.{question_id}"
        question = bank.get(question_id)
        if question_id not in question_ids or question is None:
            errors.append({"field": field, "message": "Câu hỏi không thuộc lượt thi này."})
            continue
        known = {option.id for option in question.options}
        unknown = [option_id for option_id in chosen if option_id not in known]
        if unknown:
            errors.append({"field": field, "message": f"Phương án không tồn tại: {', '.join(unknown)}."})
    return errors


def normalised_answers(answers: Mapping[UUID, Sequence[str]]) -> dict[str, list[str]]:
    """JSON-ready answers: string keys, each choice once, in letter order."""
    return {str(question_id): sorted(set(chosen)) for question_id, chosen in answers.items()}


# --- contest settings -----------------------------------------------------------------

def validate_tie_break(criteria: Sequence[str]) -> tuple[str, ...]:
    if not criteria:
        raise ValueError("Cần ít nhất một tiêu chí xếp hạng.")
    unknown = [c for c in criteria if c not in TIE_BREAK_CRITERIA]
    if unknown:
        raise ValueError(
            f"Tiêu chí không hợp lệ: {', '.join(unknown)}. Chỉ dùng: {', '.join(TIE_BREAK_CRITERIA)}."
        )
    repeated = sorted({c for c in criteria if list(criteria).count(c) > 1})
    if repeated:
        raise ValueError(f"Tiêu chí bị lặp lại: {', '.join(repeated)}.")
    return tuple(criteria)


def validate_prize_scope(scope: str) -> str:
    if scope not in PRIZE_SCOPES:
        raise ValueError("Phạm vi giải thưởng phải là round hoặc contest.")
    return scope


# --- question bank files --------------------------------------------------------------

QUESTION_COLUMNS = ("topic", "difficulty", "question", "option_a", "option_b", "option_c", "option_d",
                    "correct", "explanation")
OPTION_COLUMNS = ("option_a", "option_b", "option_c", "option_d", "option_e", "option_f")
MAX_QUESTION_CHARS = 2000
MAX_OPTION_CHARS = 1000
MAX_EXPLANATION_CHARS = 4000
MAX_TOPIC_CHARS = 100


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # as a spreadsheet numbers it: the header is row 1
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class QuestionDraft:
    """A validated row, not stored yet."""

    topic: str
    difficulty: int
    text: str
    options: tuple[Option, ...]
    correct: tuple[str, ...]
    explanation: str


def normalised_text(text: str) -> str:
    return " ".join(text.split())


def text_key(text: str) -> str:
    """Two question texts are the same question when they differ only in case or spacing."""
    return normalised_text(text).casefold()


@lru_cache(maxsize=4096)
def topic_key(topic: str) -> str:
    """Topics compare like texts; a bank has few of them, and the draw asks for each often."""
    return text_key(topic)


_CORRECT_SEPARATORS = re.compile(r"[,;\s]+")


def parse_correct(value: str) -> tuple[str, ...] | None:
    """`B`, `a, c`, `A;C` → the letters; None when it is not a list of option letters."""
    letters = [part for part in _CORRECT_SEPARATORS.split(value.strip().upper()) if part]
    if not letters or any(len(letter) != 1 or letter not in OPTION_LETTERS for letter in letters):
        return None
    return tuple(sorted(set(letters)))


def validate_question_rows(
    table: Sequence[Sequence[str]], existing_texts: Iterable[str]
) -> tuple[list[QuestionDraft], list[RowError]]:
    """Every row's errors at once (nothing is imported unless there are none)."""
    if not table or not any(cell.strip() for cell in table[0]):
        return [], [RowError(1, "file", "Tệp trống: dòng đầu tiên phải là tiêu đề cột.")]
    header = [cell.strip().lstrip("\ufeff").lower() for cell in table[0]]
    column = {name: index for index, name in reversed(list(enumerate(header)))}
    missing = [name for name in QUESTION_COLUMNS if name not in column]
    if missing:
        return [], [RowError(1, name, f"Thiếu cột {name}.") for name in missing]

    known = {text_key(text) for text in existing_texts}
    seen_at: dict[str, int] = {}
    drafts: list[QuestionDraft] = []
    errors: list[RowError] = []
    for row_number, cells in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        row = {name: (cells[index].strip() if index < len(cells) else "") for name, index in column.items()}
        draft, row_errors = _validate_question_row(row_number, row, known, seen_at)
        errors.extend(row_errors)
        if draft is not None:
            drafts.append(draft)
    if not drafts and not errors:
        errors.append(RowError(2, "question", "Tệp không có câu hỏi nào."))
    return drafts, errors


def _validate_question_row(
    row_number: int, row: Mapping[str, str], known: set[str], seen_at: dict[str, int]
) -> tuple[QuestionDraft | None, list[RowError]]:
    errors: list[RowError] = []

    def error(field: str, message: str) -> None:
        errors.append(RowError(row_number, field, message))

    topic = normalised_text(row["topic"])
    if not topic:
        error("topic", "Thiếu chủ đề.")
    elif len(topic) > MAX_TOPIC_CHARS:
        error("topic", f"Chủ đề dài quá {MAX_TOPIC_CHARS} ký tự.")

    difficulty = int(row["difficulty"]) if re.fullmatch(r"[0-9]{1,2}", row["difficulty"]) else 0
    if not 1 <= difficulty <= 3:
        error("difficulty", "Độ khó phải là số nguyên từ 1 đến 3.")

    text = normalised_text(row["question"])
    if not text:
        error("question", "Thiếu nội dung câu hỏi.")
    elif len(text) > MAX_QUESTION_CHARS:
        error("question", f"Câu hỏi dài quá {MAX_QUESTION_CHARS} ký tự.")
    else:
        key = text_key(text)
        if key in known:
            error("question", "Câu hỏi đã có trong ngân hàng câu hỏi của cuộc thi.")
        elif key in seen_at:
            error("question", f"Câu hỏi trùng với câu hỏi ở dòng {seen_at[key]}.")
        else:
            seen_at[key] = row_number

    options: list[Option] = []
    option_seen: dict[str, str] = {}
    for letter, name in zip(OPTION_LETTERS, OPTION_COLUMNS, strict=True):
        option_text = normalised_text(row.get(name, ""))
        if not option_text:
            continue
        if len(option_text) > MAX_OPTION_CHARS:
            error(name, f"Phương án dài quá {MAX_OPTION_CHARS} ký tự.")
        elif option_text.casefold() in option_seen:
            error(name, f"Phương án {letter} trùng với phương án {option_seen[option_text.casefold()]}.")
        option_seen.setdefault(option_text.casefold(), letter)
        options.append(Option(letter, option_text))
    if len(options) < 2:
        field = "option_a" if not row["option_a"] else "option_b"
        error(field, "Cần ít nhất 2 phương án trả lời có nội dung.")

    correct = parse_correct(row["correct"])
    if correct is None:
        error("correct", "Đáp án đúng phải là chữ cái của phương án, ví dụ B hoặc A,C.")
    else:
        present = {option.id for option in options}
        absent = [letter for letter in correct if letter not in present]
        if absent:
            error("correct", f"Đáp án {', '.join(absent)} không ứng với phương án nào có nội dung.")

    explanation = row["explanation"].strip()
    if len(explanation) > MAX_EXPLANATION_CHARS:
        error("explanation", f"Giải thích dài quá {MAX_EXPLANATION_CHARS} ký tự.")

    if errors or correct is None:
        return None, errors
    return QuestionDraft(topic, difficulty, text, tuple(options), correct, explanation), errors
