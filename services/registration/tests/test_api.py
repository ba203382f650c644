"""The HTTP routes, in-process against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable

import asyncpg
import httpx
import pytest
from openpyxl import Workbook

from services.core import events
from services.core.auth import TokenVerifier
from services.core.tables import XLSX_MEDIA_TYPE
from services.core.testing import running_app
from services.registration import domain, store
from services.registration.app import create_app
from services.registration.passwords import Passwords
from services.registration.settings import RegistrationSettings
from services.registration.tests.conftest import (
    HEADER,
    PASSWORD,
    PUBLIC_BASE_URL,
    SEED_UNITS,
    bearer,
    make_organiser,
    problem_fields,
    sign_up,
    token_for,
)

# --- sign-up, login, /api/me ------------------------------------------------------------

async def test_register_login_and_me(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit], token_verifier: TokenVerifier
) -> None:
    unit = demo_units["LC-P01"]
    registered = await client.post("/api/auth/register", json=sign_up(unit.id))
    assert registered.status_code == 201, registered.text
    participant_id = uuid.UUID(registered.json()["participant_id"])

    login = await client.post("/api/auth/login", json={"login": "+84 912.345.678", "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["token_type"] == "bearer"
    assert login.json()["expires_in"] == 900  # ACCESS_TOKEN_TTL_S: short; the web refreshes
    assert len(login.json()["refresh_token"]) >= 40
    principal = token_verifier.verify(login.json()["access_token"])
    assert (principal.id, principal.role, principal.name, principal.unit_id, principal.group) == (
        participant_id, "participant", "Nguyễn Văn An", unit.id, "cbcc"
    )

    me = await client.get("/api/me", headers=bearer(login.json()["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": str(participant_id),
        "role": "participant",
        "full_name": "Nguyễn Văn An",
        "unit": {"id": str(unit.id), "code": "LC-P01", "name": "Phường Lê Chân"},
        "group": "cbcc",
        "phone": "091****678",
        "email": "an.nguyen@example.vn",
        "id_number": "0312******67",
        "birth_date": "1990-01-02",
        "job": None,
    }
    # The email works as a login too, in any case.
    assert await token_for(client, "AN.NGUYEN@example.vn", PASSWORD)

    [event] = await store.outbox_events(pool, events.PARTICIPANT_REGISTERED)
    assert event.data["participant_id"] == str(participant_id)
    assert event.data["phone"] == "0912345678"
    assert event.data["unit_id"] == str(unit.id)


async def test_optional_fields_may_be_blank(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    body = sign_up(demo_units["LC-P01"].id, email="", id_number=" ", birth_date="", group="")
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 201, response.text
    me = await client.get("/api/me", headers=bearer(await token_for(client, "0912345678", PASSWORD)))
    assert (me.json()["email"], me.json()["group"]) == (None, None)


async def test_same_phone_in_another_format_is_a_conflict_naming_phone(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit]
) -> None:
    unit_id = demo_units["LC-P01"].id
    assert (await client.post("/api/auth/register", json=sign_up(unit_id))).status_code == 201
    again = await client.post(
        "/api/auth/register",
        json=sign_up(unit_id, phone="+84912345678", email="other@example.vn", id_number="031203009999"),
    )
    assert again.status_code == 409
    assert again.json()["field"] == "phone"
    assert again.json()["code"] == "phone_taken"
    assert "Số điện thoại" in again.json()["detail"]
    assert "Nguyễn" not in again.text  # never whose


@pytest.mark.parametrize(("field", "value"), [("email", "AN.NGUYEN@example.vn"), ("id_number", "031203004567")])
async def test_taken_email_or_id_number_is_a_conflict_naming_it(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit], field: str, value: str
) -> None:
    unit_id = demo_units["LC-P01"].id
    assert (await client.post("/api/auth/register", json=sign_up(unit_id))).status_code == 201
    fresh = {"phone": "0987654321", "email": "other@example.vn", "id_number": "031203009999", field: value}
    again = await client.post("/api/auth/register", json=sign_up(unit_id, **fresh))
    assert again.status_code == 409
    assert again.json()["field"] == field


async def test_concurrent_sign_ups_with_one_phone_make_one_participant(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    unit_id = demo_units["LC-P01"].id
    forms = ["0912345678", "+84 912 345 678", "84912345678", "0912.345.678", "091-234-5678"]
    responses = await asyncio.gather(*(
        client.post("/api/auth/register", json=sign_up(unit_id, phone=phone, email=None, id_number=None))
        for phone in forms
    ))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    assert all(r.json()["field"] == "phone" for r in responses if r.status_code == 409)
    assert await pool.fetchval("SELECT count(*) FROM participants") == 1
    assert len(await store.outbox_events(pool, events.PARTICIPANT_REGISTERED)) == 1


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"phone": "0212345678"}, "phone", "Đầu số 021"),
        ({"phone": "12345"}, "phone", "Số điện thoại không hợp lệ"),
        ({"email": "an@"}, "email", "email không hợp lệ"),
        ({"id_number": "03120300456"}, "id_number", "12 chữ số"),
        ({"full_name": " A "}, "full_name", "ít nhất 2"),
        ({"password": "short"}, "password", "ít nhất 8"),
        ({"birth_date": "2999-01-01"}, "birth_date", "Ngày sinh"),
        ({"unit_id": "not-a-uuid"}, "unit_id", ""),
    ],
)
async def test_invalid_sign_up_fields_are_named(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit], overrides: dict[str, str], field: str, message: str
) -> None:
    response = await client.post("/api/auth/register", json={**sign_up(demo_units["LC-P01"].id), **overrides})
    assert response.status_code == 422
    assert problem_fields(response) == [field]
    assert message in response.json()["errors"][0]["message"]


async def test_unknown_unit_is_named(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    response = await client.post("/api/auth/register", json=sign_up(uuid.uuid4()))
    assert response.status_code == 422
    assert problem_fields(response) == ["unit_id"]
    assert await pool.fetchval("SELECT count(*) FROM participants") == 0


async def test_wrong_password_and_unknown_login_look_the_same(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    await client.post("/api/auth/register", json=sign_up(demo_units["LC-P01"].id))
    await make_organiser(pool)
    attempts = [
        ("0912345678", "wrong password"),
        ("0987654321", PASSWORD),
        ("nobody@example.vn", PASSWORD),
        ("btc", "wrong password"),
        ("nobody", PASSWORD),
    ]
    bodies = []
    for login, password in attempts:
        response = await client.post("/api/auth/login", json={"login": login, "password": password})
        assert response.status_code == 401, login
        bodies.append({k: v for k, v in response.json().items() if k != "instance"})
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["code"] == "invalid_credentials"


async def test_staff_login_gives_a_staff_token(
    client: httpx.AsyncClient, pool: asyncpg.Pool, token_verifier: TokenVerifier
) -> None:
    staff_id = await make_organiser(pool, login="bantochuc")
    token = await token_for(client, "BanToChuc", PASSWORD)
    principal = token_verifier.verify(token)
    assert (principal.id, principal.role, principal.name) == (staff_id, "organiser", "Ban Tổ chức")
    me = await client.get("/api/me", headers=bearer(token))
    assert me.json() == {
        "id": str(staff_id), "role": "organiser", "full_name": "Ban Tổ chức", "unit": None, "group": None,
        "phone": None, "email": None, "id_number": None, "birth_date": None, "job": None,
    }


async def test_login_with_older_hash_parameters_rehashes(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    await client.post("/api/auth/register", json=sign_up(demo_units["LC-P01"].id))
    older = await Passwords(time_cost=1, memory_cost_kib=2048, parallelism=1).hash(PASSWORD)
    await pool.execute("UPDATE participants SET password_hash = $1", older)
    await token_for(client, "0912345678", PASSWORD)
    rehashed = await pool.fetchval("SELECT password_hash FROM participants")
    assert rehashed != older and "m=1024" in rehashed
    await token_for(client, "0912345678", PASSWORD)


async def test_me_needs_a_token_and_an_existing_account(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    assert (await client.get("/api/me")).status_code == 401
    assert (await client.get("/api/me", headers=bearer("garbage"))).status_code == 401
    assert (await client.get("/api/me", headers=bearer(make_token()))).status_code == 404


# --- units ------------------------------------------------------------------------------

async def test_unit_search_ignores_diacritics(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    response = await client.get("/api/units", params={"q": "phuong le chan"})
    assert response.status_code == 200
    unit = demo_units["LC-P01"]
    assert response.json() == [{
        "id": str(unit.id), "code": "LC-P01", "name": "Phường Lê Chân", "parent_id": str(demo_units["LC"].id),
        "block": "commune", "headcount": 38,
    }]
    # Marks are ignored both ways: "Quận" also finds "Quán".
    assert [u["name"] for u in (await client.get("/api/units", params={"q": "Quận"})).json()] == [
        "Phường Quán Toan", "Quận Hồng Bàng", "Quận Lê Chân", "Quận Ngô Quyền"
    ]


async def test_units_without_query_are_all_units_by_name(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit]
) -> None:
    everything = (await client.get("/api/units", params={"limit": 500})).json()
    assert len(everything) == 27
    assert [u["name"] for u in everything] == sorted((u["name"] for u in everything), key=domain.search_key)
    assert len((await client.get("/api/units")).json()) == 27  # default limit 50
    assert len((await client.get("/api/units", params={"limit": 5})).json()) == 5
    assert (await client.get("/api/units", params={"limit": 501})).status_code == 422


async def test_invite_qr_codes(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    unit = demo_units["LC-P01"]
    png = await client.get(f"/api/units/{unit.id}/invite.png")
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert png.headers["cache-control"].startswith("public")

    svg = await client.get(f"/api/units/{unit.id}/invite.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith("<svg")
    assert svg.headers["cache-control"].startswith("public")

    # test_qr.py decodes the image back to this link.
    assert domain.invite_link(PUBLIC_BASE_URL, unit.code) == "https://thi.example.vn/dang-ky?unit=LC-P01"

    assert (await client.get(f"/api/units/{uuid.uuid4()}/invite.png")).status_code == 404
    assert (await client.get(f"/api/units/{uuid.uuid4()}/invite.svg")).status_code == 404


# --- organisers: import and participants ------------------------------------------------

async def upload(
    client: httpx.AsyncClient, token: str, content: bytes, filename: str = "units.csv", media_type: str = "text/csv"
) -> httpx.Response:
    return await client.post(
        "/api/admin/units/import", files={"file": (filename, content, media_type)}, headers=bearer(token)
    )


async def test_import_csv_then_reimport_updates_without_changing_ids(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await make_organiser(pool)
    token = await token_for(client, "btc", PASSWORD)
    seed = SEED_UNITS.read_bytes()
    first = await upload(client, token, b"\xef\xbb\xbf" + seed)  # Excel's BOM
    assert first.status_code == 200, first.text
    assert first.json() == {"imported": 27, "created": 27, "updated": 0, "unchanged": 0}
    ids = {u.code: u.id for u in await store.all_units(pool)}

    changed = seed.decode().replace("LC-P01,Phường Lê Chân,LC,commune,38", "LC-P01,Phường Lê Chân,HB,commune,40")
    second = await upload(client, token, changed.encode())
    assert second.json() == {"imported": 27, "created": 0, "updated": 1, "unchanged": 26}
    after = {u.code: u for u in await store.all_units(pool)}
    assert {code: u.id for code, u in after.items()} == ids
    assert (after["LC-P01"].parent_id, after["LC-P01"].headcount) == (ids["HB"], 40)

    snapshots = await store.outbox_events(pool, events.UNITS_CHANGED)
    assert len(snapshots) == 2
    moved = next(u for u in snapshots[-1].data["units"] if u["code"] == "LC-P01")
    assert (moved["parent_id"], moved["headcount"]) == (str(ids["HB"]), 40)


async def test_import_xlsx(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await make_organiser(pool)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(domain.UNIT_COLUMNS))
    sheet.append(["TP", "Thành phố Cảng Xanh", None, "city", 0])
    sheet.append(["SNV", "Sở Nội vụ", "TP", "agency", 112])
    content = io.BytesIO()
    workbook.save(content)
    response = await upload(
        client, await token_for(client, "btc", PASSWORD), content.getvalue(), "Danh sách.xlsx", XLSX_MEDIA_TYPE
    )
    assert response.json() == {"imported": 2, "created": 2, "updated": 0, "unchanged": 0}
    assert [u.name for u in await store.all_units(pool)] == ["Sở Nội vụ", "Thành phố Cảng Xanh"]


async def test_bad_import_lists_every_bad_row_and_changes_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    await make_organiser(pool)
    before = await store.all_units(pool)
    events_before = await store.outbox_events(pool)
    bad = "\n".join([
        HEADER,
        "LC-P01,Phường Lê Chân (đổi tên),LC,commune,39",  # valid on its own: must not be written either
        "NEW,Đơn vị mới,NOWHERE,agency,3",
        "LC,Quận Lê Chân,LC-P01,district,0",
        "NEW2,Đơn vị 2,TP,agency,-5",
    ]).encode()
    response = await upload(client, await token_for(client, "btc", PASSWORD), bad)
    assert response.status_code == 422
    assert response.json()["code"] == "units_invalid"
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [
        (2, "parent_code"),  # LC-P01 → LC → LC-P01
        (3, "parent_code"),
        (4, "parent_code"),
        (5, "headcount"),
    ]
    assert all(e["message"] for e in response.json()["errors"])
    assert await store.all_units(pool) == before
    assert await store.outbox_events(pool) == events_before


async def test_import_rejects_other_file_types_and_unreadable_files(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await make_organiser(pool)
    token = await token_for(client, "btc", PASSWORD)
    pdf = await upload(client, token, b"%PDF-1.4", "units.pdf", "application/pdf")
    assert pdf.status_code == 415
    assert pdf.json()["code"] == "unsupported_file_type"
    broken = await upload(client, token, b"PK\x03\x04junk", "units.xlsx", XLSX_MEDIA_TYPE)
    assert broken.status_code == 422
    assert problem_fields(broken) == ["file"]
    missing = await client.post("/api/admin/units/import", headers=bearer(token))
    assert missing.status_code == 422
    assert problem_fields(missing) == ["file"]
    assert await store.all_units(pool) == []


async def test_import_over_the_size_limit_is_refused(
    registration_env: dict[str, str], pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNITS_IMPORT_MAX_BYTES", "1000")
    await make_organiser(pool)
    async with running_app(create_app()) as client:
        token = await token_for(client, "btc", PASSWORD)
        response = await upload(client, token, SEED_UNITS.read_bytes())  # about 1.3 kB
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
    assert await store.all_units(pool) == []


async def test_admin_participants_lists_masked_phones(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit]
) -> None:
    lc, hb = demo_units["LC-P01"].id, demo_units["HB-P01"].id
    await client.post("/api/auth/register", json=sign_up(lc))
    await client.post(
        "/api/auth/register",
        json=sign_up(hb, full_name="Trần Thị Bình", phone="0987654321", email=None, id_number=None, group=None),
    )
    await make_organiser(pool)
    token = await token_for(client, "btc", PASSWORD)

    everyone = await client.get("/api/admin/participants", headers=bearer(token))
    assert everyone.status_code == 200, everyone.text
    assert everyone.json()["total"] == 2
    first = everyone.json()["items"][0]
    assert set(first) == {
        "id", "full_name", "phone", "email", "id_number", "birth_date", "unit_id", "group", "job", "created_at"
    }
    assert [p["phone"] for p in everyone.json()["items"]] == ["098****321", "091****678"]
    assert [p["id_number"] for p in everyone.json()["items"]] == [None, "0312******67"]
    assert "0912345678" not in everyone.text and "031203004567" not in everyone.text

    in_lc = await client.get("/api/admin/participants", params={"unit_id": str(lc)}, headers=bearer(token))
    assert [p["full_name"] for p in in_lc.json()["items"]] == ["Nguyễn Văn An"]
    by_name = await client.get("/api/admin/participants", params={"q": "tran thi"}, headers=bearer(token))
    assert [p["full_name"] for p in by_name.json()["items"]] == ["Trần Thị Bình"]
    page = await client.get("/api/admin/participants", params={"limit": 1, "offset": 1}, headers=bearer(token))
    assert (page.json()["total"], len(page.json()["items"])) == (2, 1)


async def test_admin_participants_need_staff(client: httpx.AsyncClient, make_token: Callable[..., str]) -> None:
    assert (await client.get("/api/admin/participants")).status_code == 401
    participant = await client.get("/api/admin/participants", headers=bearer(make_token("participant")))
    assert participant.status_code == 403
    # Coordinators are let in, scoped to their unit's subtree (test_api_admin.py).


# --- production safety ------------------------------------------------------------------

async def test_production_refuses_to_start_with_the_development_admin(
    registration_env: dict[str, str], pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_organiser(pool, login="admin", password="admin")
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(RuntimeError, match="development organiser admin/admin exists"):
        async with running_app(create_app()):
            pass

    # Not in development: there it is the documented demo account.
    monkeypatch.setenv("APP_ENV", "development")
    async with running_app(create_app()) as client:
        assert await token_for(client, "admin", "admin")

    # Once its password is changed, production starts.
    settings = RegistrationSettings(app_env="production")
    new_hash = await Passwords.from_settings(settings).hash("a long new secret")
    assert await store.set_staff_password_hash(pool, "admin", new_hash)
    async with running_app(create_app(settings)) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert await token_for(client, "admin", "a long new secret")
