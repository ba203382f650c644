"""Organisers' and coordinators' routes through HTTP, in-process against the real
PostgreSQL and Redis: staff, coordinator scoping, audited exports, flags, entry links and
banner, and uploads refused before they are read."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from openpyxl import load_workbook
from redis.asyncio import Redis

from services.core import events
from services.core.auth import TokenVerifier
from services.core.tables import XLSX_MEDIA_TYPE, read_csv_table
from services.registration import domain, store
from services.registration.tests.conftest import (
    HEADER,
    PASSWORD,
    PUBLIC_BASE_URL,
    bearer,
    make_organiser,
    problem_fields,
    sign_up,
    token_for,
)


@pytest.fixture
async def organiser(client: httpx.AsyncClient, pool: asyncpg.Pool) -> str:
    await make_organiser(pool)
    return await token_for(client, "btc", PASSWORD)


async def add_coordinator(client: httpx.AsyncClient, organiser: str, unit_id: uuid.UUID, login: str) -> str:
    created = await client.post("/api/admin/staff", headers=bearer(organiser), json={
        "login": login, "full_name": "Trần Văn Điều", "role": "coordinator", "unit_id": str(unit_id),
        "phone": "0987 654 321", "password": PASSWORD,
    })
    assert created.status_code == 201, created.text
    return await token_for(client, login, PASSWORD)


async def populate(client: httpx.AsyncClient, units: dict[str, store.Unit]) -> None:
    """Three participants: two in Lê Chân (a ward and a school), one in Hồng Bàng."""
    people = [
        ("LC-P01", "Nguyễn Văn An", "0912345671", "031203004561"),
        ("LC-THCS1", "Lê Thị Cúc", "0912345672", None),
        ("HB-P01", "Trần Văn Bình", "0912345673", "031203004563"),
    ]
    for code, name, phone, id_number in people:
        response = await client.post("/api/auth/register", json=sign_up(
            units[code].id, full_name=name, phone=phone, email=None, id_number=id_number
        ))
        assert response.status_code == 201, response.text


# --- staff ------------------------------------------------------------------------------

async def test_organiser_creates_and_lists_staff(
    client: httpx.AsyncClient, pool: asyncpg.Pool, organiser: str, demo_units: dict[str, store.Unit],
    token_verifier: TokenVerifier,
) -> None:
    unit = demo_units["LC"]
    token = await add_coordinator(client, organiser, unit.id, "DieuPhoi.LC")
    principal = token_verifier.verify(token)
    assert (principal.role, principal.unit_id, principal.name) == ("coordinator", unit.id, "Trần Văn Điều")

    [changed] = [e for e in await store.outbox_events(pool, events.STAFF_CHANGED) if e.data["login"] == "dieuphoi.lc"]
    assert changed.data == {
        "staff_id": str(principal.id), "login": "dieuphoi.lc", "full_name": "Trần Văn Điều", "role": "coordinator",
        "unit_id": str(unit.id), "email": None, "phone": "0987654321",
    }

    listed = await client.get("/api/admin/staff", headers=bearer(organiser))
    assert listed.status_code == 200
    by_login = {s["login"]: s for s in listed.json()}
    assert set(by_login) == {"btc", "dieuphoi.lc"}
    assert by_login["dieuphoi.lc"]["phone"] == "098****321"
    assert by_login["dieuphoi.lc"]["unit_id"] == str(unit.id)

    again = await client.post("/api/admin/staff", headers=bearer(organiser), json={
        "login": "dieuphoi.lc", "full_name": "Người khác", "role": "organiser", "password": PASSWORD,
    })
    assert again.status_code == 409 and again.json()["field"] == "login"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "coordinator"}, "unit_id"),
        ({"role": "coordinator", "unit_id": str(uuid.uuid4())}, "unit_id"),
        ({"login": "1abc"}, "login"),
        ({"role": "participant"}, "role"),
        ({"password": "short"}, "password"),
        ({"phone": "0212345678"}, "phone"),
    ],
)
async def test_staff_fields_are_validated(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit], body: dict[str, str], field: str
) -> None:
    base = {"login": "moi", "full_name": "Cán bộ Mới", "role": "organiser", "password": PASSWORD}
    response = await client.post("/api/admin/staff", headers=bearer(organiser), json={**base, **body})
    assert response.status_code == 422, response.text
    assert problem_fields(response) == [field]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/admin/staff"),
        ("POST", "/api/admin/staff"),
        ("GET", "/api/admin/participants/export"),
        ("GET", "/api/admin/audit"),
        ("POST", "/api/admin/units/import"),
    ],
)
async def test_organiser_only_routes(
    client: httpx.AsyncClient, make_token: Callable[..., str], demo_units: dict[str, store.Unit], method: str,
    path: str,
) -> None:
    assert (await client.request(method, path)).status_code == 401
    coordinator = make_token("coordinator", unit_id=demo_units["LC"].id)
    assert (await client.request(method, path, headers=bearer(coordinator))).status_code == 403
    assert (await client.request(method, path, headers=bearer(make_token("participant")))).status_code == 403


# --- coordinators see their subtree -----------------------------------------------------

async def test_coordinator_sees_only_the_unit_subtree(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit]
) -> None:
    await populate(client, demo_units)
    coordinator = await add_coordinator(client, organiser, demo_units["LC"].id, "dp.lc")

    mine = await client.get("/api/admin/participants", headers=bearer(coordinator))
    assert mine.status_code == 200, mine.text
    assert mine.json()["total"] == 2
    assert sorted(p["full_name"] for p in mine.json()["items"]) == ["Lê Thị Cúc", "Nguyễn Văn An"]
    outside = await client.get(
        "/api/admin/participants", params={"unit_id": str(demo_units["HB-P01"].id)}, headers=bearer(coordinator)
    )
    assert outside.json() == {"total": 0, "items": []}
    inside = await client.get(
        "/api/admin/participants", params={"unit_id": str(demo_units["LC-THCS1"].id)}, headers=bearer(coordinator)
    )
    assert [p["full_name"] for p in inside.json()["items"]] == ["Lê Thị Cúc"]
    searched = await client.get("/api/admin/participants", params={"q": "tran van"}, headers=bearer(coordinator))
    assert searched.json()["total"] == 0

    everyone = await client.get("/api/admin/participants", headers=bearer(organiser))
    assert everyone.json()["total"] == 3

    ward = await add_coordinator(client, organiser, demo_units["LC-P01"].id, "dp.lcp01")
    only_ward = await client.get("/api/admin/participants", headers=bearer(ward))
    assert [p["full_name"] for p in only_ward.json()["items"]] == ["Nguyễn Văn An"]


async def found_names(client: httpx.AsyncClient, token: str, q: str) -> list[str]:
    response = await client.get("/api/admin/participants", params={"q": q}, headers=bearer(token))
    assert response.status_code == 200, response.text
    return sorted(p["full_name"] for p in response.json()["items"])


@pytest.mark.parametrize("role", ["coordinator", "organiser"])
async def test_masked_numbers_are_found_by_the_whole_number_only(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit], role: str
) -> None:
    """The list shows phone and ID numbers masked ('091****671'); adding digits to `q` one
    at a time must not rebuild them, so a partial number matches nobody by number."""
    await populate(client, demo_units)
    token = organiser if role == "organiser" else await add_coordinator(client, organiser, demo_units["LC"].id, "dp")
    assert (await found_names(client, token, "0912345671")) == ["Nguyễn Văn An"]
    assert (await found_names(client, token, "+84 912 345 671")) == ["Nguyễn Văn An"]
    assert (await found_names(client, token, "0312 0300 4561")) == ["Nguyễn Văn An"]  # the whole CCCD
    for partial in ("091", "0912", "09123456", "091234567", "912345671", "4567", "031203004", "03120300456"):
        assert (await found_names(client, token, partial)) == [], partial
    # Names are found as before.
    assert (await found_names(client, token, "nguyen van")) == ["Nguyễn Văn An"]


async def test_whole_number_searches_are_paced_per_staff_member(
    app_with: Any, pool: asyncpg.Pool, redis: Redis, demo_units: dict[str, store.Unit]
) -> None:
    """Four masked digits are 10,000 whole numbers to try: at this pace, 100 hours."""
    async with app_with(NUMBER_SEARCHES_PER_HOUR="2") as client:
        await populate(client, demo_units)
        await make_organiser(pool)
        organiser = await token_for(client, "btc", PASSWORD)
        coordinator = await add_coordinator(client, organiser, demo_units["LC"].id, "dp")

        async def search(token: str, q: str) -> httpx.Response:
            return await client.get("/api/admin/participants", params={"q": q}, headers=bearer(token))

        assert (await search(coordinator, "0912345670")).status_code == 200
        assert (await search(coordinator, "031203004561")).status_code == 200
        refused = await search(coordinator, "0912345679")
        assert refused.status_code == 429 and refused.json()["code"] == "number_search_throttled"
        assert 3500 < int(refused.headers["retry-after"]) <= 3600
        assert "Thử lại sau" in refused.json()["detail"]
        assert (await search(coordinator, "nguyen")).status_code == 200  # names as before
        assert (await search(organiser, "0912345679")).status_code == 200  # each their own hour
        await redis.delete(*[key async for key in redis.scan_iter(match="registration:limit:number_search:*")])
        assert (await search(coordinator, "0912345679")).status_code == 200


async def test_searches_are_audited(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit]
) -> None:
    await populate(client, demo_units)
    coordinator = await add_coordinator(client, organiser, demo_units["LC"].id, "dp.lc")
    await found_names(client, coordinator, "0912")
    await found_names(client, coordinator, "0912345671")
    lc = str(demo_units["LC"].id)
    assert (await client.get("/api/admin/participants", params={"q": "van", "unit_id": lc, "offset": 1},
                             headers=bearer(organiser))).status_code == 200
    # Browsing without a search is not a search.
    assert (await client.get("/api/admin/participants", headers=bearer(coordinator))).status_code == 200

    audit = (await client.get("/api/admin/audit", headers=bearer(organiser))).json()
    assert audit["total"] == 3
    newest_first = [(e["actor_name"], e["actor_role"], e["action"], e["filter"], e["row_count"])
                    for e in audit["items"]]
    assert newest_first == [
        ("Ban Tổ chức", "organiser", "participants.search",
         {"q": "van", "unit_id": lc, "limit": 50, "offset": 1}, 0),  # the rows shown
        ("Trần Văn Điều", "coordinator", "participants.search",
         {"q": "0912345671", "unit_id": None, "limit": 50, "offset": 0}, 1),
        ("Trần Văn Điều", "coordinator", "participants.search",
         {"q": "0912", "unit_id": None, "limit": 50, "offset": 0}, 0),
    ]


async def test_the_audited_export_still_finds_by_part_of_a_number(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit]
) -> None:
    """Organisers see whole numbers in the export, so a partial number there rebuilds nothing."""
    await populate(client, demo_units)
    response = await client.get(
        "/api/admin/participants/export", params={"format": "csv", "q": "345673"}, headers=bearer(organiser)
    )
    assert [row[1] for row in read_csv_table(response.content).rows] == ["Trần Văn Bình"]


async def test_coordinator_without_a_unit_sees_nothing(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    no_unit = make_token("coordinator")
    for path in ("/api/admin/participants", "/api/admin/flags", f"/api/admin/units/{uuid.uuid4()}/invite-stats"):
        assert (await client.get(path, headers=bearer(no_unit))).status_code == 403, path


# --- exports and audit ------------------------------------------------------------------

async def test_export_csv_has_full_data_and_is_audited(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit]
) -> None:
    await populate(client, demo_units)
    response = await client.get(
        "/api/admin/participants/export", params={"format": "csv", "q": "van"}, headers=bearer(organiser)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="participants-')
    assert response.headers["cache-control"] == "no-store"
    table = read_csv_table(response.content)
    assert table.header == list(domain.PARTICIPANT_EXPORT_COLUMNS)
    by_name = {row[1]: row for row in table.rows}
    assert set(by_name) == {"Nguyễn Văn An", "Trần Văn Bình"}
    an = by_name["Nguyễn Văn An"]
    assert (an[3], an[5], an[6], an[7]) == ("0912345671", "031203004561", "LC-P01", "Phường Lê Chân")

    audit = await client.get("/api/admin/audit", headers=bearer(organiser))
    assert audit.status_code == 200
    assert audit.json()["total"] == 1
    [entry] = audit.json()["items"]
    assert (entry["actor_name"], entry["actor_role"], entry["action"], entry["row_count"]) == (
        "Ban Tổ chức", "organiser", "participants.export", 2
    )
    assert entry["filter"] == {"format": "csv", "unit_id": None, "q": "van"}


async def test_export_xlsx_keeps_phone_numbers_as_text(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit]
) -> None:
    await populate(client, demo_units)
    unit_id = demo_units["HB-P01"].id
    response = await client.get(
        "/api/admin/participants/export", params={"format": "xlsx", "unit_id": str(unit_id)},
        headers=bearer(organiser),
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == XLSX_MEDIA_TYPE
    sheet = load_workbook(io.BytesIO(response.content), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == domain.PARTICIPANT_EXPORT_COLUMNS
    assert [(r[1], r[3], r[5]) for r in rows[1:]] == [("Trần Văn Bình", "0912345673", "031203004563")]

    [entry] = (await client.get("/api/admin/audit", headers=bearer(organiser))).json()["items"]
    assert entry["filter"] == {"format": "xlsx", "unit_id": str(unit_id), "q": None}
    assert entry["row_count"] == 1
    bad = await client.get("/api/admin/participants/export", params={"format": "pdf"}, headers=bearer(organiser))
    assert bad.status_code == 422 and problem_fields(bad) == ["format"]


# --- flags ------------------------------------------------------------------------------

async def test_flags_duplicates_and_bursts(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit]
) -> None:
    lc, hb = demo_units["LC-P01"].id, demo_units["HB-P01"].id
    twins = [("Nguyễn Văn An", "0912345601"), ("nguyen van  AN", "0912345602")]
    for name, phone in twins:
        await client.post("/api/auth/register", json=sign_up(
            lc, full_name=name, phone=phone, email=None, id_number=None, birth_date="1990-01-02"
        ), headers={"X-Real-IP": f"198.51.100.{phone[-1]}"})
    # Five accounts from one address within seconds, in two districts.
    for i in range(5):
        response = await client.post("/api/auth/register", json=sign_up(
            lc if i < 3 else hb, full_name=f"Người Thứ {i}", phone=f"091234570{i}", email=None, id_number=None,
        ), headers={"X-Real-IP": "203.0.113.9", "X-Device-Id": "device-flag-01"})
        assert response.status_code == 201

    flags = await client.get("/api/admin/flags", headers=bearer(organiser))
    assert flags.status_code == 200, flags.text
    [duplicate] = flags.json()["duplicates"]
    assert (duplicate["unit_id"], duplicate["birth_date"]) == (str(lc), "1990-01-02")
    assert [p["phone"] for p in duplicate["participants"]] == ["091****601", "091****602"]
    bursts = {(b["kind"], b["source"]): b for b in flags.json()["bursts"]}
    assert set(bursts) == {("ip", "203.0.113.9"), ("device", "device-flag-01")}
    assert bursts[("ip", "203.0.113.9")]["accounts"] == 5
    assert "0912345700" not in flags.text  # masked here too

    coordinator = await add_coordinator(client, organiser, demo_units["HB"].id, "dp.hb")
    theirs = await client.get("/api/admin/flags", headers=bearer(coordinator))
    assert theirs.json() == {"duplicates": [], "bursts": []}  # two of the five in HB: no burst there
    lc_coordinator = await add_coordinator(client, organiser, demo_units["LC"].id, "dp.lc")
    assert len((await client.get("/api/admin/flags", headers=bearer(lc_coordinator))).json()["duplicates"]) == 1


# --- entry links: unit by code, banner, counts ------------------------------------------

async def test_unit_by_code_for_the_sign_up_page(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    unit = demo_units["LC-P01"]
    found = await client.get("/api/units/by-code/LC-P01")
    assert found.status_code == 200
    assert found.json() == {
        "id": str(unit.id), "code": "LC-P01", "name": "Phường Lê Chân", "parent_id": str(demo_units["LC"].id),
        "block": "commune", "headcount": 38,
    }
    assert (await client.get("/api/units/by-code/NOPE")).status_code == 404
    assert (await client.get("/api/units/by-code/banner")).status_code == 404  # not mistaken for a unit id


async def test_banner_snippet(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    unit = demo_units["LC-P01"]
    response = await client.get(f"/api/units/{unit.id}/banner")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert f'href="{PUBLIC_BASE_URL}/dang-ky?unit=LC-P01"' in html
    assert f'<img src="{PUBLIC_BASE_URL}/api/units/{unit.id}/invite.png"' in html
    assert "Phường Lê Chân" in html and "Quét mã QR" in html
    assert (await client.get(f"/api/units/{uuid.uuid4()}/banner")).status_code == 404


async def test_sign_ups_are_counted_per_entry_link(
    client: httpx.AsyncClient, organiser: str, demo_units: dict[str, store.Unit]
) -> None:
    lc = demo_units["LC-P01"]
    for i, entry in enumerate(["LC-P01", "LC-P01", None, "UNKNOWN"]):
        body = sign_up(lc.id, phone=f"091234560{i}", email=None, id_number=None)
        if entry:
            body["entry_code"] = entry
        assert (await client.post("/api/auth/register", json=body)).status_code == 201
    stats = await client.get(f"/api/admin/units/{lc.id}/invite-stats", headers=bearer(organiser))
    assert stats.status_code == 200
    assert stats.json() == {
        "unit_id": str(lc.id), "code": "LC-P01", "link": f"{PUBLIC_BASE_URL}/dang-ky?unit=LC-P01", "signups": 2,
    }
    coordinator = await add_coordinator(client, organiser, demo_units["HB"].id, "dp.hb")
    assert (await client.get(f"/api/admin/units/{lc.id}/invite-stats", headers=bearer(coordinator))).status_code == 404
    hb_ward = demo_units["HB-P01"].id
    assert (await client.get(
        f"/api/admin/units/{hb_ward}/invite-stats", headers=bearer(coordinator)
    )).json()["signups"] == 0
    assert (await client.get(
        f"/api/admin/units/{uuid.uuid4()}/invite-stats", headers=bearer(organiser)
    )).status_code == 404


# --- uploads refused before they are read -----------------------------------------------

class CountingBody:
    """A request body that records how much of it the server pulled."""

    def __init__(self, first: bytes, filler: int, chunk: int = 64 * 1024) -> None:
        self.first, self.filler, self.chunk, self.sent = first, filler, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        self.sent += len(self.first)
        left = self.filler
        while left > 0:
            piece = b"x" * min(self.chunk, left)
            left -= len(piece)
            self.sent += len(piece)
            yield piece


def multipart_start(filename: str, media_type: str) -> bytes:
    return (
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename.encode()
        + b"\"\r\nContent-Type: " + media_type.encode() + b"\r\n\r\n"
    )


async def test_declared_oversize_upload_is_refused_unread(
    client: httpx.AsyncClient, organiser: str, pool: asyncpg.Pool
) -> None:
    body = CountingBody(multipart_start("units.csv", "text/csv"), filler=30 * 1024 * 1024)
    response = await client.post(
        "/api/admin/units/import", content=body,
        headers={**bearer(organiser), "Content-Type": "multipart/form-data; boundary=B",
                 "Content-Length": str(30 * 1024 * 1024 + 200)},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert body.sent <= 64 * 1024 + 200  # at most the first chunk the server was handed


async def test_undeclared_oversize_upload_stops_at_the_limit(
    client: httpx.AsyncClient, organiser: str, pool: asyncpg.Pool
) -> None:
    body = CountingBody(multipart_start("units.csv", "text/csv"), filler=30 * 1024 * 1024)
    response = await client.post(  # streamed without Content-Length (chunked)
        "/api/admin/units/import", content=body,
        headers={**bearer(organiser), "Content-Type": "multipart/form-data; boundary=B"},
    )
    assert response.status_code == 413
    assert body.sent <= 10 * 1024 * 1024 + 128 * 1024
    assert await store.all_units(pool) == []


async def test_wrong_file_type_is_refused_from_its_part_headers(
    client: httpx.AsyncClient, organiser: str
) -> None:
    body = CountingBody(multipart_start("units.pdf", "application/pdf"), filler=5 * 1024 * 1024)
    response = await client.post(
        "/api/admin/units/import", content=body,
        headers={**bearer(organiser), "Content-Type": "multipart/form-data; boundary=B"},
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_file_type"
    assert body.sent <= 64 * 1024 + 200


async def test_upload_other_fields_are_ignored_and_a_missing_file_is_named(
    client: httpx.AsyncClient, organiser: str, pool: asyncpg.Pool
) -> None:
    csv = (HEADER + "\nTP,Thành phố,,city,0\n").encode()
    response = await client.post(
        "/api/admin/units/import", headers=bearer(organiser),
        data={"note": "lần 1"}, files={"file": ("đơn vị.csv", csv, "text/csv")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1
    only_note = await client.post("/api/admin/units/import", headers=bearer(organiser), files={"note": (None, "x")})
    assert only_note.status_code == 422 and problem_fields(only_note) == ["file"]
    not_multipart = await client.post("/api/admin/units/import", headers=bearer(organiser), json={"file": "x"})
    assert not_multipart.status_code == 422 and problem_fields(not_multipart) == ["file"]
