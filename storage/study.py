"""Queries for study (issue 16): the items reaching a branch, who marked what done, the study profile, and
the attended meetings that count toward a member's hours. Nothing here orders or compares members."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (Attendance, Meeting, Member, Organization, StudyDone, StudyItem, StudyProfile,
                            WeChatIdentity)


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def reaches(branch_path: str) -> sa.ColumnElement[bool]:
    """Items whose publishing organization is this branch or above it ("" reaches everyone)."""
    parts = branch_path.split("/")
    above = [""] + ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    return StudyItem.org_path.in_(above)


async def current_items(session: AsyncSession, branch_path: str, today: date) -> list[StudyItem]:
    """The items whose period covers today and that reach the branch, the earliest period first."""
    query = (select(StudyItem).where(StudyItem.starts_on <= today, StudyItem.ends_on >= today, reaches(branch_path))
             .order_by(StudyItem.starts_on, StudyItem.id))
    return list((await session.execute(query)).scalars())


async def all_current_items(session: AsyncSession, today: date) -> list[StudyItem]:
    query = (select(StudyItem).where(StudyItem.starts_on <= today, StudyItem.ends_on >= today)
             .order_by(StudyItem.starts_on, StudyItem.id))
    return list((await session.execute(query)).scalars())


async def done_item_ids(session: AsyncSession, member_id: int, item_ids: list[int]) -> set[int]:
    if not item_ids:
        return set()
    query = select(StudyDone.item_id).where(StudyDone.member_id == member_id, StudyDone.item_id.in_(item_ids))
    return set((await session.execute(query)).scalars())


async def done_of(session: AsyncSession, item_id: int, member_id: int) -> StudyDone | None:
    query = select(StudyDone).where(StudyDone.item_id == item_id, StudyDone.member_id == member_id)
    return (await session.execute(query)).scalar_one_or_none()


async def add_done(session: AsyncSession, item_id: int, member_id: int, now: datetime) -> bool:
    """Record 已学 once; False when it was already recorded (a second tap or a race changes nothing)."""
    if await done_of(session, item_id, member_id) is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(StudyDone(item_id=item_id, member_id=member_id, done_at=now))
    except sa.exc.IntegrityError:
        return False
    return True


async def minutes_done(session: AsyncSession, member_id: int, start: datetime, end: datetime) -> int:
    """The estimated minutes of the items this member marked done between start and end."""
    query = (select(sa.func.coalesce(sa.func.sum(StudyItem.minutes), 0))
             .join(StudyDone, StudyDone.item_id == StudyItem.id)
             .where(StudyDone.member_id == member_id, StudyDone.done_at >= start, StudyDone.done_at < end))
    return int((await session.execute(query)).scalar_one())


async def done_count(session: AsyncSession, member_id: int, start: datetime, end: datetime) -> int:
    query = select(sa.func.count(StudyDone.id)).where(StudyDone.member_id == member_id, StudyDone.done_at >= start,
                                                      StudyDone.done_at < end)
    return int((await session.execute(query)).scalar_one())


async def attended_by_kind(session: AsyncSession, member_id: int, kinds: list[str], start: datetime,
                           end: datetime) -> dict[str, int]:
    """How many meetings of each kind this member checked in to between start and end."""
    if not kinds:
        return {}
    query = (select(Meeting.kind, sa.func.count(sa.distinct(Meeting.id)))
             .join(Attendance, Attendance.meeting_id == Meeting.id)
             .where(Attendance.member_id == member_id, Meeting.kind.in_(kinds),
                    Meeting.starts_at >= start, Meeting.starts_at < end)
             .group_by(Meeting.kind))
    return {kind: count for kind, count in (await session.execute(query)).all()}


async def profile_of(session: AsyncSession, member_id: int) -> StudyProfile | None:
    return await session.get(StudyProfile, member_id)


async def set_profile(session: AsyncSession, member_id: int, now: datetime, **fields) -> StudyProfile:
    profile = await session.get(StudyProfile, member_id)
    if profile is None:
        profile = StudyProfile(member_id=member_id, updated_at=now)
        session.add(profile)
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.updated_at = now
    await session.flush()
    return profile


def audience(item: StudyItem, *, not_done: bool = False) -> sa.Select:
    """The bound members an item reaches, leaving out those who muted study reminders and those the branch
    brings study to (送学上门); with not_done, also those who marked it done. Member ids only."""
    branch = sa.orm.aliased(Organization)
    query = (select(Member.id)
             .join(branch, branch.id == Member.org_id)
             .join(WeChatIdentity, WeChatIdentity.member_id == Member.id)
             .outerjoin(StudyProfile, StudyProfile.member_id == Member.id)
             .where(sa.or_(StudyProfile.member_id.is_(None),
                           sa.and_(StudyProfile.muted.is_(False), StudyProfile.at_home.is_(False)))))
    if item.org_path:
        query = query.where(sa.or_(branch.path == item.org_path,
                                   branch.path.like(_escaped(item.org_path) + "/%", escape="\\")))
    if not_done:
        query = query.where(~sa.exists().where(StudyDone.item_id == item.id, StudyDone.member_id == Member.id))
    return query


async def item_by_key(session: AsyncSession, key: str) -> StudyItem | None:
    return (await session.execute(select(StudyItem).where(StudyItem.key == key))).scalar_one_or_none()


# ---------------------------------------------------------------- for the branch's leaders (学习情况, 送学上门)


async def items_between(session: AsyncSession, branch_path: str, first: date, last: date) -> list[StudyItem]:
    """The items reaching the branch whose period overlaps first..last, the earliest period first."""
    query = (select(StudyItem).where(StudyItem.starts_on <= last, StudyItem.ends_on >= first, reaches(branch_path))
             .order_by(StudyItem.starts_on, StudyItem.id))
    return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class MemberStudyState:
    member: Member
    bound: bool
    at_home: bool
    done: frozenset[int]  # of the item ids asked about


async def branch_states(session: AsyncSession, branch_id: int, item_ids: list[int]) -> list[MemberStudyState]:
    """Each member of the branch with their binding, 送学上门 mark and which of these items they did — in roster
    order (name, then id), never by what they did."""
    rows = (await session.execute(
        select(Member, WeChatIdentity.member_id, StudyProfile.at_home)
        .outerjoin(WeChatIdentity, WeChatIdentity.member_id == Member.id)
        .outerjoin(StudyProfile, StudyProfile.member_id == Member.id)
        .where(Member.org_id == branch_id))).all()
    done: dict[int, set[int]] = {}
    if item_ids and rows:
        pairs = await session.execute(
            select(StudyDone.member_id, StudyDone.item_id).join(Member, Member.id == StudyDone.member_id)
            .where(Member.org_id == branch_id, StudyDone.item_id.in_(item_ids)))
        for member_id, item_id in pairs.all():
            done.setdefault(member_id, set()).add(item_id)
    states = [MemberStudyState(member, identity is not None, bool(at_home), frozenset(done.get(member.id, ())))
              for member, identity, at_home in rows]
    # Sorted here, not in SQL: PostgreSQL collations order Chinese differently from SQLite.
    states.sort(key=lambda state: (state.member.name, state.member.id))
    return states


async def branches_with_at_home(session: AsyncSession) -> list[int]:
    """The branches with at least one member marked 送学上门."""
    query = (select(Member.org_id).join(StudyProfile, StudyProfile.member_id == Member.id)
             .where(StudyProfile.at_home.is_(True)).distinct().order_by(Member.org_id))
    return list((await session.execute(query)).scalars())


# ---------------------------------------------------------------- for the console and the hours export (plan.py,
# console.py, export.py): items in a scope, counts per item and branch, every member's figures in three queries


def reached(org_path: str, org=Organization) -> sa.ColumnElement[bool]:
    """The organizations an item published by org_path reaches: that one and those below it ("" is everyone)."""
    if not org_path:
        return sa.true()
    return sa.or_(org.path == org_path, org.path.like(_escaped(org_path) + "/%", escape="\\"))


async def items_in_scope(session: AsyncSession, scope_path: str, first: date, last: date) -> list[StudyItem]:
    """The items that reach the organization at scope_path (published by it or above it) or were published below
    it, whose period overlaps first..last; the earliest period first."""
    query = (select(StudyItem)
             .where(StudyItem.starts_on <= last, StudyItem.ends_on >= first,
                    sa.or_(reaches(scope_path), StudyItem.org_path.like(_escaped(scope_path) + "/%", escape="\\")))
             .order_by(StudyItem.starts_on, StudyItem.id))
    return list((await session.execute(query)).scalars())


async def completion_by_org(session: AsyncSession, item: StudyItem, within: sa.ColumnElement[bool]
                            ) -> dict[int, tuple[int, int]]:
    """For each organization (within: a condition on Organization) whose members the item reaches: how many of
    its members marked it done, and how many members it has. Counts only; nobody is named or ordered."""
    query = (select(Member.org_id, sa.func.count(StudyDone.id), sa.func.count(Member.id))
             .join(Organization, Organization.id == Member.org_id)
             .outerjoin(StudyDone, sa.and_(StudyDone.member_id == Member.id, StudyDone.item_id == item.id))
             .where(within, reached(item.org_path))
             .group_by(Member.org_id))
    return {org_id: (done, total) for org_id, done, total in (await session.execute(query)).all()}


@dataclass(frozen=True)
class YearFigures:
    """One member's figures over a period, as minutes_done, done_count and attended_by_kind give them."""

    done: int
    minutes: int
    attended: dict[str, int]


async def figures_by_member(session: AsyncSession, member_ids: sa.Select, kinds: list[str], start: datetime,
                            end: datetime) -> dict[int, YearFigures]:
    """minutes_done, done_count and attended_by_kind for every member member_ids selects, in two grouped
    queries instead of three per member. Members with no figures are left out."""
    done = await session.execute(
        select(StudyDone.member_id, sa.func.count(StudyDone.id), sa.func.coalesce(sa.func.sum(StudyItem.minutes), 0))
        .join(StudyItem, StudyItem.id == StudyDone.item_id)
        .where(StudyDone.member_id.in_(member_ids), StudyDone.done_at >= start, StudyDone.done_at < end)
        .group_by(StudyDone.member_id))
    counts = {member_id: (count, int(minutes)) for member_id, count, minutes in done.all()}
    attended: dict[int, dict[str, int]] = {}
    if kinds:
        rows = await session.execute(
            select(Attendance.member_id, Meeting.kind, sa.func.count(sa.distinct(Meeting.id)))
            .join(Meeting, Meeting.id == Attendance.meeting_id)
            .where(Attendance.member_id.in_(member_ids), Meeting.kind.in_(kinds), Meeting.starts_at >= start,
                   Meeting.starts_at < end)
            .group_by(Attendance.member_id, Meeting.kind))
        for member_id, kind, count in rows.all():
            attended.setdefault(member_id, {})[kind] = count
    return {member_id: YearFigures(*counts.get(member_id, (0, 0)), attended.get(member_id, {}))
            for member_id in counts.keys() | attended.keys()}
