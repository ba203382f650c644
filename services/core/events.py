"""The event envelope every service publishes and consumes (DESIGN.md "Events").

`{"id", "type", "version", "occurred_at", "correlation_id", "data"}` as JSON; the
routing key is the event type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from services.core.logs import correlation_id

PARTICIPANT_REGISTERED = "participant.registered"
UNITS_CHANGED = "units.changed"
STAFF_CHANGED = "staff.changed"
ROUND_OPENED = "round.opened"
ATTEMPT_SUBMITTED = "attempt.submitted"
ROUND_CLOSED = "round.closed"
ATTEMPT_SCORED = "attempt.scored"
WINNERS_ANNOUNCED = "winners.announced"
PARTICIPATION_NUDGE = "participation.nudge"
CODE_REQUESTED = "code.requested"


# Which service's queue is bound to which events (DESIGN.md "Services"). Publishers
# declare these queues before their first publish, so an event emitted before its
# consumer ever started waits in the consumer's queue instead of being dropped as
# unroutable. Each worker's handlers must match its row (a test checks this).
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "scoring": (ROUND_OPENED, ATTEMPT_SUBMITTED, PARTICIPANT_REGISTERED, UNITS_CHANGED, ROUND_CLOSED),
    "notify": (PARTICIPANT_REGISTERED, STAFF_CHANGED, WINNERS_ANNOUNCED, PARTICIPATION_NUDGE, CODE_REQUESTED),
}


class MalformedEvent(ValueError):
    """A message that is not a valid envelope; it can never succeed, so it goes to `.dead`."""


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    version: int = 1
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    correlation_id: str = field(default_factory=lambda: correlation_id.get())

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "type": self.type,
                "version": self.version,
                "occurred_at": self.occurred_at,
                "correlation_id": self.correlation_id,
                "data": self.data,
            },
            # asyncpg hands out its own UUID type, which orjson does not know natively.
            default=str,
        )

    @classmethod
    def from_json(cls, body: bytes) -> Event:
        try:
            raw = orjson.loads(body)
            return cls(
                id=uuid.UUID(raw["id"]),
                type=str(raw["type"]),
                version=int(raw["version"]),
                occurred_at=datetime.fromisoformat(raw["occurred_at"]),
                correlation_id=str(raw.get("correlation_id") or ""),
                data=dict(raw["data"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MalformedEvent(str(exc)) from exc
