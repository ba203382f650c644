"""Pure rules of notify: what to send for an event, and what a failed send means.

No I/O here. The worker feeds these functions what it read from the events and the
database, and stores what they return.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

ContactKind = Literal["participant", "staff"]
Channel = Literal["email"]
DeliveryStatus = Literal["queued", "sent", "failed", "dead"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("queued", "sent", "failed", "dead")
# Only these go back to `queued` when an organiser replays them: `sent` would mail twice,
# `queued` is already on its way.
REPLAYABLE_STATUSES: tuple[DeliveryStatus, ...] = ("failed", "dead")
ErrorClass = Literal["transient", "permanent"]

WINNER_TEMPLATE = "winner"
LAST_ERROR_MAX_CHARS = 500

# Delivery ids derive from their idempotency key, so planning the same event twice
# yields the same ids (and the same Message-ID, which a relay can deduplicate on).
_DELIVERY_NAMESPACE = uuid.UUID("6f1c9b0e-3a52-4d8e-9a57-0c1d2e3f4a5b")


@dataclass(frozen=True, slots=True)
class Contact:
    person_id: uuid.UUID
    kind: ContactKind
    full_name: str
    email: str | None
    phone: str | None
    # When the source (registration) made this change; the newer one wins.
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Winner:
    participant_id: uuid.UUID
    name: str
    rank: int
    prize: str
    correct: int | None = None
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class WinnersAnnouncement:
    event_id: uuid.UUID
    event_type: str
    round_id: uuid.UUID
    contest_title: str
    round_title: str
    winners: tuple[Winner, ...]


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    id: uuid.UUID
    idempotency_key: str
    event_id: uuid.UUID
    event_type: str
    channel: Channel
    recipient: str
    person_id: uuid.UUID
    template: str
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    deliveries: tuple[PlannedDelivery, ...]
    # No contact yet: participant.registered may arrive after winners.announced, so the
    # event is tried again later; what is planned already stays (keys prevent doubles).
    unknown_contacts: tuple[uuid.UUID, ...]
    # Known, but registered without an email address: nothing to send on this channel.
    without_email: tuple[uuid.UUID, ...]


def newest_contacts(contacts: Iterable[Contact]) -> list[Contact]:
    """One contact per person, the most recent change winning (a batch may hold several)."""
    newest: dict[uuid.UUID, Contact] = {}
    for contact in contacts:
        current = newest.get(contact.person_id)
        if current is None or contact.updated_at >= current.updated_at:
            newest[contact.person_id] = contact
    return list(newest.values())


def idempotency_key(event_id: uuid.UUID, person_id: uuid.UUID, channel: Channel) -> str:
    return f"{event_id}:{person_id}:{channel}"


def delivery_id(key: str) -> uuid.UUID:
    return uuid.uuid5(_DELIVERY_NAMESPACE, key)


def usable_email(address: str | None) -> str | None:
    """The address to send to, or None when there is none worth trying."""
    if address is None:
        return None
    address = address.strip()
    return address if "@" in address else None


def winner_context(announcement: WinnersAnnouncement, winner: Winner, contact: Contact) -> dict[str, Any]:
    """What the `winner` templates may use (checked against every template at start-up)."""
    return {
        "full_name": contact.full_name.strip() or winner.name,
        "prize": winner.prize,
        "rank": winner.rank,
        "contest_title": announcement.contest_title,
        "round_title": announcement.round_title,
        "correct": winner.correct,
    }


def plan_winner_emails(announcement: WinnersAnnouncement, contacts: Mapping[uuid.UUID, Contact]) -> DeliveryPlan:
    deliveries: list[PlannedDelivery] = []
    unknown: list[uuid.UUID] = []
    without_email: list[uuid.UUID] = []
    seen: set[uuid.UUID] = set()
    for winner in announcement.winners:
        if winner.participant_id in seen:
            continue  # one prize per person per round; a repeated row must not mail twice
        seen.add(winner.participant_id)
        contact = contacts.get(winner.participant_id)
        if contact is None:
            unknown.append(winner.participant_id)
            continue
        address = usable_email(contact.email)
        if address is None:
            without_email.append(winner.participant_id)
            continue
        key = idempotency_key(announcement.event_id, winner.participant_id, "email")
        deliveries.append(
            PlannedDelivery(
                id=delivery_id(key),
                idempotency_key=key,
                event_id=announcement.event_id,
                event_type=announcement.event_type,
                channel="email",
                recipient=address,
                person_id=winner.participant_id,
                template=WINNER_TEMPLATE,
                context=winner_context(announcement, winner, contact),
            )
        )
    return DeliveryPlan(tuple(deliveries), tuple(unknown), tuple(without_email))


# --- failed sends ------------------------------------------------------------------------

# Errors that carry no SMTP reply code. Not reaching the server, or losing it midway, may
# pass; a capability the server lacks (SMTPUTF8 for a non-ASCII address, STARTTLS) will
# not, and neither will a template that cannot render.
_PERMANENT_WITHOUT_CODE = frozenset({"SMTPNotSupported", "TemplateRenderError"})


@dataclass(frozen=True, slots=True)
class SendError:
    """What went wrong with one send, as facts (the exception stays in the mailer)."""

    type_name: str
    code: int | None
    message: str

    @property
    def error_class(self) -> ErrorClass:
        return classify_send_error(self.type_name, self.code)

    def describe(self) -> str:
        text = f"{self.code} {self.message}" if self.code is not None else f"{self.type_name}: {self.message}"
        return text[:LAST_ERROR_MAX_CHARS]


def classify_send_error(type_name: str, code: int | None) -> ErrorClass:
    """RFC 5321 §4.2.1: 4yz is a transient negative reply (try again), 5yz a permanent one.
    Anything else unexplained (connection refused, timeouts, disconnects, unknown errors) is
    treated as transient: the attempts limit bounds it, and `dead` can be replayed."""
    if code is not None and 500 <= code <= 599:
        return "permanent"
    if code is not None and 400 <= code <= 499:
        return "transient"
    return "permanent" if type_name in _PERMANENT_WITHOUT_CODE else "transient"


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status: DeliveryStatus
    attempts: int
    # None: keep the previous one (a success does not erase why earlier tries failed).
    last_error: str | None


def outcome_of_attempt(attempts_before: int, error: SendError | None, max_attempts: int) -> AttemptOutcome:
    attempts = attempts_before + 1
    if error is None:
        return AttemptOutcome("sent", attempts, None)
    if error.error_class == "permanent":
        return AttemptOutcome("failed", attempts, error.describe())
    return AttemptOutcome("dead" if attempts >= max_attempts else "queued", attempts, error.describe())


def retry_backoff_s(attempts: int, base_s: float, cap_s: float) -> float:
    """How long a queued delivery rests after its last change before the sweeper takes it:
    base, then doubling with each failed attempt, at most cap (a relay that is down for a
    few minutes does not use up every attempt)."""
    return min(cap_s, base_s * 2 ** min(attempts, 30))


def is_due_for_sweep(attempts: int, idle_s: float, base_s: float, cap_s: float) -> bool:
    return idle_s >= retry_backoff_s(attempts, base_s, cap_s)
