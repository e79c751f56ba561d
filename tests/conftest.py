"""Shared fixtures: a migrated database (SQLite always, PostgreSQL when ZHIBU_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from harness import make_service, service  # noqa: F401  (fixtures every test may use)
from storage.db import create_engine, reset_postgres_schema, session_factory, upgrade_schema_async



def _own_database(url: str | None) -> str | None:
    """The PostgreSQL database this test process may reset. Tests drop and recreate the public schema, so
    under pytest-xdist each worker gets its own database beside the one named (test → test_gw0, test_gw1),
    created on first use."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    import psycopg
    from sqlalchemy.engine import make_url

    given = make_url(url)
    name = f"{given.database}_{worker}"
    with psycopg.connect(host=given.host, port=given.port, user=given.username, password=given.password,
                         dbname=given.database, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')
    return given.set(database=name).render_as_string(hide_password=False)


POSTGRES_URL = _own_database(os.environ.get("ZHIBU_TEST_POSTGRES_URL"))
ENGINES = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


@pytest.fixture(params=ENGINES)
async def database_url(request, tmp_path, tmp_path_factory) -> str:
    """A freshly migrated, empty database, once per engine under test."""
    if request.param == "postgres":
        await _empty_postgres(POSTGRES_URL)
        return POSTGRES_URL
    # Migrating takes a tenth of a second or more; a copy of a database migrated once per process, none.
    path = tmp_path / "zhibu.db"
    shutil.copyfile(await _migrated_sqlite(tmp_path_factory), path)
    return f"sqlite+aiosqlite:///{path}"


_SQLITE_TEMPLATE: list[Path] = []


async def _migrated_sqlite(tmp_path_factory) -> Path:
    if not _SQLITE_TEMPLATE:
        path = tmp_path_factory.mktemp("template") / "zhibu.db"
        await upgrade_schema_async(f"sqlite+aiosqlite:///{path}")
        # The migration's engine is gone, so its write-ahead log is folded into the file.
        assert not path.with_name(path.name + "-wal").exists()
        _SQLITE_TEMPLATE.append(path)
    return _SQLITE_TEMPLATE[0]


# The tables and sequences of the migrated PostgreSQL schema, as this process first migrated it.
_POSTGRES_SCHEMA: dict[str, tuple[list[str], list[str]]] = {}


async def _empty_postgres(url: str) -> None:
    """The migrated schema with no rows and every sequence at its start. The first test of a process drops
    and migrates the schema (as `zhibu init` would); the others delete the rows the last one left, a few
    milliseconds instead of half a second, unless a test changed which tables there are."""
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        schema = await _postgres_schema(connection)
        if _POSTGRES_SCHEMA.get(url) == schema:
            tables, sequences = schema
            async with connection.transaction():
                # Replica mode skips the foreign keys' triggers, so the order of the deletes does not matter.
                await connection.execute("SET LOCAL session_replication_role = replica")
                await connection.execute("".join([*(f'DELETE FROM "{name}";' for name in tables),
                                                  *(f'ALTER SEQUENCE "{name}" RESTART;' for name in sequences)]))
            return
    finally:
        await connection.close()
    await reset_postgres_schema(url)
    await upgrade_schema_async(url)
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        _POSTGRES_SCHEMA[url] = await _postgres_schema(connection)
    finally:
        await connection.close()


async def _postgres_schema(connection) -> tuple[list[str], list[str]]:
    tables = [row[0] for row in await connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version' "
        "ORDER BY tablename")]
    sequences = [row[0] for row in await connection.fetch(
        "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY sequencename")]
    return tables, sequences


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine):
    return session_factory(engine)



@pytest.fixture(scope="session")
def shipped_index(index_cache_dir):
    """The shipped content's Q&A index as the service holds it (content.search.holder_for): read from the
    run's cache, or built once and written there. The tests that search it only read it (a test that spies on
    a part puts it back with monkeypatch)."""
    from content.search import holder_for

    return holder_for(None).index


@pytest.fixture(scope="session", autouse=True)
def index_cache_dir(tmp_path_factory, worker_id):
    """ZHIBU_CACHE_DIR for every service and command the tests start: one folder for the whole run, shared
    by pytest-xdist's workers (the cache's lock makes one of them build an index and the others read it), so
    the shipped content's Q&A index is built once per run and nothing is written to zhibu-data/."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if worker_id != "master" else base) / "index-cache"
    folder.mkdir(mode=0o700, exist_ok=True)
    previous = os.environ.get("ZHIBU_CACHE_DIR")
    os.environ["ZHIBU_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("ZHIBU_CACHE_DIR", None)
    else:
        os.environ["ZHIBU_CACHE_DIR"] = previous
