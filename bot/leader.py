"""Which process leads: a lock that exactly one process of those sharing a database can hold.

The scheduler runs only in the holder. On PostgreSQL it is a session-level advisory lock on a
dedicated connection (when the holder dies its connection closes and the lock frees); on SQLite an
exclusive flock on a file next to the database (the kernel frees it when the holder dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.db import sqlite_file

log = logging.getLogger(__name__)

# The advisory lock key: any fixed 64-bit number no other tool on the database uses.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"zhibu.scheduler").digest()[:8], "big", signed=True)


class LeaderLock(Protocol):
    async def acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits for a holder."""

    async def holds(self) -> bool:
        """Whether the lock taken by acquire() is still ours."""

    async def release(self) -> None:
        """Give the lock up (safe to call when not holding it)."""


class _ProcessLocal:
    """An in-memory database belongs to one process: that process always leads."""

    async def acquire(self) -> bool:
        return True

    async def holds(self) -> bool:
        return True

    async def release(self) -> None:
        pass


class FileLock:
    """An exclusive flock on a file. Each instance opens the file itself, so two instances in one
    process exclude each other just as two processes do; the kernel drops the lock when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # The holder's pid, for an operator wondering which process runs the jobs.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def holds(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale pid for the next reader
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class AdvisoryLock:
    """A session-level pg_try_advisory_lock held on a dedicated connection for as long as we lead."""

    def __init__(self, database_url: str, key: int = ADVISORY_LOCK_KEY) -> None:
        self.database_url = database_url
        self.key = key
        self._engine: AsyncEngine | None = None
        self._connection: AsyncConnection | None = None

    async def acquire(self) -> bool:
        if self._connection is not None:
            return True
        # Its own unpooled engine: the connection lives as long as the leadership, and closing it
        # must really close it (a pooled connection would keep the lock while sitting in the pool).
        engine = create_async_engine(self.database_url, poolclass=NullPool,
                                     connect_args={"timeout": 5, "command_timeout": 5})
        try:
            connection = await engine.connect()
            # Autocommit: the connection stays open for hours and must not sit "idle in transaction".
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            won = (await connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key})).scalar()
        except BaseException:
            await engine.dispose()
            raise
        if not won:
            await connection.close()
            await engine.dispose()
            return False
        self._engine, self._connection = engine, connection
        return True

    async def holds(self) -> bool:
        if self._connection is None:
            return False
        try:
            # A session lock lasts as long as its session: a live connection means we still hold it.
            await self._connection.execute(sa.text("SELECT 1"))
            return True
        except Exception as error:
            log.error("the scheduler lock's database connection failed: %s", error)
            return False

    async def release(self) -> None:
        connection, engine = self._connection, self._engine
        self._connection = self._engine = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            with contextlib.suppress(Exception):
                await connection.close()
        if engine is not None:
            await engine.dispose()


def leader_lock(database_url: str) -> LeaderLock:
    """The lock whose holder runs the scheduler, for the database at database_url."""
    backend = make_url(database_url).get_backend_name()
    if backend == "postgresql":
        return AdvisoryLock(database_url)
    if backend == "sqlite":
        path = sqlite_file(database_url)
        return FileLock(path.with_name(path.stem + "-scheduler.lock")) if path else _ProcessLocal()
    raise ValueError(f"no scheduler lock for {backend} databases; use SQLite or PostgreSQL")
