"""Settings of the notify API and worker (environment variables, read once at start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from services.core.settings import CoreSettings

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

SmsProviderName = Literal["http", "console"]
# How the phone number is written in the provider's request: +84912345678, 84912345678 or 0912345678.
PhoneNumberFormat = Literal["e164", "international", "national"]


class NotifySettings(CoreSettings):
    # The development default is `python -m services.notify.dev_smtp`, which keeps every
    # message as a file in `dev_mail_dir`; production points these at a real relay.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False  # upgrade a plain connection (usually port 587)
    smtp_use_tls: bool = False  # TLS from the first byte (usually port 465)
    smtp_timeout_s: float = Field(default=10, gt=0)
    mail_from: str = "Ban Tổ chức Hội thi <no-reply@hoithi.local>"
    dev_mail_dir: Path = Path("var/mail")
    templates_dir: Path = DEFAULT_TEMPLATES_DIR

    # SMS: `console` logs each message and writes it to `dev_mail_dir` as `.sms.txt`
    # (development); `http` POSTs one JSON object per message to `sms_http_url`.
    sms_provider: SmsProviderName = "console"
    sms_http_url: str | None = None
    sms_http_token: SecretStr | None = None  # sent as `Authorization: Bearer <token>`
    sms_http_field_to: str = Field(default="to", min_length=1)
    sms_http_field_text: str = Field(default="text", min_length=1)
    # The delivery id goes in this field (and the Idempotency-Key header), so a provider
    # that deduplicates drops a resend after a crash. Empty: not sent in the body.
    sms_http_field_idempotency: str = "idempotency_key"
    sms_http_field_sender: str = Field(default="sender", min_length=1)
    # Constant fields every request carries (JSON object), e.g. {"sms_type": 2}.
    sms_http_extra: dict[str, Any] = Field(default_factory=dict)
    sms_http_timeout_s: float = Field(default=10, gt=0)
    sms_sender: str | None = None  # brand name, in `sms_http_field_sender` when set
    sms_number_format: PhoneNumberFormat = "e164"
    # Most Vietnamese brand-name routes take GSM-7 only: diacritics are stripped (đ → d).
    sms_gsm7: bool = True
    sms_max_segments: int = Field(default=3, ge=1, le=10)

    # Provider rate limits, shared by every notify worker through Redis; 0 = no limit.
    smtp_rate_per_s: float = Field(default=20, ge=0)
    sms_rate_per_s: float = Field(default=10, ge=0)
    # Sends in flight per worker while it works through an event (each holds a database
    # connection, so keep it below DB_POOL_MAX).
    send_concurrency: int = Field(default=4, ge=1, le=64)

    # Transient failures (4xx, connection errors) are tried this many times in all,
    # then the delivery is `dead` until an organiser replays it.
    max_send_attempts: int = Field(default=5, ge=1)
    # The worker's sweeper sends queued deliveries that nobody is sending: after a crash,
    # after a replay, and between retries of transient failures. A delivery waits
    # `sweep_min_age_s * 2**attempts` (at most `sweep_max_backoff_s`) since its last change.
    sweep_interval_s: float = Field(default=3, gt=0)
    sweep_min_age_s: float = Field(default=10, ge=0)
    sweep_max_backoff_s: float = Field(default=600, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> NotifySettings:
        if self.smtp_starttls and self.smtp_use_tls:
            raise ValueError("set SMTP_STARTTLS or SMTP_USE_TLS, not both")
        if self.sms_provider == "http" and not self.sms_http_url:
            raise ValueError("SMS_PROVIDER=http needs SMS_HTTP_URL")
        return self
