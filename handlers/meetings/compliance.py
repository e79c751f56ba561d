"""Which required meetings a branch held in a period, and the reminder before the period ends.

The rules follow the 支部工作条例 (see docs/domain.md): 支部党员大会 each quarter, 支委会 each month
(when the branch has a committee), 党小组会 each month for each party group, 主题党日 each month,
组织生活会 and 民主评议党员 each year. 党课 is a local rule: the 条例 asks for at least one a year, and
`settings.lecture_per_year` (default 4, once a quarter) says how many the county expects.

A meeting counts as held when it was not cancelled, it started in the period, and at least one person
signed its sheet: the sign-in sheet is what township staff audit.

`check_compliance` is the query the console uses too; a secretary asks it in the chat with 会议达标. The
reminder job tells a branch's secretaries, once, a week before a month, quarter or year ends, which of its
meetings are still missing; nothing is sent when nothing is missing, and nobody is compared with anybody
(domain.md: no rankings).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.dispatch import Context, JobContext
from bot.outbox import Outgoing, enqueue
from bot.summary import Summary
from handlers.meetings.common import router
from storage.meetings import has_committee, held_meetings
from storage.members import bound_leaders
from storage.orgs import party_groups
from storage.models import BRANCH_LEADERS, MeetingKind, Member, Organization, OrgType

REMINDER_KIND = "compliance"
router.reminds("书记的会议缺项提醒", roles=BRANCH_LEADERS)

REMINDER_HEAD = "【会议提醒】{branch}：{period}还有 {days} 天结束，下面这些会议本期还没有签到记录："
# Check-in only works around a meeting's start, so a meeting held without it cannot be signed for later:
# the note points to the paper sheet instead of asking for something the system cannot do.
REMINDER_TAIL = ("还没开的，可回复 开会 安排；已经开过但没在这里签到的，请留好纸质签到表备查。"
                 "（本提醒每期只发一次）")
LECTURE_NOTE = "本地要求每年 {count} 次，条例要求每年至少 1 次"
STATUS_HEAD = "【会议情况】{branch}，截至{month}月{day}日："
STATUS_HELD = "✓ {title}（{period}，{frequency}）：{dates}"
STATUS_MISSING = "· {title}（{period}，{frequency}）：还没有签到记录"
STATUS_TAIL = "只算在助手里有人签到的会；开过但没在这里签到的，请留好纸质签到表。回复 开会 可安排会议。"


@dataclass(frozen=True)
class Period:
    """A span of whole months in local time: [start, end)."""

    start: date
    end: date  # the first day after the period
    label: str  # "2026年11月", "2026年第4季度", "2026年"
    key: str  # "2026-11", "2026-Q4", "2026": stable, for idempotency keys and the console

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_of(day: date, months: int) -> Period:
    """The period of `months` months (a divisor of 12) that contains day, aligned to the year's start."""
    first_month = (day.month - 1) // months * months + 1
    start = date(day.year, first_month, 1)
    end = _add_months(start, months)
    last_month = first_month + months - 1
    if months == 1:
        return Period(start, end, f"{day.year}年{first_month}月", f"{day.year}-{first_month:02d}")
    if months == 3:
        quarter = (first_month - 1) // 3 + 1
        return Period(start, end, f"{day.year}年第{quarter}季度", f"{day.year}-Q{quarter}")
    if months == 6:
        half = "上半年" if first_month == 1 else "下半年"
        return Period(start, end, f"{day.year}年{half}", f"{day.year}-H{1 if first_month == 1 else 2}")
    if months == 12:
        return Period(start, end, f"{day.year}年", f"{day.year}")
    return Period(start, end, f"{day.year}年{first_month}—{last_month}月",
                  f"{day.year}-{first_month:02d}-{last_month:02d}")


@dataclass(frozen=True)
class Rule:
    kind: MeetingKind
    months: int  # the length of its period
    frequency: str  # in words, for the report
    local_rule: bool = False  # a county's practice rather than the 条例's requirement


def rules(settings) -> list[Rule]:
    lectures = settings.lecture_per_year
    lecture_months = 12 // lectures
    return [
        Rule(MeetingKind.GENERAL, 3, "每季度一次"),
        Rule(MeetingKind.COMMITTEE, 1, "每月一次"),
        Rule(MeetingKind.GROUP, 1, "每月一次"),
        Rule(MeetingKind.LECTURE, lecture_months,
             "每年至少一次" if lectures == 1 else f"每年 {lectures} 次（本地要求）", local_rule=lectures > 1),
        Rule(MeetingKind.THEME_DAY, 1, "每月一次"),
        Rule(MeetingKind.LIFE, 12, "每年一次"),
        Rule(MeetingKind.REVIEW, 12, "每年一次"),
    ]


@dataclass(slots=True)  # a county's year is tens of thousands of these
class Requirement:
    """One required meeting in one period (for 党小组会: of one group), and whether it was held."""

    kind: MeetingKind
    period: Period
    frequency: str
    local_rule: bool = False
    group: Organization | None = None
    held: list[date] = field(default_factory=list)  # local dates of the meetings that count

    @property
    def missing(self) -> bool:
        return not self.held

    @property
    def title(self) -> str:
        return f"{self.kind.value}（{self.group.name}）" if self.group is not None else self.kind.value


@dataclass
class ComplianceReport:
    branch: Organization
    start: date
    end: date  # the first day after the span the report covers
    requirements: list[Requirement] = field(default_factory=list)

    @property
    def missing(self) -> list[Requirement]:
        return [requirement for requirement in self.requirements if requirement.missing]

    @property
    def complete(self) -> bool:
        return not self.missing


class HeldLike(Protocol):
    """What the rules read of a held meeting: a Meeting, or storage.meetings.HeldMeeting from a batch query."""

    org_id: int
    kind: str
    group_id: int | None
    starts_at: datetime


def requirements_for(wanted: Iterable[tuple[Rule, Period]], held: Iterable[HeldLike], *,
                     groups: Sequence[Organization], committee: bool, zone) -> list[Requirement]:
    """The rules applied to one branch's held meetings (oldest first), without touching the database: the
    one place that says which meeting fulfils which requirement, for one branch (check_compliance) or a
    county's at once (`reports_for`)."""
    # Each kind's (and each group's) local meeting days in order; a period's meetings are a slice of them.
    by_kind: dict[str, list[date]] = {}
    by_group: dict[tuple[str, int | None], list[date]] = {}
    for meeting in held:
        local_day = meeting.starts_at.astimezone(zone).date()
        by_kind.setdefault(meeting.kind, []).append(local_day)
        by_group.setdefault((meeting.kind, meeting.group_id), []).append(local_day)

    def within(days: list[date], period: Period) -> list[date]:
        return days[bisect_left(days, period.start):bisect_left(days, period.end)]

    requirements = []
    # A county's overview runs this for every branch and period: plain comparisons, no repeated look-ups.
    for rule, period in wanted:
        kind = rule.kind
        if kind is MeetingKind.COMMITTEE and not committee:
            continue
        if kind is MeetingKind.GROUP:
            for group in groups:
                days = by_group.get((kind, group.id))  # a StrEnum member hashes and compares as its value
                requirements.append(Requirement(kind, period, rule.frequency, rule.local_rule, group,
                                                within(days, period) if days else []))
        else:
            days = by_kind.get(kind)
            requirements.append(Requirement(kind, period, rule.frequency, rule.local_rule, None,
                                            within(days, period) if days else []))
    return requirements


def _utc(day: date, zone) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


async def _evaluate(session: AsyncSession, branch: Organization, wanted: list[tuple[Rule, Period]],
                    settings) -> ComplianceReport:
    zone = settings.zone
    start = min(period.start for _, period in wanted)
    end = max(period.end for _, period in wanted)
    report = ComplianceReport(branch, start, end)
    groups = await party_groups(session, branch)
    committee = await has_committee(session, branch)
    held = await held_meetings(session, branch, _utc(start, zone), _utc(end, zone))
    report.requirements = requirements_for(wanted, held, groups=groups, committee=committee, zone=zone)
    return report


def reports_for(branches: Sequence[tuple[Organization, Sequence[Organization]]], wanted: list[tuple[Rule, Period]],
                held: Iterable[HeldLike], *, committees: set[int], zone) -> list[ComplianceReport]:
    """check_compliance's reports for many branches at once, from data fetched in a few grouped queries
    (storage.orgs.branches_under, storage.meetings.held_meetings_under, Roster.committees): branches
    with their party groups, the held meetings of all of them (each with its org_id), and the ids of the
    branches that have a committee. Reports come in the order of `branches`."""
    start = min(period.start for _, period in wanted)
    end = max(period.end for _, period in wanted)
    held_by_branch: dict[int, list[HeldLike]] = {}
    for meeting in held:
        held_by_branch.setdefault(meeting.org_id, []).append(meeting)
    reports = []
    for branch, groups in branches:
        report = ComplianceReport(branch, start, end)
        report.requirements = requirements_for(wanted, held_by_branch.get(branch.id, []), groups=groups,
                                               committee=branch.id in committees, zone=zone)
        reports.append(report)
    return reports


async def check_compliance(session: AsyncSession, branch: Organization, *, today: date, settings) -> ComplianceReport:
    """The current month's, quarter's and year's requirements (each rule's period containing today)."""
    return await _evaluate(session, branch, [(rule, period_of(today, rule.months)) for rule in rules(settings)],
                           settings)


def wanted_within(start: date, end: date, settings) -> list[tuple[Rule, Period]]:
    """Every rule's periods that lie inside [start, end) (whole months): a quarter holds its three months'
    支委会 and its 支部党员大会, a month only the monthly ones, a year all of them."""
    wanted = []
    for rule in rules(settings):
        day = start
        while day < end:
            period = period_of(day, rule.months)
            if period.start >= start and period.end <= end:
                wanted.append((rule, period))
            day = period.end
    return wanted


async def check_compliance_for(session: AsyncSession, branch: Organization, *, year: int,
                               quarter: int | None = None, month: int | None = None, settings) -> ComplianceReport:
    """A past (or any) period: a whole year, a quarter or a month, with every requirement whose period lies
    inside it — a quarter gives its three months' 支委会 and its 支部党员大会; a month only monthly ones."""
    if month is not None:
        start, months = date(year, month, 1), 1
    elif quarter is not None:
        start, months = date(year, (quarter - 1) * 3 + 1, 1), 3
    else:
        start, months = date(year, 1, 1), 12
    end = _add_months(start, months)
    wanted = wanted_within(start, end, settings)
    if not wanted:
        return ComplianceReport(branch, start, end)
    report = await _evaluate(session, branch, wanted, settings)
    report.start, report.end = start, end
    return report


def ending_on(report: ComplianceReport, last_day: date) -> list[Requirement]:
    """The missing requirements whose period ends on last_day."""
    return [requirement for requirement in report.missing if requirement.period.last_day == last_day]


def reminder_text(branch: Organization, missing: list[Requirement], *, days: int, settings) -> str:
    # Name the longest period that is ending ("第4季度" rather than "12月") in the heading.
    period = max((requirement.period for requirement in missing), key=lambda p: (p.end - p.start))
    lines = [REMINDER_HEAD.format(branch=branch.name, period=period.label, days=days)]
    for requirement in missing:
        note = requirement.period.label
        if requirement.kind == MeetingKind.LECTURE and requirement.local_rule:
            note += "；" + LECTURE_NOTE.format(count=settings.lecture_per_year)
        lines.append(f"· {requirement.title}（{note}）")
    lines.append(REMINDER_TAIL)
    return "\n".join(lines)


def status_text(report: ComplianceReport, *, today: date, settings) -> str:
    """This branch's required meetings in the current month, quarter and year: held (with dates) or not yet."""
    lines = [STATUS_HEAD.format(branch=report.branch.name, month=today.month, day=today.day)]
    for requirement in sorted(report.requirements, key=lambda r: (r.period.end - r.period.start, r.period.start)):
        frequency = requirement.frequency
        if requirement.kind == MeetingKind.LECTURE and requirement.local_rule:
            frequency = LECTURE_NOTE.format(count=settings.lecture_per_year)
        if requirement.missing:
            lines.append(STATUS_MISSING.format(title=requirement.title, period=requirement.period.label,
                                               frequency=frequency))
        else:
            dates = "、".join(f"{day.month}月{day.day}日" for day in sorted(requirement.held))
            lines.append(STATUS_HELD.format(title=requirement.title, period=requirement.period.label,
                                            frequency=frequency, dates=dates))
    lines.append(STATUS_TAIL)
    return "\n".join(lines)


@router.text("会议达标", "会议情况", "达标情况", roles=BRANCH_LEADERS, usage="会议达标",
             summary="本月、本季度、本年规定要开的会开了哪些")
async def show_compliance(ctx: Context, member: Member) -> str:
    branch = await ctx.session.get(Organization, member.org_id)
    today = ctx.now.astimezone(ctx.settings.zone).date()
    report = await check_compliance(ctx.session, branch, today=today, settings=ctx.settings)
    return status_text(report, today=today, settings=ctx.settings)


async def branches(session: AsyncSession) -> list[Organization]:
    """Every 党支部: the organizations that hold these meetings (groups meet inside them)."""
    return list((await session.execute(
        select(Organization).where(Organization.org_type == OrgType.BRANCH.value).order_by(Organization.id))).scalars())


async def remind_branch(session: AsyncSession, branch: Organization, *, today: date, now: datetime, settings) -> int:
    """Queue the reminder for one branch if a period ends `compliance_reminder_days` after today; returns
    how many messages were new (0 when nothing is missing or it was already sent)."""
    days = settings.compliance_reminder_days
    last_day = today + timedelta(days=days)
    if (last_day + timedelta(days=1)).day != 1:
        return 0  # no month (hence no quarter or year) ends then
    missing = ending_on(await check_compliance(session, branch, today=last_day, settings=settings), last_day)
    if not missing:
        return 0
    leaders = await bound_leaders(session, branch)
    if not leaders:
        return 0
    text = reminder_text(branch, missing, days=days, settings=settings)
    # The month that ends identifies the reminder: one per branch and month-end, whatever it lists.
    period = period_of(last_day, 1).key
    ref = f"compliance:{branch.id}:{period}"
    items = [Outgoing(key=f"{ref}:{leader.id}", kind=REMINDER_KIND, text=text, member_id=leader.id, ref=ref,
                      summary=Summary(title="会议提醒", content=f"本期还有 {len(missing)} 项会议未记录"), reminder=True)
             for leader in leaders]
    return await enqueue(session, items, now=now, settings=settings)


@router.job("compliance_reminder", trigger="cron", hour=9, minute=0,
            description="月、季、年结束前一周，提醒支部书记本期还缺哪些规定会议（没有缺的就不发）")
async def compliance_reminder(job: JobContext) -> int:
    """Remind each branch's secretaries of the required meetings still missing a week before a period ends."""
    now = job.clock.now()
    today = now.astimezone(job.settings.zone).date()
    last_day = today + timedelta(days=job.settings.compliance_reminder_days)
    if (last_day + timedelta(days=1)).day != 1:
        return 0
    async with job.sessions() as session:
        found = await branches(session)
    sent = 0
    # One short transaction per branch, so a county's few hundred branches never hold one long lock.
    for branch in found:
        async with job.sessions() as session, session.begin():
            sent += await remind_branch(session, branch, today=today, now=now, settings=job.settings)
    return sent
