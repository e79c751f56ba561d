"""A message's handling transaction: statements on the driver from the start, an ORM session only if asked for.

Most messages (我的, 帮助, a greeting, a policy answer) read a few rows and store the reply. For them an ORM
session — opening it, beginning and committing through SQLAlchemy's Connection, closing it — cost more than
their statements (about 160 µs of a message's millisecond on SQLite). Here the transaction is begun on a pooled
connection's driver, as the claim's is (storage.driver.PooledTransaction), and the first time a handler asks for
the session it gets one over that same connection and transaction: SQLAlchemy then takes the transaction as one
it began (the BEGIN is not sent again, storage.db's begin hook sees ALREADY_BEGUN) and commits it. Objects read
before the session existed (the sender, storage.identities.touch) join it when it opens, with any change made to
them meanwhile, as a detached object added to a session does.

On PostgreSQL the transaction is asyncpg's own (`transaction()`), and SQLAlchemy's asyncpg adapter, which would
begin another (a savepoint inside ours) with its first statement, is put in autocommit mode while the session
uses the connection: its statements run in our transaction, its commit is empty, and ours commits after the
session has flushed. The adapter is put back before the connection returns to the pool.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from storage.db import ALREADY_BEGUN, ON_LOOP, engine_of
from storage.driver import Driver, PooledTransaction


class MessageTransaction:
    """`async with MessageTransaction(sessions) as tx:` commits when the block ends, rolls back if it raises.
    `tx.driver` runs statements in it (storage.driver); `tx.session` is its ORM session, opened on first use."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._engine = engine_of(sessions)
        self._begun: PooledTransaction | None = None
        self._session: AsyncSession | None = None  # once open, its Connection owns the pooled connection
        self._joining: list[Any] = []  # objects read on the driver, for the session when it opens
        self._postgres = self._engine.dialect.name == "postgresql"
        self.driver: Driver | None = None

    async def __aenter__(self) -> "MessageTransaction":
        self._begun = await PooledTransaction.begin(self._engine)
        self.driver = Driver(self._engine, self._begun.raw)
        return self

    def join(self, *objects: Any) -> None:
        """Objects read on the driver, detached (make_transient_to_detached), that belong to this transaction's
        session: added to it now if it is open, else when it opens."""
        present = [found for found in objects if found is not None]
        if self._session is not None:
            self._session.add_all(present)
        else:
            self._joining.extend(present)

    @property
    def session_opened(self) -> bool:
        """Whether a handler asked for the ORM session (and may have written through it)."""
        return self._session is not None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            # The pooled connection under a SQLAlchemy Connection that owns it from now on (and gives it back to
            # the pool when closed), marked so that its autobegin does not send BEGIN again.
            pooled = self._begun.pooled
            if self._postgres:
                pooled.dbapi_connection.autocommit = True  # see the module's docstring
            connection = Connection(self._engine.sync_engine, connection=pooled)
            connection.execution_options(**ON_LOOP, **ALREADY_BEGUN)
            self._session = self._sessions(bind=AsyncConnection(self._engine, connection))
            self._session.add_all(self._joining)
            self._joining.clear()
        return self._session

    async def __aexit__(self, kind, error, traceback) -> None:
        if kind is None and self._session is None and any(inspect(found).modified for found in self._joining):
            self.session  # a handler changed the sender (unfollowed, say) without a session: it writes them
        ok = kind is None
        try:
            if self._session is not None:
                # Flushes; on SQLite it also commits (SQLAlchemy took the transaction as its own), on PostgreSQL
                # the adapter's commit is empty and ours follows.
                await (self._session.commit() if ok else self._session.rollback())
        except BaseException:
            ok = False
            raise
        finally:
            try:
                if self._postgres or self._session is None:
                    await self._begun.end(ok)
            finally:
                await self._release()

    async def _release(self) -> None:
        """The connection back to the pool, as it was lent."""
        if self._session is None:
            await self._begun.give_back()
            return
        pooled = self._begun.pooled
        if self._postgres and pooled.dbapi_connection is not None:  # None: invalidated (closed under us)
            pooled.dbapi_connection.autocommit = False
        session, connection = self._session, self._session.bind
        await session.close()
        await connection.close()
