"""All of registration's SQL (asyncpg). Functions take a pool or a connection; those
that change something and tell other services write their event to the outbox in the
same transaction."""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, TypeAlias

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
        # Thousands of rows take a while to check: off the event loop, so others are served meanwhile.
        checked = await asyncio.to_thread(domain.check_unit_rows, table, {r["code"]: r["parent_code"] for r in stored})
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
    job: str | None = None
    signup_ip: str | None = None
    device_id: str | None = None
    entry_code: str | None = None  # the unit code of the entry link signed up through
    verification_code_id: uuid.UUID | None = None  # consumed in the same transaction


@dataclass(frozen=True, slots=True)
class ParticipantSummary:
    id: uuid.UUID
    full_name: str
    phone: str
    email: str | None
    unit_id: uuid.UUID
    group: str | None
    created_at: datetime
    id_number: str | None = None
    birth_date: date | None = None
    job: str | None = None


class AlreadyRegistered(Exception):
    """Another participant already has this phone, email or id number (`field` says which)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class UnknownUnit(Exception):
    pass


class CodeAlreadyUsed(Exception):
    """The sign-up's verification code was consumed by a simultaneous sign-up."""


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
            if new.verification_code_id is not None and not await _consume_code(conn, new.verification_code_id):
                raise CodeAlreadyUsed()
            # An entry code naming no unit (an old link) is not counted, and not an error:
            # the link must never stop anyone from signing up.
            created_at: datetime = await conn.fetchval(
                """
                INSERT INTO participants
                    (id, full_name, search_name, phone, email, id_number, birth_date, unit_id, "group", password_hash,
                     job, signup_ip, device_id, entry_unit_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::inet, $13,
                        (SELECT id FROM units WHERE code = $14))
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
                new.job,
                new.signup_ip,
                new.device_id,
                new.entry_code,
            )
            participant = ParticipantSummary(
                participant_id, new.full_name, new.phone, new.email, new.unit_id, new.group, created_at,
                new.id_number, new.birth_date, new.job,
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


# Units in the subtree of $1 (itself included). Coordinators see only their unit's subtree.
_SCOPE_CTE = """
    WITH RECURSIVE scope (id) AS (
        SELECT id FROM units WHERE id = $1
        UNION
        SELECT u.id FROM units u JOIN scope s ON u.parent_id = s.id
    )
"""
_IN_SCOPE = "($1::uuid IS NULL OR {column} IN (SELECT id FROM scope))"


def _participant_filter(
    scope_unit_id: uuid.UUID | None, unit_id: uuid.UUID | None, search: domain.ParticipantSearch
) -> tuple[str, tuple[Any, ...]]:
    """WHERE clause over `participants p` and its arguments $1..$8 ($1 = scope root)."""
    where = f"""
        {_IN_SCOPE.format(column="p.unit_id")}
        AND ($2::uuid IS NULL OR p.unit_id = $2)
        AND ($3::text[] IS NULL OR p.search_name LIKE ALL ($3) OR p.email LIKE $4 OR p.phone = $5
             OR p.id_number = $6 OR p.phone LIKE $7)
    """
    word_patterns = [f"%{_like_escaped(word)}%" for word in search.words] or None
    return where, (
        scope_unit_id,
        unit_id,
        word_patterns,
        f"%{_like_escaped(search.email_part)}%" if search.email_part else None,
        search.phone,
        search.id_number,
        f"%{search.phone_digits}%" if search.phone_digits else None,
    )


_SUMMARY_COLUMNS = (
    'p.id, p.full_name, p.phone, p.email, p.unit_id, p."group", p.created_at, p.id_number, p.birth_date, p.job'
)


def _summary(r: asyncpg.Record) -> ParticipantSummary:
    return ParticipantSummary(
        r["id"], r["full_name"], r["phone"], r["email"], r["unit_id"], r["group"], r["created_at"],
        r["id_number"], r["birth_date"], r["job"],
    )


async def list_participants(
    db: Db,
    *,
    unit_id: uuid.UUID | None,
    search: domain.ParticipantSearch,
    limit: int,
    offset: int,
    scope_unit_id: uuid.UUID | None = None,
) -> tuple[int, list[ParticipantSummary]]:
    """(how many match, one page of them, newest first); `scope_unit_id` keeps only that
    unit's subtree."""
    where, args = _participant_filter(scope_unit_id, unit_id, search)
    total: int = await db.fetchval(f"{_SCOPE_CTE} SELECT count(*) FROM participants p WHERE {where}", *args)
    rows = await db.fetch(
        f"""{_SCOPE_CTE} SELECT {_SUMMARY_COLUMNS} FROM participants p WHERE {where}
            ORDER BY p.created_at DESC, p.id LIMIT $8 OFFSET $9""",
        *args,
        limit,
        offset,
    )
    return total, [_summary(r) for r in rows]


async def search_participants_with_audit(
    pool: asyncpg.Pool,
    *,
    unit_id: uuid.UUID | None,
    search: domain.ParticipantSearch,
    limit: int,
    offset: int,
    scope_unit_id: uuid.UUID | None,
    audit: AuditEntry,
) -> tuple[int, list[ParticipantSummary]]:
    """list_participants, and the audit row saying who searched what and how many rows
    they were shown, in one transaction: no search answers without its audit row."""
    async with pool.acquire() as conn, conn.transaction():
        total, found = await list_participants(
            conn, unit_id=unit_id, search=search, limit=limit, offset=offset, scope_unit_id=scope_unit_id
        )
        await _add_audit(conn, audit, len(found))
    return total, found


async def unit_in_subtree(db: Db, unit_id: uuid.UUID, root_id: uuid.UUID) -> bool:
    found: bool = await db.fetchval(f"{_SCOPE_CTE} SELECT EXISTS (SELECT 1 FROM scope WHERE id = $2)", root_id, unit_id)
    return found


async def invite_signups(db: Db, unit_id: uuid.UUID) -> int:
    """Sign-ups through the unit's entry link (QR code), whatever unit they then chose."""
    count: int = await db.fetchval("SELECT count(*) FROM participants WHERE entry_unit_id = $1", unit_id)
    return count


# --- exports and the audit log ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor_id: uuid.UUID
    actor_name: str
    actor_role: str
    action: str
    filter: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor_id: uuid.UUID
    actor_name: str
    actor_role: str
    action: str
    filter: dict[str, Any]
    row_count: int


EXPORT_CHUNK_ROWS = 5000


async def export_participants_with_audit(
    pool: asyncpg.Pool,
    *,
    scope_unit_id: uuid.UUID | None,
    unit_id: uuid.UUID | None,
    query: str | None,
    audit: AuditEntry,
    write_chunk: Callable[[list[tuple[Any, ...]]], Awaitable[None]],
) -> int:
    """Streams every matching participant (full data, oldest first, in the columns of
    domain.PARTICIPANT_EXPORT_COLUMNS) to `write_chunk` and writes the audit row with
    the count, in one transaction: no export leaves without its audit row."""
    # The export shows the numbers whole: part of one finds them.
    where, args = _participant_filter(scope_unit_id, unit_id, domain.participant_search(query, partial_numbers=True))
    count = 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        chunk: list[tuple[Any, ...]] = []
        async for r in conn.cursor(
            f"""{_SCOPE_CTE}
                SELECT p.id, p.full_name, p.birth_date, p.phone, p.email, p.id_number, u.code, u.name,
                       p."group", p.job, p.created_at
                FROM participants p JOIN units u ON u.id = p.unit_id
                WHERE {where} ORDER BY p.created_at, p.id""",
            *args,
            prefetch=EXPORT_CHUNK_ROWS,
        ):
            chunk.append(tuple(r.values()))
            if len(chunk) >= EXPORT_CHUNK_ROWS:
                await write_chunk(chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            await write_chunk(chunk)
            count += len(chunk)
        await _add_audit(conn, audit, count)
    return count


async def _add_audit(conn: asyncpg.Connection, audit: AuditEntry, row_count: int) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor_id, actor_name, actor_role, action, filter, row_count)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        audit.actor_id, audit.actor_name, audit.actor_role, audit.action, audit.filter, row_count,
    )


async def audit_log(db: Db, *, limit: int, offset: int) -> tuple[int, list[AuditRecord]]:
    total: int = await db.fetchval("SELECT count(*) FROM audit_log")
    rows = await db.fetch(
        """SELECT id, at, actor_id, actor_name, actor_role, action, filter, row_count FROM audit_log
           ORDER BY at DESC, id DESC LIMIT $1 OFFSET $2""",
        limit, offset,
    )
    return total, [AuditRecord(**dict(r)) for r in rows]


# --- organisers' flags ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FlaggedParticipant:
    id: uuid.UUID
    full_name: str
    phone: str
    unit_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Likely one person with several accounts: same unit, name and birth date."""

    unit_id: uuid.UUID
    unit_name: str
    birth_date: date
    participants: list[FlaggedParticipant]


@dataclass(frozen=True, slots=True)
class BurstGroup:
    """Many accounts made from one address or device within minutes."""

    kind: str  # "ip" or "device"
    source: str
    participants: list[FlaggedParticipant]


async def likely_duplicates(db: Db, *, scope_unit_id: uuid.UUID | None, limit: int) -> list[DuplicateGroup]:
    rows = await db.fetch(
        f"""{_SCOPE_CTE},
            twins AS (
                SELECT p.unit_id, p.search_name, p.birth_date FROM participants p
                WHERE p.birth_date IS NOT NULL AND {_IN_SCOPE.format(column="p.unit_id")}
                GROUP BY p.unit_id, p.search_name, p.birth_date HAVING count(*) > 1
                ORDER BY p.unit_id, p.search_name, p.birth_date LIMIT $2
            )
            SELECT p.id, p.full_name, p.phone, p.unit_id, p.created_at, p.search_name, p.birth_date,
                   u.name AS unit_name
            FROM participants p JOIN twins t USING (unit_id, search_name, birth_date) JOIN units u ON u.id = p.unit_id
            ORDER BY u.search_name, p.unit_id, p.search_name, p.birth_date, p.created_at""",
        scope_unit_id, limit,
    )
    groups: dict[tuple[Any, ...], DuplicateGroup] = {}
    for r in rows:
        key = (r["unit_id"], r["search_name"], r["birth_date"])
        group = groups.setdefault(key, DuplicateGroup(r["unit_id"], r["unit_name"], r["birth_date"], []))
        group.participants.append(
            FlaggedParticipant(r["id"], r["full_name"], r["phone"], r["unit_id"], r["created_at"])
        )
    return list(groups.values())


_BURST_SOURCES = {"ip": "host(p.signup_ip)", "device": "p.device_id"}


async def account_bursts(
    db: Db, *, scope_unit_id: uuid.UUID | None, min_accounts: int, window_s: int, limit: int
) -> list[BurstGroup]:
    """Per address and per device: every account made within `window_s` of the start of
    a window that holds at least `min_accounts` of them."""
    found: list[BurstGroup] = []
    for kind, source in _BURST_SOURCES.items():
        rows = await db.fetch(
            f"""{_SCOPE_CTE},
                scoped AS (
                    SELECT p.id, p.full_name, p.phone, p.unit_id, p.created_at, {source} AS source
                    FROM participants p
                    WHERE {source} IS NOT NULL AND {_IN_SCOPE.format(column="p.unit_id")}
                ),
                windows AS (
                    SELECT source, created_at AS starts_at,
                           count(*) OVER (PARTITION BY source ORDER BY created_at
                                          RANGE BETWEEN CURRENT ROW AND make_interval(secs => $2) FOLLOWING) AS n
                    FROM scoped
                ),
                hot AS (SELECT DISTINCT source, starts_at FROM windows WHERE n >= $3),
                sources AS (SELECT DISTINCT source FROM hot ORDER BY source LIMIT $4)
                SELECT s.id, s.full_name, s.phone, s.unit_id, s.created_at, s.source FROM scoped s
                WHERE s.source IN (SELECT source FROM sources) AND EXISTS (
                    SELECT 1 FROM hot h WHERE h.source = s.source
                       AND s.created_at BETWEEN h.starts_at AND h.starts_at + make_interval(secs => $2))
                ORDER BY s.source, s.created_at""",
            scope_unit_id, float(window_s), min_accounts, limit,
        )
        groups: dict[str, BurstGroup] = {}
        for r in rows:
            group = groups.setdefault(r["source"], BurstGroup(kind, r["source"], []))
            group.participants.append(
                FlaggedParticipant(r["id"], r["full_name"], r["phone"], r["unit_id"], r["created_at"])
            )
        found.extend(groups.values())
    return found


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
    id_number: str | None = None
    birth_date: date | None = None
    job: str | None = None


async def account_by_login(db: Db, login: domain.LoginName) -> Account | None:
    if login.kind == "staff":
        row = await db.fetchrow(
            "SELECT id, role, full_name, unit_id, NULL::text AS group, password_hash FROM staff WHERE login = $1",
            login.value,
        )
    else:
        column = {"phone": "phone", "email": "email", "id_number": "id_number"}[login.kind]
        row = await db.fetchrow(
            'SELECT id, \'participant\' AS role, full_name, unit_id, "group", password_hash'
            f" FROM participants WHERE {column} = $1",
            login.value,
        )
    if row is None:
        return None
    return Account(row["id"], row["role"], row["full_name"], row["unit_id"], row["group"], row["password_hash"])


async def account_by_id(db: Db, account_id: uuid.UUID, role: Role) -> Account | None:
    """The account as it is now (a refresh mints a token from current data)."""
    if role == "participant":
        row = await db.fetchrow(
            """SELECT id, 'participant' AS role, full_name, unit_id, "group", password_hash
               FROM participants WHERE id = $1""",
            account_id,
        )
    else:
        row = await db.fetchrow(
            """SELECT id, role, full_name, unit_id, NULL::text AS "group", password_hash
               FROM staff WHERE id = $1 AND role = $2""",
            account_id, role,
        )
    if row is None:
        return None
    return Account(row["id"], row["role"], row["full_name"], row["unit_id"], row["group"], row["password_hash"])


@dataclass(frozen=True, slots=True)
class Contacts:
    full_name: str
    phone: str | None
    email: str | None


async def account_contacts(db: Db, account: Account) -> Contacts:
    table = "participants" if account.role == "participant" else "staff"
    row = await db.fetchrow(f"SELECT full_name, phone, email FROM {table} WHERE id = $1", account.id)
    if row is None:
        return Contacts(account.full_name, None, None)
    return Contacts(row["full_name"], row["phone"], row["email"])


async def set_password_hash(db: Db, account: Account, password_hash: str) -> None:
    table = "participants" if account.role == "participant" else "staff"
    await db.execute(f"UPDATE {table} SET password_hash = $2 WHERE id = $1", account.id, password_hash)


async def profile(db: Db, account_id: uuid.UUID, role: Role) -> Profile | None:
    if role == "participant":
        row = await db.fetchrow(
            """SELECT p.id, 'participant' AS role, p.full_name, p."group", p.phone, p.email,
                      p.id_number, p.birth_date, p.job,
                      u.id AS unit_id, u.code AS unit_code, u.name AS unit_name
               FROM participants p LEFT JOIN units u ON u.id = p.unit_id WHERE p.id = $1""",
            account_id,
        )
    else:
        row = await db.fetchrow(
            """SELECT s.id, s.role, s.full_name, NULL::text AS "group", s.phone, s.email,
                      NULL::text AS id_number, NULL::date AS birth_date, NULL::text AS job,
                      u.id AS unit_id, u.code AS unit_code, u.name AS unit_name
               FROM staff s LEFT JOIN units u ON u.id = s.unit_id WHERE s.id = $1 AND s.role = $2""",
            account_id,
            role,
        )
    if row is None:
        return None
    unit = UnitRef(row["unit_id"], row["unit_code"], row["unit_name"]) if row["unit_id"] else None
    return Profile(
        row["id"], row["role"], row["full_name"], unit, row["group"], row["phone"], row["email"],
        row["id_number"], row["birth_date"], row["job"],
    )


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
    except asyncpg.ForeignKeyViolationError:
        raise UnknownUnit() from None
    return staff_id


@dataclass(frozen=True, slots=True)
class StaffMember:
    id: uuid.UUID
    login: str
    full_name: str
    role: Role
    unit_id: uuid.UUID | None
    email: str | None
    phone: str | None
    created_at: datetime


async def list_staff(db: Db) -> list[StaffMember]:
    rows = await db.fetch(
        "SELECT id, login, full_name, role, unit_id, email, phone, created_at FROM staff ORDER BY role, login"
    )
    return [StaffMember(**dict(r)) for r in rows]


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


# --- refresh tokens ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RefreshGrant:
    account_id: uuid.UUID
    role: Role
    family_id: uuid.UUID


RotateOutcome = Literal["rotated", "unknown", "expired", "revoked", "reused"]


async def issue_refresh_token(
    db: Db, *, token_hash: bytes, account_id: uuid.UUID, role: Role, ttl_s: int, family_id: uuid.UUID | None = None
) -> uuid.UUID:
    """A new token; a new family (a login) unless `family_id` is given. Returns the family."""
    family = family_id or uuid.uuid4()
    await db.execute(
        """INSERT INTO refresh_tokens (token_hash, family_id, account_id, account_role, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))""",
        token_hash, family, account_id, role, float(ttl_s),
    )
    return family


async def rotate_refresh_token(
    pool: asyncpg.Pool, *, old_hash: bytes, new_hash: bytes, ttl_s: int
) -> tuple[RotateOutcome, RefreshGrant | None]:
    """Marks the presented token used and issues the next in its family, in one
    transaction. A token already used means a copy is in someone else's hands: the whole
    family is revoked ("reused"), and the legitimate holder signs in again."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT family_id, account_id, account_role, used_at, revoked_at, expires_at <= now() AS expired
               FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE""",
            old_hash,
        )
        if row is None:
            return "unknown", None
        grant = RefreshGrant(row["account_id"], row["account_role"], row["family_id"])
        if row["used_at"] is not None:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
                row["family_id"],
            )
            return "reused", grant
        if row["revoked_at"] is not None:  # signed out (or revoked after a reuse, a reset)
            return "revoked", None
        if row["expired"]:
            return "expired", None
        await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", old_hash)
        await issue_refresh_token(
            conn, token_hash=new_hash, account_id=grant.account_id, role=grant.role, ttl_s=ttl_s,
            family_id=grant.family_id,
        )
    return "rotated", grant


async def revoke_refresh_family(db: Db, token_hash: bytes) -> int:
    """Logout: the presented token and every other of its family. Returns how many."""
    status: str = await db.execute(
        """UPDATE refresh_tokens SET revoked_at = now()
           WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL""",
        token_hash,
    )
    return int(status.split()[-1])


async def revoke_account_refresh_tokens(db: Db, account_id: uuid.UUID) -> int:
    status: str = await db.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE account_id = $1 AND revoked_at IS NULL", account_id
    )
    return int(status.split()[-1])


async def prune_expired(db: Db, *, keep_s: int = 7 * 24 * 3600) -> tuple[int, int]:
    """Deletes refresh tokens and one-time codes expired more than `keep_s` ago (kept a
    while so that a late reuse of a rotated token is still recognised and refused)."""
    tokens: str = await db.execute(
        "DELETE FROM refresh_tokens WHERE expires_at < now() - make_interval(secs => $1)", float(keep_s)
    )
    codes: str = await db.execute(
        "DELETE FROM one_time_codes WHERE expires_at < now() - make_interval(secs => $1)", float(keep_s)
    )
    return int(tokens.split()[-1]), int(codes.split()[-1])


# --- one-time codes ---------------------------------------------------------------------

CodePurpose = Literal["password_reset", "sign_up"]


@dataclass(frozen=True, slots=True)
class NewCode:
    purpose: CodePurpose
    subject: str
    channel: domain.Channel
    recipient: str
    code: str
    ttl_s: int
    full_name: str | None


async def create_code_with_outbox(pool: asyncpg.Pool, new: NewCode) -> uuid.UUID:
    """Stores the code's hash and asks notify to deliver it (`code.requested`), in one
    transaction. Only the newest code of a subject counts, so this supersedes any older."""
    code_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        expires_at: datetime = await conn.fetchval(
            """INSERT INTO one_time_codes (id, purpose, subject, channel, recipient, code_hash, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) RETURNING expires_at""",
            code_id, new.purpose, new.subject, new.channel, new.recipient, domain.code_hash(code_id, new.code),
            float(new.ttl_s),
        )
        await add_events(conn, [Event(events.CODE_REQUESTED, {
            "request_id": str(code_id),
            "purpose": new.purpose,
            "channel": new.channel,
            "recipient": new.recipient,
            "code": new.code,
            "expires_at": expires_at,
            "full_name": new.full_name,
        })])
    return code_id


async def verify_code(
    pool: asyncpg.Pool, *, purpose: CodePurpose, subject: str, code: str, max_tries: int
) -> uuid.UUID | None:
    """The id of the subject's newest code when `code` is it, still unused, unexpired and
    under `max_tries` wrong tries; else None (a wrong try is counted and committed)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT id, code_hash, tries, used_at, expires_at <= now() AS expired FROM one_time_codes
               WHERE purpose = $1 AND subject = $2 ORDER BY created_at DESC, id LIMIT 1 FOR UPDATE""",
            purpose, subject,
        )
        if row is None or row["used_at"] is not None or row["expired"] or row["tries"] >= max_tries:
            return None
        if not hmac.compare_digest(bytes(row["code_hash"]), domain.code_hash(row["id"], code)):
            await conn.execute("UPDATE one_time_codes SET tries = tries + 1 WHERE id = $1", row["id"])
            return None
        code_id: uuid.UUID = row["id"]
        return code_id


async def _consume_code(conn: asyncpg.Connection, code_id: uuid.UUID) -> bool:
    status: str = await conn.execute(
        "UPDATE one_time_codes SET used_at = now() WHERE id = $1 AND used_at IS NULL", code_id
    )
    return status == "UPDATE 1"


async def reset_password_with_code(
    pool: asyncpg.Pool, *, code_id: uuid.UUID, account: Account, password_hash: str
) -> bool:
    """Consumes the code, sets the password and ends every session of the account (a
    reset usually means someone else may know the old password). False when the code
    was consumed meanwhile."""
    async with pool.acquire() as conn, conn.transaction():
        if not await _consume_code(conn, code_id):
            return False
        await set_password_hash(conn, account, password_hash)
        await revoke_account_refresh_tokens(conn, account.id)
    return True
