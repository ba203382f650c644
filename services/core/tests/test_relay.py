"""The relay's pace: back to back while events queue, backing off while idle."""

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from services.core import outbox
from services.core.events import Event
from services.core.relay import OutboxRelay, next_wait_s

SHORTEST, LONGEST, BATCH = 0.02, 0.25, 500

waits = st.floats(min_value=0, max_value=10, allow_nan=False)


@given(waited=waits, published=st.integers(min_value=BATCH, max_value=10 * BATCH))
def test_a_full_batch_is_followed_at_once(waited: float, published: int) -> None:
    assert next_wait_s(waited, published, BATCH, shortest_s=SHORTEST, longest_s=LONGEST) == 0


@given(waited=waits, published=st.integers(min_value=1, max_value=BATCH - 1))
def test_a_partial_batch_keeps_the_pace_fast(waited: float, published: int) -> None:
    assert next_wait_s(waited, published, BATCH, shortest_s=SHORTEST, longest_s=LONGEST) == SHORTEST


@given(waited=waits)
def test_an_empty_look_waits_longer_within_the_bounds(waited: float) -> None:
    wait = next_wait_s(waited, 0, BATCH, shortest_s=SHORTEST, longest_s=LONGEST)
    assert SHORTEST <= wait <= LONGEST
    assert wait == LONGEST or wait >= 2 * waited


def test_idle_waits_double_up_to_the_longest() -> None:
    wait, seen = SHORTEST, []
    for _ in range(8):
        wait = next_wait_s(wait, 0, BATCH, shortest_s=SHORTEST, longest_s=LONGEST)
        seen.append(wait)
    assert seen == [0.04, 0.08, 0.16, 0.25, 0.25, 0.25, 0.25, 0.25]


class CountingRelay(OutboxRelay):
    """The real relay, counting how often it looked at the outbox."""

    looks = 0

    async def publish_batch(self) -> int:
        self.looks += 1
        return await super().publish_batch()


async def test_an_idle_relay_looks_rarely_and_still_publishes_what_comes(bus_factory, service_pool) -> None:
    pool = await service_pool("core_test")
    bus = await bus_factory("core_relay")
    await bus.declare_consumer_queues(["thing.happened"])
    relay = CountingRelay(pool, bus, idle_sleep_s=0.02, max_idle_sleep_s=0.25)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.sleep(1.5)
        # At a fixed 20 ms it would have looked ~75 times; backing off it looks ~10.
        assert relay.looks <= 20
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add_events(conn, [Event("thing.happened", {"after": "quiet"})])
        for _ in range(100):  # bounded: 5 s
            if await outbox.count_pending(pool) == 0:
                break
            await asyncio.sleep(0.05)
        assert await outbox.count_pending(pool) == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    queue = await bus.channel.declare_queue(bus.topology.queue, passive=True)
    message = await queue.get(fail=False, timeout=5)
    assert message is not None and b"quiet" in message.body
