"""Refuse, at the door, text that PostgreSQL cannot store.

PostgreSQL's text types cannot hold U+0000: a NUL byte in a login, a search, a slug or a
name made the statement fail deep in a store function, and the participant got a 500.
Rather than trust every model and query parameter of every route to reject it, this
middleware looks once at what a request carries as text (path, query string, JSON body)
and answers 422 naming the field. The check costs one substring search per part; only a
request that contains an escaped NUL is parsed to find which field holds it.

Uploaded files are read by services/core/tables.py, which refuses NUL per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.problems import Problem, problem_response, wants_english

NUL = "\x00"
_JSON_NUL = b"\\u0000"


def nul_paths(value: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Dotted paths of every key or string holding a NUL in parsed JSON."""
    if isinstance(value, str):
        if NUL in value:
            yield ".".join(path) or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                yield ".".join((*path, key.replace(NUL, "\\u0000")))
            yield from nul_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_paths(item, (*path, str(index)))


def _query_fields_with_nul(query_string: bytes) -> list[str]:
    if b"%00" not in query_string and b"\x00" not in query_string:
        return []
    text = query_string.decode("latin-1")
    return list(dict.fromkeys(
        name.replace(NUL, "") or "query"
        for name, value in parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")
        if NUL in name or NUL in value
    ))


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class RefuseUnstorableInput:
    """Pure ASGI middleware: 422 for a NUL in the path, the query string or a JSON body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = _query_fields_with_nul(scope.get("query_string", b""))
        if NUL in scope.get("path", ""):
            fields.insert(0, "path")
        if fields:
            await self._refuse(scope, receive, send, fields)
            return
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return

        body, messages = await _read_body(receive)
        if _JSON_NUL in body:
            try:
                fields = list(dict.fromkeys(nul_paths(orjson.loads(body))))
            except orjson.JSONDecodeError:
                fields = []  # not JSON at all: the route answers 400 malformed_body
            if fields:
                await self._refuse(scope, receive, send, fields)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, fields: list[str]) -> None:
        request = Request(scope)
        english = wants_english(request)
        message = "Must not contain a NUL character (U+0000)." if english else "Không được chứa ký tự NUL (U+0000)."
        names = ", ".join(fields)
        detail = f"Invalid fields: {names}." if english else f"Trường không hợp lệ: {names}."
        problem = Problem(422, "validation", detail=detail, errors=[{"field": f, "message": message} for f in fields])
        await problem_response(request, problem)(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole body, and the messages that carried it, to hand on unchanged."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages
