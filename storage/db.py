"""The async engine, sessions, and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from storage.sqlite_driver import LoopConnection

if TYPE_CHECKING:  # imported where used: serving never loads Alembic
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration's revision. Serving only compares the database's with it, so the server never imports
# Alembic (a tenth of a second of every start-up); tests/bot/test_migrations.py checks it is Alembic's head.
SCHEMA_HEAD = "0016"
log = logging.getLogger(__name__)

# How long a SQLite transaction waits for the write lock another process holds (an import, say) before
# it fails with "database is locked". Read at every BEGIN, so tests may lower it.
SQLITE_LOCK_WAIT = 30.0
# The waiting happens in rounds of this many milliseconds of SQLite's own busy handler. That handler
# sleeps longer and longer between looks (1, 2, 5 … then 100 ms), and a writer that looks only every
# 100 ms almost never lands in the gap between two transactions of another process: a server once
# waited out a whole roster import (44 s), and its outbox failed with "database is locked". In short
# rounds it looks at least every few milliseconds, so the import's short pause between its transactions
# (handlers.membership.roster.IMPORT_PAUSE_SECONDS) lets it in.
SQLITE_BUSY_ROUND_MS = 10
# Execution option for a transaction that only reads: on SQLite it starts with a deferred BEGIN, which in
# WAL mode neither takes nor waits for the write lock (an import's checks read for seconds; with
# BEGIN IMMEDIATE they held every writer up that long). It must not write. Other engines ignore it.
READ_ONLY = {"zhibu_read_only": True}
# Execution option for a short transaction on the webhook's path (a message's claim, its handling): on SQLite
# its statements run on the event loop instead of a round trip to the driver's thread each (see
# storage.sqlite_driver). It must not read or write much. Other engines ignore it.
ON_LOOP = {"zhibu_on_loop": True}
# Execution option for a Connection made over a pooled connection whose transaction was begun on the driver
# (storage.transaction): SQLAlchemy's autobegin must not send BEGIN again.
ALREADY_BEGUN = {"zhibu_already_begun": True}


async def one_at_a_time(session: AsyncSession, name: str) -> None:
    """Until this transaction ends, other processes' transactions that ask for the same name wait here. On
    PostgreSQL a transaction-level advisory lock keyed by the name's hash; SQLite's BEGIN IMMEDIATE already lets
    one writing transaction run at a time."""
    if session.bind.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"zhibu.{name}".encode()).digest()[:8], "big", signed=True)
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for other engines and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database).resolve()


def create_engine(url: str, *, pool_size: int = 10, checkpoints_elsewhere: bool = False) -> AsyncEngine:
    """The engine for url. On PostgreSQL a fixed pool of pool_size connections: no overflow connections,
    which were opened and closed again per message under load, and no ping per checkout (a connection
    that died is found by its first statement, which fails like any other database error; the pool then
    replaces every connection it had).

    checkpoints_elsewhere: on SQLite, the engine's connections never checkpoint the write-ahead log; the caller
    runs checkpoint_forever (the server does)."""
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=30)

    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    path = sqlite_file(url)
    options: dict = {}
    if path is not None:
        # The sqlite3 driver run on the loop or in the connection's thread (storage.sqlite_driver); in-memory
        # and URI databases keep aiosqlite.
        async def connect() -> LoopConnection:
            return LoopConnection(str(path), busy_round_ms=SQLITE_BUSY_ROUND_MS, lock_wait=lambda: SQLITE_LOCK_WAIT,
                                  timeout=30)
        options["async_creator"] = connect
    engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60,
                                 **options)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure_sqlite(dbapi_connection, _record):
        # Take transaction control from the driver so that every transaction starts with
        # BEGIN IMMEDIATE: a deferred transaction that reads and then writes fails at once with
        # "database is locked" when another connection wrote in between, instead of waiting.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # These still wait up to the connect timeout (30 s) for a lock.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if checkpoints_elsewhere:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        # From here on SQLite waits one short round at a time; _begin waits the rounds out (up to
        # SQLITE_LOCK_WAIT). Inside a transaction begun IMMEDIATE, WAL mode never makes a statement wait.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_ROUND_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection):
        options = connection.get_execution_options()
        if options.get("zhibu_already_begun"):
            return
        driver = connection.connection.driver_connection
        on_loop = isinstance(driver, LoopConnection) and bool(options.get("zhibu_on_loop"))
        if isinstance(driver, LoopConnection):
            driver.use_loop(on_loop)
        if options.get("zhibu_read_only"):
            connection.exec_driver_sql("BEGIN")
        elif on_loop:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the driver waits for the lock, sleeping on the loop
        else:
            _begin_immediate(connection)

    return engine


# A checkpoint copies the write-ahead log back into the database file and syncs it. SQLite runs one in the commit
# that takes the log past 1,000 pages, on whichever connection commits: for a message's transaction that is the
# event loop, where it held every reply up for some milliseconds (p99 at 200 messages a second 13.5 ms; 7.3 ms
# with checkpoints moved off the loop, bench/webhook.py). The server's connections therefore never checkpoint, and
# a thread does it every CHECKPOINT_SECONDS: PASSIVE, so it never waits for a writer or makes one wait.
CHECKPOINT_SECONDS = 1.0
# The log only starts again from its beginning when a writer finds every page of it copied back, which under a
# steady stream of messages a PASSIVE checkpoint never leaves it: new pages arrive while it copies, and the log
# grew past 200 MB in a check-in peak (bench/burst.py). Past this many pages (16 MB, four times what SQLite lets
# grow on its own) the thread checkpoints RESTART: it waits up to RESTART_WAIT_SECONDS for the writer of the moment
# to commit, holds the next one off while it copies what is left (little, after the PASSIVE rounds), and the next
# writer starts the log again. The writers wait for the lock asleep on the loop (storage.sqlite_driver).
RESTART_PAGES = 4_000
RESTART_WAIT_SECONDS = 1.0
# A log this long means checkpoints are not keeping up (a reader held open for minutes, say): worth a warning.
CHECKPOINT_WARN_PAGES = 50_000


# An idle server's round still opened a connection and read the schema: a third of the CPU an idle server used.
# So a round first looks at the log's file: when it is as it was before a round that found every page copied back,
# and had been left alone for QUIET_NS before that look, nothing has been written since, and the round is skipped.
# (The quiet time is there because a file's modification time is only as fine as the kernel's clock tick: a write
# in the same tick as the look could otherwise leave the file looking unchanged. A round skipped wrongly would
# only leave pages in the log, as durable there, until the next write.)
QUIET_NS = 200_000_000


async def checkpoint_forever(path: Path, interval: float | None = None) -> None:
    """Checkpoint the SQLite database at path every interval seconds (CHECKPOINT_SECONDS), in a thread, until
    cancelled."""
    interval = interval if interval is not None else CHECKPOINT_SECONDS
    loop = asyncio.get_running_loop()
    # One thread of its own, so that rounds never overlap.
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zhibu-checkpoint")
    rounds = CheckpointRounds(path)
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                pages = await loop.run_in_executor(thread, rounds.run)
            except sqlite3.Error as error:
                log.warning("checkpointing %s failed (%s); trying again in %s s", path, error, interval)
                continue
            if pages >= CHECKPOINT_WARN_PAGES:
                log.warning("the write-ahead log of %s holds %d pages: checkpoints are not keeping up", path, pages)
    finally:
        thread.shutdown(wait=False)


class CheckpointRounds:
    """The rounds of one database file: each a checkpoint (_checkpoint), unless nothing was written since the last
    one left the log fully copied back (see QUIET_NS). `skipped` counts the rounds skipped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._log = path.with_name(path.name + "-wal")
        self._copied_back: tuple | None = None  # the log's file as it was when a round found it all copied
        self.skipped = 0

    def run(self) -> int:
        """One round (in the thread): the pages the log holds."""
        seen = self._look()
        if seen is not None and seen == self._copied_back:
            self.skipped += 1
            return 0
        done = _checkpoint(self.path)
        quiet = seen is not None and time.time_ns() - seen[-1] >= QUIET_NS
        self._copied_back = seen if done.all_copied and quiet else None
        return done.pages

    def _look(self) -> tuple | None:
        try:
            found = os.stat(self._log)
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


class Checkpointed(NamedTuple):
    pages: int  # the pages the log holds (0 once it will start again from its beginning)
    all_copied: bool  # every one of them is in the database file


def _checkpoint(path: Path) -> Checkpointed:
    """One checkpoint: PASSIVE, then RESTART when the log has grown long.

    A connection of its own each round, opened on the file at path now (mode=rw: never creating one): one held
    open would keep the file it opened, and a database replaced at the same path (a restored backup, a test's
    fresh database) would get the old file's checkpoints through the new one's log, which corrupts it."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=RESTART_WAIT_SECONDS)
    try:
        busy, pages, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if pages >= RESTART_PAGES:
            busy, _pages, _copied = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if not busy:
                return Checkpointed(0, True)
            return Checkpointed(pages, False)
        return Checkpointed(pages, not busy and copied == pages)
    finally:
        connection.close()


def _begin_immediate(connection) -> None:
    """BEGIN IMMEDIATE, looking for the write lock every few milliseconds for up to SQLITE_LOCK_WAIT."""
    raw = connection.connection.dbapi_connection
    deadline = None
    while True:
        cursor = raw.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if not _sqlite_busy(error):
                break  # raised below, the way SQLAlchemy reports errors
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + SQLITE_LOCK_WAIT
            if now >= deadline:
                break
            # Straight into the next round: the event loop ran while this one waited in the driver's thread.
        finally:
            cursor.close()
    # Once more through SQLAlchemy: it fails the same way and raises the usual OperationalError.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_busy(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(error) or "database table is locked" in str(error)


def database_busy(error: BaseException) -> bool:
    """Whether error means the database was busy, not broken: SQLite's write lock held by another process
    too long, or no pooled connection came free in time. Trying again a little later is the remedy."""
    if isinstance(error, sa_exc.TimeoutError):  # the pool's
        return True
    if isinstance(error, sa_exc.DBAPIError):
        error = error.orig
    return isinstance(error, sqlite3.OperationalError) and _sqlite_busy(error)


def short_error(error: BaseException) -> str:
    """One line about error for a log: SQLAlchemy's own text adds the statement and a link on more lines."""
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        error = error.orig
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class RoundFailures:
    """What a background loop does when one of its rounds fails: one log line per failed round (with the
    traceback only for the first of a run of unexpected errors; a locked database needs none), and a
    pause that starts at first seconds and doubles up to limit while the rounds keep failing."""

    def __init__(self, logger: logging.Logger, what: str, *, first: float = 0.5, limit: float = 10.0) -> None:
        self.log = logger
        self.what = what
        self.first = first
        self.limit = max(first, limit)
        self.count = 0

    def failed(self, error: BaseException) -> float:
        """Log the failure; returns how long to wait before the next round."""
        self.count += 1
        delay = min(self.first * 2 ** (self.count - 1), self.limit)
        self.log.warning("%s failed (%s); trying again in %.1f s", self.what, short_error(error), delay,
                         exc_info=error if self.count == 1 and not database_busy(error) else None)
        return delay

    def succeeded(self) -> None:
        if self.count:
            self.log.info("%s works again after %d failed round(s)", self.what, self.count)
            self.count = 0


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine a session factory from session_factory() binds its sessions to."""
    return sessions.kw["bind"]


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_schema(url: str) -> None:
    """Create the schema or bring it up to date (blocking; run it before the event loop serves)."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def upgrade_schema_async(url: str) -> None:
    await asyncio.to_thread(upgrade_schema, url)


async def schema_is_current(engine: AsyncEngine) -> bool:
    """Whether the database is at the newest migration (`zhibu init` brings it there): Alembic's version table
    holds SCHEMA_HEAD."""
    async with engine.connect() as connection:
        if not await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return False
        versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    return versions == [SCHEMA_HEAD]


async def postgres_connections_allowed(url: str) -> int:
    """How many connections the PostgreSQL server at url lets ordinary clients open: max_connections less the
    slots it keeps for superusers (and, from PostgreSQL 16, for roles granted pg_use_reserved_connections)."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            settings = dict((await connection.exec_driver_sql(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('max_connections', 'superuser_reserved_connections', 'reserved_connections')")).all())
    finally:
        await engine.dispose()
    return int(settings["max_connections"]) - sum(int(settings.get(name, 0)) for name in
                                                  ("superuser_reserved_connections", "reserved_connections"))


async def reset_postgres_schema(url: str) -> None:
    """Drop every table in the public schema. For tests and benchmarks on a scratch database only."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            await connection.exec_driver_sql("CREATE SCHEMA public")
    finally:
        await engine.dispose()
