"""Pure rules of notify: what to send for an event, how an SMS is made to fit, what a
failed send means, and how fast a channel may go.

No I/O here. The worker feeds these functions what it read from the events and the
database, and stores what they return.
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from services.core.phones import NotAMobileNumber, national_mobile

ContactKind = Literal["participant", "staff"]
Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")
DeliveryStatus = Literal["queued", "sent", "failed", "dead"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("queued", "sent", "failed", "dead")
# Only these go back to `queued` when an organiser replays them: `sent` would send twice,
# `queued` is already on its way.
REPLAYABLE_STATUSES: tuple[DeliveryStatus, ...] = ("failed", "dead")
ErrorClass = Literal["transient", "permanent"]
Protocol = Literal["smtp", "http"]

WINNER_TEMPLATE = "winner"
SIGNUP_TEMPLATE = "signup"
CODE_TEMPLATE = "code"
NUDGE_TEMPLATE = "nudge"
ORGANISER_SUMMARY_TEMPLATE = "organiser_summary"
# Which channels each notification goes out on; the template folder must hold exactly
# the parts these need (checked at start-up).
TEMPLATE_CHANNELS: Mapping[str, tuple[Channel, ...]] = {
    WINNER_TEMPLATE: ("email", "sms"),
    SIGNUP_TEMPLATE: ("email",),
    CODE_TEMPLATE: ("email", "sms"),
    NUDGE_TEMPLATE: ("email", "sms"),
    ORGANISER_SUMMARY_TEMPLATE: ("email",),
}
# Context values nobody should be able to read back once the message is out.
SECRET_CONTEXT_KEYS: tuple[str, ...] = ("code",)

DEFAULT_LANGUAGE = "vi"
LAST_ERROR_MAX_CHARS = 500
ORGANISER_ROLE = "organiser"
COORDINATOR_ROLE = "coordinator"

# Delivery ids derive from their idempotency key, so planning the same event twice
# yields the same ids (and the same Message-ID / provider key, which the far side can
# deduplicate on).
_DELIVERY_NAMESPACE = uuid.UUID("6f1c9b0e-3a52-4d8e-9a57-0c1d2e3f4a5b")


# --- what the events tell us --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Contact:
    person_id: uuid.UUID
    kind: ContactKind
    full_name: str
    email: str | None
    phone: str | None
    # When the source (registration) made this change; the newer one wins.
    updated_at: datetime
    role: str | None = None  # staff only: organiser | coordinator
    unit_id: uuid.UUID | None = None
    locale: str | None = None  # e.g. "vi", "en"; None: Vietnamese


@dataclass(frozen=True, slots=True)
class Winner:
    participant_id: uuid.UUID
    name: str
    rank: int
    prize: str
    correct: int | None = None
    duration_ms: int | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class RoundSummary:
    participants: int | None
    attempts: int | None
    all_correct: int | None


@dataclass(frozen=True, slots=True)
class WinnersAnnouncement:
    event_id: uuid.UUID
    event_type: str
    round_id: uuid.UUID
    contest_title: str
    round_title: str
    winners: tuple[Winner, ...]
    contest_id: uuid.UUID | None = None
    summary: RoundSummary | None = None


@dataclass(frozen=True, slots=True)
class UnitParticipation:
    unit_id: uuid.UUID
    code: str
    name: str
    participants: int
    headcount: int
    rate: float


@dataclass(frozen=True, slots=True)
class Nudge:
    event_id: uuid.UUID
    event_type: str
    contest_title: str
    round_title: str | None
    target_rate: float
    units: tuple[UnitParticipation, ...]


@dataclass(frozen=True, slots=True)
class CodeRequest:
    event_id: uuid.UUID
    event_type: str
    request_id: uuid.UUID
    purpose: str
    channel: Channel
    recipient: str
    code: str
    requested_at: datetime
    expires_at: datetime
    full_name: str | None = None
    locale: str | None = None


# --- what we plan to send -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    id: uuid.UUID
    idempotency_key: str
    event_id: uuid.UUID
    event_type: str
    channel: Channel
    recipient: str
    person_id: uuid.UUID | None
    template: str
    context: dict[str, Any]
    language: str = DEFAULT_LANGUAGE
    # Past this, sending is pointless (a one-time code): the delivery fails instead.
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    deliveries: tuple[PlannedDelivery, ...]
    # No contact yet: participant.registered may arrive after winners.announced, so the
    # event is tried again later; what is planned already stays (keys prevent doubles).
    unknown_contacts: tuple[uuid.UUID, ...]
    # Known, but registered without an email address: nothing to send on this channel.
    without_email: tuple[uuid.UUID, ...]
    without_phone: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True, slots=True)
class NudgePlan:
    deliveries: tuple[PlannedDelivery, ...]
    # Units listed in the nudge for which no coordinator is known: nobody to write to.
    units_without_coordinator: tuple[uuid.UUID, ...]


def newest_contacts(contacts: Iterable[Contact]) -> list[Contact]:
    """One contact per person, the most recent change winning (a batch may hold several)."""
    newest: dict[uuid.UUID, Contact] = {}
    for contact in contacts:
        current = newest.get(contact.person_id)
        if current is None or contact.updated_at >= current.updated_at:
            newest[contact.person_id] = contact
    return list(newest.values())


def idempotency_key(event_id: uuid.UUID, recipient_ref: uuid.UUID | str, channel: Channel) -> str:
    """`{event_id}:{person or request}:{channel}`: one message per event, recipient and channel."""
    return f"{event_id}:{recipient_ref}:{channel}"


def delivery_id(key: str) -> uuid.UUID:
    return uuid.uuid5(_DELIVERY_NAMESPACE, key)


def language_of(locale: str | None) -> str:
    """'en-US' → 'en'; nothing known → Vietnamese (the catalogue falls back to it too)."""
    if not locale:
        return DEFAULT_LANGUAGE
    primary = locale.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary.isascii() and primary.isalpha() and 2 <= len(primary) <= 3 else DEFAULT_LANGUAGE


def usable_email(address: str | None) -> str | None:
    """The address to send to, or None when there is none worth trying."""
    if address is None:
        return None
    address = address.strip()
    return address if "@" in address else None


def display_name(contact: Contact, fallback: str = "") -> str:
    return contact.full_name.strip() or fallback


def _planned(
    event_id: uuid.UUID,
    event_type: str,
    recipient_ref: uuid.UUID | str,
    channel: Channel,
    recipient: str,
    person_id: uuid.UUID | None,
    template: str,
    context: dict[str, Any],
    language: str,
    expires_at: datetime | None = None,
) -> PlannedDelivery:
    key = idempotency_key(event_id, recipient_ref, channel)
    return PlannedDelivery(
        delivery_id(key), key, event_id, event_type, channel, recipient, person_id, template, context, language,
        expires_at,
    )


def _to_contact(
    event_id: uuid.UUID, event_type: str, contact: Contact, template: str, context: dict[str, Any],
    channels: Sequence[Channel],
) -> list[PlannedDelivery]:
    """One delivery per channel the contact can be reached on. A phone is planned as given:
    whether it is a Vietnamese mobile number is the SMS channel's call at send time, so a
    bad one is logged as `failed` with the reason instead of vanishing."""
    planned: list[PlannedDelivery] = []
    language = language_of(contact.locale)
    for channel in channels:
        if channel == "email":
            address = usable_email(contact.email)
        else:
            address = contact.phone.strip() if contact.phone and contact.phone.strip() else None
        if address is not None:
            planned.append(
                _planned(event_id, event_type, contact.person_id, channel, address, contact.person_id, template,
                         context, language)
            )
    return planned


# --- winners ------------------------------------------------------------------------------

def winner_context(announcement: WinnersAnnouncement, winner: Winner, contact: Contact) -> dict[str, Any]:
    """What the `winner` templates may use (checked against every template at start-up)."""
    return {
        "full_name": display_name(contact, winner.name),
        "prize": winner.prize,
        "rank": winner.rank,
        "contest_title": announcement.contest_title,
        "round_title": announcement.round_title,
        "correct": winner.correct,
    }


def plan_winner_messages(
    announcement: WinnersAnnouncement, contacts: Mapping[uuid.UUID, Contact], channels: Sequence[Channel] = CHANNELS
) -> DeliveryPlan:
    """One email and one SMS per winner (where the winner has an address / a phone)."""
    deliveries: list[PlannedDelivery] = []
    unknown: list[uuid.UUID] = []
    without_email: list[uuid.UUID] = []
    without_phone: list[uuid.UUID] = []
    seen: set[uuid.UUID] = set()
    for winner in announcement.winners:
        if winner.participant_id in seen:
            continue  # one prize per person per round; a repeated row must not write twice
        seen.add(winner.participant_id)
        contact = contacts.get(winner.participant_id)
        if contact is None:
            unknown.append(winner.participant_id)
            continue
        planned = _to_contact(
            announcement.event_id, announcement.event_type, contact, WINNER_TEMPLATE,
            winner_context(announcement, winner, contact), channels,
        )
        reached = {p.channel for p in planned}
        if "email" in channels and "email" not in reached:
            without_email.append(winner.participant_id)
        if "sms" in channels and "sms" not in reached:
            without_phone.append(winner.participant_id)
        deliveries.extend(planned)
    return DeliveryPlan(tuple(deliveries), tuple(unknown), tuple(without_email), tuple(without_phone))


def plan_winner_emails(announcement: WinnersAnnouncement, contacts: Mapping[uuid.UUID, Contact]) -> DeliveryPlan:
    return plan_winner_messages(announcement, contacts, ("email",))


def organiser_summary_context(announcement: WinnersAnnouncement, organiser: Contact) -> dict[str, Any]:
    summary = announcement.summary or RoundSummary(None, None, None)
    return {
        "full_name": display_name(organiser),
        "contest_title": announcement.contest_title,
        "round_title": announcement.round_title,
        "participants": summary.participants,
        "attempts": summary.attempts,
        "all_correct": summary.all_correct,
        "winners": [
            {"rank": w.rank, "name": w.name, "prize": w.prize, "group": w.group, "correct": w.correct}
            for w in sorted(announcement.winners, key=lambda w: (w.group or "", w.rank))
        ],
    }


def plan_organiser_summary(
    announcement: WinnersAnnouncement, organisers: Iterable[Contact]
) -> tuple[PlannedDelivery, ...]:
    """An email to every organiser with an address (staff contacts with role organiser)."""
    planned: list[PlannedDelivery] = []
    for organiser in sorted(organisers, key=lambda c: c.person_id):
        if organiser.kind != "staff" or organiser.role != ORGANISER_ROLE:
            continue
        planned += _to_contact(
            announcement.event_id, announcement.event_type, organiser, ORGANISER_SUMMARY_TEMPLATE,
            organiser_summary_context(announcement, organiser), ("email",),
        )
    return tuple(planned)


# --- sign-up, one-time codes ----------------------------------------------------------------

def signup_context(contact: Contact, site_url: str) -> dict[str, Any]:
    return {"full_name": display_name(contact), "phone": contact.phone, "email": contact.email, "site_url": site_url}


def plan_signup(event_id: uuid.UUID, event_type: str, contact: Contact, site_url: str) -> PlannedDelivery | None:
    """A confirmation email, if the participant gave an address (nothing by SMS: the phone
    number is their login and they just typed it)."""
    planned = _to_contact(event_id, event_type, contact, SIGNUP_TEMPLATE, signup_context(contact, site_url), ("email",))
    return planned[0] if planned else None


def minutes_valid(requested_at: datetime, expires_at: datetime) -> int:
    """Whole minutes the code is good for, rounded up, at least 1 ('hiệu lực trong 10 phút')."""
    return max(1, math.ceil((expires_at - requested_at).total_seconds() / 60))


def code_context(request: CodeRequest) -> dict[str, Any]:
    return {
        "code": request.code,
        "purpose": request.purpose,
        "full_name": request.full_name,
        "minutes_valid": minutes_valid(request.requested_at, request.expires_at),
    }


def plan_code(request: CodeRequest) -> PlannedDelivery:
    """Always planned, even to an address or number that looks wrong or after it expired:
    the send step fails it with the reason, so the log shows why nobody got the code."""
    return _planned(
        request.event_id, request.event_type, request.request_id, request.channel, request.recipient.strip(), None,
        CODE_TEMPLATE, code_context(request), language_of(request.locale), request.expires_at,
    )


# --- participation nudges -----------------------------------------------------------------

def missing_participants(unit: UnitParticipation, target_rate: float) -> int:
    """How many more people the unit needs to reach the target (never negative)."""
    needed = math.ceil(round(target_rate * unit.headcount, 9))
    return max(0, needed - unit.participants)


def nudge_context(nudge: Nudge, unit: UnitParticipation, coordinator: Contact) -> dict[str, Any]:
    return {
        "full_name": display_name(coordinator),
        "contest_title": nudge.contest_title,
        "round_title": nudge.round_title,
        "unit_name": unit.name,
        "unit_code": unit.code,
        "participants": unit.participants,
        "headcount": unit.headcount,
        "rate": unit.rate,
        "target_rate": nudge.target_rate,
        "missing": missing_participants(unit, nudge.target_rate),
    }


def plan_nudge(nudge: Nudge, coordinators: Iterable[Contact]) -> NudgePlan:
    """An email and an SMS to each coordinator of each listed unit, about that unit."""
    by_unit: dict[uuid.UUID, list[Contact]] = {}
    for contact in coordinators:
        if contact.kind == "staff" and contact.role == COORDINATOR_ROLE and contact.unit_id is not None:
            by_unit.setdefault(contact.unit_id, []).append(contact)
    deliveries: list[PlannedDelivery] = []
    without: list[uuid.UUID] = []
    seen_units: set[uuid.UUID] = set()
    for unit in nudge.units:
        if unit.unit_id in seen_units:
            continue
        seen_units.add(unit.unit_id)
        unit_coordinators = sorted(by_unit.get(unit.unit_id, []), key=lambda c: c.person_id)
        if not unit_coordinators:
            without.append(unit.unit_id)
        for coordinator in unit_coordinators:
            deliveries += _to_contact(
                nudge.event_id, nudge.event_type, coordinator, NUDGE_TEMPLATE, nudge_context(nudge, unit, coordinator),
                ("email", "sms"),
            )
    return NudgePlan(tuple(deliveries), tuple(without))


# --- numbers in messages ------------------------------------------------------------------

def format_number(value: int | float | None, language: str) -> str:
    """12000 → '12.000' (vi) / '12,000' (en); None → '—'."""
    if value is None:
        return "—"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.1f}".rstrip("0").rstrip(".")
    if language == "vi":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def format_percent(rate: float | None, language: str) -> str:
    """0.455 → '45,5%' (vi) / '45.5%' (en), one decimal at most."""
    if rate is None:
        return "—"
    text = f"{rate * 100:.1f}".rstrip("0").rstrip(".")
    if language == "vi":
        text = text.replace(".", ",")
    return f"{text}%"


# --- phone numbers ------------------------------------------------------------------------

def vietnamese_mobile(raw: str | None) -> str | None:
    """'+84 912 345 678', '84912345678', '0912.345.678' → '0912345678'; None when the
    text is not a Vietnamese mobile number (SMS to it would fail or reach someone else)."""
    if raw is None:
        return None
    try:
        return national_mobile(raw)
    except NotAMobileNumber:
        return None


def format_phone(national: str, number_format: Literal["e164", "international", "national"]) -> str:
    """'0912345678' → '+84912345678' | '84912345678' | '0912345678'."""
    if number_format == "national":
        return national
    international = "84" + national[1:]
    return "+" + international if number_format == "e164" else international


# --- SMS text: GSM-7 and segments ---------------------------------------------------------

# GSM 03.38: the default alphabet (one septet each) and its extension table (escape + char,
# two septets each). Everything else forces UCS-2.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_SINGLE, GSM7_PART = 160, 153  # septets; a concatenated part loses 7 to its header
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units

SmsEncoding = Literal["gsm7", "ucs2"]

# Punctuation templates and names bring in that GSM-7 lacks but has a plain twin for.
_GSM7_LOOKALIKES = {
    "đ": "d", "Đ": "D", "Ð": "D", "ð": "d",
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "ʼ": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
    "–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-", "…": "...", "•": "-", "·": "-",
    "\t": " ", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u200b": "",
    "Œ": "OE", "œ": "oe", "Ł": "L", "ł": "l", "×": "x", "°": "o",
}
SMS_REPLACEMENT = "?"


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def to_gsm7(text: str) -> str:
    """Vietnamese without diacritics ('Chúc mừng Đặng Thị Ánh' → 'Chuc mung Dang Thi Anh'),
    typographic punctuation made plain, and anything still outside GSM-7 replaced by '?'.
    Every accented Latin letter loses its accent, also those GSM-7 happens to have (é):
    half-accented Vietnamese reads worse than none."""
    replaced = "".join(_GSM7_LOOKALIKES.get(c, c) for c in text)
    decomposed = unicodedata.normalize("NFD", replaced)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    recomposed = unicodedata.normalize("NFC", stripped)
    return "".join(c if (c in GSM7_BASIC or c in GSM7_EXTENSION) else SMS_REPLACEMENT for c in recomposed)


def sms_encoding(text: str) -> SmsEncoding:
    return "gsm7" if is_gsm7(text) else "ucs2"


def sms_units(text: str, encoding: SmsEncoding) -> int:
    """Length as the network counts it: septets (extension characters take two) or UTF-16 units."""
    if encoding == "gsm7":
        return sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    return len(text.encode("utf-16-le")) // 2


def sms_capacity(segments: int, encoding: SmsEncoding) -> int:
    """Units that fit in `segments` segments (one, or that many concatenated parts)."""
    single, part = (GSM7_SINGLE, GSM7_PART) if encoding == "gsm7" else (UCS2_SINGLE, UCS2_PART)
    return single if segments == 1 else part * segments


def sms_segments(text: str, encoding: SmsEncoding | None = None) -> int:
    encoding = encoding or sms_encoding(text)
    units = sms_units(text, encoding)
    single, part = (GSM7_SINGLE, GSM7_PART) if encoding == "gsm7" else (UCS2_SINGLE, UCS2_PART)
    return 1 if units <= single else math.ceil(units / part)


@dataclass(frozen=True, slots=True)
class SmsText:
    text: str
    encoding: SmsEncoding
    segments: int
    truncated: bool


def fit_sms(text: str, *, gsm7: bool, max_segments: int) -> SmsText:
    """The SMS as it is sent: trimmed, in GSM-7 when `gsm7` (else in whatever encoding the
    text needs), cut to at most `max_segments` segments with an ellipsis when too long —
    at a word boundary if one is near."""
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    body = "\n".join(line.rstrip() for line in text.strip().splitlines())
    if gsm7:
        body = to_gsm7(body)
    encoding = sms_encoding(body)
    if sms_segments(body, encoding) <= max_segments:
        return SmsText(body, encoding, sms_segments(body, encoding), truncated=False)
    ellipsis = "..." if encoding == "gsm7" else "…"
    room = sms_capacity(max_segments, encoding) - sms_units(ellipsis, encoding)
    kept, used = [], 0
    for c in body:
        cost = sms_units(c, encoding)
        if used + cost > room:
            break
        kept.append(c)
        used += cost
    cut = "".join(kept)
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= len(cut) - 15 and space > 0:
        cut = cut[:space]
    result = cut.rstrip() + ellipsis
    return SmsText(result, encoding, sms_segments(result, encoding), truncated=True)


# --- failed sends ------------------------------------------------------------------------

# Errors that carry no reply code. Not reaching the server, or losing it midway, may pass;
# a capability the server lacks (SMTPUTF8 for a non-ASCII address, STARTTLS) will not, and
# neither will a template that cannot render, a recipient that cannot be right, or a code
# that expired before it could go out.
_PERMANENT_WITHOUT_CODE = frozenset(
    {"SMTPNotSupported", "TemplateRenderError", "InvalidPhoneNumber", "InvalidEmailAddress", "Expired"}
)
# HTTP statuses that say "later", not "never" (RFC 9110 §15.5.9, RFC 6585 §4).
_HTTP_TRANSIENT_4XX = frozenset({408, 425, 429})
# A provider saying "come back in an hour" is believed; one saying "next week" is not.
MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class SendError:
    """What went wrong with one send, as facts (the exception stays in the channel)."""

    type_name: str
    code: int | None
    message: str
    protocol: Protocol = "smtp"
    retry_after_s: float | None = None

    @property
    def error_class(self) -> ErrorClass:
        return classify_send_error(self.type_name, self.code, self.protocol)

    def describe(self) -> str:
        if self.code is None:
            text = f"{self.type_name}: {self.message}"
        elif self.protocol == "http":
            text = f"HTTP {self.code} {self.message}".rstrip()
        else:
            text = f"{self.code} {self.message}"
        return text[:LAST_ERROR_MAX_CHARS]


def classify_send_error(type_name: str, code: int | None, protocol: Protocol = "smtp") -> ErrorClass:
    """SMTP (RFC 5321 §4.2.1): 4yz is a transient negative reply (try again), 5yz a permanent
    one. HTTP: 5xx, 408, 425 and 429 pass; any other 4xx is the request's own fault (bad
    number, bad token) and repeating it changes nothing. Anything else unexplained
    (connection refused, timeouts, disconnects, unknown errors) is treated as transient:
    the attempts limit bounds it, and `dead` can be replayed."""
    if code is not None and protocol == "http":
        if 400 <= code <= 499:
            return "transient" if code in _HTTP_TRANSIENT_4XX else "permanent"
        return "transient"
    if code is not None and 500 <= code <= 599:
        return "permanent"
    if code is not None and 400 <= code <= 499:
        return "transient"
    return "permanent" if type_name in _PERMANENT_WITHOUT_CODE else "transient"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; seconds from `now`."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status: DeliveryStatus
    attempts: int
    # None: keep the previous one (a success does not erase why earlier tries failed).
    last_error: str | None
    # Not to be tried again before this many seconds (the provider's Retry-After).
    retry_after_s: float | None = None


def outcome_of_attempt(attempts_before: int, error: SendError | None, max_attempts: int) -> AttemptOutcome:
    attempts = attempts_before + 1
    if error is None:
        return AttemptOutcome("sent", attempts, None)
    if error.error_class == "permanent":
        return AttemptOutcome("failed", attempts, error.describe())
    if attempts >= max_attempts:
        return AttemptOutcome("dead", attempts, error.describe())
    retry_after = None if error.retry_after_s is None else min(max(error.retry_after_s, 0.0), MAX_RETRY_AFTER_S)
    return AttemptOutcome("queued", attempts, error.describe(), retry_after)


def retry_backoff_s(attempts: int, base_s: float, cap_s: float) -> float:
    """How long a queued delivery rests after its last change before the sweeper takes it:
    base, then doubling with each failed attempt, at most cap (a relay that is down for a
    few minutes does not use up every attempt)."""
    return min(cap_s, base_s * 2 ** min(attempts, 30))


def is_due_for_sweep(attempts: int, idle_s: float, base_s: float, cap_s: float) -> bool:
    return idle_s >= retry_backoff_s(attempts, base_s, cap_s)


# --- rate limits --------------------------------------------------------------------------

# Float arithmetic on refills (0.1 s × 10/s) must not leave a bucket at 0.9999999 tokens.
TOKEN_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class TokenBucket:
    tokens: float
    updated_at: float  # seconds, on whatever clock the caller passes


@dataclass(frozen=True, slots=True)
class TokenDecision:
    bucket: TokenBucket
    # 0: take the token and send now; else try again after this many seconds.
    wait_s: float = field(default=0.0)

    @property
    def granted(self) -> bool:
        return self.wait_s == 0.0


def take_token(bucket: TokenBucket | None, now: float, rate_per_s: float, burst: float = 1.0) -> TokenDecision:
    """A token bucket refilled at `rate_per_s`, holding at most `burst` tokens. With
    burst 1, sends are spaced 1/rate apart: never more than `rate` in any second, however
    many workers share the bucket. The Redis script in ratelimit.py is this function in
    Lua; a clock running backwards (another worker's) adds no tokens."""
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    if bucket is None:
        tokens, updated_at = burst, now
    else:
        tokens, updated_at = bucket.tokens, bucket.updated_at
        if now > updated_at:
            tokens, updated_at = min(burst, tokens + (now - updated_at) * rate_per_s), now
    if tokens >= 1 - TOKEN_EPSILON:
        return TokenDecision(TokenBucket(max(0.0, tokens - 1), updated_at), 0.0)
    return TokenDecision(TokenBucket(tokens, updated_at), (1 - tokens) / rate_per_s)
