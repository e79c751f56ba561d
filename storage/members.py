"""Member queries shared by features: identity on re-import, binding codes, listings, subtrees."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import BRANCH_LEADERS, Member, MemberCategory, Organization, OrgType, Role, WeChatIdentity
from storage.orgs import InvalidOrgPath, ensure_path

BINDING_CODE_ATTEMPTS = 50
# Days a binding code binds. The service passes its setting (ZHIBU_BINDING_CODE_DAYS); the roster import and
# scripts that do not say get this, the setting's default.
BINDING_CODE_DAYS = 30


@dataclass(frozen=True)
class MemberFields:
    """Validated values for one member, as an import row or a console form gives them."""

    name: str
    org_path: str
    phone: str = ""
    role: Role = Role.MEMBER
    birth_date: date | None = None
    join_date: date | None = None
    category: MemberCategory = MemberCategory.FULL
    hardship: bool = False
    away_from_home: bool = False
    # Which of the optional fields the source actually stated; None means all of them. A roster
    # without a 职务 column must not demote every secretary to 党员 on re-import.
    given: frozenset[str] | None = None

    def states(self, field_name: str) -> bool:
        return self.given is None or field_name in self.given


# Fields copied onto an existing member when the source states them. Name and org are the identity.
UPDATABLE_FIELDS = ("role", "birth_date", "join_date", "category", "hardship", "away_from_home")


@dataclass(frozen=True)
class SavedMember:
    member: Member
    created: bool
    # True when the row was created or at least one stored value differed.
    changed: bool


@dataclass(frozen=True)
class MemberListing:
    id: int
    name: str
    phone: str
    org_path: str
    group: str | None
    role: Role
    category: MemberCategory
    birth_date: date | None
    join_date: date | None
    hardship: bool
    away_from_home: bool
    binding_code: str | None
    bound: bool
    # None when no WeChat follower is bound to the member.
    subscribed: bool | None
    # When binding_code stops binding; None: it never does (codes issued before expiry existed).
    binding_code_expires_at: datetime | None = None


async def member_by_binding_code(session: AsyncSession, code: str) -> Member | None:
    code = code.strip()
    if not code:
        return None
    return (await session.execute(select(Member).where(Member.binding_code == code))).scalar_one_or_none()


def binding_code_expired(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a code with this expiry no longer binds at now (None: issued before codes expired)."""
    return expires_at is not None and expires_at <= now


async def issue_binding_code(session: AsyncSession, member: Member, *, now: datetime | None = None,
                             days: int = BINDING_CODE_DAYS) -> str:
    """Give member a fresh 6-digit binding code nobody else holds, binding for days from now.

    A code that never expired could be guessed at for ever; one that lapses also stops binding a member
    whose slip of paper was lost or shown around. now: callers with a clock pass it.
    """
    expires_at = (now or datetime.now(timezone.utc)) + timedelta(days=days)
    for _ in range(BINDING_CODE_ATTEMPTS):
        # No leading zero: staff often paste codes through Excel, which would drop it.
        code = str(100_000 + secrets.randbelow(900_000))
        if code == member.binding_code:
            continue
        taken = (await session.execute(select(Member.id).where(Member.binding_code == code))).first()
        if taken is None:
            member.binding_code, member.binding_code_expires_at = code, expires_at
            return code
    raise RuntimeError("could not find a free binding code")


async def member_org_for(session: AsyncSession, org_path: str) -> tuple[Organization, Organization | None]:
    """The organization a member at org_path belongs to, and their party group if the path ends in one.

    Creates missing organizations. A member of a group belongs to the group's branch, so that
    branch-wide queries need not know about groups.
    """
    org = await ensure_path(session, org_path)
    if org.org_type != OrgType.GROUP.value:
        return org, None
    parent = await session.get(Organization, org.parent_id) if org.parent_id is not None else None
    if parent is None or parent.org_type != OrgType.BRANCH.value:
        raise InvalidOrgPath(f"党小组“{org.name}”应写在党支部下面")
    return parent, org


async def namesakes(session: AsyncSession, org_id: int, name: str) -> list[Member]:
    """Members of one organization with this name (several people in a village may share one)."""
    return list((await session.execute(
        select(Member).where(Member.org_id == org_id, Member.name == name).order_by(Member.id)
    )).scalars())


def pick_identity(candidates: list[Member], phone: str) -> Member | None:
    """Which of the same-named members of an org a record with this phone refers to.

    A phone on either side must match; a member stored without a phone is claimed by the first
    record that brings one.
    """
    for member in candidates:
        if member.phone == phone:
            return member
    if phone:
        for member in candidates:
            if member.phone == "":
                return member
    return None


# org_path → (member org, group); valid for one transaction only, since rows in it may roll back.
MemberOrgCache = dict[str, tuple[Organization, Organization | None]]


async def save_member(session: AsyncSession, fields: MemberFields, *, now: datetime,
                      org_cache: MemberOrgCache | None = None, code_days: int = BINDING_CODE_DAYS) -> SavedMember:
    """Create or update the member fields describe, and say what happened.

    org_cache: pass one dict for every call in a bulk import, to resolve each path only once.
    code_days: how long a new member's binding code binds.
    """
    if org_cache is not None and fields.org_path in org_cache:
        org, group = org_cache[fields.org_path]
    else:
        org, group = await member_org_for(session, fields.org_path)
        if org_cache is not None:
            org_cache[fields.org_path] = org, group
    existing = pick_identity(await namesakes(session, org.id, fields.name), fields.phone)
    group_id = group.id if group else None

    if existing is None:
        member = Member(org_id=org.id, group_id=group_id, name=fields.name, phone=fields.phone,
                        created_at=now, updated_at=now)
        for name in UPDATABLE_FIELDS:
            setattr(member, name, _stored(getattr(fields, name)))
        session.add(member)
        await issue_binding_code(session, member, now=now, days=code_days)
        await session.flush()
        return SavedMember(member, created=True, changed=True)

    changes: dict[str, object] = {}
    if fields.phone and existing.phone != fields.phone:
        changes["phone"] = fields.phone
    # Group membership follows the org path column, which every source states.
    if existing.group_id != group_id:
        changes["group_id"] = group_id
    for name in UPDATABLE_FIELDS:
        value = _stored(getattr(fields, name))
        if fields.states(name) and getattr(existing, name) != value:
            changes[name] = value
    if changes:
        for name, value in changes.items():
            setattr(existing, name, value)
        existing.updated_at = now
    return SavedMember(existing, created=False, changed=bool(changes))


async def upsert_member(session: AsyncSession, fields: MemberFields, *, now: datetime) -> tuple[Member, bool]:
    """The member fields describe, created or brought up to date; True when created."""
    saved = await save_member(session, fields, now=now)
    return saved.member, saved.created


def _stored(value):
    # Enums are stored as their plain values so that comparisons with loaded rows hold.
    return value.value if isinstance(value, (Role, MemberCategory)) else value


def _subtree(org: Organization):
    return Organization.tree_path.startswith(org.tree_path, autoescape=True)


async def members_of(session: AsyncSession, org: Organization) -> list[Member]:
    """Every member whose organization lies in org's subtree (org itself included)."""
    rows = (await session.execute(
        select(Member, Organization.path).join(Organization, Organization.id == Member.org_id)
        .where(_subtree(org))
    )).all()
    # Sorted here, not in SQL: PostgreSQL collations order Chinese differently from SQLite.
    rows.sort(key=lambda row: (row[1], row[0].name, row[0].id))
    return [member for member, _ in rows]


async def list_members(session: AsyncSession, *, org: Organization | None = None) -> list[MemberListing]:
    """Members (of org's subtree, when given) with their organization and WeChat binding state."""
    group_org = aliased(Organization)
    query = (
        select(Member, Organization.path, group_org.name, WeChatIdentity.subscribed)
        .join(Organization, Organization.id == Member.org_id)
        .outerjoin(group_org, group_org.id == Member.group_id)
        .outerjoin(WeChatIdentity, WeChatIdentity.member_id == Member.id)
    )
    if org is not None:
        query = query.where(_subtree(org))
    listings = [
        MemberListing(
            id=member.id, name=member.name, phone=member.phone, org_path=org_path, group=group_name,
            role=Role(member.role), category=MemberCategory(member.category),
            birth_date=member.birth_date, join_date=member.join_date,
            hardship=member.hardship, away_from_home=member.away_from_home,
            binding_code=member.binding_code, bound=subscribed is not None, subscribed=subscribed,
            binding_code_expires_at=member.binding_code_expires_at,
        )
        for member, org_path, group_name, subscribed in (await session.execute(query)).all()
    ]
    listings.sort(key=lambda listing: (listing.org_path, listing.name, listing.id))
    return listings


async def leader_ids(session: AsyncSession, org_id: int, roles: frozenset) -> list[int]:
    """Ids of the organization's members with these roles (its secretaries, say), in roster order."""
    return list((await session.execute(
        select(Member.id).where(Member.org_id == org_id, Member.role.in_([role.value for role in roles]))
        .order_by(Member.id))).scalars())


async def bound_leaders(session: AsyncSession, branch: Organization) -> list[Member]:
    """The branch's secretaries and deputies who have bound a WeChat that still follows the account."""
    query = (select(Member).join(WeChatIdentity, WeChatIdentity.member_id == Member.id)
             .where(Member.org_id == branch.id, Member.role.in_([role.value for role in BRANCH_LEADERS]),
                    WeChatIdentity.subscribed.is_(True))
             .order_by(Member.id))
    return list((await session.execute(query)).scalars())
