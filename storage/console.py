"""The staff console's records: QR sign-in requests, signed-in browsers, passwords, failed sign-ins and the
audit log. The rules about them (who may sign in, how long things last) are the callers'; these are queries.

Every state change that two requests could race for (confirming a scan, signing in with it, ending logins) is
one conditional UPDATE whose row count says who won, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    AuditEntry,
    ConsoleFailure,
    ConsoleLogin,
    ConsolePassword,
    ConsoleScan,
    Member,
    Organization,
)
from storage.orgs import under

MAX_CLIENT = 64
MAX_NAME = 50
MAX_DETAIL = 500


def digest(token: str) -> str:
    """What is stored of a secret token: its SHA-256, so the table alone signs nobody in."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- QR sign-in requests


async def new_scan(session: AsyncSession, *, client: str, now: datetime, lifetime: timedelta) -> ConsoleScan:
    scan = ConsoleScan(nonce=secrets.token_urlsafe(18), client=client[:MAX_CLIENT], created_at=now,
                       expires_at=now + lifetime)
    session.add(scan)
    await session.flush()
    return scan


async def scans_asked_since(session: AsyncSession, client: str, since: datetime) -> int:
    return (await session.execute(select(func.count()).select_from(ConsoleScan).where(
        ConsoleScan.client == client[:MAX_CLIENT], ConsoleScan.created_at > since))).scalar_one()


async def scan_by_nonce(session: AsyncSession, nonce: object) -> ConsoleScan | None:
    if not isinstance(nonce, str) or not nonce or len(nonce) > 64:
        return None
    return (await session.execute(select(ConsoleScan).where(ConsoleScan.nonce == nonce))).scalar_one_or_none()


async def set_scan_image(session: AsyncSession, scan_id: int, qr_url: str) -> None:
    await session.execute(update(ConsoleScan).where(ConsoleScan.id == scan_id).values(qr_url=qr_url[:500]))


async def confirm_scan(session: AsyncSession, nonce: str, member_id: int, now: datetime) -> bool:
    """The member scanned the code: the request is theirs, if it is unexpired and nobody confirmed it yet.
    The same member scanning twice (before the browser looked) is confirmed again."""
    result = await session.execute(
        update(ConsoleScan)
        .where(ConsoleScan.nonce == nonce, ConsoleScan.expires_at > now, ConsoleScan.used_at.is_(None),
               or_(ConsoleScan.confirmed_at.is_(None), ConsoleScan.member_id == member_id))
        .values(member_id=member_id, confirmed_at=now))
    return result.rowcount == 1


async def take_confirmed_scan(session: AsyncSession, scan_id: int, now: datetime, within: timedelta) -> int | None:
    """Use a confirmed request to sign its browser in, once: the member it was confirmed for, or None when it is
    not confirmed, already used, or was confirmed longer than `within` ago."""
    result = await session.execute(
        update(ConsoleScan)
        .where(ConsoleScan.id == scan_id, ConsoleScan.used_at.is_(None), ConsoleScan.member_id.is_not(None),
               ConsoleScan.confirmed_at > now - within)
        .values(used_at=now))
    if result.rowcount != 1:
        return None
    return (await session.execute(select(ConsoleScan.member_id).where(ConsoleScan.id == scan_id))).scalar_one()


async def withdraw_confirmed_scans(session: AsyncSession, member_id: int, now: datetime) -> int:
    """Requests this member confirmed that no browser has used yet can no longer be used (退出后台)."""
    result = await session.execute(
        update(ConsoleScan).where(ConsoleScan.member_id == member_id, ConsoleScan.used_at.is_(None))
        .values(used_at=now))
    return result.rowcount


# ---------------------------------------------------------------- signed-in browsers


async def start_login(session: AsyncSession, *, member_id: int, method: str, client: str,
                      now: datetime) -> tuple[ConsoleLogin, str]:
    """A new login; returns it and the token its cookie carries (only the token's digest is stored)."""
    token = secrets.token_urlsafe(32)
    login = ConsoleLogin(token_hash=digest(token), member_id=member_id, method=method,
                         csrf_token=secrets.token_urlsafe(32), client=client[:MAX_CLIENT], created_at=now,
                         last_seen_at=now)
    session.add(login)
    await session.flush()
    return login, token


async def login_by_token(session: AsyncSession, token: object) -> ConsoleLogin | None:
    if not isinstance(token, str) or not token or len(token) > 100:
        return None
    return (await session.execute(
        select(ConsoleLogin).where(ConsoleLogin.token_hash == digest(token)))).scalar_one_or_none()


def login_is_live(login: ConsoleLogin, now: datetime, idle: timedelta) -> bool:
    return login.ended_at is None and login.last_seen_at + idle > now


async def end_login(session: AsyncSession, login: ConsoleLogin, now: datetime, reason: str) -> None:
    if login.ended_at is None:
        login.ended_at, login.ended_reason = now, reason[:20]


async def end_member_logins(session: AsyncSession, member_id: int, now: datetime, reason: str,
                            idle: timedelta) -> int:
    """End every login of this member; returns how many were still in use (not idle past their time)."""
    live = (await session.execute(select(func.count()).select_from(ConsoleLogin).where(
        ConsoleLogin.member_id == member_id, ConsoleLogin.ended_at.is_(None),
        ConsoleLogin.last_seen_at > now - idle))).scalar_one()
    await session.execute(
        update(ConsoleLogin).where(ConsoleLogin.member_id == member_id, ConsoleLogin.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason[:20]))
    return live


# ---------------------------------------------------------------- passwords


async def password_of(session: AsyncSession, member_id: int) -> ConsolePassword | None:
    return await session.get(ConsolePassword, member_id)


async def save_password_hash(session: AsyncSession, member_id: int, password_hash: str, now: datetime) -> None:
    row = await session.get(ConsolePassword, member_id)
    if row is None:
        session.add(ConsolePassword(member_id=member_id, password_hash=password_hash, set_at=now))
    else:
        row.password_hash, row.set_at = password_hash, now
    await session.flush()


async def password_candidates(session: AsyncSession, name: str, roles: Iterable[str]) -> list[tuple[int, str]]:
    """(member id, password hash) of every member called name with one of these roles and a password."""
    rows = await session.execute(
        select(Member.id, ConsolePassword.password_hash)
        .join(ConsolePassword, ConsolePassword.member_id == Member.id)
        .where(Member.name == name, Member.role.in_([str(role) for role in roles]))
        .order_by(Member.id))
    return [(member_id, password_hash) for member_id, password_hash in rows]


# ---------------------------------------------------------------- failed password sign-ins


async def record_failure(session: AsyncSession, *, name: str, client: str, now: datetime) -> None:
    session.add(ConsoleFailure(name=name[:MAX_NAME], client=client[:MAX_CLIENT], failed_at=now))
    await session.flush()


def _lock_end(times: list[datetime], *, limit: int, window: timedelta, lockout: timedelta) -> datetime | None:
    """When the latest lock ends: a failure that made `limit` failures within `window` locks for `lockout`."""
    end = None
    for index in range(limit - 1, len(times)):
        if times[index] - times[index - limit + 1] < window:
            end = times[index] + lockout
    return end


async def locked_until(session: AsyncSession, *, name: str, client: str, now: datetime, limit: int,
                       window: timedelta, lockout: timedelta) -> datetime | None:
    """The end of the lock on this name or this address, if either is locked now. While locked, attempts are
    neither checked nor counted, so the rows read here stay few."""
    since = now - window - lockout
    ends = []
    for column, value in ((ConsoleFailure.name, name[:MAX_NAME]), (ConsoleFailure.client, client[:MAX_CLIENT])):
        times = list((await session.execute(
            select(ConsoleFailure.failed_at).where(column == value, ConsoleFailure.failed_at > since)
            .order_by(ConsoleFailure.failed_at))).scalars())
        end = _lock_end(times, limit=limit, window=window, lockout=lockout)
        if end is not None and end > now:
            ends.append(end)
    return max(ends, default=None)


async def clear_failures(session: AsyncSession, name: str) -> None:
    """A right password forgives the name's earlier slips (the address's stay counted)."""
    await session.execute(delete(ConsoleFailure).where(ConsoleFailure.name == name[:MAX_NAME]))


# ---------------------------------------------------------------- the audit log


async def audit(session: AsyncSession, member: Member | None, action: str, detail: str = "", *,
                now: datetime | None = None, client: str = "") -> AuditEntry:
    """Record what a staff member did (member None: someone not identified, as a failed sign-in), in the
    caller's transaction, so the record commits with the change it describes. `action` is a short code
    ("sign_in_scan", "export", "import", "change"…); `detail` says what, in words staff read."""
    entry = AuditEntry(at=now or datetime.now(timezone.utc), member_id=member.id if member else None,
                       member_name=(member.name if member else "")[:MAX_NAME],
                       org_id=member.org_id if member else None, action=action[:30], detail=detail[:MAX_DETAIL],
                       client=client[:MAX_CLIENT])
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True)
class AuditRow:
    entry: AuditEntry
    org_path: str | None


async def audit_entries(session: AsyncSession, scope: Organization, *, before_id: int | None = None,
                        limit: int = 100) -> list[AuditRow]:
    """The newest entries of people in scope's subtree (and those of nobody identified), newest first."""
    query = (select(AuditEntry, Organization.path).outerjoin(Organization, Organization.id == AuditEntry.org_id)
             .where(or_(AuditEntry.org_id.is_(None), under(scope))))
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    rows = await session.execute(query.order_by(AuditEntry.id.desc()).limit(limit))
    return [AuditRow(entry, path) for entry, path in rows]


# ---------------------------------------------------------------- housekeeping


async def prune(session: AsyncSession, *, before: datetime) -> None:
    """Forget sign-in requests and failed attempts older than before (the audit log keeps what happened)."""
    await session.execute(delete(ConsoleScan).where(ConsoleScan.created_at < before))
    await session.execute(delete(ConsoleFailure).where(ConsoleFailure.failed_at < before))

