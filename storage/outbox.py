"""The outbox table's queries: adding rows, claiming due rows with a lease, recording outcomes, recovery.

Everything here is one short statement (or a few) inside the caller's transaction, written against the
table rather than the ORM so that batches of thousands stay cheap. Nothing here talks to the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from storage.driver import Driver, Prepared
from storage.models import OUTBOX_WAITING, Member, OutboxMessage, OutboxStatus, UTCDateTime, WeChatIdentity
from storage.upsert import insert_for

OUTBOX = OutboxMessage.__table__
IDENTITY = WeChatIdentity.__table__
MEMBER = Member.__table__

PENDING = OutboxStatus.PENDING.value
SENDING = OutboxStatus.SENDING.value
SENT = OutboxStatus.SENT.value
FAILED = OutboxStatus.FAILED.value
WAITING = OutboxStatus.WAITING.value

# WeChat's customer-service allowance: after a member's message, this many messages within this long.
WINDOW_LENGTH = timedelta(hours=48)
WINDOW_MESSAGES = 5

# Rows per multi-row INSERT: at about a dozen columns a row, far below SQLite's limit of 32,766 bound values.
INSERT_CHUNK = 500
ERROR_MAX = 300


@dataclass(frozen=True)
class Reach:
    """How a member can be reached: their bound follower, if any, and whether they turned reminders off."""

    openid: str
    subscribed: bool
    reminders_muted: bool = False


async def reach_of_members(session: AsyncSession, member_ids: Iterable[int]) -> dict[int, Reach]:
    ids = sorted(set(member_ids))
    found: dict[int, Reach] = {}
    for start in range(0, len(ids), INSERT_CHUNK):
        rows = await session.execute(
            select(IDENTITY.c.member_id, IDENTITY.c.openid, IDENTITY.c.subscribed, MEMBER.c.reminders_muted)
            .select_from(IDENTITY.join(MEMBER, MEMBER.c.id == IDENTITY.c.member_id))
            .where(IDENTITY.c.member_id.in_(ids[start:start + INSERT_CHUNK])))
        found.update({row.member_id: Reach(row.openid, row.subscribed, row.reminders_muted) for row in rows})
    return found


async def unfollowed_openids(session: AsyncSession, openids: Iterable[str]) -> set[str]:
    ids = sorted(set(openids))
    gone: set[str] = set()
    for start in range(0, len(ids), INSERT_CHUNK):
        rows = await session.execute(
            select(IDENTITY.c.openid)
            .where(IDENTITY.c.openid.in_(ids[start:start + INSERT_CHUNK]), IDENTITY.c.subscribed.is_(False)))
        gone.update(rows.scalars())
    return gone


async def insert_rows(session: AsyncSession, rows: list[dict]) -> int:
    """Insert outbox rows (dicts of column values); a row whose idempotency key exists adds nothing.

    Returns how many were added.
    """
    added = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start:start + INSERT_CHUNK]
        statement = (insert_for(session, OUTBOX).values(chunk)
                     .on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(OUTBOX.c.id))
        added += len((await session.execute(statement)).all())
    return added


async def insert_for_members(session: AsyncSession, member_ids: sa.Select, *, key_prefix: str, kind: str, text: str,
                             ref: str | None, template_data: str | None, urgent: bool, due_at: datetime,
                             now: datetime, unbound_reason: str, unfollowed_reason: str, reminder: bool = False,
                             muted_reason: str = "", waits: str | None = None,
                             expires_at: datetime | None = None) -> int:
    """One row per member id the select yields (its first column), in a single INSERT … SELECT in the database.

    The openid is the member's bound follower. Members nobody can reach get a row that is already failed
    with a reason, so that delivery reports list them instead of silently leaving them out; so do members
    who turned reminders off, when the rows are reminders.
    """
    audience = member_ids.subquery("audience")
    member_id = list(audience.c)[0]
    unbound = IDENTITY.c.openid.is_(None)
    unfollowed = IDENTITY.c.subscribed.is_(False)
    failures = [(unbound, unbound_reason), (unfollowed, unfollowed_reason)]  # (when, why) the row is failed
    source = audience.outerjoin(IDENTITY, IDENTITY.c.member_id == member_id)
    if reminder:
        # Only reminders read the member table: a plain broadcast to 70,000 members skips the join.
        source = source.outerjoin(MEMBER, MEMBER.c.id == member_id)
        failures.append((MEMBER.c.reminders_muted.is_(True), muted_reason))
    rows = (
        select(
            sa.literal(f"{key_prefix}:", sa.String) + sa.cast(member_id, sa.String),
            sa.literal(kind, sa.String),
            sa.literal(ref, sa.String),
            member_id,
            IDENTITY.c.openid,
            sa.literal(text, sa.Text),
            sa.literal(template_data, sa.Text),
            sa.literal(urgent, sa.Boolean),
            sa.literal(reminder, sa.Boolean),
            sa.case(*((when, FAILED) for when, _ in failures), else_=PENDING),
            sa.literal(0, sa.Integer),
            sa.literal(due_at, UTCDateTime()),
            sa.literal(now, UTCDateTime()),
            sa.case(*failures, else_=sa.null()),
            sa.literal(waits, sa.Text),
            sa.literal(expires_at, UTCDateTime()),
        )
        .select_from(source)
        # Also keeps SQLite from reading the upsert's ON as part of the join (its documented ambiguity).
        .where(member_id.is_not(None))
    )
    columns = ["idempotency_key", "kind", "ref", "member_id", "openid", "text", "template_data", "urgent", "reminder",
               "status", "attempts", "due_at", "created_at", "error", "waits", "expires_at"]
    statement = (insert_for(session, OUTBOX).from_select(columns, rows)
                 .on_conflict_do_nothing(index_elements=["idempotency_key"]))
    result = await session.execute(statement)
    return max(result.rowcount or 0, 0)


def _one_of(session: AsyncSession, column, ids: list[int]):
    """column matches one of ids, bound as a single parameter.

    An IN list of a batch's ids costs SQLAlchemy one rendered parameter per id on every execution;
    a PostgreSQL array or a SQLite JSON array is one value, whatever the batch size.
    """
    if session.bind.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, ids, type_=postgresql.ARRAY(sa.Integer)))
    values = sa.func.json_each(sa.bindparam(None, json.dumps(ids), type_=sa.String)).table_valued("value")
    return column.in_(select(values.c.value))


@dataclass(slots=True)
class Claimed:
    """A row a worker now holds, with what channel choice needs to know about its recipient."""

    id: int
    openid: str | None
    member_id: int | None
    kind: str
    text: str
    template_data: str | None
    urgent: bool
    attempts: int  # including the attempt this claim starts
    last_message_at: datetime | None
    window_sent: int
    subscribed: bool | None  # None: no follower row for this openid
    ref: str | None = None  # the feature record ("notice:12"): its page is the template's link
    may_wait: bool = False  # it has a waits line: with no channel it waits instead of failing


async def claim(session: AsyncSession, *, now: datetime, lease_until: datetime, limit: int,
                urgent_only: bool = False) -> list[Claimed]:
    """Take up to limit due rows: they become SENDING until lease_until.

    On PostgreSQL SKIP LOCKED lets several processes claim side by side without waiting on each other;
    SQLite's BEGIN IMMEDIATE already makes the whole transaction exclusive.
    """
    query = (
        select(OUTBOX.c.id, OUTBOX.c.openid, OUTBOX.c.member_id, OUTBOX.c.kind, OUTBOX.c.text,
               OUTBOX.c.template_data, OUTBOX.c.urgent, OUTBOX.c.attempts, IDENTITY.c.last_message_at,
               IDENTITY.c.window_sent, IDENTITY.c.subscribed, OUTBOX.c.ref, OUTBOX.c.waits.is_not(None))
        .select_from(OUTBOX.outerjoin(IDENTITY, IDENTITY.c.openid == OUTBOX.c.openid))
        .where(OUTBOX.c.status == PENDING, OUTBOX.c.due_at <= now)
        # Rows due at the same moment go in the order they were written (a member's are then sent one after
        # another in that order, bot.outbox._Batch); ix_outbox_due holds id, so neither engine sorts a broadcast.
        .order_by(OUTBOX.c.due_at, OUTBOX.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=OUTBOX)
    )
    if urgent_only:
        query = query.where(OUTBOX.c.urgent.is_(True))
    rows = (await session.execute(query)).all()
    if not rows:
        return []
    await session.execute(
        update(OUTBOX).where(_one_of(session, OUTBOX.c.id, [row[0] for row in rows]))
        .values(status=SENDING, lease_until=lease_until, attempts=OUTBOX.c.attempts + 1))
    # Unpacked by position: a batch is hundreds of rows, and named access costs a lookup per field.
    return [Claimed(row_id, openid, member_id, kind, text, template_data, urgent, attempts + 1, last_message_at,
                    window_sent or 0, subscribed, ref, bool(may_wait))
            for (row_id, openid, member_id, kind, text, template_data, urgent, attempts, last_message_at,
                 window_sent, subscribed, ref, may_wait) in rows]


# A worker whose lease ran out may still report; a row another process recovered (pending again) is
# then settled by that report instead of being sent a second time.
_STILL_OURS = sa.or_(OUTBOX.c.status == SENDING, OUTBOX.c.status == PENDING)  # no IN: executemany


@dataclass(frozen=True)
class Sent:
    id: int
    channel: str


@dataclass(frozen=True)
class Failed:
    id: int
    error_code: int | None
    error: str


@dataclass(frozen=True)
class Retry:
    id: int
    due_at: datetime
    error_code: int | None
    error: str


async def record(session: AsyncSession, *, now: datetime, sent: list[Sent] = (), failed: list[Failed] = (),
                 retry: list[Retry] = (), release: list[int] = (), waiting: list[int] = (),
                 window_used: Mapping[str, int] | None = None, windows_closed: Iterable[str] = ()) -> None:
    """Record a batch's outcomes: one executemany per kind of outcome.

    release: rows put back untouched (the attempt does not count), e.g. when the daily quota ran out.
    waiting: rows no channel reaches now that wait for the member's next message (hand_over_waiting).
    window_used: customer-service messages sent per openid; windows_closed: openids WeChat refused them for.
    """
    # Sent rows, the bulk of every batch, take one statement per channel rather than one per row.
    for channel in sorted({item.channel for item in sent}):
        await session.execute(
            update(OUTBOX).where(_one_of(session, OUTBOX.c.id, [item.id for item in sent if item.channel == channel]),
                                 _STILL_OURS)
            .values(status=SENT, channel=channel, sent_at=now, lease_until=None, error_code=None, error=None))
    if failed:
        await session.execute(
            update(OUTBOX).where(OUTBOX.c.id == bindparam("row_id"), _STILL_OURS)
            .values(status=FAILED, lease_until=None, error_code=bindparam("row_code"),
                    error=bindparam("row_error")),
            [{"row_id": item.id, "row_code": item.error_code, "row_error": item.error[:ERROR_MAX]}
             for item in failed])
    if retry:
        await session.execute(
            update(OUTBOX).where(OUTBOX.c.id == bindparam("row_id"), _STILL_OURS)
            .values(status=PENDING, lease_until=None, due_at=bindparam("row_due"), error_code=bindparam("row_code"),
                    error=bindparam("row_error")),
            [{"row_id": item.id, "row_due": item.due_at, "row_code": item.error_code,
              "row_error": item.error[:ERROR_MAX]} for item in retry])
    if release:
        await session.execute(
            update(OUTBOX).where(_one_of(session, OUTBOX.c.id, list(release)), OUTBOX.c.status == SENDING)
            .values(status=PENDING, lease_until=None, attempts=OUTBOX.c.attempts - 1))
    if waiting:
        await session.execute(
            update(OUTBOX).where(_one_of(session, OUTBOX.c.id, list(waiting)), _STILL_OURS)
            .values(status=WAITING, lease_until=None, error_code=None, error=None))
    if window_used:
        await session.execute(
            update(IDENTITY).where(IDENTITY.c.openid == bindparam("who"))
            .values(window_sent=IDENTITY.c.window_sent + bindparam("used", type_=sa.Integer)),
            [{"who": openid, "used": used} for openid, used in window_used.items()])
    closed = sorted(set(windows_closed))
    if closed:
        # Counted as used up until the member writes again (storage.identities.touch starts a new count).
        await session.execute(update(IDENTITY).where(IDENTITY.c.openid.in_(closed)).values(window_sent=WINDOW_MESSAGES))


async def withdraw_reminders(session: AsyncSession, member_id: int, *, reason: str, kind: str | None = None) -> int:
    """A member's reminders not yet sent (pending, or waiting for their next message) become failed with the
    reason (they turned reminders off); only those of one kind when kind is given (关闭学习提醒)."""
    query = update(OUTBOX).where(OUTBOX.c.member_id == member_id, OUTBOX.c.reminder.is_(True),
                                 OUTBOX.c.status.in_([PENDING, WAITING]))
    if kind is not None:
        query = query.where(OUTBOX.c.kind == kind)
    result = await session.execute(query.values(status=FAILED, error=reason, lease_until=None))
    return max(result.rowcount or 0, 0)


async def withdraw_for_member(session: AsyncSession, member_id: int, refs: list[str], *, reason: str) -> int:
    """One member's messages about these records that have not gone out yet stop (they have just seen or done
    what the messages were about); failed with the reason, as withdraw_pending's are."""
    if not refs:
        return 0
    result = await session.execute(
        update(OUTBOX).where(OUTBOX.c.member_id == member_id, OUTBOX.c.ref.in_(refs),
                             OUTBOX.c.status.in_([PENDING, WAITING]))
        .values(status=FAILED, error=reason[:ERROR_MAX], lease_until=None))
    return max(result.rowcount or 0, 0)


async def deliver_to_new_binding(session: AsyncSession, member_id: int, openid: str, *, kinds: Iterable[str],
                                 unbound_reason: str, since: datetime, now: datetime) -> int:
    """Messages of these kinds, written since `since`, that failed only because the member had not bound
    WeChat yet go out now to the follower who just bound: a member who binds late still gets the last
    days' notices, and the sender's report moves them from unbound to sent. Returns how many."""
    result = await session.execute(
        update(OUTBOX).where(OUTBOX.c.member_id == member_id, OUTBOX.c.kind.in_(list(kinds)),
                             OUTBOX.c.status == FAILED, OUTBOX.c.error == unbound_reason,
                             OUTBOX.c.created_at >= since)
        .values(status=PENDING, openid=openid, error=None, attempts=0, due_at=now, lease_until=None))
    return max(result.rowcount or 0, 0)


async def recover(session: AsyncSession, *, now: datetime) -> int:
    """Rows whose worker's lease ran out (its process died) go back to pending; returns how many."""
    result = await session.execute(
        update(OUTBOX).where(OUTBOX.c.status == SENDING, OUTBOX.c.lease_until < now)
        .values(status=PENDING, lease_until=None))
    return max(result.rowcount or 0, 0)


async def status_counts(session: AsyncSession, ref: str | None = None) -> dict[str, int]:
    """How many rows are in each status, for one feature record (ref) or the whole outbox."""
    query = select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
    if ref is not None:
        query = query.where(OUTBOX.c.ref == ref)
    return {status: count for status, count in (await session.execute(query)).all()}


async def withdraw_pending(session: AsyncSession, ref: str, *, reason: str) -> int:
    """Stop a record's messages that have not gone out yet (a meeting moved or cancelled); returns how many.

    They become failed with the reason rather than deleted, so reports still show what happened; so do
    waiting ones, which must not reach the member later. Rows a worker holds right now are left alone: they
    may already be on their way.
    """
    result = await session.execute(
        update(OUTBOX).where(OUTBOX.c.ref == ref, OUTBOX.c.status.in_([PENDING, WAITING]))
        .values(status=FAILED, error=reason[:ERROR_MAX], lease_until=None))
    return max(result.rowcount or 0, 0)


async def addressed_to(session: AsyncSession, ref: str, member_id: int) -> bool:
    """Whether any message about this record (ref "notice:12") was addressed to this member: who may open
    its page from a link."""
    query = select(OUTBOX.c.id).where(OUTBOX.c.ref == ref, OUTBOX.c.member_id == member_id).limit(1)
    return (await session.execute(query)).first() is not None


# A member's waiting rows whose expiry has not passed, as one statement built once: it runs for every
# message a member sends. OUTBOX_WAITING is written as the partial index's predicate, so that PostgreSQL
# and SQLite use the index (neither matches a bound parameter against it).
_WAITING_FOR = sa.and_(OUTBOX.c.openid == bindparam("w_openid"), OUTBOX_WAITING,
                       sa.or_(OUTBOX.c.expires_at.is_(None),
                              OUTBOX.c.expires_at > bindparam("w_now", type_=UTCDateTime)))
# Both run on the driver, in the handling transaction (storage.driver).
_HAND_OVER = Prepared(update(OUTBOX).where(_WAITING_FOR)
                      .values(status=SENT, channel=bindparam("w_channel"),
                              sent_at=bindparam("w_now", type_=UTCDateTime))
                      .returning(OUTBOX.c.id, OUTBOX.c.waits))
_RELEASE = Prepared(update(OUTBOX).where(_WAITING_FOR)
                    .values(status=PENDING, due_at=bindparam("w_now", type_=UTCDateTime))
                    .returning(OUTBOX.c.id))


async def hand_over_waiting(driver: Driver, openid: str, *, now: datetime, channel: str) -> list[str]:
    """The member behind openid just wrote and the reply to it will carry their waiting rows: the rows become
    sent through channel, and their waits lines are returned, in the order the rows were written.

    One UPDATE … RETURNING: two messages handled at once cannot both take a row (on PostgreSQL the second
    waits for the first's row locks, then finds the rows no longer waiting).
    """
    rows = await driver.fetch(*_HAND_OVER.bind(driver, {"w_openid": openid, "w_now": now, "w_channel": channel}))
    return [waits for _, waits in sorted(rows)]


async def release_waiting(driver: Driver, openid: str, *, now: datetime) -> int:
    """The member behind openid just wrote but nothing replies to it: their waiting rows become pending, due
    now, for the outbox to send through the window the message opened. Returns how many."""
    return len(await driver.fetch(*_RELEASE.bind(driver, {"w_openid": openid, "w_now": now})))
