"""Meetings and their sign-in sheets: who was expected, who came, who was on leave, who was absent."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

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
from storage.upsert import insert_for


def expected_member_ids(meeting: Meeting) -> Select:
    """Who is expected, from the kind: the committee for 支委会, the group for 党小组会, else every member
    of the branch (its party groups included)."""
    query = select(Member.id).where(Member.org_id == meeting.org_id)
    if meeting.kind == MeetingKind.COMMITTEE:
        query = query.where(Member.role.in_([role.value for role in COMMITTEE_ROLES]))
    elif meeting.kind == MeetingKind.GROUP and meeting.group_id is not None:
        query = query.where(Member.group_id == meeting.group_id)
    return query


async def is_expected(session: AsyncSession, meeting: Meeting, member_id: int) -> bool:
    query = expected_member_ids(meeting).where(Member.id == member_id)
    return (await session.execute(query)).first() is not None


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


async def branch_meeting_by_code(session: AsyncSession, org_id: int, code: str) -> Meeting | None:
    """The branch's meeting with this check-in code. Another branch's code finds nothing, exactly as
    a code nobody has: a member learns nothing about other branches' meetings by trying numbers."""
    return (await session.execute(
        select(Meeting).where(Meeting.checkin_code == code, Meeting.org_id == org_id))).scalar_one_or_none()


async def branch_meetings_between(session: AsyncSession, org_id: int, start: datetime, end: datetime) -> list[Meeting]:
    """Scheduled meetings of one branch that start in [start, end], soonest first."""
    return list((await session.execute(
        select(Meeting).where(Meeting.org_id == org_id, Meeting.status == MeetingStatus.SCHEDULED.value,
                              Meeting.starts_at >= start, Meeting.starts_at <= end)
        .order_by(Meeting.starts_at, Meeting.id))).scalars())


async def upcoming_meetings(session: AsyncSession, org_id: int, now: datetime) -> list[Meeting]:
    """Scheduled meetings of a branch that have not started yet, soonest first."""
    return list((await session.execute(
        select(Meeting).where(Meeting.org_id == org_id, Meeting.status == MeetingStatus.SCHEDULED.value,
                              Meeting.starts_at > now)
        .order_by(Meeting.starts_at, Meeting.id))).scalars())


async def latest_started(session: AsyncSession, org_id: int, now: datetime) -> Meeting | None:
    """The branch's most recent scheduled meeting that has already started."""
    return (await session.execute(
        select(Meeting).where(Meeting.org_id == org_id, Meeting.status == MeetingStatus.SCHEDULED.value,
                              Meeting.starts_at <= now)
        .order_by(Meeting.starts_at.desc(), Meeting.id.desc()).limit(1))).scalar_one_or_none()


async def expected_ids(session: AsyncSession, meeting: Meeting) -> list[int]:
    return list((await session.execute(expected_member_ids(meeting).order_by(Member.id))).scalars())


async def attendance_of(session: AsyncSession, meeting_id: int, member_id: int) -> Attendance | None:
    return (await session.execute(select(Attendance).where(
        Attendance.meeting_id == meeting_id, Attendance.member_id == member_id))).scalar_one_or_none()


async def record_check_in(session: AsyncSession, meeting: Meeting, member_id: int, *, now: datetime, method: str,
                          late: bool, proxy_by: int | None = None) -> tuple[Attendance, bool]:
    """Sign a member in; returns the attendance row and whether this call created it.

    INSERT … ON CONFLICT DO NOTHING: two check-ins racing (a tap and a typed code, or two processes)
    leave one row and neither fails; the loser reads the winner's row.
    """
    table = Attendance.__table__
    statement = (insert_for(session, table)
                 .values(meeting_id=meeting.id, member_id=member_id, checked_in_at=now, method=method, late=late,
                         proxy_by=proxy_by)
                 .on_conflict_do_nothing(index_elements=["meeting_id", "member_id"])
                 .returning(table.c.id))
    created = (await session.execute(statement)).first() is not None
    attendance = (await session.execute(
        select(Attendance).where(Attendance.meeting_id == meeting.id, Attendance.member_id == member_id)
        .execution_options(populate_existing=True))).scalar_one()
    return attendance, created


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
    signed = select(Attendance.id).where(Attendance.meeting_id == Meeting.id).exists()
    query = (select(Meeting)
             .where(Meeting.org_id == branch.id, Meeting.status != MeetingStatus.CANCELLED.value,
                    Meeting.starts_at >= start, Meeting.starts_at < end, signed)
             .order_by(Meeting.starts_at, Meeting.id))
    return list((await session.execute(query)).scalars())


async def has_committee(session: AsyncSession, branch: Organization) -> bool:
    """Whether the branch has a committee beyond its secretary (a 副书记 or 委员 on the roster): branches
    under seven members elect none, and then there is no 支委会 to hold."""
    query = select(Member.id).where(Member.org_id == branch.id,
                                    Member.role.in_([Role.DEPUTY_SECRETARY.value, Role.COMMITTEE_MEMBER.value]))
    return (await session.execute(query.limit(1))).first() is not None
