"""Rules of deploy/nginx/hoithi.conf.template that nginx itself would not enforce.

nginx inherits `add_header` and `proxy_set_header` from the server only into a location
that sets none of its own: one `add_header` in a location silently drops every security
header there, one `proxy_set_header` drops X-Gateway-Key, X-Request-Start and X-Real-IP.
The HTTP tests check the locations that exist; this check catches the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "hoithi.conf.template"
INHERITED_ONLY_WHEN_ABSENT = {"add_header", "proxy_set_header", "proxy_hide_header"}


@dataclass(frozen=True)
class Directive:
    name: str
    blocks: tuple[str, ...]  # the headers of the enclosing blocks, outermost first
    line: int


def directives(text: str) -> list[Directive]:
    """Every directive with its enclosing blocks; quotes and comments understood."""
    found: list[Directive] = []
    blocks: list[str] = []
    statement, quote, line, i = "", "", 1, 0
    while i < len(text):
        char = text[i]
        if char == "\n":
            line += 1
        if quote:
            if char == "\\":
                statement += text[i:i + 2]
                i += 2
                continue
            if char == quote:
                quote = ""
            statement += char
        elif char in "'\"":
            quote = char
            statement += char
        elif char == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif char == "{":
            blocks.append(" ".join(statement.split()))
            statement = ""
        elif char == ";":
            words = statement.split()
            if words:
                found.append(Directive(words[0], tuple(blocks), line))
            statement = ""
        elif char == "}":
            blocks.pop()
            statement = ""
        else:
            statement += char
        i += 1
    assert not blocks, f"unclosed blocks: {blocks}"
    return found


def test_no_location_sets_headers_of_its_own() -> None:
    found = directives(TEMPLATE.read_text(encoding="utf-8"))
    assert any(d.name == "add_header" for d in found)  # the parser saw them at all
    offenders = [
        f"line {d.line}: {d.name} in `{d.blocks[-1]}`"
        for d in found
        if d.name in INHERITED_ONLY_WHEN_ABSENT and any(b.startswith("location") for b in d.blocks)
    ]
    assert offenders == []


def test_the_parser_sees_a_location_header() -> None:
    # The check above must be able to fail.
    text = "http { server { add_header A b always; location /x { add_header C 'd;{' ; } } }"
    names = [(d.name, d.blocks[-1]) for d in directives(text)]
    assert names == [("add_header", "server"), ("add_header", "location /x")]
