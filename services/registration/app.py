"""Composition root of the registration API: `services.registration.app:create_app()`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from services.core.auth import TokenSigner
from services.core.db import create_pool
from services.core.http import create_app as create_service_app
from services.core.http import postgres_ready, redis_ready
from services.registration import api, store
from services.registration.passwords import Passwords
from services.registration.settings import RegistrationSettings
from services.registration.throttle import CodePacing, LoginThrottle, SourceLimits

# Every password seed-demo has ever given the development organiser.
_DEVELOPMENT_PASSWORDS = ("admin",)


def load_signer(settings: RegistrationSettings) -> TokenSigner:
    if not settings.jwt_private_key_file.is_file():
        raise RuntimeError(
            f"token signing key {settings.jwt_private_key_file} not found"
            " (create it with: python -m services.core.auth keygen var/keys)"
        )
    return TokenSigner.from_file(
        settings.jwt_private_key_file,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_s=settings.access_token_ttl_s,
    )


async def refuse_development_admin(db: store.Db, passwords: Passwords, settings: RegistrationSettings) -> None:
    """In production, refuse to run while the organiser seed-demo creates still opens with
    its well-known password: anyone could sign in as organiser."""
    if not settings.is_production:
        return
    password_hash = await store.staff_password_hash(db, settings.dev_admin_login)
    if password_hash is None:
        return
    for known in dict.fromkeys((*_DEVELOPMENT_PASSWORDS, settings.dev_admin_password)):
        if await passwords.verify(password_hash, known):
            raise RuntimeError(
                f"refusing to start in production: the development organiser {settings.dev_admin_login}/{known}"
                " exists; change its password (python -m services.registration set-password --login"
                f" {settings.dev_admin_login}) or delete it"
            )


def create_app(settings: RegistrationSettings | None = None) -> FastAPI:
    settings = settings or RegistrationSettings()

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        signer = load_signer(settings)
        passwords = Passwords.from_settings(settings)
        pool = await create_pool(
            settings.database_url, "registration", min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        redis = Redis.from_url(settings.redis_url)
        try:
            await refuse_development_admin(pool, passwords, settings)
            app.state.db, app.state.redis = pool, redis
            app.state.signer, app.state.passwords = signer, passwords
            app.state.login_throttle = LoginThrottle(redis, settings)
            app.state.source_limits = SourceLimits.from_settings(redis, settings)
            app.state.code_pacing = CodePacing(redis, settings.code_resend_interval_s, app.state.source_limits)
            yield
        finally:
            await redis.aclose()
            await pool.close()

    return create_service_app(
        service="registration",
        settings=settings,
        routers=[api.router],
        resources=resources,
        readiness={"postgres": postgres_ready, "redis": redis_ready},
        messages=api.MESSAGES,
    )
