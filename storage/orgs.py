"""The organization tree: county → township → village branch → party group."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.driver import Driver, Prepared
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


_PATH_OF = Prepared(select(Organization.path).where(Organization.id == bindparam("org_id")))


async def path_of(driver: Driver, org_id: int) -> str | None:
    """An organization's path ("示范县委/城关镇党委/红旗村党支部"), read on the driver as flushed (我的 shows it
    every time: the ORM's load cost more than the query)."""
    rows = await driver.fetch(*_PATH_OF.bind(driver, {"org_id": org_id}))
    return rows[0][0] if rows else None


async def by_path(session: AsyncSession, path: str) -> Organization | None:
    normalized = PATH_SEPARATOR.join(split_path(path))
    return (await session.execute(select(Organization).where(Organization.path == normalized))).scalar_one_or_none()


async def named_org(session: AsyncSession, path: str) -> Organization:
    """The organization at the path a person typed (an export's --org); InvalidOrgPath with a sentence for them
    when the path is malformed or names nothing."""
    try:
        org = await by_path(session, path)
    except InvalidOrgPath as error:
        raise InvalidOrgPath(f"组织路径“{path}”不对：{error}") from None
    if org is None:
        raise InvalidOrgPath(f"没有找到组织“{path}”。请写完整路径，例如 示范县委/城关镇党委/红旗村党支部"
                             "（可用 zhibu members list 查看）。")
    return org


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


def under(scope: Organization):
    """The condition "this organization row is scope or below it". A scope without a tree path would
    match every organization, so it is refused rather than trusted (the console's scope check rests on this)."""
    if not (scope.tree_path.startswith(PATH_SEPARATOR) and scope.tree_path.endswith(PATH_SEPARATOR)
            and scope.tree_path.strip(PATH_SEPARATOR)):
        raise ValueError(f"organization {scope.id} has no tree path")
    return Organization.tree_path.startswith(scope.tree_path, autoescape=True)


def tree_order(path: str) -> tuple:
    """A sort key that lists an organization tree the way people read it: by the names from the root, a
    parent before its children, and numbers in names by value (第2村 before 第10村). Names only: never a
    score of any kind (domain.md: no rankings)."""
    # re.split with a group puts the digit runs at the odd places, so equal places always compare alike.
    return tuple(tuple(int(piece) if index % 2 else piece for index, piece in enumerate(re.split(r"(\d+)", name)))
                 for name in path.split(PATH_SEPARATOR))


@dataclass(frozen=True, slots=True)
class OrgNode:
    """An organization row as read-only values: what a listing of hundreds needs, without the cost of
    loading each as a model object (about 60 µs apiece)."""

    id: int
    parent_id: int | None
    name: str
    org_type: str
    path: str
    tree_path: str


async def branches_under(session: AsyncSession, scope: Organization) -> list[tuple[OrgNode, list[OrgNode]]]:
    """Every 党支部 in scope's subtree (scope itself when it is one), in tree order, each with its party
    groups in creation order (as `party_groups` gives them): one query for a county's few hundred."""
    rows = [OrgNode(*row) for row in (await session.execute(
        select(Organization.id, Organization.parent_id, Organization.name, Organization.org_type, Organization.path,
               Organization.tree_path)
        .where(under(scope), Organization.org_type.in_([OrgType.BRANCH.value, OrgType.GROUP.value]))
        .order_by(Organization.id))).all()]
    groups: dict[int, list[OrgNode]] = {}
    for org in rows:
        if org.org_type == OrgType.GROUP.value and org.parent_id is not None:
            groups.setdefault(org.parent_id, []).append(org)
    branches = sorted((org for org in rows if org.org_type == OrgType.BRANCH.value), key=lambda org: tree_order(org.path))
    return [(branch, groups.get(branch.id, [])) for branch in branches]
