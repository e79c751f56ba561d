"""Shared fixtures: a migrated database (SQLite always, PostgreSQL when ZHIBU_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os

import pytest

from harness import make_service, service  # noqa: F401  (fixtures every test may use)
from storage.db import create_engine, reset_postgres_schema, session_factory, upgrade_schema_async

POSTGRES_URL = os.environ.get("ZHIBU_TEST_POSTGRES_URL")
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

