"""Care (五必访) queries: open cases, a case's reports and visits, who covers a branch, a campaign's members."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (BRANCH_LEADERS, COMMITTEE_ROLES, STAFF_ROLES, CareCase, CareMedia, CareProfile,
                            CareReport, CareStatus, CareVisit, Member, Organization)
from storage.orgs import PATH_SEPARATOR, under


# The ref of a message about several cases: its link opens the reader's own list (the cases they visit; a
# branch leader's branch; the escalated cases a staff member covers).
MINE_REF = "care:mine"


def case_ref(case_id: int) -> str:
    """The outbox ref (and member page subject) of a case."""
    return f"care:{case_id}"


async def open_case_like(session: AsyncSession, *, member_id: int, occasion: str, since: datetime) -> CareCase | None:
    """The open case of this occasion for this member opened since `since`: a new report joins it."""
    return (await session.execute(
        select(CareCase).where(CareCase.member_id == member_id, CareCase.occasion == occasion,
                               CareCase.status == CareStatus.OPEN.value, CareCase.opened_at >= since)
        .order_by(CareCase.id).limit(1))).scalars().first()


async def reports_of(session: AsyncSession, case_id: int) -> list[CareReport]:
    return list((await session.execute(
        select(CareReport).where(CareReport.case_id == case_id).order_by(CareReport.id))).scalars())


async def visits_of(session: AsyncSession, case_id: int) -> list[CareVisit]:
    return list((await session.execute(
        select(CareVisit).where(CareVisit.case_id == case_id).order_by(CareVisit.visited_at, CareVisit.id))).scalars())


async def media_of(session: AsyncSession, case_id: int) -> list[CareMedia]:
    return list((await session.execute(
        select(CareMedia).where(CareMedia.case_id == case_id).order_by(CareMedia.id))).scalars())


async def reporter_ids(session: AsyncSession, case_id: int) -> list[int]:
    return list((await session.execute(
        select(CareReport.reporter_id).where(CareReport.case_id == case_id).distinct()
        .order_by(CareReport.reporter_id))).scalars())


async def open_cases_for_visitor(session: AsyncSession, visitor_id: int) -> list[CareCase]:
    """The open cases a member is to visit, the most pressing first."""
    return list((await session.execute(
        select(CareCase).where(CareCase.visitor_id == visitor_id, CareCase.status == CareStatus.OPEN.value)
        .order_by(CareCase.deadline, CareCase.id))).scalars())


async def open_cases_of_branch(session: AsyncSession, branch_id: int) -> list[CareCase]:
    return list((await session.execute(
        select(CareCase).where(CareCase.org_id == branch_id, CareCase.status == CareStatus.OPEN.value)
        .order_by(CareCase.deadline, CareCase.id))).scalars())


async def profile_of(session: AsyncSession, member_id: int) -> CareProfile | None:
    return await session.get(CareProfile, member_id)


async def branch_secretary(session: AsyncSession, branch_id: int) -> Member | None:
    """The branch's secretary (else a deputy): who visits when a member has no designated contact."""
    leaders = list((await session.execute(
        select(Member).where(Member.org_id == branch_id, Member.role.in_([role.value for role in BRANCH_LEADERS]))
        .order_by(Member.id))).scalars())
    leaders.sort(key=lambda member: member.role != "书记")
    return leaders[0] if leaders else None


async def committee_ids(session: AsyncSession, branch_id: int) -> set[int]:
    """The branch committee (支委): secretary, deputies, committee members."""
    return set((await session.execute(
        select(Member.id).where(Member.org_id == branch_id,
                                Member.role.in_([role.value for role in COMMITTEE_ROLES])))).scalars())


def ancestor_ids(org: Organization) -> list[int]:
    """The organizations above org, nearest first (from its tree path)."""
    ids = [int(part) for part in org.tree_path.strip(PATH_SEPARATOR).split(PATH_SEPARATOR) if part]
    return [org_id for org_id in reversed(ids) if org_id != org.id]


async def covering_staff(session: AsyncSession, branch: Organization) -> list[Member]:
    """The staff (组织员, 管理员) of the nearest organization above the branch that has any: the township's,
    else the county's."""
    above = ancestor_ids(branch)
    if not above:
        return []
    staff = list((await session.execute(
        select(Member).where(Member.org_id.in_(above), Member.role.in_([role.value for role in STAFF_ROLES]))
        .order_by(Member.id))).scalars())
    for org_id in above:
        nearest = [member for member in staff if member.org_id == org_id]
        if nearest:
            return nearest
    return []


async def staff_cover(session: AsyncSession, staff: Member, branch: Organization) -> bool:
    """Whether a staff member's organization is at or above the branch."""
    return staff.role in {role.value for role in STAFF_ROLES} and (
        staff.org_id == branch.id or staff.org_id in ancestor_ids(branch))


@dataclass(frozen=True)
class CampaignMember:
    member: Member
    profile: CareProfile | None


async def branch_members_with_profiles(session: AsyncSession, branch_id: int) -> list[CampaignMember]:
    """Every member of a branch (members of its party groups included: their org is the branch) with their
    care profile, if any."""
    rows = (await session.execute(
        select(Member, CareProfile).outerjoin(CareProfile, CareProfile.member_id == Member.id)
        .where(Member.org_id == branch_id).order_by(Member.id))).all()
    return [CampaignMember(member, profile) for member, profile in rows]


async def campaign_case_members(session: AsyncSession, campaign: str, branch_id: int) -> set[int]:
    return set((await session.execute(
        select(CareCase.member_id).where(CareCase.campaign == campaign, CareCase.org_id == branch_id))).scalars())


@dataclass(frozen=True)
class CampaignProgress:
    campaign: str
    visited: int
    open: int
    overdue: int


async def campaign_progress(session: AsyncSession, branch_ids: list[int], now: datetime) -> list[CampaignProgress]:
    """Each campaign's cases in these branches: visited, still open, open past the festival."""
    if not branch_ids:
        return []
    is_open = CareCase.status == CareStatus.OPEN.value
    closed = func.sum(case((CareCase.status == CareStatus.CLOSED.value, 1), else_=0))
    open_ = func.sum(case((is_open, 1), else_=0))
    overdue = func.sum(case((and_(is_open, CareCase.deadline < now), 1), else_=0))
    rows = (await session.execute(
        select(CareCase.campaign, closed, open_, overdue)
        .where(CareCase.campaign.is_not(None), CareCase.org_id.in_(branch_ids))
        .group_by(CareCase.campaign).order_by(func.min(CareCase.deadline).desc()))).all()
    return [CampaignProgress(campaign, int(v or 0), int(o or 0), int(d or 0)) for campaign, v, o, d in rows]


async def escalated_cases_under(session: AsyncSession, scope: Organization) -> list[CareCase]:
    """Open cases gone to the township (escalated) in scope's subtree, the oldest deadline first."""
    return list((await session.execute(
        select(CareCase).join(Organization, Organization.id == CareCase.org_id)
        .where(under(scope), CareCase.status == CareStatus.OPEN.value, CareCase.escalated_at.is_not(None))
        .order_by(CareCase.deadline, CareCase.id))).scalars())
