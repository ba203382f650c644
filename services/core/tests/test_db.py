import asyncpg

from services.core.db import create_pool, migrate, migration_files
from services.core.testing import TEST_DATABASE_URL


async def test_migrations_apply_once_and_record_their_versions(service_pool) -> None:
    pool = await service_pool("core_test")
    async with pool.acquire() as conn:
        assert await migrate(conn, "core_test", migration_files("core_test")) == []
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM core_test.schema_migrations")]
    assert versions == [v for v, _ in migration_files("core_test")]


async def test_pool_sees_its_schema_and_round_trips_jsonb(service_pool) -> None:
    await service_pool("core_test")
    pool = await create_pool(TEST_DATABASE_URL, "core_test", min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SHOW search_path") == "core_test"
        value = {"câu": ["A", "C"], "n": 3}
        assert await pool.fetchval("SELECT $1::jsonb", value) == value
    finally:
        await pool.close()


async def test_concurrent_migrators_do_not_collide(service_pool) -> None:
    import asyncio

    pool = await service_pool("core_test")
    await pool.execute("DROP TABLE core_test.outbox; DELETE FROM core_test.schema_migrations")
    conns = [await asyncpg.connect(TEST_DATABASE_URL) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, "core_test", migration_files("core_test")) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sorted(len(r) for r in results) == [0, 0, len(migration_files("core_test"))]


async def test_a_released_connection_comes_back_without_the_unfinished_transaction(service_pool) -> None:
    # The pool skips asyncpg's reset query (one round trip per request); what must
    # still hold is that a transaction left open by a failed request is rolled back
    # before the connection serves anyone else, and the schema stays pinned.
    await service_pool("core_test")
    pool = await create_pool(TEST_DATABASE_URL, "core_test", min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO outbox (event_id, type, body) VALUES (gen_random_uuid(), 'x', '')")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
            assert await conn.fetchval("SHOW search_path") == "core_test"
    finally:
        await pool.close()
