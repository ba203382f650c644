"""`python -m services.registration ...`, run as the operator runs it (a subprocess)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg

from services.core import events
from services.registration import domain, store
from services.registration.passwords import Passwords

ROOT = Path(__file__).resolve().parents[3]


async def run(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.registration", *args,
        cwd=ROOT, env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_migrate_is_idempotent(registration_env: dict[str, str], pool: asyncpg.Pool) -> None:
    code, output = await run(registration_env, "migrate")
    assert code == 0, output
    assert "0 migration(s) applied" in output


async def test_seed_demo_twice_changes_nothing_the_second_time(
    registration_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    code, output = await run(registration_env, "seed-demo")
    assert code == 0, output
    units = await store.all_units(pool)
    assert len(units) == 27
    admin = await pool.fetchrow("SELECT full_name, role, password_hash FROM staff WHERE login = 'admin'")
    assert (admin["full_name"], admin["role"]) == ("Ban Tổ chức", "organiser")
    assert await Passwords(time_cost=1, memory_cost_kib=1024, parallelism=1).verify(admin["password_hash"], "admin")
    first_events = await store.outbox_events(pool)
    assert sorted(e.type for e in first_events) == [events.STAFF_CHANGED, events.UNITS_CHANGED]

    code, output = await run(registration_env, "seed-demo")
    assert code == 0, output
    assert await store.all_units(pool) == units
    assert await pool.fetchval("SELECT password_hash FROM staff WHERE login = 'admin'") == admin["password_hash"]
    assert await store.outbox_events(pool) == first_events


async def test_seed_demo_refuses_production(registration_env: dict[str, str], pool: asyncpg.Pool) -> None:
    code, output = await run({**registration_env, "APP_ENV": "production"}, "seed-demo")
    assert code == 2
    assert "production" in output
    assert await store.all_units(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM staff") == 0


async def test_create_staff_and_set_password(
    registration_env: dict[str, str], pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    env = {**registration_env, "STAFF_PASSWORD": "điều phối viên 1"}
    code, output = await run(
        env, "create-staff", "--login", "DieuPhoi.LC", "--full-name", "Trần Văn Điều", "--role", "coordinator",
        "--unit-code", "LC-P01", "--email", "Dieu@Example.vn", "--phone", "+84 987 654 321",
    )
    assert code == 0, output
    row = await pool.fetchrow("SELECT * FROM staff WHERE login = 'dieuphoi.lc'")
    assert (row["role"], row["unit_id"], row["email"], row["phone"]) == (
        "coordinator", demo_units["LC-P01"].id, "dieu@example.vn", "0987654321"
    )
    passwords = Passwords(time_cost=1, memory_cost_kib=1024, parallelism=1)
    assert await passwords.verify(row["password_hash"], "điều phối viên 1")
    [changed] = await store.outbox_events(pool, events.STAFF_CHANGED)
    assert changed.data == {
        "staff_id": str(row["id"]), "login": "dieuphoi.lc", "full_name": "Trần Văn Điều", "role": "coordinator",
        "unit_id": str(demo_units["LC-P01"].id), "email": "dieu@example.vn", "phone": "0987654321",
    }

    again, output = await run(
        env, "create-staff", "--login", "dieuphoi.lc", "--full-name", "X Y", "--role", "organiser"
    )
    assert again == 1 and "already exists" in output
    no_unit, output = await run(env, "create-staff", "--login", "dp2", "--full-name", "X Y", "--role", "coordinator")
    assert no_unit == 1 and "--unit-code" in output

    code, output = await run({**env, "STAFF_PASSWORD": "mật khẩu mới 2"}, "set-password", "--login", "dieuphoi.lc")
    assert code == 0, output
    changed_hash = await pool.fetchval("SELECT password_hash FROM staff WHERE login = 'dieuphoi.lc'")
    assert await passwords.verify(changed_hash, "mật khẩu mới 2")
    assert (await run(env, "set-password", "--login", "nobody"))[0] == 1


async def test_prune_deletes_only_long_expired_tokens_and_codes(
    registration_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    for token, age in (("old", "8 days"), ("recent", "1 day")):
        await store.issue_refresh_token(
            pool, token_hash=domain.refresh_token_hash(token), account_id=uuid.uuid4(), role="participant", ttl_s=60
        )
        await pool.execute(
            f"UPDATE refresh_tokens SET expires_at = now() - interval '{age}' WHERE token_hash = $1",
            domain.refresh_token_hash(token),
        )
    code, output = await run(registration_env, "prune")
    assert code == 0, output
    assert "pruned 1 refresh token(s) and 0 one-time code(s)" in output
    assert await pool.fetchval("SELECT count(*) FROM refresh_tokens") == 1
