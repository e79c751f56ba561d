"""A message's handling transaction: statements on the driver from the start, an ORM session only if asked for.

Most messages (我的, 帮助, a greeting, a policy answer) read a few rows and store the reply. For them an ORM
session — opening it, beginning and committing through SQLAlchemy's Connection, closing it — cost more than
their statements (about 160 µs of a message's millisecond on SQLite). Here the transaction is begun on a pooled
connection's driver, as the claim's is (storage.driver.driver_transaction), and the first time a handler asks for
the session it gets one over that same connection and transaction: SQLAlchemy then takes the transaction as one
it began (the BEGIN is not sent again, storage.db's begin hook sees ALREADY_BEGUN) and commits it. Objects read
before the session existed (the sender, storage.identities.touch) join it when it opens, with any change made to
them meanwhile, as a detached object added to a session does.

On PostgreSQL the session is opened at once: SQLAlchemy's asyncpg adapter begins its own transaction with the
first statement and would nest a savepoint inside one begun on the driver; there the round trips, not this
bookkeeping, are most of a message's cost.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.util import greenlet_spawn

from storage.db import ALREADY_BEGUN, ON_LOOP, engine_of
from storage.driver import Driver, session_driver
from storage.sqlite_driver import LoopConnection


class MessageTransaction:
    """`async with MessageTransaction(sessions) as tx:` commits when the block ends, rolls back if it raises.
    `tx.driver` runs statements in it (storage.driver); `tx.session` is its ORM session, opened on first use."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._engine = engine_of(sessions)
        self._pooled: Any = None  # the pooled connection while no session holds it
        self._session: AsyncSession | None = None
        self._joining: list[Any] = []  # objects read on the driver, for the session when it opens
        self.driver: Driver | None = None

    @property
    def session_opened(self) -> bool:
        return self._session is not None

    async def __aenter__(self) -> "MessageTransaction":
        if self._engine.dialect.name != "sqlite":
            self._session = self._sessions()
            await self._session.begin()
            return self
        self._pooled = await self._engine.raw_connection()
        raw = self._pooled.driver_connection
        try:
            if isinstance(raw, LoopConnection):
                raw.use_loop(True)  # a few indexed rows: on the loop, waiting for the lock asleep
            await raw.execute("BEGIN IMMEDIATE")
        except BaseException:
            await self._give_back()
            raise
        self.driver = Driver(self._engine, raw)
        return self

    async def ensure_driver(self) -> Driver:
        """The driver; on PostgreSQL only after a first statement through the session (see session_driver)."""
        if self.driver is None:
            self.driver = await session_driver(self._session)
        return self.driver

    def join(self, *objects: Any) -> None:
        """Objects read on the driver, detached (make_transient_to_detached), that belong to this transaction's
        session: added to it now if it is open, else when it opens."""
        present = [found for found in objects if found is not None]
        if self._session is not None:
            self._session.add_all(present)
        else:
            self._joining.extend(present)

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            # The pooled connection under a SQLAlchemy Connection that owns it from now on (and gives it back to
            # the pool when closed), marked so that its autobegin does not send BEGIN again.
            connection = Connection(self._engine.sync_engine, connection=self._pooled)
            connection.execution_options(**ON_LOOP, **ALREADY_BEGUN)
            self._pooled = None
            self._session = self._sessions(bind=AsyncConnection(self._engine, connection))
            self._session.add_all(self._joining)
            self._joining.clear()
        return self._session

    async def __aexit__(self, kind, error, traceback) -> None:
        if kind is None and self._session is None and any(inspect(found).modified for found in self._joining):
            self.session  # a handler changed the sender (unfollowed, say) without a session: it writes them
        if self._session is None:
            raw = self._pooled.driver_connection
            try:
                await (raw.commit() if kind is None else raw.rollback())
            finally:
                await self._give_back()
            return
        session, connection = self._session, self._session.bind
        try:
            await (session.commit() if kind is None else session.rollback())
        finally:
            await session.close()
            if isinstance(connection, AsyncConnection):
                await connection.close()  # back to the pool

    async def _give_back(self) -> None:
        pooled, self._pooled = self._pooled, None
        raw = pooled.driver_connection
        # A connection the server closed must not go back to the pool (SQLAlchemy would have noticed).
        if getattr(raw, "is_closed", lambda: False)():
            await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)
