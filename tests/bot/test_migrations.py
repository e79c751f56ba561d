"""The migrations build exactly the tables the models describe, on both engines: a column, index or
constraint added to storage/models.py without its migration (or the other way round) fails here."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, select, text
from sqlmodel import SQLModel

from bot.messages import Kind, Message
from bot.wechat.emulator import message_xml
from storage.db import (MIGRATIONS_DIR, SCHEMA_HEAD, alembic_config, create_engine, schema_is_current,
                        upgrade_schema_async)
from storage.identities import _SENDER
from storage.models import INBOUND_PROCESSING, InboundMessage, OutboxMessage  # (importing it registers every table)
from storage.outbox import _HAND_OVER, _RELEASE

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


def test_the_head_the_server_checks_for_is_alembics():
    # A new migration must move SCHEMA_HEAD along, or every server would refuse the database `zhibu init` made.
    assert SCHEMA_HEAD == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


async def test_a_database_behind_the_newest_migration_is_not_current(engine):
    assert await schema_is_current(engine)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0012'"))
        assert not await schema_is_current(engine)
    finally:  # the emptying between tests leaves Alembic's table alone
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": SCHEMA_HEAD})


async def test_a_database_never_migrated_is_not_current(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        assert not await schema_is_current(engine)
    finally:
        await engine.dispose()


async def test_orphan_recovery_reads_only_the_messages_being_handled(engine):
    # Migration 0014: the status index holds only messages being handled (finishing one no longer moves its entry);
    # the orphans' query must still be answered from it, not by reading every message ever received.
    query = (select(InboundMessage.id).where(INBOUND_PROCESSING, InboundMessage.claimed_at < datetime(
        2027, 1, 1, tzinfo=timezone.utc)).order_by(InboundMessage.id).limit(100))
    async with engine.connect() as connection:
        sql = str(query.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
        if engine.dialect.name == "postgresql":
            await connection.exec_driver_sql("SET enable_seqscan = off")  # an empty table is otherwise scanned
            plan = " ".join(row[0] for row in (await connection.exec_driver_sql(f"EXPLAIN {sql}")).all())
        else:
            plan = " ".join(row[-1] for row in (await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all())
    assert "ix_inbound_message_processing" in plan


async def test_a_members_waiting_rows_are_found_through_their_own_index_however_many_wait(tmp_path):
    # Every message asks whether anything waits for its sender, and hands it over: on ix_outbox_waiting, never by
    # reading every member's waiting rows (SQLite's planner, with no statistics, took ix_outbox_due before 0015).
    # PostgreSQL plans from the statistics it keeps, and the literal predicate lets it use the partial index.
    url = f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    await upgrade_schema_async(url)
    engine = create_engine(url)
    moment = datetime(2026, 12, 1, tzinfo=timezone.utc)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(OutboxMessage.__table__), [
                dict(idempotency_key=f"reply:{index}", kind="reply", openid=f"someone-{index % 300}", text="晚些再说",
                     status="waiting" if index % 2 else "sent", due_at=moment, created_at=moment)
                for index in range(3000)])
        async with engine.connect() as connection:
            for prepared in (_SENDER, _HAND_OVER, _RELEASE):
                _, sql, order = prepared._for(engine.dialect)
                plan = " ".join(row[-1] for row in (await connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {sql}", tuple("x" for _ in order))).all())
                assert "ix_outbox_waiting" in plan, plan
    finally:
        await engine.dispose()


async def test_dedup_keys_stored_before_0016_are_rewritten_so_a_retry_after_the_upgrade_finds_its_message(
        database_url, make_service):
    """Migration 0016 puts time first in the inbound log's keys (Message.dedup_key). A message and a menu tap claimed
    and answered before the upgrade get the key the new code computes, so WeChat's retry of either after the upgrade
    is answered from the log, not handled again; a row of neither old form is left alone."""
    created = 1_764_000_000
    text = Message(kind=Kind.TEXT, user_id="o-old", created_at=created, msg_id="24000000000000123", text="记一下",
                   account_id="gh", raw_type="text")
    tap = Message(kind=Kind.EVENT, user_id="o-old", created_at=created, event="click", event_key="MY_INFO",
                  account_id="gh", raw_type="event")
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "0015")
    engine = create_engine(database_url)
    now = datetime.now(timezone.utc)
    old_keys = {"msg:o-old:24000000000000123": text, "evt:" + tap.dedup_key.split(":")[2]: tap}
    try:
        async with engine.begin() as connection:
            for key, message in [*old_keys.items(), ("someone:else", text)]:
                await connection.execute(insert(InboundMessage.__table__).values(
                    dedup_key=key, openid=message.user_id, kind=message.kind.value,
                    payload=json.dumps(message.to_payload(), ensure_ascii=False), status="done", received_at=now,
                    claimed_at=now, finished_at=now, reply=json.dumps(["记下了"], ensure_ascii=False)))
    finally:
        await engine.dispose()
    await asyncio.to_thread(command.upgrade, config, "head")

    service = await make_service()
    async with service.sessions() as session:
        keys = set((await session.execute(select(InboundMessage.dedup_key))).scalars())
    assert keys == {text.dedup_key, tap.dedup_key, "someone:else"}
    assert text.dedup_key == "msg:00024000000000000123:o-old" and tap.dedup_key.startswith("evt:001764000000:")
    retry = await service.emulator.post_xml(message_xml({
        "ToUserName": "gh", "FromUserName": "o-old", "CreateTime": created, "MsgType": "text", "Content": "记一下",
        "MsgId": 24000000000000123}))
    assert retry.reply == "记下了"
    async with service.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(InboundMessage))).scalar() == 3
