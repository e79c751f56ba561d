"""Shared fixtures: a migrated database (SQLite always, PostgreSQL when ZHIBU_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os

import pytest

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
async def database_url(request, tmp_path) -> str:
    """A freshly migrated, empty database, once per engine under test."""
    if request.param == "postgres":
        url = POSTGRES_URL
        await reset_postgres_schema(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'zhibu.db'}"
    await upgrade_schema_async(url)
    return url


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine):
    return session_factory(engine)



@pytest.fixture(scope="session", autouse=True)
def index_cache_dir(tmp_path_factory):
    """ZHIBU_CACHE_DIR for every service and command the tests start: a folder of the session's, so the
    shipped content's Q&A index is built once per test process and nothing is written to zhibu-data/."""
    folder = tmp_path_factory.mktemp("index-cache")
    previous = os.environ.get("ZHIBU_CACHE_DIR")
    os.environ["ZHIBU_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("ZHIBU_CACHE_DIR", None)
    else:
        os.environ["ZHIBU_CACHE_DIR"] = previous
