"""Sending one SMS through a provider, and turning its failures into plain facts the
domain can classify.

Two providers:
- `http`: one generic JSON-over-HTTP provider. Each message is `POST SMS_HTTP_URL` with
  `Authorization: Bearer SMS_HTTP_TOKEN`, `Idempotency-Key: <delivery id>` and a JSON
  object `{SMS_HTTP_FIELD_TO: number, SMS_HTTP_FIELD_TEXT: text,
  SMS_HTTP_FIELD_IDEMPOTENCY: delivery id, SMS_HTTP_FIELD_SENDER: SMS_SENDER, **SMS_HTTP_EXTRA}`.
  Any 2xx is accepted; anything else raises SmsRejected with the status and Retry-After.
- `console` (development): logs the message as JSON and writes it to DEV_MAIL_DIR as
  `<time>-<number>.sms.txt`, beside the development SMTP server's `.eml` files.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx

from services.notify import domain
from services.notify.settings import NotifySettings

log = logging.getLogger("services.notify.sms")

_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9+._-]")
_REASON_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class SmsMessage:
    delivery_id: uuid.UUID
    to: str  # already in the provider's number format
    text: str
    encoding: domain.SmsEncoding
    segments: int


class SmsRejected(Exception):
    """The provider answered, but not with 2xx."""

    def __init__(self, status: int, reason: str, retry_after_s: float | None) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s


class SmsProvider(Protocol):
    async def send(self, message: SmsMessage) -> None: ...

    async def aclose(self) -> None: ...


class HttpSmsProvider:
    def __init__(self, settings: NotifySettings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.sms_http_url:
            raise ValueError("SMS_PROVIDER=http needs SMS_HTTP_URL")
        self._settings = settings
        self._url = settings.sms_http_url
        self._client = client or httpx.AsyncClient(timeout=settings.sms_http_timeout_s)

    def request_body(self, message: SmsMessage) -> dict[str, object]:
        s = self._settings
        body: dict[str, object] = dict(s.sms_http_extra)
        body[s.sms_http_field_to] = message.to
        body[s.sms_http_field_text] = message.text
        if s.sms_http_field_idempotency:
            body[s.sms_http_field_idempotency] = str(message.delivery_id)
        if s.sms_sender:
            body[s.sms_http_field_sender] = s.sms_sender
        return body

    def request_headers(self, message: SmsMessage) -> dict[str, str]:
        headers = {"Idempotency-Key": str(message.delivery_id), "Accept": "application/json"}
        if self._settings.sms_http_token is not None:
            headers["Authorization"] = f"Bearer {self._settings.sms_http_token.get_secret_value()}"
        return headers

    async def send(self, message: SmsMessage) -> None:
        response = await self._client.post(
            self._url, json=self.request_body(message), headers=self.request_headers(message)
        )
        if response.is_success:
            return
        reason = " ".join(response.text.split())[:_REASON_MAX_CHARS] or response.reason_phrase
        retry_after = domain.parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
        raise SmsRejected(response.status_code, reason, retry_after)

    async def aclose(self) -> None:
        await self._client.aclose()


class ConsoleSmsProvider:
    def __init__(self, settings: NotifySettings) -> None:
        self._folder = Path(settings.dev_mail_dir)
        self._sender = settings.sms_sender

    async def send(self, message: SmsMessage) -> None:
        record = {
            "to": message.to,
            "sender": self._sender,
            "text": message.text,
            "encoding": message.encoding,
            "segments": message.segments,
            "idempotency_key": str(message.delivery_id),
        }
        path = self._write(message)
        log.info("sms (console provider)", extra={"sms": record, "file": str(path)})

    def _write(self, message: SmsMessage) -> Path:
        self._folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{_UNSAFE_IN_FILE_NAME.sub('_', message.to)[:40]}-{message.delivery_id.hex[:8]}.sms.txt"
        path = self._folder / name
        path.write_text(
            f"To: {message.to}\nFrom: {self._sender or '-'}\nIdempotency-Key: {message.delivery_id}\n"
            f"Encoding: {message.encoding}, {message.segments} segment(s)\n\n{message.text}\n",
            encoding="utf-8",
        )
        return path

    async def aclose(self) -> None:
        return None


def provider_from_settings(settings: NotifySettings) -> SmsProvider:
    if settings.sms_provider == "http":
        return HttpSmsProvider(settings)
    return ConsoleSmsProvider(settings)


def sms_send_error_of(exc: BaseException) -> domain.SendError:
    """The facts of a failed SMS send: HTTP status and Retry-After if the provider
    answered, else the exception's type (timeouts, refused connections)."""
    if isinstance(exc, SmsRejected):
        return domain.SendError(type(exc).__name__, exc.status, exc.reason, "http", exc.retry_after_s)
    return domain.SendError(type(exc).__name__, None, str(exc) or repr(exc), "http")
