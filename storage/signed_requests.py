"""Signed webhook queries seen within the timestamp window, each with the digest of its body.

In plaintext mode WeChat's signature covers the token, timestamp and nonce but not the body, so a query
string captured from one genuine request (an access log keeps it) could carry any other body. Each
signed query is therefore admitted with one body only: WeChat's own retry repeats the body and passes;
the same signature with another body is refused. The memory is a table, so every process shares it and
it outlives a restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage.driver import Driver, driver_transaction
from storage.models import SignedRequest

_TABLE = SignedRequest.__table__


@dataclass(frozen=True)
class Seen:
    """One signed request: its query's key and its body's digest."""

    key: str
    body_digest: str
    at: datetime

    @classmethod
    def of(cls, *, timestamp: str, nonce: str, signature: str, body: bytes | str, at: datetime) -> "Seen":
        """The key is the query's timestamp (the webhook has checked it is at most 12 digits), zero-padded, then
        the query's digest: 64 characters whatever the query holds. Led by the time, the keys of a moment's
        requests sit side by side in the table's index, so recording a batch writes a page or two, not a page
        for every request, as a key of the digest alone (scattered over the whole index) did."""
        query = "\x1f".join((timestamp, nonce, signature))
        body_bytes = body.encode("utf-8") if isinstance(body, str) else body
        digest = hashlib.sha256(query.encode("utf-8")).hexdigest()
        return cls(key=f"{timestamp[-12:]:0>12}{digest[:52]}",
                   body_digest=hashlib.sha256(body_bytes).hexdigest(), at=at)


# What a signed query's record writes; the first is the unique one.
_COLUMNS = (_TABLE.c.key, _TABLE.c.body_digest, _TABLE.c.seen_at)


class Replayed(Exception):
    """A signed query seen before with another body: refused, and nothing of the request is recorded."""


async def admit_many(engine: AsyncEngine, requests: list[Seen]) -> list[bool]:
    """Whether each request may proceed (admit_on), in a transaction of its own."""
    async with driver_transaction(engine) as driver:
        return await admit_on(driver, requests)


async def admit_on(driver: Driver, requests: list[Seen]) -> list[bool]:
    """Whether each request may proceed: its query is new, or was seen before with the same body. Written in the
    driver's transaction (storage.driver): the webhook's requests are admitted in the transaction that claims
    their messages (bot.dispatch.intake_rows), so that a request costs one batch's commit, not two."""
    first: dict[str, Seen] = {}
    for request in requests:
        first.setdefault(request.key, request)
    inserted = await driver.insert_new(
        _COLUMNS, [dict(key=request.key, body_digest=request.body_digest, seen_at=request.at)
                   for request in first.values()], returning=(_TABLE.c.key,))
    stored = {key: first[key].body_digest for key, in inserted}
    # Only a query seen before (WeChat's retry, or a replay) needs the digest it was first seen with.
    seen_before = [key for key in first if key not in stored]
    if seen_before:
        quote = driver.dialect.identifier_preparer.quote
        key, digest = quote(_TABLE.c.key.name), quote(_TABLE.c.body_digest.name)
        stored.update(await driver.fetch(f"SELECT {key}, {digest} FROM {quote(_TABLE.name)} WHERE {key} IN "
                                         f"({', '.join('?' * len(seen_before))})", seen_before))
    return [stored.get(request.key) == request.body_digest for request in requests]


# How many old queries one pruning transaction drops. At a few thousand requests a second a minute's queries in one
# DELETE held the write lock for about a third of a second (150,000 of 1.65 million rows, SQLite): every message
# waited that long. A piece of this size took 15–35 ms there, and the other transactions get their turns between.
FORGET_BATCH = 5_000


async def forget_before(session: AsyncSession, cutoff: datetime, *, limit: int = FORGET_BATCH) -> int:
    """Drop up to limit queries seen before cutoff, the oldest first: their timestamps are outside the window and
    refused anyway. How many were dropped; as many as limit means there may be more."""
    oldest = select(SignedRequest.key).where(SignedRequest.seen_at < cutoff).order_by(SignedRequest.seen_at).limit(limit)
    result = await session.execute(delete(SignedRequest).where(SignedRequest.key.in_(oldest)))
    return result.rowcount or 0


def retention(window_seconds: int) -> timedelta:
    """How long a query must be remembered: its timestamp may be up to a window ahead of our clock when
    first seen and is accepted until a window behind it."""
    return timedelta(seconds=2 * window_seconds + 60)
