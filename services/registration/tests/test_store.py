"""store.py against the real PostgreSQL (schema `registration` in hoithi_test)."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest

from services.core import events
from services.core.tables import Table, read_csv_table
from services.registration import domain, store
from services.registration.tests.conftest import SEED_UNITS

HEADER = "code,name,parent_code,block,headcount"


def table(*lines: str) -> Table:
    return read_csv_table(("\n".join([HEADER, *lines]) + "\n").encode())


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
    outcome = await store.import_units_with_outbox(pool, read_csv_table(SEED_UNITS.read_bytes()))
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

    everyone = domain.participant_search(None, partial_numbers=False)
    total, page = await store.list_participants(pool, unit_id=None, search=everyone, limit=2, offset=0)
    assert total == 3
    assert [p.full_name for p in page] == ["Lê Văn Cường", "Trần Thị Bình"]  # newest first
    total, page = await store.list_participants(pool, unit_id=None, search=everyone, limit=2, offset=2)
    assert (total, [p.full_name for p in page]) == (3, ["Nguyễn Văn An"])

    async def found(unit_id: uuid.UUID | None, query: str | None, partial_numbers: bool = True) -> list[str]:
        search = domain.participant_search(query, partial_numbers=partial_numbers)
        return sorted(p.full_name for p in (await store.list_participants(
            pool, unit_id=unit_id, search=search, limit=50, offset=0
        ))[1])

    assert await found(lc, None) == ["Nguyễn Văn An", "Trần Thị Bình"]
    assert await found(None, "van") == ["Lê Văn Cường", "Nguyễn Văn An"]
    assert await found(lc, "VĂN") == ["Nguyễn Văn An"]
    assert await found(None, "0987") == ["Trần Thị Bình"]
    assert await found(None, "+84 98765") == ["Trần Thị Bình"]
    assert await found(None, "cuong@") == ["Lê Văn Cường"]
    assert await found(None, "nobody") == []
    # Where numbers are shown masked, only a whole one finds its owner.
    assert await found(None, "0987", partial_numbers=False) == []
    assert await found(None, "+84 987 654 321", partial_numbers=False) == ["Trần Thị Bình"]


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


# --- issue 4: sign-up traces, scopes, entry links ---------------------------------------

async def test_sign_up_traces_and_entry_link_counts(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    lc = demo_units["LC-P01"]
    first = await store.register_participant_with_outbox(pool, new_participant(
        lc.id, job="Giáo viên", signup_ip="203.0.113.7", device_id="device-0001", entry_code="LC-P01"
    ))
    # Signed up through LC-P01's link but chose another unit: the link still counts it.
    await store.register_participant_with_outbox(pool, new_participant(
        demo_units["LC-P02"].id, phone="0987654321", entry_code="LC-P01"
    ))
    # A stale link naming no unit neither fails nor counts.
    await store.register_participant_with_outbox(pool, new_participant(lc.id, phone="0356789012", entry_code="GONE"))
    row = await pool.fetchrow("SELECT job, host(signup_ip) AS ip, device_id FROM participants WHERE id = $1", first.id)
    assert dict(row) == {"job": "Giáo viên", "ip": "203.0.113.7", "device_id": "device-0001"}
    assert await store.invite_signups(pool, lc.id) == 2
    assert await store.invite_signups(pool, demo_units["LC-P02"].id) == 0


async def test_scope_is_the_unit_subtree(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    for code, phone in [("LC-P01", "0912345678"), ("LC-THCS1", "0912345679"), ("HB-P01", "0912345670")]:
        await store.register_participant_with_outbox(pool, new_participant(demo_units[code].id, phone=phone))

    async def phones(scope: str | None, unit: str | None = None) -> list[str]:
        _, found = await store.list_participants(
            pool, unit_id=demo_units[unit].id if unit else None, limit=50, offset=0,
            search=domain.participant_search(None, partial_numbers=False),
            scope_unit_id=demo_units[scope].id if scope else None,
        )
        return sorted(p.phone for p in found)

    assert await phones(None) == ["0912345670", "0912345678", "0912345679"]
    assert await phones("TP") == ["0912345670", "0912345678", "0912345679"]
    assert await phones("LC") == ["0912345678", "0912345679"]  # the district and its wards and schools
    assert await phones("LC-P01") == ["0912345678"]
    assert await phones("LC", unit="HB-P01") == []  # a filter outside the scope finds nothing
    assert await store.unit_in_subtree(pool, demo_units["LC-P01"].id, demo_units["TP"].id)
    assert await store.unit_in_subtree(pool, demo_units["LC"].id, demo_units["LC"].id)
    assert not await store.unit_in_subtree(pool, demo_units["HB-P01"].id, demo_units["LC"].id)
    assert not await store.unit_in_subtree(pool, demo_units["TP"].id, demo_units["LC"].id)


# --- refresh tokens ---------------------------------------------------------------------

async def test_refresh_rotation_and_reuse_revokes_the_family(pool: asyncpg.Pool) -> None:
    account_id = uuid.uuid4()
    h = domain.refresh_token_hash
    family = await store.issue_refresh_token(
        pool, token_hash=h("t1"), account_id=account_id, role="participant", ttl_s=3600
    )
    other_family = await store.issue_refresh_token(
        pool, token_hash=h("other"), account_id=account_id, role="participant", ttl_s=3600
    )
    outcome, grant = await store.rotate_refresh_token(pool, old_hash=h("t1"), new_hash=h("t2"), ttl_s=3600)
    assert outcome == "rotated"
    assert grant == store.RefreshGrant(account_id, "participant", family)
    assert (await store.rotate_refresh_token(pool, old_hash=h("t2"), new_hash=h("t3"), ttl_s=3600))[0] == "rotated"

    # t1 again: a copy. The family (t3, the live one, included) is revoked; another session is not.
    assert (await store.rotate_refresh_token(pool, old_hash=h("t1"), new_hash=h("x"), ttl_s=3600))[0] == "reused"
    assert (await store.rotate_refresh_token(pool, old_hash=h("t3"), new_hash=h("t4"), ttl_s=3600))[0] == "revoked"
    assert (await store.rotate_refresh_token(pool, old_hash=h("t2"), new_hash=h("t5"), ttl_s=3600))[0] == "reused"
    assert await pool.fetchval("SELECT count(*) FROM refresh_tokens WHERE token_hash = $1", h("x")) == 0
    revoked = await pool.fetch("SELECT family_id, revoked_at IS NOT NULL AS revoked FROM refresh_tokens")
    assert {r["family_id"] for r in revoked if r["revoked"]} == {family}
    assert (await store.rotate_refresh_token(pool, old_hash=h("other"), new_hash=h("o2"), ttl_s=3600))[0] == "rotated"
    assert other_family != family

    assert (await store.rotate_refresh_token(pool, old_hash=h("never"), new_hash=h("y"), ttl_s=3600)) == (
        "unknown", None
    )


async def test_expired_refresh_token(pool: asyncpg.Pool) -> None:
    h = domain.refresh_token_hash
    await store.issue_refresh_token(pool, token_hash=h("old"), account_id=uuid.uuid4(), role="organiser", ttl_s=3600)
    await pool.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    assert await store.rotate_refresh_token(pool, old_hash=h("old"), new_hash=h("new"), ttl_s=3600) == (
        "expired", None
    )
    await pool.execute("UPDATE refresh_tokens SET expires_at = now() - interval '8 days'")
    assert await store.prune_expired(pool) == (1, 0)


async def test_logout_revokes_the_family_and_reset_revokes_the_account(pool: asyncpg.Pool) -> None:
    h = domain.refresh_token_hash
    account_id = uuid.uuid4()
    for token in ("a", "b"):
        await store.issue_refresh_token(pool, token_hash=h(token), account_id=account_id, role="participant",
                                        ttl_s=3600)
    await store.rotate_refresh_token(pool, old_hash=h("a"), new_hash=h("a2"), ttl_s=3600)
    assert await store.revoke_refresh_family(pool, h("a2")) == 2  # a (used) and a2
    assert await store.revoke_refresh_family(pool, h("a2")) == 0
    assert await store.revoke_refresh_family(pool, h("unknown")) == 0
    assert (await store.rotate_refresh_token(pool, old_hash=h("b"), new_hash=h("b2"), ttl_s=3600))[0] == "rotated"
    assert await store.revoke_account_refresh_tokens(pool, account_id) == 2


# --- one-time codes ---------------------------------------------------------------------

def reset_code(subject: str, code: str = "123456", **overrides: object) -> store.NewCode:
    fields: dict[str, object] = {
        "purpose": "password_reset", "subject": subject, "channel": "sms", "recipient": "0912345678",
        "code": code, "ttl_s": 600, "full_name": "Nguyễn Văn An", **overrides,
    }
    return store.NewCode(**fields)  # type: ignore[arg-type]


async def test_code_is_stored_hashed_and_sent_through_the_outbox(pool: asyncpg.Pool) -> None:
    code_id = await store.create_code_with_outbox(pool, reset_code("participant:1", "042917"))
    stored = await pool.fetchrow("SELECT * FROM one_time_codes")
    assert b"042917" not in bytes(stored["code_hash"])
    assert bytes(stored["code_hash"]) == domain.code_hash(code_id, "042917")
    [requested] = await store.outbox_events(pool, events.CODE_REQUESTED)
    assert requested.data == {
        "request_id": str(code_id), "purpose": "password_reset", "channel": "sms", "recipient": "0912345678",
        "code": "042917", "expires_at": stored["expires_at"].isoformat(), "full_name": "Nguyễn Văn An",
    }


async def test_code_tries_are_limited_and_only_the_newest_counts(pool: asyncpg.Pool) -> None:
    async def check(code: str, subject: str = "participant:1") -> uuid.UUID | None:
        return await store.verify_code(pool, purpose="password_reset", subject=subject, code=code, max_tries=3)

    old = await store.create_code_with_outbox(pool, reset_code("participant:1", "111111"))
    assert await check("111111") == old
    new = await store.create_code_with_outbox(pool, reset_code("participant:1", "222222"))
    assert await check("111111") is None  # superseded
    assert await check("222222") == new
    assert await check("222222", subject="participant:2") is None
    assert await store.verify_code(pool, purpose="sign_up", subject="participant:1", code="222222", max_tries=3) is None

    assert await check("000000") is None
    assert await check("000001") is None
    assert await pool.fetchval("SELECT tries FROM one_time_codes WHERE id = $1", new) == 3
    assert await check("222222") is None  # three wrong tries: the right code no longer works


async def test_expired_code_fails(pool: asyncpg.Pool) -> None:
    await store.create_code_with_outbox(pool, reset_code("participant:1"))
    await pool.execute("UPDATE one_time_codes SET expires_at = now() - interval '1 second'")
    assert await store.verify_code(
        pool, purpose="password_reset", subject="participant:1", code="123456", max_tries=5
    ) is None


async def test_reset_with_code_sets_the_password_once(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    participant = await store.register_participant_with_outbox(pool, new_participant(demo_units["LC-P01"].id))
    account = await store.account_by_login(pool, domain.LoginName("phone", "0912345678"))
    assert account is not None
    await store.issue_refresh_token(
        pool, token_hash=domain.refresh_token_hash("s"), account_id=participant.id, role="participant", ttl_s=60
    )
    code_id = await store.create_code_with_outbox(pool, reset_code(f"participant:{participant.id}"))
    assert await store.reset_password_with_code(pool, code_id=code_id, account=account, password_hash="new-hash")
    assert await pool.fetchval("SELECT password_hash FROM participants") == "new-hash"
    assert await pool.fetchval("SELECT revoked_at IS NOT NULL FROM refresh_tokens")
    assert not await store.reset_password_with_code(pool, code_id=code_id, account=account, password_hash="again")
    assert await pool.fetchval("SELECT password_hash FROM participants") == "new-hash"


async def test_sign_up_consumes_its_verification_code(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    code_id = await store.create_code_with_outbox(pool, reset_code(
        "sms:0912345678", purpose="sign_up", full_name=None
    ))
    unit_id = demo_units["LC-P01"].id
    await store.register_participant_with_outbox(pool, new_participant(unit_id, verification_code_id=code_id))
    assert await pool.fetchval("SELECT used_at IS NOT NULL FROM one_time_codes")
    with pytest.raises(store.CodeAlreadyUsed):
        await store.register_participant_with_outbox(
            pool, new_participant(unit_id, phone="0987654321", verification_code_id=code_id)
        )
    assert await pool.fetchval("SELECT count(*) FROM participants") == 1


# --- exports and audit ------------------------------------------------------------------

async def test_export_streams_rows_and_audits_them(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    for i in range(7):
        await store.register_participant_with_outbox(
            pool, new_participant(demo_units["LC-P01" if i < 5 else "HB-P01"].id, phone=f"091234567{i}",
                                  id_number=f"03120300456{i}")
        )
    chunks: list[list[tuple[object, ...]]] = []

    async def collect(rows: list[tuple[object, ...]]) -> None:
        chunks.append(rows)

    actor = uuid.uuid4()
    audit = store.AuditEntry(actor, "Ban Tổ chức", "organiser", "participants.export", {"format": "csv", "q": None})
    count = await store.export_participants_with_audit(
        pool, scope_unit_id=None, unit_id=demo_units["LC-P01"].id, query=None, audit=audit, write_chunk=collect
    )
    assert count == 5
    rows = [row for chunk in chunks for row in chunk]
    assert len(rows) == 5
    assert [row[3] for row in rows] == [f"091234567{i}" for i in range(5)]  # oldest first, phone in full
    assert rows[0][5] == "031203004560"  # ID number in full
    assert rows[0][6:8] == ("LC-P01", "Phường Lê Chân")
    total, records = await store.audit_log(pool, limit=10, offset=0)
    assert total == 1
    assert (records[0].actor_id, records[0].action, records[0].filter, records[0].row_count) == (
        actor, "participants.export", {"format": "csv", "q": None}, 5
    )


async def test_failed_export_leaves_no_audit_row(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    await store.register_participant_with_outbox(pool, new_participant(demo_units["LC-P01"].id))

    async def broken(rows: list[tuple[object, ...]]) -> None:
        raise OSError("disk full")

    audit = store.AuditEntry(uuid.uuid4(), "BTC", "organiser", "participants.export", {})
    with pytest.raises(OSError):
        await store.export_participants_with_audit(
            pool, scope_unit_id=None, unit_id=None, query=None, audit=audit, write_chunk=broken
        )
    assert (await store.audit_log(pool, limit=10, offset=0))[0] == 0


# --- flags ------------------------------------------------------------------------------

async def test_likely_duplicates_same_name_birth_date_and_unit(
    pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    lc, hb = demo_units["LC-P01"].id, demo_units["HB-P01"].id
    born = date(1990, 1, 2)
    people = [
        ("Nguyễn Văn An", "0912345671", lc, born),
        ("NGUYEN VAN AN", "0912345672", lc, born),  # same person without diacritics
        ("Nguyễn Văn An", "0912345673", lc, date(1991, 1, 2)),  # another birth date
        ("Nguyễn Văn An", "0912345674", hb, born),  # another unit
        ("Nguyễn Văn Anh", "0912345675", lc, born),  # another name
        ("Trần Thị Bình", "0912345676", hb, None),
        ("Tran Thi Binh", "0912345677", hb, None),  # no birth date: not comparable
    ]
    for name, phone, unit_id, birth_date in people:
        await store.register_participant_with_outbox(
            pool, new_participant(unit_id, full_name=name, phone=phone, birth_date=birth_date)
        )
    [group] = await store.likely_duplicates(pool, scope_unit_id=None, limit=10)
    assert (group.unit_id, group.unit_name, group.birth_date) == (lc, "Phường Lê Chân", born)
    assert [p.phone for p in group.participants] == ["0912345671", "0912345672"]
    assert await store.likely_duplicates(pool, scope_unit_id=demo_units["HB"].id, limit=10) == []
    assert len(await store.likely_duplicates(pool, scope_unit_id=demo_units["LC"].id, limit=10)) == 1


async def test_bursts_of_accounts_from_one_address_or_device(
    pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    lc, hb = demo_units["LC-P01"].id, demo_units["HB-P01"].id
    # (minutes after the start, address, device, unit)
    sign_ups = [
        (0, "203.0.113.1", None, lc), (2, "203.0.113.1", None, lc), (4, "203.0.113.1", None, lc),
        (6, "203.0.113.1", None, hb), (9, "203.0.113.1", None, lc),  # five within ten minutes
        (30, "203.0.113.1", None, lc),  # later, alone: not part of the burst
        (0, "198.51.100.2", "device-aaaa", lc), (20, "198.51.100.2", "device-aaaa", lc),  # slow: fine
        (40, "198.51.100.3", "device-aaaa", lc), (41, "198.51.100.4", "device-aaaa", lc),
        (42, "198.51.100.5", "device-aaaa", lc),
    ]
    for i, (minute, ip, device, unit_id) in enumerate(sign_ups):
        p = await store.register_participant_with_outbox(
            pool, new_participant(unit_id, phone=f"09123456{i:02d}", signup_ip=ip, device_id=device)
        )
        await pool.execute(
            "UPDATE participants SET created_at = '2026-03-01T08:00:00Z'::timestamptz + make_interval(mins => $2)"
            " WHERE id = $1", p.id, minute,
        )
    bursts = await store.account_bursts(pool, scope_unit_id=None, min_accounts=5, window_s=600, limit=10)
    assert [(b.kind, b.source, [p.phone for p in b.participants]) for b in bursts] == [
        ("ip", "203.0.113.1", ["0912345600", "0912345601", "0912345602", "0912345603", "0912345604"]),
    ]
    three = await store.account_bursts(pool, scope_unit_id=None, min_accounts=3, window_s=600, limit=10)
    assert ("device", "device-aaaa", 3) in [(b.kind, b.source, len(b.participants)) for b in three]
    # A coordinator of HB sees only HB's sign-ups: one from that address, no burst.
    assert await store.account_bursts(
        pool, scope_unit_id=demo_units["HB"].id, min_accounts=5, window_s=600, limit=10
    ) == []


# --- staff ------------------------------------------------------------------------------

async def test_staff_in_unknown_unit_and_listing(pool: asyncpg.Pool, demo_units: dict[str, store.Unit]) -> None:
    with pytest.raises(store.UnknownUnit):
        await store.create_staff_with_outbox(
            pool, store.NewStaff("dp", "Điều Phối", "coordinator", uuid.uuid4(), None, None, "h")
        )
    await store.create_staff_with_outbox(
        pool, store.NewStaff("dp", "Điều Phối", "coordinator", demo_units["LC"].id, None, "0912345678", "h")
    )
    [member] = await store.list_staff(pool)
    assert (member.login, member.role, member.unit_id, member.phone) == ("dp", "coordinator", demo_units["LC"].id,
                                                                         "0912345678")
