"""Organisers' tables read one way for every upload: CSV or XLSX, capped while streaming."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from services.core.tables import (
    XLSX_MEDIA_TYPE,
    Table,
    TooManyRows,
    UnreadableTable,
    read_csv_table,
    read_table,
    read_xlsx_table,
    table_kind,
)


def xlsx(rows: list[list[object]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    content = io.BytesIO()
    workbook.save(content)
    return content.getvalue()


def test_csv_with_bom_crlf_and_semicolons_is_read() -> None:
    table = read_csv_table("\ufeffCode;Name\r\nA;Phường Lê Chân, quận Lê Chân\r\n".encode())
    assert table == Table(header=["code", "name"], rows=[["A", "Phường Lê Chân, quận Lê Chân"]])
    assert read_csv_table(b"a\tb\n 1 \t2\n") == Table(header=["a", "b"], rows=[["1", "2"]])


def test_xlsx_is_read_like_csv_and_told_apart_by_content() -> None:
    content = xlsx([["code", "name", "headcount"], ["TP", "Thành phố", 0], ["P1", None, 38.0]])
    expected = Table(header=["code", "name", "headcount"], rows=[["TP", "Thành phố", "0"], ["P1", "", "38"]])
    assert read_xlsx_table(content) == expected
    assert read_table(content) == expected  # a workbook uploaded as "bank.csv" is still a workbook
    assert read_table(b"code,name\nTP,Thanh pho\n").rows == [["TP", "Thanh pho"]]


@pytest.mark.parametrize(("content", "says"), [
    ("code,name\nA,Phường\n".encode("utf-16"), "UTF-8"),
    (b"\n\n", "không có dữ liệu"),
    (b"PK\x03\x04 not really a zip", "Excel"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "UTF-8"),
    (b"code,name\nA,Ph\x00uong\nB,x\n", "Dòng 2"),
])
def test_what_is_not_a_table_is_unreadable_and_says_why(content: bytes, says: str) -> None:
    with pytest.raises(UnreadableTable, match=says):
        read_table(content)


@pytest.mark.parametrize("reader", ["csv", "xlsx"])
def test_the_row_cap_counts_data_rows_and_ignores_trailing_blank_ones(reader: str) -> None:
    rows: list[list[object]] = [["code"], *([f"U{i}"] for i in range(5))]

    def read(rows: list[list[object]], max_rows: int) -> Table:
        if reader == "xlsx":
            return read_table(xlsx(rows), max_rows=max_rows)
        return read_table(("\n".join(",".join(str(c) for c in r) for r in rows) + "\n").encode(), max_rows=max_rows)

    assert len(read(rows, max_rows=5).rows) == 5
    with pytest.raises(TooManyRows, match="tối đa 4"):
        read(rows, max_rows=4)
    # Blank rows after the data (formatting down a column) are not data.
    assert len(read([*rows, *([""] for _ in range(50))], max_rows=5).rows) == 5
    # A blank row inside the data keeps its place: row numbers are the spreadsheet's.
    assert read([["code"], ["A"], [""], ["B"]], max_rows=5).rows == [["A"], [], ["B"]]


def test_a_file_of_endless_rows_is_refused_without_reading_it_all() -> None:
    # Issue 11: 43 KB of XLSX unpacked to 300,000 rows; reading stops just past the cap.
    endless = ("code\n" + "U\n" * 300_000).encode()
    with pytest.raises(TooManyRows):
        read_table(endless, max_rows=1000)
    blank = ("code\nU\n" + ",\n" * 300_000).encode()
    with pytest.raises(TooManyRows):
        read_table(blank, max_rows=1000)


@pytest.mark.parametrize(
    ("filename", "media_type", "kind"),
    [
        ("units.csv", "text/csv", "csv"),
        ("UNITS.CSV", "application/vnd.ms-excel", "csv"),  # Windows browsers call CSV that
        ("units.xlsx", "application/octet-stream", "xlsx"),
        ("units", XLSX_MEDIA_TYPE, "xlsx"),
        ("units.txt", "text/plain", "csv"),
        ("units.xls", "application/vnd.ms-excel", None),
        ("units.pdf", "application/pdf", None),
        ("units", "application/octet-stream", None),
        (None, None, None),
    ],
)
def test_table_kind(filename: str | None, media_type: str | None, kind: str | None) -> None:
    assert table_kind(filename, media_type) == kind


# openpyxl writes a text starting with "=" as a formula, which has no value until Excel
# computes it: not a reader's case.
cells = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12).filter(
    lambda text: not text.startswith("=")
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(cells, min_size=3, max_size=3), min_size=1, max_size=8))
def test_csv_and_xlsx_of_the_same_cells_read_the_same(rows: list[list[str]]) -> None:
    import csv

    header = [["alpha", "beta", "gamma"]]
    text = io.StringIO()
    csv.writer(text).writerows(header + rows)
    from_csv = read_table(text.getvalue().encode())
    from_xlsx = read_table(xlsx(header + rows))  # type: ignore[arg-type]
    assert from_csv == from_xlsx
