"""WeChat followers and the member each one is bound to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DialogState, Member, WeChatIdentity

# The customer-service window lasts 48 hours; refreshing its start more often than this only costs writes.
WINDOW_PRECISION = timedelta(minutes=1)


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
    row = (await session.execute(
        select(WeChatIdentity, Member, DialogState)
        .outerjoin(Member, Member.id == WeChatIdentity.member_id)
        .outerjoin(DialogState, DialogState.openid == WeChatIdentity.openid)
        .where(WeChatIdentity.openid == openid)
    )).first()
    if row is None:
        identity, member, dialog = WeChatIdentity(openid=openid, first_seen_at=now), None, None
        session.add(identity)
    else:
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
