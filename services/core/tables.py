"""Organisers' tables (question banks, units, rosters): CSV or XLSX, read the same way
for every upload.

A file is read row by row and refused as soon as it passes the row cap: a 43 KB XLSX
can unpack to 300,000 rows, and read whole it held a service's event loop for 27 s.
Callers on the event loop use `read_table_in_thread`: parsing is CPU work, and every
other request of the process waits while the loop does it.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

# Imported with this module, not on the first upload: importing openpyxl takes a few hundred
# milliseconds of unmarshalling that holds the interpreter, and in a worker thread it stalled
# every other request of the process meanwhile (loadtests/bench_imports.py).
from openpyxl import load_workbook
from openpyxl.worksheet._read_only import ReadOnlyWorksheet
from openpyxl.worksheet._reader import DATA_TAG, DIMENSION_TAG
from openpyxl.worksheet.dimensions import SheetDimension
from openpyxl.xml.functions import iterparse

MAX_TABLE_ROWS = 50_000
# Our files have at most a dozen columns; a row claiming 16,384 is not one of them.
MAX_TABLE_COLUMNS = 64
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# text/plain and application/vnd.ms-excel: what some browsers and systems call a .csv file.
_CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"})
_ZIP_MAGIC = b"PK\x03\x04"

TableKind = Literal["csv", "xlsx"]


@dataclass(frozen=True, slots=True)
class Table:
    """A header (lower case) and its data rows, every cell as trimmed text and no row
    ending in empty cells; data row i is the file's row i + 2, as a spreadsheet numbers it. Blank rows inside are kept
    (they hold the numbering); blank rows at the end are dropped."""

    header: list[str]
    rows: list[list[str]]

    def records(self) -> list[list[str]]:
        """The header and the rows, as the file has them."""
        return [self.header, *self.rows]


class UnsupportedTable(ValueError):
    """Neither CSV nor XLSX by its name or declared type."""


class UnreadableTable(ValueError):
    """Not a table we can read; the message is Vietnamese and names the row if it can."""


class TooManyRows(UnreadableTable):
    def __init__(self, max_rows: int) -> None:
        super().__init__(f"Tệp có quá nhiều dòng (tối đa {max_rows} dòng dữ liệu, kể cả dòng trống).")


def table_kind(filename: str | None, media_type: str | None) -> TableKind | None:
    """CSV or XLSX by the file's extension, else by its declared media type; None for
    anything else (old .xls included: openpyxl cannot read it). Checked before a byte of
    the file is read."""
    name = (filename or "").lower()
    extension = name.rsplit(".", 1)[1] if "." in name else ""
    if extension == "csv":
        return "csv"
    if extension == "xlsx":
        return "xlsx"
    if extension not in ("", "txt"):
        return None
    media = (media_type or "").split(";")[0].strip().lower()
    if media == XLSX_MEDIA_TYPE:
        return "xlsx"
    if media in _CSV_MEDIA_TYPES:
        return "csv"
    return None


def read_table(content: bytes, *, max_rows: int = MAX_TABLE_ROWS) -> Table:
    """An XLSX workbook's first sheet, or a UTF-8 CSV (comma, semicolon or tab), told
    apart by their content: a workbook saved as "bank.csv" is still read."""
    if content.startswith(_ZIP_MAGIC):
        return read_xlsx_table(content, max_rows=max_rows)
    return read_csv_table(content, max_rows=max_rows)


async def read_table_in_thread(content: bytes, *, max_rows: int = MAX_TABLE_ROWS) -> Table:
    """`read_table` off the event loop, so that the process goes on serving."""
    return await asyncio.to_thread(read_table, content, max_rows=max_rows)


def read_csv_table(content: bytes, *, max_rows: int = MAX_TABLE_ROWS) -> Table:
    try:
        text = content.decode("utf-8-sig")  # Excel writes a BOM before UTF-8 CSV
    except UnicodeDecodeError:
        raise UnreadableTable("Tệp CSV phải được lưu với mã hoá UTF-8.") from None
    if (nul := text.find("\x00")) >= 0:
        row = text.count("\n", 0, nul) + 1
        raise UnreadableTable(f"Dòng {row}: có ký tự không hợp lệ (NUL); tệp có phải là văn bản CSV không?")
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count) if first_line else ","
    try:
        return _capped_table(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), max_rows)
    except csv.Error as exc:
        raise UnreadableTable(f"Tệp CSV không đọc được: {exc}.") from None


def read_xlsx_table(content: bytes, *, max_rows: int = MAX_TABLE_ROWS) -> Table:
    # An upload can be any bytes; whatever openpyxl trips over means "not a workbook we read".
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:
        raise UnreadableTable("Tệp Excel (.xlsx) không đọc được.") from None
    try:
        sheet = workbook.worksheets[0]
        # max_col: a sheet may claim 16,384 columns, and each row would be padded to them.
        rows = ([_cell_text(value) for value in row]
                for row in sheet.iter_rows(max_col=MAX_TABLE_COLUMNS, values_only=True))
        return _capped_table(rows, max_rows)
    except UnreadableTable:
        raise
    except Exception:
        raise UnreadableTable("Tệp Excel (.xlsx) không đọc được.") from None
    finally:
        workbook.close()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 38 as 38.0
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# Blank rows a spreadsheet may carry after its data (formatting applied down a column);
# past the cap and these, a file is refused without reading further.
MAX_TRAILING_BLANK_ROWS = 1_000


def _capped_table(records: Iterable[Sequence[str]], max_rows: int) -> Table:
    """The header and at most `max_rows` rows; TooManyRows as soon as a row past them
    holds a value, or the blank rows after them go on and on."""
    lines: list[list[str]] = []
    filled = 0  # the lines up to the last one that holds a value
    for record in records:
        line = [cell.strip() for cell in record[:MAX_TABLE_COLUMNS]]
        while line and not line[-1]:
            line.pop()  # a workbook pads every row to its widest; a CSV row may end in commas
        lines.append(line)
        if line:
            filled = len(lines)
            if filled > max_rows + 1:
                raise TooManyRows(max_rows)
        elif len(lines) > max_rows + 1 + MAX_TRAILING_BLANK_ROWS:
            raise TooManyRows(max_rows)
    del lines[filled:]
    if not lines:
        raise UnreadableTable("Tệp không có dữ liệu.")
    header = [cell.lstrip("\ufeff").lower() for cell in lines[0]]
    return Table(header=header, rows=lines[1:])


def _size_sheets_from_their_header() -> None:
    """openpyxl's read-only sheet looks for its <dimension> element while opening the
    workbook, with iterparse's *end* events: when a sheet has none, it parses the whole
    sheet before the first row can be read (the 300,000-row file: 23 s). The element,
    when there is one, comes before <sheetData>; stop looking there. (openpyxl 3.1.5;
    the test with that file fails if a release changes this.)"""

    def get_size(sheet: ReadOnlyWorksheet) -> None:
        with sheet._get_source() as source:
            for _event, element in iterparse(source, events=("start",)):
                if element.tag == DATA_TAG:
                    return
                if element.tag == DIMENSION_TAG:
                    bounds = SheetDimension.from_tree(element).boundaries
                    sheet._min_column, sheet._min_row, sheet._max_column, sheet._max_row = bounds
                    return

    ReadOnlyWorksheet._get_size = get_size


_size_sheets_from_their_header()
