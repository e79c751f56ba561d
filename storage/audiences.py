"""Who a message goes to: selections of members inside an organization's subtree.

Shared by every feature that addresses members (notices now; meetings and care later). Each
selection is a SELECT of member ids, so an audience of 70,000 never has to be loaded into Python:
the outbox inserts from it directly.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import COMMITTEE_ROLES, Member, Organization

# "老党员" in the audience menu: members of this age or older.
ELDERLY_AGE = 70


class Audience(StrEnum):
    ALL = "全体党员"
    COMMITTEE = "支委"
    GROUP = "党小组"
    ELDERLY = f"{ELDERLY_AGE}岁以上老党员"
    AWAY = "流动党员"
    NAMED = "指定党员"


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def in_subtree(org: Organization) -> Select:
    """Ids of the members of org and every organization below it."""
    return (select(Member.id).join(Organization, Organization.id == Member.org_id)
            .where(Organization.tree_path.startswith(org.tree_path)))


def member_ids(org: Organization, audience: Audience, *, today: date, group_id: int | None = None,
               named: list[int] | None = None) -> Select:
    """The ids of org's members (its whole subtree) that make up the audience."""
    query = in_subtree(org)
    if audience is Audience.COMMITTEE:
        query = query.where(Member.role.in_([role.value for role in COMMITTEE_ROLES]))
    elif audience is Audience.GROUP:
        query = query.where(Member.group_id == group_id)
    elif audience is Audience.ELDERLY:
        query = query.where(Member.birth_date <= _years_before(today, ELDERLY_AGE))
    elif audience is Audience.AWAY:
        query = query.where(Member.away_from_home.is_(True))
    elif audience is Audience.NAMED:
        query = query.where(Member.id.in_(named or []))
    return query


async def count(session: AsyncSession, ids: Select) -> int:
    return (await session.execute(select(func.count()).select_from(ids.subquery()))).scalar_one()


async def find_by_names(session: AsyncSession, org: Organization, names: list[str]) -> tuple[list[Member], list[str]]:
    """Members of org's subtree with these names, and the names nobody there has."""
    found = list((await session.execute(
        select(Member).where(Member.id.in_(in_subtree(org)), Member.name.in_(names)).order_by(Member.id))).scalars())
    known = {member.name for member in found}
    return found, [name for name in names if name not in known]
