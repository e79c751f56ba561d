"""The inbound log: claim a message before handling it, finish it with its reply, find orphans."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import engine_of
from storage.driver import Driver, Prepared, driver_transaction
from storage.models import INBOUND_PROCESSING, InboundMessage, InboundStatus

# The hot path writes through the table (Core), not the mapped class: the ORM's bulk-statement
# machinery costs more than the statement itself here.
_TABLE = InboundMessage.__table__


@dataclass(frozen=True)
class Claim:
    """The outcome of recording a message: ours to handle (claimed) or seen before (existing)."""

    message_id: int | None
    existing: InboundMessage | None

    @property
    def claimed(self) -> bool:
        return self.message_id is not None


def claim_row(*, dedup_key: str, openid: str, kind: str, payload: dict, now: datetime) -> dict:
    """The values recorded for a message before it is handled."""
    return dict(dedup_key=dedup_key, openid=openid, kind=kind, payload=json.dumps(payload, ensure_ascii=False),
                status=InboundStatus.PROCESSING.value, received_at=now, claimed_at=now)


# What a claim writes, in order (claim_row's keys); the first is the unique one.
_CLAIMED = (_TABLE.c.dedup_key, _TABLE.c.openid, _TABLE.c.kind, _TABLE.c.payload, _TABLE.c.status,
            _TABLE.c.received_at, _TABLE.c.claimed_at)


async def claim_many(sessions: async_sessionmaker[AsyncSession], rows: list[dict]) -> dict[str, Claim]:
    """Record messages (rows from claim_row, distinct keys) in a transaction of their own: claim_on, then
    with_existing."""
    async with driver_transaction(engine_of(sessions)) as driver:
        claims = await claim_on(driver, rows)
    return await with_existing(sessions, rows, claims)


async def claim_on(driver: Driver, rows: list[dict]) -> dict[str, Claim]:
    """Record messages (rows from claim_row, distinct keys) in the driver's transaction (storage.driver): every
    message comes through here. The unique dedup_key makes exactly one concurrent copy of each message, in any
    process, its owner. The claims of the rows inserted, by dedup_key."""
    if not rows:
        return {}
    inserted = await driver.insert_new(_CLAIMED, rows, returning=(_TABLE.c.id, _TABLE.c.dedup_key))
    return {key: Claim(message_id, None) for message_id, key in inserted}


async def with_existing(sessions: async_sessionmaker[AsyncSession], rows: list[dict],
                        claims: dict[str, Claim]) -> dict[str, Claim]:
    """claims, with the rows another copy claimed first read back (committed by then, after claim_on's
    transaction ended)."""
    seen_before = [row["dedup_key"] for row in rows if row["dedup_key"] not in claims]
    if seen_before:
        async with sessions() as session:
            result = await session.execute(select(InboundMessage).where(InboundMessage.dedup_key.in_(seen_before)))
            claims.update({existing.dedup_key: Claim(None, existing) for existing in result.scalars()})
    return claims


async def claim(sessions: async_sessionmaker[AsyncSession], *, dedup_key: str, openid: str, kind: str,
                payload: dict, now: datetime) -> Claim:
    """Record one message (see claim_many)."""
    row = claim_row(dedup_key=dedup_key, openid=openid, kind=kind, payload=payload, now=now)
    return (await claim_many(sessions, [row]))[dedup_key]


async def get(session: AsyncSession, message_id: int) -> InboundMessage | None:
    return await session.get(InboundMessage, message_id, populate_existing=True)


class ClaimLost(Exception):
    """The message's claim was taken over (it ran past the lease, and recovery gave it to another handling):
    this handling must not count. Raised in its transaction, which then rolls back."""


# Built once, run on the driver in the handling transaction: it ends every message, if the claim is still
# the one this handling holds.
_FINISH = Prepared(update(_TABLE)
                   .where(_TABLE.c.id == bindparam("message_id"), _TABLE.c.status == InboundStatus.PROCESSING.value,
                          _TABLE.c.claimed_at == bindparam("claimed_at"))
                   .values(status=bindparam("status"), reply=bindparam("reply"), finished_at=bindparam("finished_at"),
                           error=bindparam("error"), reply_mode=bindparam("reply_mode"), full_reply=bindparam("full_reply"))
                   .returning(_TABLE.c.id))


async def finish(driver: Driver, message_id: int, *, claimed_at: datetime, status: InboundStatus,
                 replies: list[str], now: datetime, error: str | None = None, reply_mode: str | None = None,
                 full_reply: str | None = None) -> None:
    """Record a message's outcome. claimed_at: when this handling claimed it; if the message has been claimed
    again since (recovery took it over), raises ClaimLost and nothing of this handling may commit. On the driver
    of the handling's transaction (storage.transaction)."""
    finished = await driver.fetch(*_FINISH.bind(driver, {
        "message_id": message_id, "claimed_at": claimed_at, "status": status.value,
        "reply": json.dumps(replies, ensure_ascii=False), "finished_at": now, "error": error,
        "reply_mode": reply_mode, "full_reply": full_reply}))
    if not finished:
        raise ClaimLost(message_id)


async def set_reply_mode(session: AsyncSession, message_id: int, mode: str) -> None:
    await session.execute(update(_TABLE).where(_TABLE.c.id == message_id).values(reply_mode=mode))


def stored_replies(message: InboundMessage) -> list[str]:
    return json.loads(message.reply) if message.reply else []


async def orphaned(session: AsyncSession, *, claimed_before: datetime, limit: int = 100) -> list[InboundMessage]:
    """Messages whose owner died mid-way: still processing long after they were claimed (read through the partial
    index of messages being handled, ix_inbound_message_processing)."""
    result = await session.execute(
        select(InboundMessage)
        # The partial index's own condition as it is written, not a bound value: neither SQLite nor PostgreSQL's
        # prepared plans can tell that a parameter meets it, and would read the whole table instead.
        .where(INBOUND_PROCESSING, InboundMessage.claimed_at < claimed_before)
        .order_by(InboundMessage.id)
        .limit(limit)
    )
    return list(result.scalars())


async def take_over(session: AsyncSession, message: InboundMessage, now: datetime) -> bool:
    """Re-claim an orphan; only one process wins, because the old claimed_at must still match."""
    result = await session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == message.id, InboundMessage.status == InboundStatus.PROCESSING.value,
               InboundMessage.claimed_at == message.claimed_at)
        .values(claimed_at=now)
    )
    return result.rowcount == 1
