"""Sign-in sheets for `zhibu export attendance`: the audit's "sign-in sheet" as a file.

XLSX gives one worksheet per meeting, laid out like the paper form township staff know (title, the
meeting's facts, one numbered line per expected member, the head count, then the record's resolutions
and votes). CSV gives one line per expected member per meeting, for people who filter and count in a
spreadsheet. Meetings are read inside one session; the file is written after it closes, in a thread,
because openpyxl is slow, blocking work.

Names come from a roster and most other fields are typed by a secretary, so no cell may ever be a
formula (OWASP, "CSV Injection"): a topic typed as "=HYPERLINK(…)" must show as those characters, not
run. XLSX cells are typed, and every text cell is written as a string that shows exactly what was
typed. CSV has no types: a cell that a spreadsheet program would read as a formula gets a leading
apostrophe, as OWASP recommends; that apostrophe is the one character the CSV adds.
"""

from __future__ import annotations

import asyncio
import csv
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tables import csv_safe, file_part, keep_text
from storage.meetings import meetings_of, photos_of, sign_in_sheet
from storage.models import CheckInMethod, Member, Organization
from storage.orgs import InvalidOrgPath, named_org

METHOD_LABELS = {
    CheckInMethod.QR.value: "扫码",
    CheckInMethod.CODE.value: "签到码",
    CheckInMethod.LOCATION.value: "位置",
    CheckInMethod.MENU.value: "菜单",
    CheckInMethod.PROXY.value: "代签",
}
TABLE_HEADER = ["序号", "姓名", "签到时间", "方式", "备注"]
CSV_HEADER = ["组织", "会议类型", "党小组", "会议时间", "地点", "主题", "主持人", "记录人",
              "序号", "姓名", "出席情况", "签到时间", "方式", "备注"]
# Excel refuses these in sheet names, and a name may not be longer than 31 characters.
SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
SHEET_NAME_MAX = 31
# What makes Excel, LibreOffice or WPS read a cell as a formula (OWASP's list).


class ExportError(Exception):
    """A request we cannot export (unknown organization, bad dates, unknown file type); the text is for people."""


@dataclass
class SheetLine:
    name: str
    status: str  # 已签到 / 请假 / 缺席 / 列席
    checked_in: str = ""  # local "HH:MM"
    method: str = ""
    remark: str = ""


@dataclass
class MeetingSheet:
    """One meeting's sign-in sheet, flattened to text for the file writers."""

    branch: str
    kind: str
    group: str
    starts_at: datetime  # local
    place: str
    topic: str
    host: str
    recorder: str
    resolutions: str
    votes: str
    photos: int
    lines: list[SheetLine] = field(default_factory=list)
    expected: int = 0
    present: int = 0
    on_leave: int = 0
    absent: int = 0

    @property
    def organization(self) -> str:
        return self.branch + self.group

    @property
    def title(self) -> str:
        return f"{self.organization} {self.kind} 签到表"


@dataclass
class ExportResult:
    path: Path
    meetings: int


def parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ExportError(f"{option} 的日期“{text}”看不懂，请写成 YYYY-MM-DD，例如 2026-11-01。") from None


def default_file_name(org: Organization, start: date, end: date) -> str:
    return file_part(f"attendance-{org.name}-{start.isoformat()}-{end.isoformat()}") + ".xlsx"


def sheet_name(sheet: MeetingSheet, used: set[str], *, with_branch: bool) -> str:
    """A valid, unique worksheet name such as "11-25 支部党员大会", prefixed by the branch when the export
    covers several."""
    base = f"{sheet.starts_at:%m-%d} {sheet.kind}"
    if sheet.group:
        base += f" {sheet.group}"
    if with_branch:
        base = f"{sheet.branch} {base}"
    base = SHEET_NAME_FORBIDDEN.sub("_", base).strip("'") or "会议"
    name, number = base[:SHEET_NAME_MAX], 1
    # Excel compares sheet names without regard to case.
    while name.lower() in used:
        number += 1
        suffix = f"({number})"
        name = base[:SHEET_NAME_MAX - len(suffix)] + suffix
    used.add(name.lower())
    return name


async def _names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(select(Member.id, Member.name).where(Member.id.in_(ids)))
    return dict(rows.all())


async def collect_sheets(session: AsyncSession, org: Organization, start: date, end: date,
                         zone: ZoneInfo) -> list[MeetingSheet]:
    """The sign-in sheets of org's meetings (its subtree's) held from start to end, local dates inclusive."""
    begin = datetime.combine(start, time(), tzinfo=zone)
    finish = datetime.combine(end + timedelta(days=1), time(), tzinfo=zone)
    meetings = await meetings_of(session, org, begin, finish)
    org_ids = {meeting.org_id for meeting in meetings} | {m.group_id for m in meetings if m.group_id is not None}
    orgs = {row.id: row for row in (await session.execute(
        select(Organization).where(Organization.id.in_(org_ids)))).scalars()} if org_ids else {}
    return [await meeting_sheet(session, meeting, zone, orgs) for meeting in meetings]


async def meeting_sheet(session: AsyncSession, meeting, zone: ZoneInfo,
                        orgs: dict[int, Organization] | None = None) -> MeetingSheet:
    """One meeting's sign-in sheet (orgs: its branch and group by id, when the caller has them already)."""
    if orgs is None:
        ids = {meeting.org_id} | ({meeting.group_id} if meeting.group_id is not None else set())
        orgs = {row.id: row for row in (await session.execute(
            select(Organization).where(Organization.id.in_(ids)))).scalars()}
    sheet = await sign_in_sheet(session, meeting)
    proxies = await _names(session, {attendance.proxy_by for _, attendance in sheet.present + sheet.guests
                                     if attendance.proxy_by is not None})
    group = orgs.get(meeting.group_id) if meeting.group_id is not None else None
    data = MeetingSheet(
        branch=orgs[meeting.org_id].name, kind=meeting.kind, group=group.name if group else "",
        starts_at=meeting.starts_at.astimezone(zone), place=meeting.place, topic=meeting.topic,
        host=meeting.host or "", recorder=meeting.recorder or "", resolutions=meeting.resolutions or "",
        votes=meeting.votes or "", photos=await photos_of(session, meeting.id),
        expected=sheet.expected, present=len(sheet.present), on_leave=len(sheet.on_leave),
        absent=len(sheet.absent))

    def signed(member: Member, attendance, status: str, remarks: list[str]) -> SheetLine:
        if attendance.late:
            remarks.insert(0, "迟到")
        if attendance.method == CheckInMethod.PROXY.value:
            by = proxies.get(attendance.proxy_by)
            remarks.append(f"由{by}代签" if by else "代签")
        return SheetLine(member.name, status, f"{attendance.checked_in_at.astimezone(zone):%H:%M}",
                         METHOD_LABELS.get(attendance.method, attendance.method), "；".join(remarks))

    # Roster order, as on the paper form: everyone expected, whatever became of them.
    entries: list[tuple[int, SheetLine]] = []
    for member, attendance in sheet.present:
        entries.append((member.id, signed(member, attendance, "已签到", [])))
    for member, leave in sheet.on_leave:
        entries.append((member.id, SheetLine(member.name, "请假", remark=f"请假：{leave.reason}")))
    for member in sheet.absent:
        entries.append((member.id, SheetLine(member.name, "缺席", remark="缺席")))
    data.lines = [line for _, line in sorted(entries, key=lambda entry: entry[0])]
    # Those who came without being expected (another group's member) sign below, as on paper.
    data.lines += [signed(member, attendance, "列席", ["列席（不在应到名单）"]) for member, attendance in sheet.guests]
    return data


def _facts(sheet: MeetingSheet) -> list[tuple[str, str]]:
    return [("会议时间", f"{sheet.starts_at:%Y-%m-%d %H:%M}"), ("会议地点", sheet.place), ("会议主题", sheet.topic),
            ("主持人", sheet.host), ("记录人", sheet.recorder)]


def _append(ws, values: list) -> None:
    ws.append(values)
    keep_text(ws[ws.max_row])


def write_xlsx(path, sheets: list[MeetingSheet], *, heading: str) -> None:
    """path: a file's path, or a binary file object (the console sends the bytes)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Side

    workbook = Workbook()
    workbook.remove(workbook.active)
    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    wrap = Alignment(wrap_text=True, vertical="top")
    if not sheets:
        empty = workbook.create_sheet("说明")
        empty["A1"] = f"{heading}：这段时间没有会议。"
        keep_text([empty["A1"]])
    used: set[str] = set()
    several_branches = len({sheet.branch for sheet in sheets}) > 1
    for sheet in sheets:
        ws = workbook.create_sheet(sheet_name(sheet, used, with_branch=several_branches))
        _append(ws, [sheet.title])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(TABLE_HEADER))
        ws["A1"].font = Font(size=16, bold=True)
        ws["A1"].alignment = Alignment(horizontal="center")
        for label, value in _facts(sheet):
            _append(ws, [label, value])
            ws.merge_cells(start_row=ws.max_row, start_column=2, end_row=ws.max_row, end_column=len(TABLE_HEADER))
            ws.cell(ws.max_row, 1).font = Font(bold=True)
        ws.append([])
        _append(ws, TABLE_HEADER)
        header_row = ws.max_row
        for number, line in enumerate(sheet.lines, start=1):
            _append(ws, [number, line.name, line.checked_in, line.method, line.remark])
        for row in ws.iter_rows(min_row=header_row, max_row=ws.max_row, max_col=len(TABLE_HEADER)):
            for cell in row:
                cell.border = box
                if cell.row == header_row:
                    cell.font = Font(bold=True)
        ws.append([])
        _append(ws, ["合计", f"应到 {sheet.expected}", f"实到 {sheet.present}", f"请假 {sheet.on_leave}",
                     f"缺席 {sheet.absent}"])
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
        ws.append([])
        for label, value in (("决议", sheet.resolutions), ("表决情况", sheet.votes), ("会议照片", f"{sheet.photos} 张")):
            _append(ws, [label, value])
            ws.merge_cells(start_row=ws.max_row, start_column=2, end_row=ws.max_row, end_column=len(TABLE_HEADER))
            ws.cell(ws.max_row, 1).font = Font(bold=True)
            ws.cell(ws.max_row, 2).alignment = wrap
        for column, width in zip("ABCDE", (10, 14, 12, 10, 36)):
            ws.column_dimensions[column].width = width
        ws.print_title_rows = f"{header_row}:{header_row}"
    workbook.save(path)


def write_csv(path: Path, sheets: list[MeetingSheet]) -> None:
    # utf-8-sig: Excel on Windows reads the Chinese correctly only with the byte-order mark.
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for sheet in sheets:
            meeting = [sheet.branch, sheet.kind, sheet.group, f"{sheet.starts_at:%Y-%m-%d %H:%M}", sheet.place,
                       sheet.topic, sheet.host, sheet.recorder]
            for number, line in enumerate(sheet.lines, start=1):
                row = meeting + [number, line.name, line.status, line.checked_in, line.method, line.remark]
                writer.writerow([csv_safe(value) for value in row])


async def export_attendance(sessions: async_sessionmaker[AsyncSession], *, org_path: str, start: date, end: date,
                            out: Path | None, zone: ZoneInfo, folder: Path | None = None) -> ExportResult:
    """Write the sign-in sheets of org_path's meetings from start to end (inclusive) to out, or to a file
    named after the organization and the dates in folder (the current one by default)."""
    if start > end:
        raise ExportError(f"开始日期 {start} 晚于结束日期 {end}，请检查 --from 和 --to。")
    if out is not None and out.suffix.lower() not in (".xlsx", ".csv"):
        raise ExportError(f"只能导出 .xlsx 或 .csv 文件，不认识“{out.name}”。")
    async with sessions() as session:
        try:
            org = await named_org(session, org_path)
        except InvalidOrgPath as error:
            raise ExportError(str(error)) from None
        sheets = await collect_sheets(session, org, start, end, zone)
    path = out if out is not None else (folder or Path.cwd()) / default_file_name(org, start, end)
    try:
        if path.suffix.lower() == ".csv":
            await asyncio.to_thread(write_csv, path, sheets)
        else:
            heading = f"{org.name} {start.isoformat()} 至 {end.isoformat()}"
            await asyncio.to_thread(write_xlsx, path, sheets, heading=heading)
    except OSError as error:
        raise ExportError(f"写不了文件 {path}：{error.strerror or error}") from error
    return ExportResult(path=path, meetings=len(sheets))
