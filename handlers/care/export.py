"""The care ledger (关怀走访台账) as an XLSX laid out like the paper one: `zhibu export care` and the console.

Sheet 1, 困难党员台账: the members on the hardship register (name, branch, level, reason, since), as the
register stands when exported. Sheet 2, 走访慰问记录: one row per visit made in the year (date, whom — a
villager who is not a member is marked —, occasion, who went, what was given, the amount as written, the
fund), then the total of the amounts that read as plain numbers. Each sheet has a title row and borders,
and prints with its header on every page.

Names come from a roster and everything else was typed by someone, so no cell is ever a formula: a name
"=cmd" is written as text (bot.tables.keep_text). The data is read in one session; the file is written after
it closes, in a thread, because openpyxl is slow, blocking work.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tables import file_part, keep_text
from storage.models import CareCase, CareProfile, CareVisit, Member, Organization
from storage.orgs import InvalidOrgPath, named_org, tree_order, under

REGISTER_HEADER = ["序号", "姓名", "支部", "困难程度", "困难原因", "列入时间"]
VISIT_HEADER = ["序号", "走访日期", "支部", "慰问对象", "走访事由", "走访人", "慰问物品", "金额", "经费来源"]
VILLAGER = "（村民）"
REGISTER_WIDTHS = (6, 12, 18, 12, 40, 12)
VISIT_WIDTHS = (6, 12, 18, 14, 12, 18, 20, 12, 14)
FIRST_YEAR, LAST_YEAR = 2000, 2100


class CareExportError(Exception):
    """A request we cannot export (unknown organization, a year out of range, not .xlsx); the text is for people."""


@dataclass(frozen=True)
class RegisterLine:
    name: str
    branch: str
    level: str
    reason: str
    since: date | None


@dataclass(frozen=True)
class VisitLine:
    day: date  # local
    branch: str
    subject: str
    villager: bool  # not a member
    occasion: str
    visitors: str
    given: str
    amount: str  # as written
    amount_fen: int | None  # read from it, when it is one plain number
    fund: str

    @property
    def whom(self) -> str:
        return self.subject + (VILLAGER if self.villager else "")


@dataclass
class Ledger:
    org_name: str
    year: int
    register: list[RegisterLine] = field(default_factory=list)
    visits: list[VisitLine] = field(default_factory=list)

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen or 0 for line in self.visits)

    @property
    def unread_amounts(self) -> int:
        """Visits with an amount written that is not one plain number (left out of the total)."""
        return sum(1 for line in self.visits if line.amount and line.amount_fen is None)

    @property
    def total_text(self) -> str:
        yuan, fen = divmod(self.total_fen, 100)
        text = f"{yuan}.{fen:02d} 元" if fen else f"{yuan} 元"
        if self.unread_amounts:
            text += f"（另有 {self.unread_amounts} 笔金额写法不是数字，未计入）"
        return text


def year_bounds(year: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The local year as [start, end) times."""
    return (datetime.combine(date(year, 1, 1), time(), tzinfo=zone),
            datetime.combine(date(year + 1, 1, 1), time(), tzinfo=zone))


async def collect_ledger(session: AsyncSession, branches, *, org_name: str, year: int, zone: ZoneInfo) -> Ledger:
    """The register and the year's visits of the branches the condition `branches` (on Organization) selects."""
    ledger = Ledger(org_name=org_name, year=year)
    members = (await session.execute(
        select(Member.name, Organization.name, Organization.path, CareProfile.hardship_level,
               CareProfile.hardship_reason, CareProfile.hardship_since, Member.id)
        .join(Organization, Organization.id == Member.org_id)
        .outerjoin(CareProfile, CareProfile.member_id == Member.id)
        .where(Member.hardship.is_(True), branches))).all()
    members.sort(key=lambda row: (tree_order(row[2]), row[6]))
    ledger.register = [RegisterLine(name, branch, level or "", reason or "", since)
                       for name, branch, _, level, reason, since, _ in members]
    start, end = year_bounds(year, zone)
    visits = await session.execute(
        select(CareVisit, CareCase.subject_name, CareCase.member_id, CareCase.occasion, Organization.name)
        .join(CareCase, CareCase.id == CareVisit.case_id)
        .join(Organization, Organization.id == CareCase.org_id)
        .where(branches, CareVisit.visited_at >= start, CareVisit.visited_at < end)
        .order_by(CareVisit.visited_at, CareVisit.id))
    ledger.visits = [VisitLine(visit.visited_at.astimezone(zone).date(), branch, subject, member_id is None, occasion,
                               visit.visitors, visit.given, visit.amount, visit.amount_fen, visit.fund)
                     for visit, subject, member_id, occasion, branch in visits]
    return ledger


def _table(workbook, name: str, title: str, header: list[str], rows: list[list], widths: tuple[int, ...],
           footer: list | None = None) -> None:
    """One sheet like the paper form: a title over the table, a bordered table, an optional total line."""
    from openpyxl.styles import Alignment, Border, Font, Side
    from openpyxl.utils import get_column_letter

    ws = workbook.create_sheet(name)
    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    ws.append([title])
    keep_text(ws[1])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header))
    ws["A1"].font = Font(size=16, bold=True)
    ws["A1"].alignment = Alignment(horizontal="center")
    ws.append([])
    for values in (header, *rows):
        ws.append(values)
        keep_text(ws[ws.max_row])
    for row in ws.iter_rows(min_row=3, max_row=ws.max_row, max_col=len(header)):
        for cell in row:
            cell.border = box
            cell.alignment = Alignment(wrap_text=True, vertical="top")
            if cell.row == 3:
                cell.font = Font(bold=True)
    if footer:
        ws.append([])
        ws.append(footer)
        keep_text(ws[ws.max_row])
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
    for index, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width
    ws.freeze_panes = "A4"
    ws.print_title_rows = "3:3"


def write_ledger(target, ledger: Ledger) -> None:
    """target: a file's path, or a binary file object (the console sends the bytes)."""
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    register = [[number, line.name, line.branch, line.level, line.reason,
                 line.since.isoformat() if line.since else ""]
                for number, line in enumerate(ledger.register, start=1)]
    _table(workbook, "困难党员台账", f"{ledger.org_name} 困难党员台账（{ledger.year}年）", REGISTER_HEADER, register,
           REGISTER_WIDTHS, [f"共 {len(register)} 人"])
    visits = [[number, line.day.isoformat(), line.branch, line.whom, line.occasion, line.visitors, line.given,
               line.amount, line.fund] for number, line in enumerate(ledger.visits, start=1)]
    _table(workbook, "走访慰问记录", f"{ledger.org_name} {ledger.year}年走访慰问记录", VISIT_HEADER, visits,
           VISIT_WIDTHS, ["合计", f"走访 {len(visits)} 次", "", "", "", "", "金额合计", ledger.total_text])
    workbook.save(target)


def file_name(org_name: str, year: int) -> str:
    return file_part(f"关怀走访台账-{org_name}-{year}") + ".xlsx"


def check_year(year: int) -> int:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise CareExportError(f"年份 {year} 不对，请写四位数的年份，例如 2026。")
    return year


@dataclass(frozen=True)
class CareExport:
    path: Path
    members: int
    visits: int


async def export_care(sessions: async_sessionmaker[AsyncSession], *, org_path: str, year: int, out: Path | None,
                      zone: ZoneInfo, folder: Path | None = None) -> CareExport:
    """Write the ledger of org_path's branches for the year to out, or to a file named after the organization
    and the year in folder (the current one by default)."""
    check_year(year)
    if out is not None and out.suffix.lower() != ".xlsx":
        raise CareExportError(f"台账只能导出成 .xlsx 文件（两张表），不认识“{out.name}”。")
    async with sessions() as session:
        try:
            org = await named_org(session, org_path)
        except InvalidOrgPath as error:
            raise CareExportError(str(error)) from None
        ledger = await collect_ledger(session, under(org), org_name=org.name, year=year, zone=zone)
    path = out if out is not None else (folder or Path.cwd()) / file_name(org.name, year)
    try:
        await asyncio.to_thread(write_ledger, path, ledger)
    except OSError as error:
        raise CareExportError(f"写不了文件 {path}：{error.strerror or error}") from error
    return CareExport(path=path, members=len(ledger.register), visits=len(ledger.visits))
