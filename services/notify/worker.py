"""`python -m services.notify.worker`: the notify consumer.

Handlers (docs/events.md):
- `participant.registered` → upsert the contact; a sign-up confirmation email when the
  participant gave an address.
- `staff.changed` → upsert the contact (role and unit: who coordinates what, who organises).
  An older event arriving late never overwrites a newer one.
- `winners.announced` → an email and an SMS to every winner (prize, rank, how to receive
  it), and the round summary by email to every organiser.
- `participation.nudge` → an email and an SMS to each coordinator of each listed unit.
- `code.requested` → the one-time code on the channel asked for (SMS or email).

Each handler plans its deliveries in one transaction (`ON CONFLICT (idempotency_key) DO
NOTHING`, key `{event}:{recipient}:{channel}`), then sends every delivery of its events
that is still `queued`, re-read from the database, so a redelivered event sends only what
was not sent yet. It raises (the bus retries the event later through the retry queues)
when a winner has no contact yet (participant.registered may come after this event) or a
send failed transiently and attempts are left.

A provider that cannot be reached (the connection refused, no route, a connect timeout:
services.core.outages.could_not_connect) is an outage, not a failed attempt: the delivery
keeps its attempts (the reason is recorded), and the handler raises ProviderUnreachable, on which
the bus holds the event and waits for that provider (`smtp` or `sms`) to answer again
instead of spending the event's retries. PostgreSQL being away is waited out the same way.
A timeout or hang-up after the request went out still counts as an attempt: the provider
may have taken the message, and the attempts limit is what bounds the copies.

Beside the consumer runs a sweeper: every `sweep_interval_s` it sends queued deliveries
nobody has touched for a while (`sweep_min_age_s`, doubling with each failed attempt,
never before a provider's Retry-After): those an organiser replayed, those whose event
was dead-lettered while they waited, and those a crashed worker left behind.

Exactly once, almost (docs/notify.md). Each send happens inside a transaction that holds
the delivery row (`SELECT ... FOR UPDATE SKIP LOCKED`), so the handler and the sweeper,
or two worker replicas, never send the same delivery at the same time, and the outcome
is committed right after the server answers. One window remains: if the process dies (or
loses the database) after the server accepted the message and before `sent` is
committed, the row is still `queued` and the message is sent again. The retry carries the
same Message-ID (email) or idempotency key (SMS) — both the delivery id, derived from the
idempotency key — so a relay or provider that deduplicates on it drops the copy.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Literal, Protocol

import asyncpg
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from services.core import outages
from services.core.bus import Bus, Handler, Topology
from services.core.db import create_pool
from services.core.events import (
    CODE_REQUESTED,
    PARTICIPANT_REGISTERED,
    PARTICIPATION_NUDGE,
    STAFF_CHANGED,
    WINNERS_ANNOUNCED,
    Event,
)
from services.core.logs import configure_logging
from services.core.process import stop_on_signals
from services.notify import domain, store
from services.notify.mailer import Mailer, send_error_of
from services.notify.ratelimit import RateLimiter
from services.notify.settings import NotifySettings, PhoneNumberFormat
from services.notify.sms import SmsMessage, SmsProvider, provider_from_settings, sms_send_error_of
from services.notify.templating import TemplateCatalog, load_catalog

log = logging.getLogger("services.notify.worker")


class DeliveriesPending(Exception):
    """Raised so that the bus retries the event later; nothing already sent is lost."""


class ProviderUnreachable(Exception):
    """A channel's provider could not be reached: an outage of `dependency` (the name the
    worker gives the bus for it), raised from the error that showed it."""

    def __init__(self, dependency: str, error: domain.SendError) -> None:
        super().__init__(f"{dependency} unreachable: {error.describe()}")
        self.dependency = dependency
        self.error = error


# --- event payloads (docs/events.md), validated at the edge; new fields optional -----------

class ParticipantRegisteredData(BaseModel):
    participant_id: uuid.UUID
    full_name: str
    phone: str | None = None
    email: str | None = None
    unit_id: uuid.UUID | None = None
    locale: str | None = None


class StaffChangedData(BaseModel):
    staff_id: uuid.UUID
    full_name: str
    email: str | None = None
    phone: str | None = None
    role: str | None = None
    unit_id: uuid.UUID | None = None
    locale: str | None = None


class WinnerData(BaseModel):
    participant_id: uuid.UUID
    name: str
    rank: int
    prize: str
    correct: int | None = None
    duration_ms: int | None = None
    group: str | None = None


class RoundSummaryData(BaseModel):
    participants: int | None = None
    attempts: int | None = None
    all_correct: int | None = None


class WinnersAnnouncedData(BaseModel):
    round_id: uuid.UUID
    contest_title: str
    round_title: str
    winners: list[WinnerData]
    contest_id: uuid.UUID | None = None
    summary: RoundSummaryData | None = None


class NudgeUnitData(BaseModel):
    unit_id: uuid.UUID
    code: str = ""
    name: str
    participants: int = Field(ge=0)
    headcount: int = Field(ge=0)
    rate: float = Field(ge=0)


class ParticipationNudgeData(BaseModel):
    nudge_id: uuid.UUID | None = None
    contest_id: uuid.UUID | None = None
    contest_title: str
    round_id: uuid.UUID | None = None
    round_title: str | None = None
    target_rate: float = Field(ge=0, le=1)
    units: list[NudgeUnitData]


class CodeRequestedData(BaseModel):
    request_id: uuid.UUID
    purpose: str
    channel: Literal["sms", "email"]
    recipient: str = Field(min_length=1)
    code: str = Field(min_length=1)
    expires_at: datetime
    full_name: str | None = None
    locale: str | None = None


def participant_contact(event: Event) -> domain.Contact:
    data = ParticipantRegisteredData.model_validate(event.data)
    return domain.Contact(
        data.participant_id, "participant", data.full_name, data.email, data.phone, event.occurred_at,
        unit_id=data.unit_id, locale=data.locale,
    )


def staff_contact(event: Event) -> domain.Contact:
    data = StaffChangedData.model_validate(event.data)
    return domain.Contact(
        data.staff_id, "staff", data.full_name, data.email, data.phone, event.occurred_at, role=data.role,
        unit_id=data.unit_id, locale=data.locale,
    )


def winners_announcement(event: Event) -> domain.WinnersAnnouncement:
    data = WinnersAnnouncedData.model_validate(event.data)
    summary = data.summary
    return domain.WinnersAnnouncement(
        event_id=event.id,
        event_type=event.type,
        round_id=data.round_id,
        contest_title=data.contest_title,
        round_title=data.round_title,
        winners=tuple(
            domain.Winner(w.participant_id, w.name, w.rank, w.prize, w.correct, w.duration_ms, w.group)
            for w in data.winners
        ),
        contest_id=data.contest_id,
        summary=None if summary is None else domain.RoundSummary(
            summary.participants, summary.attempts, summary.all_correct
        ),
    )


def participation_nudge(event: Event) -> domain.Nudge:
    data = ParticipationNudgeData.model_validate(event.data)
    return domain.Nudge(
        event.id, event.type, data.contest_title, data.round_title, data.target_rate,
        tuple(domain.UnitParticipation(u.unit_id, u.code, u.name, u.participants, u.headcount, u.rate)
              for u in data.units),
    )


def code_request(event: Event) -> domain.CodeRequest:
    data = CodeRequestedData.model_validate(event.data)
    return domain.CodeRequest(
        event.id, event.type, data.request_id, data.purpose, data.channel, data.recipient, data.code,
        event.occurred_at, data.expires_at, data.full_name, data.locale,
    )


# --- channels ---------------------------------------------------------------------------------

class EmailChannel:
    def __init__(self, mailer: Mailer, catalog: TemplateCatalog) -> None:
        self.mailer = mailer
        self.catalog = catalog

    async def send(self, delivery: store.DeliveryToSend) -> domain.SendError | None:
        address = domain.usable_email(delivery.recipient)
        if address is None:
            return domain.SendError("InvalidEmailAddress", None, f"not an email address: {delivery.recipient!r}")
        try:
            rendered = self.catalog.render(delivery.template, delivery.context, delivery.language)
            await self.mailer.send(self.mailer.build(delivery.id, address, rendered))
        except Exception as exc:
            if outages.could_not_connect(exc):
                raise ProviderUnreachable("smtp", send_error_of(exc)) from exc
            return send_error_of(exc)
        return None


class SmsChannel:
    def __init__(
        self,
        provider: SmsProvider,
        catalog: TemplateCatalog,
        *,
        gsm7: bool,
        max_segments: int,
        number_format: PhoneNumberFormat,
    ) -> None:
        self.provider = provider
        self.catalog = catalog
        self.gsm7 = gsm7
        self.max_segments = max_segments
        self.number_format: PhoneNumberFormat = number_format

    async def send(self, delivery: store.DeliveryToSend) -> domain.SendError | None:
        national = domain.vietnamese_mobile(delivery.recipient)
        if national is None:
            # Never handed to the provider: at best it fails there, at worst it reaches a stranger.
            return domain.SendError(
                "InvalidPhoneNumber", None, f"not a Vietnamese mobile number: {delivery.recipient!r}", "http"
            )
        try:
            text = self.catalog.render_sms(delivery.template, delivery.context, delivery.language)
            fitted = domain.fit_sms(text, gsm7=self.gsm7, max_segments=self.max_segments)
            to = domain.format_phone(national, self.number_format)
            await self.provider.send(SmsMessage(delivery.id, to, fitted.text, fitted.encoding, fitted.segments))
        except Exception as exc:
            if outages.could_not_connect(exc):
                raise ProviderUnreachable("sms", sms_send_error_of(exc)) from exc
            # A template that cannot render classifies as permanent here too (by its type name).
            return sms_send_error_of(exc)
        return None


class DeliveryChannel(Protocol):
    """Sends one delivery and says what went wrong, if anything; raises only
    ProviderUnreachable."""

    async def send(self, delivery: store.DeliveryToSend) -> domain.SendError | None: ...


# --- sending ----------------------------------------------------------------------------------

class DeliverySender:
    """Sends queued deliveries, one transaction each, and records the outcome."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: Mapping[str, DeliveryChannel],
        *,
        max_attempts: int,
        limiter: RateLimiter | None = None,
        concurrency: int = 1,
    ) -> None:
        self.pool = pool
        self.channels = dict(channels)
        self.max_attempts = max_attempts
        self.limiter = limiter or RateLimiter(None, {})
        self.concurrency = concurrency

    async def send_if_queued(
        self, delivery_id: uuid.UUID, channel: str | None = None
    ) -> domain.AttemptOutcome | None:
        """Send it if it is still queued, due, and nobody else is sending it; None otherwise.
        ProviderUnreachable (after recording why, without spending an attempt) when the
        provider could not be reached."""
        if channel is not None:
            # Before the row lock: a worker waiting for its turn holds no database connection.
            await self.limiter.wait_for_token(channel)
        unreachable: ProviderUnreachable | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            delivery = await store.lock_if_queued(conn, delivery_id)
            if delivery is None:
                return None
            if channel is None and self.limiter.limited(delivery.channel):
                await self.limiter.wait_for_token(delivery.channel)
            try:
                error = await self._attempt(delivery)
                outcome = domain.outcome_of_attempt(delivery.attempts, error, self.max_attempts)
            except ProviderUnreachable as exc:
                # An outage is not the delivery's failure: a few of them must not make it dead.
                unreachable, error = exc, exc.error
                outcome = domain.AttemptOutcome("queued", delivery.attempts, error.describe())
            await store.record_attempt(conn, delivery.id, outcome, domain.SECRET_CONTEXT_KEYS)
        fields = {
            "delivery_id": str(delivery.id), "channel": delivery.channel, "template": delivery.template,
            "status": outcome.status, "attempts": outcome.attempts,
        }
        if error is None:
            log.info("delivery sent", extra=fields)
        else:
            log.warning("delivery attempt failed", extra={**fields, "error": error.describe()})
        if unreachable is not None:
            raise unreachable
        return outcome

    async def _attempt(self, delivery: store.DeliveryToSend) -> domain.SendError | None:
        if delivery.expired:
            return domain.SendError("Expired", None, "expired before it could be sent")
        channel = self.channels.get(delivery.channel)
        if channel is None:
            return domain.SendError("TemplateRenderError", None, f"no sender for channel {delivery.channel!r}")
        return await channel.send(delivery)

    async def send_all(self, queued: Sequence[store.QueuedDelivery]) -> list[domain.AttemptOutcome]:
        """Up to `concurrency` sends in flight, each on its own connection and row lock."""
        if not queued:
            return []
        gate = asyncio.Semaphore(self.concurrency)

        async def one(q: store.QueuedDelivery) -> domain.AttemptOutcome | None:
            async with gate:
                return await self.send_if_queued(q.id, q.channel)

        # Every send finishes (and records its outcome) before an error goes up: an
        # unreachable SMTP relay must not leave the SMS of the same event unsent.
        results = await asyncio.gather(*(one(q) for q in queued), return_exceptions=True)
        outcomes: list[domain.AttemptOutcome] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            if result is not None:
                outcomes.append(result)
        return outcomes

    async def send_queued_of_event(self, event_id: uuid.UUID) -> list[domain.AttemptOutcome]:
        return await self.send_all(await store.due_deliveries_of_events(self.pool, [event_id]))

    async def deliver_events(self, event_ids: Sequence[uuid.UUID]) -> str | None:
        """Send what is queued and due for these events; describe what is still queued after
        (transient failures, a Retry-After, another sender holding a row), None if nothing."""
        await self.send_all(await store.due_deliveries_of_events(self.pool, event_ids))
        still = await store.queued_count_by_channel(self.pool, event_ids)
        if not still:
            return None
        return ", ".join(f"{n} {channel}(s)" for channel, n in still.items()) + " still queued"

    async def sweep_once(self, *, min_age_s: float, max_backoff_s: float, limit: int = 200) -> int:
        """Send the queued deliveries that are due; returns how many were attempted."""
        attempted = 0
        for candidate in await store.sweep_candidates(self.pool, min_age_s, limit):
            if not domain.is_due_for_sweep(candidate.attempts, candidate.idle_s, min_age_s, max_backoff_s):
                continue
            if await self.send_if_queued(candidate.id, candidate.channel) is not None:
                attempted += 1
        return attempted

    async def sweep_forever(
        self, stop: asyncio.Event, *, interval_s: float, min_age_s: float, max_backoff_s: float
    ) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once(min_age_s=min_age_s, max_backoff_s=max_backoff_s)
            except Exception as exc:
                # The database is away: the rows wait, the next round tries again.
                log.warning("sweep failed; will retry", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass


# --- handlers ---------------------------------------------------------------------------------

async def on_contacts_changed(
    pool: asyncpg.Pool, to_contact: Callable[[Event], domain.Contact], events: list[Event]
) -> None:
    # A payload that breaks the contract raises ValidationError: the bus retries that event
    # alone and, failing again, parks it in `notify.dead`; the rest of the batch goes through.
    contacts = [to_contact(event) for event in events]
    await store.upsert_contacts(pool, domain.newest_contacts(contacts))


async def on_participants_registered(
    pool: asyncpg.Pool, sender: DeliverySender, site_url: str, events: list[Event]
) -> None:
    contacts = [participant_contact(event) for event in events]
    confirmations = [
        planned
        for event, contact in zip(events, contacts, strict=True)
        if (planned := domain.plan_signup(event.id, event.type, contact, site_url)) is not None
    ]
    async with pool.acquire() as conn, conn.transaction():
        await store.upsert_contacts(conn, domain.newest_contacts(contacts))
        await store.insert_planned(conn, confirmations)
    pending = await sender.deliver_events([event.id for event in events])
    if pending:
        raise DeliveriesPending(f"sign-up confirmations: {pending}")


async def on_winners_announced(pool: asyncpg.Pool, sender: DeliverySender, events: list[Event]) -> None:
    pending: list[str] = []
    for event in events:
        announcement = winners_announcement(event)
        async with pool.acquire() as conn, conn.transaction():
            contacts = await store.contacts_by_id(conn, [w.participant_id for w in announcement.winners])
            plan = domain.plan_winner_messages(announcement, contacts)
            organisers = await store.staff_with_role(conn, domain.ORGANISER_ROLE)
            summaries = domain.plan_organiser_summary(announcement, organisers)
            queued_now = await store.insert_planned(conn, [*plan.deliveries, *summaries])
        log.info(
            "winner messages planned",
            extra={
                "event_id": str(event.id),
                "round_id": str(announcement.round_id),
                "planned": len(plan.deliveries),
                "organiser_summaries": len(summaries),
                "new": queued_now,
                "unknown_contacts": len(plan.unknown_contacts),
                "without_email": [str(p) for p in plan.without_email],
                "without_phone": [str(p) for p in plan.without_phone],
            },
        )
        still = await sender.deliver_events([event.id])
        if plan.unknown_contacts:
            pending.append(f"{event.id}: no contact yet for {', '.join(map(str, plan.unknown_contacts))}")
        if still:
            pending.append(f"{event.id}: {still} after transient failures")
    if pending:
        raise DeliveriesPending("; ".join(pending))


async def on_participation_nudges(pool: asyncpg.Pool, sender: DeliverySender, events: list[Event]) -> None:
    for event in events:
        nudge = participation_nudge(event)
        async with pool.acquire() as conn, conn.transaction():
            coordinators = await store.coordinators_of_units(
                conn, [u.unit_id for u in nudge.units], domain.COORDINATOR_ROLE
            )
            plan = domain.plan_nudge(nudge, coordinators)
            queued_now = await store.insert_planned(conn, plan.deliveries)
        # A unit without a known coordinator is reported, not retried: many units have none.
        log.info(
            "participation nudges planned",
            extra={
                "event_id": str(event.id),
                "units": len(nudge.units),
                "planned": len(plan.deliveries),
                "new": queued_now,
                "units_without_coordinator": [str(u) for u in plan.units_without_coordinator],
            },
        )
    pending = await sender.deliver_events([event.id for event in events])
    if pending:
        raise DeliveriesPending(f"nudges: {pending}")


async def on_codes_requested(pool: asyncpg.Pool, sender: DeliverySender, events: list[Event]) -> None:
    planned = [domain.plan_code(code_request(event)) for event in events]
    await store.insert_planned(pool, planned)
    pending = await sender.deliver_events([event.id for event in events])
    if pending:
        raise DeliveriesPending(f"one-time codes: {pending}")


def handlers(pool: asyncpg.Pool, sender: DeliverySender, *, site_url: str = "") -> Mapping[str, Handler]:
    return {
        PARTICIPANT_REGISTERED: partial(on_participants_registered, pool, sender, site_url),
        STAFF_CHANGED: partial(on_contacts_changed, pool, staff_contact),
        WINNERS_ANNOUNCED: partial(on_winners_announced, pool, sender),
        PARTICIPATION_NUDGE: partial(on_participation_nudges, pool, sender),
        CODE_REQUESTED: partial(on_codes_requested, pool, sender),
    }


# --- composition root -------------------------------------------------------------------------

def build_sender(
    settings: NotifySettings,
    pool: asyncpg.Pool,
    catalog: TemplateCatalog,
    *,
    redis: Redis | None = None,
    sms_provider: SmsProvider | None = None,
) -> DeliverySender:
    channels: dict[str, DeliveryChannel] = {
        "email": EmailChannel(Mailer(settings), catalog),
        "sms": SmsChannel(
            sms_provider or provider_from_settings(settings),
            catalog,
            gsm7=settings.sms_gsm7,
            max_segments=settings.sms_max_segments,
            number_format=settings.sms_number_format,
        ),
    }
    limiter = RateLimiter(
        redis,
        {"email": settings.smtp_rate_per_s, "sms": settings.sms_rate_per_s},
        key_prefix=f"{settings.bus_prefix}notify:rate:",
    )
    return DeliverySender(
        pool, channels, max_attempts=settings.max_send_attempts, limiter=limiter,
        concurrency=settings.send_concurrency,
    )


def provider_dependencies(settings: NotifySettings, pool: asyncpg.Pool) -> list[outages.Dependency]:
    """What the bus waits for during an outage: PostgreSQL, the SMTP relay and, when it is
    a real one, the SMS provider (named as ProviderUnreachable names them). Redis is not
    one: the rate limiter works without it."""
    needed = [outages.postgres(pool), outages.tcp("smtp", settings.smtp_host, settings.smtp_port)]
    if settings.sms_provider == "http" and settings.sms_http_url:
        needed.append(outages.http("sms", settings.sms_http_url))
    return needed


async def main() -> None:
    settings = NotifySettings()
    configure_logging("notify-worker", settings.log_level)
    catalog = load_catalog(settings.templates_dir)  # a broken template stops us here
    if settings.is_production and settings.sms_provider == "console":
        log.warning("SMS_PROVIDER=console in production: SMS are only logged, never sent")
    stop = stop_on_signals()
    pool = await create_pool(settings.database_url, "notify", min_size=1, max_size=settings.db_pool_max)
    redis = Redis.from_url(settings.redis_url)
    sms_provider = provider_from_settings(settings)
    bus = Bus(
        settings.amqp_url,
        Topology(settings.bus_prefix, "notify", tuple(settings.bus_retry_delays_s)),
        prefetch=settings.bus_prefetch,
    )
    sender = build_sender(settings, pool, catalog, redis=redis, sms_provider=sms_provider)
    try:
        await bus.connect()
        log.info(
            "notify worker started",
            extra={"smtp": f"{settings.smtp_host}:{settings.smtp_port}", "sms_provider": settings.sms_provider},
        )
        await asyncio.gather(
            bus.consume(
                handlers(pool, sender, site_url=settings.public_base_url),
                batch_size=50,
                stop=stop,
                dependencies=provider_dependencies(settings, pool),
            ),
            sender.sweep_forever(
                stop,
                interval_s=settings.sweep_interval_s,
                min_age_s=settings.sweep_min_age_s,
                max_backoff_s=settings.sweep_max_backoff_s,
            ),
        )
    finally:
        await bus.close()
        await sms_provider.aclose()
        await redis.aclose()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
