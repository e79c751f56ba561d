"""Statements straight on the database driver, for the work every webhook request and message does.

Every request records its signed query and every message claims its row before anything else happens
(storage.signed_requests, storage.inbound; one small transaction for both since bot.dispatch.intake_rows, two
before). Through SQLAlchemy each such transaction cost about half a millisecond of CPU — a session, the
statement's cache key, the greenlet bridge, the result machinery — for statements SQLite runs in microseconds,
and under a light load nothing batches them (bot.group_commit). Here the statements go to the driver of a
pooled connection: sqlite3 on the event
loop (storage.sqlite_driver) or asyncpg. `Prepared` statements run the same way inside a message's handling
transaction (storage.transaction: the sender's read, its finish, the hand-over of waiting lines).

The connection still comes from the engine's pool, so these transactions take their turn with every other
one, and SQLite's BEGIN IMMEDIATE waits for another process's write lock sleeping on the loop, as the
ON_LOOP transactions do. Statements are written once with SQLite's `?` placeholders; for PostgreSQL they are
rewritten to `$1, $2, …`. Values go through the columns' own bind processors, so a row written here reads
back exactly like one SQLAlchemy wrote.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Column, Float, inspect
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.sqlite_driver import LoopConnection

_PLACEHOLDER = re.compile(r"\?")


class Driver:
    """Statements in one open transaction on a driver connection (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, connection: Any) -> None:
        self.dialect = engine.dialect
        self.postgres = self.dialect.name == "postgresql"
        self._connection = connection
        # SQLite on the loop: each statement runs at once, without the driver's coroutine interface.
        self._on_loop = isinstance(connection, LoopConnection) and connection.on_loop

    def values(self, columns: Sequence[Column], row: dict[str, Any]) -> list[Any]:
        """row's values for columns, in order, as the driver takes them."""
        return [_processor(column, self.dialect)(row[column.name]) for column in columns]

    async def insert_new(self, columns: Sequence[Column], rows: list[dict[str, Any]], *,
                         returning: Sequence[Column] = (), unique: int = 1) -> list[tuple]:
        """One multi-row INSERT of rows into the columns' table, skipping rows whose first `unique` columns (a
        unique key) are taken; the returning columns of the rows it did insert."""
        quote = self.dialect.identifier_preparer.quote
        names = [quote(column.name) for column in columns]
        sql = (f"INSERT INTO {quote(columns[0].table.name)} ({', '.join(names)}) "
               f"VALUES {placeholders(len(rows), len(columns))} ON CONFLICT ({', '.join(names[:unique])}) DO NOTHING")
        values = [value for row in rows for value in self.values(columns, row)]
        if not returning:
            await self.execute(sql, values)
            return []
        return await self.fetch(f"{sql} RETURNING {', '.join(quote(column.name) for column in returning)}", values)

    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        if self._on_loop:
            return self._connection.fetch_on_loop(sql, tuple(parameters))
        if self.postgres:
            return [tuple(record) for record in await self._connection.fetch(_numbered(sql), *parameters)]
        cursor = await self._connection.execute(sql, tuple(parameters))
        try:
            return list(await cursor.fetchall())
        finally:
            await cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        if self._on_loop:
            self._connection.fetch_on_loop(sql, tuple(parameters))
        elif self.postgres:
            await self._connection.execute(_numbered(sql), *parameters)
        else:
            cursor = await self._connection.execute(sql, tuple(parameters))
            await cursor.close()


class Prepared:
    """A Core statement compiled once per dialect, to run on the driver: its SQL, the order its parameters
    go in, and each parameter's bind processor. No expanding (IN) parameters."""

    def __init__(self, statement: Any) -> None:
        self._statement = statement
        self._compiled: dict[str, tuple[Any, str, list[tuple[str, Any]]]] = {}
        self._readers: dict[str, list[tuple[int, Any]]] = {}

    def _for(self, dialect) -> tuple[Any, str, list[tuple[str, Any]]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._statement.compile(dialect=dialect)
            order = [(name, _bind_processor(compiled.binds[name].type, dialect)) for name in compiled.positiontup]
            found = self._compiled[dialect.name] = (compiled, compiled.string, order)
        return found

    def bind(self, driver: "Driver", parameters: dict[str, Any]) -> tuple[str, list[Any]]:
        compiled, sql, order = self._for(driver.dialect)
        values = compiled.construct_params(parameters, _check=False)
        return sql, [process(values[name]) for name, process in order]

    async def rows(self, driver: "Driver", parameters: dict[str, Any]) -> list[tuple]:
        """The rows of a SELECT, each value as SQLAlchemy would read it (the columns' result processors:
        SQLite's stored text as dates and times, integers as booleans)."""
        readers = self._readers.get(driver.dialect.name)
        if readers is None:
            # (position, processor) of the columns that have one: the sender's row has 33 columns, 17 of them
            # with a processor, and the rest need not be looked at.
            readers = self._readers[driver.dialect.name] = [
                (position, read) for position, column in enumerate(self._statement.selected_columns)
                if (read := _result_processor(column.type, driver.dialect))]
        rows = await driver.fetch(*self.bind(driver, parameters))
        if not readers:
            return rows
        read_rows = []
        for row in rows:
            values = list(row)
            for position, read in readers:
                if values[position] is not None:
                    values[position] = read(values[position])
            read_rows.append(tuple(values))
        return read_rows


class Loaded:
    """A model's rows read on the driver (its table's columns, in order), each as a detached object, as if a query
    had loaded it and its session had closed — built the way the ORM builds what it loads, its attributes set as
    read and nothing marked changed. Handlers read such objects; one that should be written is given to the
    message's session (storage.transaction.MessageTransaction.join).

    What make_transient_to_detached does to such an object, done directly: a new instance's state has no history,
    nothing expired and (every column set) nothing unloaded, so giving it its identity key is all that is left
    (a third of the cost; tests/bot/test_dispatch.py holds the two to the same state)."""

    def __init__(self, model: type) -> None:
        table = model.__table__
        self._model = model
        self._keys = [column.key for column in table.c]
        self._key_at = [column.primary_key for column in table.c].index(True)
        self._mapper: Any = None

    @property
    def width(self) -> int:
        return len(self._keys)

    def one(self, values: Sequence[Any]) -> Any:
        """The object of one row's values (the table's columns in order); None when its primary key is None (the
        missing side of an outer join)."""
        if values[self._key_at] is None:
            return None
        mapper = self._mapper
        if mapper is None:
            configure_mappers()  # the attributes' instrumentation is complete only once the mappers are
            mapper = self._mapper = inspect(self._model)
        loaded = mapper.class_manager.new_instance()
        loaded.__dict__.update(zip(self._keys, values))
        instance_state(loaded).key = mapper.identity_key_from_primary_key((values[self._key_at],))
        return loaded


class PooledTransaction:
    """A transaction begun on a pooled connection's driver — BEGIN IMMEDIATE on SQLite (on the loop, waiting for
    the lock asleep), asyncpg's transaction() on PostgreSQL — with what it takes to end it and give the connection
    back. The connection comes from the pool itself, without SQLAlchemy's Connection around it (a third less work).
    """

    def __init__(self, engine: AsyncEngine, pooled: Any, asyncpg_transaction: Any) -> None:
        self.engine = engine
        self.pooled = pooled
        self.raw = pooled.driver_connection
        self._asyncpg_transaction = asyncpg_transaction
        self._ended = False  # committed or rolled back: nothing left for the pool's reset to roll back

    @classmethod
    async def begin(cls, engine: AsyncEngine) -> "PooledTransaction":
        pooled = _idle_connection(engine) or await engine.raw_connection()
        raw = pooled.driver_connection
        begun = cls(engine, pooled, None)
        try:
            if engine.dialect.name == "postgresql":
                begun._asyncpg_transaction = raw.transaction()
                await begun._asyncpg_transaction.start()
            else:
                if isinstance(raw, LoopConnection):
                    raw.use_loop(True)  # a few indexed rows: on the loop, waiting for the lock asleep
                    await raw.begin_immediate()
                else:
                    await raw.execute("BEGIN IMMEDIATE")
        except BaseException:
            await begun.give_back()
            raise
        return begun

    async def end(self, commit: bool) -> None:
        """Commit or roll back."""
        if isinstance(self.raw, LoopConnection) and self.raw.on_loop:
            self.raw.end_on_loop(commit)
        else:
            ending = self._asyncpg_transaction or self.raw
            await (ending.commit() if commit else ending.rollback())
        self._ended = True

    async def give_back(self) -> None:
        """The connection back to the pool; one the server closed is dropped instead (SQLAlchemy would have
        noticed). After a clean end it goes back as SQLAlchemy's own Connection returns one whose transaction
        it ended: told so, the pool skips its reset-on-return ROLLBACK, and with no statement to send, no greenlet
        is needed either (about 12 µs of the 30 a checkout and return cost on every message). Otherwise the
        reset may talk to the driver: in a greenlet."""
        if getattr(self.raw, "is_closed", lambda: False)():
            await greenlet_spawn(self.pooled.invalidate)
        elif self._ended:
            self.pooled._close_special(transaction_reset=True)
            return
        await greenlet_spawn(self.pooled.close)


def _idle_connection(engine: AsyncEngine) -> Any:
    """SQLite's connection lying open in the pool, checked out at once. Through the async engine the checkout runs
    in a greenlet in case it must connect or wait (about 12 µs of every message); one that is idle needs neither,
    and the pool hands it over without waiting. None when it is in use, or must connect again (after an
    invalidation): the pool has taken it back by then, and the async checkout does the rest. Not on PostgreSQL,
    where that failed attempt would leave asyncpg's connect coroutine unawaited (a RuntimeWarning in the log)."""
    pool = engine.sync_engine.pool
    if engine.dialect.name != "sqlite" or not pool.checkedin():
        return None
    try:
        return engine.sync_engine.raw_connection()
    except MissingGreenlet:
        return None


@asynccontextmanager
async def driver_transaction(engine: AsyncEngine) -> AsyncIterator[Driver]:
    """A transaction on a pooled connection's driver (PooledTransaction): committed when the block ends, rolled
    back if it raises."""
    begun = await PooledTransaction.begin(engine)
    try:
        try:
            yield Driver(engine, begun.raw)
        except BaseException:
            await begun.end(commit=False)
            raise
        await begun.end(commit=True)
    finally:
        await begun.give_back()


def placeholders(rows: int, columns: int) -> str:
    """"(?, ?), (?, ?)" for a multi-row VALUES."""
    one = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([one] * rows)


_NUMBERED: dict[str, str] = {}


def _numbered(sql: str) -> str:
    """SQLite's ? placeholders as PostgreSQL's $1, $2, … (statements here hold no ? in literals)."""
    converted = _NUMBERED.get(sql)
    if converted is None:
        counter = iter(range(1, 100_000))
        converted = _NUMBERED[sql] = _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
    return converted


_PROCESSORS: dict[tuple[int, str], Any] = {}


def _processor(column: Column, dialect) -> Any:
    key = (id(column), dialect.name)
    processor = _PROCESSORS.get(key)
    if processor is None:
        processor = _PROCESSORS[key] = _bind_processor(column.type, dialect)
    return processor


def _bind_processor(type_: Any, dialect) -> Any:
    """What SQLAlchemy does to a value of type_ before the driver gets it (nothing: the value itself)."""
    return type_.dialect_impl(dialect).bind_processor(dialect) or _same


def _result_processor(type_: Any, dialect) -> Any:
    """What SQLAlchemy does to a value of type_ that the driver read (None: nothing). asyncpg's processor for a
    float column depends on the column's PostgreSQL type, which only a result's description tells: a float column
    here is always `double precision` (a meeting's place), which asyncpg reads as a float already."""
    if dialect.name == "postgresql" and isinstance(type_, Float) and not type_.asdecimal:
        return None
    return type_.dialect_impl(dialect).result_processor(dialect, None)


def _same(value: Any) -> Any:
    return value
