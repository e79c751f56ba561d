"""WeChat followers, the member each one is bound to, and failed binding attempts across the account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import LABEL_STYLE_TABLENAME_PLUS_COL, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage.db import one_at_a_time
from storage.driver import Loaded, Prepared
from storage.models import (OUTBOX_WAITING, BindingFailure, DialogState, Member, OutboxMessage, UTCDateTime,
                            WeChatIdentity)
from storage.transaction import MessageTransaction
from storage.upsert import insert_for

# The customer-service window lasts 48 hours; refreshing its start more often than this only costs writes.
WINDOW_PRECISION = timedelta(minutes=1)


# The sender of a message with their member and dialog, in one statement read on the driver: it runs for every
# message, and the ORM's query and loading cost ten times what SQLite takes to answer it. Its last column says
# whether any outbox row waits for the member's next message (on the partial index ix_outbox_waiting): when none
# does, handing them over (bot.outbox.hand_over_waiting) is a statement the message need not run.
_IDENTITY, _MEMBER, _DIALOG = WeChatIdentity.__table__, Member.__table__, DialogState.__table__
_OUTBOX = OutboxMessage.__table__
_WAITS = (select(_OUTBOX.c.id).where(_OUTBOX.c.openid == _IDENTITY.c.openid, OUTBOX_WAITING)
          .correlate(_IDENTITY).exists().label("waiting"))
_SENDER = Prepared(select(*_IDENTITY.c, *_MEMBER.c, *_DIALOG.c, _WAITS)
                   .set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)
                   .select_from(_IDENTITY.outerjoin(_MEMBER, _MEMBER.c.id == _IDENTITY.c.member_id)
                                .outerjoin(_DIALOG, _DIALOG.c.openid == _IDENTITY.c.openid))
                   .where(_IDENTITY.c.openid == bindparam("sender_openid"))
                   .with_for_update(of=_IDENTITY))
# Each table's part of a row, as detached objects.
_LOADED = [Loaded(WeChatIdentity), Loaded(Member), Loaded(DialogState)]


@dataclass
class Sender:
    """Everything handling a message needs to know about who sent it, read in one query."""

    identity: WeChatIdentity
    member: Member | None
    dialog: DialogState | None
    # Whether outbox rows waited for the member's next message when the transaction began (some may have
    # expired since).
    waiting: bool = True


async def touch(transaction: MessageTransaction, openid: str, *, now: datetime, opens_window: bool,
                subscribed: bool = True) -> Sender:
    """The follower behind openid (created on first contact), their member record and dialog, joined to the
    transaction's session (a handler's changes to them are written when it commits).

    opens_window: the message is one after which WeChat lets us send customer-service messages.
    """
    # The identity row is locked until the handling transaction ends: one user's messages are handled one
    # after another across processes too, so two of them cannot interleave inside a dialog. (On SQLite the
    # write lock already serializes every transaction; FOR UPDATE renders nothing there.)
    rows = await _SENDER.rows(transaction.driver, {"sender_openid": openid})
    if not rows:
        # First contact: insert the follower unless another process just did (the insert then waits for
        # that one to commit), then lock the row.
        session = transaction.session
        await session.execute(insert_for(session, WeChatIdentity.__table__)
                              .values(openid=openid, first_seen_at=now, subscribed=True, failed_bind_attempts=0,
                                      window_sent=0)
                              .on_conflict_do_nothing(index_elements=["openid"]))
        rows = await _SENDER.rows(transaction.driver, {"sender_openid": openid})
    identity, member, dialog = _detached(rows[0])
    waiting = bool(rows[0][-1])
    transaction.join(identity, member, dialog)
    changes: dict = {}
    if opens_window and (identity.last_message_at is None or now - identity.last_message_at >= WINDOW_PRECISION):
        changes.update(last_message_at=now, window_sent=0)
    if subscribed and not identity.subscribed:
        changes.update(subscribed=True, unsubscribed_at=None)
    if changes:
        # Written on the driver (a message that changes nothing else needs no session for it) and set on the
        # object as already written.
        for key, value in changes.items():
            set_committed_value(identity, key, value)
        driver = transaction.driver
        await driver.execute(*_TOUCH.bind(driver, {
            "t_openid": openid, "t_last": identity.last_message_at, "t_sent": identity.window_sent,
            "t_subscribed": identity.subscribed, "t_unsubscribed": identity.unsubscribed_at}))
    return Sender(identity, member, dialog, waiting)


_TOUCH = Prepared(update(_IDENTITY).where(_IDENTITY.c.openid == bindparam("t_openid"))
                  .values(last_message_at=bindparam("t_last", type_=UTCDateTime), window_sent=bindparam("t_sent"),
                          subscribed=bindparam("t_subscribed", type_=sa.Boolean),
                          unsubscribed_at=bindparam("t_unsubscribed", type_=UTCDateTime)))


def _detached(row: tuple) -> list:
    """The row's identity, member and dialog (None for an outer join's missing side) as detached objects."""
    objects, start = [], 0
    for loaded in _LOADED:
        objects.append(loaded.one(row[start:start + loaded.width]))
        start += loaded.width
    return objects


async def by_member(session: AsyncSession, member_id: int) -> WeChatIdentity | None:
    return (await session.execute(
        select(WeChatIdentity).where(WeChatIdentity.member_id == member_id)
    )).scalar_one_or_none()


async def record_binding_failure(session: AsyncSession, openid: str, *, now: datetime, window: timedelta) -> int:
    """Note a failed binding attempt; returns how many failed within window up to now, this one included.

    Rows older than window are deleted here, so the table stays as small as one window's failures.
    """
    # Failures from parallel transactions would each count without the others, and the one that reaches the limit
    # could go unnoticed.
    await one_at_a_time(session, "binding_failure")
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
