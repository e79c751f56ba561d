"""What the staff console shows township and county staff (组织员) about the branches in their scope.

Plain functions over a session that return frozen dataclasses; the console's pages are thin adapters
over them (issue 14). Every function takes the staff member's scope (an Organization: everything in its
subtree) and shows nothing outside it.

- `branch_overview`: one row per branch, in tree order, with its required meetings for a month, quarter
  or year (held with the dates, missing, not yet due), its attendance over that period, and the notices
  sent in the scope. The rules are compliance.py's (`wanted_within`, `reports_for`), applied per rule
  period to the held meetings of the whole subtree read month by month (overview_cache.py, which keeps
  the months that did not change between renders): seven statements for a county of 300 branches the
  first time, four while nothing changed, not a few per branch.
- `meeting_detail`: one meeting's audit evidence (sign-in sheet, leave, record, photos).
- `meetings_in_scope`, `checkin_log`: paginated, filterable lists.
- `attendance_by_month`, `required_held_by_quarter`: the figures behind the charts (bot/web/charts.py);
  `overview_page_data`: the overview and both at once, from one read of the months they cover.

Rows are never ordered by any figure, and no figure compares branches with each other (domain.md: no
rankings): the tree's order, or time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from handlers.meetings.compliance import (
    Period,
    Requirement,
    Rule,
    _add_months,
    period_of,
    reports_for,
    rules,
    wanted_within,
)
from handlers.meetings.export import METHOD_LABELS
from handlers.meetings.overview_cache import Facts, Month, read_months
from storage.meetings import HeldMeeting, Roster, expected_clause, sign_in_sheet
from storage.models import (
    Attendance,
    LeaveRequest,
    LeaveStatus,
    Meeting,
    MeetingKind,
    MeetingPhoto,
    MeetingStatus,
    Member,
    Organization,
)
from storage.notices import NoticeTotals as NoticeLine
from storage.notices import totals_under
from storage.orgs import PATH_SEPARATOR, OrgNode, branches_under, under

PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}
PeriodName = Literal["month", "quarter", "year"]
MAX_PAGE = 200
MAX_NAME_QUERY = 50


class CellStatus(StrEnum):
    HELD = "held"
    MISSING = "missing"  # its period has ended without a signed meeting
    NOT_DUE = "not_due"  # its period (or a month of it) has not ended, and nothing is signed yet
    NOT_REQUIRED = "not_required"  # no committee (支委会) or no party groups (党小组会)


STATUS_LABELS = {
    CellStatus.HELD: "已开",
    CellStatus.MISSING: "缺",
    CellStatus.NOT_DUE: "未到期",
    CellStatus.NOT_REQUIRED: "不需要",
}
# What a page should say beside the cells (the chat's 会议达标 says the same).
HELD_NOTE = "只算在助手里有人签到的会；开过但没在这里签到的，以纸质签到表为准。"
LEAVE_LABELS = {LeaveStatus.PENDING.value: "待批", LeaveStatus.APPROVED.value: "已准假",
                LeaveStatus.DECLINED.value: "未准假"}


def method_label(method: str) -> str:
    """签到码 / 扫码 / 位置 / 菜单 / 代签 (the sign-in sheet's words)."""
    return METHOD_LABELS.get(method, method)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


def day_range(start: date | None, end: date | None, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """Local dates from a form (both inclusive; either may be empty) → the [start, end) times the list
    functions take."""
    return (None if start is None else _midnight(start, zone),
            None if end is None else _midnight(end + timedelta(days=1), zone))


def _page(limit: int, offset: int) -> tuple[int, int]:
    return max(1, min(int(limit), MAX_PAGE)), max(0, int(offset))


def _section(scope: Organization, path: str) -> str:
    """The organizations between scope and a branch ("城关镇党委"), for grouping rows under headings."""
    inner = path.split(PATH_SEPARATOR)[len(scope.path.split(PATH_SEPARATOR)):-1]
    return PATH_SEPARATOR.join(inner)


# ---------------------------------------------------------------- the overview


@dataclass(frozen=True, slots=True)
class Column:
    """A required meeting kind, in the rules' order (compliance.rules)."""

    kind: MeetingKind
    frequency: str  # "每季度一次", "每年 4 次（本地要求）"
    local_rule: bool

    @property
    def title(self) -> str:
        return self.kind.value


class Slot(NamedTuple):
    """One requirement inside a cell: a sub-period (a month of a quarter), for 党小组会 one group's. A named
    tuple: a county's year is some 20,000 of them, and the charts count a year's more."""

    period_key: str  # "2026-11"
    period_label: str  # "2026年11月"
    group: str  # the party group's name, "" unless 党小组会
    status: CellStatus
    dates: tuple[date, ...]  # local dates of the signed meetings that count

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True, slots=True)
class Cell:
    """A branch's required meetings of one kind in the period.

    status: missing if any slot's period ended without a meeting; else not yet due if any slot is still
    open; else held. A kind the branch need not hold (no committee, no groups) is not_required."""

    kind: MeetingKind
    status: CellStatus
    slots: tuple[Slot, ...]
    dates: tuple[date, ...]  # every counted meeting's local date, oldest first

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def held(self) -> int:
        return sum(1 for slot in self.slots if slot.status == CellStatus.HELD)

    @property
    def required(self) -> int:
        return len(self.slots)


@dataclass(frozen=True, slots=True)
class AttendanceFigures:
    """Over held meetings (not cancelled, someone signed): as on their sign-in sheets, summed."""

    meetings: int = 0
    expected: int = 0  # 应到
    present: int = 0  # 实到 (expected members who signed; guests are not counted)
    on_leave: int = 0  # 请假 (approved, did not sign)

    @property
    def absent(self) -> int:
        return self.expected - self.present - self.on_leave

    @property
    def rate(self) -> float | None:
        """present ÷ expected; None when no meeting was held (nothing to divide)."""
        return self.present / self.expected if self.expected else None

    @property
    def percent(self) -> int | None:
        return None if self.rate is None else round(self.rate * 100)

    def __add__(self, other: AttendanceFigures) -> AttendanceFigures:
        return AttendanceFigures(self.meetings + other.meetings, self.expected + other.expected,
                                 self.present + other.present, self.on_leave + other.on_leave)


@dataclass(frozen=True, slots=True)
class BranchRow:
    org_id: int
    name: str
    path: str
    section: str  # the organizations between the scope and the branch ("城关镇党委"), "" if directly under
    cells: tuple[Cell, ...]  # in Overview.columns' order
    attendance: AttendanceFigures

    def cell(self, kind: MeetingKind) -> Cell | None:
        return next((cell for cell in self.cells if cell.kind == kind), None)


@dataclass(frozen=True, slots=True)
class NoticeFigures:
    """Notices sent to organizations in the scope: each with its recipients' figures, and the sums."""

    lines: tuple[NoticeLine, ...] = ()  # oldest first

    @property
    def recipients(self) -> int:
        return sum(line.recipients for line in self.lines)

    @property
    def sent(self) -> int:
        return sum(line.sent for line in self.lines)

    @property
    def pending(self) -> int:
        return sum(line.pending for line in self.lines)

    @property
    def failed(self) -> int:
        return sum(line.failed for line in self.lines)

    @property
    def acknowledged(self) -> int:
        return sum(line.acknowledged for line in self.lines)


@dataclass(frozen=True, slots=True)
class Overview:
    scope_id: int
    scope_name: str
    scope_path: str
    period: Period  # .label "2026年第4季度", .key "2026-Q4", .start, .end (first day after)
    today: date
    columns: tuple[Column, ...]
    rows: tuple[BranchRow, ...]  # tree order (path, names), never by any figure
    attendance: AttendanceFigures  # the whole scope
    notices: NoticeFigures  # notices sent to organizations in the scope during the period


def _slot(requirement: Requirement, today: date) -> Slot:
    if requirement.held:
        status = CellStatus.HELD
    elif today < requirement.period.end:
        status = CellStatus.NOT_DUE
    else:
        status = CellStatus.MISSING
    return Slot(requirement.period.key, requirement.period.label,
                requirement.group.name if requirement.group is not None else "", status, tuple(requirement.held))


def _cell(kind: MeetingKind, slots: tuple[Slot, ...]) -> Cell:
    if not slots:
        return Cell(kind, CellStatus.NOT_REQUIRED, (), ())
    missing = not_due = False
    for slot in slots:
        if slot.status is CellStatus.MISSING:
            missing = True
        elif slot.status is CellStatus.NOT_DUE:
            not_due = True
    status = CellStatus.MISSING if missing else CellStatus.NOT_DUE if not_due else CellStatus.HELD
    if len(slots) == 1:
        dates = slots[0].dates
    else:
        dates = tuple(sorted([day for slot in slots for day in slot.dates]))
    return Cell(kind, status, slots, dates)


def _attendance(held: Sequence[HeldMeeting], roster: Roster) -> AttendanceFigures:
    return AttendanceFigures(
        meetings=len(held), expected=sum(roster.expected(m.kind, m.org_id, m.group_id) for m in held),
        present=sum(m.present or 0 for m in held), on_leave=sum(m.on_leave or 0 for m in held))


# The overview and the charts read held meetings month by month through overview_cache (which keeps the
# months that have not changed since the last read), and derive everything else from them in Python: a
# month's attendance per branch, a rule period's cells per branch. What is derived is kept too, in the
# cache's memo dicts, beside the months it was derived from (checked by their identity).

Branches = tuple[tuple[OrgNode, tuple[OrgNode, ...]], ...]
_EMPTY = AttendanceFigures()


def _month_starts(start: date, end: date) -> list[date]:
    months, day = [], start
    while day < end:
        months.append(day)
        day = _add_months(day, 1)
    return months


@dataclass(frozen=True, eq=False)
class _Read:
    """Held meetings of a scope over some consecutive months (overview_cache.read_months) and its roster."""

    facts: Facts
    by_start: dict[date, Month]

    @property
    def roster(self) -> Roster:
        return self.facts.roster

    def months(self, start: date, end: date) -> tuple[Month, ...]:
        return tuple(self.by_start[month] for month in _month_starts(start, end))


async def _read(session: AsyncSession, scope: Organization, start: date, end: date, zone: ZoneInfo) -> _Read:
    starts = _month_starts(start, end)
    bounds = [_midnight(month, zone) for month in starts] + [_midnight(end, zone)]
    facts = await read_months(session, scope, starts, bounds, str(zone))
    return _Read(facts, dict(zip(starts, facts.months)))


async def _branches(session: AsyncSession, scope: Organization, read: _Read) -> Branches:
    """branches_under, as the object kept from an earlier read when nothing in it changed (figures derived
    from it are checked by its identity)."""
    found = tuple((branch, tuple(groups)) for branch, groups in await branches_under(session, scope))
    kept = read.facts.recall("branches")
    if kept == found:
        return kept
    read.facts.remember("branches", found)
    return found


def _by_branch(month: Month) -> dict[int, tuple[HeldMeeting, ...]]:
    """A month's held meetings per branch (org id), oldest first."""
    found = month.memo.get("by branch")
    if found is None:
        lists: dict[int, list[HeldMeeting]] = {}
        for meeting in month.held:
            lists.setdefault(meeting.org_id, []).append(meeting)
        found = month.memo["by branch"] = {org_id: tuple(held) for org_id, held in lists.items()}
    return found


def _month_figures(month: Month, roster: Roster) -> tuple[dict[int, AttendanceFigures], AttendanceFigures]:
    """A month's attendance per branch (org id) and in all. The roster cannot change under a kept month
    (a roster change drops the months kept)."""
    figures = month.memo.get("attendance")
    if figures is None:
        figures = month.memo["attendance"] = ({org_id: _attendance(held, roster)
                                               for org_id, held in _by_branch(month).items()},
                                              _attendance(month.held, roster))
    return figures


Counts = tuple[int, int, int]  # held, missing, not due


@dataclass(frozen=True, eq=False)
class _Grid:
    """The cells' slots of the rules whose period is one month, quarter or year, for every branch."""

    months: tuple[Month, ...]  # what it was derived from
    branches: Branches
    slots: dict[int, dict[MeetingKind, tuple[Slot, ...]]]  # branch id → kind → slots (groups in order)
    branch_counts: dict[int, Counts]
    counts: Counts  # over every branch

    def valid(self, months: tuple[Month, ...], branches: Branches) -> bool:
        return self.branches is branches and all(a is b for a, b in zip(self.months, months))


def _grid(read: _Read, branches: Branches, period: Period, period_rules: tuple[Rule, ...], today: date,
          zone: ZoneInfo) -> _Grid:
    """compliance.reports_for over one rule period, from the months in it (kept while they are). When some
    of its months were read again (a check-in added), only the branches whose held meetings in them
    changed are worked out again."""
    months = read.months(period.start, period.end)
    key = ("grid", period.key, tuple((rule.kind, rule.frequency, rule.local_rule) for rule in period_rules),
           today < period.end)
    kept = read.facts.recall(key)
    if kept is not None and kept.valid(months, branches):
        return kept
    kinds = {rule.kind for rule in period_rules}

    def held_of(org_id: int, of_months: Sequence[Month]) -> list[HeldMeeting]:
        return [meeting for month in of_months for meeting in _by_branch(month).get(org_id, ()) if meeting.kind in kinds]

    slots: dict[int, dict[MeetingKind, tuple[Slot, ...]]] = {}
    branch_counts: dict[int, Counts] = {}
    todo = list(branches)
    if kept is not None and kept.branches is branches:
        changed = [index for index, (old, new) in enumerate(zip(kept.months, months)) if old is not new]
        old_months = [kept.months[index] for index in changed]
        new_months = [months[index] for index in changed]
        todo = [(branch, groups) for branch, groups in branches
                if held_of(branch.id, old_months) != held_of(branch.id, new_months)]
        slots.update(kept.slots)
        branch_counts.update(kept.branch_counts)
    reports = reports_for(todo, [(rule, period) for rule in period_rules],
                          [meeting for branch, _ in todo for meeting in held_of(branch.id, months)],
                          committees=set(read.roster.committees), zone=zone) if todo else []
    for (branch, _), report in zip(todo, reports):
        by_kind: dict[MeetingKind, list[Slot]] = {}
        counts = {CellStatus.HELD: 0, CellStatus.MISSING: 0, CellStatus.NOT_DUE: 0}
        for requirement in report.requirements:
            slot = _slot(requirement, today)
            counts[slot.status] += 1
            by_kind.setdefault(requirement.kind, []).append(slot)
        slots[branch.id] = {kind: tuple(found) for kind, found in by_kind.items()}
        branch_counts[branch.id] = (counts[CellStatus.HELD], counts[CellStatus.MISSING], counts[CellStatus.NOT_DUE])
    total = (sum(counts[0] for counts in branch_counts.values()), sum(counts[1] for counts in branch_counts.values()),
             sum(counts[2] for counts in branch_counts.values()))
    grid = _Grid(months, branches, slots, branch_counts, total)
    read.facts.remember(key, grid)
    return grid


def _by_period(wanted: list[tuple[Rule, Period]]) -> dict[Period, tuple[Rule, ...]]:
    periods: dict[Period, list[Rule]] = {}
    for rule, period in wanted:
        periods.setdefault(period, []).append(rule)
    return {period: tuple(found) for period, found in periods.items()}


@dataclass(frozen=True, eq=False)
class _Rows:
    months: tuple[Month, ...]
    grids: tuple[_Grid, ...]
    branches: Branches
    rows: dict[int, BranchRow]  # branch id → row, in the branches' order
    total: AttendanceFigures

    def valid(self, months: tuple[Month, ...], grids: tuple[_Grid, ...], branches: Branches) -> bool:
        return (self.branches is branches and all(a is b for a, b in zip(self.months, months))
                and all(a is b for a, b in zip(self.grids, grids)))


def _overview(read: _Read, branches: Branches, scope: Organization, span: Period, today: date,
              settings) -> Overview:
    """The overview of span without its notices."""
    zone = settings.zone
    wanted = wanted_within(span.start, span.end, settings)
    kinds = {rule.kind for rule, _ in wanted}
    columns = tuple(Column(rule.kind, rule.frequency, rule.local_rule) for rule in rules(settings) if rule.kind in kinds)
    periods = _by_period(wanted)
    grids = tuple(_grid(read, branches, period, period_rules, today, zone) for period, period_rules in periods.items())
    months = read.months(span.start, span.end)
    key = ("rows", span.key, scope.path, columns)
    kept = read.facts.recall(key)
    if kept is None or not kept.valid(months, grids, branches):
        if kept is not None and kept.branches is not branches:
            kept = None
        # Each kind's slots in the order of its periods (wanted is in time order per rule), as
        # report.requirements gives them.
        kind_grids: dict[MeetingKind, list[_Grid]] = {}
        for grid, (period, period_rules) in zip(grids, periods.items()):
            for rule in period_rules:
                kind_grids.setdefault(rule.kind, []).append(grid)
        month_figures = [_month_figures(month, read.roster)[0] for month in months]
        grid_pairs = list(zip(grids, kept.grids)) if kept is not None else []
        rows = {}
        total = AttendanceFigures()
        for branch, _ in branches:
            figures = AttendanceFigures()
            for by_branch in month_figures:
                figures += by_branch.get(branch.id, _EMPTY)
            total += figures
            row = kept.rows[branch.id] if kept is not None else None
            # A row whose slots are the very ones it was made from, with the same figures, stays.
            if row is not None and row.attendance == figures:
                for new, old in grid_pairs:
                    if new.slots[branch.id] is not old.slots[branch.id]:
                        row = None
                        break
            else:
                row = None
            if row is None:
                cells = []
                for column in columns:
                    slots: tuple[Slot, ...] = ()
                    for grid in kind_grids.get(column.kind, ()):
                        slots += grid.slots[branch.id].get(column.kind, ())
                    cells.append(_cell(column.kind, slots))
                row = BranchRow(branch.id, branch.name, branch.path, _section(scope, branch.path), tuple(cells),
                                figures)
            rows[branch.id] = row
        kept = _Rows(months, grids, branches, rows, total)
        read.facts.remember(key, kept)
    return Overview(scope.id, scope.name, scope.path, span, today, columns, tuple(kept.rows.values()), kept.total,
                    NoticeFigures())


def _span(period: PeriodName, today: date, day: date | None) -> Period:
    if period not in PERIOD_MONTHS:
        raise ValueError(f"period must be one of {sorted(PERIOD_MONTHS)}, not {period!r}")
    return period_of(day or today, PERIOD_MONTHS[period])


async def _with_notices(session: AsyncSession, scope: Organization, overview: Overview, zone: ZoneInfo) -> Overview:
    # Notices are counted on every read: their figures (delivered, acknowledged) change with no trace
    # a fingerprint could read cheaply.
    lines = await totals_under(session, scope, _midnight(overview.period.start, zone),
                               _midnight(overview.period.end, zone))
    return replace(overview, notices=NoticeFigures(tuple(lines)))


async def branch_overview(session: AsyncSession, scope: Organization, *, period: PeriodName, today: date,
                          settings, day: date | None = None) -> Overview:
    """Every branch under scope (a branch: itself) with its required meetings, attendance and the scope's
    notices, for the month, quarter or year containing `day` (default today). `today` decides what is
    due: a requirement whose period has not ended is "not yet due" until a meeting is signed."""
    span = _span(period, today, day)
    read = await _read(session, scope, span.start, span.end, settings.zone)
    branches = await _branches(session, scope, read)
    return await _with_notices(session, scope, _overview(read, branches, scope, span, today, settings), settings.zone)


# ---------------------------------------------------------------- one meeting


@dataclass(frozen=True, slots=True)
class SignedIn:
    member_id: int
    name: str
    checked_in_at: datetime  # aware UTC
    method: str  # CheckInMethod value
    method_label: str  # 签到码 / 扫码 / 位置 / 菜单 / 代签
    late: bool
    proxy_by: str | None  # who signed the member in (代签), by name


@dataclass(frozen=True, slots=True)
class LeaveLine:
    member_id: int
    name: str
    reason: str
    status: str  # LeaveStatus value
    status_label: str  # 待批 / 已准假 / 未准假
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None  # name


@dataclass(frozen=True, slots=True)
class AbsentLine:
    member_id: int
    name: str
    leave: LeaveLine | None  # a request that was not approved (pending or declined), if any


@dataclass(frozen=True, slots=True)
class PhotoLine:
    id: int
    media_id: str
    pic_url: str  # WeChat's address: a page must not load it from there (the CSP allows only 'self')
    added_by: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class MeetingRecord:
    host: str | None
    recorder: str | None
    minutes: str | None
    resolutions: str | None
    votes: str | None
    added_at: datetime | None


@dataclass(frozen=True, slots=True)
class MeetingDetail:
    id: int
    branch_id: int
    branch_name: str
    branch_path: str
    group_name: str  # "" unless a 党小组会
    kind: str  # MeetingKind value
    topic: str
    place: str
    starts_at: datetime  # aware UTC
    status: str  # MeetingStatus value
    called_by: str
    present: tuple[SignedIn, ...]  # expected members who signed, roster order
    on_leave: tuple[LeaveLine, ...]  # expected, did not sign, leave approved
    absent: tuple[AbsentLine, ...]
    guests: tuple[SignedIn, ...]  # signed although not expected (列席)
    leave_requests: tuple[LeaveLine, ...]  # every request with its decision, oldest first
    record: MeetingRecord
    photos: tuple[PhotoLine, ...]

    @property
    def cancelled(self) -> bool:
        return self.status == MeetingStatus.CANCELLED.value

    @property
    def held(self) -> bool:
        """Counts for compliance: not cancelled and someone signed."""
        return not self.cancelled and bool(self.present or self.guests)

    @property
    def expected(self) -> int:
        return len(self.present) + len(self.on_leave) + len(self.absent)


async def _meeting_in(session: AsyncSession, meeting_id: int, scope: Organization) -> tuple[Meeting, Organization] | None:
    row = (await session.execute(
        select(Meeting, Organization).join(Organization, Organization.id == Meeting.org_id)
        .where(Meeting.id == meeting_id, under(scope)))).first()
    return None if row is None else (row[0], row[1])


async def meeting_detail(session: AsyncSession, meeting_id: int, scope: Organization) -> MeetingDetail | None:
    """The meeting's facts and evidence; None when there is no such meeting in scope (a meeting of another
    township looks exactly like one that does not exist)."""
    found = await _meeting_in(session, meeting_id, scope)
    if found is None:
        return None
    meeting, branch = found
    sheet = await sign_in_sheet(session, meeting)
    requests = list((await session.execute(
        select(LeaveRequest, Member.name).join(Member, Member.id == LeaveRequest.member_id)
        .where(LeaveRequest.meeting_id == meeting.id).order_by(LeaveRequest.requested_at, LeaveRequest.id))).all())
    photos = list((await session.execute(
        select(MeetingPhoto).where(MeetingPhoto.meeting_id == meeting.id)
        .order_by(MeetingPhoto.added_at, MeetingPhoto.id))).scalars())
    people = {meeting.called_by} | {photo.added_by for photo in photos}
    people |= {attendance.proxy_by for _, attendance in sheet.present + sheet.guests if attendance.proxy_by}
    people |= {request.decided_by for request, _ in requests if request.decided_by}
    names = dict((await session.execute(select(Member.id, Member.name).where(Member.id.in_(people)))).all())
    group = await session.get(Organization, meeting.group_id) if meeting.group_id is not None else None

    def signed(member: Member, attendance: Attendance) -> SignedIn:
        return SignedIn(member.id, member.name, attendance.checked_in_at, attendance.method,
                        method_label(attendance.method), attendance.late,
                        names.get(attendance.proxy_by) if attendance.proxy_by else None)

    leave_lines = {request.member_id: LeaveLine(
        request.member_id, name, request.reason, request.status, LEAVE_LABELS.get(request.status, request.status),
        request.requested_at, request.decided_at, names.get(request.decided_by) if request.decided_by else None)
        for request, name in requests}
    return MeetingDetail(
        id=meeting.id, branch_id=branch.id, branch_name=branch.name, branch_path=branch.path,
        group_name=group.name if group else "", kind=meeting.kind, topic=meeting.topic, place=meeting.place,
        starts_at=meeting.starts_at, status=meeting.status, called_by=names.get(meeting.called_by, ""),
        present=tuple(signed(member, attendance) for member, attendance in sheet.present),
        on_leave=tuple(leave_lines[member.id] for member, _ in sheet.on_leave),
        absent=tuple(AbsentLine(member.id, member.name, leave_lines.get(member.id)) for member in sheet.absent),
        guests=tuple(signed(member, attendance) for member, attendance in sheet.guests),
        leave_requests=tuple(leave_lines[request.member_id] for request, _ in requests),
        record=MeetingRecord(meeting.host, meeting.recorder, meeting.minutes, meeting.resolutions, meeting.votes,
                             meeting.record_added_at),
        photos=tuple(PhotoLine(photo.id, photo.media_id, photo.pic_url, names.get(photo.added_by, ""), photo.added_at)
                     for photo in photos))


# ---------------------------------------------------------------- lists


@dataclass(frozen=True, slots=True)
class MeetingRow:
    id: int
    branch_id: int
    branch_name: str
    branch_path: str
    group_name: str
    kind: str
    topic: str
    place: str
    starts_at: datetime  # aware UTC
    status: str
    expected: int
    present: int  # expected members who signed
    signed: int  # everyone who signed, guests included
    on_leave: int
    photos: int
    has_record: bool

    @property
    def cancelled(self) -> bool:
        return self.status == MeetingStatus.CANCELLED.value

    @property
    def held(self) -> bool:
        return not self.cancelled and self.signed > 0


async def meetings_in_scope(session: AsyncSession, scope: Organization, *, branch_id: int | None = None,
                            kind: MeetingKind | str | None = None, start: datetime | None = None,
                            end: datetime | None = None, limit: int = 50,
                            offset: int = 0) -> tuple[list[MeetingRow], int]:
    """Meetings of the branches under scope (cancelled ones too, marked), newest first, with the sheet's
    head counts; filtered by branch, kind and start time in [start, end); and how many match in all. A
    kind that is no MeetingKind raises ValueError; a branch outside the scope matches nothing."""
    limit, offset = _page(limit, offset)
    group = aliased(Organization)
    conditions = [under(scope)]
    if branch_id is not None:
        conditions.append(Meeting.org_id == branch_id)
    if kind:
        conditions.append(Meeting.kind == MeetingKind(kind).value)
    if start is not None:
        conditions.append(Meeting.starts_at >= start)
    if end is not None:
        conditions.append(Meeting.starts_at < end)
    expected_here = expected_clause(Meeting.kind, Meeting.org_id, Meeting.group_id)
    expected = select(func.count(Member.id)).where(expected_here).scalar_subquery()
    signed_any = (select(func.count(Attendance.id)).where(Attendance.meeting_id == Meeting.id)).scalar_subquery()
    present = (select(func.count(Attendance.id)).join(Member, Member.id == Attendance.member_id)
               .where(Attendance.meeting_id == Meeting.id, expected_here)).scalar_subquery()
    did_sign = select(Attendance.id).where(Attendance.meeting_id == LeaveRequest.meeting_id,
                                           Attendance.member_id == LeaveRequest.member_id).exists()
    on_leave = (select(func.count(LeaveRequest.id)).join(Member, Member.id == LeaveRequest.member_id)
                .where(LeaveRequest.meeting_id == Meeting.id, LeaveRequest.status == LeaveStatus.APPROVED.value,
                       expected_here, ~did_sign)).scalar_subquery()
    photos = (select(func.count(MeetingPhoto.id)).where(MeetingPhoto.meeting_id == Meeting.id)).scalar_subquery()
    query = (select(Meeting.id, Meeting.org_id, Organization.name, Organization.path, group.name, Meeting.kind,
                    Meeting.topic, Meeting.place, Meeting.starts_at, Meeting.status, expected, present, signed_any,
                    on_leave, photos, Meeting.record_added_at.is_not(None))
             .join(Organization, Organization.id == Meeting.org_id)
             .outerjoin(group, group.id == Meeting.group_id)
             .where(*conditions).order_by(Meeting.starts_at.desc(), Meeting.id.desc()).limit(limit).offset(offset))
    rows = [MeetingRow(*row[:4], row[4] or "", *row[5:15], bool(row[15])) for row in (await session.execute(query)).all()]
    total = (await session.execute(
        select(func.count(Meeting.id)).join(Organization, Organization.id == Meeting.org_id)
        .where(*conditions))).scalar_one()
    return rows, total


@dataclass(frozen=True, slots=True)
class CheckInRow:
    attendance_id: int
    member_id: int
    name: str
    branch_id: int  # the meeting's branch
    branch_name: str
    meeting_id: int
    meeting_kind: str
    meeting_topic: str
    meeting_starts_at: datetime
    checked_in_at: datetime  # aware UTC
    method: str
    method_label: str
    late: bool
    proxy_by: str | None  # who signed the member in (代签)


async def checkin_log(session: AsyncSession, scope: Organization, *, name_query: str = "",
                      branch_id: int | None = None, start: datetime | None = None, end: datetime | None = None,
                      limit: int = 50, offset: int = 0) -> tuple[list[CheckInRow], int]:
    """Check-ins at the meetings of the branches under scope: who, branch, meeting, when, how. Newest
    meeting first, and within a meeting the latest check-in first. name_query finds names containing it
    (taken literally: % and _ are no wildcards); start and end bound the meetings' start, [start, end),
    as in meetings_in_scope (a check-in is open only around the start). Returns a page and how many
    match in all."""
    limit, offset = _page(limit, offset)
    name_query = " ".join(name_query.split())[:MAX_NAME_QUERY]
    proxy = aliased(Member)
    conditions = [under(scope)]
    if name_query:
        conditions.append(Member.name.contains(name_query, autoescape=True))
    if branch_id is not None:
        conditions.append(Meeting.org_id == branch_id)
    if start is not None:
        conditions.append(Meeting.starts_at >= start)
    if end is not None:
        conditions.append(Meeting.starts_at < end)

    def joined(query, *, members: bool):
        # Meetings drive the join, newest first through their time index, so a page stops after its rows
        # instead of sorting a county's hundreds of thousands of check-ins. "+ 0" keeps SQLite's planner
        # from starting at the check-ins instead (it then cannot look meetings up by id); PostgreSQL plans
        # the same either way.
        query = (query.select_from(Meeting).join(Organization, Organization.id == Meeting.org_id)
                 .join(Attendance, Attendance.meeting_id == Meeting.id + 0))
        return query.join(Member, Member.id == Attendance.member_id) if members else query

    query = (joined(select(Attendance.id, Member.id, Member.name, Meeting.org_id, Organization.name, Meeting.id,
                           Meeting.kind, Meeting.topic, Meeting.starts_at, Attendance.checked_in_at,
                           Attendance.method, Attendance.late, proxy.name), members=True)
             .where(*conditions)
             .outerjoin(proxy, proxy.id == Attendance.proxy_by)
             .order_by(Meeting.starts_at.desc(), Meeting.id.desc(), Attendance.checked_in_at.desc(),
                       Attendance.id.desc())
             .limit(limit).offset(offset))
    rows = [CheckInRow(*row[:11], method_label(row[10]), bool(row[11]), row[12])
            for row in (await session.execute(query)).all()]
    total = (await session.execute(joined(select(func.count(Attendance.id)), members=bool(name_query))
                                   .where(*conditions))).scalar_one()
    return rows, total


# ---------------------------------------------------------------- the charts' figures


@dataclass(frozen=True, slots=True)
class MonthAttendance:
    month: date  # its first day
    figures: AttendanceFigures

    @property
    def label(self) -> str:
        return f"{self.month.year}年{self.month.month}月"



def _month_window(today: date, months: int) -> tuple[date, date]:
    current = date(today.year, today.month, 1)
    return _add_months(current, -(months - 1)), _add_months(current, 1)


def _quarter_spans(today: date, quarters: int) -> list[Period]:
    current = period_of(today, 3)
    return [period_of(_add_months(current.start, -3 * back), 3) for back in range(quarters - 1, -1, -1)]


def _by_month(read: _Read, first: date, end: date) -> tuple[MonthAttendance, ...]:
    return tuple(MonthAttendance(month.start, _month_figures(month, read.roster)[1]) for month in read.months(first, end))


def _by_quarter(read: _Read, branches: Branches, spans: list[Period], today: date, settings) -> tuple[QuarterHeld, ...]:
    quarters = []
    for span in spans:
        counts = [0, 0, 0]
        for period, period_rules in _by_period(wanted_within(span.start, span.end, settings)).items():
            grid = _grid(read, branches, period, period_rules, today, settings.zone)
            counts = [total + count for total, count in zip(counts, grid.counts)]
        quarters.append(QuarterHeld(span, *counts))
    return tuple(quarters)


async def attendance_by_month(session: AsyncSession, scope: Organization, *, months: int = 12, today: date,
                              settings) -> tuple[MonthAttendance, ...]:
    """The scope's attendance (present ÷ expected over held meetings) in each of the last `months` local
    months, this one included, oldest first."""
    first, end = _month_window(today, max(1, min(int(months), 120)))
    return _by_month(await _read(session, scope, first, end, settings.zone), first, end)


@dataclass(frozen=True, slots=True)
class QuarterHeld:
    """The scope's required meetings whose periods lie in one quarter (its months' and its own; not the
    yearly ones): how many were held, missed, or are not yet due. Counts over all branches, never per
    branch compared."""

    period: Period
    held: int
    missing: int
    not_due: int

    @property
    def required(self) -> int:
        return self.held + self.missing + self.not_due

    @property
    def label(self) -> str:
        return self.period.label


async def required_held_by_quarter(session: AsyncSession, scope: Organization, *, quarters: int = 4, today: date,
                                   settings) -> tuple[QuarterHeld, ...]:
    """For each of the last `quarters` quarters (this one included, oldest first): the branches' required
    meetings in it, held / missing / not yet due (compliance's rules, per rule period)."""
    spans = _quarter_spans(today, max(1, min(int(quarters), 40)))
    read = await _read(session, scope, spans[0].start, spans[-1].end, settings.zone)
    return _by_quarter(read, await _branches(session, scope, read), spans, today, settings)


@dataclass(frozen=True, slots=True)
class OverviewPage:
    overview: Overview
    months: tuple[MonthAttendance, ...]  # attendance_by_month
    quarters: tuple[QuarterHeld, ...]  # required_held_by_quarter


async def overview_page_data(session: AsyncSession, scope: Organization, *, period: PeriodName, today: date,
                             settings, day: date | None = None, months: int = 12,
                             quarters: int = 4) -> OverviewPage:
    """branch_overview, attendance_by_month and required_held_by_quarter at once, as the console's page
    shows them: one read of the months they cover together (two when the period lies apart from them)."""
    span = _span(period, today, day)
    first, end = _month_window(today, max(1, min(int(months), 120)))
    spans = _quarter_spans(today, max(1, min(int(quarters), 40)))
    chart_start, chart_end = min(first, spans[0].start), max(end, spans[-1].end)
    zone = settings.zone
    if span.start <= chart_end and chart_start <= span.end:
        charts = read = await _read(session, scope, min(span.start, chart_start), max(span.end, chart_end), zone)
    else:
        read = await _read(session, scope, span.start, span.end, zone)
        charts = await _read(session, scope, chart_start, chart_end, zone)
    branches = await _branches(session, scope, read)
    overview = await _with_notices(session, scope, _overview(read, branches, scope, span, today, settings), zone)
    return OverviewPage(overview, _by_month(charts, first, end), _by_quarter(charts, branches, spans, today, settings))


def attendance_points(months: Sequence[MonthAttendance]) -> list[tuple[str, float | None]]:
    """(label, percent) for bot.web.charts.attendance_chart: "11月", with the year under the first bar and
    under each January, so twelve months across a new year read right."""
    return [(f"{item.month.month}月" + (f"\n{item.month.year}年" if index == 0 or item.month.month == 1 else ""),
             None if item.figures.rate is None else item.figures.rate * 100)
            for index, item in enumerate(months)]


def held_points(quarters: Sequence[QuarterHeld]) -> list[tuple[str, int, int, int]]:
    """(label, held, missing, not due) for bot.web.charts.held_chart: "第4季度" over its year."""
    return [(f"第{(item.period.start.month - 1) // 3 + 1}季度\n{item.period.start.year}年", item.held, item.missing,
             item.not_due) for item in quarters]
