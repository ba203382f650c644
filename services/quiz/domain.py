"""The quiz's rules, pure: round status, when an attempt may start and be submitted,
the random draw (replayable from the seed stored with each attempt), and validation of
what organisers upload. No I/O, no framework, no SQL."""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

RoundStatus = Literal["scheduled", "open", "closed", "final"]
AttemptStatus = Literal["running", "submitted", "expired"]

TIE_BREAK_CRITERIA = ("correct", "prediction_error", "duration", "submitted_at", "started_at", "attempts_used")
DEFAULT_TIE_BREAK = ("correct", "prediction_error", "duration", "submitted_at")
PRIZE_SCOPES = ("round", "contest")
PREDICTION_TARGETS = ("participants", "all_correct")
OPTION_LETTERS = "ABCDEF"


@dataclass(frozen=True, slots=True)
class Prediction:
    text: str
    target: Literal["participants", "all_correct"]


@dataclass(frozen=True, slots=True)
class Prize:
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Contest:
    id: UUID
    slug: str
    title: str
    rules: str
    tie_break: tuple[str, ...]
    prize_scope: str


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
    question_ids: tuple[UUID, ...] | None = None  # the bank snapshot, set when the round opens
    opened_at: datetime | None = None
    closed_at: datetime | None = None  # closed early by an organiser
    finalised_at: datetime | None = None


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
    if attempt.submitted_at is not None:
        return "submitted"
    return "running" if accepts_submit(now, attempt, grace_s) else "expired"


def running_attempt(attempts: Iterable[Attempt], grace_s: int, now: datetime) -> Attempt | None:
    """The participant's attempt that can still be submitted, to resume instead of starting another."""
    for attempt in attempts:
        if attempt_status(attempt, grace_s, now) == "running":
            return attempt
    return None


def draw_questions(pool_ids: Sequence[UUID], count: int, seed: int) -> list[UUID]:
    """`count` distinct questions of the pool in the order they are shown, the same for
    the same seed (CPython's Mersenne Twister), so any attempt can be replayed for audit.
    A pool smaller than `count` gives all of it, shuffled."""
    if count < 0:
        raise ValueError("count must not be negative")
    return random.Random(seed).sample(list(pool_ids), min(count, len(pool_ids)))


def shuffled_options(question: Question, seed: int) -> list[Option]:
    """The question's options in the order this attempt shows them; ids stay the bank's
    letters, so answers and the answer key never depend on the display order."""
    options = list(question.options)
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes.
    random.Random(f"{seed}:{question.id}").shuffle(options)
    return options


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


class UnsupportedFile(ValueError):
    """Neither UTF-8 CSV nor an XLSX workbook."""


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


def read_table(content: bytes) -> list[list[str]]:
    """The cells of a CSV (UTF-8, optional BOM; comma, semicolon or tab) or of the first
    sheet of an XLSX workbook, as text."""
    if content.startswith(b"PK\x03\x04"):
        return _read_xlsx(content)
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedFile("not UTF-8 text") from None
    if "\x00" in text:
        raise UnsupportedFile("binary content")
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count) if first_line else ","
    return [list(row) for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]


def _read_xlsx(content: bytes) -> list[list[str]]:
    import openpyxl  # only organisers' uploads need it; keep it off the API's import path

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            return [[_cell_text(value) for value in row] for row in sheet.iter_rows(values_only=True)]
        finally:
            workbook.close()
    except Exception as exc:  # any zip that openpyxl cannot read (a .docx, a broken file) is not a workbook
        raise UnsupportedFile(f"not a readable XLSX workbook: {exc}") from exc


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 2 as 2.0
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def normalised_text(text: str) -> str:
    return " ".join(text.split())


def text_key(text: str) -> str:
    """Two question texts are the same question when they differ only in case or spacing."""
    return normalised_text(text).casefold()


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
