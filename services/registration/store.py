"""All of registration's SQL (asyncpg). Functions take a pool or a connection; those
that change something and tell other services write their event to the outbox in the
same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg

from services.core import events
from services.core.auth import Role
from services.core.events import Event
from services.core.outbox import add_events
from services.registration import domain

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection


# --- units ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Unit:
    id: uuid.UUID
    code: str
    name: str
    parent_id: uuid.UUID | None
    block: str
    headcount: int

    def as_event_data(self) -> dict[str, Any]:
        return {
            "id": _event_id(self.id),
            "code": self.code,
            "name": self.name,
            "parent_id": _event_id(self.parent_id),
            "block": self.block,
            "headcount": self.headcount,
        }


@dataclass(frozen=True, slots=True)
class UnitsImport:
    imported: int  # rows in the file
    created: int
    updated: int  # existing units whose name, parent, block or headcount changed
    unchanged: int


_UNIT_COLUMNS = "id, code, name, parent_id, block, headcount"


def _event_id(value: uuid.UUID | None) -> str | None:
    # asyncpg returns its own UUID subclass, which orjson (in Event.to_json) refuses.
    return None if value is None else str(value)


def _unit(row: asyncpg.Record) -> Unit:
    return Unit(row["id"], row["code"], row["name"], row["parent_id"], row["block"], row["headcount"])


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def all_units(db: Db) -> list[Unit]:
    rows = await db.fetch(f"SELECT {_UNIT_COLUMNS} FROM units ORDER BY search_name, name, code")
    return [_unit(r) for r in rows]


async def search_units(db: Db, query: str | None, limit: int) -> list[Unit]:
    """Units whose name holds every word of `query` (diacritics and case ignored), or
    whose code starts with it; all units when `query` is empty. Ordered by name."""
    key = domain.search_key(query or "")
    if not key:
        rows = await db.fetch(f"SELECT {_UNIT_COLUMNS} FROM units ORDER BY search_name, name, code LIMIT $1", limit)
    else:
        word_patterns = [f"%{_like_escaped(word)}%" for word in key.split()]
        rows = await db.fetch(
            f"SELECT {_UNIT_COLUMNS} FROM units"
            " WHERE search_name LIKE ALL ($1::text[]) OR lower(code) LIKE $2"
            " ORDER BY search_name, name, code LIMIT $3",
            word_patterns,
            _like_escaped(key) + "%",
            limit,
        )
    return [_unit(r) for r in rows]


async def unit_by_id(db: Db, unit_id: uuid.UUID) -> Unit | None:
    row = await db.fetchrow(f"SELECT {_UNIT_COLUMNS} FROM units WHERE id = $1", unit_id)
    return _unit(row) if row else None


async def unit_by_code(db: Db, code: str) -> Unit | None:
    row = await db.fetchrow(f"SELECT {_UNIT_COLUMNS} FROM units WHERE code = $1", code)
    return _unit(row) if row else None


async def import_units_with_outbox(pool: asyncpg.Pool, table: domain.Table) -> UnitsImport:
    """All or nothing: raises domain.UnitRowsInvalid (every bad row) and writes nothing,
    or upserts every row by code in one transaction — existing units keep their ids, so
    participants keep their unit — and, when anything changed, adds a `units.changed`
    snapshot of the whole tree to the outbox in that same transaction."""
    async with pool.acquire() as conn, conn.transaction():
        # One import at a time: each validates against, and snapshots, a tree nobody else moves.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hoithi.registration.units_import'))")
        stored = await conn.fetch(
            "SELECT u.id, u.code, p.code AS parent_code FROM units u LEFT JOIN units p ON p.id = u.parent_id"
        )
        id_of_code: dict[str, uuid.UUID] = {r["code"]: r["id"] for r in stored}
        checked = domain.check_unit_rows(table, {r["code"]: r["parent_code"] for r in stored})
        if checked.errors:
            raise domain.UnitRowsInvalid(checked.errors)

        existing_codes = set(id_of_code)
        for unit in checked.units:
            id_of_code.setdefault(unit.code, uuid.uuid4())
        units = checked.units
        # New parents arrive in the same statement; the foreign key is checked at its end.
        changed = await conn.fetch(
            """
            INSERT INTO units AS u (id, code, name, search_name, parent_id, block, headcount, updated_at)
            SELECT t.id, t.code, t.name, t.search_name, t.parent_id, t.block, t.headcount, now()
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::int[])
                 AS t(id, code, name, search_name, parent_id, block, headcount)
            ON CONFLICT (code) DO UPDATE
               SET name = EXCLUDED.name, search_name = EXCLUDED.search_name, parent_id = EXCLUDED.parent_id,
                   block = EXCLUDED.block, headcount = EXCLUDED.headcount, updated_at = now()
             WHERE (u.name, u.parent_id, u.block, u.headcount)
                   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.parent_id, EXCLUDED.block, EXCLUDED.headcount)
            RETURNING u.code
            """,
            [id_of_code[u.code] for u in units],
            [u.code for u in units],
            [u.name for u in units],
            [u.search_name for u in units],
            [id_of_code[u.parent_code] if u.parent_code else None for u in units],
            [u.block for u in units],
            [u.headcount for u in units],
        )
        created = sum(1 for r in changed if r["code"] not in existing_codes)
        updated = len(changed) - created
        if changed:
            snapshot = await all_units(conn)
            await add_events(conn, [Event(events.UNITS_CHANGED, {"units": [u.as_event_data() for u in snapshot]})])
    return UnitsImport(imported=len(units), created=created, updated=updated, unchanged=len(units) - len(changed))


# --- participants -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewParticipant:
    full_name: str
    phone: str
    email: str | None
    id_number: str | None
    birth_date: date | None
    unit_id: uuid.UUID
    group: str | None
    password_hash: str


@dataclass(frozen=True, slots=True)
class ParticipantSummary:
    id: uuid.UUID
    full_name: str
    phone: str
    email: str | None
    unit_id: uuid.UUID
    group: str | None
    created_at: datetime


class AlreadyRegistered(Exception):
    """Another participant already has this phone, email or id number (`field` says which)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class UnknownUnit(Exception):
    pass


_FIELD_OF_CONSTRAINT = {
    "participants_phone_key": "phone",
    "participants_email_key": "email",
    "participants_id_number_key": "id_number",
}


async def register_participant_with_outbox(pool: asyncpg.Pool, new: NewParticipant) -> ParticipantSummary:
    """Raises AlreadyRegistered or UnknownUnit. The unique constraints decide between
    simultaneous sign-ups with the same phone: exactly one commits."""
    participant_id = uuid.uuid4()
    try:
        async with pool.acquire() as conn, conn.transaction():
            created_at: datetime = await conn.fetchval(
                """
                INSERT INTO participants
                    (id, full_name, search_name, phone, email, id_number, birth_date, unit_id, "group", password_hash)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                RETURNING created_at
                """,
                participant_id,
                new.full_name,
                domain.search_key(new.full_name),
                new.phone,
                new.email,
                new.id_number,
                new.birth_date,
                new.unit_id,
                new.group,
                new.password_hash,
            )
            participant = ParticipantSummary(
                participant_id, new.full_name, new.phone, new.email, new.unit_id, new.group, created_at
            )
            await add_events(conn, [Event(events.PARTICIPANT_REGISTERED, {
                "participant_id": _event_id(participant.id),
                "full_name": participant.full_name,
                "phone": participant.phone,
                "email": participant.email,
                "unit_id": _event_id(participant.unit_id),
                "group": participant.group,
                "registered_at": participant.created_at,
            })])
    except asyncpg.UniqueViolationError as exc:
        field = _FIELD_OF_CONSTRAINT.get(exc.constraint_name or "")
        if field is None:
            raise
        raise AlreadyRegistered(field) from None
    except asyncpg.ForeignKeyViolationError:
        raise UnknownUnit() from None
    return participant


async def list_participants(
    db: Db, *, unit_id: uuid.UUID | None, query: str | None, limit: int, offset: int
) -> tuple[int, list[ParticipantSummary]]:
    """(how many match, one page of them, newest first). `query` matches words of the
    name (diacritics ignored), digits of the phone, or part of the email."""
    key = domain.search_key(query or "")
    word_patterns = [f"%{_like_escaped(word)}%" for word in key.split()] or None
    digits = "".join(ch for ch in key if ch.isdigit())
    if key.startswith(("+84", "84")) and len(digits) > 2:
        digits = "0" + digits[2:]
    phone_pattern = f"%{digits}%" if digits and len(digits) >= 3 else None
    email_pattern = f"%{_like_escaped(key)}%" if key and " " not in key else None
    where = """
        ($1::uuid IS NULL OR unit_id = $1)
        AND ($2::text[] IS NULL OR search_name LIKE ALL ($2) OR phone LIKE $3 OR email LIKE $4)
    """
    args = (unit_id, word_patterns, phone_pattern, email_pattern)
    total: int = await db.fetchval(f"SELECT count(*) FROM participants WHERE {where}", *args)
    rows = await db.fetch(
        f"""SELECT id, full_name, phone, email, unit_id, "group", created_at FROM participants WHERE {where}
            ORDER BY created_at DESC, id LIMIT $5 OFFSET $6""",
        *args,
        limit,
        offset,
    )
    return total, [
        ParticipantSummary(r["id"], r["full_name"], r["phone"], r["email"], r["unit_id"], r["group"], r["created_at"])
        for r in rows
    ]


# --- accounts (participants and staff) --------------------------------------------------

@dataclass(frozen=True, slots=True)
class Account:
    """What logging in needs: who it is, as the token will say, and the password hash."""

    id: uuid.UUID
    role: Role
    full_name: str
    unit_id: uuid.UUID | None
    group: str | None
    password_hash: str


@dataclass(frozen=True, slots=True)
class UnitRef:
    id: uuid.UUID
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Profile:
    id: uuid.UUID
    role: Role
    full_name: str
    unit: UnitRef | None
    group: str | None
    phone: str | None
    email: str | None


async def account_by_login(db: Db, login: domain.LoginName) -> Account | None:
    if login.kind == "staff":
        row = await db.fetchrow(
            "SELECT id, role, full_name, unit_id, NULL::text AS group, password_hash FROM staff WHERE login = $1",
            login.value,
        )
    else:
        column = "phone" if login.kind == "phone" else "email"
        row = await db.fetchrow(
            'SELECT id, \'participant\' AS role, full_name, unit_id, "group", password_hash'
            f" FROM participants WHERE {column} = $1",
            login.value,
        )
    if row is None:
        return None
    return Account(row["id"], row["role"], row["full_name"], row["unit_id"], row["group"], row["password_hash"])


async def set_password_hash(db: Db, account: Account, password_hash: str) -> None:
    table = "participants" if account.role == "participant" else "staff"
    await db.execute(f"UPDATE {table} SET password_hash = $2 WHERE id = $1", account.id, password_hash)


async def profile(db: Db, account_id: uuid.UUID, role: Role) -> Profile | None:
    if role == "participant":
        row = await db.fetchrow(
            """SELECT p.id, 'participant' AS role, p.full_name, p."group", p.phone, p.email,
                      u.id AS unit_id, u.code AS unit_code, u.name AS unit_name
               FROM participants p LEFT JOIN units u ON u.id = p.unit_id WHERE p.id = $1""",
            account_id,
        )
    else:
        row = await db.fetchrow(
            """SELECT s.id, s.role, s.full_name, NULL::text AS "group", s.phone, s.email,
                      u.id AS unit_id, u.code AS unit_code, u.name AS unit_name
               FROM staff s LEFT JOIN units u ON u.id = s.unit_id WHERE s.id = $1 AND s.role = $2""",
            account_id,
            role,
        )
    if row is None:
        return None
    unit = UnitRef(row["unit_id"], row["unit_code"], row["unit_name"]) if row["unit_id"] else None
    return Profile(row["id"], row["role"], row["full_name"], unit, row["group"], row["phone"], row["email"])


# --- staff ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewStaff:
    login: str
    full_name: str
    role: Role
    unit_id: uuid.UUID | None
    email: str | None
    phone: str | None
    password_hash: str


class StaffLoginTaken(Exception):
    pass


async def create_staff_with_outbox(pool: asyncpg.Pool, new: NewStaff) -> uuid.UUID:
    """Raises StaffLoginTaken; tells notify (staff.changed) how to reach the new account."""
    staff_id = uuid.uuid4()
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO staff (id, login, full_name, role, unit_id, email, phone, password_hash)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                staff_id, new.login, new.full_name, new.role, new.unit_id, new.email, new.phone, new.password_hash,
            )
            await add_events(conn, [Event(events.STAFF_CHANGED, {
                "staff_id": _event_id(staff_id),
                "login": new.login,
                "full_name": new.full_name,
                "role": new.role,
                "unit_id": _event_id(new.unit_id),
                "email": new.email,
                "phone": new.phone,
            })])
    except asyncpg.UniqueViolationError:
        raise StaffLoginTaken(new.login) from None
    return staff_id


async def staff_password_hash(db: Db, login: str) -> str | None:
    value: str | None = await db.fetchval("SELECT password_hash FROM staff WHERE login = $1", login)
    return value


async def set_staff_password_hash(db: Db, login: str, password_hash: str) -> bool:
    """False when no staff account has this login."""
    status: str = await db.execute("UPDATE staff SET password_hash = $2 WHERE login = $1", login, password_hash)
    return status == "UPDATE 1"


async def outbox_events(db: Db, event_type: str | None = None) -> list[Event]:
    """Events still waiting for the relay (tests and operators look here)."""
    rows = await db.fetch(
        "SELECT body FROM outbox WHERE $1::text IS NULL OR type = $1 ORDER BY id", event_type
    )
    return [Event.from_json(r["body"]) for r in rows]
