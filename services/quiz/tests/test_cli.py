"""`python -m services.quiz seed-demo` and `migrate`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.core.testing import TEST_DATABASE_URL
from services.quiz import domain, store
from services.quiz.__main__ import DEMO_TITLE, seed_demo
from services.quiz.settings import QuizSettings

ROOT = Path(__file__).resolve().parents[3]


async def test_seed_demo_creates_an_open_demo_round_once(pool: asyncpg.Pool) -> None:
    settings = QuizSettings(database_url=TEST_DATABASE_URL)
    await seed_demo(settings)
    snapshot = [await pool.fetch(f"SELECT * FROM {table} ORDER BY id") for table in ("contests", "rounds", "questions")]
    await seed_demo(settings)
    assert [await pool.fetch(f"SELECT * FROM {table} ORDER BY id") for table in ("contests", "rounds", "questions")] \
        == snapshot

    contest = await store.contest_by_slug(pool, "demo")
    assert contest is not None and contest.title == DEMO_TITLE and contest.prize_scope == "round"
    assert contest.tie_break == domain.DEFAULT_TIE_BREAK and "20 câu hỏi" in contest.rules
    assert await store.question_count(pool, contest.id) == 78
    [round_] = (await store.rounds_of(pool, [contest.id]))[contest.id]
    assert domain.round_status(round_, datetime.now(UTC)) == "open"
    assert (round_.number, round_.title, round_.question_count, round_.time_limit_s, round_.grace_s,
            round_.max_attempts) == (1, "Tuần 1", 20, 900, 30, 3)
    assert round_.prediction == domain.Prediction("Theo bạn, sẽ có bao nhiêu người tham gia tuần thi này?",
                                                  "participants")
    assert [(p.name, p.count) for p in round_.prizes] == [
        ("Giải Nhất", 1), ("Giải Nhì", 2), ("Giải Ba", 3), ("Giải Khuyến khích", 10)]


def test_seed_demo_refuses_production() -> None:
    env = {**os.environ, "APP_ENV": "production", "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "services.quiz", "seed-demo"], cwd=ROOT, env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert b"production" in result.stderr


async def test_migrate_is_idempotent(pool: asyncpg.Pool) -> None:
    env = {**os.environ, "DATABASE_URL": TEST_DATABASE_URL, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.quiz", "migrate", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr
    assert b"quiz: 0 migration(s) applied" in stderr
