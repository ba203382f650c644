"""Settings of the notify API and worker (environment variables, read once at start-up)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from services.core.settings import CoreSettings

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


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
    def _one_tls_mode(self) -> NotifySettings:
        if self.smtp_starttls and self.smtp_use_tls:
            raise ValueError("set SMTP_STARTTLS or SMTP_USE_TLS, not both")
        return self
