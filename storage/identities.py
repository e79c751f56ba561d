"""WeChat followers, the member each one is bound to, and failed binding attempts across the account."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import BindingFailure, DialogState, Member, WeChatIdentity
from storage.upsert import insert_for

# The customer-service window lasts 48 hours; refreshing its start more often than this only costs writes.
WINDOW_PRECISION = timedelta(minutes=1)
# Serializes recording binding failures on PostgreSQL (any fixed 64-bit number no other tool uses).
BINDING_FAILURE_LOCK_KEY = int.from_bytes(hashlib.sha256(b"zhibu.binding_failure").digest()[:8], "big", signed=True)


# The sender of a message with their member and dialog, built once: it runs for every message.
_SENDER = (select(WeChatIdentity, Member, DialogState)
           .outerjoin(Member, Member.id == WeChatIdentity.member_id)
           .outerjoin(DialogState, DialogState.openid == WeChatIdentity.openid)
           .where(WeChatIdentity.openid == bindparam("sender_openid"))
           .with_for_update(of=WeChatIdentity))


@dataclass
class Sender:
    """Everything handling a message needs to know about who sent it, read in one query."""

    identity: WeChatIdentity
    member: Member | None
    dialog: DialogState | None


async def touch(session: AsyncSession, openid: str, *, now: datetime, opens_window: bool,
                subscribed: bool = True) -> Sender:
    """The follower behind openid (created on first contact), their member record and dialog.

    opens_window: the message is one after which WeChat lets us send customer-service messages.
    """
    # The identity row is locked until the handling transaction ends: one user's messages are handled one
    # after another across processes too, so two of them cannot interleave inside a dialog. (On SQLite the
    # write lock already serializes every transaction; FOR UPDATE renders nothing there.)
    row = (await session.execute(_SENDER, {"sender_openid": openid})).first()
    if row is None:
        # First contact: insert the follower unless another process just did (the insert then waits for
        # that one to commit), then lock the row.
        await session.execute(insert_for(session, WeChatIdentity.__table__)
                              .values(openid=openid, first_seen_at=now, subscribed=True, failed_bind_attempts=0,
                                      window_sent=0)
                              .on_conflict_do_nothing(index_elements=["openid"]))
        row = (await session.execute(_SENDER, {"sender_openid": openid})).first()
    identity, member, dialog = row
    if opens_window and (identity.last_message_at is None or now - identity.last_message_at >= WINDOW_PRECISION):
        identity.last_message_at, identity.window_sent = now, 0
    if subscribed and not identity.subscribed:
        identity.subscribed, identity.unsubscribed_at = True, None
    return Sender(identity, member, dialog)


async def by_member(session: AsyncSession, member_id: int) -> WeChatIdentity | None:
    return (await session.execute(
        select(WeChatIdentity).where(WeChatIdentity.member_id == member_id)
    )).scalar_one_or_none()


async def record_binding_failure(session: AsyncSession, openid: str, *, now: datetime, window: timedelta) -> int:
    """Note a failed binding attempt; returns how many failed within window up to now, this one included.

    Rows older than window are deleted here, so the table stays as small as one window's failures.
    """
    if session.bind.dialect.name == "postgresql":
        # Failures from parallel transactions would each count without the others, and the one that reaches
        # the limit could go unnoticed. Held until commit; SQLite's BEGIN IMMEDIATE already serializes.
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BINDING_FAILURE_LOCK_KEY})
    await session.execute(delete(BindingFailure).where(BindingFailure.failed_at <= now - window))
    session.add(BindingFailure(openid=openid, failed_at=now))
    await session.flush()
    return (await session.execute(
        select(func.count()).select_from(BindingFailure).where(BindingFailure.failed_at > now - window)
    )).scalar_one()


async def binding_paused_until(session: AsyncSession, *, now: datetime, limit: int,
                               window: timedelta) -> datetime | None:
    """When binding opens again, if limit failures within window closed it; None when it is open.

    Binding closes when the latest failure makes limit within one window, and stays closed for a window after
    it. Attempts made while closed are not evaluated and so add no failures: the latest failure is the one that
    closed it, and a guesser gets at most limit tries per window however many followers they use.
    """
    recent = (await session.execute(
        select(BindingFailure.failed_at).order_by(BindingFailure.failed_at.desc()).limit(limit)
    )).scalars().all()
    if len(recent) < limit:
        return None
    latest, oldest = recent[0], recent[-1]
    if oldest <= latest - window:
        return None  # the latest failure did not reach the limit
    reopens = latest + window
    return reopens if reopens > now else None
