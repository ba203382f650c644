"""The organisers' participation report (DESIGN.md "Reports organisers publish"): per
unit participants, attempts and rate, units at 100 %, score bands, all-correct entries,
top units; as data, CSV and XLSX. The data also has submitted attempts per hour (for the
dashboard's chart; the files keep their columns and sheets).

Figures of a unit cover its whole subtree: a district's row counts its wards' people and
headcounts (the "Gồm đơn vị trực thuộc" column says which rows are such totals).
Participants are the distinct people with a submitted attempt, counting or not (who took
part); score bands and all-correct count entries (each participant's best counting
attempt in each round).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from services.core.spreadsheets import Sheet, csv_bytes, xlsx_bytes
from services.scoring import domain, store

UNIT_COLUMNS = ("Mã đơn vị", "Tên đơn vị", "Khối", "Biên chế", "Số người dự thi", "Lượt thi", "Tỷ lệ (%)",
                "Gồm đơn vị trực thuộc")


@dataclass(frozen=True, slots=True)
class ParticipationReport:
    contest_id: UUID
    contest_slug: str | None
    contest_title: str
    round: store.RoundInfo | None
    units: list[domain.UnitParticipation]
    score_bands: list[domain.ScoreBand]
    all_correct: int
    participants: int
    attempts: int
    top_units: list[domain.UnitParticipation]
    generated_at: datetime
    # Submitted attempts per UTC hour (hours with none left out); JSON only.
    attempts_over_time: list[store.HourCount] = field(default_factory=list)

    @property
    def units_complete(self) -> int:
        return sum(1 for u in self.units if u.complete)


async def participation_report(
    conn: store.Conn,
    rounds: list[store.RoundInfo],
    chosen: store.RoundInfo | None,
    visible_units: set[UUID] | None,
    now: datetime,
) -> ParticipationReport:
    """`chosen` round, or the whole contest so far; only `visible_units` (a coordinator's
    subtree) when given."""
    scope = [chosen.round_id] if chosen is not None else [r.round_id for r in rounds]
    units = await store.unit_participation(conn, scope)
    if visible_units is not None:
        units = [u for u in units if u.unit_id in visible_units]
    scoped_units = None if visible_units is None else sorted(visible_units)
    figures = await store.entry_figures(conn, scope, scoped_units)
    by_hour = await store.attempts_by_hour(conn, scope, scoped_units)
    bands, all_correct = domain.score_bands(figures.by_score)
    contest = rounds[-1]
    return ParticipationReport(
        contest_id=contest.contest_id,
        contest_slug=contest.contest_slug,
        contest_title=contest.contest_title,
        round=chosen,
        units=units,
        score_bands=bands,
        all_correct=all_correct,
        participants=figures.participants,
        attempts=figures.attempts,
        top_units=domain.top_units(units),
        generated_at=now,
        attempts_over_time=by_hour,
    )


def percent(unit: domain.UnitParticipation) -> float | None:
    rate = unit.rate
    return None if rate is None else round(rate * 100, 1)


def _unit_row(unit: domain.UnitParticipation) -> list[object]:
    return [unit.code, unit.name, unit.block, unit.headcount, unit.participants, unit.attempts, percent(unit),
            "Không" if unit.is_leaf else "Có"]


def file_name(report: ParticipationReport, extension: str) -> str:
    """ASCII, so every browser keeps it: `tham-gia-<contest>[-vong-<n>].<ext>`."""
    contest = report.contest_slug or str(report.contest_id)
    part = ""
    if report.round is not None:
        part = f"-vong-{report.round.round_number}" if report.round.round_number is not None else (
            f"-{report.round.round_id}")
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in contest)
    return f"tham-gia-{safe}{part}.{extension}"


def to_csv(report: ParticipationReport) -> bytes:
    """The per-unit table (UTF-8 with a byte order mark, so that Excel shows Vietnamese)."""
    return csv_bytes(UNIT_COLUMNS, (_unit_row(unit) for unit in report.units))


def to_xlsx(report: ParticipationReport) -> bytes:
    """A sheet per section: summary, units, score bands, top units."""
    summary: list[tuple[str, object]] = [
        ("Cuộc thi", report.contest_title),
        ("Vòng thi", report.round.round_title if report.round is not None else "Tất cả các vòng đến nay"),
        ("Số người dự thi", report.participants),
        ("Lượt thi", report.attempts),
        ("Số đơn vị đạt 100%", report.units_complete),
        ("Số bài đúng tất cả", report.all_correct),
        ("Thời điểm lập báo cáo (UTC)", report.generated_at),
    ]
    return xlsx_bytes([
        Sheet("Tổng hợp", summary, labels_in_first_column=True),
        Sheet("Đơn vị", [_unit_row(unit) for unit in report.units], header=UNIT_COLUMNS),
        Sheet("Phổ điểm", [(band.label, band.entries) for band in report.score_bands],
              header=("Số câu đúng", "Số bài")),
        Sheet("Đơn vị dẫn đầu", [(rank, *_unit_row(unit)) for rank, unit in enumerate(report.top_units, start=1)],
              header=("Hạng", *UNIT_COLUMNS)),
    ])
