"""The bus against the real RabbitMQ: confirms, batches, retries, dead letters, relay."""

import asyncio
from collections.abc import Callable

from prometheus_client import REGISTRY
from redis.asyncio import Redis

from services.core import outages, outbox
from services.core.bus import RETRY_HEADER
from services.core.events import Event
from services.core.relay import OutboxRelay
from services.core.testing import free_port


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_consumer_gets_batches_and_acks_them(bus_factory) -> None:
    bus = await bus_factory("core_a")
    batches: list[list[Event]] = []

    async def handler(events: list[Event]) -> None:
        batches.append(events)

    await bus.declare_consumer_queues(["thing.happened"])
    for i in range(50):
        await bus.publish(Event("thing.happened", {"i": i}))
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume({"thing.happened": handler}, batch_size=20, batch_wait_s=0.2, stop=stop))
    await _until(lambda: sum(map(len, batches)) == 50)
    stop.set()
    await task
    assert sorted(e.data["i"] for b in batches for e in b) == list(range(50))
    assert max(map(len, batches)) > 1
    assert all(len(b) <= 20 for b in batches)
    # Closing the connection would hand any unacked message back to the queue.
    await bus.close()
    checker = await bus_factory("core_a")
    queue = await checker.channel.declare_queue(checker.topology.queue, passive=True)
    assert await queue.get(fail=False, timeout=5) is None


async def _first_message(bus, queue_name: str, timeout_s: float = 10):
    """Wait for a message in the queue (quorum queues report counts late, so poll with get)."""
    queue = await bus.channel.declare_queue(queue_name, passive=True)
    for _ in range(int(timeout_s / 0.05)):
        if message := await queue.get(fail=False):
            return message
        await asyncio.sleep(0.05)
    return None


async def test_failing_event_is_retried_later_and_others_go_through(bus_factory) -> None:
    bus = await bus_factory("core_b", retry_delays_s=(1,))
    seen: list[int] = []
    failures = {"poison": 0}

    async def handler(events: list[Event]) -> None:
        for event in events:
            if event.data["i"] == 3 and failures["poison"] < 1:
                failures["poison"] += 1
                raise RuntimeError("not yet")
        seen.extend(e.data["i"] for e in events)

    await bus.declare_consumer_queues(["thing.happened"])
    for i in range(6):
        await bus.publish(Event("thing.happened", {"i": i}))
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume({"thing.happened": handler}, batch_size=10, batch_wait_s=0.2, stop=stop))
    await _until(lambda: 3 in seen)
    stop.set()
    await task
    assert sorted(seen) == [0, 1, 2, 3, 4, 5]
    assert failures["poison"] == 1


async def test_event_failing_every_retry_lands_in_the_dead_queue(bus_factory) -> None:
    bus = await bus_factory("core_c", retry_delays_s=(1, 1))
    calls = {"n": 0}

    async def always_fails(events: list[Event]) -> None:
        calls["n"] += 1
        raise ValueError("broken for good")

    await bus.declare_consumer_queues(["thing.happened"])
    await bus.publish(Event("thing.happened", {"i": 1}))
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume({"thing.happened": always_fails}, stop=stop))
    message = await _first_message(bus, bus.topology.dead_queue)
    stop.set()
    await task
    assert calls["n"] == 3  # the first try and two retries
    assert message is not None
    assert message.headers[RETRY_HEADER] == 2
    assert "broken for good" in message.headers["x-hoithi-last-error"]
    await message.ack()


async def test_malformed_message_goes_straight_to_the_dead_queue(bus_factory) -> None:
    bus = await bus_factory("core_d")
    await bus.declare_consumer_queues(["thing.happened"])
    await bus.publish_raw("thing.happened", b"this is not json")
    stop = asyncio.Event()
    handled: list[Event] = []

    async def handler(events: list[Event]) -> None:
        handled.extend(events)

    task = asyncio.create_task(bus.consume({"thing.happened": handler}, stop=stop))
    message = await _first_message(bus, bus.topology.dead_queue)
    stop.set()
    await task
    assert message is not None and message.body == b"this is not json"
    await message.ack()
    assert handled == []


async def test_relay_publishes_the_outbox_and_empties_it(bus_factory, service_pool) -> None:
    pool = await service_pool("core_test")
    bus = await bus_factory("core_e")
    received: list[Event] = []

    async def handler(events: list[Event]) -> None:
        received.extend(events)

    await bus.declare_consumer_queues(["thing.happened"])
    events = [Event("thing.happened", {"i": i}) for i in range(30)]
    async with pool.acquire() as conn, conn.transaction():
        await outbox.add_events(conn, events[:1])
        await outbox.add_events(conn, events[1:])
    relay = OutboxRelay(pool, bus, batch_size=25)
    assert await relay.publish_batch() == 25
    assert await relay.publish_batch() == 5
    assert await relay.publish_batch() == 0
    assert await outbox.count_pending(pool) == 0
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume({"thing.happened": handler}, batch_size=50, stop=stop))
    await _until(lambda: len(received) == 30)
    stop.set()
    await task
    assert {e.id for e in received} == {e.id for e in events}


async def test_rolled_back_transaction_leaves_no_event(service_pool) -> None:
    pool = await service_pool("core_test")
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                await outbox.add_events(conn, [Event("thing.happened", {})])
                raise RuntimeError("the change failed")
        except RuntimeError:
            pass
    assert await outbox.count_pending(pool) == 0


async def test_events_published_before_any_consumer_started_wait_for_it(bus_factory) -> None:
    publisher = await bus_factory("core_f")
    await publisher.declare_subscriptions()
    event = Event("winners.announced", {"round_id": "r1"})
    await publisher.publish(event)
    try:
        queue = await publisher.channel.declare_queue(f"{publisher.topology.prefix}notify", passive=True)
        waiting = await queue.get(timeout=5)
        assert Event.from_json(waiting.body) == event
        await waiting.ack()
    finally:
        for service in ("scoring", "notify"):
            for suffix in ("", ".dead", *(f".retry.{d}s" for d in publisher.topology.retry_delays_s)):
                await publisher.channel.queue_delete(f"{publisher.topology.prefix}{service}{suffix}")


async def test_a_batch_is_acked_at_once_around_messages_parked_inside_it(bus_factory) -> None:
    # Handled messages are acked with one `multiple` ack at the end of the batch; the
    # parked ones in between (and last) were acked on their own already. Acking a
    # delivery twice would close the channel, and a missed one would come back.
    bus = await bus_factory("core_g")
    await bus.declare_consumer_queues(["thing.happened"])
    for i in range(10):
        if i in (4, 9):
            await bus.publish_raw("thing.happened", b"not json %d" % i)
        else:
            await bus.publish(Event("thing.happened", {"i": i}))
    handled: list[int] = []

    async def handler(events: list[Event]) -> None:
        handled.extend(e.data["i"] for e in events)

    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume({"thing.happened": handler}, batch_size=10, batch_wait_s=0.5, stop=stop))
    await _until(lambda: len(handled) == 8)
    for i in range(10, 15):  # the channel still works after the batch's ack
        await bus.publish(Event("thing.happened", {"i": i}))
    await _until(lambda: len(handled) == 13)
    stop.set()
    await task
    assert sorted(handled) == [0, 1, 2, 3, 5, 6, 7, 8, *range(10, 15)]
    await bus.close()  # anything left unacked would now go back to the queue
    checker = await bus_factory("core_g")
    queue = await checker.channel.declare_queue(checker.topology.queue, passive=True)
    assert await queue.get(fail=False, timeout=5) is None
    parked = await checker.channel.declare_queue(checker.topology.dead_queue, passive=True)
    bodies = []
    while message := await parked.get(fail=False, timeout=5):
        bodies.append(message.body)
        await message.ack()
    assert sorted(bodies) == [b"not json 4", b"not json 9"]


# --- outages: a dependency away does not spend retries ---------------------------------

def _outage_waits(service: str, dependency: str) -> float:
    return REGISTRY.get_sample_value(
        "hoithi_bus_outage_waits_total", {"service": service, "dependency": dependency}
    ) or 0.0


async def _queue_is_empty(bus, name: str) -> bool:
    queue = await bus.channel.declare_queue(name, passive=True)
    message = await queue.get(fail=False, timeout=5)
    if message is not None:
        await message.nack(requeue=True)
    return message is None


async def test_an_outage_holds_the_batch_in_place_and_spends_no_retry(bus_factory, private_redis) -> None:
    # Long retry delays: an event that went to a retry queue would still be sitting there.
    bus = await bus_factory("core_h", retry_delays_s=(60, 120))
    store = Redis.from_url(private_redis.url, socket_connect_timeout=1)
    calls = {"n": 0}

    async def handler(events: list[Event]) -> None:
        calls["n"] += 1
        async with store.pipeline(transaction=True) as pipe:
            for event in events:
                pipe.incr(f"done:{event.data['i']}")
            await pipe.execute()

    await bus.declare_consumer_queues(["thing.happened"])
    await asyncio.to_thread(private_redis.kill)
    waits_before = _outage_waits("core_h", "redis")
    for i in range(5):
        await bus.publish(Event("thing.happened", {"i": i}))
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume(
        {"thing.happened": handler}, batch_size=10, batch_wait_s=0.3, stop=stop,
        dependencies=[outages.redis(store)],
    ))
    try:
        await _until(lambda: _outage_waits("core_h", "redis") > waits_before)
        await asyncio.sleep(2)  # several checks while Redis stays down: one try, no redelivery loop
        calls_while_down = calls["n"]
        assert await _queue_is_empty(bus, bus.topology.retry_queue(60))
        private_redis.start()
        await asyncio.to_thread(private_redis.wait_ready, 30)
        done: list[int] = []

        async def count_done() -> None:
            done[:] = [int(await store.get(f"done:{i}") or 0) for i in range(5)]

        for _ in range(200):
            await count_done()
            if all(done):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await store.aclose()
    assert done == [1, 1, 1, 1, 1]
    assert calls_while_down <= 2  # the first try (and a batch still filling), not one per check
    assert _outage_waits("core_h", "redis") == waits_before + 1
    for name in (bus.topology.queue, bus.topology.retry_queue(60), bus.topology.retry_queue(120),
                 bus.topology.dead_queue):
        assert await _queue_is_empty(bus, name), name


async def test_a_stop_during_an_outage_hands_the_batch_back_untouched(bus_factory, private_redis) -> None:
    bus = await bus_factory("core_i", retry_delays_s=(60,))
    store = Redis.from_url(private_redis.url, socket_connect_timeout=1)

    async def handler(events: list[Event]) -> None:
        await store.set("seen", 1)

    await bus.declare_consumer_queues(["thing.happened"])
    await asyncio.to_thread(private_redis.kill)
    waits_before = _outage_waits("core_i", "redis")
    await bus.publish(Event("thing.happened", {"i": 1}))
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume({"thing.happened": handler}, stop=stop,
                                           dependencies=[outages.redis(store)]))
    await _until(lambda: _outage_waits("core_i", "redis") > waits_before)
    stop.set()
    await asyncio.wait_for(task, 5)
    await store.aclose()
    queue = await bus.channel.declare_queue(bus.topology.queue, passive=True)
    message = await queue.get(fail=False, timeout=5)
    assert message is not None and Event.from_json(message.body).data == {"i": 1}
    assert RETRY_HEADER not in (message.headers or {})
    await message.ack()
    assert await _queue_is_empty(bus, bus.topology.retry_queue(60))


async def test_a_failure_on_answering_servers_still_climbs_and_is_dead_lettered(bus_factory, private_redis) -> None:
    # Redis answers, yet the handler fails: with its own error, and with an error that
    # looks like an outage (a server of its own that is not there). Both are the event's
    # failures: they climb the retry queues and end in the dead queue.
    bus = await bus_factory("core_j", retry_delays_s=(1,))
    store = Redis.from_url(private_redis.url, socket_connect_timeout=1)
    closed = free_port()

    async def handler(events: list[Event]) -> None:
        for event in events:
            if event.data["kind"] == "bad":
                raise ValueError("broken for good")
            await asyncio.open_connection("127.0.0.1", closed)

    await bus.declare_consumer_queues(["thing.happened"])
    for kind in ("bad", "unreachable"):
        await bus.publish(Event("thing.happened", {"kind": kind}))
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume({"thing.happened": handler}, stop=stop,
                                           dependencies=[outages.redis(store)], tries_on_healthy_servers=1))
    dead = await bus.channel.declare_queue(bus.topology.dead_queue, passive=True)
    buried: dict[str, tuple[int, str]] = {}
    try:
        for _ in range(400):
            if message := await dead.get(fail=False):
                buried[Event.from_json(message.body).data["kind"]] = (
                    message.headers[RETRY_HEADER], message.headers["x-hoithi-last-error"])
                await message.ack()
            if len(buried) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await store.aclose()
    assert buried["bad"] == (1, "ValueError: broken for good")
    assert buried["unreachable"][0] == 1 and buried["unreachable"][1].startswith("ConnectionRefusedError")


async def test_a_broker_that_dies_under_an_ack_costs_a_redelivery_not_the_consumer(private_rabbitmq) -> None:
    # Found by the fault suite: the ack of a handled batch raised on the dead channel, the
    # consumer's clean-up raised again, and the worker process exited for good.
    from services.core.bus import Bus, Topology

    bus = Bus(private_rabbitmq.url, Topology("broker-death.", "core_k", (60,)))
    await bus.connect(give_up_after_s=30)
    await bus.declare_consumer_queues(["thing.happened"])
    for i in range(3):
        await bus.publish(Event("thing.happened", {"i": i}))
    handled: list[int] = []

    async def handler(events: list[Event]) -> None:
        if not handled:
            await asyncio.to_thread(private_rabbitmq.kill)  # the broker dies before the ack
        handled.extend(int(e.data["i"]) for e in events)

    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume({"thing.happened": handler}, batch_size=10, batch_wait_s=0.2, stop=stop))
    try:
        await _until(lambda: len(handled) >= 3)
        private_rabbitmq.start()
        await asyncio.to_thread(private_rabbitmq.wait_ready, 90)
        # The unacked batch comes back, and what is published now is consumed too.
        await _until(lambda: handled.count(0) >= 2 or task.done(), timeout_s=60)
        assert not task.done(), task.exception() if task.done() else None
        for i in range(3, 5):
            await bus.publish(Event("thing.happened", {"i": i}))
        await _until(lambda: {3, 4} <= set(handled) or task.done(), timeout_s=30)
        assert not task.done(), task.exception() if task.done() else None
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await bus.close()
    assert set(handled) == {0, 1, 2, 3, 4}
    assert handled.count(3) == 1 and handled.count(4) == 1  # acked once the broker was back
