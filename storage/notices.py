"""Notices and what became of them: delivery and acknowledgement per recipient, read from the outbox.

A notice's recipients are outbox rows of kind "notice" with ref "notice:<id>"; a recipient who
answers 收到 gets acknowledged_at on that row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Member, Notice, Organization, OutboxMessage, OutboxStatus
from storage.orgs import under

NOTICE_KIND = "notice"
# Bound parameters per statement stay far below SQLite's and asyncpg's limits (32,766 and 32,767).
REFS_PER_STATEMENT = 1000


def notice_ref(notice_id: int) -> str:
    return f"notice:{notice_id}"


def _recipients(notice_id: int):
    return and_(OutboxMessage.ref == notice_ref(notice_id), OutboxMessage.kind == NOTICE_KIND)


@dataclass
class BranchLine:
    path: str
    total: int
    sent: int
    acknowledged: int


@dataclass
class NoticeReport:
    notice: Notice
    total: int = 0
    sent: int = 0
    pending: int = 0
    failed: int = 0
    acknowledged: int = 0
    failure_reasons: Counter = field(default_factory=Counter)
    # Names, for a report on one branch; per-branch counts, for a report on a subtree.
    failed_names: list[tuple[str, str]] = field(default_factory=list)
    waiting_names: list[str] = field(default_factory=list)
    branches: list[BranchLine] = field(default_factory=list)


async def latest_sent_by(session: AsyncSession, member_id: int) -> Notice | None:
    return (await session.execute(
        select(Notice).where(Notice.sender_id == member_id).order_by(Notice.id.desc()).limit(1))).scalar_one_or_none()


async def report(session: AsyncSession, notice: Notice, *, by_branch: bool, name_limit: int = 60) -> NoticeReport:
    result = NoticeReport(notice)
    rows = await session.execute(
        select(OutboxMessage.status, OutboxMessage.error, OutboxMessage.acknowledged_at.is_not(None), func.count())
        .where(_recipients(notice.id))
        .group_by(OutboxMessage.status, OutboxMessage.error, OutboxMessage.acknowledged_at.is_not(None)))
    for status, error, acknowledged, number in rows:
        result.total += number
        if acknowledged:
            result.acknowledged += number
        if status == OutboxStatus.SENT.value:
            result.sent += number
        elif status == OutboxStatus.FAILED.value:
            result.failed += number
            result.failure_reasons[error or "原因不明"] += number
        else:
            result.pending += number
    if by_branch:
        branch_rows = await session.execute(
            select(Organization.path, func.count(),
                   func.count(case((OutboxMessage.status == OutboxStatus.SENT.value, 1))),
                   func.count(OutboxMessage.acknowledged_at))
            .join(Member, Member.id == OutboxMessage.member_id)
            .join(Organization, Organization.id == Member.org_id)
            .where(_recipients(notice.id))
            .group_by(Organization.path).order_by(Organization.path))
        result.branches = [BranchLine(*row) for row in branch_rows]
        return result
    people = await session.execute(
        select(Member.name, OutboxMessage.status, OutboxMessage.error, OutboxMessage.acknowledged_at)
        .join(Member, Member.id == OutboxMessage.member_id)
        .where(_recipients(notice.id), OutboxMessage.acknowledged_at.is_(None))
        .order_by(Member.id).limit(name_limit * 2))
    for name, status, error, _ in people:
        if status == OutboxStatus.FAILED.value:
            result.failed_names.append((name, error or "原因不明"))
        elif len(result.waiting_names) < name_limit:
            result.waiting_names.append(name)
    return result


async def _newest_unacknowledged(session: AsyncSession, member_id: int):
    return (await session.execute(
        select(OutboxMessage.id, OutboxMessage.ref)
        .where(OutboxMessage.member_id == member_id, OutboxMessage.kind == NOTICE_KIND,
               OutboxMessage.acknowledged_at.is_(None), OutboxMessage.status != OutboxStatus.FAILED.value)
        .order_by(OutboxMessage.id.desc()).limit(1))).first()


async def awaiting_acknowledgement(session: AsyncSession, member_id: int) -> Notice | None:
    """The newest notice this member received and has not answered 收到 to, if any."""
    row = await _newest_unacknowledged(session, member_id)
    return None if row is None else await session.get(Notice, int(row.ref.split(":")[1]))


async def acknowledge_latest(session: AsyncSession, member_id: int, now: datetime) -> Notice | None:
    """Mark the newest notice this member received and has not acknowledged; the notice, or None."""
    row = await _newest_unacknowledged(session, member_id)
    if row is None:
        return None
    await session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(acknowledged_at=now))
    return await session.get(Notice, int(row.ref.split(":")[1]))


async def copy_of(session: AsyncSession, notice_id: int, member_id: int) -> OutboxMessage | None:
    """This member's copy of the notice (with when they acknowledged it), if it was sent to them."""
    return (await session.execute(
        select(OutboxMessage).where(_recipients(notice_id), OutboxMessage.member_id == member_id)
        .execution_options(populate_existing=True))).scalar_one_or_none()


async def acknowledge(session: AsyncSession, notice_id: int, member_id: int, now: datetime) -> bool:
    """Mark this notice acknowledged by this member (收到 on its page); whether this call did it.

    One conditional UPDATE: a second tap, or two at once, finds acknowledged_at set and changes nothing.
    """
    result = await session.execute(
        update(OutboxMessage)
        .where(_recipients(notice_id), OutboxMessage.member_id == member_id, OutboxMessage.acknowledged_at.is_(None))
        .values(acknowledged_at=now).execution_options(synchronize_session=False))
    return (result.rowcount or 0) > 0


async def due_for_follow_up(session: AsyncSession, now: datetime, limit: int = 50) -> list[Notice]:
    return list((await session.execute(
        select(Notice).where(Notice.reported_at.is_(None), Notice.report_due_at <= now)
        .order_by(Notice.id).limit(limit))).scalars())


def unacknowledged_recipients(notice_id: int) -> Select:
    """Ids of members who received the notice and have not said 收到: the ones a reminder goes to."""
    return select(OutboxMessage.member_id).where(
        _recipients(notice_id), OutboxMessage.status == OutboxStatus.SENT.value,
        OutboxMessage.acknowledged_at.is_(None), OutboxMessage.member_id.is_not(None))


@dataclass(frozen=True, slots=True)
class NoticeTotals:
    """A notice and `report`'s totals for it (sent, failed, pending, acknowledged), without names."""

    id: int
    org_id: int
    org_name: str
    audience: str
    text: str
    urgent: bool
    created_at: datetime
    recipients: int
    sent: int  # delivered
    pending: int
    failed: int
    acknowledged: int  # answered 收到


async def totals_under(session: AsyncSession, scope: Organization, start: datetime, end: datetime) -> list[NoticeTotals]:
    """Every notice sent to an organization in scope's subtree in [start, end), oldest first, with its
    recipients counted as `report` counts them: two statements (one more per thousand notices)."""
    notices = (await session.execute(
        select(Notice.id, Notice.org_id, Organization.name, Notice.audience, Notice.text, Notice.urgent,
               Notice.created_at)
        .join(Organization, Organization.id == Notice.org_id)
        .where(under(scope), Notice.created_at >= start, Notice.created_at < end)
        .order_by(Notice.created_at, Notice.id))).all()
    # The recipients' rows are fetched by the outbox's ref index from a list of refs: given a subquery or
    # a join instead, PostgreSQL read the whole outbox (every message ever sent) to find them.
    refs = [notice_ref(row[0]) for row in notices]
    # Counted per status and folded here: a county's year is some 300,000 rows, each read from
    # ix_outbox_ref_figures alone, and two counts a row cost half what a CASE per figure did.
    counts: dict[str, list[int]] = {}  # recipients, sent, pending, failed, acknowledged
    for first in range(0, len(refs), REFS_PER_STATEMENT):
        rows = await session.execute(
            select(OutboxMessage.ref, OutboxMessage.status, func.count(), func.count(OutboxMessage.acknowledged_at))
            .where(OutboxMessage.kind == NOTICE_KIND, OutboxMessage.ref.in_(refs[first:first + REFS_PER_STATEMENT]))
            .group_by(OutboxMessage.ref, OutboxMessage.status))
        for ref, status, number, acknowledged in rows:
            figures = counts.setdefault(ref, [0, 0, 0, 0, 0])
            figures[0] += number
            figures[1 if status == OutboxStatus.SENT.value else 3 if status == OutboxStatus.FAILED.value else 2] += number
            figures[4] += acknowledged
    return [NoticeTotals(*row, *counts.get(ref, (0, 0, 0, 0, 0))) for row, ref in zip(notices, refs)]
