"""Test support for notify: a real SMTP server (aiosmtpd) on a free port that keeps what
it receives in memory and can refuse chosen recipients; a real HTTP server (stdlib
`http.server` in a thread) standing in for the SMS provider, which records requests and
answers as told (200, 500, 429 + Retry-After, slow); a gate both can share to hold every
message after the first (the kill-the-worker test); settings pointing at them; and events
shaped as they arrive from the bus."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.core.events import (
    CODE_REQUESTED,
    PARTICIPANT_REGISTERED,
    PARTICIPATION_NUDGE,
    STAFF_CHANGED,
    WINNERS_ANNOUNCED,
    Event,
)
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


class Gate:
    """Shared by the fake SMTP and SMS servers: once armed, every message after the first
    `after` accepted ones is held (not accepted) until `release()`, then refused with a
    transient answer. So a test can kill a worker while it is mid-send, knowing exactly
    which messages were accepted."""

    def __init__(self, after: int = 1) -> None:
        self.after = after
        self.armed = False
        self.accepted = 0
        self.held = 0
        self._released = threading.Event()
        self._lock = threading.Lock()

    def arm(self) -> None:
        self.armed = True

    def release(self) -> None:
        self.armed = False
        self._released.set()

    def hold_this_one(self) -> bool:
        with self._lock:
            if self.armed and self.accepted >= self.after:
                self.held += 1
                return True
            return False

    def count_accepted(self) -> None:
        with self._lock:
            self.accepted += 1

    def wait_released(self, timeout_s: float) -> bool:
        return self._released.wait(timeout_s)


@dataclass
class Inbox:
    """aiosmtpd handler: accepts everything except the recipients in `refuse`."""

    refuse: dict[str, str] = field(default_factory=dict)
    received: list[ReceivedEmail] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    gate: Gate | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.gate is not None and self.gate.hold_this_one():
            while not self.gate.wait_released(0):  # noqa: ASYNC110 - released from another thread
                await asyncio.sleep(0.02)
            return "451 4.3.0 Held by the test, try again"
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        for recipient in envelope.rcpt_tos:
            self.received.append(ReceivedEmail(recipient, message))
        if self.gate is not None:
            self.gate.count_accepted()
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


# --- the SMS provider ------------------------------------------------------------------------

@dataclass(frozen=True)
class SmsRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int  # what the fake answered

    @property
    def to(self) -> str:
        return str(self.body.get("to"))

    @property
    def text(self) -> str:
        return str(self.body.get("text"))

    @property
    def key(self) -> str:
        return str(self.body.get("idempotency_key"))


@dataclass
class Answer:
    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0  # answer this late (a client with a shorter timeout gives up first)
    # With a delay: did the provider take the message although the client gave up?
    accept_despite_delay: bool = False


class FakeSmsProvider:
    """A real HTTP server on a free localhost port. Answers 200 unless told otherwise:
    `script` answers the next requests in order, `per_number` answers one number always."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[SmsRequest] = []
        self.script: list[Answer] = []
        self.per_number: dict[str, Answer] = {}
        self.gate: Gate | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-sms", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/sms"

    def start(self) -> FakeSmsProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.release()
        self._server.shutdown()
        self._server.server_close()

    def answer_next(self, *answers: Answer) -> None:
        with self._lock:
            self.script.extend(answers)

    @property
    def accepted(self) -> list[SmsRequest]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_to(self, number: str) -> list[SmsRequest]:
        return [r for r in self.accepted if r.to == number]

    def _decide(self, body: dict[str, Any]) -> Answer:
        with self._lock:
            if str(body.get("to")) in self.per_number:
                return self.per_number[str(body.get("to"))]
            return self.script.pop(0) if self.script else Answer()

    def _record(self, request: SmsRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                if fake.gate is not None and fake.gate.hold_this_one():
                    fake.gate.wait_released(60)
                    self._reply(503, None)
                    return
                answer = fake._decide(body)
                if answer.delay_s:
                    if answer.accept_despite_delay:
                        fake._record(SmsRequest(self.path, headers, body, 200))
                    time.sleep(answer.delay_s)
                    if not answer.accept_despite_delay:
                        fake._record(SmsRequest(self.path, headers, body, answer.status))
                else:
                    fake._record(SmsRequest(self.path, headers, body, answer.status))
                if 200 <= answer.status < 300 and fake.gate is not None:
                    fake.gate.count_accepted()
                self._reply(answer.status, answer.retry_after)

            def _reply(self, status: int, retry_after: str | None) -> None:
                payload = json.dumps({"ok": 200 <= status < 300}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) or was killed

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def settings_for(smtp: SmtpServer, sms: FakeSmsProvider | None = None, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "database_url": TEST_DATABASE_URL,
        "smtp_port": smtp.port,
        "smtp_timeout_s": 3,
        "max_send_attempts": 5,
        "sweep_min_age_s": 0,
        # Limits are tested on their own (test_ratelimit.py); elsewhere they would only slow tests.
        "smtp_rate_per_s": 0,
        "sms_rate_per_s": 0,
        "sms_gsm7": True,
        **overrides,
    }
    if sms is not None:
        values = {"sms_provider": "http", "sms_http_url": sms.url, "sms_http_token": "test-token",
                  "sms_http_timeout_s": 2, **values}
    return NotifySettings(**values)


SenderFactory = Callable[..., DeliverySender]


# --- events as they arrive from the bus (ids and times as strings, parsed back) -------------

def from_the_wire(event: Event) -> Event:
    return Event.from_json(event.to_json())


def phone_of(person_id: uuid.UUID) -> str:
    """A valid Vietnamese mobile number of this person's own (Viettel 098…)."""
    return f"098{person_id.int % 10**7:07d}"


def e164(national: str) -> str:
    return "+84" + national[1:]


def participant_registered(
    participant_id: uuid.UUID,
    full_name: str,
    email: str | None,
    *,
    occurred_at: datetime | None = None,
    phone: str | None = "",
    locale: str | None = None,
) -> Event:
    data: dict[str, Any] = {}
    if locale is not None:
        data["locale"] = locale
    return from_the_wire(
        Event(
            PARTICIPANT_REGISTERED,
            {
                **data,
                "participant_id": participant_id,
                "full_name": full_name,
                "phone": phone_of(participant_id) if phone == "" else phone,
                "email": email,
                "unit_id": uuid.uuid4(),
                "group": None,
                "registered_at": datetime.now(UTC),
            },
            occurred_at=occurred_at or datetime.now(UTC),
        )
    )


def winners_announced(
    winners: list[tuple[uuid.UUID, str, int, str]],
    *,
    event_id: uuid.UUID | None = None,
    summary: dict[str, int] | None = None,
) -> Event:
    extra: dict[str, Any] = {} if summary is None else {"contest_id": uuid.uuid4(), "summary": summary}
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
                **extra,
            },
            id=event_id or uuid.uuid4(),
        )
    )


def staff_changed(
    staff_id: uuid.UUID,
    full_name: str,
    role: str,
    *,
    unit_id: uuid.UUID | None = None,
    email: str | None = None,
    phone: str | None = None,
    locale: str | None = None,
) -> Event:
    data: dict[str, Any] = {} if locale is None else {"locale": locale}
    return from_the_wire(
        Event(
            STAFF_CHANGED,
            {
                **data,
                "staff_id": staff_id, "login": f"staff-{staff_id.hex[:6]}", "full_name": full_name, "role": role,
                "unit_id": unit_id, "email": email, "phone": phone,
            },
        )
    )


def participation_nudge(units: list[dict[str, Any]], *, target_rate: float = 0.8) -> Event:
    return from_the_wire(
        Event(
            PARTICIPATION_NUDGE,
            {
                "nudge_id": uuid.uuid4(),
                "contest_id": uuid.uuid4(),
                "contest_title": "Tìm hiểu Luật Đất đai",
                "round_id": uuid.uuid4(),
                "round_title": "Tuần 2",
                "target_rate": target_rate,
                "units": units,
            },
        )
    )


def code_requested(
    channel: str, recipient: str, code: str = "482913", *, purpose: str = "sign_up", valid_for_s: int = 600,
    occurred_at: datetime | None = None,
) -> Event:
    at = occurred_at or datetime.now(UTC)
    return from_the_wire(
        Event(
            CODE_REQUESTED,
            {
                "request_id": uuid.uuid4(),
                "purpose": purpose,
                "channel": channel,
                "recipient": recipient,
                "code": code,
                "expires_at": at + timedelta(seconds=valid_for_s),
                "full_name": "Đặng Thị Thu",
            },
            occurred_at=at,
        )
    )


async def wait_for(probe: Callable[[], bool], *, timeout_s: float, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not probe():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached after {timeout_s} s")
        await asyncio.sleep(0.05)
