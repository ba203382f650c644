"""Settings shared by every Hoithi process.

Each process builds exactly one settings object at start-up (its composition root),
from environment variables or a `.env` file; services subclass `CoreSettings` to add
their own. `.env.example` at the repository root lists every variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.gateway import Gateway, read_key

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

    # The secret the gateway sends with every request it forwards (services/core/gateway.py):
    # only then are its arrival stamp and client address believed. GATEWAY_KEY, else the
    # file `keygen` writes; none means no request is vouched for.
    gateway_key: SecretStr | None = None
    gateway_key_file: Path = Path("var/keys/gateway.key")

    public_base_url: str = "http://127.0.0.1:8080"

    def gateway(self) -> Gateway:
        key = self.gateway_key.get_secret_value() if self.gateway_key else None
        return Gateway.from_key(read_key(key, self.gateway_key_file))

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"
