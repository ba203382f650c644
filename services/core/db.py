"""PostgreSQL access shared by the services: one asyncpg pool per process, pinned to the
service's own schema, and a migration runner that applies `migrations/*.sql` in order."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

log = logging.getLogger(__name__)

SERVICES_DIR = Path(__file__).resolve().parent.parent
CORE_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary jsonb: a version byte, then the JSON text; orjson on both sides.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        format="binary",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset query (RESET ALL, UNLISTEN *, advisory unlock, CLOSE ALL),
    a round trip on every release that cost 4–7 % of the hot paths' CPU in `make bench`.
    Pool connections never change session state: search_path is fixed when they connect,
    the relay listens on a connection of its own, migrations use theirs. asyncpg still
    rolls back an unfinished transaction and drops listeners before calling this."""


async def create_pool(dsn: str, schema: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections see only `schema` (and pg_catalog) unqualified."""
    _check_schema_name(schema)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={"search_path": schema, "application_name": f"hoithi-{schema}", "timezone": "UTC"},
    )
    assert pool is not None
    return pool


async def create_database_if_missing(dsn: str) -> None:
    """`make run` on a fresh machine: the server exists, the database may not."""
    url = urlsplit(dsn)
    name = url.path.lstrip("/")
    try:
        conn = await asyncpg.connect(dsn)
        await conn.close()
        return
    except asyncpg.InvalidCatalogNameError:
        pass
    admin = await asyncpg.connect(urlunsplit(url._replace(path="/postgres")))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        log.info("database created", extra={"database": name})
    except asyncpg.DuplicateDatabaseError:
        pass
    finally:
        await admin.close()


def migration_files(service: str) -> list[tuple[str, Path]]:
    """(version, file) in the order they apply: core's shared tables, then the service's."""
    found = [(f"core/{p.stem}", p) for p in sorted(CORE_MIGRATIONS.glob("*.sql"))]
    found += [(f"{service}/{p.stem}", p) for p in sorted((SERVICES_DIR / service / "migrations").glob("*.sql"))]
    return found


async def migrate(conn: asyncpg.Connection, schema: str, files: Iterable[tuple[str, Path]]) -> list[str]:
    """Apply each file not yet applied, each in its own transaction. Safe to run from
    several processes at once: an advisory lock per schema serialises them."""
    _check_schema_name(schema)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"hoithi.migrate.{schema}")
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET search_path TO {schema}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, path in files:
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
            log.info("migration applied", extra={"schema": schema, "version": version})
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"hoithi.migrate.{schema}")
        await conn.execute("RESET search_path")
    return applied_now


async def migrate_service(dsn: str, service: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, service, migration_files(service))
    finally:
        await conn.close()


def _check_schema_name(schema: str) -> None:
    # Schema names go into DDL text; only our own fixed names are ever allowed.
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
