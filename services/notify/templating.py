"""Message templates (Jinja2), loaded and checked once at start-up.

Layout of `templates_dir`: `<name>.subject.txt`, `<name>.txt` and `<name>.html` for the
default language (Vietnamese) at the top, and the same names under `<lang>/` for others
(`en/`). Every template is compiled with StrictUndefined (HTML autoescaped) and rendered
once with a sample of the context the domain builds for it, so a typo or a missing
variable stops the process at start-up instead of failing a winner's email later.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from services.notify import domain

DEFAULT_LANGUAGE = "vi"
PARTS = ("subject.txt", "txt", "html")


class TemplateCatalogError(Exception):
    """The templates folder is incomplete or a template does not compile or render."""


class TemplateRenderError(Exception):
    """A stored delivery cannot be rendered (unknown template, context missing a value)."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def sample_contexts() -> dict[str, dict[str, Any]]:
    """One context per template name, built by the same domain code as real deliveries."""
    announcement = domain.WinnersAnnouncement(
        event_id=uuid.UUID(int=1),
        event_type="winners.announced",
        round_id=uuid.UUID(int=2),
        contest_title="Tìm hiểu pháp luật",
        round_title="Tuần 1",
        winners=(),
    )
    winner = domain.Winner(participant_id=uuid.UUID(int=3), name="Nguyễn Văn A", rank=1, prize="Giải Nhất", correct=20)
    contact = domain.Contact(
        winner.participant_id, "participant", "Nguyễn Văn A", "a@example.com", None, datetime(2025, 1, 1, tzinfo=UTC)
    )
    return {domain.WINNER_TEMPLATE: domain.winner_context(announcement, winner, contact)}


class TemplateCatalog:
    def __init__(self, environments: Mapping[str, jinja2.Environment], names: frozenset[str]) -> None:
        self._environments = dict(environments)
        self.names = names

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self._environments)

    def render(self, name: str, context: Mapping[str, Any], language: str = DEFAULT_LANGUAGE) -> RenderedEmail:
        env = self._environments.get(language) or self._environments[DEFAULT_LANGUAGE]
        if name not in self.names:
            raise TemplateRenderError(f"unknown template {name!r}")
        try:
            subject = env.get_template(f"{name}.subject.txt").render(context)
            text = env.get_template(f"{name}.txt").render(context)
            html = env.get_template(f"{name}.html").render(context)
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(f"{name}: {type(exc).__name__}: {exc}") from exc
        # A header is one line; a template's stray newline must not become a header break.
        return RenderedEmail(subject=" ".join(subject.split()), text=text, html=html)


def _environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _template_names(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.iterdir():
        if not path.is_file():
            continue
        for part in PARTS:
            if path.name.endswith(f".{part}") and not (part == "txt" and path.name.endswith(".subject.txt")):
                names.add(path.name.removesuffix(f".{part}"))
                break
    return names


def load_catalog(folder: Path) -> TemplateCatalog:
    """Compile and test-render every template; raise TemplateCatalogError on any problem."""
    if not folder.is_dir():
        raise TemplateCatalogError(f"templates folder {folder} does not exist")
    samples = sample_contexts()
    folders = {DEFAULT_LANGUAGE: folder} | {p.name: p for p in sorted(folder.iterdir()) if p.is_dir()}
    expected = _template_names(folder)
    if not expected:
        raise TemplateCatalogError(f"no templates in {folder}")
    environments: dict[str, jinja2.Environment] = {}
    problems: list[str] = []
    for language, language_folder in folders.items():
        env = _environment(language_folder)
        names = _template_names(language_folder)
        if names != expected:
            problems.append(f"{language}: templates {sorted(names)} differ from the default {sorted(expected)}")
        for name in sorted(names):
            context = samples.get(name)
            if context is None:
                problems.append(f"{language}/{name}: no notification uses this template")
                continue
            for part in PARTS:
                file_name = f"{name}.{part}"
                try:
                    env.get_template(file_name).render(context)
                except jinja2.TemplateNotFound:
                    problems.append(f"{language}/{file_name}: missing")
                except jinja2.TemplateError as exc:
                    line = getattr(exc, "lineno", None)
                    where = f"{file_name}:{line}" if line else file_name
                    problems.append(f"{language}/{where}: {type(exc).__name__}: {exc}")
        environments[language] = env
    if problems:
        raise TemplateCatalogError("; ".join(problems))
    return TemplateCatalog(environments, frozenset(expected))
