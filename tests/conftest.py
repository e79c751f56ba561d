"""Shared fixtures: a migrated database (SQLite always, PostgreSQL when ZHIBU_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from harness import make_service, service  # noqa: F401  (fixtures every test may use)
from storage.db import create_engine, session_factory, upgrade_schema_async

POSTGRES_URL = os.environ.get("ZHIBU_TEST_POSTGRES_URL")
ENGINES = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


async def _fresh_postgres(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(params=ENGINES)
async def database_url(request, tmp_path) -> str:
    """A freshly migrated, empty database, once per engine under test."""
    if request.param == "postgres":
        url = POSTGRES_URL
        await _fresh_postgres(url)
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

