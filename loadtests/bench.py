"""`make bench`: the deadline-peak benchmark of Hoithi on this machine, in one run.

    .venv/bin/python loadtests/bench.py [--users N] [--duration-s S] [--surge-s S] ...

1. Starts the whole stack as `make run` does (every Procfile process, the same gunicorn
   and nginx configs) with production-like settings (LOG_LEVEL=WARNING, no access logs,
   gunicorn workers for this machine's cores), in its own database `hoithi_bench`, Redis
   db 8 and bus prefix `bench-<random>.`; creates its own contests and rounds through the
   admin API (organiser of `seed-demo`) and its own participants (registered and logged
   in up front, with a cheap Argon2 cost: see docs/benchmarks.md).
2. Measures each hot endpoint with ONE load generator, wrk (C, a few % of a core at
   these rates) driven by loadtests/wrk/replay.lua: fixed duration, fixed connections,
   throughput and p50/p95/p99, each as a ratio of a no-op FastAPI endpoint behind the
   same gateway and gunicorn config (the ceiling). Also the CPU every component spent
   per request, gunicorn worker counts and upstream keepalive compared in the same run,
   and py-spy profiles of the hot paths.
3. Runs the deadline surge with Locust (loadtests/locustfile.py, DeadlineSurge) against
   a round that closes three quarters into it: attempts per second at the peak, submit
   p99 at 70 % of the peak, scoring lag, queue drain, and the integrity check.
4. Peak RSS of every process; 5. writes docs/benchmarks.md and docs/benchmarks-surge.png.

Bounded: every load has a fixed duration or count and every wait a deadline (about 10
minutes in all on 2 cores). Targets 127.0.0.1 only. Raw data: var/bench/<time>/.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import bench_report  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
from bench_proc import Sampler, Snapshot, busy_share, cpu_between, pids_named  # noqa: E402
from bench_stack import (  # noqa: E402
    ADMIN,
    RETRY_DELAYS_S,
    SERVICES,
    Stack,
    create_contest,
    create_round,
    delete_bus,
    descendants,
    gunicorn_workers,
    login_token,
    prepare_stack,
    set_gunicorn_workers,
)
from redis import Redis  # noqa: E402

from services.core.db import create_database_if_missing  # noqa: E402

BIN = ROOT / ".venv" / "bin"
WRK_SCRIPT = HERE / "wrk" / "replay.lua"
PASSWORD = "mat-khau-bench-2026"


# --- options --------------------------------------------------------------------------

def options(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=env("BENCH_DATABASE_URL",
                                                      "postgresql://postgres@127.0.0.1:5432/hoithi_bench"))
    parser.add_argument("--redis-url", default=env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"))
    parser.add_argument("--amqp-url", default=env("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--users", type=int, default=int(env("BENCH_USERS", "1000")),
                        help="participants registered and logged in up front")
    parser.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", "6")),
                        help="open rounds of the hot-path contest (one running attempt per user and round)")
    parser.add_argument("--duration-s", type=int, default=int(env("BENCH_DURATION_S", "10")),
                        help="length of each wrk measurement")
    parser.add_argument("--connections", type=int, default=int(env("BENCH_CONNECTIONS", "32")))
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", default=env("BENCH_WORKERS", "registration=1,quiz=2,scoring=2,notify=1"),
                        help="gunicorn workers per API")
    parser.add_argument("--db-pool-max", default=env("BENCH_DB_POOL_MAX", "8"))
    parser.add_argument("--surge-s", type=int, default=int(env("BENCH_SURGE_S", "240")))
    parser.add_argument("--peak-users", type=int, default=int(env("BENCH_PEAK_USERS", "700")))
    parser.add_argument("--baseline-users", type=int, default=int(env("BENCH_BASELINE_USERS", "40")))
    parser.add_argument("--think-scale", type=float, default=float(env("BENCH_THINK_SCALE", "0.25")))
    parser.add_argument("--locust-processes", type=int, default=int(env("BENCH_LOCUST_PROCESSES", "1")))
    parser.add_argument("--skip-micro", action="store_true", help="skip bench_registration.py and bench_notify.py")
    parser.add_argument("--skip-hot", action="store_true", help="skip the wrk measurements")
    parser.add_argument("--skip-surge", action="store_true")
    parser.add_argument("--skip-profiles", action="store_true")
    parser.add_argument("--no-docs", action="store_true", help="write var/bench only, not docs/benchmarks.md")
    parser.add_argument("--max-s", type=float, default=float(env("BENCH_MAX_S", "690")),
                        help="optional phases are skipped once the run has taken this long")
    return parser.parse_args(argv)


def worker_counts(text: str) -> dict[str, int]:
    counts = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        counts[name.strip()] = int(value)
    return counts


# --- the machine ----------------------------------------------------------------------

def _first_line(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


async def _server_versions(database_url: str, amqp_url: str) -> dict[str, str]:
    import aio_pika

    await create_database_if_missing(database_url)  # a fresh machine has no bench database yet
    conn = await asyncpg.connect(database_url)
    try:
        pg = await conn.fetchval("SELECT version()")
        settings = {r["name"]: r["setting"] + (r["unit"] or "") for r in await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)",
            ["shared_buffers", "max_connections", "synchronous_commit", "fsync", "wal_level"],
        )}
    finally:
        await conn.close()
    rabbit = "?"
    try:
        connection = await aio_pika.connect(amqp_url, timeout=5)
        props = connection.transport.connection.server_properties if connection.transport else {}
        rabbit = f"{props.get('product', 'RabbitMQ')} {props.get('version', '?')}"
        await connection.close()
    except Exception as exc:  # reported as unknown, not fatal
        rabbit = f"? ({type(exc).__name__})"
    return {"postgresql": pg.split(" on ")[0], "postgresql_settings": ", ".join(f"{k}={v}" for k, v in
                                                                             sorted(settings.items())),
            "rabbitmq": rabbit}


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    versions = asyncio.run(_server_versions(args.database_url, args.amqp_url))
    redis_version = Redis.from_url(args.redis_url).info("server").get("redis_version", "?")
    packages = {}
    for name in ("fastapi", "starlette", "uvicorn", "gunicorn", "asyncpg", "redis", "aio-pika", "pydantic",
                 "orjson", "uvloop", "httptools", "locust"):
        try:
            from importlib.metadata import version

            packages[name] = version(name)
        except Exception:
            packages[name] = "?"
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_meminfo_gib(), 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "redis": redis_version,
        "nginx": _first_line(["sh", "-c", "nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1"]).replace("nginx version: ", ""),
        "wrk": _first_line(["sh", "-c", "wrk --version 2>&1 | head -n1"]),
        "packages": packages,
        **versions,
    }


# --- micro-benchmarks by colleagues ---------------------------------------------------

def run_micro(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """bench_registration.py, bench_notify.py and bench_imports.py, each bounded, before the stack starts
    (they recreate their schema in the same database)."""
    env = {**os.environ, "BENCH_DATABASE_URL": args.database_url, "BENCH_MAX_S": "40", "LOG_LEVEL": "WARNING"}
    out: dict[str, Any] = {}
    for name, extra in (("registration", []), ("notify", ["--winners", "1000", "--messages", "300"]),
                        ("imports", [])):
        started = time.monotonic()
        try:
            done = subprocess.run([str(BIN / "python"), str(HERE / f"bench_{name}.py"), *extra], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=150)
            text = done.stdout.strip() or done.stderr.strip()[-2000:]
            ok = done.returncode == 0
        except subprocess.TimeoutExpired:
            text, ok = "timed out after 150 s", False
        (run_dir / f"micro-{name}.md").write_text(text + "\n")
        out[name] = {"ok": ok, "markdown": text, "seconds": round(time.monotonic() - started, 1)}
        print(f"bench: bench_{name}.py {'done' if ok else 'FAILED'} in {out[name]['seconds']} s", flush=True)
    return out


# --- setting the scene through the API ------------------------------------------------

@dataclass
class User:
    phone: str
    participant_id: str
    token: str = ""


@dataclass
class Scene:
    admin_token: str
    contest_id: str
    contest_slug: str
    round_ids: list[str]
    users: list[User]
    signup: dict[str, Any]
    login: dict[str, Any]
    question_options: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # id → (options, correct)


def _latency_summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0

    per_s = round(len(ordered) / seconds, 1) if seconds else 0
    return {"n": len(ordered), "seconds": round(seconds, 2), "per_s": per_s,
            "p50_ms": round(pct(50), 1), "p95_ms": round(pct(95), 1), "p99_ms": round(pct(99), 1)}


async def _gather_timed(jobs: list[Any], concurrency: int) -> tuple[list[Any], dict[str, float]]:
    """Runs coroutine factories `concurrency` at a time; their results and latency summary."""
    queue = list(enumerate(jobs))
    results: list[Any] = [None] * len(jobs)
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            index, job = queue.pop()
            sent = time.perf_counter()
            results[index] = await job()
            latencies.append((time.perf_counter() - sent) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, _latency_summary(latencies, time.perf_counter() - started)


async def set_scene(base_url: str, database_url: str, users: int, rounds: int) -> Scene:
    tag = uuid.uuid4().hex[:6]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        admin = await login_token(client, *ADMIN)
        slug = f"bench-{tag}"
        contest_id = await create_contest(client, admin, slug, "Benchmark: giờ cao điểm trước hạn nộp bài")
        now = datetime.now(UTC).replace(microsecond=0)
        round_ids = []
        for number in range(1, rounds + 1):
            round_ids.append(await create_round(
                client, admin, contest_id, number, opens_at=now - timedelta(minutes=1),
                closes_at=now + timedelta(hours=3), time_limit_s=3600, grace_s=30,
            ))
        units = [u for u in (await client.get("/api/units?limit=500")).json() if u["headcount"] > 0]

        def sign_up(i: int) -> Any:
            async def job() -> str:
                unit = units[i % len(units)]
                response = await client.post("/api/auth/register", json={
                    "full_name": f"Người Thử Tải {i}", "phone": f"081{i:07d}", "unit_id": unit["id"],
                    "password": PASSWORD,
                })
                response.raise_for_status()
                return str(response.json()["participant_id"])
            return job

        ids, signup = await _gather_timed([sign_up(i) for i in range(users)], 16)
        people = [User(f"081{i:07d}", pid) for i, pid in enumerate(ids)]

        def log_in(user: User) -> Any:
            async def job() -> None:
                user.token = await login_token(client, user.phone, PASSWORD)
            return job

        _, login = await _gather_timed([log_in(u) for u in people], 16)
    scene = Scene(admin, contest_id, slug, round_ids, people, signup, login)
    conn = await asyncpg.connect(database_url)
    try:
        for row in await conn.fetch("SELECT id, options, correct FROM quiz.questions WHERE contest_id = $1",
                                    UUID(contest_id)):
            options_ = [o["id"] for o in orjson.loads(row["options"])]
            scene.question_options[str(row["id"])] = (options_, list(row["correct"]))
        # The clock opens the rounds (round.opened carries the answer key to scoring):
        # hammering before scoring knows them would only measure retries.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            known = await conn.fetchval("SELECT count(*) FROM scoring.rounds WHERE round_id = ANY($1::uuid[])",
                                        round_ids)
            if known == len(round_ids):
                break
            await asyncio.sleep(0.3)
    finally:
        await conn.close()
    return scene


# --- wrk ------------------------------------------------------------------------------

@dataclass
class Line:
    method: str
    path: str
    token: str | None = None
    body: Any = None

    def tsv(self) -> str:
        body = "-" if self.body is None else orjson.dumps(self.body).decode()
        return f"{self.method}\t{self.path}\t{self.token or '-'}\t{body}"


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack, sampler: Sampler, run_dir: Path) -> None:
        self.args, self.stack, self.sampler, self.run_dir = args, stack, sampler, run_dir
        self.started = time.monotonic()
        self.wrk_runs: dict[str, dict[str, Any]] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wrk(self, name: str, lines: list[Line], *, mode: str = "cycle", duration_s: int | None = None,
            connections: int | None = None, during: Any = None) -> dict[str, Any]:
        """One wrk run over `lines`; `during(pid_of_wrk)` runs alongside (e.g. a profiler)."""
        duration_s = duration_s or self.args.duration_s
        connections = connections or self.args.connections
        threads = self.args.wrk_threads
        data = self.run_dir / "wrk" / f"{name}.tsv"
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("\n".join(line.tsv() for line in lines) + "\n", encoding="utf-8")
        command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "10s",
                   "-s", str(WRK_SCRIPT), self.stack.base_url, "--", str(data), mode, str(threads)]
        before = self.sampler.sample()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.sampler.set_group("load generator", lambda: [process.pid])
        extra = None
        if during is not None:
            extra = threading.Thread(target=during, args=(process.pid,), daemon=True)
            extra.start()
        try:
            stdout, stderr = process.communicate(timeout=duration_s + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        after = self.sampler.sample()
        self.sampler.set_group("load generator", lambda: [])
        if extra is not None:
            extra.join(timeout=30)
        found = re.search(r"BENCH_JSON (\{.*\})", stdout)
        if not found:
            raise RuntimeError(f"wrk {name}: no result\n{stdout[-2000:]}\n{stderr[-2000:]}")
        raw = json.loads(found.group(1))
        seconds = raw["seconds"] or duration_s
        latency = raw["latency_us"]
        cpu = cpu_between(before, after)
        result = {
            "name": name, "mode": mode, "connections": connections, "threads": threads, "duration_s": duration_s,
            "lines": len(lines), "requests": raw["requests"], "seconds": round(seconds, 2),
            "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
            "p50_ms": latency["p50"] / 1000, "p90_ms": latency["p90"] / 1000, "p95_ms": latency["p95"] / 1000,
            "p99_ms": latency["p99"] / 1000, "max_ms": latency["max"] / 1000,
            "statuses": raw["statuses"], "errors": raw["errors"],
            "cpu_s": cpu, "busy_share": round(busy_share(before, after), 3),
            # Busy CPU no process of ours accounts for: other work on the machine (noise).
            "other_cpu_s": round(max(0.0, (after.busy_s - before.busy_s) - sum(cpu.values())), 3),
            "wall_s": round(after.at - before.at, 2),
        }
        self.wrk_runs[name] = result
        non_2xx = {k: v for k, v in raw["statuses"].items() if not k.startswith("2")}
        print(f"bench: {name:<24} {result['rps']:>8.1f} req/s  p50 {result['p50_ms']:.1f}  p95 "
              f"{result['p95_ms']:.1f}  p99 {result['p99_ms']:.1f} ms  ({raw['requests']} in {seconds:.1f} s"
              f"{', non-2xx ' + json.dumps(non_2xx) if non_2xx else ''})", flush=True)
        return result


# --- the hot paths --------------------------------------------------------------------

def _answers(question_ids: list[str], scene: Scene, rng: random.Random, upto: int | None = None) -> dict[str, list]:
    answers = {}
    for qid in question_ids[:upto]:
        options_, correct = scene.question_options[qid]
        # About two answers in three right, so that the board has a spread of scores.
        answers[qid] = correct if rng.random() < 0.66 else [rng.choice(options_)]
    return answers


async def _open_attempts(database_url: str, round_ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            "SELECT id, participant_id, round_id, question_ids FROM quiz.attempts"
            " WHERE round_id = ANY($1::uuid[]) AND submitted_at IS NULL ORDER BY started_at",
            round_ids,
        )
    finally:
        await conn.close()


async def _scored(database_url: str, round_ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            "SELECT attempt_id, participant_id, round_id FROM scoring.results WHERE round_id = ANY($1::uuid[])",
            round_ids,
        )
    finally:
        await conn.close()


async def backlog(database_url: str, round_ids: list[str]) -> dict[str, int]:
    """Submitted in quiz but not scored yet, and where: quiz's outbox."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM quiz.attempts WHERE round_id = ANY($1::uuid[])"
            "        AND submitted_at IS NOT NULL) AS submitted,"
            " (SELECT count(*) FROM scoring.results WHERE round_id = ANY($1::uuid[])) AS scored,"
            " (SELECT count(*) FROM quiz.outbox) AS outbox",
            round_ids,
        )
    finally:
        await conn.close()
    return {"submitted": row["submitted"], "scored": row["scored"], "outbox": row["outbox"],
            "pending": row["submitted"] - row["scored"]}


def wait_scored(database_url: str, round_ids: list[str], timeout_s: float) -> dict[str, Any]:
    """Polls until every submitted attempt is scored; how long that took."""
    started = time.monotonic()
    first = asyncio.run(backlog(database_url, round_ids))
    state = first
    while state["pending"] > 0 and time.monotonic() - started < timeout_s:
        time.sleep(0.2)
        state = asyncio.run(backlog(database_url, round_ids))
    return {"pending_at_end_of_load": first["pending"], "outbox_at_end_of_load": first["outbox"],
            "drained_in_s": round(time.monotonic() - started, 2), "pending_now": state["pending"]}


def py_spy(pid: int, seconds: int, output: Path) -> dict[str, Any]:
    """Samples one process (without pausing it) into collapsed stacks."""
    tool = BIN / "py-spy"
    if not tool.exists():
        return {"skipped": "py-spy is not installed in .venv (pip install py-spy)"}
    done = subprocess.run([str(tool), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
                           "--nonblocking", "--format", "raw", "--output", str(output)],
                          capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0 or not output.exists():
        return {"skipped": f"py-spy failed: {(done.stderr or done.stdout).strip()[-300:]}"}
    return {"file": str(output.relative_to(ROOT)) if output.is_relative_to(ROOT) else str(output)}


def profile_summary(collapsed: Path, top: int = 14) -> dict[str, Any]:
    """Self and inclusive shares of the sampled frames, and shares by library."""
    self_counts: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    libraries: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if f]
        if frames:
            leaf = _frame_name(frames[-1])
            self_counts[leaf] = self_counts.get(leaf, 0) + count
            library = _library(frames[-1])
            libraries[library] = libraries.get(library, 0) + count
        for name in {_frame_name(f) for f in frames}:
            inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return {"samples": 0}

    def share(counts: dict[str, int]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]

    ours = {k: v for k, v in inclusive.items() if "services/" in k}
    return {"samples": total, "self": share(self_counts), "libraries": share(libraries), "ours_inclusive": share(ours)}


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; keep function and file.
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    function, path = match.groups()
    short = path.split("site-packages/")[-1].split("/work/main/")[-1]
    return f"{function} ({short})"


def _library(frame: str) -> str:
    match = re.match(r".* \((.*?)(?::\d+)?\)$", frame.strip())
    path = match.group(1) if match else frame
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if "/services/" in path or path.startswith("services/"):
        return "hoithi " + path.split("services/")[1].split("/")[0]
    if "python3" in path or path.startswith("<"):
        return "python stdlib / interpreter"
    return path.rsplit("/", 1)[-1]


def hot_paths(bench: Bench, scene: Scene, results: dict[str, Any]) -> None:
    """Each endpoint for a fixed time, right after a short run of the no-op endpoint (its
    ceiling at that moment: the machine is shared and noisy, so each ratio is taken to
    the ceiling measured next to it). Profiles and tuning comparisons run in between,
    where the attempts they need are in the right state (running, or submitted)."""
    args = bench.args
    rng = random.Random(7)
    db = bench.stack.database_url
    token_of = {u.participant_id: u.token for u in scene.users}
    users = scene.users
    ceiling_s = max(3, args.duration_s // 2)
    profiling = not args.skip_profiles
    results["profiles"] = {}

    def measure(name: str, lines: list[Line], mode: str = "cycle") -> dict[str, Any]:
        ceiling = bench.wrk(f"noop before {name}", [Line("GET", "/_noop/quiz")], duration_s=ceiling_s)
        run = bench.wrk(name, lines, mode=mode)
        run["ceiling_rps"] = ceiling["rps"]
        run["ratio"] = round(run["rps"] / ceiling["rps"], 4) if ceiling["rps"] else 0.0
        run["measured"] = True
        return run

    def profile(name: str, lines: list[Line], targets: dict[str, Any], mode: str = "cycle") -> None:
        if profiling and bench.elapsed() < args.max_s - 300:
            # Pids looked up now: changing the worker count replaces gunicorn's workers.
            pids = {label: pid() if callable(pid) else pid for label, pid in targets.items()}
            results["profiles"].update(profiled_run(bench, name, lines, pids, mode))

    def quiz_worker() -> int:
        return gunicorn_workers(bench.stack.pid_of("quiz"))[0]

    def scoring_worker() -> int:
        return gunicorn_workers(bench.stack.pid_of("scoring"))[0]

    bench.wrk("noop (ceiling)", [Line("GET", "/_noop/quiz")])["measured"] = True
    measure("login", [Line("POST", "/api/auth/login", None, {"login": u.phone, "password": PASSWORD}) for u in users])
    # Every (round, user) once: each start is a new attempt (201) until the time is up.
    measure("start attempt (new)", [Line("POST", f"/api/rounds/{r}/attempts", u.token)
                                    for r in scene.round_ids for u in users], mode="once")
    attempts = list(asyncio.run(_open_attempts(db, scene.round_ids)))
    rng.shuffle(attempts)
    results["attempts_created"] = len(attempts)
    resume = [Line("POST", f"/api/rounds/{a['round_id']}/attempts", token_of[str(a["participant_id"])])
              for a in attempts]
    autosave = [Line("PUT", f"/api/attempts/{a['id']}/answers", token_of[str(a["participant_id"])],
                     {"answers": _answers([str(q) for q in a["question_ids"]], scene, rng, upto=12)})
                for a in attempts]
    measure("start attempt (resume)", resume)
    measure("autosave", autosave)
    profile("start attempt (resume)", resume, {"quiz API worker": quiz_worker})
    profile("autosave", autosave, {"quiz API worker": quiz_worker})
    results["tuning"] = {}
    if bench.elapsed() < args.max_s - 330:
        results["tuning"]["workers"] = tune_workers(bench, autosave)

    # Submits: each attempt once. Two thirds for the measurement, the rest for profiling.
    def submit_line(a: asyncpg.Record) -> Line:
        return Line("POST", f"/api/attempts/{a['id']}/submit", token_of[str(a["participant_id"])],
                    {"answers": _answers([str(q) for q in a["question_ids"]], scene, rng),
                     "prediction": rng.randint(500, 5000)})

    measured = attempts[: len(attempts) * 2 // 3]
    spare = attempts[len(attempts) * 2 // 3 :]
    measure("submit", [submit_line(a) for a in measured], mode="once")
    results["submit_drain"] = wait_scored(db, scene.round_ids, timeout_s=60)
    print(f"bench: every submit scored {results['submit_drain']['drained_in_s']} s after the submit run "
          f"(backlog then: {results['submit_drain']['pending_at_end_of_load']})", flush=True)
    profile("submit", [submit_line(a) for a in spare], {
        "quiz API worker": quiz_worker,
        "scoring worker (consumer)": lambda: bench.stack.pid_of("scoring-worker"),
        "quiz outbox relay": lambda: bench.stack.pid_of("relay-quiz"),
    }, mode="once")
    wait_scored(db, scene.round_ids, timeout_s=60)

    scored = list(asyncio.run(_scored(db, scene.round_ids)))
    rng.shuffle(scored)
    measure("result", [Line("GET", f"/api/attempts/{s['attempt_id']}/result", token_of[str(s["participant_id"])])
                       for s in scored])
    per_round: dict[str, int] = {}
    for s in scored:
        per_round[str(s["round_id"])] = per_round.get(str(s["round_id"]), 0) + 1
    boards = [r for r, n in sorted(per_round.items(), key=lambda kv: -kv[1]) if n >= 100] or list(per_round)
    results["board_sizes"] = per_round
    # As deployed: the gateway answers most reads from its 2-second micro-cache.
    board_lines = [Line("GET", f"/api/rounds/{r}/leaderboard?limit=100") for r in boards]
    measure("leaderboard top-100", board_lines)
    # Every read a cache miss (a query string the cache has not seen): the scoring API itself.
    misses = [Line("GET", f"/api/rounds/{boards[i % len(boards)]}/leaderboard?limit=100&miss={i}")
              for i in range(100_000)]
    measure("leaderboard top-100 (cache miss)", misses)
    measure("my rank", [Line("GET", f"/api/rounds/{s['round_id']}/leaderboard/me",
                             token_of[str(s["participant_id"])]) for s in scored])
    profile("leaderboard top-100 (cache miss)", [
        Line("GET", f"/api/rounds/{boards[i % len(boards)]}/leaderboard?limit=100&profile={i}")
        for i in range(100_000)], {"scoring API worker": scoring_worker})
    profile("noop", [Line("GET", "/_noop/quiz")], {"quiz API worker": quiz_worker})
    if bench.elapsed() < args.max_s - 300:
        results["tuning"].update(tune_gateway(bench, board_lines))
    results["wrk"] = dict(bench.wrk_runs)


def profiled_run(bench: Bench, name: str, lines: list[Line], targets: dict[str, int],
                 mode: str) -> dict[str, Any]:
    """A separate wrk run with py-spy sampling the target processes (the profiler's own
    CPU must not colour the measured figures)."""
    folder = bench.run_dir / "profiles"
    folder.mkdir(exist_ok=True)
    seconds = max(4, bench.args.duration_s - 2)
    out: dict[str, Any] = {}

    def during(_: int) -> None:
        time.sleep(0.5)  # let wrk reach its rate first
        threads = []
        for label, pid in targets.items():
            key = f"{name}: {label}"
            path = folder / (re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") + ".txt")

            def one(key: str = key, pid: int = pid, path: Path = path) -> None:
                out[key] = {**py_spy(pid, seconds, path), "pid": pid}

            thread = threading.Thread(target=one)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()

    bench.wrk(f"{name} (profiled)", lines, mode=mode, during=during)
    for value in out.values():
        path = ROOT / value["file"] if "file" in value else None
        if path is not None and path.exists():
            value["summary"] = profile_summary(path)
    return out


def tune_workers(bench: Bench, autosave: list[Line]) -> list[dict[str, Any]]:
    """gunicorn workers of the quiz API, 1, 2 and 3, changed live (TTIN/TTOU), the rest
    of the stack as it is, minutes apart on the same machine."""
    out = []
    seconds = max(4, bench.args.duration_s // 2)
    master = bench.stack.pid_of("quiz")
    configured = len(gunicorn_workers(master))
    for count in (1, 2, 3):
        have = set_gunicorn_workers(master, count)
        time.sleep(2)  # the new workers import the app and open their pools
        noop = bench.wrk(f"noop, quiz workers={have}", [Line("GET", "/_noop/quiz")], duration_s=seconds)
        saved = bench.wrk(f"autosave, quiz workers={have}", autosave, duration_s=seconds)
        out.append({
            "workers": have, "noop_rps": noop["rps"], "noop_p99_ms": noop["p99_ms"], "autosave_rps": saved["rps"],
            "autosave_p99_ms": saved["p99_ms"],
            "quiz_cpu_ms_per_autosave": round(1000 * saved["cpu_s"].get("quiz API", 0) / max(1, saved["requests"]), 2),
        })
    set_gunicorn_workers(master, configured)
    time.sleep(2)
    return out


def tune_gateway(bench: Bench, board: list[Line]) -> dict[str, Any]:
    """The gateway's config as rendered, against one setting changed at a time (nginx
    re-reads it on SIGHUP): upstream keepalive off, gzip level 5 instead of 1, and the
    board cache with proxy_cache_lock."""
    out: dict[str, Any] = {"keepalive": [], "gzip": [], "cache lock": []}
    seconds = max(4, bench.args.duration_s // 2)
    conf = Path(bench.stack.env["NGINX_PREFIX"]) / "nginx.conf"
    original = conf.read_text()
    gateway = bench.stack.pid_of("gateway")
    variants = [
        ("keepalive", "off", re.sub(r"\n\s*keepalive \d+;", "", original), [Line("GET", "/_noop/quiz")], "noop"),
        ("keepalive", "on", original, [Line("GET", "/_noop/quiz")], "noop"),
        ("gzip", "level 5", original.replace("gzip_comp_level 1;", "gzip_comp_level 5;"), board, "leaderboard"),
        ("gzip", "level 1", original, board, "leaderboard"),
        ("cache lock", "on", original.replace(
            "proxy_cache public_api;", "proxy_cache public_api; proxy_cache_lock on; proxy_cache_lock_timeout 2s;"),
         board, "leaderboard"),
        ("cache lock", "off", original, board, "leaderboard"),
    ]
    try:
        for kind, label, text, lines, what in variants:
            conf.write_text(text)
            os.kill(gateway, signal.SIGHUP)  # nginx re-reads its config; new workers take over
            time.sleep(1.5)
            run = bench.wrk(f"{what}, {kind} {label}", lines, duration_s=seconds)
            out[kind].append({kind: label, "what": what, "rps": run["rps"], "p99_ms": run["p99_ms"],
                              "nginx_cpu_ms": round(1000 * run["cpu_s"].get("nginx (gateway)", 0)
                                                    / max(1, run["requests"]), 3)})
    finally:
        conf.write_text(original)
        os.kill(gateway, signal.SIGHUP)
        time.sleep(1)
    return out


# --- the surge ------------------------------------------------------------------------

class SurgeWatch(threading.Thread):
    """Polls the backlog of the surge round every half second (submitted in quiz − scored)."""

    def __init__(self, database_url: str, round_id: str, queue: str, amqp_url: str) -> None:
        super().__init__(name="surge-watch", daemon=True)
        self.database_url, self.round_id, self.queue, self.amqp_url = database_url, round_id, queue, amqp_url
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        import aio_pika

        conn = await asyncpg.connect(self.database_url)
        broker = await aio_pika.connect(self.amqp_url)
        channel = await broker.channel()
        try:
            while not self.stop.is_set():
                row = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM quiz.attempts WHERE round_id = $1 AND submitted_at IS NOT NULL)"
                    " AS submitted, (SELECT count(*) FROM scoring.results WHERE round_id = $1) AS scored,"
                    " (SELECT count(*) FROM quiz.outbox) AS outbox",
                    UUID(self.round_id),
                )
                try:
                    queue = await channel.declare_queue(self.queue, passive=True)
                    ready = queue.declaration_result.message_count
                except Exception:
                    ready = -1
                    channel = await broker.channel()
                self.samples.append({"t": time.time(), "submitted": row["submitted"], "scored": row["scored"],
                                     "outbox": row["outbox"], "queue_ready": ready})
                await asyncio.sleep(0.5)
        finally:
            await broker.close()
            await conn.close()


def surge(bench: Bench, scene: Scene, results: dict[str, Any]) -> None:
    args = bench.args
    rng = random.Random(11)
    lead_s = 8  # contest, round and its opening, before Locust starts
    slug = f"surge-{uuid.uuid4().hex[:6]}"

    async def create() -> tuple[str, str, datetime]:
        async with httpx.AsyncClient(base_url=bench.stack.base_url, timeout=30) as client:
            contest_id = await create_contest(client, scene.admin_token, slug, "Benchmark: đợt cao điểm")
            now = datetime.now(UTC)
            closes_at = (now + timedelta(seconds=lead_s + 0.75 * args.surge_s)).replace(microsecond=0)
            round_id = await create_round(client, scene.admin_token, contest_id, 1,
                                          opens_at=now.replace(microsecond=0) - timedelta(minutes=1),
                                          closes_at=closes_at, time_limit_s=60, grace_s=5)
        conn = await asyncpg.connect(bench.stack.database_url)
        try:
            for _ in range(60):
                if await conn.fetchval("SELECT count(*) FROM scoring.rounds WHERE round_id = $1", UUID(round_id)):
                    break
                await asyncio.sleep(0.25)
        finally:
            await conn.close()
        return contest_id, round_id, closes_at

    contest_id, round_id, closes_at = asyncio.run(create())
    pause = (closes_at - timedelta(seconds=0.75 * args.surge_s) - datetime.now(UTC)).total_seconds()
    if pause > 0:
        time.sleep(pause)
    folder = bench.run_dir / "locust"
    folder.mkdir(exist_ok=True)
    watch = SurgeWatch(bench.stack.database_url, round_id, f"{bench.stack.bus_prefix}scoring", bench.stack.amqp_url)
    watch.start()
    command = [
        str(BIN / "locust"), "-f", str(HERE / "locustfile.py"), "--host", bench.stack.base_url, "--headless",
        "--contest", slug, "--peak-users", str(args.peak_users), "--baseline-users", str(args.baseline_users),
        "--surge-s", str(args.surge_s), "--think-scale", str(args.think_scale),
        "--submit-log", str(folder / "submits.log"), "--late-by-s", "10",
        "--csv", str(folder / "surge"), "--csv-full-history", "--html", str(folder / "surge.html"),
        "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5",
    ]
    if args.locust_processes > 1:
        command += ["--processes", str(args.locust_processes)]
    before = bench.sampler.sample()
    started_at = time.time()
    log = (folder / "locust.log").open("w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    bench.sampler.set_group("load generator", lambda: [process.pid, *descendants(process.pid)])
    print(f"bench: surge running ({args.surge_s} s, peak {args.peak_users} users, round closes at "
          f"{closes_at.time()} UTC)", flush=True)
    try:
        process.wait(timeout=args.surge_s + 90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 15)
        process.wait(timeout=20)
    log.close()
    ended_at = time.time()
    after_load = bench.sampler.sample()
    bench.sampler.set_group("load generator", lambda: [])
    # Drain and finalisation: every submit scored, the round final in scoring.
    final_at = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = watch.samples[-1] if watch.samples else None
        final = asyncio.run(_final_state(bench.stack.database_url, round_id))
        if final["finalised_at"] is not None and state and state["submitted"] == state["scored"]:
            final_at = time.time()
            break
        time.sleep(1)
    time.sleep(1)
    watch.stop.set()
    watch.join(timeout=10)
    after = bench.sampler.sample()
    results["surge"] = surge_figures(bench, scene, round_id, contest_id, closes_at, started_at, ended_at, final_at,
                                     folder, watch.samples, before, after_load, after, rng)


async def _final_state(database_url: str, round_id: str) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT finalised_at, submitted_count, closed_at FROM scoring.rounds"
                                  " WHERE round_id = $1", UUID(round_id))
        quiz_row = await conn.fetchrow("SELECT closed_at, finalised_at FROM quiz.rounds WHERE id = $1", UUID(round_id))
    finally:
        await conn.close()
    return {"finalised_at": row["finalised_at"] if row else None, "submitted_count": row["submitted_count"] if row
            else None, "quiz_finalised_at": quiz_row["finalised_at"] if quiz_row else None}


def read_locust_stats(folder: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    with (folder / "surge_stats.csv").open() as f:
        totals = list(csv.DictReader(f))
    with (folder / "surge_stats_history.csv").open() as f:
        history = list(csv.DictReader(f))
    return totals, history


async def _surge_sql(database_url: str, round_id: str, peak_from: datetime, peak_to: datetime) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    rid = UUID(round_id)
    try:
        lag = await conn.fetchrow(
            "SELECT count(*) AS n,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM scored_at - submitted_at)) AS p50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM scored_at - submitted_at)) AS p99,"
            " max(extract(epoch FROM scored_at - submitted_at)) AS max"
            " FROM scoring.results WHERE round_id = $1 AND submitted_at >= $2 AND submitted_at < $3",
            rid, peak_from, peak_to,
        )
        lag_all = await conn.fetchrow(
            "SELECT count(*) AS n,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM scored_at - submitted_at)) AS p50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM scored_at - submitted_at)) AS p99,"
            " max(extract(epoch FROM scored_at - submitted_at)) AS max"
            " FROM scoring.results WHERE round_id = $1",
            rid,
        )
        per_second = await conn.fetch(
            "SELECT floor(extract(epoch FROM submitted_at)) AS second, count(*) AS n,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM scored_at - submitted_at)) AS p99"
            " FROM scoring.results WHERE round_id = $1 GROUP BY 1 ORDER BY 1",
            rid,
        )
        submitted = await conn.fetchval(
            "SELECT count(*) FROM quiz.attempts WHERE round_id = $1 AND submitted_at IS NOT NULL", rid)
        attempts = await conn.fetchval("SELECT count(*) FROM quiz.attempts WHERE round_id = $1", rid)
        in_peak = await conn.fetchval(
            "SELECT count(*) FROM quiz.attempts WHERE round_id = $1 AND submitted_at >= $2 AND submitted_at < $3",
            rid, peak_from, peak_to)
        results_rows = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT attempt_id) AS attempts, count(DISTINCT participant_id)"
            " FILTER (WHERE counts) AS counting_participants FROM scoring.results WHERE round_id = $1", rid)
        scoring_round = await conn.fetchrow(
            "SELECT submitted_count, closed_at, finalised_at FROM scoring.rounds WHERE round_id = $1", rid)
        quiz_round = await conn.fetchrow("SELECT closed_at, finalised_at, closes_at FROM quiz.rounds WHERE id = $1",
                                         rid)
        late = await conn.fetchval(
            "SELECT count(*) FROM quiz.attempts a JOIN quiz.rounds r ON r.id = a.round_id WHERE a.round_id = $1"
            " AND a.submitted_at > a.deadline_at + make_interval(secs => r.grace_s)", rid)
        winners = await conn.fetchval("SELECT count(*) FROM scoring.winners WHERE round_id = $1", rid)
    finally:
        await conn.close()

    def seconds(row: asyncpg.Record) -> dict[str, float | int | None]:
        return {"n": row["n"], "p50_s": _r(row["p50"]), "p99_s": _r(row["p99"]), "max_s": _r(row["max"])}

    return {
        "lag_peak": seconds(lag), "lag_all": seconds(lag_all),
        "lag_per_second": [{"t": float(r["second"]), "n": r["n"], "p99_s": _r(r["p99"])} for r in per_second],
        "quiz_submitted": submitted, "quiz_attempts": attempts, "submitted_in_peak": in_peak,
        "results": results_rows["n"], "results_distinct_attempts": results_rows["attempts"],
        "counting_participants": results_rows["counting_participants"],
        "scoring_submitted_count": scoring_round["submitted_count"] if scoring_round else None,
        "scoring_finalised_at": scoring_round["finalised_at"].isoformat() if scoring_round
        and scoring_round["finalised_at"] else None,
        "quiz_finalised_at": quiz_round["finalised_at"].isoformat() if quiz_round and quiz_round["finalised_at"]
        else None,
        "accepted_after_deadline": late, "winners": winners,
    }


async def _result_times(database_url: str, round_id: str) -> dict[str, tuple[float, float]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT attempt_id, submitted_at, scored_at FROM scoring.results WHERE round_id = $1",
                                UUID(round_id))
    finally:
        await conn.close()
    return {str(r["attempt_id"]): (r["submitted_at"].timestamp(), r["scored_at"].timestamp()) for r in rows}


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100  # linear interpolation, as percentile_cont
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 3)


def lag_after_202(folder: Path, times: dict[str, tuple[float, float]], peak_from: float,
                  close: float, started: float) -> dict[str, Any]:
    """Scoring lag from the moment the participant had the 202 (Locust's log) to the
    result's transaction in scoring (scored_at), overall, in the peak, and per second."""
    answered: dict[str, float] = {}
    for path in folder.glob("submits.log.*"):
        for line in path.read_text().splitlines():
            attempt_id, _, at = line.partition(",")
            if at:
                answered[attempt_id] = float(at)
    lags_all, lags_peak = [], []
    per_second: dict[int, list[float]] = {}
    unscored = 0
    for attempt_id, at in answered.items():
        found = times.get(attempt_id)
        if found is None:
            unscored += 1
            continue
        lag = found[1] - at
        lags_all.append(lag)
        if peak_from <= at < close:
            lags_peak.append(lag)
        per_second.setdefault(int(at - started), []).append(lag)

    def summary(values: list[float]) -> dict[str, Any]:
        return {"n": len(values), "p50_s": _percentile(values, 50), "p99_s": _percentile(values, 99),
                "max_s": round(max(values), 3) if values else None}

    return {"logged_202": len(answered), "not_scored": unscored, "all": summary(lags_all),
            "peak": summary(lags_peak),
            "per_second": [{"t": t, "n": len(v), "p50_s": _percentile(v, 50), "p99_s": _percentile(v, 99)}
                           for t, v in sorted(per_second.items())]}


def _r(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def surge_figures(
    bench: Bench, scene: Scene, round_id: str, contest_id: str, closes_at: datetime, started_at: float,
    ended_at: float, final_at: float | None, folder: Path, samples: list[dict[str, Any]], before: Snapshot,
    after_load: Snapshot, after: Snapshot, rng: random.Random,
) -> dict[str, Any]:
    args = bench.args
    quarter = args.surge_s / 4
    close_ts = closes_at.timestamp()
    peak_from_ts = close_ts - quarter  # the peak holds in the third quarter, up to the close
    totals, history = read_locust_stats(folder)
    by_name = {row["Name"]: row for row in totals}
    submit = by_name.get("/api/attempts/[id]/submit", {})
    late = by_name.get("/api/attempts/[id]/submit (late: 409)", {})
    refused = by_name.get("/api/rounds/[id]/attempts (refused: 409)", {})
    submit_ok = int(submit.get("Request Count", 0) or 0) - int(submit.get("Failure Count", 0) or 0)

    # Locust's history: one row per second and name, percentiles over its last 10 s.
    series: list[dict[str, Any]] = []
    submit_rows = [r for r in history if r["Name"] == "/api/attempts/[id]/submit"]
    aggregated = [r for r in history if r["Name"] == "Aggregated"]
    submit_by_ts = {int(r["Timestamp"]): r for r in submit_rows}
    for row in aggregated:
        ts = int(row["Timestamp"])
        s = submit_by_ts.get(ts, {})
        series.append({
            "t": ts - started_at, "users": int(row["User Count"]), "rps": _f(row["Requests/s"]),
            "fail_s": _f(row["Failures/s"]), "p50_ms": _f(row["50%"]), "p95_ms": _f(row["95%"]),
            "p99_ms": _f(row["99%"]), "submit_rps": _f(s.get("Requests/s")), "submit_p50_ms": _f(s.get("50%")),
            "submit_p95_ms": _f(s.get("95%")), "submit_p99_ms": _f(s.get("99%")),
            "submit_total": int(s.get("Total Request Count") or 0), "submit_fail": int(s.get("Total Failure Count")
                                                                                        or 0),
        })
    # Submit p99 when the load stands at 70 % of the peak: the first second on the ramp
    # with 70 % of the peak users (Locust's p99 there covers the 10 s before).
    at70 = next((p for p in series if p["users"] >= 0.7 * args.peak_users), None)
    # ... and when the completed attempts per second first reach 70 % of their peak rate
    # (5-second average), whatever the number of users that took.
    rates = [(p, _rate(series, i)) for i, p in enumerate(series)]
    peak_rate = max((r for _, r in rates if r is not None), default=0.0)
    at70_rate = next((p for p, r in rates if r is not None and peak_rate and r >= 0.7 * peak_rate), None)
    peak_rows = [p for p in series if peak_from_ts - started_at <= p["t"] < close_ts - started_at]
    peak_submits = (peak_rows[-1]["submit_total"] - peak_rows[-1]["submit_fail"]
                    - (peak_rows[0]["submit_total"] - peak_rows[0]["submit_fail"])) if len(peak_rows) > 1 else 0
    peak_span = (peak_rows[-1]["t"] - peak_rows[0]["t"]) if len(peak_rows) > 1 else 0
    sql = asyncio.run(_surge_sql(bench.stack.database_url, round_id, datetime.fromtimestamp(peak_from_ts, UTC),
                                 closes_at))
    # Backlog after the peak: from the close, how long until everything submitted was scored.
    drained_after_close = None
    max_backlog = 0
    for s in samples:
        pending = s["submitted"] - s["scored"]
        if s["t"] < close_ts:
            max_backlog = max(max_backlog, pending)
        elif pending == 0 and drained_after_close is None:
            drained_after_close = round(s["t"] - close_ts, 2)
    last_submit_ts = None
    previous = None
    for s in samples:
        if previous is not None and s["submitted"] > previous:
            last_submit_ts = s["t"]
        previous = s["submitted"]
    all_scored_ts = next((s["t"] for s in samples if last_submit_ts and s["t"] >= last_submit_ts
                          and s["submitted"] == s["scored"]), None)
    times = asyncio.run(_result_times(bench.stack.database_url, round_id))
    lag202 = lag_after_202(folder, times, peak_from_ts, close_ts, started_at)
    board_size = Redis.from_url(bench.stack.redis_url).zcard(f"scoring:lb:{round_id}")
    server_errors = 0
    failures_csv = folder / "surge_failures.csv"
    failure_rows: list[dict[str, str]] = []
    if failures_csv.exists():
        with failures_csv.open() as f:
            failure_rows = list(csv.DictReader(f))
        for row in failure_rows:
            if re.search(r"\b5\d\d\b", row.get("Error", "")):
                server_errors += int(row.get("Occurrences", 0) or 0)
    endpoints = [{
        "name": row["Name"], "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
        "p50_ms": _f(row["50%"]), "p95_ms": _f(row["95%"]), "p99_ms": _f(row["99%"]), "rps": _f(row["Requests/s"]),
    } for row in totals]
    return {
        "round_id": round_id, "contest_id": contest_id, "peak_users": args.peak_users,
        "baseline_users": args.baseline_users, "surge_s": args.surge_s, "think_scale": args.think_scale,
        "locust_processes": args.locust_processes,
        "started_at": started_at, "closes_at": close_ts, "ended_at": ended_at, "final_at": final_at,
        "peak_window_s": [round(peak_from_ts - started_at, 1), round(close_ts - started_at, 1)],
        "completed_per_s_peak_locust": round(peak_submits / peak_span, 1) if peak_span else None,
        "completed_per_s_peak_sql": round(sql["submitted_in_peak"] / quarter, 1),
        "submit_p99_at_70pct_ms": at70["submit_p99_ms"] if at70 else None,
        "at_70pct_t": at70["t"] if at70 else None, "at_70pct_users": at70["users"] if at70 else None,
        "submit_p99_at_70pct_rate_ms": at70_rate["submit_p99_ms"] if at70_rate else None,
        "at_70pct_rate_t": at70_rate["t"] if at70_rate else None,
        "at_70pct_rate_users": at70_rate["users"] if at70_rate else None,
        "peak_rate_5s": round(peak_rate, 1),
        "submits_202": submit_ok, "submits_409_late": int(late.get("Request Count", 0) or 0),
        "starts_409_refused": int(refused.get("Request Count", 0) or 0),
        "submit_failures": int(submit.get("Failure Count", 0) or 0),
        "server_errors_5xx": server_errors, "failures": failure_rows[:20],
        "endpoints": endpoints,
        "max_backlog_before_close": max_backlog, "drained_after_close_s": drained_after_close,
        "last_submit_to_all_scored_s": round(all_scored_ts - last_submit_ts, 2) if all_scored_ts and last_submit_ts
        else None,
        "board_zcard": board_size, "lag_after_202": lag202,
        "sql": sql,
        "series": series, "backlog": [{**s, "t": s["t"] - started_at} for s in samples],
        "cpu_load_s": cpu_between(before, after_load), "busy_share_load": round(busy_share(before, after_load), 3),
        "other_share_load": _other_share(before, after_load),
        "cpu_series": _cpu_series(bench.sampler.series, started_at, ended_at),
    }


def _rate(series: list[dict[str, Any]], i: int, span: int = 5) -> float | None:
    """Completed (202) submits per second over the `span` rows before row i."""
    if i < span:
        return None
    a, b = series[i - span], series[i]
    seconds = b["t"] - a["t"]
    done = (b["submit_total"] - b["submit_fail"]) - (a["submit_total"] - a["submit_fail"])
    return done / seconds if seconds > 0 else None


def _other_share(before: Snapshot, after: Snapshot) -> float:
    """The machine's busy share no process of the benchmark accounts for."""
    ours = sum(cpu_between(before, after).values()) / max(0.001, after.at - before.at) / (os.cpu_count() or 1)
    return round(max(0.0, busy_share(before, after) - ours), 3)


def _f(value: Any) -> float | None:
    try:
        return None if value in (None, "", "N/A") else round(float(value), 2)
    except (TypeError, ValueError):
        return None


def _cpu_series(series: list[Snapshot], start: float, end: float) -> list[dict[str, Any]]:
    """Per sampling interval: the machine's busy share and each group's share of the machine."""
    out = []
    window = [s for s in series if start - 2 <= s.at <= end + 30]
    cores = os.cpu_count() or 1
    for a, b in itertools.pairwise(window):
        span = b.at - a.at
        if span <= 0:
            continue
        groups = {name: (b.cpu.get(name, 0) - a.cpu.get(name, 0)) / span / cores for name in b.cpu}
        out.append({"t": b.at - start, "busy": busy_share(a, b), "groups": {k: round(v, 3) for k, v in groups.items()
                                                                            if v > 0.002}})
    return out


# --- the process groups the sampler watches ---------------------------------------------

def process_groups(stack: Stack) -> dict[str, Any]:
    def tree(name: str) -> Any:
        return lambda: [stack.pid_of(name), *descendants(stack.pid_of(name))] if stack.processes[name].alive() else []

    groups: dict[str, Any] = {"nginx (gateway)": tree("gateway")}
    for service in SERVICES:
        groups[f"{service} API"] = tree(service)
    for name in ("quiz-clock", "scoring-worker", "notify-worker", "relay-registration", "relay-quiz",
                 "relay-scoring", "mail"):
        groups[name] = tree(name)
    groups["PostgreSQL (whole server)"] = lambda: pids_named("postgres")
    groups["Redis (whole server)"] = lambda: pids_named("redis-server")
    groups["RabbitMQ (whole server)"] = lambda: pids_named("beam.smp", "epmd", "erl_child_setup")
    groups["bench orchestrator"] = lambda: [os.getpid()]
    groups["load generator"] = lambda: []
    return groups


def rss_table(sampler: Sampler, stack: Stack) -> list[dict[str, Any]]:
    rows = []
    masters = {stack.pid_of(s): s for s in SERVICES}
    for peak in sorted(sampler.peaks.values(), key=lambda p: (p.group, p.pid)):
        role = peak.command
        if peak.pid in masters:
            role = "gunicorn master"
        elif peak.group.endswith(" API"):
            role = "gunicorn worker (uvicorn)"
        rows.append({"group": peak.group, "pid": peak.pid, "process": role,
                     "peak_rss_mib": round(peak.hwm_kib / 1024, 1), "rss_mib": round(peak.rss_kib / 1024, 1)})
    return rows


# --- main -----------------------------------------------------------------------------

def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # Stopped by SIGTERM or SIGINT (even when started in the background, where SIGINT
    # arrives ignored), the stack and the broker queues are still cleaned up.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    args = options(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is missing; `make bench` installs it as root (apt-get install wrk)", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = ROOT / "var" / "bench" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    latest = ROOT / "var" / "bench" / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(stamp)
    began = time.monotonic()
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "options": vars(args), "machine": machine_info(args)}
    print(f"bench: {results['machine']['cores']} cores, {results['machine']['memory_gib']} GiB; raw data in "
          f"{run_dir.relative_to(ROOT)}", flush=True)
    if not args.skip_micro:
        results["micro"] = run_micro(args, run_dir)

    workers = worker_counts(args.workers)
    stack = prepare_stack(
        run_dir / "stack", database_url=args.database_url, redis_url=args.redis_url, amqp_url=args.amqp_url,
        workers=workers,
        extra_env={
            # Cheap password hashing for the benchmark's own participants, so that the
            # hot paths are not drowned by Argon2 (its real cost: bench_registration.py).
            "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST_KIB": "8192",
            "DB_POOL_MAX": args.db_pool_max,
        },
    )
    results["stack"] = {"workers": workers, "db_pool_max": args.db_pool_max, "bus_prefix": stack.bus_prefix,
                        "env": {k: stack.env[k] for k in ("APP_ENV", "LOG_LEVEL", "ARGON2_TIME_COST",
                                                          "ARGON2_MEMORY_COST_KIB", "DB_POOL_MAX",
                                                          "IN_FLIGHT_MARGIN_S")}}
    sampler = Sampler(process_groups(stack))
    bench = Bench(args, stack, sampler, run_dir)
    try:
        stack.start()
        stack.wait_ready()
        sampler.start()
        results["stack"]["ready_after_s"] = round(bench.elapsed(), 1)
        scene = asyncio.run(set_scene(stack.base_url, stack.database_url, args.users, args.rounds))
        results["scene"] = {"users": len(scene.users), "rounds": len(scene.round_ids), "signup": scene.signup,
                            "login": scene.login}
        print(f"bench: {len(scene.users)} participants: sign-up {scene.signup['per_s']}/s, login "
              f"{scene.login['per_s']}/s (16 in flight, Argon2 t=1 m=8 MiB)", flush=True)
        if not args.skip_hot:
            hot_paths(bench, scene, results)
        if not args.skip_surge:
            surge(bench, scene, results)
        if dead := stack.dead():
            results["dead_processes"] = dead
    finally:
        sampler.stop()
        results["rss"] = rss_table(sampler, stack)
        stack.stop()
        try:
            asyncio.run(delete_bus(stack.amqp_url, stack.bus_prefix, RETRY_DELAYS_S))
        except Exception as exc:
            print(f"bench: queue cleanup failed: {exc!r}", file=sys.stderr)
        # The request files hold this run's tokens and weigh megabytes: results are enough.
        shutil.rmtree(run_dir / "wrk", ignore_errors=True)
        results["total_s"] = round(time.monotonic() - began, 1)
        (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    if not args.no_docs:
        bench_report.write(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks-surge.png", run_dir)
        print("bench: wrote docs/benchmarks.md and docs/benchmarks-surge.png", flush=True)
    print(bench_report.summary(results), flush=True)
    print(f"bench: {results['total_s']} s in all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
