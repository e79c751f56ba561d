"""The care feature's staff console pages (issue 15): cases, campaigns, the hardship register, a chart per township.

Who reads what is service.py's privacy rule: staff (组织员, 管理员) read the cases of every branch in their
subtree; a branch's secretary or deputy reads their own branch's; nobody else uses the console. A case or a
member outside that answers 404, like one that does not exist.

- /console/care: the counts, each festival campaign's progress (visited / open / overdue) and, per township,
  an SVG chart of the cases opened and the visits made in each of the last twelve months. Townships come in
  the tree's order; no branch is ranked or even named on the chart.
- /console/care/cases (filters: branch, occasion, status, campaign, dates; paginated) and its .csv/.xlsx of
  exactly what the filters select; /console/care/cases/{id}: the case as its page shows it in full.
- /console/care/register: the 困难党员台账 with the visits each member got; /console/care/register/{member id}:
  one entry, with a form (CSRF, audited) to put the member on the register, change it or take them off.
- /console/care/ledger.xlsx?year=YYYY: the paper-like ledger (export.py), as `zhibu export care` writes it.

Every export and change is written to the audit log, naming members and branches but never what anyone wrote.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from bot.keys import CONFIGS
from bot.web import charts
from bot.web.console import StaffView, add_nav, staff_page
from bot.web.exports import EXPORT_MAX, XLSX, attachment, refusal, send_table
from handlers.care import service
from handlers.care.common import router
from handlers.care.export import CareExportError, check_year, collect_ledger, file_name, write_ledger
from handlers.care.page import campaign_label
from handlers.care.settings import CareSettings
from storage import care as store
from storage.models import (CareCase, CareProfile, CareSource, CareStatus, CareVisit, Member, Organization,
                            OrgType)
from storage.orgs import PATH_SEPARATOR, tree_order, under

CARE_PAGE = "/console/care"
CASES_PAGE = CARE_PAGE + "/cases"
REGISTER_PAGE = CARE_PAGE + "/register"
LEDGER = CARE_PAGE + "/ledger.xlsx"
PAGE_SIZE = 50
CHART_MONTHS = 12
MAX_LEVEL, MAX_REASON = 20, 500
# A festival campaign's key, "春节:2027" (festivals.Campaign.key).
CAMPAIGN_KEY = re.compile(r"[^:]{1,10}:\d{4}")
# What a register entry's level usually says (the form suggests these; anything up to MAX_LEVEL is kept).
LEVELS = ["一般困难", "比较困难", "特别困难"]

add_nav("关怀走访", CARE_PAGE)

STATUS_WORDS = {"open": "未走访", "overdue": "已逾期", "closed": "已走访"}
SOURCE_WORDS = {CareSource.REPORT.value: "党员上报", CareSource.SECRETARY.value: "书记开单",
                CareSource.CAMPAIGN.value: "节日走访", CareSource.VISIT.value: "主动走访"}
CASE_HEADER = ["开单时间", "支部", "对象", "是否党员", "情况", "来源", "节日", "走访人", "期限", "状态", "走访日期"]

# -- texts
DATE_UNREADABLE = "日期看不懂，请写成 2026-11-01 这样。看不懂的日期没有用来筛选。"
SAVED = "已保存。"
LEVEL_TOO_LONG = f"困难程度最多 {MAX_LEVEL} 个字。"
REASON_TOO_LONG = f"困难原因最多 {MAX_REASON} 个字。"
SINCE_UNREADABLE = "列入时间看不懂，请重新选一下日期。"
SINCE_FUTURE = "列入时间不能晚于今天。"
FIND_NOBODY = "{branch}没有叫“{name}”的党员。请检查姓名。"
FIND_EMPTY = "请写上党员的姓名，再点“查找”。"


def care_settings(view: StaffView) -> CareSettings:
    return view.request.app[CONFIGS].of(CareSettings)


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat((text or "").strip()[:10]) if text and text.strip() else None
    except ValueError:
        return None


def today(view: StaffView) -> date:
    return view.local(view.now).date()


def midnight(day: date, view: StaffView) -> datetime:
    return datetime.combine(day, time(), tzinfo=view.settings.zone).astimezone(timezone.utc)


# ---------------------------------------------------------------- who reads what


def branches_read(view: StaffView):
    """The condition (on Organization) selecting the branches whose cases this viewer reads: staff, every
    organization in their subtree; a branch's secretary or deputy, their own branch (the privacy rule's
    "branch committee"; a 党总支's secretary reads no branch below it)."""
    if view.is_staff:
        return under(view.scope)
    return Organization.id == view.member.org_id


def reads_branch(view: StaffView, org: Organization | None) -> bool:
    return org is not None and view.in_scope(org) and (view.is_staff or org.id == view.member.org_id)


async def branch_choices(view: StaffView) -> list[tuple[int, str, str]]:
    """(id, name, path) of the branches this viewer reads, in tree order."""
    rows = (await view.session.execute(
        select(Organization.id, Organization.name, Organization.path)
        .where(branches_read(view), Organization.org_type == OrgType.BRANCH.value))).all()
    return sorted(((row.id, row.name, row.path) for row in rows), key=lambda row: tree_order(row[2]))


# ---------------------------------------------------------------- the cases list


@dataclass
class Filters:
    """The list's filters as the GET form sends them, checked: a branch out of reach is a 404."""

    branch_id: int | None = None
    occasion: str = ""
    status: str = ""
    campaign: str = ""
    start: date | None = None
    end: date | None = None
    page: int = 1
    problem: str = ""

    def query(self, **changes) -> str:
        values = {"branch": self.branch_id or "", "occasion": self.occasion, "status": self.status,
                  "campaign": self.campaign, "from": self.start or "", "to": self.end or "", "page": self.page}
        values.update(changes)
        shown = {key: value for key, value in values.items()
                 if value not in ("", None) and not (key == "page" and value == 1)}
        return ("?" + urlencode(shown)) if shown else ""

    def describe(self, branch_names: dict[int, str]) -> str:
        parts = []
        if self.branch_id:
            parts.append(branch_names.get(self.branch_id, str(self.branch_id)))
        if self.occasion:
            parts.append(self.occasion)
        if self.status:
            parts.append(STATUS_WORDS[self.status])
        if self.campaign:
            parts.append(campaign_label(self.campaign) + "走访")
        if self.start or self.end:
            parts.append(f"开单 {self.start or '不限'} 至 {self.end or '不限'}")
        return "，".join(parts) or "全部"


async def read_filters(view: StaffView, settings: CareSettings) -> Filters:
    query = view.request.query
    filters = Filters()
    branch = _int(query.get("branch"))
    if branch is not None:
        if not reads_branch(view, await view.session.get(Organization, branch)):
            raise web.HTTPNotFound()
        filters.branch_id = branch
    if query.get("occasion", "") in {occasion.name for occasion in settings.care_occasions}:
        filters.occasion = query["occasion"]
    if query.get("status", "") in STATUS_WORDS:
        filters.status = query["status"]
    if CAMPAIGN_KEY.fullmatch(query.get("campaign", "")):
        filters.campaign = query["campaign"]
    filters.start, filters.end = _day(query.get("from")), _day(query.get("to"))
    if (query.get("from", "").strip() and filters.start is None) or (query.get("to", "").strip() and filters.end is None):
        filters.problem = DATE_UNREADABLE
    if filters.start and filters.end and filters.start > filters.end:
        filters.start, filters.end = filters.end, filters.start
    filters.page = max(1, min(_int(query.get("page")) or 1, 100_000))
    return filters


@dataclass(frozen=True)
class CaseLine:
    id: int
    branch: str
    subject: str
    villager: bool
    occasion: str
    source: str
    campaign: str | None
    visitor: str | None
    opened_at: datetime
    deadline: datetime
    status: str
    visited_at: datetime | None

    def state(self, now: datetime) -> str:
        """open / overdue / closed: the status filter's words' keys."""
        if self.status == CareStatus.CLOSED.value:
            return "closed"
        return "overdue" if self.deadline < now else "open"


def case_conditions(view: StaffView, filters: Filters) -> list:
    now = view.now
    conditions = [branches_read(view)]
    if filters.branch_id:
        conditions.append(CareCase.org_id == filters.branch_id)
    if filters.occasion:
        conditions.append(CareCase.occasion == filters.occasion)
    if filters.status == "closed":
        conditions.append(CareCase.status == CareStatus.CLOSED.value)
    elif filters.status == "open":
        conditions.append(CareCase.status == CareStatus.OPEN.value)
    elif filters.status == "overdue":
        conditions += [CareCase.status == CareStatus.OPEN.value, CareCase.deadline < now]
    if filters.campaign:
        conditions.append(CareCase.campaign == filters.campaign)
    if filters.start:
        conditions.append(CareCase.opened_at >= midnight(filters.start, view))
    if filters.end:
        conditions.append(CareCase.opened_at < midnight(filters.end + timedelta(days=1), view))
    return conditions


async def cases_in_view(view: StaffView, filters: Filters, *, limit: int, offset: int) -> tuple[list[CaseLine], int]:
    """A page of the cases the filters select, newest first; and how many there are."""
    conditions = case_conditions(view, filters)
    total = (await view.session.execute(
        select(func.count()).select_from(CareCase).join(Organization, Organization.id == CareCase.org_id)
        .where(*conditions))).scalar_one()
    visitor = aliased(Member)
    visited = select(func.max(CareVisit.visited_at)).where(CareVisit.case_id == CareCase.id).scalar_subquery()
    rows = await view.session.execute(
        select(CareCase.id, Organization.name, CareCase.subject_name, CareCase.member_id, CareCase.occasion,
               CareCase.source, CareCase.campaign, visitor.name, CareCase.opened_at, CareCase.deadline,
               CareCase.status, visited)
        .join(Organization, Organization.id == CareCase.org_id)
        .outerjoin(visitor, visitor.id == CareCase.visitor_id)
        .where(*conditions).order_by(CareCase.opened_at.desc(), CareCase.id.desc()).limit(limit).offset(offset))
    lines = [CaseLine(case_id, branch, subject, member_id is None, occasion, source, campaign, visitor_name,
                      opened_at, deadline, status, _aware(visited_at))
             for (case_id, branch, subject, member_id, occasion, source, campaign, visitor_name, opened_at, deadline,
                  status, visited_at) in rows]
    return lines, total


def _aware(moment: datetime | None) -> datetime | None:
    """A time a scalar subquery returned (stored naive UTC; some drivers give it back without the zone)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


async def campaigns_in_view(view: StaffView) -> list[str]:
    rows = await view.session.execute(
        select(CareCase.campaign).join(Organization, Organization.id == CareCase.org_id)
        .where(branches_read(view), CareCase.campaign.is_not(None))
        .group_by(CareCase.campaign).order_by(func.min(CareCase.deadline).desc()))
    return [campaign for campaign, in rows]


def paging(total: int, page: int) -> dict:
    last = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    return {"page": min(page, last), "last": last, "total": total}


@router.web.get(CASES_PAGE)
@staff_page
async def cases_page(view: StaffView) -> web.Response:
    settings = care_settings(view)
    filters = await read_filters(view, settings)
    rows, total = await cases_in_view(view, filters, limit=PAGE_SIZE, offset=(filters.page - 1) * PAGE_SIZE)
    campaigns = await campaigns_in_view(view)
    return view.render("console_care_cases.html", filters=filters, rows=rows, paging=paging(total, filters.page),
                       branches=await branch_choices(view), occasions=[o.name for o in settings.care_occasions],
                       campaigns=[(key, campaign_label(key)) for key in campaigns], statuses=STATUS_WORDS,
                       sources=SOURCE_WORDS, now=view.now, campaign_label=campaign_label)


def _stamp(view: StaffView, moment: datetime | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
    return f"{view.local(moment):{pattern}}" if moment is not None else ""


def case_row(view: StaffView, line: CaseLine) -> list:
    return [_stamp(view, line.opened_at), line.branch, line.subject, "否（村民）" if line.villager else "是",
            line.occasion, SOURCE_WORDS.get(line.source, line.source), campaign_label(line.campaign),
            line.visitor or "", _stamp(view, line.deadline), STATUS_WORDS[line.state(view.now)],
            _stamp(view, line.visited_at, "%Y-%m-%d")]


@router.web.get(CASES_PAGE + ".{extension:(csv|xlsx)}")
@staff_page
async def cases_export(view: StaffView) -> web.Response:
    filters = await read_filters(view, care_settings(view))
    rows, total = await cases_in_view(view, filters, limit=EXPORT_MAX, offset=0)
    refused = refusal(view, "关怀走访", total)
    if refused is not None:
        return refused
    names = {branch_id: name for branch_id, name, _ in await branch_choices(view)}
    return await send_table(view, "关怀走访", view.request.match_info["extension"], f"{view.scope.name} 关怀走访",
                            CASE_HEADER, [case_row(view, line) for line in rows], filters.describe(names))


# ---------------------------------------------------------------- one case


async def named(view: StaffView, model, key: str):
    """The row of model whose id the address gives as `key`, or None."""
    row_id = _int(view.request.match_info.get(key))
    return await view.session.get(model, row_id) if row_id is not None else None


async def case_in_view(view: StaffView) -> tuple[CareCase, Organization]:
    """The case the address names, if this viewer reads it in full; else 404."""
    case = await named(view, CareCase, "case_id")
    if case is None:
        raise web.HTTPNotFound()
    branch = await view.session.get(Organization, case.org_id)
    if not reads_branch(view, branch) or \
            await service.access_to(view.session, case, view.member) is not service.Access.FULL:
        raise web.HTTPNotFound()
    return case, branch


@router.web.get(CASES_PAGE + "/{case_id}")
@staff_page
async def case_page(view: StaffView) -> web.Response:
    case, branch = await case_in_view(view)
    session = view.session
    reports = await store.reports_of(session, case.id)
    visits = await store.visits_of(session, case.id)
    media = await store.media_of(session, case.id)
    ids = {case.visitor_id, case.opened_by} | {report.reporter_id for report in reports} | \
        {visit.recorded_by for visit in visits}
    names = dict((await session.execute(
        select(Member.id, Member.name).where(Member.id.in_([i for i in ids if i is not None])))).all())
    photos = [item for item in media if item.kind == "image"]
    return view.render(
        "console_care_case.html", case=case, branch=branch, names=names, reports=reports,
        visits=[(visit, sum(1 for item in photos if item.visit_id == visit.id)) for visit in visits],
        photos=len(photos), voices=len(media) - len(photos), state=STATUS_WORDS[_state(case, view.now)],
        source=SOURCE_WORDS.get(case.source, case.source), campaign=campaign_label(case.campaign))


def _state(case: CareCase, now: datetime) -> str:
    if case.status == CareStatus.CLOSED.value:
        return "closed"
    return "overdue" if case.deadline < now else "open"


# ---------------------------------------------------------------- the care home: counts, campaigns, charts


@dataclass(frozen=True)
class MonthCount:
    month: date  # its first day
    opened: int
    visits: int


@dataclass(frozen=True)
class TownshipMonths:
    name: str
    months: tuple[MonthCount, ...]


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


async def township_months(view: StaffView, *, months: int = CHART_MONTHS) -> list[TownshipMonths]:
    """For each township in view (the 党委 just below a county's staff; else the viewer's own organization),
    the cases opened and the visits made in each of the last `months` local months, oldest first."""
    zone = view.settings.zone
    current = today(view).replace(day=1)
    first = add_months(current, -(months - 1))
    start, end = midnight(first, view), midnight(add_months(current, 1), view)
    committees = (await view.session.execute(
        select(Organization.id, Organization.name, Organization.path)
        .where(under(view.scope), Organization.org_type == OrgType.COMMITTEE.value,
               Organization.id != view.scope.id))).all() if view.is_staff else []
    towns = {row.id: (row.name, row.path) for row in committees}
    counts: dict[int, dict[date, list[int]]] = {}

    def town_of(tree_path: str) -> int:
        for part in tree_path[len(view.scope.tree_path):].strip(PATH_SEPARATOR).split(PATH_SEPARATOR):
            if part.isdigit() and int(part) in towns:
                return int(part)
        return view.scope.id

    def add(tree_path: str, moment: datetime, column: int) -> None:
        local = moment.astimezone(zone)
        counts.setdefault(town_of(tree_path), {}).setdefault(date(local.year, local.month, 1), [0, 0])[column] += 1

    opened = await view.session.execute(
        select(Organization.tree_path, CareCase.opened_at).join(Organization, Organization.id == CareCase.org_id)
        .where(branches_read(view), CareCase.opened_at >= start, CareCase.opened_at < end))
    for tree_path, moment in opened:
        add(tree_path, moment, 0)
    visits = await view.session.execute(
        select(Organization.tree_path, CareVisit.visited_at).join(CareCase, CareCase.id == CareVisit.case_id)
        .join(Organization, Organization.id == CareCase.org_id)
        .where(branches_read(view), CareVisit.visited_at >= start, CareVisit.visited_at < end))
    for tree_path, moment in visits:
        add(tree_path, moment, 1)
    # Every township in tree order (a quiet one shows empty months), then the branches straight under the scope.
    shown = sorted(towns, key=lambda town_id: tree_order(towns[town_id][1]))
    if view.scope.id in counts or not towns:
        shown.append(view.scope.id)
    return [TownshipMonths(towns[town_id][0] if town_id in towns else
                           (f"{view.scope.name}直属" if towns else view.scope.name),
                           tuple(MonthCount(month, *counts.get(town_id, {}).get(month, [0, 0]))
                                 for month in (add_months(first, index) for index in range(months))))
            for town_id in shown]


def month_points(months: Sequence[MonthCount]) -> list[tuple[str, int, int]]:
    """(label, opened, visits): "11月", with the year under the first bar and under each January."""
    return [(f"{item.month.month}月" + (f"\n{item.month.year}年" if index == 0 or item.month.month == 1 else ""),
             item.opened, item.visits) for index, item in enumerate(months)]


def visits_chart(points: Sequence[tuple[str, int, int]], *, title: str, chart_id: str) -> str:
    """Two bars a month: the cases opened (outlined) and the visits made (solid), each with its number; drawn
    with bot.web.charts' pieces, so it reads like the console's other charts (accessible, no script)."""
    bottom, height = charts.HEIGHT - charts.BOTTOM, charts.HEIGHT - charts.BOTTOM - charts.TOP
    maximum = charts._nice_ceiling(max((max(opened, visits) for _, opened, visits in points), default=0))
    # Whole numbers on the axis: 0…5 one by one, else fifths of the round top (10, 20, 50, 100… all divide by 5).
    step = 1 if maximum <= 5 else maximum // 5
    body = charts._axis(maximum, list(range(0, int(maximum) + 1, int(step))), "")
    for offset, (name, fill) in enumerate((("开单", "#ffffff"), ("走访", charts.RED))):
        x = charts.LEFT + offset * 84
        body.append(f'<rect x="{x}" y="34" width="14" height="14" fill="{fill}" stroke="{charts.RED}" '
                    f'stroke-width="1.5"/>')
        body.append(charts._text(x + 20, 46, name, anchor="start", size=13))
    slot, bar = charts._slots(len(points))
    bar = min(bar / 2, 22)
    described = []
    for index, (label, opened, visits) in enumerate(points):
        centre = charts.LEFT + slot * (index + 0.5)
        summary = f"开单 {opened}，走访 {visits}"
        described.append(f"{charts._one_line(label)}：{summary}")
        body.append(charts._text(centre, bottom + 18, label, size=12))
        bars = []
        for x, value, fill, bold in ((centre - bar - 1, opened, "#ffffff", False), (centre + 1, visits, charts.RED, True)):
            top = bottom - (height * value / maximum if maximum else 0)
            if value:  # an empty month stays empty: its zeros are in the description and the tooltip
                bars.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{bar:.1f}" height="{bottom - top:.1f}" '
                            f'fill="{fill}" stroke="{charts.RED}" stroke-width="1.5"/>')
                bars.append(charts._text(x + bar / 2, top - 4, str(value), size=11, bold=bold))
        body.append(f'<g><title>{charts._e(charts._one_line(label))}：{charts._e(summary)}</title>{"".join(bars)}</g>')
    description = "每月开单的走访件数和实际走访次数：" + ("；".join(described) if described else "没有数据") + "。"
    return charts._frame(chart_id, title, description, body)


@router.web.get(CARE_PAGE)
@staff_page
async def care_home(view: StaffView) -> web.Response:
    now = view.now
    counts = dict((await view.session.execute(
        select(CareCase.status, func.count()).join(Organization, Organization.id == CareCase.org_id)
        .where(branches_read(view)).group_by(CareCase.status))).all())
    overdue = (await view.session.execute(
        select(func.count()).select_from(CareCase).join(Organization, Organization.id == CareCase.org_id)
        .where(branches_read(view), CareCase.status == CareStatus.OPEN.value, CareCase.deadline < now))).scalar_one()
    branch_ids = [branch_id for branch_id, _, _ in await branch_choices(view)]
    campaigns = await store.campaign_progress(view.session, branch_ids, now)
    towns = await township_months(view)
    figures = [Markup(visits_chart(month_points(town.months), title=f"{town.name} 每月开单与走访",
                                   chart_id=f"care-{index}")) for index, town in enumerate(towns)]
    return view.render("console_care.html", open=counts.get(CareStatus.OPEN.value, 0), overdue=overdue,
                       closed=counts.get(CareStatus.CLOSED.value, 0), campaigns=campaigns,
                       campaign_label=campaign_label, charts=figures, year=today(view).year)


# ---------------------------------------------------------------- the hardship register


@dataclass(frozen=True)
class VisitGot:
    case_id: int
    visited_at: datetime
    occasion: str
    visitors: str
    given: str
    amount: str
    fund: str


@dataclass
class RegisterEntry:
    member_id: int
    name: str
    branch: str
    path: str
    level: str
    reason: str
    since: date | None
    visits: list[VisitGot]


async def visits_got(view: StaffView, member_ids: list[int]) -> dict[int, list[VisitGot]]:
    """The visits each of these members got, newest first."""
    if not member_ids:
        return {}
    rows = await view.session.execute(
        select(CareCase.member_id, CareCase.id, CareVisit.visited_at, CareCase.occasion, CareVisit.visitors,
               CareVisit.given, CareVisit.amount, CareVisit.fund)
        .join(CareCase, CareCase.id == CareVisit.case_id)
        .where(CareCase.member_id.in_(member_ids)).order_by(CareVisit.visited_at.desc(), CareVisit.id.desc()))
    found: dict[int, list[VisitGot]] = {}
    for member_id, *visit in rows:
        found.setdefault(member_id, []).append(VisitGot(*visit))
    return found


async def register_in_view(view: StaffView, branch_id: int | None) -> list[RegisterEntry]:
    """The members on the register in the branches this viewer reads (or one of them), in tree order."""
    conditions = [branches_read(view), Member.hardship.is_(True)]
    if branch_id is not None:
        conditions.append(Member.org_id == branch_id)
    rows = (await view.session.execute(
        select(Member.id, Member.name, Organization.name, Organization.path, CareProfile.hardship_level,
               CareProfile.hardship_reason, CareProfile.hardship_since)
        .join(Organization, Organization.id == Member.org_id)
        .outerjoin(CareProfile, CareProfile.member_id == Member.id).where(*conditions))).all()
    rows.sort(key=lambda row: (tree_order(row[3]), row[0]))
    got = await visits_got(view, [row[0] for row in rows])
    return [RegisterEntry(member_id, name, branch, path, level or "", reason or "", since, got.get(member_id, []))
            for member_id, name, branch, path, level, reason, since in rows]


@router.web.get(REGISTER_PAGE)
@staff_page
async def register_page(view: StaffView) -> web.Response:
    return await _register(view)


async def _register(view: StaffView, *, problem: str = "", found: list | None = None, status: int = 200,
                    name: str = "", find_branch: int | None = None) -> web.Response:
    branch_id = _int(view.request.query.get("branch"))
    if branch_id is not None and not reads_branch(view, await view.session.get(Organization, branch_id)):
        raise web.HTTPNotFound()
    branches = await branch_choices(view)
    return view.render("console_care_register.html", status=status, entries=await register_in_view(view, branch_id),
                       branches=branches, branch_id=branch_id, problem=problem, found=found or [], name=name,
                       find_branch=find_branch or (branches[0][0] if len(branches) == 1 else None),
                       year=today(view).year)


@router.web.get(REGISTER_PAGE + "/find")
@staff_page
async def register_find(view: StaffView) -> web.Response:
    """Put a member on the register: find them by name in a branch, then their entry's form."""
    query = view.request.query
    branch_id = _int(query.get("find_branch"))
    branch = await view.session.get(Organization, branch_id) if branch_id is not None else None
    if not reads_branch(view, branch):
        raise web.HTTPNotFound()
    name = " ".join(query.get("name", "").split())[:50]
    if not name:
        return await _register(view, problem=FIND_EMPTY, status=400, find_branch=branch.id)
    matches = list((await view.session.execute(
        select(Member).where(Member.org_id == branch.id, Member.name == name).order_by(Member.id))).scalars())
    if len(matches) == 1:
        return view.back(f"{REGISTER_PAGE}/{matches[0].id}")
    if not matches:
        return await _register(view, problem=FIND_NOBODY.format(branch=branch.name, name=name), status=404,
                               name=name, find_branch=branch.id)
    return await _register(view, found=matches, name=name, find_branch=branch.id)


async def member_in_view(view: StaffView) -> tuple[Member, Organization]:
    member = await named(view, Member, "member_id")
    branch = await view.session.get(Organization, member.org_id) if member is not None else None
    if member is None or not reads_branch(view, branch):
        raise web.HTTPNotFound()
    return member, branch


@router.web.get(REGISTER_PAGE + "/{member_id:\\d+}")
@staff_page
async def entry_page(view: StaffView) -> web.Response:
    member, branch = await member_in_view(view)
    saved = SAVED if view.request.query.get("saved") == "1" else ""
    return await _entry(view, member, branch, saved=saved)


async def _entry(view: StaffView, member: Member, branch: Organization, *, saved: str = "", problem: str = "",
                 typed: dict | None = None, status: int = 200) -> web.Response:
    profile = await store.profile_of(view.session, member.id)
    if typed is None:
        typed = {"on": member.hardship, "level": profile.hardship_level if profile else "",
                 "reason": profile.hardship_reason if profile else "",
                 "since": profile.hardship_since.isoformat() if profile and profile.hardship_since else ""}
    got = (await visits_got(view, [member.id])).get(member.id, [])
    updated_by = await view.session.get(Member, profile.updated_by) if profile and profile.updated_by else None
    return view.render("console_care_entry.html", status=status, member=member, branch=branch, profile=profile,
                       typed=typed, visits=got, saved=saved, problem=problem, levels=LEVELS, today=today(view),
                       updated_by=updated_by.name if updated_by else None, max_reason=MAX_REASON)


@router.web.post(REGISTER_PAGE + "/{member_id:\\d+}")
@staff_page
async def entry_save(view: StaffView) -> web.Response:
    member, branch = await member_in_view(view)
    form = view.form
    typed = {"on": form.get("on") == "1", "level": " ".join(form.get("level", "").split()),
             "reason": form.get("reason", "").strip(), "since": form.get("since", "").strip()}
    since = _day(typed["since"])
    problem = ""
    if len(typed["level"]) > MAX_LEVEL:
        problem = LEVEL_TOO_LONG
    elif len(typed["reason"]) > MAX_REASON:
        problem = REASON_TOO_LONG
    elif typed["since"] and since is None:
        problem = SINCE_UNREADABLE
    elif since is not None and since > today(view):
        problem = SINCE_FUTURE
    if problem:
        return await _entry(view, member, branch, problem=problem, typed=typed, status=400)
    profile = await store.profile_of(view.session, member.id)
    if profile is None:
        profile = CareProfile(member_id=member.id, updated_at=view.now)
        view.session.add(profile)
    was_on = member.hardship
    member.hardship = typed["on"]
    profile.hardship_level, profile.hardship_reason, profile.hardship_since = typed["level"], typed["reason"], since
    profile.updated_by, profile.updated_at = view.member.id, view.now
    change = "列入" if typed["on"] and not was_on else "移出" if was_on and not typed["on"] else "更新"
    # The member and the branch, never the reason: the audit log is read more widely than the register.
    await view.audit("change", f"困难党员台账：{change} {member.name}（{branch.name}）")
    return view.back(f"{REGISTER_PAGE}/{member.id}?saved=1")


# ---------------------------------------------------------------- the ledger


@router.web.get(LEDGER)
@staff_page
async def ledger_export(view: StaffView) -> web.Response:
    year = _int(view.request.query.get("year")) or today(view).year
    try:
        check_year(year)
    except CareExportError:
        raise web.HTTPNotFound() from None
    ledger = await collect_ledger(view.session, branches_read(view), org_name=view.scope.name, year=year,
                                  zone=view.settings.zone)
    buffer = io.BytesIO()
    await asyncio.to_thread(write_ledger, buffer, ledger)
    await view.audit("export", f"导出关怀走访台账（{year}年，{len(ledger.register)} 人，{len(ledger.visits)} 次走访）")
    return attachment(buffer.getvalue(), file_name(view.scope.name, year), XLSX)

