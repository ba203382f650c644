"""The event bus on RabbitMQ (aio-pika), as DESIGN.md "Events" describes.

Topology, declared by whoever connects (declarations are idempotent):
- one durable topic exchange `hoithi.events`, routing key = event type;
- per consuming service a durable quorum queue `<service>` bound to the types it handles;
- per retry delay a durable queue `<service>.retry.<N>s` whose messages expire after N
  seconds back into `<service>` (dead-lettering through the default exchange);
- `<service>.dead` for events that failed every retry or can never be read.

Publishing waits for the broker's confirm and marks messages persistent. Consumers hand
batches to handlers and ack only after the handler returned, i.e. after its work is
committed; a failure re-publishes the event to the next retry queue (confirmed) and only
then acks, so an event is never dropped between the two.

A failure that is a dependency's outage (services.core.outages: PostgreSQL, Redis, a
provider unreachable) does not count against the message: the consumer keeps the batch,
waits until every dependency it was given answers again (0.5 s doubling to 10 s between
checks) and runs the same batch again, in place. Only a failure on servers that answer
climbs the retry queues; an outage-looking error while every check passes is tried in
place a few times (a pooled connection the restarted server dropped), then counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import ChannelInvalidStateError
from prometheus_client import Counter

from services.core.events import SUBSCRIPTIONS, Event, MalformedEvent
from services.core.logs import correlation_id
from services.core.outages import (
    FIRST_WAIT_S,
    Dependency,
    dependency_of,
    is_dependency_outage,
    sleep_unless_stopped,
    wait_for_dependencies,
)

log = logging.getLogger(__name__)

# What a broker that went away (or took a channel down) raises at a consumer's ack, nack or
# publish.
BROKER_GONE: tuple[type[BaseException], ...] = (
    ChannelInvalidStateError, aio_pika.exceptions.AMQPError, ConnectionError,
)

EXCHANGE = "hoithi.events"
RETRY_HEADER = "x-hoithi-retries"
ERROR_HEADER = "x-hoithi-last-error"

# An outage-looking error while every dependency answers is tried in place this many
# times (0.5, 1, 2 s apart) before it counts against the message like any failure.
IN_PLACE_TRIES_ON_HEALTHY_SERVERS = 3

OUTAGE_WAITS = Counter(
    "hoithi_bus_outage_waits_total",
    "Batches a consumer held because a dependency was down (one per dependency and wait)",
    ["service", "dependency"],
)
BATCHES_HANDED_BACK = Counter(
    "hoithi_bus_batches_handed_back_total",
    "Batches whose ack (or a retry's publish) the broker failed; they are delivered again",
    ["service"],
)
OUTAGE_RETRIES = Counter(
    "hoithi_bus_outage_retries_total",
    "Batches run again in place after an outage-looking failure, instead of a retry queue",
    ["service"],
)

Handler = Callable[[list[Event]], Awaitable[None]]


class _Stopping(Exception):
    """The consumer is stopping while a batch waits for a dependency: hand it back."""


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str
    service: str
    retry_delays_s: tuple[int, ...]

    @property
    def exchange(self) -> str:
        return f"{self.prefix}{EXCHANGE}"

    @property
    def queue(self) -> str:
        return f"{self.prefix}{self.service}"

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"

    def retry_queue(self, delay_s: int) -> str:
        return f"{self.queue}.retry.{delay_s}s"


class Bus:
    def __init__(
        self,
        amqp_url: str,
        topology: Topology,
        *,
        prefetch: int = 256,
    ) -> None:
        self._url = amqp_url
        self.topology = topology
        self._prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._consumer_tag: str | None = None
        self._dependencies: tuple[Dependency, ...] = ()
        self._tries_on_healthy_servers = IN_PLACE_TRIES_ON_HEALTHY_SERVERS
        self._stop = asyncio.Event()

    async def connect(self, *, give_up_after_s: float | None = None) -> None:
        """Connect, waiting for the broker if it is not up yet (a worker started before
        RabbitMQ must not die: its supervisor would stop the whole stack)."""
        loop = asyncio.get_running_loop()
        started, delay = loop.time(), 0.5
        while True:
            try:
                self._connection = await aio_pika.connect_robust(
                    self._url, client_properties={"connection_name": f"hoithi-{self.topology.service}"}
                )
                break
            except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
                if give_up_after_s is not None and loop.time() - started > give_up_after_s:
                    raise
                log.warning("broker not reachable; retrying", extra={"error": repr(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self._prefetch)
        self._exchange = await self._channel.declare_exchange(
            self.topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._exchange = None

    @property
    def channel(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError("Bus.connect() first")
        return self._channel

    @property
    def exchange(self) -> AbstractExchange:
        if self._exchange is None:
            raise RuntimeError("Bus.connect() first")
        return self._exchange

    async def publish_raw(self, event_type: str, body: bytes) -> None:
        """Publish one serialized envelope and wait for the broker's confirm."""
        await self.exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                type=event_type,
            ),
            routing_key=event_type,
            # An event nobody listens to yet (say attempt.scored) is not an error.
            mandatory=False,
        )

    async def publish(self, event: Event) -> None:
        await self.publish_raw(event.type, event.to_json())

    async def declare_consumer_queues(self, event_types: Sequence[str]) -> aio_pika.abc.AbstractQueue:
        return await self._declare_queues(self.topology, event_types)

    async def declare_subscriptions(self) -> None:
        """Declare every consuming service's queues and bindings (SUBSCRIPTIONS)."""
        for service, event_types in SUBSCRIPTIONS.items():
            consumer = Topology(self.topology.prefix, service, self.topology.retry_delays_s)
            await self._declare_queues(consumer, event_types)

    async def _declare_queues(self, t: Topology, event_types: Sequence[str]) -> aio_pika.abc.AbstractQueue:
        queue = await self.channel.declare_queue(t.queue, durable=True, arguments={"x-queue-type": "quorum"})
        for event_type in event_types:
            await queue.bind(self.exchange, routing_key=event_type)
        for delay in t.retry_delays_s:
            await self.channel.declare_queue(
                t.retry_queue(delay),
                durable=True,
                arguments={
                    "x-message-ttl": delay * 1000,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": t.queue,
                },
            )
        await self.channel.declare_queue(t.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
        return queue

    async def consume(
        self,
        handlers: Mapping[str, Handler],
        *,
        batch_size: int = 1,
        batch_wait_s: float = 0.02,
        stop: asyncio.Event | None = None,
        dependencies: Sequence[Dependency] = (),
        tries_on_healthy_servers: int = IN_PLACE_TRIES_ON_HEALTHY_SERVERS,
    ) -> None:
        """Run until `stop` is set: take batches of up to `batch_size` messages (waiting at
        most `batch_wait_s` to fill one), give each handler the events of its type, ack.
        `dependencies`: the servers the handlers need, waited for during an outage;
        `tries_on_healthy_servers`: in-place tries of an outage-looking error while they
        all answer."""
        queue = await self.declare_consumer_queues(sorted(handlers))
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._consumer_tag = await queue.consume(inbox.put)
        stop = stop or asyncio.Event()
        self._stop, self._dependencies = stop, tuple(dependencies)
        self._tries_on_healthy_servers = tries_on_healthy_servers
        try:
            while not stop.is_set():
                # Deliveries of a channel the broker took down (a broker restart) are the
                # broker's again: it redelivers them on the channel that replaced it.
                batch = [m for m in await _take_batch(inbox, batch_size, batch_wait_s, stop) if _channel_open(m)]
                if not batch:
                    continue
                try:
                    await self._dispatch(batch, handlers)
                except BROKER_GONE:
                    # The broker failed under the batch (its ack, a retry's publish): the
                    # handlers' work is committed and idempotent, and what was not acked
                    # comes back: the broker redelivers a dead channel's deliveries, and the
                    # ones on a channel still open are handed back here. The robust
                    # connection brings a channel back.
                    BATCHES_HANDED_BACK.labels(self.topology.service).inc()
                    log.warning("the broker failed under a batch; it will be delivered again",
                                exc_info=True, extra={"messages": len(batch)})
                    await _hand_back(batch)
        finally:
            with contextlib.suppress(*BROKER_GONE):
                await queue.cancel(self._consumer_tag)

    async def _dispatch(self, batch: list[AbstractIncomingMessage], handlers: Mapping[str, Handler]) -> None:
        handled: list[AbstractIncomingMessage] = []
        await self._dispatch_by_type(batch, handlers, handled)
        if handled:
            # One ack for the batch rather than one per message (a write to the broker
            # each). `multiple` acks every delivery up to this one, and each of those is
            # handled or already settled by now (parked ones were acked, requeued ones
            # nacked), since deliveries on a channel come in order.
            await max(handled, key=lambda message: message.delivery_tag or 0).ack(multiple=True)


    async def _dispatch_by_type(
        self,
        batch: list[AbstractIncomingMessage],
        handlers: Mapping[str, Handler],
        handled: list[AbstractIncomingMessage],
    ) -> None:
        by_type: dict[str, list[tuple[AbstractIncomingMessage, Event]]] = defaultdict(list)
        for message in batch:
            try:
                event = Event.from_json(message.body)
            except MalformedEvent as exc:
                await self._bury(message, f"malformed: {exc}")
                continue
            by_type[event.type].append((message, event))
        for event_type, items in by_type.items():
            handler = handlers.get(event_type)
            if handler is None:
                for message, _ in items:
                    await self._bury(message, f"no handler for {event_type}")
                continue
            await self._run_handler(handler, items, handled)

    async def _run_handler(
        self,
        handler: Handler,
        items: list[tuple[AbstractIncomingMessage, Event]],
        handled: list[AbstractIncomingMessage],
        *,
        tries_on_healthy_servers: int | None = None,
    ) -> None:
        """Handled messages go to `handled` (acked together by `_dispatch`)."""
        if tries_on_healthy_servers is None:
            tries_on_healthy_servers = self._tries_on_healthy_servers
        try:
            await self._handle_through_outages(handler, items, tries_on_healthy_servers)
        except _Stopping:
            for message, _ in items:
                await message.nack(requeue=True)
            return
        except Exception:
            if len(items) > 1:
                # One bad event must not hold back the rest of its batch: try them alone.
                log.warning("batch failed; retrying its events one by one", exc_info=True, extra={"size": len(items)})
                for item in items:
                    # Alone, an outage-looking error on answering servers counts at once:
                    # the batch had its tries in place already.
                    await self._run_handler(handler, [item], handled, tries_on_healthy_servers=0)
                return
            message, event = items[0]
            log.exception("event handler failed", extra={"event_id": str(event.id), "event_type": event.type})
            await self._retry_later(message, _describe(sys.exc_info()[1]))
            return
        handled.extend(message for message, _ in items)

    async def _handle_through_outages(
        self, handler: Handler, items: list[tuple[AbstractIncomingMessage, Event]], tries_on_healthy_servers: int
    ) -> None:
        """Run the handler; while it fails because a dependency is away, wait for the
        dependencies and run it again on the same events. The messages stay unacked
        meanwhile, so nothing is redelivered in a loop and no retry is spent."""
        events = [event for _, event in items]
        service = self.topology.service
        tried_on_healthy_servers = 0
        while True:
            try:
                await _handle(handler, events)
                return
            except Exception as exc:
                if not is_dependency_outage(exc):
                    raise
                log.warning(
                    "handler failed on a dependency outage; holding its batch",
                    extra={"size": len(events), "error": _describe(exc)},
                )
                waited = await wait_for_dependencies(
                    self._awaited(exc),
                    stop=self._stop,
                    on_down=lambda name: OUTAGE_WAITS.labels(service, name).inc(),
                )
                if self._stop.is_set():
                    raise _Stopping from exc
                if not waited:
                    tried_on_healthy_servers += 1
                    if tried_on_healthy_servers > tries_on_healthy_servers:
                        raise
                    if await sleep_unless_stopped(FIRST_WAIT_S * 2 ** (tried_on_healthy_servers - 1), self._stop):
                        raise _Stopping from exc
                else:
                    tried_on_healthy_servers = 0
                OUTAGE_RETRIES.labels(service).inc()

    def _awaited(self, exc: BaseException) -> tuple[Dependency, ...]:
        """The dependency the error names, if it is one of ours; else all of them (an SMTP
        relay that is down must not hold one-time codes sent by SMS)."""
        named = dependency_of(exc)
        return tuple(d for d in self._dependencies if d.name == named) or self._dependencies

    async def _retry_later(self, message: AbstractIncomingMessage, error: str) -> None:
        retries = _retries_of(message)
        delays = self.topology.retry_delays_s
        if retries >= len(delays):
            await self._bury(message, error)
            return
        await self._forward(message, self.topology.retry_queue(delays[retries]), retries + 1, error)

    async def _bury(self, message: AbstractIncomingMessage, error: str) -> None:
        retries = _retries_of(message)
        log.error("event moved to dead-letter queue", extra={"queue": self.topology.dead_queue, "error": error})
        await self._forward(message, self.topology.dead_queue, retries, error)

    async def _forward(self, message: AbstractIncomingMessage, queue_name: str, retries: int, error: str) -> None:
        try:
            await self.channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    type=message.type,
                    headers={**(message.headers or {}), RETRY_HEADER: retries, ERROR_HEADER: error[:500]},
                ),
                routing_key=queue_name,
            )
        except Exception:
            # Could not park it: hand it back to the broker rather than lose it.
            log.exception("could not forward a failed event; requeueing it", extra={"queue": queue_name})
            await message.nack(requeue=True)
            return
        await message.ack()


async def _handle(handler: Handler, events: list[Event]) -> None:
    token = correlation_id.set(events[0].correlation_id if len(events) == 1 else "")
    try:
        await handler(events)
    finally:
        correlation_id.reset(token)


def _retries_of(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(RETRY_HEADER, 0)
    return value if isinstance(value, int) else 0


def _describe(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if exc else "unknown error"


async def _take_batch(
    inbox: asyncio.Queue[AbstractIncomingMessage], size: int, wait_s: float, stop: asyncio.Event
) -> list[AbstractIncomingMessage]:
    stopping = asyncio.ensure_future(stop.wait())
    first = asyncio.ensure_future(inbox.get())
    try:
        done, _ = await asyncio.wait({first, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if first not in done:
        first.cancel()
        return []
    batch = [first.result()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while len(batch) < size:
        if not inbox.empty():
            batch.append(inbox.get_nowait())
            continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(inbox.get(), remaining))
        except TimeoutError:
            break
    return batch


async def _hand_back(batch: list[AbstractIncomingMessage]) -> None:
    for message in batch:
        if not message.processed and _channel_open(message):
            with contextlib.suppress(*BROKER_GONE):
                await message.nack(requeue=True)


def _channel_open(message: AbstractIncomingMessage) -> bool:
    try:
        return not message.channel.is_closed
    except ChannelInvalidStateError:  # aio-pika's answer for a closed one
        return False
