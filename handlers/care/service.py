"""The care feature's service functions: opening cases (by report, by a leader, by a festival campaign),
choosing and changing the visitor, recording visits, who may read a case, and the overdue sweep.

The chat handlers, the member page, the console and the jobs all call these; none of them writes a care row
itself. Every function works inside the caller's transaction and queues its messages in the outbox there, so
a case and the message about it commit together or not at all.

Privacy (issue 15): a case is read in full by the member it concerns, its visitor, the branch committee and
the staff above the branch; a reporter reads only what they reported (and nothing once the member concerned
asked for that); anyone else reads nothing, and a page or console URL naming the case answers as if it did
not exist. Log lines name cases by id only, never their words.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox import Outgoing, enqueue
from bot.summary import Summary
from handlers.care.festivals import Campaign, age_on
from handlers.care.settings import FESTIVAL_OCCASION, CareSettings
from storage import care as store
from storage.members import bound_leaders, leader_ids
from storage.models import (BRANCH_LEADERS, COMMITTEE_ROLES, CareCase, CareReport, CareSource, CareStatus, CareVisit,
                            Member, Organization)

log = logging.getLogger(__name__)

MESSAGE_KIND = "care"  # picks the template message for everything this feature sends

# -- texts (what people wrote stands at a line's end, so their punctuation is never doubled by ours)
TO_VISITOR = ("【走访任务】{subject}（{occasion}），请在 {deadline} 前上门看望。\n"
              "看望后回复 走访 记下情况。")
TO_VISITOR_CAMPAIGN = ("【{label}走访】本支部有 {count} 位党员要在节前看望：{names}。\n"
                       "请在 {deadline} 前上门，看望后回复 走访 逐一记下。")
OVERDUE = "【走访提醒】{cases}已过了走访期限，还没有走访记录。看望后请回复 走访 记下；不方便的话请告诉书记改派。"
ESCALATED = ("【走访逾期】{branch}：{cases}过期一天以上仍未走访。已提醒过走访人，请关心一下。"
             "详情见后台“关怀走访”。")
DIGEST = "【每日走访】本支部还有 {open} 件走访未完成{overdue}：\n{lines}\n回复 走访情况 查看全部。"
DIGEST_OVERDUE = "，其中 {count} 件已逾期"
THANKS = "您上报的情况，支部已经上门看望了。谢谢您的关心！"

MAX_SUBJECT = 50
MAX_DETAILS = 1000
MAX_VISIT_FIELD = 1000


class Access(Enum):
    NONE = "none"
    REPORTER = "reporter"  # only what they reported
    FULL = "full"


@dataclass(frozen=True)
class Opened:
    case: CareCase
    joined: bool  # the report joined an open case of the same occasion for the same member


def local_text(moment: datetime, zone) -> str:
    local = moment.astimezone(zone)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def deadline_for(occasion: str, opened_at: datetime, settings: CareSettings) -> datetime:
    found = settings.occasion(occasion)
    hours = found.due_hours if found is not None else 24 * 7
    return opened_at + timedelta(hours=hours)


def festival_deadline(day: date, zone) -> datetime:
    """Festival visits are made before the festival: due on its eve at 20:00 local time (before quiet
    hours, so the overdue reminder can go out that evening)."""
    return datetime.combine(day - timedelta(days=1), time(20, 0), tzinfo=zone).astimezone(timezone.utc)


async def choose_visitor(session: AsyncSession, branch_id: int, member_id: int | None) -> Member | None:
    """The member's designated contact if set, else the branch's secretary (else a deputy)."""
    if member_id is not None:
        profile = await store.profile_of(session, member_id)
        if profile is not None and profile.contact_id is not None:
            contact = await session.get(Member, profile.contact_id)
            if contact is not None:
                return contact
    secretary = await store.branch_secretary(session, branch_id)
    if secretary is None or secretary.id != member_id:
        return secretary
    # The secretary's own case: a deputy, else a committee member visits (nobody is their own visitor).
    for roles in (BRANCH_LEADERS, COMMITTEE_ROLES):
        other = next((leader_id for leader_id in await leader_ids(session, branch_id, roles) if leader_id != member_id),
                     None)
        if other is not None:
            return await session.get(Member, other)
    return secretary


async def access_to(session: AsyncSession, case: CareCase, viewer: Member | None) -> Access:
    if viewer is None or viewer.id is None:
        return Access.NONE
    if viewer.id in (case.member_id, case.visitor_id):
        return Access.FULL
    if viewer.org_id == case.org_id and viewer.role in {role.value for role in COMMITTEE_ROLES}:
        return Access.FULL
    branch = await session.get(Organization, case.org_id)
    if branch is not None and await store.staff_cover(session, viewer, branch):
        return Access.FULL
    if not case.hidden_from_reporter and viewer.id in await store.reporter_ids(session, case.id):
        return Access.REPORTER
    return Access.NONE


async def tell_visitor(session: AsyncSession, case: CareCase, visitor: Member, *, now: datetime,
                       settings: CareSettings) -> int:
    """The visitor hears of the case at once, with a link to its page (one message per case and visitor)."""
    text = TO_VISITOR.format(subject=case.subject_name, occasion=case.occasion,
                             deadline=local_text(case.deadline, settings.zone))
    item = Outgoing(key=f"care:{case.id}:visitor:{visitor.id}", kind=MESSAGE_KIND, text=text, member_id=visitor.id,
                    ref=store.case_ref(case.id),
                    summary=Summary(title="走访任务", content=f"{case.subject_name} {case.occasion}",
                                    time=local_text(case.deadline, settings.zone)))
    return await enqueue(session, [item], now=now, settings=settings)


async def open_case(session: AsyncSession, *, branch: Organization, subject: Member | None, subject_name: str,
                    occasion: str, details: str, reporter: Member | None, source: CareSource, now: datetime,
                    settings: CareSettings, visitor: Member | None = None, notify: bool = True) -> Opened:
    """Open a case, or join the open one: a report of the same occasion for the same member within
    care_join_days adds a report to it instead of opening another. The visitor is told at once (unless they
    are the one opening it, who sees it in their reply)."""
    subject_name = (subject.name if subject is not None else subject_name)[:MAX_SUBJECT]
    details = details[:MAX_DETAILS]
    if subject is not None and source in (CareSource.REPORT, CareSource.SECRETARY):
        joined = await store.open_case_like(session, member_id=subject.id, occasion=occasion,
                                            since=now - timedelta(days=settings.care_join_days))
        if joined is not None:
            if reporter is not None:
                session.add(CareReport(case_id=joined.id, reporter_id=reporter.id, details=details, reported_at=now))
            log.info("care report joined case %s", joined.id)
            return Opened(joined, joined=True)
    if visitor is None:
        visitor = await choose_visitor(session, branch.id, subject.id if subject is not None else None)
    case = CareCase(org_id=branch.id, member_id=subject.id if subject is not None else None,
                    subject_name=subject_name, occasion=occasion, source=source.value,
                    visitor_id=visitor.id if visitor is not None else None,
                    deadline=deadline_for(occasion, now, settings),
                    opened_by=reporter.id if reporter is not None else None, opened_at=now)
    session.add(case)
    await session.flush()
    if reporter is not None and source in (CareSource.REPORT, CareSource.SECRETARY):
        session.add(CareReport(case_id=case.id, reporter_id=reporter.id, details=details, reported_at=now))
    if notify and visitor is not None and (reporter is None or visitor.id != reporter.id):
        await tell_visitor(session, case, visitor, now=now, settings=settings)
    log.info("care case %s opened (%s, source %s)", case.id, occasion, source.value)
    return Opened(case, joined=False)


async def reassign(session: AsyncSession, case: CareCase, visitor: Member, *, now: datetime,
                   settings: CareSettings) -> None:
    """A leader hands the case to another visitor, who is told at once. The overdue reminder and the
    escalation stay as they were: a case does not get a fresh grace period by being passed on."""
    case.visitor_id = visitor.id
    await tell_visitor(session, case, visitor, now=now, settings=settings)
    log.info("care case %s reassigned", case.id)


AMOUNT = re.compile(r"^\s*(?:慰问金|现金|钱)?\s*(\d{1,7}(?:\.\d{1,2})?)\s*(?:元|块钱|块|元钱)?\s*$")


def amount_in_fen(written: str) -> int | None:
    """The amount someone wrote ("500", "500元", "200块", "慰问金300元") in fen; None when it is not one
    plain number (it is still kept as written)."""
    match = AMOUNT.match(written.replace(",", "").replace("，", ""))
    if match is None:
        return None
    yuan, _, jiao = match.group(1).partition(".")
    return int(yuan) * 100 + int((jiao + "00")[:2])


@dataclass(frozen=True)
class VisitFields:
    visited_at: datetime
    visitors: str
    notes: str = ""
    given: str = ""
    amount: str = ""
    fund: str = ""


async def record_visit(session: AsyncSession, case: CareCase, fields: VisitFields, *, by: Member, now: datetime,
                       settings: CareSettings) -> CareVisit:
    """Record the visit and close the case; reporters get a thank-you that says nothing private (none when
    the member concerned asked that they no longer see the case: even a thank-you would tell them)."""
    visit = CareVisit(case_id=case.id, visited_at=fields.visited_at, visitors=fields.visitors[:200],
                      notes=fields.notes[:MAX_VISIT_FIELD], given=fields.given[:200], amount=fields.amount[:50],
                      amount_fen=amount_in_fen(fields.amount), fund=fields.fund[:100], recorded_by=by.id,
                      recorded_at=now)
    session.add(visit)
    case.status = CareStatus.CLOSED.value
    case.closed_at = now
    await session.flush()
    reporters = [] if case.hidden_from_reporter else await store.reporter_ids(session, case.id)
    thanks = [Outgoing(key=f"care:{case.id}:thanks:{reporter_id}", kind=MESSAGE_KIND, text=THANKS,
                       member_id=reporter_id, summary=Summary(title="走访完成", content="您上报的情况已看望"))
              for reporter_id in reporters if reporter_id not in (by.id, case.member_id, case.visitor_id)]
    if thanks:
        await enqueue(session, thanks, now=now, settings=settings)
    log.info("care case %s visited (visit %s)", case.id, visit.id)
    return visit


async def visit_without_case(session: AsyncSession, *, branch: Organization, subject: Member | None,
                             subject_name: str, occasion: str, fields: VisitFields, by: Member, now: datetime,
                             settings: CareSettings) -> CareVisit:
    """A visit someone made on their own initiative: a case is opened to hold it and closed by it."""
    opened = await open_case(session, branch=branch, subject=subject, subject_name=subject_name, occasion=occasion,
                             details="", reporter=None, source=CareSource.VISIT, now=now, settings=settings,
                             visitor=by, notify=False)
    return await record_visit(session, opened.case, fields, by=by, now=now, settings=settings)


# ---------------------------------------------------------------- festival campaigns


def campaign_targets(members: list[store.CampaignMember], campaign: Campaign) -> list[Member]:
    """Who a campaign visits in one branch: the hardship register, the branch's own festival list, and the
    festival's groups (重阳: aged 70 and over; 七一: 50 years or more in the party, and old cadres)."""
    also = set(campaign.festival.also)
    chosen = []
    for entry in members:
        member, profile = entry.member, entry.profile
        age = age_on(member.birth_date, campaign.day)
        years = age_on(member.join_date, campaign.day)  # whole years in the party
        if (member.hardship or (profile is not None and profile.festival_visits)
                or ("age70" in also and age is not None and age >= 70)
                or ("party50" in also and years is not None and years >= 50)
                or ("old_cadre" in also and profile is not None and profile.old_cadre)):
            chosen.append(member)
    return chosen


async def open_campaign(session: AsyncSession, branch: Organization, campaign: Campaign, *, now: datetime,
                        settings: CareSettings) -> int:
    """Open the campaign's cases in one branch (once per member: a rerun adds nothing) and tell each visitor
    once, in one message listing their members. Returns how many cases were opened."""
    members = await store.branch_members_with_profiles(session, branch.id)
    already = await store.campaign_case_members(session, campaign.key, branch.id)
    deadline = festival_deadline(campaign.day, settings.zone)
    by_visitor: dict[int, tuple[Member, list[CareCase]]] = {}
    opened = 0
    for member in campaign_targets(members, campaign):
        if member.id in already:
            continue
        visitor = await choose_visitor(session, branch.id, member.id)
        case = CareCase(org_id=branch.id, member_id=member.id, subject_name=member.name, occasion=FESTIVAL_OCCASION,
                        source=CareSource.CAMPAIGN.value, campaign=campaign.key,
                        visitor_id=visitor.id if visitor is not None else None, deadline=deadline, opened_at=now)
        session.add(case)
        opened += 1
        if visitor is not None:
            by_visitor.setdefault(visitor.id, (visitor, []))[1].append(case)
    await session.flush()
    items = []
    for visitor, cases in by_visitor.values():
        names = "、".join(case.subject_name for case in cases)
        items.append(Outgoing(
            key=f"care:campaign:{campaign.key}:{branch.id}:{visitor.id}", kind=MESSAGE_KIND,
            text=TO_VISITOR_CAMPAIGN.format(label=campaign.label, count=len(cases), names=names,
                                            deadline=local_text(deadline, settings.zone)),
            member_id=visitor.id, ref=store.case_ref(cases[0].id) if len(cases) == 1 else store.MINE_REF,
            summary=Summary(title=f"{campaign.label}走访", content=f"{len(cases)}位：{names}",
                            time=local_text(deadline, settings.zone))))
    if items:
        await enqueue(session, items, now=now, settings=settings)
    if opened:
        log.info("care campaign %s opened %d cases in branch %s", campaign.key, opened, branch.id)
    return opened


# ---------------------------------------------------------------- overdue: remind once, then escalate once


def _case_list(cases: list[CareCase]) -> str:
    return "、".join(f"{case.subject_name}（{case.occasion}）" for case in cases)


def _batch_key(prefix: str, cases: list[CareCase]) -> str:
    digest = hashlib.sha256(",".join(str(case.id) for case in cases).encode()).hexdigest()[:16]
    return f"{prefix}:{digest}"


async def remind_overdue(session: AsyncSession, *, now: datetime, settings: CareSettings) -> int:
    """Cases past their deadline and not yet reminded: each visitor gets one message listing theirs (a
    reminder: quiet hours and 关闭提醒 hold it). Marked reminded whatever the outbox does with it."""
    cases = list((await session.execute(
        select(CareCase).where(CareCase.status == CareStatus.OPEN.value, CareCase.deadline < now,
                               CareCase.reminded_at.is_(None)).order_by(CareCase.id))).scalars())
    by_visitor: dict[int | None, list[CareCase]] = {}
    for case in cases:
        case.reminded_at = now
        by_visitor.setdefault(case.visitor_id, []).append(case)
    items = [Outgoing(key=_batch_key(f"care:overdue:{visitor_id}", mine), kind=MESSAGE_KIND,
                      text=OVERDUE.format(cases=_case_list(mine)), member_id=visitor_id,
                      ref=store.case_ref(mine[0].id) if len(mine) == 1 else store.MINE_REF, reminder=True,
                      summary=Summary(title="走访提醒", content=f"已过期限：{_case_list(mine)}"))
             for visitor_id, mine in by_visitor.items() if visitor_id is not None]
    if items:
        await enqueue(session, items, now=now, settings=settings)
    return len(cases)


async def escalate_overdue(session: AsyncSession, *, now: datetime, settings: CareSettings) -> int:
    """Cases reminded care_escalate_after_hours ago and still open go to the staff who cover their branch,
    once (not a reminder: never muted)."""
    cutoff = now - timedelta(hours=settings.care_escalate_after_hours)
    cases = list((await session.execute(
        select(CareCase).where(CareCase.status == CareStatus.OPEN.value, CareCase.reminded_at <= cutoff,
                               CareCase.escalated_at.is_(None)).order_by(CareCase.org_id, CareCase.id))).scalars())
    by_branch: dict[int, list[CareCase]] = {}
    for case in cases:
        case.escalated_at = now
        by_branch.setdefault(case.org_id, []).append(case)
    items = []
    for branch_id, mine in by_branch.items():
        branch = await session.get(Organization, branch_id)
        for staff in await store.covering_staff(session, branch):
            items.append(Outgoing(key=_batch_key(f"care:escalate:{staff.id}", mine), kind=MESSAGE_KIND,
                                  text=ESCALATED.format(branch=branch.name, cases=_case_list(mine)), member_id=staff.id,
                                  ref=store.MINE_REF,
                                  summary=Summary(title="走访逾期", content=f"{branch.name}：{_case_list(mine)}")))
    if items:
        await enqueue(session, items, now=now, settings=settings)
    return len(cases)


def told_today(case: CareCase, member_id: int, today_start: datetime) -> bool:
    """Whether this member already had a care message about the case today: as its visitor, when it
    opened or when it was reminded."""
    if case.visitor_id != member_id:
        return False
    return case.opened_at >= today_start or (case.reminded_at is not None and case.reminded_at >= today_start)


async def send_digests(session: AsyncSession, *, now: datetime, settings: CareSettings) -> int:
    """Each branch's secretaries get one list a day of the open cases, overdue ones marked — only when
    there is something they did not already hear about today."""
    zone = settings.zone
    today = now.astimezone(zone).date()
    today_start = datetime.combine(today, time(0, 0), tzinfo=zone).astimezone(timezone.utc)
    branch_ids = list((await session.execute(
        select(CareCase.org_id).where(CareCase.status == CareStatus.OPEN.value).distinct()
        .order_by(CareCase.org_id))).scalars())
    items = []
    for branch_id in branch_ids:
        cases = await store.open_cases_of_branch(session, branch_id)
        for leader in await bound_leaders(session, await session.get(Organization, branch_id)):
            mine = [case for case in cases if not told_today(case, leader.id, today_start)]
            if not mine:
                continue
            overdue = sum(case.deadline < now for case in mine)
            lines = "\n".join(
                f"· {case.subject_name}（{case.occasion}）{'已逾期' if case.deadline < now else '期限 ' + local_text(case.deadline, zone)}"
                for case in mine[:10]) + (f"\n……共 {len(mine)} 件" if len(mine) > 10 else "")
            items.append(Outgoing(
                key=f"care:digest:{leader.id}:{today.isoformat()}", kind=MESSAGE_KIND, member_id=leader.id,
                text=DIGEST.format(open=len(mine), overdue=DIGEST_OVERDUE.format(count=overdue) if overdue else "",
                                   lines=lines),
                ref=store.MINE_REF, reminder=True, summary=Summary(title="每日走访", content=f"{len(mine)}件：" + "、".join(case.subject_name for case in mine))))
    return await enqueue(session, items, now=now, settings=settings) if items else 0
