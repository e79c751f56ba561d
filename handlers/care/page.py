"""A care case's page: what the visitor's message (走访任务) and the overdue reminder link to, signed for one member.

What it shows follows service.access_to, the one privacy rule:
- FULL (the member concerned, the visitor, the branch committee, staff above the branch): whom, why, the
  deadline, the visitor, every report as written, every visit (when, who went, what was said and given, the
  amount as written and its fund) and how many photos came with it.
- REPORTER: only what this member reported and whether the case has been visited; nothing of the visit.
- NONE: the invalid-link page, exactly as for a changed or expired link, so the address confirms nothing.

While the case is open its visitor (or a leader of its branch) can record the visit here: service.record_visit,
the chat's 走访 rule, which closes the case and thanks the reporters. The member concerned can ask that the
reporters no longer see the case ("不让上报人看到").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from aiohttp import web

from bot.web.pages import LinkGone, MemberPage
from handlers.care import service
from handlers.care.common import LEADERS, router
from storage import care as store
from storage.models import STAFF_ROLES, CareCase, CareStatus, CareVisit, Member, Organization

log = logging.getLogger(__name__)

# -- the form's limits: what the visit's columns hold (service.record_visit would cut longer text silently)
LIMITS = {"visitors": 200, "notes": service.MAX_VISIT_FIELD, "given": 200, "amount": 50, "fund": 100}
LABELS = {"visitors": "谁去的", "notes": "说了什么", "given": "送了什么", "amount": "金额", "fund": "经费来源"}
# How far back a visit may be dated (a visit recorded late is still recorded, a typo of a year is not).
OLDEST_VISIT_DAYS = 366

# -- texts
DAY_MISSING = "请填上走访的日期。"
DAY_UNREADABLE = "日期看不懂，请重新选一下走访的日期。"
DAY_FUTURE = "走访日期不能晚于今天。请填实际上门的那一天。"
DAY_TOO_OLD = "走访日期太早了（一年以前）。请检查一下日期。"
VISITORS_MISSING = "请写上谁去的（例如：李建国、张卫东）。"
TOO_LONG = "“{label}”太长了：最多 {limit} 字，现在是 {count} 字。请删短一些。"
HIDDEN_DONE = "上报人已经看不到这件事了。"


def campaign_label(key: str | None) -> str:
    """"春节:2027" (a campaign's key) as people say it: 2027年春节."""
    if not key:
        return ""
    name, _, year = key.rpartition(":")
    return f"{year}年{name}" if name and year.isdigit() else key


@dataclass(frozen=True)
class VisitShown:
    visit: CareVisit
    photos: int


async def _case(page: MemberPage) -> tuple[CareCase, service.Access]:
    """The case the link names and what this member may see of it (LinkGone when nothing)."""
    thing = page.subject.thing_id
    if page.member is None or not (thing.isascii() and thing.isdigit() and len(thing) <= 9):
        raise LinkGone("not a member's care link")
    case = await page.session.get(CareCase, int(thing))
    if case is None:
        raise LinkGone("no such case")
    access = await service.access_to(page.session, case, page.member)
    if access is service.Access.NONE:
        raise LinkGone("not this member's to see")
    return case, access


def may_record(case: CareCase, member: Member) -> bool:
    """The visitor, or a leader of the case's branch, while the case is open."""
    return case.status == CareStatus.OPEN.value and (
        member.id == case.visitor_id or (member.org_id == case.org_id and member.role in LEADERS))


async def _my_cases(page: MemberPage) -> list[CareCase]:
    """What a message about several cases links to: the open cases this member is to visit, a branch
    leader's whole branch, and for staff the cases gone to them (escalated) — each one theirs to read."""
    member, session = page.member, page.session
    found = {case.id: case for case in await store.open_cases_for_visitor(session, member.id)}
    if member.role in LEADERS:
        found.update((case.id, case) for case in await store.open_cases_of_branch(session, member.org_id))
    if member.role in STAFF_ROLES:
        scope = await session.get(Organization, member.org_id)
        found.update((case.id, case) for case in await store.escalated_cases_under(session, scope))
    return sorted(found.values(), key=lambda case: (case.deadline, case.id))


async def _mine_page(page: MemberPage) -> web.Response:
    if page.member is None or page.posted:
        raise LinkGone("the list is a member's, and has no form")
    cases = await _my_cases(page)
    return page.render("care_mine.html", cases=[(case, page.link_to(store.case_ref(case.id)), case.deadline < page.now)
                                                for case in cases])


@router.page("care")
async def care_page(page: MemberPage) -> web.Response:
    if page.subject.thing_id == store.MINE_REF.split(":", 1)[1]:
        return await _mine_page(page)
    case, access = await _case(page)
    if not page.posted:
        return await _show(page, case, access)
    action = page.form.get("action")
    if action == "visit" and access is service.Access.FULL and may_record(case, page.member):
        return await _record(page, case)
    if action == "hide" and page.member.id == case.member_id and not case.hidden_from_reporter:
        case.hidden_from_reporter = True
        log.info("care case %s hidden from its reporters by the member concerned", case.id)
    # Anything else (a second tap after the case closed, a form this member may not use) changes nothing.
    return page.back()


def _visit_day(text: str, today: date) -> tuple[date | None, str | None]:
    text = text.strip()
    if not text:
        return None, DAY_MISSING
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        return None, DAY_UNREADABLE
    if day > today:
        return None, DAY_FUTURE
    if day < today - timedelta(days=OLDEST_VISIT_DAYS):
        return None, DAY_TOO_OLD
    return day, None


def visit_time(day: date, page: MemberPage) -> datetime:
    """When the visit was: now if it was today, else noon of that day (the page asks for the day only)."""
    now = page.now
    if day == page.local(now).date():
        return now
    return datetime.combine(day, time(12, 0), tzinfo=page.settings.zone).astimezone(timezone.utc)


async def _record(page: MemberPage, case: CareCase) -> web.Response:
    typed = {name: page.form.get(name, "") for name in ("day", *LIMITS)}
    fields = {name: typed[name].strip() for name in LIMITS}
    day, error = _visit_day(typed["day"], page.local(page.now).date())
    if error is None and not fields["visitors"]:
        error = VISITORS_MISSING
    for name, limit in LIMITS.items():
        if error is None and len(fields[name]) > limit:
            error = TOO_LONG.format(label=LABELS[name], limit=limit, count=len(fields[name]))
    if error is not None:
        return await _show(page, case, service.Access.FULL, error=error, typed=typed, status=400)
    await service.record_visit(page.session, case, service.VisitFields(visited_at=visit_time(day, page), **fields),
                               by=page.member, now=page.now, settings=page.settings)
    return page.back()


async def _names(page: MemberPage, ids: set[int | None]) -> dict[int, str]:
    found = {}
    for member_id in ids - {None}:
        member = await page.session.get(Member, member_id)
        if member is not None:
            found[member_id] = member.name
    return found


async def _show(page: MemberPage, case: CareCase, access: service.Access, *, error: str | None = None,
                typed: dict[str, str] | None = None, status: int = 200) -> web.Response:
    session, member = page.session, page.member
    reports = await store.reports_of(session, case.id)
    visited = case.status == CareStatus.CLOSED.value
    if access is service.Access.REPORTER:
        # What this member reported, and whether the case was visited: nothing else.
        mine = [report for report in reports if report.reporter_id == member.id]
        return page.render("care.html", status=status, case=case, full=False, reports=[(member.name, r) for r in mine],
                           visited=visited)
    visits = await store.visits_of(session, case.id)
    media = await store.media_of(session, case.id)
    photos = [item for item in media if item.kind == "image"]
    names = await _names(page, {case.visitor_id} | {report.reporter_id for report in reports})
    branch = await session.get(Organization, case.org_id)
    others_reported = any(report.reporter_id != member.id for report in reports)
    today = page.local(page.now).date()
    return page.render(
        "care.html", status=status, case=case, full=True, branch=branch, visited=visited,
        campaign=campaign_label(case.campaign),
        overdue=not visited and case.deadline < page.now, visitor=names.get(case.visitor_id),
        reports=[(names.get(report.reporter_id, "—"), report) for report in reports],
        visits=[VisitShown(visit, sum(1 for item in photos if item.visit_id == visit.id)) for visit in visits],
        photos=len(photos), voices=len(media) - len(photos),
        can_record=may_record(case, member), error=error,
        typed=typed or {"day": today.isoformat(), "visitors": member.name},
        today=today.isoformat(), oldest=(today - timedelta(days=OLDEST_VISIT_DAYS)).isoformat(), limits=LIMITS,
        is_subject=member.id == case.member_id, can_hide=(member.id == case.member_id and others_reported
                                                         and not case.hidden_from_reporter),
        hidden_done=HIDDEN_DONE if case.hidden_from_reporter and member.id == case.member_id else None)

