"""The members' study hours for a year, for the branch's own records: the console's download and
`zhibu export study`. One row per member in roster order (branches in the tree's order, then by name): name,
branch, items done, their hours, each counted meeting kind's times and hours, the total and the yearly
requirement. Never ordered by hours, never a share or a place: the same figures 我的学习 shows each member
about themselves, gathered for the branch's ledger.

The figures are service.hours_of's, computed for every member at once (storage.study.figures_by_member: two
grouped queries instead of three per member); tests/handlers/test_study_plan.py checks that they agree.
Every cell is text, so nothing in the file runs as a formula (a name like "=1+1" included).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tables import file_part
from bot.web.exports import table_csv, table_xlsx
from handlers.study import service
from handlers.study.settings import StudySettings
from storage import study as store
from storage.models import Member, Organization
from storage.orgs import named_org, tree_order, under

WHAT = "学习学时"
FIRST_YEAR, LAST_YEAR = 2000, 2100
SUFFIXES = (".xlsx", ".csv")


class StudyExportError(Exception):
    """A request we cannot export (unknown organization, a year out of range, another file type); for people."""


@dataclass(frozen=True)
class HoursLine:
    member_id: int
    name: str
    org_name: str
    hours: service.Hours


@dataclass(frozen=True)
class StudyExport:
    path: Path
    members: int


def hours_from(figures: store.YearFigures | None, member: Member, year: int, settings: StudySettings) -> service.Hours:
    """A member's Hours from their figures, as service.hours_of makes them."""
    kinds = settings.study_meeting_hours
    attended = figures.attended if figures else {}
    return service.Hours(year=year, item_count=figures.done if figures else 0,
                         item_hours=(figures.minutes if figures else 0) / settings.study_minutes_per_hour,
                         meetings={kind: (attended[kind], attended[kind] * kinds[kind]) for kind in kinds
                                   if attended.get(kind)},
                         required=service.required_hours(member, settings))


async def collect_hours(session: AsyncSession, orgs: sa.ColumnElement[bool], *, year: int,
                        settings: StudySettings) -> list[HoursLine]:
    """Every member of the organizations `orgs` (a condition on Organization) selects, with their hours for the
    year, in roster order."""
    rows = (await session.execute(
        select(Member, Organization.name, Organization.path).join(Organization, Organization.id == Member.org_id)
        .where(orgs))).all()
    # Sorted here, not in SQL: PostgreSQL collations order Chinese differently from SQLite.
    rows.sort(key=lambda row: (tree_order(row[2]), row[0].name, row[0].id))
    start, end = service.year_bounds(year, settings.zone)
    ids = select(Member.id).join(Organization, Organization.id == Member.org_id).where(orgs)
    figures = await store.figures_by_member(session, ids, list(settings.study_meeting_hours), start, end)
    return [HoursLine(member.id, member.name, org_name, hours_from(figures.get(member.id), member, year, settings))
            for member, org_name, _ in rows]


def header(settings: StudySettings) -> list[str]:
    kinds = [column for kind in settings.study_meeting_hours for column in (f"参加{kind}（次）", f"{kind}学时")]
    return ["姓名", "支部", "学完学习内容（项）", "学习内容学时", *kinds, "合计学时", "一年要求学时"]


def hours_row(line: HoursLine, settings: StudySettings) -> list[str]:
    hours = line.hours
    kinds = []
    for kind in settings.study_meeting_hours:
        times, value = hours.meetings.get(kind, (0, 0.0))
        kinds += [str(times), service.figure(value)]
    return [line.name, line.org_name, str(hours.item_count), service.figure(hours.item_hours), *kinds,
            service.figure(hours.total), service.figure(hours.required)]


def title(org_name: str, year: int) -> str:
    return f"{org_name} {year}年党员学习学时（按名册顺序）"


def check_year(year: int) -> int:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise StudyExportError(f"年份 {year} 不对，请写四位数的年份，例如 2026。")
    return year


def write_table(path: Path, heading: str, columns: list[str], rows: list[list[str]]) -> None:
    body = table_csv(columns, rows) if path.suffix.lower() == ".csv" else table_xlsx(heading, columns, rows)
    path.write_bytes(body)


async def export_study(sessions: async_sessionmaker[AsyncSession], *, org_path: str, year: int, out: Path | None,
                       settings: StudySettings, folder: Path | None = None) -> StudyExport:
    """Write the hours of org_path's members for the year to out (.xlsx or .csv), or to an .xlsx named after the
    organization and the year in folder (the current one by default). Raises StudyExportError, or
    storage.orgs.InvalidOrgPath for a path that names no organization."""
    check_year(year)
    if out is not None and out.suffix.lower() not in SUFFIXES:
        raise StudyExportError(f"学时只能导出成 .xlsx 或 .csv 文件，不认识“{out.name}”。")
    async with sessions() as session:
        org = await named_org(session, org_path)  # InvalidOrgPath says what is wrong with the path
        lines = await collect_hours(session, under(org), year=year, settings=settings)
    path = out if out is not None else (folder or Path.cwd()) / (file_part(f"{WHAT}-{org.name}-{year}") + ".xlsx")
    rows = [hours_row(line, settings) for line in lines]
    try:
        await asyncio.to_thread(write_table, path, title(org.name, year), header(settings), rows)
    except OSError as error:
        raise StudyExportError(f"写不了文件 {path}：{error.strerror or error}") from error
    return StudyExport(path=path, members=len(lines))
