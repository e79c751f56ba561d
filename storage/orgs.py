"""The organization tree: county → township → village branch → party group."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Organization, OrgType

PATH_SEPARATOR = "/"


class InvalidOrgPath(ValueError):
    pass


def org_type_for(name: str) -> OrgType:
    """What kind of organization a name denotes, by the suffix Chinese names always carry."""
    if name.endswith("党小组"):
        return OrgType.GROUP
    if name.endswith("党支部") or name.endswith("支部"):
        return OrgType.BRANCH
    if name.endswith("党总支") or name.endswith("总支部"):
        return OrgType.GENERAL_BRANCH
    if name.endswith("党委") or name.endswith("县委") or name.endswith("市委") or name.endswith("党工委"):
        return OrgType.COMMITTEE
    raise InvalidOrgPath(f"“{name}”不是党组织名称（应以 党委/党总支/党支部/党小组 结尾）")


def split_path(path: str) -> list[str]:
    parts = [part.strip() for part in path.replace("／", PATH_SEPARATOR).split(PATH_SEPARATOR)]
    parts = [part for part in parts if part]
    if not parts:
        raise InvalidOrgPath("组织路径为空")
    for part in parts:
        org_type_for(part)
    return parts


async def by_path(session: AsyncSession, path: str) -> Organization | None:
    normalized = PATH_SEPARATOR.join(split_path(path))
    return (await session.execute(select(Organization).where(Organization.path == normalized))).scalar_one_or_none()


async def ensure_path(session: AsyncSession, path: str) -> Organization:
    """The organization at path, creating it and any missing ancestors."""
    parent: Organization | None = None
    walked: list[str] = []
    for name in split_path(path):
        walked.append(name)
        full = PATH_SEPARATOR.join(walked)
        org = (await session.execute(select(Organization).where(Organization.path == full))).scalar_one_or_none()
        if org is None:
            org = Organization(name=name, org_type=org_type_for(name).value, path=full,
                               parent_id=parent.id if parent else None)
            session.add(org)
            await session.flush()
            org.tree_path = (parent.tree_path if parent else PATH_SEPARATOR) + f"{org.id}{PATH_SEPARATOR}"
            await session.flush()
        parent = org
    assert parent is not None
    return parent


async def party_groups(session: AsyncSession, branch: Organization) -> list[Organization]:
    """The party groups (党小组) directly under a branch, in creation order."""
    return list((await session.execute(
        select(Organization).where(Organization.parent_id == branch.id,
                                   Organization.org_type == OrgType.GROUP.value)
        .order_by(Organization.id))).scalars())
