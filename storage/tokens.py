"""The API access token, shared by every process through the access_token table.

WeChat allows few token fetches a day and a new token retires the old one after five minutes, so one
process refreshes while the others wait for its result. Across processes a lease in the row decides who
refreshes; inside a process an asyncio.Lock and a cached copy keep concurrent tasks from even reaching
the database in a stampede.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import database_busy, short_error
from storage.models import AccessToken
from storage.upsert import insert_for

# Refresh this long before expiry, so a token never dies between being handed out and being used.
REFRESH_MARGIN = timedelta(seconds=300)
# Longer than one token request may take (the client times out sooner), so a lease outlives a live
# refresh but not a process that died holding it.
LEASE = timedelta(seconds=30)

log = logging.getLogger(__name__)

Fetch = Callable[[bool], Awaitable[tuple[str, int]]]


class TokenRefreshTimeout(TimeoutError):
    """No token in time: another process holds the refresh lease, or the database stayed locked.
    The caller's message is not at fault; it may be sent again later."""


@dataclass(frozen=True)
class _Held:
    token: str | None
    expires_at: datetime | None


class TokenStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock, *, poll_interval: float = 0.1,
                 wait_limit: float = 10.0) -> None:
        self._sessions = sessions
        self._clock = clock
        self._poll_interval = poll_interval
        self._wait_limit = wait_limit
        self._cache: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, app_id: str, fetch: Fetch, *, force: bool = False, failed_token: str | None = None) -> str:
        """A token with more than five minutes to live, refreshed through fetch(force_refresh) if needed.

        force: the API rejected failed_token (40001/42001). A refresh happens only while the stored
        token is still that one, so tasks that saw the same rejection refresh once between them.
        Without failed_token a forced call always refreshes.
        """
        if not force:
            cached = self._cache.get(app_id)
            if cached and self._usable(cached, force=False, failed_token=None):
                return cached.token
        async with self._locks.setdefault(app_id, asyncio.Lock()):
            # Another task of this process may have refreshed while this one waited for the lock.
            cached = self._cache.get(app_id)
            if cached and self._usable(cached, force=force, failed_token=failed_token):
                return cached.token
            held = await self._shared_token(app_id, fetch, force=force, failed_token=failed_token)
            self._cache[app_id] = held
            return held.token

    def _usable(self, held: _Held, *, force: bool, failed_token: str | None) -> bool:
        if held.token is None or held.expires_at is None:
            return False
        if held.expires_at - self._clock.now() <= REFRESH_MARGIN:
            return False
        if force:
            return failed_token is not None and held.token != failed_token
        return True

    async def _shared_token(self, app_id: str, fetch: Fetch, *, force: bool, failed_token: str | None) -> _Held:
        loop = asyncio.get_running_loop()
        # Real time, not the service clock: tests freeze the clock, and the wait must still end.
        deadline = loop.time() + self._wait_limit
        while True:
            try:
                held, lease = await self._take_lease(app_id, force=force, failed_token=failed_token)
            except Exception as error:
                # SQLite locked by another process (an import) for longer than a transaction waits: try
                # again until the wait limit, then let the caller treat it as a transient failure.
                if not database_busy(error):
                    raise
                if loop.time() >= deadline:
                    raise TokenRefreshTimeout(f"no access token for {app_id}: the database stayed busy "
                                              f"({short_error(error)})") from error
                log.warning("access token for %s: the database is busy (%s); trying again", app_id,
                            short_error(error))
                await asyncio.sleep(self._poll_interval)
                continue
            if lease is None and self._usable(held, force=force, failed_token=failed_token):
                return held
            if lease is not None:
                return await self._refresh(app_id, fetch, lease, force=force)
            if loop.time() >= deadline:
                raise TokenRefreshTimeout(f"no access token for {app_id}: another process holds the refresh lease")
            await asyncio.sleep(self._poll_interval)

    async def _take_lease(self, app_id: str, *, force: bool, failed_token: str | None
                          ) -> tuple[_Held, datetime | None]:
        """The stored token, and a lease when it needs refreshing and no other process is refreshing it.

        The atomic UPDATE picks one winner; reading the row after it, in the same transaction, sees
        any token the previous holder stored, so a winner that finds a good token gives the lease back.
        """
        now = self._clock.now()
        lease = now + LEASE
        async with self._sessions.begin() as session:
            await session.execute(
                insert_for(session, AccessToken).values(app_id=app_id).on_conflict_do_nothing(index_elements=["app_id"])
            )
            won = (await session.execute(
                update(AccessToken)
                .where(AccessToken.app_id == app_id)
                .where(or_(AccessToken.refresh_lease_until.is_(None), AccessToken.refresh_lease_until < now))
                .values(refresh_lease_until=lease)
                .execution_options(synchronize_session=False)
            )).rowcount == 1
            row = (await session.execute(
                select(AccessToken.token, AccessToken.expires_at).where(AccessToken.app_id == app_id)
            )).one()
            held = _Held(row.token, row.expires_at)
            if not won:
                return held, None
            if self._usable(held, force=force, failed_token=failed_token):
                await self._clear_lease(session, app_id)
                return held, None
            return held, lease

    async def _refresh(self, app_id: str, fetch: Fetch, lease: datetime, *, force: bool) -> _Held:
        try:
            token, expires_in = await fetch(force)
        except BaseException:
            await self._give_back(app_id, lease)
            raise
        held = _Held(token, self._clock.now() + timedelta(seconds=expires_in))
        try:
            async with self._sessions.begin() as session:
                # Written even if the lease ran out meanwhile: the token is valid either way, and a
                # second refresher only makes this one retire five minutes later.
                await session.execute(
                    update(AccessToken)
                    .where(AccessToken.app_id == app_id)
                    .values(token=held.token, expires_at=held.expires_at, refresh_lease_until=None)
                    .execution_options(synchronize_session=False)
                )
        except Exception as error:
            if not database_busy(error):
                raise
            # The token is good: this process uses it (cached by get); other processes refresh once the
            # lease runs out, as if this one had died.
            log.warning("access token for %s: fetched, but could not store it (%s)", app_id, short_error(error))
        return held

    async def _give_back(self, app_id: str, lease: datetime) -> None:
        """Release the lease after a failed fetch so a waiter can try at once instead of after 30 s."""
        try:
            async with self._sessions.begin() as session:
                await session.execute(
                    update(AccessToken)
                    .where(AccessToken.app_id == app_id, AccessToken.refresh_lease_until == lease)
                    .values(refresh_lease_until=None)
                    .execution_options(synchronize_session=False)
                )
        except Exception as exc:
            # The lease expires by itself; the fetch error is the one worth raising.
            log.warning("could not release the token refresh lease for %s: %s", app_id, exc)

    @staticmethod
    async def _clear_lease(session: AsyncSession, app_id: str) -> None:
        await session.execute(
            update(AccessToken)
            .where(AccessToken.app_id == app_id)
            .values(refresh_lease_until=None)
            .execution_options(synchronize_session=False)
        )
