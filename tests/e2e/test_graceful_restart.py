"""A deploy restarts the APIs under load: gunicorn's graceful reload (SIGHUP to the
master: new workers, then the old ones stop) and a worker told to stop (SIGTERM: it
finishes what it holds, the master replaces it) must fail no request. (A worker killed
outright drops what it held; the browser's retry covers that, tests/chaos.)"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from services.core.auth import Principal, TokenSigner
from tests.e2e.stack import Stack
from tests.e2e.support import QUESTIONS_CSV, eventually


def _a_round_of_our_own(stack: Stack) -> str:
    """An open round in a contest of this test's own (other tests close the demo's)."""
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        token = client.post("/api/auth/login", json={"login": "admin", "password": "admin"}).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        created = client.post("/api/admin/contests", headers=admin,
                              json={"slug": f"khoi-dong-lai-{uuid.uuid4().hex[:6]}", "title": "Khởi động lại"})
        assert created.status_code == 201, created.text
        contest = created.json()
        with QUESTIONS_CSV.open("rb") as bank:
            imported = client.post(f"/api/admin/contests/{contest['id']}/questions/import", headers=admin,
                                   files={"file": ("questions.csv", bank, "text/csv")})
        assert imported.status_code == 200, imported.text
        now = datetime.now(UTC)
        made = client.post(f"/api/admin/contests/{contest['id']}/rounds", headers=admin, json={
            "number": 1, "title": "Tuần 1", "opens_at": (now - timedelta(minutes=1)).isoformat(),
            "closes_at": (now + timedelta(hours=1)).isoformat(), "question_count": 5, "time_limit_s": 600,
        })
        assert made.status_code == 201, made.text

        def opened() -> bool:  # the round clock opens it within a tick
            rounds = client.get(f"/api/contests/{contest['slug']}").json()["rounds"]
            return rounds[0]["status"] == "open"

        eventually(opened, timeout_s=30)
        return str(made.json()["id"])


def _gunicorn_pids(stack: Stack, service: str) -> tuple[int, list[int]]:
    """The master and workers of this stack's `service` API (other stacks may run beside it)."""
    port = stack.env[f"{service.upper()}_PORT"]
    ours: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if f"deploy/gunicorn/{service}.py".encode() in command and f"{service.upper()}_PORT={port}".encode() in environ:
            ours[int(entry.name)] = parent
    masters = [pid for pid, parent in ours.items() if parent not in ours]
    assert len(masters) == 1, ours
    return masters[0], sorted(pid for pid in ours if pid != masters[0])


def _wait_for_new_workers(stack: Stack, service: str, old: list[int], count: int, timeout_s: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, workers = _gunicorn_pids(stack, service)
        if len(workers) == count and not set(workers) & set(old):
            return workers
        time.sleep(0.1)
    raise AssertionError(f"{service}: workers {old} not replaced in {timeout_s} s")


async def _participant(client: httpx.AsyncClient, token: str, round_id: str, stop: asyncio.Event,
                       seen: Counter[int]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        started = await client.post(f"/api/rounds/{round_id}/attempts", headers=headers)  # resumes after the first
        seen[started.status_code] += 1
        if started.status_code in (200, 201):
            attempt = started.json()
            first = attempt["questions"][0]
            saved = await client.put(f"/api/attempts/{attempt['attempt_id']}/answers",
                                     json={"answers": {first["id"]: [first["options"][0]["id"]]}}, headers=headers)
            seen[saved.status_code] += 1


def test_a_graceful_restart_of_the_quiz_api_fails_no_request(stack: Stack) -> None:
    keys = Path(stack.env["JWT_PRIVATE_KEY_FILE"])
    signer = TokenSigner.from_file(keys, issuer="hoithi", audience="hoithi", ttl_s=900)
    tokens = [signer.issue(Principal(id=uuid.uuid4(), role="participant", name=f"Người thi {i}")) for i in range(24)]
    round_id = _a_round_of_our_own(stack)
    seen: Counter[int] = Counter()
    restarts: list[str] = []

    async def run() -> None:
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30, limits=limits) as client:
            load = [asyncio.create_task(_participant(client, t, round_id, stop, seen)) for t in tokens]
            try:
                await asyncio.sleep(1)  # the load is flowing, over kept-alive connections
                for turn in range(4):
                    master, workers = await asyncio.to_thread(_gunicorn_pids, stack, "quiz")
                    if turn % 2 == 0:
                        os.kill(master, signal.SIGHUP)  # a reload: what a deploy of new code does
                        restarts.append("reload")
                    else:
                        os.kill(workers[0], signal.SIGTERM)
                        restarts.append("worker")
                    remaining = [w for w in workers if turn % 2 == 0 or w == workers[0]]
                    count = len(workers)
                    await asyncio.to_thread(_wait_for_new_workers, stack, "quiz", remaining, count)
                    await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.gather(*load)

    asyncio.run(run())
    assert restarts == ["reload", "worker", "reload", "worker"]
    assert sum(seen.values()) > 50, seen
    assert set(seen) <= {200, 201}, seen
