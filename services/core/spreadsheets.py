"""Every export organisers download (CSV or XLSX) is written here, and only here.

Exports carry text other people typed: a participant's job, a unit's name, a contest's
title. A cell that starts with `=`, `+`, `-`, `@` (or a tab or carriage return) is a
formula to Excel and LibreOffice, so `=HYPERLINK(...)` as a contest title came out as a
live formula in the participation report (CSV injection). Each text cell is written
with a leading apostrophe when it starts so, the neutralisation OWASP recommends; in
XLSX it is also written as a string cell, never a formula. Numbers and dates stay
numbers and dates (a moment in time as ISO 8601 text, with its zone).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Literal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from services.core.tables import XLSX_MEDIA_TYPE

SpreadsheetKind = Literal["csv", "xlsx"]
MEDIA_TYPES: dict[SpreadsheetKind, str] = {"csv": "text/csv; charset=utf-8", "xlsx": XLSX_MEDIA_TYPE}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# So that Excel reads UTF-8 (Vietnamese) CSV as UTF-8.
UTF8_BOM = b"\xef\xbb\xbf"

# What XML 1.0 cannot hold (as openpyxl's ILLEGAL_CHARACTERS_RE): C0 controls but tab,
# newline and carriage return.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def neutralised_text(text: str) -> str:
    """Text that no spreadsheet evaluates."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)  # a number, not text: "-5" is minus five to a spreadsheet, not a formula
    if isinstance(value, date | datetime):
        return value.isoformat()
    return neutralised_text(str(value))


def xlsx_cell(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | Decimal):
        return value
    if isinstance(value, datetime):
        return value.isoformat()  # with its zone, which a spreadsheet's date cell cannot hold
    if isinstance(value, date):
        return value
    # XML cannot carry most control characters, and openpyxl raises on them.
    return neutralised_text(_XML_ILLEGAL.sub("", str(value)))


class TableExport:
    """One table written to a binary file in chunks, CSV or XLSX: a city has hundreds of
    thousands of participants, and the rows never all sit in memory at once."""

    def __init__(self, kind: SpreadsheetKind, out: IO[bytes], header: Sequence[str], *, sheet_title: str = "") -> None:
        self.kind, self._out, self.rows = kind, out, 0
        if kind == "csv":
            out.write(UTF8_BOM)
            self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            self._csv = csv.writer(self._text, lineterminator="\r\n")
            self._csv.writerow([csv_cell(name) for name in header])
        else:
            self._workbook = Workbook(write_only=True)
            self._sheet = self._workbook.create_sheet(sheet_title or "Sheet1")
            self._sheet.append([xlsx_cell(name) for name in header])

    def add(self, rows: Iterable[Sequence[object]]) -> None:
        for row in rows:
            if self.kind == "csv":
                self._csv.writerow([csv_cell(value) for value in row])
            else:
                self._sheet.append([xlsx_cell(value) for value in row])
            self.rows += 1

    def finish(self) -> None:
        if self.kind == "csv":
            self._text.flush()
            self._text.detach()  # leave the underlying file open for the caller
        else:
            self._workbook.save(self._out)


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    out = io.BytesIO()
    export = TableExport("csv", out, header)
    export.add(rows)
    export.finish()
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class Sheet:
    title: str
    rows: Sequence[Sequence[object]]
    header: Sequence[str] = ()
    # A sheet of "label, value" lines: the labels in bold.
    labels_in_first_column: bool = False
    column_widths: Sequence[int] = field(default=())


def xlsx_bytes(sheets: Sequence[Sheet]) -> bytes:
    """A workbook of several sheets, headers in bold."""
    book = Workbook(write_only=True)
    bold = Font(bold=True)
    for spec in sheets:
        sheet = book.create_sheet(spec.title)
        for index, width in enumerate(spec.column_widths):
            sheet.column_dimensions[chr(ord("A") + index)].width = width

        def styled(value: object, sheet: object = sheet) -> WriteOnlyCell:
            cell = WriteOnlyCell(sheet, value=xlsx_cell(value))
            cell.font = bold
            return cell

        if spec.header:
            sheet.append([styled(name) for name in spec.header])
        for row in spec.rows:
            cells = [xlsx_cell(value) for value in row]
            if spec.labels_in_first_column and row:
                cells[0] = styled(row[0])
            sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
