"""Settings shared by every Hoithi process.

Each process builds exactly one settings object at start-up (its composition root),
from environment variables or a `.env` file; services subclass `CoreSettings` to add
their own. `.env.example` at the repository root lists every variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

AppEnv = Literal["development", "test", "production"]


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    app_env: AppEnv = "development"
    log_level: str = "INFO"

    database_url: str = "postgresql://postgres@127.0.0.1:5432/hoithi"
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=10, ge=1)

    redis_url: str = "redis://127.0.0.1:6379/0"

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Prefixes the exchange and every queue name, so that test runs (or two stacks on
    # one broker) never see each other's messages. Empty in production.
    bus_prefix: str = ""
    bus_prefetch: int = Field(default=256, ge=1)
    # Growing delays before a failed event is tried again; after the last, `<service>.dead`.
    bus_retry_delays_s: list[int] = [1, 5, 30, 120, 600]

    jwt_public_keys_dir: Path = Path("var/keys/public")
    jwt_issuer: str = "hoithi"
    jwt_audience: str = "hoithi"

    # The gateway stamps X-Request-Start on arrival; deadlines are judged on it.
    # Only turn this off where clients can reach a service without the gateway.
    trust_gateway_stamp: bool = True

    public_base_url: str = "http://127.0.0.1:8080"

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"
