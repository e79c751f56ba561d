"""Queries for study (issue 16): the items reaching a branch, who marked what done, the study profile, and
the attended meetings that count toward a member's hours. Nothing here orders or compares members."""

from __future__ import annotations

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
