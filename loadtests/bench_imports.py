"""How long other requests wait while an organiser's file is read (issue 11: a 43 KB
workbook unpacking to 300,000 rows held registration's event loop for 27 s).

    .venv/bin/python loadtests/bench_imports.py

The registration API in-process (httpx over ASGI, its real PostgreSQL pool and Redis),
one request at a time probing the unit picker (`GET /api/units?q=`, a PostgreSQL query)
while, in the same process, an organiser uploads: nothing (the baseline), that 300,000-row
workbook (refused at the row cap), and a real 5,000-unit CSV (imported). The target: a
probe's worst wait under 100 ms while a file is read.

Bounded: each phase at most BENCH_IMPORT_MAX_S seconds (default 60). Localhost only: it
recreates the `registration` schema of BENCH_DATABASE_URL (default hoithi_bench, never
the development database) and uses Redis database BENCH_REDIS_DB's URL (default 9).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtests.bench_registration import DATABASE_URL, REDIS_URL, prepare_database  # noqa: E402
from services.core.auth import Principal, TokenSigner, generate_keypair  # noqa: E402
from services.core.tables import XLSX_MEDIA_TYPE, read_csv_table  # noqa: E402
from services.core.testing import xlsx_of_many_rows  # noqa: E402
from services.registration.app import create_app  # noqa: E402
from services.registration.settings import RegistrationSettings  # noqa: E402

MAX_S = float(os.environ.get("BENCH_IMPORT_MAX_S", "60"))
SEED_UNITS = ROOT / "services" / "registration" / "seed" / "units.csv"


@dataclass(frozen=True)
class Phase:
    label: str
    upload_s: float | None
    outcome: str
    probes: list[float]  # ms

    def row(self) -> str:
        p = self.probes
        p99 = statistics.quantiles(p, n=100)[-1] if len(p) >= 100 else max(p)
        took = f"{self.upload_s:.2f}" if self.upload_s is not None else "—"
        return (f"| {self.label} | {took} | {self.outcome} | {len(p)} | {statistics.median(p):.1f}"
                f" | {p99:.1f} | {max(p):.1f} |")


def units_csv(count: int) -> bytes:
    """The seed tree and `count` wards under its first district."""
    seed = SEED_UNITS.read_text(encoding="utf-8").rstrip("\n").splitlines()
    parent = read_csv_table(SEED_UNITS.read_bytes()).rows[1][0]
    extra = [f"BENCH-{i:05d},Phường thử {i},{parent},commune,{100 + i % 50}" for i in range(count)]
    return ("\n".join([*seed, *extra]) + "\n").encode()


async def phase(client: httpx.AsyncClient, label: str, upload: tuple[str, bytes, str] | None,
                token: str, expect: int) -> Phase:
    probes: list[float] = []
    deadline = time.perf_counter() + MAX_S

    def more(done: asyncio.Future[httpx.Response] | None, count: int) -> bool:
        if time.perf_counter() >= deadline:
            return False
        return len(probes) < count if done is None else not done.done()

    async def probe_until(done: asyncio.Future[httpx.Response] | None, count: int) -> None:
        while more(done, count):
            sent = time.perf_counter()
            response = await client.get("/api/units", params={"q": "phuong"})
            response.raise_for_status()
            probes.append((time.perf_counter() - sent) * 1000)

    if upload is None:
        await probe_until(None, 300)
        return Phase(label, None, "—", probes)
    started = time.perf_counter()
    task: asyncio.Task[httpx.Response] = asyncio.create_task(client.post(
        "/api/admin/units/import", headers={"Authorization": f"Bearer {token}"}, files={"file": upload}))
    await probe_until(task, 0)
    response = await task
    took = time.perf_counter() - started
    if response.status_code != expect:
        raise RuntimeError(f"{label}: {response.status_code} {response.text[:300]}")
    outcome = "refused (422, row cap)" if expect == 422 else f"imported ({response.json()['imported']} units)"
    return Phase(label, took, outcome, probes)


async def main() -> None:
    started = time.perf_counter()
    await prepare_database()  # the seed tree in a schema of its own, as bench_registration.py does
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        keys = Path(folder)
        generate_keypair(keys)
        settings = RegistrationSettings(
            app_env="development", log_level="WARNING", database_url=DATABASE_URL, redis_url=REDIS_URL,
            jwt_private_key_file=keys / "signing.pem", jwt_public_keys_dir=keys / "public",
        )
        signer = TokenSigner.from_file(keys / "signing.pem", issuer="hoithi", audience="hoithi", ttl_s=900)
        token = signer.issue(Principal(id=uuid.uuid4(), role="organiser", name="Ban Tổ chức"))
        bomb = xlsx_of_many_rows(300_000)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
                for _ in range(30):  # warm: the pool's connections opened, the statements prepared
                    (await client.get("/api/units", params={"q": "phuong"})).raise_for_status()
                phases = [
                    await phase(client, "nothing uploaded (baseline)", None, token, 0),
                    await phase(client, f"a {len(bomb) // 1024} KB XLSX of 300,000 rows",
                                ("don-vi.xlsx", bomb, XLSX_MEDIA_TYPE), token, 422),
                    await phase(client, "a CSV of 5,000 units", ("don-vi.csv", units_csv(5000), "text/csv"),
                                token, 200),
                ]
    print(f"Registration API in-process, the unit picker probed one request at a time while the upload is read "
          f"(row cap {settings.units_import_max_rows:,}). Target: worst probe under 100 ms.\n")
    print("| upload | upload took (s) | outcome | probes | p50 (ms) | p99 (ms) | worst (ms) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for p in phases:
        print(p.row())
    print(f"\n({time.perf_counter() - started:.1f} s in all)", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
