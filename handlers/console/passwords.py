"""Console passwords, for machines where scanning is impossible: argon2id hashes (argon2-cffi), set on the
server with `zhibu staff passwd NAME`, checked in a worker thread (a check costs tens of milliseconds of CPU
and 64 MiB, by design)."""

from __future__ import annotations

import functools
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.web.console import CONSOLE_ROLES
from handlers.console.common import PASSWORD_SET
from storage import console as store
from storage.models import Member, Organization
from storage.orgs import InvalidOrgPath, by_path, under

HASHER = PasswordHasher()
MIN_LENGTH = 8
MAX_LENGTH = 128


class PasswordError(Exception):
    """Why a password cannot be set (in words for the person at the terminal)."""


def normalized_name(name: str) -> str:
    """A name as typed, without the spaces people put inside Chinese names ("李 建国")."""
    return "".join(name.split())[:50]


def check_new_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"密码太短：至少 {MIN_LENGTH} 位。")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"密码太长：最多 {MAX_LENGTH} 位。")
    if not password.strip():
        raise PasswordError("密码不能全是空格。")


def hash_password(password: str) -> str:
    check_new_password(password)
    return HASHER.hash(password)


@functools.cache
def _decoy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def verify_password(candidates: list[tuple[int, str]], password: str) -> tuple[int | None, str | None]:
    """The member whose password this is among candidates ((member id, hash), namesakes), and a new hash when
    theirs was made with older parameters; (None, None) when it is nobody's. With no candidates a decoy is
    checked, so an unknown name takes as long as a wrong password. Blocking: run it in a thread."""
    if len(password) > MAX_LENGTH:
        return None, None
    if not candidates:
        try:
            HASHER.verify(_decoy_hash(), password)
        except VerificationError:
            pass
        return None, None
    for member_id, password_hash in candidates:
        try:
            HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            continue
        return member_id, HASHER.hash(password) if HASHER.check_needs_rehash(password_hash) else None
    return None, None


async def find_console_member(session: AsyncSession, name: str, org_path: str | None = None) -> Member:
    """The one secretary, deputy or staff member called name (under org_path, when given)."""
    name = normalized_name(name)
    query = select(Member, Organization.path).join(Organization, Organization.id == Member.org_id) \
        .where(Member.name == name).order_by(Member.id)
    if org_path:
        try:
            org = await by_path(session, org_path)
        except InvalidOrgPath as error:
            raise PasswordError(str(error)) from None
        if org is None:
            raise PasswordError(f"没有这个组织：{org_path}")
        query = query.where(under(org))
    found = list(await session.execute(query))
    allowed = [(member, path) for member, path in found if member.role in CONSOLE_ROLES]
    where = f"（{org_path} 下）" if org_path else ""
    if not found:
        raise PasswordError(f"没有叫 {name} 的党员{where}。")
    if not allowed:
        member, path = found[0]
        raise PasswordError(f"{name}（{path}）是{member.role}：后台只供书记、副书记、组织员和管理员使用。")
    if len(allowed) > 1:
        lines = [f"有 {len(allowed)} 位叫 {name} 的书记或组织员，请用 --org 指明是哪个组织的："]
        lines += [f"  {name}（{member.role}）--org {path}" for member, path in allowed]
        raise PasswordError("\n".join(lines))
    return allowed[0][0]


async def save_password(session: AsyncSession, member: Member, password_hash: str, now: datetime) -> None:
    """Store the new hash. The member's console logins end: whoever knew the old password is out."""
    await store.save_password_hash(session, member.id, password_hash, now)
    await store.end_member_logins(session, member.id, now, "password", idle=timedelta(days=1))
    await store.audit(session, member, PASSWORD_SET, "在服务器上用 zhibu staff passwd 设置了后台密码", now=now)
