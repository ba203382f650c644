"""`python -m services.notify.worker`: the notify consumer.

Handlers:
- `participant.registered`, `staff.changed` → upsert contacts (an older event arriving
  late never overwrites a newer one).
- `winners.announced` → in one transaction, queue one email per winner with a known
  address (`ON CONFLICT (idempotency_key) DO NOTHING`); then send every delivery of the
  event that is still `queued`, re-read from the database, so a redelivered event sends
  only what was not sent yet. The handler raises (the bus retries the event later) when
  a winner has no contact yet (participant.registered may come after this event) or a
  send failed transiently and attempts are left.

Beside the consumer runs a sweeper: every `sweep_interval_s` it sends queued deliveries
nobody has touched for a while (`sweep_min_age_s`, doubling with each failed attempt):
those an organiser replayed, those whose event was dead-lettered while they waited, and
those a crashed worker left behind.

Exactly once, almost. Each send happens inside a transaction that holds the delivery row
(`SELECT ... FOR UPDATE SKIP LOCKED`), so the handler and the sweeper, or two worker
replicas, never send the same delivery at the same time, and the outcome is committed
right after the SMTP server answers. One window remains: if the process dies (or loses
the database) after the server accepted the message and before `sent` is committed, the
row is still `queued` and the message is sent again. The retry carries the same
`Message-ID` (`<delivery id@sender domain>`, the id derived from the idempotency key), so
a relay or mailbox that deduplicates on Message-ID drops the copy.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from functools import partial

import asyncpg
from pydantic import BaseModel

from services.core.bus import Bus, Handler, Topology
from services.core.db import create_pool
from services.core.events import PARTICIPANT_REGISTERED, STAFF_CHANGED, WINNERS_ANNOUNCED, Event
from services.core.logs import configure_logging
from services.core.process import stop_on_signals
from services.notify import domain, store
from services.notify.mailer import Mailer, send_error_of
from services.notify.settings import NotifySettings
from services.notify.templating import TemplateCatalog, load_catalog

log = logging.getLogger("services.notify.worker")


class DeliveriesPending(Exception):
    """Raised so that the bus retries the event later; nothing already sent is lost."""


# --- event payloads (docs/events.md), validated at the edge ---------------------------------

class ParticipantRegisteredData(BaseModel):
    participant_id: uuid.UUID
    full_name: str
    phone: str | None = None
    email: str | None = None


class StaffChangedData(BaseModel):
    staff_id: uuid.UUID
    full_name: str
    email: str | None = None
    phone: str | None = None


class WinnerData(BaseModel):
    participant_id: uuid.UUID
    name: str
    rank: int
    prize: str
    correct: int | None = None
    duration_ms: int | None = None


class WinnersAnnouncedData(BaseModel):
    round_id: uuid.UUID
    contest_title: str
    round_title: str
    winners: list[WinnerData]


def participant_contact(event: Event) -> domain.Contact:
    data = ParticipantRegisteredData.model_validate(event.data)
    return domain.Contact(data.participant_id, "participant", data.full_name, data.email, data.phone, event.occurred_at)


def staff_contact(event: Event) -> domain.Contact:
    data = StaffChangedData.model_validate(event.data)
    return domain.Contact(data.staff_id, "staff", data.full_name, data.email, data.phone, event.occurred_at)


def winners_announcement(event: Event) -> domain.WinnersAnnouncement:
    data = WinnersAnnouncedData.model_validate(event.data)
    return domain.WinnersAnnouncement(
        event_id=event.id,
        event_type=event.type,
        round_id=data.round_id,
        contest_title=data.contest_title,
        round_title=data.round_title,
        winners=tuple(
            domain.Winner(w.participant_id, w.name, w.rank, w.prize, w.correct, w.duration_ms) for w in data.winners
        ),
    )


# --- sending ----------------------------------------------------------------------------------

class DeliverySender:
    """Sends queued deliveries, one transaction each, and records the outcome."""

    def __init__(self, pool: asyncpg.Pool, mailer: Mailer, catalog: TemplateCatalog, *, max_attempts: int) -> None:
        self.pool = pool
        self.mailer = mailer
        self.catalog = catalog
        self.max_attempts = max_attempts

    async def send_if_queued(self, delivery_id: uuid.UUID) -> domain.AttemptOutcome | None:
        """Send it if it is still queued and nobody else is sending it; None otherwise."""
        async with self.pool.acquire() as conn, conn.transaction():
            delivery = await store.lock_if_queued(conn, delivery_id)
            if delivery is None:
                return None
            error = await self._attempt(delivery)
            outcome = domain.outcome_of_attempt(delivery.attempts, error, self.max_attempts)
            await store.record_attempt(conn, delivery.id, outcome)
        fields = {"delivery_id": str(delivery.id), "status": outcome.status, "attempts": outcome.attempts}
        if error is None:
            log.info("delivery sent", extra=fields)
        else:
            log.warning("delivery attempt failed", extra={**fields, "error": error.describe()})
        return outcome

    async def _attempt(self, delivery: store.DeliveryToSend) -> domain.SendError | None:
        try:
            rendered = self.catalog.render(delivery.template, delivery.context)
            await self.mailer.send(self.mailer.build(delivery.id, delivery.recipient, rendered))
        except Exception as exc:
            return send_error_of(exc)
        return None

    async def send_queued_of_event(self, event_id: uuid.UUID) -> list[domain.AttemptOutcome]:
        outcomes = []
        for delivery_id in await store.queued_ids_of_event(self.pool, event_id):
            outcome = await self.send_if_queued(delivery_id)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    async def sweep_once(self, *, min_age_s: float, max_backoff_s: float, limit: int = 200) -> int:
        """Send the queued deliveries that are due; returns how many were attempted."""
        attempted = 0
        for candidate in await store.sweep_candidates(self.pool, min_age_s, limit):
            if not domain.is_due_for_sweep(candidate.attempts, candidate.idle_s, min_age_s, max_backoff_s):
                continue
            if await self.send_if_queued(candidate.id) is not None:
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


async def on_winners_announced(pool: asyncpg.Pool, sender: DeliverySender, events: list[Event]) -> None:
    pending: list[str] = []
    for event in events:
        announcement = winners_announcement(event)
        async with pool.acquire() as conn, conn.transaction():
            contacts = await store.contacts_by_id(conn, [w.participant_id for w in announcement.winners])
            plan = domain.plan_winner_emails(announcement, contacts)
            queued_now = await store.insert_planned(conn, plan.deliveries)
        log.info(
            "winner emails planned",
            extra={
                "event_id": str(event.id),
                "round_id": str(announcement.round_id),
                "planned": len(plan.deliveries),
                "new": queued_now,
                "unknown_contacts": len(plan.unknown_contacts),
                "without_email": [str(p) for p in plan.without_email],
            },
        )
        outcomes = await sender.send_queued_of_event(event.id)
        still_queued = sum(1 for o in outcomes if o.status == "queued")
        if plan.unknown_contacts:
            pending.append(f"{event.id}: no contact yet for {', '.join(map(str, plan.unknown_contacts))}")
        if still_queued:
            pending.append(f"{event.id}: {still_queued} email(s) failed transiently")
    if pending:
        raise DeliveriesPending("; ".join(pending))


def handlers(pool: asyncpg.Pool, sender: DeliverySender) -> Mapping[str, Handler]:
    return {
        PARTICIPANT_REGISTERED: partial(on_contacts_changed, pool, participant_contact),
        STAFF_CHANGED: partial(on_contacts_changed, pool, staff_contact),
        WINNERS_ANNOUNCED: partial(on_winners_announced, pool, sender),
    }


# --- composition root -------------------------------------------------------------------------

async def main() -> None:
    settings = NotifySettings()
    configure_logging("notify-worker", settings.log_level)
    catalog = load_catalog(settings.templates_dir)  # a broken template stops us here
    stop = stop_on_signals()
    pool = await create_pool(settings.database_url, "notify", min_size=1, max_size=settings.db_pool_max)
    bus = Bus(
        settings.amqp_url,
        Topology(settings.bus_prefix, "notify", tuple(settings.bus_retry_delays_s)),
        prefetch=settings.bus_prefetch,
    )
    sender = DeliverySender(pool, Mailer(settings), catalog, max_attempts=settings.max_send_attempts)
    try:
        await bus.connect()
        log.info("notify worker started", extra={"smtp": f"{settings.smtp_host}:{settings.smtp_port}"})
        await asyncio.gather(
            bus.consume(handlers(pool, sender), batch_size=50, stop=stop),
            sender.sweep_forever(
                stop,
                interval_s=settings.sweep_interval_s,
                min_age_s=settings.sweep_min_age_s,
                max_backoff_s=settings.sweep_max_backoff_s,
            ),
        )
    finally:
        await bus.close()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
