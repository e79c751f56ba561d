"""The meetings feature's staff console pages (issue 14, items 3 and 4): thin adapters over overview.py.

- /console/overview: each branch's required meetings for this month, quarter or year (held with dates, 缺,
  未到期), its attendance, the notices' figures and two charts. Branches come in the tree's order, never
  ordered by a figure: the console ranks nobody.
- /console/meetings (filters: branch, kind, dates; paginated) and /console/meetings/{id}: the audit evidence.
- /console/checkins: who signed in to what, and how.
- Exports of exactly what a list's filters show (.csv, .xlsx), and one meeting's sign-in sheet laid out like
  the paper form (export.py's writer). No cell is ever a formula (export.py's rules, reused); CSV carries a
  BOM for Excel on Chinese Windows. Every export is written to the audit log.

A meeting outside the viewer's scope answers 404, like one that does not exist.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from bot.keys import CONFIGS
from bot.web.charts import attendance_chart, held_chart
from bot.web.console import StaffView, add_nav, staff_page
from handlers.meetings.common import router
from bot.tables import file_part
from bot.web.exports import XLSX, attachment, refusal, send_table
from handlers.meetings.export import meeting_sheet, write_xlsx
from handlers.meetings.overview import (
    HELD_NOTE,
    PERIOD_MONTHS,
    BranchRow,
    CellStatus,
    OverviewPage,
    attendance_points,
    checkin_log,
    day_range,
    held_points,
    meeting_detail,
    meetings_in_scope,
    overview_page_data,
)
from handlers.meetings.compliance import _add_months, period_of
from handlers.meetings.settings import MeetingSettings
from storage.models import Meeting, MeetingKind
from storage.orgs import branches_under

OVERVIEW_PAGE = "/console/overview"
MEETINGS_PAGE = "/console/meetings"
CHECKINS_PAGE = "/console/checkins"
PAGE_SIZE = 50
# An export reads the list in pages of this many rows (at most bot.web.exports.EXPORT_MAX in all).
EXPORT_BATCH = 200
PERIOD_LABELS = {"month": "本月", "quarter": "本季度", "year": "本年"}
# What a cell says, in words (the colour only repeats it).
CELL_WORDS = {CellStatus.HELD: "已开", CellStatus.MISSING: "缺", CellStatus.NOT_DUE: "未到期",
              CellStatus.NOT_REQUIRED: "不需要"}

add_nav("会议概况", OVERVIEW_PAGE)
add_nav("会议", MEETINGS_PAGE)
add_nav("签到记录", CHECKINS_PAGE)


def meeting_settings(view: StaffView) -> MeetingSettings:
    return view.request.app[CONFIGS].of(MeetingSettings)


def today(view: StaffView) -> date:
    return view.local(view.now).date()


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def md(day: date) -> str:
    return f"{day.month}月{day.day}日"


# ---------------------------------------------------------------- filters


@dataclass
class Filters:
    """A list's filters as the GET form sends them, checked: a branch out of scope is a 404."""

    branch_id: int | None = None
    kind: str = ""
    start: date | None = None
    end: date | None = None
    name: str = ""
    page: int = 1
    problem: str = ""

    def query(self, **changes) -> str:
        values = {"branch": self.branch_id or "", "kind": self.kind, "from": self.start or "",
                  "to": self.end or "", "name": self.name, "page": self.page}
        values.update(changes)
        shown = {key: value for key, value in values.items() if value not in ("", None) and
                 not (key == "page" and value == 1)}
        return ("?" + urlencode(shown)) if shown else ""

    def times(self, view: StaffView):
        return day_range(self.start, self.end, view.settings.zone)

    def describe(self, branch_names: dict[int, str]) -> str:
        parts = []
        if self.branch_id:
            parts.append(branch_names.get(self.branch_id, str(self.branch_id)))
        if self.kind:
            parts.append(self.kind)
        if self.name:
            parts.append(f"姓名含“{self.name}”")
        if self.start or self.end:
            parts.append(f"{self.start or '不限'} 至 {self.end or '不限'}")
        return "，".join(parts) or "全部"


async def read_filters(view: StaffView) -> Filters:
    query = view.request.query
    filters = Filters()
    branch = _int(query.get("branch"))
    if branch is not None:
        await view.org(branch)  # 404 unless in scope
        filters.branch_id = branch
    kind = query.get("kind", "")
    if kind in {k.value for k in MeetingKind}:
        filters.kind = kind
    filters.start, filters.end = _day(query.get("from")), _day(query.get("to"))
    if (query.get("from") and filters.start is None) or (query.get("to") and filters.end is None):
        filters.problem = "日期看不懂，请写成 2026-11-01 这样。看不懂的日期没有用来筛选。"
    if filters.start and filters.end and filters.start > filters.end:
        filters.start, filters.end = filters.end, filters.start
    filters.name = " ".join(query.get("name", "").split())[:50]
    filters.page = max(1, min(_int(query.get("page")) or 1, 100_000))
    return filters


async def branch_choices(view: StaffView) -> list[tuple[int, str]]:
    """(id, name) of every branch in scope, in tree order, for the filter's select."""
    return [(node.id, node.name) for node, _ in await branches_under(view.session, view.scope)]


def pages(total: int, page: int) -> dict:
    last = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    return {"page": min(page, last), "last": last, "total": total}


# ---------------------------------------------------------------- exports


# ---------------------------------------------------------------- the overview


def _cell_words(cell) -> dict:
    """What a cell shows: its word, the dates held, and for several requirements which ones are missing."""
    words = CELL_WORDS[cell.status]
    missing = [slot for slot in cell.slots if slot.status == CellStatus.MISSING]
    due = [slot for slot in cell.slots if slot.status == CellStatus.NOT_DUE]
    notes = []
    if cell.required > 1:
        notes.append(f"已开 {cell.held}/{cell.required}")
    for slot in missing if cell.required > 1 else ():
        notes.append("缺：" + slot.period_label + (f" {slot.group}" if slot.group else ""))
    if cell.status != CellStatus.NOT_DUE and due and cell.required > 1:
        notes.append(f"{len(due)} 项未到期")
    return {"status": cell.status.value, "word": words, "dates": "、".join(md(day) for day in cell.dates),
            "notes": notes, "title": cell.kind.value}


@router.web.get(OVERVIEW_PAGE)
@staff_page
async def overview_page(view: StaffView) -> web.Response:
    period = view.request.query.get("period", "quarter")
    if period not in PERIOD_MONTHS:
        period = "quarter"
    now_day = today(view)
    day = _day(view.request.query.get("day")) or now_day
    if day > now_day:
        day = now_day
    # The period's grid and the two charts from one read of the months they cover.
    data = await overview_page_data(view.session, view.scope, period=period, today=now_day,
                                    settings=meeting_settings(view), day=day)
    row_template = aiohttp_jinja2.get_env(view.request.app).get_template(ROW_TEMPLATE)
    return view.render("console_overview.html", **overview_context(data, period, now_day, row_template))


# Each branch's row of the page as HTML, by the row: overview.py hands out the same BranchRow objects while
# a branch's figures do not change, so a row is worded and rendered once, not on every page (a county's
# year is some 2,000 cells). The row is kept beside its HTML, so that its id cannot be reused meanwhile.
_row_html: OrderedDict[int, tuple[BranchRow, Markup]] = OrderedDict()
ROWS_KEPT = 4096
ROW_TEMPLATE = "console_overview_row.html"


def _row_markup(row: BranchRow, template: jinja2.Template) -> Markup:
    kept = _row_html.get(id(row))
    if kept is not None and kept[0] is row:
        _row_html.move_to_end(id(row))
        return kept[1]
    html = Markup(template.render(row=row, cells=[_cell_words(cell) for cell in row.cells]))
    _row_html[id(row)] = (row, html)
    while len(_row_html) > ROWS_KEPT:
        _row_html.popitem(last=False)
    return html


def overview_context(data: OverviewPage, period: str, now_day: date, row_template: jinja2.Template) -> dict:
    """The overview template's values besides `view`; row_template is ROW_TEMPLATE from the console's
    Jinja2 environment (bench/console_overview.py renders the page with them too)."""
    overview = data.overview
    months = PERIOD_MONTHS[period]
    earlier = period_of(_add_months(overview.period.start, -months), months)
    later = overview.period.end if overview.period.end <= now_day else None
    # The chart module escapes every text it writes (bot/web/charts.py): its SVG goes in as it is.
    charts = [Markup(attendance_chart(attendance_points(data.months))), Markup(held_chart(held_points(data.quarters)))]
    rows = [{"row": row, "html": _row_markup(row, row_template)} for row in overview.rows]
    return dict(overview=overview, rows=rows, period=period, periods=PERIOD_LABELS, earlier=earlier.start.isoformat(),
                later=later.isoformat() if later else None, current=overview.period.contains(now_day), charts=charts,
                held_note=HELD_NOTE, md=md)


# ---------------------------------------------------------------- meetings


def _meeting_line(view: StaffView, row) -> list:
    return [row.branch_name, row.group_name, row.kind, f"{view.local(row.starts_at):%Y-%m-%d %H:%M}", row.place,
            row.topic, "已取消" if row.cancelled else ("已开" if row.held else "未签到"), row.expected, row.present,
            row.on_leave, row.expected - row.present - row.on_leave if row.held else "", row.signed - row.present,
            "有" if row.has_record else "无", row.photos]


MEETING_HEADER = ["支部", "党小组", "会议类型", "会议时间", "地点", "主题", "状态", "应到", "实到", "请假", "缺席",
                  "列席", "会议记录", "照片"]


async def _meetings(view: StaffView, filters: Filters, *, limit: int, offset: int):
    start, end = filters.times(view)
    return await meetings_in_scope(view.session, view.scope, branch_id=filters.branch_id, kind=filters.kind or None,
                                   start=start, end=end, limit=limit, offset=offset)


@router.web.get(MEETINGS_PAGE)
@staff_page
async def meetings_page(view: StaffView) -> web.Response:
    filters = await read_filters(view)
    rows, total = await _meetings(view, filters, limit=PAGE_SIZE, offset=(filters.page - 1) * PAGE_SIZE)
    return view.render("console_meetings.html", filters=filters, rows=rows, paging=pages(total, filters.page),
                       branches=await branch_choices(view), kinds=[kind.value for kind in MeetingKind])


async def _export_list(view: StaffView, what: str, fetch, line, header: list[str]) -> web.Response:
    """A list page's download (CSV or XLSX, from the address) of every row its filters select (not only the page
    shown), read in batches; refused when there are more than one download may hold."""
    filters = await read_filters(view)
    rows, total = await fetch(view, filters, limit=EXPORT_BATCH, offset=0)
    refused = refusal(view, what, total)
    if refused is not None:
        return refused
    while rows and len(rows) < total:
        more, total = await fetch(view, filters, limit=EXPORT_BATCH, offset=len(rows))
        if not more:
            break
        rows += more
    lines = [line(view, row) for row in rows]
    names = dict(await branch_choices(view))
    return await send_table(view, what, view.request.match_info["extension"], f"{view.scope.name} {what}", header,
                            lines, filters.describe(names))


@router.web.get(MEETINGS_PAGE + ".{extension:(csv|xlsx)}")
@staff_page
async def meetings_export(view: StaffView) -> web.Response:
    return await _export_list(view, "会议列表", _meetings, _meeting_line, MEETING_HEADER)


def _meeting_id(view: StaffView) -> int:
    meeting_id = _int(view.request.match_info.get("meeting_id"))
    if meeting_id is None:
        raise web.HTTPNotFound()
    return meeting_id


@router.web.get(MEETINGS_PAGE + "/{meeting_id}")
@staff_page
async def meeting_page(view: StaffView) -> web.Response:
    detail = await meeting_detail(view.session, _meeting_id(view), view.scope)
    if detail is None:
        raise web.HTTPNotFound()
    return view.render("console_meeting.html", meeting=detail)


@router.web.get(MEETINGS_PAGE + "/{meeting_id}/attendance.xlsx")
@staff_page
async def meeting_attendance_xlsx(view: StaffView) -> web.Response:
    detail = await meeting_detail(view.session, _meeting_id(view), view.scope)
    if detail is None:
        raise web.HTTPNotFound()
    meeting = await view.session.get(Meeting, detail.id)
    sheet = await meeting_sheet(view.session, meeting, view.settings.zone)
    buffer = io.BytesIO()
    await asyncio.to_thread(write_xlsx, buffer, [sheet], heading=sheet.title)
    local = view.local(detail.starts_at)
    name = file_part(f"签到表-{detail.branch_name}{detail.group_name}-{detail.kind}-{local:%Y-%m-%d}") + ".xlsx"
    await view.audit("export", f"导出签到表：{detail.branch_path} {detail.kind} {local:%Y-%m-%d %H:%M}（会议 {detail.id}）")
    return attachment(buffer.getvalue(), name, XLSX)


# ---------------------------------------------------------------- check-ins


CHECKIN_HEADER = ["姓名", "支部", "会议类型", "会议主题", "会议时间", "签到时间", "方式", "迟到", "代签人"]


async def _checkins(view: StaffView, filters: Filters, *, limit: int, offset: int):
    start, end = filters.times(view)
    return await checkin_log(view.session, view.scope, name_query=filters.name, branch_id=filters.branch_id,
                             start=start, end=end, limit=limit, offset=offset)


def _checkin_line(view: StaffView, row) -> list:
    return [row.name, row.branch_name, row.meeting_kind, row.meeting_topic,
            f"{view.local(row.meeting_starts_at):%Y-%m-%d %H:%M}", f"{view.local(row.checked_in_at):%Y-%m-%d %H:%M}",
            row.method_label, "迟到" if row.late else "", row.proxy_by or ""]


@router.web.get(CHECKINS_PAGE)
@staff_page
async def checkins_page(view: StaffView) -> web.Response:
    filters = await read_filters(view)
    rows, total = await _checkins(view, filters, limit=PAGE_SIZE, offset=(filters.page - 1) * PAGE_SIZE)
    return view.render("console_checkins.html", filters=filters, rows=rows, paging=pages(total, filters.page),
                       branches=await branch_choices(view))


@router.web.get(CHECKINS_PAGE + ".{extension:(csv|xlsx)}")
@staff_page
async def checkins_export(view: StaffView) -> web.Response:
    return await _export_list(view, "签到记录", _checkins, _checkin_line, CHECKIN_HEADER)

