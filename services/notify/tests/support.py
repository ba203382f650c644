"""Test support for notify: a real SMTP server (aiosmtpd) on a free port that keeps what
it receives in memory and can refuse chosen recipients, settings pointing at it, and
events shaped as they arrive from the bus."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.core.events import PARTICIPANT_REGISTERED, WINNERS_ANNOUNCED, Event
from services.core.testing import TEST_DATABASE_URL
from services.notify.dev_smtp import start_smtp_server
from services.notify.settings import NotifySettings
from services.notify.worker import DeliverySender


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ReceivedEmail:
    recipient: str
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]


@dataclass
class Inbox:
    """aiosmtpd handler: accepts everything except the recipients in `refuse`."""

    refuse: dict[str, str] = field(default_factory=dict)
    received: list[ReceivedEmail] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        for recipient in envelope.rcpt_tos:
            self.received.append(ReceivedEmail(recipient, message))
        self.arrived.set()
        return "250 Message accepted"

    def to(self, recipient: str) -> list[ReceivedEmail]:
        return [r for r in self.received if r.recipient == recipient]


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox = field(default_factory=Inbox)
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await start_smtp_server(self.inbox, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


def settings_for(smtp: SmtpServer, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "database_url": TEST_DATABASE_URL,
        "smtp_port": smtp.port,
        "smtp_timeout_s": 3,
        "max_send_attempts": 5,
        "sweep_min_age_s": 0,
        **overrides,
    }
    return NotifySettings(**values)


SenderFactory = Callable[..., DeliverySender]


# --- events as they arrive from the bus (ids and times as strings, parsed back) -------------

def from_the_wire(event: Event) -> Event:
    return Event.from_json(event.to_json())


def participant_registered(
    participant_id: uuid.UUID, full_name: str, email: str | None, *, occurred_at: datetime | None = None
) -> Event:
    return from_the_wire(
        Event(
            PARTICIPANT_REGISTERED,
            {
                "participant_id": participant_id,
                "full_name": full_name,
                "phone": "0912345678",
                "email": email,
                "unit_id": uuid.uuid4(),
                "group": None,
                "registered_at": datetime.now(UTC),
            },
            occurred_at=occurred_at or datetime.now(UTC),
        )
    )


def winners_announced(winners: list[tuple[uuid.UUID, str, int, str]], *, event_id: uuid.UUID | None = None) -> Event:
    return from_the_wire(
        Event(
            WINNERS_ANNOUNCED,
            {
                "round_id": uuid.uuid4(),
                "contest_title": "Cuộc thi trực tuyến tìm hiểu Luật Giao thông",
                "round_title": "Tuần 3",
                "winners": [
                    {"participant_id": p, "name": name, "rank": rank, "prize": prize, "correct": 20, "duration_ms": 610}
                    for p, name, rank, prize in winners
                ],
            },
            id=event_id or uuid.uuid4(),
        )
    )
