"""Small helpers the end-to-end tests share."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from typing import Any

from tests.e2e.stack import ROOT

QUESTIONS_CSV = ROOT / "services" / "quiz" / "seed" / "questions.csv"


def answer_key_by_text() -> dict[str, list[str]]:
    """The demo bank's correct letters by question text (tests play entrants who know them)."""
    with QUESTIONS_CSV.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    return {row["question"]: sorted(x.strip().upper() for x in row["correct"].split(",")) for row in rows}


def topic_by_text() -> dict[str, str]:
    with QUESTIONS_CSV.open(encoding="utf-8-sig", newline="") as f:
        return {row["question"]: row["topic"] for row in csv.DictReader(f)}


def eventually(probe: Callable[[], Any], timeout_s: float = 30, every_s: float = 0.2) -> Any:
    """Poll until `probe` returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"not reached in {timeout_s} s; last value: {last!r}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
