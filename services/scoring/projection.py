"""The boards heal themselves: noticing that Redis lost them, and rebuilding them from
PostgreSQL under a lock (docs/decisions.md "Lost boards rebuild themselves").

Who notices (the markers are described in leaderboards.py):
- the worker's watch, every `SCORING_PROJECTION_CHECK_S`: the name hashes and every round
  whose marker is missing or names another Redis server (a restart, a failover) are
  rebuilt, rounds not final first;
- the worker before writing a batch: a round of the batch without its marker is rebuilt
  first (the rebuild reads PostgreSQL after the batch committed, so it includes it);
- the API, when a board read finds the round's marker missing: the read waits for the
  rebuild (doing it itself if nobody else is) and never answers from partial boards.
  Past `SCORING_REBUILD_WAIT_S` it answers 503 `board_rebuilding`; a frozen round is
  therefore never shown live, since its boards are only read once its meta is rebuilt.

One process rebuilds a round at a time: a Redis lock per round (and one for the names),
with an expiry so that a process dying mid-rebuild does not block the others for long;
inside a process, callers asking for the same round share one rebuild. The lock saves
work, it is not what makes the result right: two rebuilds at once (the lock expired, or a
flush took it) still end exact, since each one's catch-up runs after its own swap
(leaderboards.rebuild_rounds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, TypeVar
from uuid import UUID

import asyncpg
from prometheus_client import Counter, Histogram
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from services.scoring import store
from services.scoring.leaderboards import BoardsLost, Leaderboards, rebuild_names, rebuild_rounds

log = logging.getLogger(__name__)

REBUILDS = Counter(
    "hoithi_scoring_projection_rebuilds_total",
    "Projections rebuilt from PostgreSQL because Redis lost them (part: round or names)",
    ["part"],
)
REBUILD_SECONDS = Histogram(
    "hoithi_scoring_projection_rebuild_seconds",
    "Time to rebuild one projection",
    ["part"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

RoundState = Literal["built", "unknown", "rebuilding"]
T = TypeVar("T")


class BoardsRebuilding(Exception):
    """The round's boards are being rebuilt by another process and were not ready in time."""

    def __init__(self, round_id: UUID) -> None:
        super().__init__(f"the boards of round {round_id} are being rebuilt")
        self.round_id = round_id


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Projection:
    def __init__(
        self,
        pool: asyncpg.Pool,
        boards: Leaderboards,
        *,
        clock: Callable[[], datetime] = _utc_now,
        read_wait_s: float = 10.0,
        lock_ttl_s: float = 60.0,
        poll_s: float = 0.1,
    ) -> None:
        self.pool = pool
        self.boards = boards
        self.clock = clock
        self.read_wait_s = read_wait_s
        self.lock_ttl_s = lock_ttl_s
        self.poll_s = poll_s
        self._in_flight: dict[UUID, asyncio.Task[RoundState]] = {}

    # --- the watch ----------------------------------------------------------------------

    async def heal(self) -> int:
        """One look: rebuild the name hashes and every round not built on this Redis
        server; the number of rounds rebuilt."""
        server = await self.boards.server_id()
        if await self.boards.names_built_on() != server:
            await self._rebuild_names()
        round_ids = await store.round_ids_open_first(self.pool)
        built_on = await self.boards.built_on(round_ids)
        rebuilt = 0
        for round_id in round_ids:
            if built_on[round_id] != server and await self.rebuild(round_id) == "built":
                rebuilt += 1
        return rebuilt

    # --- before a write, and on a read ----------------------------------------------------

    async def ensure_built(self, round_ids: Sequence[UUID]) -> None:
        """Rebuild the rounds whose marker is missing. A round another process is
        rebuilding is left to it: writing meanwhile is safe (leaderboards.rebuild_rounds)."""
        missing = [rid for rid, on in (await self.boards.built_on(round_ids)).items() if on is None]
        for round_id in missing:
            await self.rebuild(round_id)

    async def read(self, round_id: UUID, read: Callable[[bool], Awaitable[T]]) -> T:
        """`read(True)`, which raises BoardsLost when the round's marker is missing; then
        the round is rebuilt (or its rebuild elsewhere awaited) and read again. A round
        PostgreSQL does not know is read as it is (`read(False)`). BoardsRebuilding when
        the boards are still not back after `read_wait_s`."""
        try:
            return await read(True)
        except BoardsLost:
            pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_wait_s
        while True:
            if await self.rebuild(round_id) == "unknown":
                return await read(False)
            try:
                return await read(True)
            except BoardsLost:
                pass
            if loop.time() >= deadline:
                raise BoardsRebuilding(round_id)
            await asyncio.sleep(self.poll_s)

    # --- rebuilding -----------------------------------------------------------------------

    async def rebuild(self, round_id: UUID) -> RoundState:
        """Rebuild the round unless it is built on this server already; callers in this
        process share one rebuild, which goes on even if they are cancelled."""
        task = self._in_flight.get(round_id)
        if task is None:
            task = asyncio.create_task(self._rebuild_round(round_id))
            self._in_flight[round_id] = task

            def forget(done: asyncio.Task[RoundState]) -> None:
                if self._in_flight.get(round_id) is done:
                    del self._in_flight[round_id]

            task.add_done_callback(forget)
        return await asyncio.shield(task)

    async def _rebuild_round(self, round_id: UUID) -> RoundState:
        lock = self.boards.redis.lock(
            f"scoring:rebuild-lock:{round_id}", timeout=self.lock_ttl_s, blocking=False, thread_local=False
        )
        if not await lock.acquire():
            return "rebuilding"
        try:
            server = await self.boards.server_id()
            if (await self.boards.built_on([round_id]))[round_id] == server:
                return "built"  # someone finished it while we took the lock
            started = time.perf_counter()
            report = await rebuild_rounds(self.pool, self.boards, [round_id], now=self.clock())
            if not report.rounds:
                return "unknown"
            elapsed = time.perf_counter() - started
            if report.entries:  # not a new round's first (empty) boards
                REBUILDS.labels("round").inc()
                REBUILD_SECONDS.labels("round").observe(elapsed)
                log.warning(
                    "boards of a round were lost; rebuilt from PostgreSQL",
                    extra={"round_id": str(round_id), "entries": report.entries, "boards": report.boards,
                           "seconds": round(elapsed, 3)},
                )
            return "built"
        finally:
            await _release(lock)

    async def _rebuild_names(self) -> None:
        lock = self.boards.redis.lock(
            "scoring:rebuild-lock:names", timeout=self.lock_ttl_s, blocking=False, thread_local=False
        )
        if not await lock.acquire():
            return
        try:
            if await self.boards.names_built_on() == await self.boards.server_id():
                return
            started = time.perf_counter()
            people = await rebuild_names(self.pool, self.boards)
            elapsed = time.perf_counter() - started
            REBUILDS.labels("names").inc()
            REBUILD_SECONDS.labels("names").observe(elapsed)
            log.warning("name hashes were lost; rebuilt from PostgreSQL",
                        extra={"participants": people, "seconds": round(elapsed, 3)})
        finally:
            await _release(lock)


async def _release(lock: Lock) -> None:
    try:
        await lock.release()
    except LockError:
        pass  # expired during a long rebuild, or a flush took it: nothing to give back
