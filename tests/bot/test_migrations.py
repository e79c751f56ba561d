"""The migrations build exactly the tables the models describe, on both engines: a column, index or
constraint added to storage/models.py without its migration (or the other way round) fails here."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers every table)

# APScheduler's job table is made by migration 0002 and has no model (storage/migrations/env.py).
SCHEDULER_TABLE = "apscheduler_jobs"


def _about_scheduler(change) -> bool:
    kind, thing = change[0], change[1]
    table = getattr(thing, "table", thing) if kind.endswith("index") else thing
    return getattr(table, "name", None) == SCHEDULER_TABLE


async def test_the_migrated_schema_matches_the_models(engine):
    async with engine.connect() as connection:
        differences = await connection.run_sync(lambda sync: compare_metadata(
            MigrationContext.configure(sync, opts={"compare_type": True}), SQLModel.metadata))
    assert [change for change in differences if not _about_scheduler(change)] == []
