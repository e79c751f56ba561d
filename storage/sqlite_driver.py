"""SQLite for the event loop: the sqlite3 driver behind the interface SQLAlchemy's aiosqlite dialect uses,
running a transaction's statements either on the loop itself or in the connection's own thread.

Why not aiosqlite alone: it sends every statement to a thread and back, and on the webhook's path a message
costs some seventeen such round trips (about 40 µs each), more than the statements themselves, which read
and write a few indexed rows of a local file in microseconds. Those transactions run on the loop
(storage.db.ON_LOOP). Transactions that may read or write much (console pages, exports, imports, the outbox's
batches, the jobs) keep running in the thread, so the loop is never held up by a long statement.

Waiting for the write lock never blocks the loop: on the loop SQLite does not wait at all (busy timeout 0),
and a BEGIN that finds the lock taken sleeps on the loop a few milliseconds and tries again, up to
storage.db.SQLITE_LOCK_WAIT. In the thread, the usual short busy rounds apply.

The statements storage.driver sends in a transaction on the loop skip even this interface (fetch_on_loop,
end_on_loop): nothing in them can wait, so they are plain calls, not coroutines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# How long a BEGIN on the loop sleeps between looks for the write lock.
LOCK_POLL_SECONDS = 0.002


class _Transfer:
    """What aiosqlite's isolation-level setter expects: a queue whose items run on the driver's connection."""

    def __init__(self, connection: "LoopConnection") -> None:
        self._connection = connection

    def put_nowait(self, item: tuple[asyncio.Future, Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # noqa: BLE001 (handed to the waiter)
            future.set_exception(error)


class LoopConnection:
    """One sqlite3 connection with aiosqlite's coroutine interface; see the module's docstring."""

    def __init__(self, path: str, *, busy_round_ms: int, lock_wait: Callable[[], float], **connect: Any) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, **connect)
        self._connection = self._conn  # SQLAlchemy's adapter checks it to see whether the connection is open
        self._tx = _Transfer(self)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zhibu-sqlite")
        self._busy_round_ms = busy_round_ms
        self._lock_wait = lock_wait
        self.on_loop = False
        self._timeout_ms = busy_round_ms  # the busy timeout set on the connection now
        # The call last sent to the thread. A caller cancelled while it ran (a browser hanging up on a console page,
        # a stop during start-up) no longer waits for it, but the thread still runs it: whatever uses the connection
        # next waits for it to end first (thread_idle), or sqlite3 refuses ("Recursive use of cursors").
        self._in_thread_now: concurrent.futures.Future | None = None

    # -- the switch

    def use_loop(self, on_loop: bool) -> None:
        """Run the coming statements on the loop (on_loop) or in the thread; set before a transaction begins."""
        self.on_loop = on_loop

    def _set_timeout(self, milliseconds: int) -> None:
        if self._timeout_ms != milliseconds:
            self._conn.execute(f"PRAGMA busy_timeout={milliseconds}")
            self._timeout_ms = milliseconds

    async def run(self, function: Callable[[], T]) -> T:
        if self.on_loop:
            if self.thread_busy:
                await self.thread_idle()
            self._set_timeout(0)
            return function()
        self._in_thread_now = self._thread.submit(self._in_thread, function)
        return await asyncio.wrap_future(self._in_thread_now)

    @property
    def thread_busy(self) -> bool:
        return self._in_thread_now is not None and not self._in_thread_now.done()

    async def thread_idle(self) -> None:
        """Wait until the thread has finished what it was last given (its outcome is its caller's)."""
        running = self._in_thread_now
        if running is not None and not running.done():
            await asyncio.wait([asyncio.wrap_future(running)])

    def _in_thread(self, function: Callable[[], T]) -> T:
        self._set_timeout(self._busy_round_ms)
        return function()

    # -- aiosqlite's Connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> "LoopCursor":
        return LoopCursor(self)

    async def execute(self, sql: str, parameters: Any = ()) -> "LoopCursor":
        cursor = self.cursor()
        await cursor.execute(sql, parameters)
        return cursor

    async def begin_immediate(self, cursor: sqlite3.Cursor | None = None) -> None:
        """BEGIN IMMEDIATE on the loop: sleep on the loop while another connection holds the write lock."""
        deadline = None
        if self.thread_busy:
            await self.thread_idle()
        self._set_timeout(0)
        while True:
            try:
                (cursor or self._conn).execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if not busy(error):
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self._lock_wait()
                if now >= deadline:
                    raise
            await asyncio.sleep(LOCK_POLL_SECONDS)

    # -- a transaction on the loop, statement by statement, with no coroutine in between (storage.driver): each of
    # its statements takes SQLite a few microseconds, and the awaits, cursor and lambda of the interface above cost
    # about as much again

    def fetch_on_loop(self, sql: str, parameters: tuple) -> list[tuple]:
        """The rows of one statement run here and now, in a transaction begun on the loop."""
        cursor = self._conn.execute(sql, parameters)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    def end_on_loop(self, commit: bool) -> None:
        """COMMIT or ROLLBACK of a transaction begun on the loop, here and now."""
        if commit:
            self._conn.commit()
        else:
            self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.run(lambda: self._conn.create_function(*args, **kwargs))

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        await self.run(self._conn.rollback)

    async def close(self) -> None:
        if self._connection is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        finally:
            self._connection = None
            self._thread.shutdown(wait=False)

    def stop(self) -> None:
        """Close at once, outside the loop (SQLAlchemy's forced termination)."""
        self._connection = None
        self._thread.shutdown(wait=False)
        try:
            self._conn.close()
        except sqlite3.Error:
            pass


class LoopCursor:
    """aiosqlite's Cursor over a sqlite3 cursor, run where its connection says."""

    def __init__(self, connection: LoopConnection) -> None:
        self._owner = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> "LoopCursor":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def description(self):
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> "LoopCursor":
        if self._owner.on_loop and sql.strip().upper() == "BEGIN IMMEDIATE":
            await self._owner.begin_immediate(self._cursor)
        else:
            await self._owner.run(lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Any) -> "LoopCursor":
        await self._owner.run(lambda: self._cursor.executemany(sql, parameters))
        return self

    async def fetchone(self):
        return await self._owner.run(self._cursor.fetchone)

    async def fetchmany(self, size: int | None = None):
        return await self._owner.run(lambda: self._cursor.fetchmany(size or self._cursor.arraysize))

    async def fetchall(self):
        return await self._owner.run(self._cursor.fetchall)

    async def close(self) -> None:
        if self._owner.thread_busy:  # perhaps still running this cursor's statement for a cancelled caller
            await self._owner.thread_idle()
        self._cursor.close()


def busy(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(error) or "database table is locked" in str(error)
