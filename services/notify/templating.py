"""Message templates (Jinja2), loaded and checked once at start-up.

Layout of `templates_dir`: for each notification `<name>`, the email parts
`<name>.subject.txt`, `<name>.txt` and `<name>.html`, and for those also sent by SMS
`<name>.sms.txt` (domain.TEMPLATE_CHANNELS says which), for the default language
(Vietnamese) at the top, and the same names under `<lang>/` for others (`en/`). Every
template is compiled with StrictUndefined (HTML autoescaped) and rendered once with a
sample of the context the domain builds for it, so a typo or a missing variable stops
the process at start-up instead of failing a winner's message later.

Filters available to templates: `number` (12.000 / 12,000) and `percent` (45,5% / 45.5%),
written the way the template's language writes numbers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import jinja2

from services.notify import domain

DEFAULT_LANGUAGE = domain.DEFAULT_LANGUAGE
EMAIL_PARTS = ("subject.txt", "txt", "html")
SMS_PARTS = ("sms.txt",)
PARTS_BY_CHANNEL: Mapping[domain.Channel, tuple[str, ...]] = {"email": EMAIL_PARTS, "sms": SMS_PARTS}
# Longest suffix first: `x.sms.txt` is the SMS part of `x`, not the text part of `x.sms`.
_SUFFIXES = ("subject.txt", "sms.txt", "html", "txt")


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
    at = datetime(2025, 1, 1, tzinfo=UTC)
    announcement = domain.WinnersAnnouncement(
        event_id=uuid.UUID(int=1),
        event_type="winners.announced",
        round_id=uuid.UUID(int=2),
        contest_title="Tìm hiểu pháp luật",
        round_title="Tuần 1",
        winners=(
            domain.Winner(uuid.UUID(int=3), "Nguyễn Văn A", 1, "Giải Nhất", correct=20, group="can_bo"),
            domain.Winner(uuid.UUID(int=4), "Trần Thị B", 2, "Giải Nhì", correct=None),
        ),
        summary=domain.RoundSummary(participants=1200, attempts=3400, all_correct=15),
    )
    winner = announcement.winners[0]
    contact = domain.Contact(winner.participant_id, "participant", "Nguyễn Văn A", "a@example.com", "0912345678", at)
    organiser = domain.Contact(uuid.UUID(int=5), "staff", "Lê Văn C", "c@example.com", None, at, role="organiser")
    unit = domain.UnitParticipation(uuid.UUID(int=6), "P01", "Phường 1", participants=45, headcount=120, rate=0.375)
    nudge = domain.Nudge(uuid.UUID(int=7), "participation.nudge", "Tìm hiểu pháp luật", None, 0.8, (unit,))
    coordinator = domain.Contact(
        uuid.UUID(int=8), "staff", "Phạm Thị D", "d@example.com", "0987654321", at, role="coordinator",
        unit_id=unit.unit_id,
    )
    code = domain.CodeRequest(
        uuid.UUID(int=9), "code.requested", uuid.UUID(int=10), "sign_up", "sms", "0912345678", "123456", at,
        at + timedelta(minutes=10), None,
    )
    return {
        domain.WINNER_TEMPLATE: domain.winner_context(announcement, winner, contact),
        domain.SIGNUP_TEMPLATE: domain.signup_context(contact, "https://hoithi.example.vn"),
        domain.CODE_TEMPLATE: domain.code_context(code),
        domain.NUDGE_TEMPLATE: domain.nudge_context(nudge, unit, coordinator),
        domain.ORGANISER_SUMMARY_TEMPLATE: domain.organiser_summary_context(announcement, organiser),
    }


def sample_variants() -> dict[str, list[dict[str, Any]]]:
    """The samples again with their optional values flipped (None where they were set, set
    where they were None), so both sides of a template's `{% if %}` are tried at start-up."""
    samples = sample_contexts()
    flipped: dict[str, Any] = {
        "correct": None, "full_name": "Nguyễn Văn A", "round_title": "Tuần 2", "participants": None,
        "attempts": None, "all_correct": None, "winners": [], "phone": None, "email": None, "missing": 0,
        "purpose": "password_reset",
    }
    return {
        name: [context, {**context, **{k: v for k, v in flipped.items() if k in context}}]
        for name, context in samples.items()
    }


class TemplateCatalog:
    def __init__(self, environments: Mapping[str, jinja2.Environment], names: frozenset[str]) -> None:
        self._environments = dict(environments)
        self.names = names

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self._environments)

    def _environment(self, name: str, language: str) -> jinja2.Environment:
        if name not in self.names:
            raise TemplateRenderError(f"unknown template {name!r}")
        return self._environments.get(language) or self._environments[DEFAULT_LANGUAGE]

    def render(self, name: str, context: Mapping[str, Any], language: str = DEFAULT_LANGUAGE) -> RenderedEmail:
        env = self._environment(name, language)
        try:
            subject = env.get_template(f"{name}.subject.txt").render(context)
            text = env.get_template(f"{name}.txt").render(context)
            html = env.get_template(f"{name}.html").render(context)
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(f"{name}: {type(exc).__name__}: {exc}") from exc
        # A header is one line; a template's stray newline must not become a header break.
        return RenderedEmail(subject=" ".join(subject.split()), text=text, html=html)

    def render_sms(self, name: str, context: Mapping[str, Any], language: str = DEFAULT_LANGUAGE) -> str:
        """The SMS text as the template writes it (domain.fit_sms makes it fit the network)."""
        env = self._environment(name, language)
        try:
            return env.get_template(f"{name}.sms.txt").render(context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateRenderError(f"{name}: no SMS template") from exc
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(f"{name}: {type(exc).__name__}: {exc}") from exc


def _environment(folder: Path, language: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = partial(_number, language=language)
    env.filters["percent"] = partial(_percent, language=language)
    return env


def _number(value: int | float | None, language: str) -> str:
    return domain.format_number(value, language)


def _percent(value: float | None, language: str) -> str:
    return domain.format_percent(value, language)


def _template_files(folder: Path) -> dict[str, set[str]]:
    """{template name: the parts present}."""
    found: dict[str, set[str]] = {}
    for path in folder.iterdir():
        if not path.is_file():
            continue
        for part in _SUFFIXES:
            if path.name.endswith(f".{part}"):
                found.setdefault(path.name.removesuffix(f".{part}"), set()).add(part)
                break
    return found


def load_catalog(folder: Path) -> TemplateCatalog:
    """Compile and test-render every template; raise TemplateCatalogError on any problem."""
    if not folder.is_dir():
        raise TemplateCatalogError(f"templates folder {folder} does not exist")
    samples = sample_variants()
    folders = {DEFAULT_LANGUAGE: folder} | {p.name: p for p in sorted(folder.iterdir()) if p.is_dir()}
    expected = set(_template_files(folder))
    if not expected:
        raise TemplateCatalogError(f"no templates in {folder}")
    problems: list[str] = [
        f"{DEFAULT_LANGUAGE}/{name}: missing (every notification needs its templates)"
        for name in sorted(set(domain.TEMPLATE_CHANNELS) - expected)
    ]
    environments: dict[str, jinja2.Environment] = {}
    for language, language_folder in folders.items():
        env = _environment(language_folder, language)
        files = _template_files(language_folder)
        if set(files) != expected:
            problems.append(f"{language}: templates {sorted(files)} differ from the default {sorted(expected)}")
        for name in sorted(files):
            contexts = samples.get(name)
            channels = domain.TEMPLATE_CHANNELS.get(name)
            if contexts is None or channels is None:
                problems.append(f"{language}/{name}: no notification uses this template")
                continue
            needed = [part for channel in channels for part in PARTS_BY_CHANNEL[channel]]
            problems += [
                f"{language}/{name}.{part}: not used ({name} is sent by {', '.join(channels)} only)"
                for part in sorted(files[name] - set(needed))
            ]
            for part in needed:
                file_name = f"{name}.{part}"
                try:
                    template = env.get_template(file_name)
                    for context in contexts:
                        template.render(context)
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
