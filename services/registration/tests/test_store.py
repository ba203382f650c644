"""store.py against the real PostgreSQL (schema `registration` in hoithi_test)."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest

from services.core import events
from services.registration import domain, store
from services.registration.tests.conftest import SEED_UNITS

HEADER = "code,name,parent_code,block,headcount"


def table(*lines: str) -> domain.Table:
    return domain.read_csv_table(("\n".join([HEADER, *lines]) + "\n").encode())


def new_participant(unit_id: uuid.UUID, **overrides: object) -> store.NewParticipant:
    fields: dict[str, object] = {
        "full_name": "Nguyễn Văn An",
        "phone": "0912345678",
        "email": None,
        "id_number": None,
        "birth_date": None,
        "unit_id": unit_id,
        "group": None,
        "password_hash": "not-a-real-hash",
    }
    fields.update(overrides)
    return store.NewParticipant(**fields)  # type: ignore[arg-type]


# --- units import -----------------------------------------------------------------------

async def test_import_creates_the_tree_and_emits_one_snapshot(pool: asyncpg.Pool) -> None:
    outcome = await store.import_units_with_outbox(pool, domain.read_csv_table(SEED_UNITS.read_bytes()))
    assert outcome == store.UnitsImport(imported=27, created=27, updated=0, unchanged=0)

    units = {u.code: u for u in await store.all_units(pool)}
    assert units["LC-P01"].parent_id == units["LC"].id
    assert units["LC"].parent_id == units["TP"].id
    assert units["TP"].parent_id is None
    assert await pool.fetchval("SELECT search_name FROM units WHERE code = 'NQ-P04'") == "phuong dang giang"

    [changed] = await store.outbox_events(pool, events.UNITS_CHANGED)
    snapshot = {u["code"]: u for u in changed.data["units"]}
    assert len(snapshot) == 27
    assert snapshot["LC-P01"] == {
        "id": str(units["LC-P01"].id),
        "code": "LC-P01",
        "name": "Phường Lê Chân",
        "parent_id": str(units["LC"].id),
        "block": "commune",
        "headcount": 38,
    }


async def test_reimport_updates_in_place_and_keeps_ids(pool: asyncpg.Pool) -> None:
    await store.import_units_with_outbox(
        pool, table("TP,Thành phố,,city,0", "A,Sở A,TP,agency,10", "B,Sở B,TP,agency,5")
    )
    before = {u.code: u for u in await store.all_units(pool)}

    same = await store.import_units_with_outbox(pool, table("TP,Thành phố,,city,0", "A,Sở A,TP,agency,10"))
    assert same == store.UnitsImport(imported=2, created=0, updated=0, unchanged=2)
    assert len(await store.outbox_events(pool, events.UNITS_CHANGED)) == 1  # nothing changed, nothing to tell

    # A moves under B with a new name and headcount; C is new, under A.
    outcome = await store.import_units_with_outbox(
        pool, table("C,Phòng C,A,agency,3", "A,Sở A mới,B,agency,12", "TP,Thành phố,,city,0")
    )
    assert outcome == store.UnitsImport(imported=3, created=1, updated=1, unchanged=1)
    after = {u.code: u for u in await store.all_units(pool)}
    assert after["A"].id == before["A"].id
    assert (after["A"].name, after["A"].parent_id, after["A"].headcount) == ("Sở A mới", before["B"].id, 12)
    assert after["C"].parent_id == after["A"].id
    assert set(after) == {"TP", "A", "B", "C"}  # units missing from the file are kept

    snapshots = await store.outbox_events(pool, events.UNITS_CHANGED)
    assert len(snapshots) == 2
    assert {u["code"] for u in snapshots[-1].data["units"]} == {"TP", "A", "B", "C"}


async def test_invalid_import_writes_nothing(pool: asyncpg.Pool) -> None:
    await store.import_units_with_outbox(pool, table("TP,Thành phố,,city,0"))
    with pytest.raises(domain.UnitRowsInvalid) as invalid:
        await store.import_units_with_outbox(
            pool, table("TP,Đổi tên,,city,1", "X,Sở X,NOPE,agency,1", "Y,Sở Y,TP,agency,-1")
        )
    assert [(e.row, e.field) for e in invalid.value.errors] == [(3, "parent_code"), (4, "headcount")]
    assert [(u.code, u.name, u.headcount) for u in await store.all_units(pool)] == [("TP", "Thành phố", 0)]
    assert len(await store.outbox_events(pool, events.UNITS_CHANGED)) == 1


async def test_import_refuses_a_cycle_through_stored_units(pool: asyncpg.Pool) -> None:
    await store.import_units_with_outbox(pool, table("A,Sở A,,agency,1", "B,Phòng B,A,agency,1"))
    with pytest.raises(domain.UnitRowsInvalid):
        await store.import_units_with_outbox(pool, table("A,Sở A,B,agency,1"))


async def test_import_under_a_parent_already_stored(pool: asyncpg.Pool) -> None:
    await store.import_units_with_outbox(pool, table("TP,Thành phố,,city,0"))
    await store.import_units_with_outbox(pool, table("Q,Quận,TP,district,0"))
    units = {u.code: u for u in await store.all_units(pool)}
    assert units["Q"].parent_id == units["TP"].id


# --- unit search ------------------------------------------------------------------------

async def names(pool: asyncpg.Pool, query: str | None, limit: int = 50) -> list[str]:
    return [u.name for u in await store.search_units(pool, query, limit)]


async def test_search_ignores_diacritics_and_case(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    assert await names(pool, "phuong le chan") == ["Phường Lê Chân"]
    assert await names(pool, "LÊ CHÂN") == ["Phường Lê Chân", "Quận Lê Chân"]
    assert await names(pool, "dang giang") == ["Phường Đằng Giang"]
    assert await names(pool, "chan le") == ["Phường Lê Chân", "Quận Lê Chân"]  # words in any order
    assert await names(pool, "lc-th") == ["Trường THCS Chu Văn An", "Trường Tiểu học Võ Thị Sáu"]  # code prefix
    assert await names(pool, "%") == []  # LIKE wildcards are plain characters here
    assert await names(pool, "_") == []


async def test_search_without_query_lists_by_name(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    everything = await names(pool, None, 500)
    assert len(everything) == 27
    assert everything == sorted(everything, key=domain.search_key)
    assert await names(pool, "  ", 3) == everything[:3]


# --- participants -----------------------------------------------------------------------

async def test_register_writes_the_participant_and_its_event(
    pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    unit = demo_units["LC-P01"]
    participant = await store.register_participant_with_outbox(
        pool,
        new_participant(
            unit.id, email="an@example.vn", id_number="031203004567", birth_date=date(1990, 1, 2), group="cbcc"
        ),
    )
    row = await pool.fetchrow("SELECT * FROM participants WHERE id = $1", participant.id)
    assert row["search_name"] == "nguyen van an"
    assert row["birth_date"] == date(1990, 1, 2)

    [registered] = await store.outbox_events(pool, events.PARTICIPANT_REGISTERED)
    assert registered.data == {
        "participant_id": str(participant.id),
        "full_name": "Nguyễn Văn An",
        "phone": "0912345678",
        "email": "an@example.vn",
        "unit_id": str(unit.id),
        "group": "cbcc",
        "registered_at": participant.created_at.isoformat(),
    }


@pytest.mark.parametrize(
    ("taken", "field"),
    [
        ({"phone": "0912345678"}, "phone"),
        ({"email": "an@example.vn"}, "email"),
        ({"id_number": "031203004567"}, "id_number"),
    ],
)
async def test_taken_phone_email_or_id_number(
    pool: asyncpg.Pool, demo_units: dict[str, store.Unit], taken: dict[str, str], field: str
) -> None:
    unit_id = demo_units["LC-P01"].id
    await store.register_participant_with_outbox(
        pool, new_participant(unit_id, phone="0912345678", email="an@example.vn", id_number="031203004567")
    )
    other = {"phone": "0987654321", "email": "binh@example.vn", "id_number": "031203009999", **taken}
    with pytest.raises(store.AlreadyRegistered) as already:
        await store.register_participant_with_outbox(pool, new_participant(unit_id, **other))
    assert already.value.field == field
    assert await pool.fetchval("SELECT count(*) FROM participants") == 1
    assert len(await store.outbox_events(pool, events.PARTICIPANT_REGISTERED)) == 1


async def test_register_in_unknown_unit(pool: asyncpg.Pool) -> None:
    with pytest.raises(store.UnknownUnit):
        await store.register_participant_with_outbox(pool, new_participant(uuid.uuid4()))
    assert await store.outbox_events(pool) == []


async def test_list_participants_filters_and_pages(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    lc, hb = demo_units["LC-P01"].id, demo_units["HB-P01"].id
    people = [
        ("Nguyễn Văn An", "0912345678", "an@example.vn", lc),
        ("Trần Thị Bình", "0987654321", None, lc),
        ("Lê Văn Cường", "0356789012", "cuong@example.vn", hb),
    ]
    for full_name, phone, email, unit_id in people:
        await store.register_participant_with_outbox(
            pool, new_participant(unit_id, full_name=full_name, phone=phone, email=email)
        )

    total, page = await store.list_participants(pool, unit_id=None, query=None, limit=2, offset=0)
    assert total == 3
    assert [p.full_name for p in page] == ["Lê Văn Cường", "Trần Thị Bình"]  # newest first
    total, page = await store.list_participants(pool, unit_id=None, query=None, limit=2, offset=2)
    assert (total, [p.full_name for p in page]) == (3, ["Nguyễn Văn An"])

    async def found(unit_id: uuid.UUID | None, query: str | None) -> list[str]:
        return sorted(p.full_name for p in (await store.list_participants(
            pool, unit_id=unit_id, query=query, limit=50, offset=0
        ))[1])

    assert await found(lc, None) == ["Nguyễn Văn An", "Trần Thị Bình"]
    assert await found(None, "van") == ["Lê Văn Cường", "Nguyễn Văn An"]
    assert await found(lc, "VĂN") == ["Nguyễn Văn An"]
    assert await found(None, "0987") == ["Trần Thị Bình"]
    assert await found(None, "+84 98765") == ["Trần Thị Bình"]
    assert await found(None, "cuong@") == ["Lê Văn Cường"]
    assert await found(None, "nobody") == []


# --- accounts ---------------------------------------------------------------------------

async def test_accounts_by_phone_email_and_staff_login(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    unit_id = demo_units["LC-P01"].id
    participant = await store.register_participant_with_outbox(
        pool, new_participant(unit_id, email="an@example.vn", group="cbcc")
    )
    staff_id = await store.create_staff_with_outbox(pool, store.NewStaff(
        login="bantochuc", full_name="Ban Tổ chức", role="organiser", unit_id=None,
        email="btc@example.vn", phone=None, password_hash="h",
    ))

    by_phone = await store.account_by_login(pool, domain.LoginName("phone", "0912345678"))
    assert by_phone == store.Account(participant.id, "participant", "Nguyễn Văn An", unit_id, "cbcc", "not-a-real-hash")
    assert await store.account_by_login(pool, domain.LoginName("email", "an@example.vn")) == by_phone
    by_login = await store.account_by_login(pool, domain.LoginName("staff", "bantochuc"))
    assert by_login == store.Account(staff_id, "organiser", "Ban Tổ chức", None, None, "h")
    # A staff login is never looked up among participants, nor the other way round.
    assert await store.account_by_login(pool, domain.LoginName("staff", "0912345678")) is None
    assert await store.account_by_login(pool, domain.LoginName("email", "btc@example.vn")) is None

    [changed] = await store.outbox_events(pool, events.STAFF_CHANGED)
    assert changed.data == {
        "staff_id": str(staff_id), "login": "bantochuc", "full_name": "Ban Tổ chức", "role": "organiser",
        "unit_id": None, "email": "btc@example.vn", "phone": None,
    }
    with pytest.raises(store.StaffLoginTaken):
        await store.create_staff_with_outbox(
            pool, store.NewStaff("bantochuc", "X", "coordinator", None, None, None, "h")
        )

    await store.set_password_hash(pool, by_login, "new")
    assert await store.staff_password_hash(pool, "bantochuc") == "new"
    assert await store.set_staff_password_hash(pool, "bantochuc", "newer") is True
    assert await store.set_staff_password_hash(pool, "nobody", "x") is False
