"""`python -m services.core.relay SERVICE`: publish the service's outbox to RabbitMQ.

Takes the oldest rows under `FOR UPDATE SKIP LOCKED` (so replicas share the work),
publishes them concurrently with publisher confirms, deletes them, commits. A crash
between confirm and commit publishes those rows again: delivery is at least once, and
every consumer is idempotent. RabbitMQ down → rows wait here and the API keeps
accepting submissions.

Batches go back to back while they come back full. An empty look doubles the wait
before the next one, from 20 ms to 250 ms at most, so an idle relay costs PostgreSQL a
few cheap queries a second, while the first event after a quiet spell waits 250 ms at
worst (scoring's lag target is 1 s). Not LISTEN/NOTIFY: a committing transaction that
notifies takes a lock on the whole database until its commit is flushed, which would
serialise every submit behind one another (docs/decisions.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import asyncpg

from services.core import outbox
from services.core.bus import Bus, Topology
from services.core.db import create_pool
from services.core.logs import configure_logging
from services.core.process import stop_on_signals
from services.core.settings import CoreSettings

log = logging.getLogger("services.core.relay")


def next_wait_s(waited_s: float, published: int, batch_size: int, *, shortest_s: float, longest_s: float) -> float:
    """How long to wait before the next look, after one that published `published`
    events having waited `waited_s` before it: none after a full batch (more are
    queued), the shortest after a partial one (events are flowing), twice as long as
    before after an empty one, up to the longest."""
    if published >= batch_size:
        return 0.0
    if published > 0:
        return shortest_s
    return min(max(waited_s * 2, shortest_s), longest_s)


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        *,
        batch_size: int = 500,
        idle_sleep_s: float = 0.02,
        max_idle_sleep_s: float = 0.25,
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.batch_size = batch_size
        self.idle_sleep_s = idle_sleep_s
        self.max_idle_sleep_s = max_idle_sleep_s

    async def publish_batch(self) -> int:
        """Publish and delete one batch; the number of events published."""
        async with self.pool.acquire() as conn, conn.transaction():
            pending = await outbox.lock_pending(conn, self.batch_size)
            if not pending:
                return 0
            await asyncio.gather(*(self.bus.publish_raw(p.type, p.body) for p in pending))
            await outbox.delete_published(conn, [p.row_id for p in pending])
        return len(pending)

    async def run(self, stop: asyncio.Event) -> None:
        wait_s = self.idle_sleep_s
        while not stop.is_set():
            try:
                published = await self.publish_batch()
                wait_s = next_wait_s(
                    wait_s, published, self.batch_size, shortest_s=self.idle_sleep_s, longest_s=self.max_idle_sleep_s
                )
            except Exception as exc:
                # The broker or the database is away; the rows are still in the outbox.
                wait_s = min(max(wait_s * 2, 0.1), 5.0)
                log.warning("relay cycle failed; will retry", extra={"error": repr(exc), "backoff_s": wait_s})
            if wait_s > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait_s)
                except TimeoutError:
                    pass


async def _main(service: str) -> None:
    settings = CoreSettings()
    configure_logging(f"{service}-relay", settings.log_level)
    stop = stop_on_signals()
    pool = await create_pool(settings.database_url, service, min_size=1, max_size=2)
    bus = Bus(settings.amqp_url, Topology(settings.bus_prefix, service, tuple(settings.bus_retry_delays_s)))
    await bus.connect()
    await bus.declare_subscriptions()
    log.info("outbox relay started")
    try:
        await OutboxRelay(pool, bus).run(stop)
    finally:
        await bus.close()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=("registration", "quiz", "scoring", "notify"))
    asyncio.run(_main(parser.parse_args().service))


if __name__ == "__main__":
    main()
