"""Organisers' file uploads (question banks, units), read from the request stream with
limits checked before the file is read: the declared Content-Length first, then the multipart part's filename and
content type as soon as its headers arrive, then its size as it streams. A 50 MB file or
a PDF is refused after its first chunk, never spooled to disk and parsed.
(The gateway's `client_max_body_size 10m` is the first fence; this is the second, for
whoever reaches the service directly.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from services.core.problems import Problem
from services.core.tables import MAX_TABLE_ROWS, Table, UnreadableTable, read_table_in_thread, table_kind

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Room for the multipart envelope (boundaries, part headers, small fields) around the file.
ENVELOPE_BYTES = 64 * 1024


class UploadRefused(Exception):
    """status 413 (too large), 415 (not CSV/XLSX) or 422 (no file / not multipart)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or str(status))
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str | None
    content_type: str | None
    content: bytes


async def read_table_upload(
    *, content_type: str | None, content_length: str | None, body: AsyncIterator[bytes], field: str, max_bytes: int
) -> Upload:
    """The CSV or XLSX file in multipart field `field`, or UploadRefused."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadRefused(422, "Content-Length không hợp lệ.") from None
        if declared > max_bytes + ENVELOPE_BYTES:
            raise UploadRefused(413)
    media, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        raise UploadRefused(422, "Thiếu tệp tải lên.")

    reader = _PartReader(field, max_bytes)
    parser = MultipartParser(boundary, reader.callbacks())
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > max_bytes + ENVELOPE_BYTES:
                raise UploadRefused(413)
            parser.write(chunk)
            if reader.done:
                break  # the file is complete; whatever follows it is not needed
        else:
            parser.finalize()
    except MultipartParseError:
        raise UploadRefused(422, "Dữ liệu tải lên không đúng định dạng multipart.") from None
    if reader.file is None:
        raise UploadRefused(422, "Thiếu tệp tải lên.")
    return reader.file


class _PartReader:
    def __init__(self, field: str, max_bytes: int) -> None:
        self._field, self._max_bytes = field, max_bytes
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._wanted = False
        self._meta: tuple[str | None, str | None] = (None, None)
        self._chunks: list[bytes] = []
        self._size = 0
        self.file: Upload | None = None
        self.done = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._wanted, self._chunks, self._size = {}, False, [], 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, disposition = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition.get(b"name", b"").decode("utf-8", "replace") != self._field or self.file is not None:
            return
        raw_name = disposition.get(b"filename")
        filename = raw_name.decode("utf-8", "replace") if raw_name is not None else None
        content_type = self._headers.get(b"content-type", b"").decode("latin-1") or None
        # Refused here, before a byte of the file is read.
        if table_kind(filename, content_type) is None:
            raise UploadRefused(415)
        self._wanted, self._meta = True, (filename, content_type)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._wanted:
            return
        self._size += end - start
        if self._size > self._max_bytes:
            raise UploadRefused(413)
        self._chunks.append(data[start:end])

    def _part_end(self) -> None:
        if self._wanted:
            self.file = Upload(self._meta[0], self._meta[1], b"".join(self._chunks))
            self._wanted, self._chunks, self.done = False, [], True


async def read_uploaded_table(
    request: Request, *, max_bytes: int, max_rows: int = MAX_TABLE_ROWS, unsupported_code: str = "unsupported_file_type"
) -> Table:
    """The table in the request's multipart field `file`, read off the event loop, or
    the problem that says why not: 413 too large, 415 not CSV/XLSX (`unsupported_code`:
    quiz and registration have each published their own), 422 no file or an unreadable
    one (naming the row where it can)."""
    try:
        upload = await read_table_upload(
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            body=request.stream(),
            field="file",
            max_bytes=max_bytes,
        )
    except UploadRefused as refused:
        if refused.status == 413:
            raise Problem(413, "payload_too_large") from None
        if refused.status == 415:
            raise Problem(415, unsupported_code) from None
        raise Problem(422, "validation", errors=[{"field": "file", "message": refused.message}]) from None
    try:
        return await read_table_in_thread(upload.content, max_rows=max_rows)
    except UnreadableTable as unreadable:
        raise Problem(422, "unreadable_file", errors=[{"field": "file", "message": str(unreadable)}]) from None
