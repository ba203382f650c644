"""The fault suite (tests/chaos/suite.py).

- `test_short_fault_suite` runs in `make test`: two faults (Redis and the scoring worker
  killed under load), about 40 participants each, well under two minutes.
- `test_full_fault_suite` is `make chaos` (CHAOS_FULL=1): every server and every kind of
  process, 150 participants each; it writes docs/reliability.md.

CHAOS_FAULTS="redis,postgres" runs only those faults (either test; the full one then does
not write docs). Each run keeps its logs and results.json in var/chaos/<time>/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from services.core.private_servers import RedisServer
from tests.chaos import checks, report
from tests.chaos.driver import BACKOFF_S, worth_retrying
from tests.chaos.suite import FULL, FULL_PLAN, ROOT, SHORT, SHORT_PLAN, Plan, new_run_dir, run_suite

FULL_RUN = os.environ.get("CHAOS_FULL") == "1"
CHOSEN = [n.strip() for n in os.environ.get("CHAOS_FAULTS", "").split(",") if n.strip()]


def _run(kind: str, names: list[str], plan: Plan, docs: Path | None) -> dict[str, Any]:
    run_dir = new_run_dir(kind)
    results = run_suite(names, plan, run_dir)  # also writes run_dir/results.json
    text = report.markdown(results)
    (run_dir / "reliability.md").write_text(text)
    if docs is not None:
        docs.write_text(text)
    return results


def _failures(results: dict[str, Any]) -> str:
    lines = [f"{f['fault']}: {reason}" for f in results["faults"] for reason in f["failures"]]
    if results.get("not_running_at_end"):
        lines.append(f"not running at the end: {results['not_running_at_end']}")
    return "\n".join(lines)


@pytest.mark.e2e
@pytest.mark.skipif(FULL_RUN, reason="make chaos runs the full suite instead")
def test_short_fault_suite() -> None:
    results = _run("short", CHOSEN or SHORT, SHORT_PLAN, docs=None)
    assert not _failures(results), _failures(results)


@pytest.mark.e2e
@pytest.mark.skipif(not FULL_RUN, reason="the full fault suite runs with `make chaos` (CHAOS_FULL=1)")
def test_full_fault_suite() -> None:
    docs = None if CHOSEN else ROOT / "docs" / "reliability.md"
    results = _run("full", CHOSEN or FULL, FULL_PLAN, docs=docs)
    assert not _failures(results), _failures(results)


# --- the suite's own parts ------------------------------------------------------------

def test_the_driver_retries_like_the_web_app() -> None:
    quiz_js = (ROOT / "web" / "src" / "js" / "pages" / "quiz.js").read_text(encoding="utf-8")
    schedule = re.search(r"const BACKOFF_S = \[([\d, ]+)\];", quiz_js)
    assert schedule is not None, "quiz.js no longer defines BACKOFF_S: update tests/chaos/driver.py"
    assert tuple(int(s) for s in schedule.group(1).split(",")) == BACKOFF_S
    api_js = (ROOT / "web" / "src" / "js" / "api.js").read_text(encoding="utf-8")
    transient = re.search(r"get transient\(\) \{\s*return ([^;]+);", api_js)
    assert transient is not None
    statuses = {int(s) for s in re.findall(r"this\.status === (\d+)", transient.group(1))}
    # The app retries its transient statuses and, for a submit, every other 5xx too.
    assert all(worth_retrying(s) for s in statuses) and worth_retrying(500)
    assert not any(worth_retrying(s) for s in (200, 202, 400, 401, 404, 409, 422))


def test_ranked_orders_equal_scores_as_redis_does(private_redis: RedisServer) -> None:
    from redis import Redis

    client = Redis.from_url(private_redis.url)
    entries = {"a": 5, "b": 7, "c": 5, "d": 7, "e": 1}
    client.zadd("board", entries)
    rows: list[Any] = client.zrevrange("board", 0, -1, withscores=True)  # type: ignore[assignment]
    served = [(member.decode(), int(score)) for member, score in rows]
    assert checks.ranked(entries) == served


def test_board_differences_counts_every_misplaced_entry() -> None:
    expected = [("a", 9), ("b", 8), ("c", 7)]
    assert checks.board_differences(expected, expected) == 0
    assert checks.board_differences(expected, [("a", 9), ("b", 8)]) == 1  # the last one lost
    assert checks.board_differences(expected, [("b", 8), ("c", 7)]) == 3  # the first lost: every place wrong
    assert checks.board_differences(expected, [("a", 9), ("b", 6), ("c", 7)]) == 1  # a stale score
    assert checks.board_differences(expected, [("b", 8), ("a", 9), ("c", 7)]) == 2  # swapped
    assert checks.board_differences([], [("x", 1)]) == 1  # should not be there at all
