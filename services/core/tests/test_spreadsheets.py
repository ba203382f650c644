"""The one writer of every export: no cell a spreadsheet would evaluate, whatever
text people typed; numbers stay numbers."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from services.core.spreadsheets import Sheet, TableExport, csv_bytes, csv_cell, xlsx_bytes
from services.core.tables import read_csv_table, read_xlsx_table


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+84912", "'+84912"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("Giáo viên", "Giáo viên"),
        (None, ""),
        (date(1990, 1, 2), "1990-01-02"),
        ("0912345678", "0912345678"),
        (-5, "-5"),  # a number, which no spreadsheet runs
        (12.5, "12.5"),
    ],
)
def test_csv_cells_are_never_formulas(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


ROWS = [
    (uuid.UUID(int=1), "Nguyễn Văn An", date(1990, 1, 2), "0912345678", None, "=1+1", -3,
     datetime(2026, 3, 1, 8, 0, tzinfo=UTC)),
]
HEADER = ("id", "full_name", "birth_date", "phone", "email", "job", "score", "registered_at")


def test_a_csv_export_has_a_bom_a_header_and_every_row() -> None:
    out = io.BytesIO()
    export = TableExport("csv", out, HEADER)
    export.add(ROWS)
    export.add(ROWS)
    export.finish()
    assert export.rows == 2 and not out.closed  # the caller streams it afterwards
    assert out.getvalue().startswith(b"\xef\xbb\xbf")
    table = read_csv_table(out.getvalue())
    assert table.header == list(HEADER)
    assert table.rows[0] == ["00000000-0000-0000-0000-000000000001", "Nguyễn Văn An", "1990-01-02", "0912345678",
                             "", "'=1+1", "-3", "2026-03-01T08:00:00+00:00"]


def test_an_xlsx_export_has_no_formula_and_keeps_numbers_and_leading_zeros() -> None:
    out = io.BytesIO()
    export = TableExport("xlsx", out, HEADER, sheet_title="participants")
    export.add(ROWS)
    export.finish()
    sheet = load_workbook(io.BytesIO(out.getvalue())).worksheets[0]
    assert sheet.title == "participants"
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    assert sheet["D2"].value == "0912345678" and sheet["F2"].value == "'=1+1" and sheet["G2"].value == -3
    assert read_xlsx_table(out.getvalue()).rows[0][5] == "'=1+1"


def test_a_workbook_of_sheets_neutralises_headers_titles_and_labels() -> None:
    content = xlsx_bytes([
        Sheet("Tổng hợp", [("Cuộc thi", '=HYPERLINK("http://x","Bấm")'), ("Số người", 12)],
              labels_in_first_column=True),
        Sheet("Đơn vị", [("-P01", "@Phường", 38)], header=("Mã", "=Tên", "Biên chế")),
    ])
    book = load_workbook(io.BytesIO(content))
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert all(cell.data_type != "f" for cell in cells)
    assert book["Tổng hợp"]["B1"].value == '\'=HYPERLINK("http://x","Bấm")'
    assert book["Tổng hợp"]["A1"].font.b and book["Đơn vị"]["B1"].value == "'=Tên"
    assert [c.value for c in book["Đơn vị"][2]] == ["'-P01", "'@Phường", 38]


@given(st.lists(st.text(max_size=10), min_size=1, max_size=5))
def test_no_text_comes_back_as_a_formula(texts: list[str]) -> None:
    import csv

    header = [f"c{i}" for i in range(len(texts))]
    book = load_workbook(io.BytesIO(xlsx_bytes([Sheet("s", [texts], header=header)])))
    assert all(cell.data_type != "f" for row in book.worksheets[0].iter_rows() for cell in row)
    [_, cells] = list(csv.reader(io.StringIO(csv_bytes(header, [texts]).decode("utf-8-sig"), newline="")))
    for text, cell in zip(texts, cells, strict=True):
        assert cell == ("'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text)
