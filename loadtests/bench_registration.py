"""Sign-ups and logins per second on ONE core, for the configured Argon2id cost and a few
alternatives, so the cost can be chosen with numbers (docs/benchmarks.md).

    .venv/bin/python loadtests/bench_registration.py

What it measures: the registration API in-process (httpx over ASGI, the real app with
its real PostgreSQL pool and Redis), the process pinned to one CPU, requests issued 8 at
a time so the core stays busy. Argon2 runs in worker threads, which are pinned with it.
PostgreSQL and Redis run in their own processes (on other cores, when there are any), as
they do in production, so the figures are the API's per-core throughput.

Bounded: at most BENCH_SIGNUPS sign-ups and as many logins per cost, and BENCH_MAX_S
seconds in all (default 200 and 60). Localhost only: it creates, and empties, the
`registration` schema of the database BENCH_DATABASE_URL (default hoithi_bench, never
the development database) and uses Redis database BENCH_REDIS_DB (default 9).

Environment: BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_SIGNUPS, BENCH_MAX_S,
BENCH_CONCURRENCY, and the usual ARGON2_TIME_COST / ARGON2_MEMORY_COST_KIB /
ARGON2_PARALLELISM for the configured cost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from services.core.auth import generate_keypair  # noqa: E402
from services.core.db import create_database_if_missing, create_pool, migrate_service  # noqa: E402
from services.core.tables import read_csv_table  # noqa: E402
from services.registration import store  # noqa: E402
from services.registration.app import create_app  # noqa: E402
from services.registration.settings import RegistrationSettings  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/hoithi_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
SIGNUPS = int(os.environ.get("BENCH_SIGNUPS", "200"))
MAX_S = float(os.environ.get("BENCH_MAX_S", "60"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
SEED_UNITS = ROOT / "services" / "registration" / "seed" / "units.csv"
PASSWORD = "mật khẩu benchmark 2026"


@dataclass(frozen=True)
class Cost:
    label: str
    time_cost: int
    memory_cost_kib: int
    parallelism: int


@dataclass(frozen=True)
class Phase:
    done: int
    per_s: float  # measured, wall clock
    cpu_ms: float  # CPU time of this process (all threads) per request
    p95_ms: float

    @property
    def per_core_s(self) -> float:
        """What one core sustains when nothing else competes for it: 1000 / CPU ms."""
        return 1000 / self.cpu_ms if self.cpu_ms else 0.0


@dataclass(frozen=True)
class Outcome:
    cost: Cost
    hash_ms: float
    signup: Phase
    login: Phase


def refuse_remote(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"bench_registration: {url} is not on this machine; it only runs against localhost")


# Not a candidate: almost no hashing, so its row shows what the rest of a request costs.
FLOOR = Cost("reference: hashing ~free (never use)", 1, 1024, 1)


def costs(configured: RegistrationSettings) -> list[Cost]:
    mine = Cost("configured", configured.argon2_time_cost, configured.argon2_memory_cost_kib,
                configured.argon2_parallelism)
    # OWASP's equivalent alternatives (same strength, another memory/time balance) and a cheaper one.
    candidates = [
        mine,
        Cost("OWASP m=19 MiB t=2", 2, 19456, 1),
        Cost("OWASP m=12 MiB t=3", 3, 12288, 1),
        Cost("cheaper m=19 MiB t=1", 1, 19456, 1),
        Cost("OWASP m=7 MiB t=5", 5, 7168, 1),
    ]
    seen: set[tuple[int, int, int]] = set()
    unique = []
    for cost in candidates:
        key = (cost.time_cost, cost.memory_cost_kib, cost.parallelism)
        if key not in seen:
            seen.add(key)
            unique.append(cost)
    return [*unique[:3], FLOOR]


def median_hash_ms(cost: Cost, rounds: int = 15) -> float:
    hasher = PasswordHasher(time_cost=cost.time_cost, memory_cost=cost.memory_cost_kib, parallelism=cost.parallelism)
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        hasher.hash(PASSWORD)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


async def prepare_database() -> None:
    refuse_remote(DATABASE_URL)
    refuse_remote(REDIS_URL)
    if urlsplit(DATABASE_URL).path.lstrip("/") in ("hoithi", "hoithi_test"):
        raise SystemExit("bench_registration: use a database of its own (BENCH_DATABASE_URL), it empties it")
    await create_database_if_missing(DATABASE_URL)
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS registration CASCADE")
    finally:
        await conn.close()
    await migrate_service(DATABASE_URL, "registration")
    pool = await create_pool(DATABASE_URL, "registration", min_size=1, max_size=2)
    try:
        await store.import_units_with_outbox(pool, read_csv_table(SEED_UNITS.read_bytes()))
    finally:
        await pool.close()


async def timed(
    client: httpx.AsyncClient, requests: list[tuple[str, dict[str, object]]], expect: int, budget_s: float
) -> Phase:
    """Issues `requests` CONCURRENCY at a time until done or out of time."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + budget_s

    async def worker() -> None:
        while queue and time.perf_counter() < deadline:
            path, body = queue.pop()
            sent = time.perf_counter()
            response = await client.post(path, json=body)
            if response.status_code != expect:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
            latencies.append((time.perf_counter() - sent) * 1000)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 20 else max(latencies, default=0.0)
    done = len(latencies)
    return Phase(done=done, per_s=done / elapsed, cpu_ms=cpu * 1000 / done if done else 0.0, p95_ms=p95)


async def run_cost(index: int, cost: Cost, keys: Path, unit_id: str, budget_s: float) -> Outcome:
    settings = RegistrationSettings(
        app_env="development",
        log_level="WARNING",
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        jwt_private_key_file=keys / "signing.pem",
        jwt_public_keys_dir=keys / "public",
        argon2_time_cost=cost.time_cost,
        argon2_memory_cost_kib=cost.memory_cost_kib,
        argon2_parallelism=cost.parallelism,
        db_pool_min=2,
        db_pool_max=10,
    )
    app = create_app(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    phones = [f"09{index}{i:07d}" for i in range(SIGNUPS)]
    sign_ups = [("/api/auth/register", {
        "full_name": f"Người Thử {i}", "phone": phone, "unit_id": unit_id, "password": PASSWORD,
    }) for i, phone in enumerate(phones)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000 + index))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as client:
            signup = await timed(client, sign_ups, 201, budget_s / 2)
            logins = [("/api/auth/login", {"login": phone, "password": PASSWORD}) for phone in phones[:signup.done]]
            login = await timed(client, logins, 200, budget_s / 2)
    return Outcome(cost=cost, hash_ms=median_hash_ms(cost), signup=signup, login=login)


def markdown(outcomes: list[Outcome], cpu: int) -> str:
    lines = [
        f"Registration API pinned to one core (CPU {cpu} of {os.cpu_count()}), {CONCURRENCY} requests in flight,"
        " in-process ASGI, real PostgreSQL and Redis (in their own processes).",
        "Per core = 1000 / CPU ms the API process spent per request (all its threads): what a core sustains when"
        " nothing else competes for it. Measured = wall-clock rate of this run (lower when the machine is busy).",
        "",
        "| Argon2id cost | t | m (KiB) | one hash (ms) | sign-up CPU (ms) | sign-ups/s per core | measured (n)"
        " | login CPU (ms) | logins/s per core | measured (n) | p95 sign-up / login (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        c, s, g = o.cost, o.signup, o.login
        lines.append(
            f"| {c.label} | {c.time_cost} | {c.memory_cost_kib} | {o.hash_ms:.1f}"
            f" | {s.cpu_ms:.1f} | {s.per_core_s:.0f} | {s.per_s:.1f} ({s.done})"
            f" | {g.cpu_ms:.1f} | {g.per_core_s:.0f} | {g.per_s:.1f} ({g.done})"
            f" | {s.p95_ms:.0f} / {g.p95_ms:.0f} |"
        )
    return "\n".join(lines)


async def main() -> None:
    started = time.perf_counter()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # one core: this process and its Argon2 threads
    await prepare_database()
    configured = RegistrationSettings()
    chosen = costs(configured)
    pool = await create_pool(DATABASE_URL, "registration", min_size=1, max_size=2)
    try:
        unit = await store.unit_by_code(pool, "LC-P01")
    finally:
        await pool.close()
    assert unit is not None
    outcomes = []
    with tempfile.TemporaryDirectory() as folder:
        keys = Path(folder)
        generate_keypair(keys)
        for index, cost in enumerate(chosen):
            left = MAX_S - (time.perf_counter() - started)
            # Hash timing after each run takes about 15 hashes; keep it inside the bound.
            budget = max(1.0, left / (len(chosen) - index) - 15 * cost.time_cost * cost.memory_cost_kib / 2e6)
            outcomes.append(await run_cost(index, cost, keys, str(unit.id), budget))
    print(markdown(outcomes, cpu))
    print(f"\n({time.perf_counter() - started:.1f} s in all)", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
