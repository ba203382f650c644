"""`python -m services.core.relay SERVICE`: publish the service's outbox to RabbitMQ.

Takes the oldest rows under `FOR UPDATE SKIP LOCKED` (so replicas share the work),
publishes them concurrently with publisher confirms, deletes them, commits. A crash
between confirm and commit publishes those rows again: delivery is at least once, and
every consumer is idempotent. RabbitMQ down → rows wait here and the API keeps
accepting submissions.
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


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, *, batch_size: int = 500, idle_sleep_s: float = 0.02) -> None:
        self.pool = pool
        self.bus = bus
        self.batch_size = batch_size
        self.idle_sleep_s = idle_sleep_s

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
        backoff = self.idle_sleep_s
        while not stop.is_set():
            try:
                published = await self.publish_batch()
                backoff = self.idle_sleep_s
            except Exception as exc:
                # The broker or the database is away; the rows are still in the outbox.
                log.warning("relay cycle failed; will retry", extra={"error": repr(exc), "backoff_s": backoff})
                published = 0
                backoff = min(backoff * 2 if backoff >= 0.1 else 0.1, 5.0)
            if published < self.batch_size:
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
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
