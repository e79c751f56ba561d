"""Meetings and their sign-in sheets: who was expected, who came, who was on leave, who was absent."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Select, and_, bindparam, case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.driver import Driver, Loaded, Prepared
from storage.models import (
    COMMITTEE_ROLES,
    Attendance,
    LeaveRequest,
    LeaveStatus,
    Meeting,
    MeetingKind,
    MeetingPhoto,
    MeetingStatus,
    Member,
    Organization,
    Role,
)
from storage.orgs import under
from storage.upsert import insert_for

# Roles that make a committee a branch can hold 支委会 with (a secretary alone is none).
COMMITTEE_BEYOND_SECRETARY = (Role.DEPUTY_SECRETARY.value, Role.COMMITTEE_MEMBER.value)


def expected_member_ids(meeting: Meeting) -> Select:
    """Who is expected, from the kind: the committee for 支委会, the group for 党小组会, else every member
    of the branch (its party groups included)."""
    query = select(Member.id).where(Member.org_id == meeting.org_id)
    if meeting.kind == MeetingKind.COMMITTEE:
        query = query.where(Member.role.in_([role.value for role in COMMITTEE_ROLES]))
    elif meeting.kind == MeetingKind.GROUP and meeting.group_id is not None:
        query = query.where(Member.group_id == meeting.group_id)
    return query


def expects(meeting: Meeting, member: Member) -> bool:
    """Whether meeting expects this member: expected_member_ids' rule for a member already loaded (the
    handlers have the sender's row; asking the database again cost a query per meeting per message)."""
    if member.org_id != meeting.org_id:
        return False
    if meeting.kind == MeetingKind.COMMITTEE:
        return member.role in COMMITTEE_ROLES  # Role is a StrEnum: the stored text is found among them
    if meeting.kind == MeetingKind.GROUP and meeting.group_id is not None:
        return member.group_id == meeting.group_id
    return True


@dataclass
class SignInSheet:
    """The paper sign-in sheet of a meeting, as data."""

    meeting: Meeting
    present: list[tuple[Member, Attendance]] = field(default_factory=list)
    on_leave: list[tuple[Member, LeaveRequest]] = field(default_factory=list)
    absent: list[Member] = field(default_factory=list)
    # Came although not expected (e.g. a member of another group at a group meeting).
    guests: list[tuple[Member, Attendance]] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return len(self.present) + len(self.on_leave) + len(self.absent)


async def sign_in_sheet(session: AsyncSession, meeting: Meeting) -> SignInSheet:
    expected = list((await session.execute(
        select(Member).where(Member.id.in_(expected_member_ids(meeting))).order_by(Member.id))).scalars())
    attended = {member_id: attendance for member_id, attendance in (await session.execute(
        select(Attendance.member_id, Attendance).where(Attendance.meeting_id == meeting.id))).all()}
    leaves = {request.member_id: request for request in (await session.execute(
        select(LeaveRequest).where(LeaveRequest.meeting_id == meeting.id,
                                   LeaveRequest.status == LeaveStatus.APPROVED.value))).scalars()}
    sheet = SignInSheet(meeting)
    expected_ids = set()
    for member in expected:
        expected_ids.add(member.id)
        if member.id in attended:
            sheet.present.append((member, attended[member.id]))
        elif member.id in leaves:
            sheet.on_leave.append((member, leaves[member.id]))
        else:
            sheet.absent.append(member)
    guest_ids = [member_id for member_id in attended if member_id not in expected_ids]
    if guest_ids:
        guests = (await session.execute(select(Member).where(Member.id.in_(guest_ids)).order_by(Member.id))).scalars()
        sheet.guests = [(member, attended[member.id]) for member in guests]
    return sheet


async def meetings_of(session: AsyncSession, org: Organization, start: datetime, end: datetime,
                      *, include_cancelled: bool = False) -> list[Meeting]:
    """Meetings of org and the branches below it that start in [start, end), oldest first."""
    query = (select(Meeting).join(Organization, Organization.id == Meeting.org_id)
             .where(Organization.tree_path.startswith(org.tree_path),
                    Meeting.starts_at >= start, Meeting.starts_at < end)
             .order_by(Meeting.starts_at, Meeting.id))
    if not include_cancelled:
        query = query.where(Meeting.status == MeetingStatus.SCHEDULED.value)
    return list((await session.execute(query)).scalars())


# ---------------------------------------------------------------- calling, checking in, leave (the chat side)

CODE_ATTEMPTS = 20


async def code_in_use(session: AsyncSession, code: str) -> bool:
    return (await session.execute(select(Meeting.id).where(Meeting.checkin_code == code))).first() is not None


async def add_meeting(session: AsyncSession, meeting: Meeting) -> Meeting:
    """Insert a meeting with a fresh six-digit check-in code.

    The code is checked first and the insert runs in a savepoint, so a code another transaction took
    in between costs one more try instead of the caller's whole transaction.
    """
    for _ in range(CODE_ATTEMPTS):
        code = f"{secrets.randbelow(900000) + 100000}"
        if await code_in_use(session, code):
            continue
        meeting.checkin_code = code
        try:
            async with session.begin_nested():
                session.add(meeting)
                await session.flush()
            return meeting
        except IntegrityError:
            continue
    raise RuntimeError("no free meeting check-in code after several attempts")


# ---------------------------------------------------------------- checking in, on the driver
# A check-in is the message a whole county sends within minutes (bench/burst.py). Through the ORM session a check-in
# took 2.2–2.8 times the instructions of 我的 (bench/instructions.py); on the driver (storage.driver), in the message's
# transaction, the session is never opened, and it takes 1.2–1.3 times. The meetings come back detached, for reading.

_MEETING, _ATTENDANCE = Meeting.__table__, Attendance.__table__
_MEETINGS, _ATTENDANCES = Loaded(Meeting), Loaded(Attendance)
_BY_ID = Prepared(select(*_MEETING.c).where(_MEETING.c.id == bindparam("meeting_id")))
_BY_CODE = Prepared(select(*_MEETING.c).where(_MEETING.c.checkin_code == bindparam("code"),
                                              _MEETING.c.org_id == bindparam("org_id")))
_BETWEEN = Prepared(select(*_MEETING.c)
                    .where(_MEETING.c.org_id == bindparam("org_id"),
                           _MEETING.c.status == MeetingStatus.SCHEDULED.value,
                           _MEETING.c.starts_at >= bindparam("start"), _MEETING.c.starts_at <= bindparam("end"))
                    .order_by(_MEETING.c.starts_at, _MEETING.c.id))
_UPCOMING = Prepared(select(*_MEETING.c)
                     .where(_MEETING.c.org_id == bindparam("org_id"),
                            _MEETING.c.status == MeetingStatus.SCHEDULED.value, _MEETING.c.starts_at > bindparam("now"))
                     .order_by(_MEETING.c.starts_at, _MEETING.c.id))
_ATTENDANCE_OF = Prepared(select(*_ATTENDANCE.c).where(_ATTENDANCE.c.meeting_id == bindparam("meeting_id"),
                                                       _ATTENDANCE.c.member_id == bindparam("member_id")))
_CHECK_IN_COLUMNS = [_ATTENDANCE.c[name] for name in
                     ("meeting_id", "member_id", "checked_in_at", "method", "late", "proxy_by")]


async def meeting_by_id(driver: Driver, meeting_id: int) -> Meeting | None:
    rows = await _BY_ID.rows(driver, {"meeting_id": meeting_id})
    return _MEETINGS.one(rows[0]) if rows else None


async def branch_meeting_by_code(driver: Driver, org_id: int, code: str) -> Meeting | None:
    """The branch's meeting with this check-in code. Another branch's code finds nothing, exactly as
    a code nobody has: a member learns nothing about other branches' meetings by trying numbers."""
    rows = await _BY_CODE.rows(driver, {"code": code, "org_id": org_id})
    return _MEETINGS.one(rows[0]) if rows else None


async def branch_meetings_between(driver: Driver, org_id: int, start: datetime, end: datetime) -> list[Meeting]:
    """Scheduled meetings of one branch that start in [start, end], soonest first."""
    return [_MEETINGS.one(row) for row in
            await _BETWEEN.rows(driver, {"org_id": org_id, "start": start, "end": end})]


async def checked_in(driver: Driver, meeting_id: int, member_id: int) -> Attendance | None:
    """The member's check-in at the meeting (attendance_of, on the driver)."""
    rows = await _ATTENDANCE_OF.rows(driver, {"meeting_id": meeting_id, "member_id": member_id})
    return _ATTENDANCES.one(rows[0]) if rows else None


async def record_check_in(driver: Driver, meeting: Meeting, member_id: int, *, now: datetime, method: str,
                          late: bool, proxy_by: int | None = None) -> tuple[Attendance, bool]:
    """Sign a member in; returns the attendance row and whether this call created it.

    INSERT … ON CONFLICT DO NOTHING: two check-ins racing (a tap and a typed code, or two processes)
    leave one row and neither fails; the loser reads the winner's row.
    """
    values = dict(meeting_id=meeting.id, member_id=member_id, checked_in_at=now, method=method, late=late,
                  proxy_by=proxy_by)
    inserted = await driver.insert_new(_CHECK_IN_COLUMNS, [values], returning=(_ATTENDANCE.c.id,), unique=2)
    if inserted:
        # The row is exactly what was written: no need to read it back.
        row = {"id": inserted[0][0], **values}
        return _ATTENDANCES.one([row[column.key] for column in _ATTENDANCE.c]), True
    return await checked_in(driver, meeting.id, member_id), False


async def attendance_of(session: AsyncSession, meeting_id: int, member_id: int) -> Attendance | None:
    """The member's check-in at the meeting, through a page's session (checked_in is the chat's)."""
    return (await session.execute(select(Attendance).where(
        Attendance.meeting_id == meeting_id, Attendance.member_id == member_id))).scalar_one_or_none()


async def upcoming_meetings(driver: Driver, org_id: int, now: datetime) -> list[Meeting]:
    """Scheduled meetings of a branch that have not started yet, soonest first (detached, for reading). On the
    driver: it answers 签到 sent before the meeting opens, and the 近期会议 tap, both of a peak's morning."""
    return [_MEETINGS.one(row) for row in await _UPCOMING.rows(driver, {"org_id": org_id, "now": now})]


async def latest_started(session: AsyncSession, org_id: int, now: datetime) -> Meeting | None:
    """The branch's most recent scheduled meeting that has already started."""
    return (await session.execute(
        select(Meeting).where(Meeting.org_id == org_id, Meeting.status == MeetingStatus.SCHEDULED.value,
                              Meeting.starts_at <= now)
        .order_by(Meeting.starts_at.desc(), Meeting.id.desc()).limit(1))).scalar_one_or_none()


async def expected_ids(session: AsyncSession, meeting: Meeting) -> list[int]:
    return list((await session.execute(expected_member_ids(meeting).order_by(Member.id))).scalars())


def distance_m(latitude_1: float, longitude_1: float, latitude_2: float, longitude_2: float) -> float:
    """Great-circle distance in metres (haversine); plenty for "is this person at the meeting place"."""
    radius = 6371000.0
    phi_1, phi_2 = math.radians(latitude_1), math.radians(latitude_2)
    d_phi = math.radians(latitude_2 - latitude_1)
    d_lambda = math.radians(longitude_2 - longitude_1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi_1) * math.cos(phi_2) * math.sin(d_lambda / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(a))


async def leave_of(session: AsyncSession, meeting_id: int, member_id: int) -> LeaveRequest | None:
    return (await session.execute(select(LeaveRequest).where(
        LeaveRequest.meeting_id == meeting_id, LeaveRequest.member_id == member_id))).scalar_one_or_none()


async def add_leave(session: AsyncSession, meeting_id: int, member_id: int, *, reason: str,
                    now: datetime) -> tuple[LeaveRequest, bool]:
    """Record a member's leave request; returns the request and whether this call created it.

    INSERT … ON CONFLICT DO NOTHING, like a check-in: two requests racing (a double tap on the page, the
    chat and the page at once) leave one request and neither fails; the loser reads the winner's.
    """
    table = LeaveRequest.__table__
    statement = (insert_for(session, table)
                 .values(meeting_id=meeting_id, member_id=member_id, reason=reason, requested_at=now,
                         status=LeaveStatus.PENDING.value)
                 .on_conflict_do_nothing(index_elements=["meeting_id", "member_id"])
                 .returning(table.c.id))
    created = (await session.execute(statement)).first() is not None
    request = (await session.execute(
        select(LeaveRequest).where(LeaveRequest.meeting_id == meeting_id, LeaveRequest.member_id == member_id)
        .execution_options(populate_existing=True))).scalar_one()
    return request, created


async def leaves_of_meeting(session: AsyncSession, meeting_id: int) -> list[tuple[LeaveRequest, Member]]:
    """A meeting's leave requests with who asked, oldest first."""
    return [tuple(row) for row in (await session.execute(
        select(LeaveRequest, Member).join(Member, Member.id == LeaveRequest.member_id)
        .where(LeaveRequest.meeting_id == meeting_id)
        .order_by(LeaveRequest.requested_at, LeaveRequest.id))).all()]


async def pending_leaves(session: AsyncSession, org_id: int, *, started_after: datetime,
                         name: str | None = None) -> list[tuple[LeaveRequest, Member, Meeting]]:
    """Undecided leave requests for a branch's meetings that start after started_after, oldest first."""
    query = (select(LeaveRequest, Member, Meeting)
             .join(Member, Member.id == LeaveRequest.member_id)
             .join(Meeting, Meeting.id == LeaveRequest.meeting_id)
             .where(Meeting.org_id == org_id, Meeting.status == MeetingStatus.SCHEDULED.value,
                    Meeting.starts_at > started_after, LeaveRequest.status == LeaveStatus.PENDING.value)
             .order_by(LeaveRequest.requested_at, LeaveRequest.id))
    if name:
        query = query.where(Member.name == name)
    return [tuple(row) for row in (await session.execute(query)).all()]


async def photos_of(session: AsyncSession, meeting_id: int) -> int:
    return (await session.execute(
        select(func.count()).select_from(MeetingPhoto).where(MeetingPhoto.meeting_id == meeting_id))).scalar_one()


async def held_meetings(session: AsyncSession, branch: Organization, start: datetime, end: datetime) -> list[Meeting]:
    """The branch's own meetings starting in [start, end) that were held: not cancelled, and with at least
    one check-in on the sign-in sheet (a meeting nobody signed for is no evidence for an audit)."""
    query = (select(Meeting).where(Meeting.org_id == branch.id, *_held_between(start, end))
             .order_by(Meeting.starts_at, Meeting.id))
    return list((await session.execute(query)).scalars())


def _held_between(start: datetime, end: datetime, *, signed: bool = True) -> list:
    """What makes a meeting count as held (for compliance and for attendance figures): not cancelled,
    started in [start, end), and (unless the caller joins the check-ins itself) signed by someone."""
    conditions = [Meeting.status != MeetingStatus.CANCELLED.value, Meeting.starts_at >= start, Meeting.starts_at < end]
    if signed:
        conditions.append(select(Attendance.id).where(Attendance.meeting_id == Meeting.id).exists())
    return conditions


async def has_committee(session: AsyncSession, branch: Organization) -> bool:
    """Whether the branch has a committee beyond its secretary (a 副书记 or 委员 on the roster): branches
    under seven members elect none, and then there is no 支委会 to hold."""
    query = select(Member.id).where(Member.org_id == branch.id, Member.role.in_(COMMITTEE_BEYOND_SECRETARY))
    return (await session.execute(query.limit(1))).first() is not None


# ---------------------------------------------------------------- a whole subtree at once (the staff console)
# A county has a few hundred branches: these read all of them in a few grouped queries instead of a few
# queries per branch. Each states the same rule as its one-meeting or one-branch counterpart above.


def expected_clause(kind, org_id, group_id, *, member=Member, by_org_index: bool = True):
    """expected_member_ids as a condition on member (Member or an alias) for a meeting given as columns
    (in a join): the committee for 支委会, the group for 党小组会, else every member of the branch.
    by_org_index=False writes the branch test so that no planner looks members up by their branch (for
    joins that reach each member by id anyway)."""
    return and_((member.org_id == org_id) if by_org_index else (member.org_id + 0 == org_id),
                or_(kind != MeetingKind.COMMITTEE.value, member.role.in_([role.value for role in COMMITTEE_ROLES])),
                or_(kind != MeetingKind.GROUP.value, group_id.is_(None), member.group_id == group_id))


class HeldMeeting(NamedTuple):
    """A held meeting (see held_meetings), from a subtree-wide query; with its sign-in sheet's counts when
    they were asked for. A named tuple: a county's year is some twenty thousand of them."""

    id: int
    org_id: int  # the branch
    group_id: int | None
    kind: str
    starts_at: datetime
    signed: int | None = None  # everyone who signed, guests included (None: not counted)
    present: int | None = None  # expected members who signed: the sheet's 实到
    on_leave: int | None = None  # expected members who did not sign and had leave approved: 请假


async def held_meetings_under(session: AsyncSession, scope: Organization, start: datetime, end: datetime, *,
                              with_counts: bool = False) -> list[HeldMeeting]:
    """The held meetings of every branch in scope's subtree that start in [start, end), oldest first; with
    with_counts, the sheet's head counts too (how many were expected comes from `roster_under`)."""
    columns = (Meeting.id, Meeting.org_id, Meeting.group_id, Meeting.kind, Meeting.starts_at)
    if not with_counts:
        query = (select(*columns).join(Organization, Organization.id == Meeting.org_id)
                 .where(under(scope), *_held_between(start, end)).order_by(Meeting.starts_at, Meeting.id))
        return [HeldMeeting(*row) for row in (await session.execute(query)).all()]
    expected = expected_clause(Meeting.kind, Meeting.org_id, Meeting.group_id)
    # Joining the check-ins (inner) is itself the "someone signed" condition. The meetings drive the join:
    # "+ 0" keeps SQLite's planner from scanning every check-in ever made and looking its meeting up
    # instead (three times slower for a county's quarter, and worse each year). Grouped by the key alone
    # (the other columns depend on it), SQLite reads the meetings in key order and counts each one's
    # check-ins as they come, instead of sorting them all first: half the time for a county's quarter.
    rows = (await session.execute(
        select(*columns, func.count(Attendance.id), func.count(case((expected, 1))))
        .join(Organization, Organization.id == Meeting.org_id)
        .join(Attendance, Attendance.meeting_id == Meeting.id + 0)
        .join(Member, Member.id == Attendance.member_id)
        .where(under(scope), *_held_between(start, end, signed=False))
        .group_by(Meeting.id).order_by(Meeting.starts_at, Meeting.id))).all()
    # Leave is counted by a statement of its own. Joined to the counts (or as a subquery per meeting), it
    # led PostgreSQL, which cannot estimate how few rows it gives, to rerun it for every meeting.
    leave_taker, check_in = aliased(Member), aliased(Attendance)
    signed_too = select(check_in.id).where(check_in.meeting_id == LeaveRequest.meeting_id,
                                           check_in.member_id == LeaveRequest.member_id).exists()
    # by_org_index=False: SQLite would otherwise look members up by branch rather than leave by meeting.
    leaves = dict((await session.execute(
        select(LeaveRequest.meeting_id, func.count(LeaveRequest.id))
        .join(Meeting, Meeting.id == LeaveRequest.meeting_id)
        .join(Organization, Organization.id == Meeting.org_id)
        .join(leave_taker, leave_taker.id == LeaveRequest.member_id)
        .where(under(scope), *_held_between(start, end, signed=False),
               LeaveRequest.status == LeaveStatus.APPROVED.value, ~signed_too,
               expected_clause(Meeting.kind, Meeting.org_id, Meeting.group_id, member=leave_taker, by_org_index=False))
        .group_by(LeaveRequest.meeting_id))).all())
    return [HeldMeeting(*row, leaves.get(row[0], 0)) for row in rows]


@dataclass(frozen=True)
class Roster:
    """Head counts of a subtree's roster, enough to say how many were expected at any of its meetings."""

    members: dict[int, int]  # branch id → members
    committee: dict[int, int]  # branch id → members in COMMITTEE_ROLES
    groups: dict[tuple[int, int], int]  # (branch id, group id) → members
    committees: frozenset[int]  # branches with a committee beyond the secretary (has_committee)

    def expected(self, kind: str, org_id: int, group_id: int | None) -> int:
        """len(expected_member_ids(meeting)) for a meeting of this kind, branch and group."""
        if kind == _COMMITTEE_MEETING:
            return self.committee.get(org_id, 0)
        if kind == _GROUP_MEETING and group_id is not None:
            return self.groups.get((org_id, group_id), 0)
        return self.members.get(org_id, 0)


# Plain strings: Roster.expected runs for each of a county's meetings, and an enum's .value is a lookup.
_COMMITTEE_MEETING = MeetingKind.COMMITTEE.value
_GROUP_MEETING = MeetingKind.GROUP.value


async def roster_under(session: AsyncSession, scope: Organization) -> Roster:
    rows = await session.execute(
        select(Member.org_id, Member.group_id, Member.role, func.count())
        .join(Organization, Organization.id == Member.org_id).where(under(scope))
        .group_by(Member.org_id, Member.group_id, Member.role))
    members: dict[int, int] = {}
    committee: dict[int, int] = {}
    groups: dict[tuple[int, int], int] = {}
    committees = set()
    committee_roles = {role.value for role in COMMITTEE_ROLES}
    for org_id, group_id, role, number in rows:
        members[org_id] = members.get(org_id, 0) + number
        if role in committee_roles:
            committee[org_id] = committee.get(org_id, 0) + number
        if role in COMMITTEE_BEYOND_SECRETARY:
            committees.add(org_id)
        if group_id is not None:
            groups[(org_id, group_id)] = groups.get((org_id, group_id), 0) + number
    return Roster(members, committee, groups, frozenset(committees))
