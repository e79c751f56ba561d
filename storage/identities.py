"""WeChat followers and the member each one is bound to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Member, WeChatIdentity


async def touch(session: AsyncSession, openid: str, *, now: datetime, opens_window: bool,
                subscribed: bool = True) -> tuple[WeChatIdentity, Member | None]:
    """The follower behind openid (created on first contact) and their member record, if bound.

    opens_window: the message is one after which WeChat lets us send customer-service messages.
    """
    row = (await session.execute(
        select(WeChatIdentity, Member).outerjoin(Member, Member.id == WeChatIdentity.member_id)
        .where(WeChatIdentity.openid == openid)
    )).first()
    if row is None:
        identity, member = WeChatIdentity(openid=openid, first_seen_at=now), None
        session.add(identity)
    else:
        identity, member = row
    if opens_window:
        identity.last_message_at = now
    if subscribed and not identity.subscribed:
        identity.subscribed, identity.unsubscribed_at = True, None
    return identity, member


async def by_member(session: AsyncSession, member_id: int) -> WeChatIdentity | None:
    return (await session.execute(
        select(WeChatIdentity).where(WeChatIdentity.member_id == member_id)
    )).scalar_one_or_none()
