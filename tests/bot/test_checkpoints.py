"""SQLite's checkpoints run off the event loop: the server's connections never checkpoint in a commit, and a
thread keeps the write-ahead log short (storage.db.checkpoint_forever)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from sqlalchemy import text

import storage.db
from storage.db import create_engine, session_factory, sqlite_file

from harness import SQLITE_ONLY

# About 2,000 pages of 4 KB: twice what makes SQLite checkpoint in the commit when it is left to itself.
BIG_WRITE = ("INSERT INTO scratch SELECT randomblob(4000) FROM "
             "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i FROM n)")


async def write_big_then_small(sessions) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text("CREATE TABLE IF NOT EXISTS scratch (x BLOB)"))
        await session.execute(text(BIG_WRITE))
    async with sessions() as session, session.begin():
        await session.execute(text("INSERT INTO scratch VALUES (x'00')"))


def pages_in_log(url: str) -> int:
    """The pages the write-ahead log holds now (the checkpoint asked for here copies them, which is harmless)."""
    with sqlite3.connect(str(sqlite_file(url))) as connection:
        return connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


@SQLITE_ONLY
async def test_the_servers_connections_never_checkpoint_in_a_commit(database_url):
    for elsewhere, expected in ((False, lambda pages: pages < 1_000), (True, lambda pages: pages >= 2_000)):
        engine = create_engine(database_url, checkpoints_elsewhere=elsewhere)
        try:
            await write_big_then_small(session_factory(engine))
            # Left to itself, the big write's commit checkpointed and the small one started the log again.
            assert expected(pages_in_log(database_url)), (elsewhere, pages_in_log(database_url))
        finally:
            await engine.dispose()


@SQLITE_ONLY
async def test_the_server_checkpoints_in_the_background(make_service, database_url, monkeypatch):
    monkeypatch.setattr(storage.db, "CHECKPOINT_SECONDS", 0.05)
    service = await make_service()
    await write_big_then_small(service.sessions)
    await asyncio.sleep(0.5)  # the checkpointer's thread copies the log back meanwhile
    async with service.sessions() as session, session.begin():
        await session.execute(text("INSERT INTO scratch VALUES (x'01')"))  # a fully copied log starts again
    assert pages_in_log(database_url) < 100
    assert await service.say("o-1", "你好")  # and the service answers as ever


def test_a_long_log_is_started_again_once_no_reader_holds_it(tmp_path, monkeypatch):
    """The RESTART round (storage.db._checkpoint): with a reader holding an old snapshot (a long export, say) it
    gives up after its short wait and reports the log's length, so the next round tries again; once the reader is
    done it copies the rest and the next write starts the log from its beginning."""
    monkeypatch.setattr(storage.db, "RESTART_PAGES", 100)
    monkeypatch.setattr(storage.db, "RESTART_WAIT_SECONDS", 0.1)
    path = tmp_path / "log.db"
    writer = sqlite3.connect(str(path), isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as the server's connections (create_engine)
    writer.execute("CREATE TABLE scratch (x BLOB)")
    writer.execute(BIG_WRITE)
    reader = sqlite3.connect(str(path), isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM scratch").fetchone() == (2000,)  # its snapshot: before the next
    writer.execute(BIG_WRITE.replace("2000", "300"))
    try:
        # The reader needs pages the checkpoint would overwrite: the round waits its 0.1 s and reports the log.
        assert storage.db._checkpoint(path).pages > 2_000
        assert storage.db._checkpoint(path).pages > 2_000  # and again, while the reader stays
        reader.execute("COMMIT")
        assert storage.db._checkpoint(path) == (0, True)  # copied and restarted
        writer.execute("INSERT INTO scratch VALUES (x'00')")
        assert pages_in_log(f"sqlite:///{path}") < 10  # the log began again from its first page
        assert writer.execute("SELECT count(*) FROM scratch").fetchone() == (2301,)
    finally:
        reader.close()
        writer.close()


def test_a_round_with_nothing_written_since_is_skipped(tmp_path):
    """An idle server's rounds open no connection (storage.db.CheckpointRounds): once a round has found the log all
    copied back, the next ones see its file unchanged and do nothing, and the first write makes them work again."""
    path = tmp_path / "idle.db"
    writer = sqlite3.connect(str(path), isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE scratch (x BLOB)")
    writer.execute(BIG_WRITE.replace("2000", "50"))
    rounds = storage.db.CheckpointRounds(path)
    try:
        assert rounds.run() > 50 and rounds.skipped == 0  # written just now: copied, but not taken as quiet yet
        time.sleep(storage.db.QUIET_NS / 1e9 + 0.05)
        assert rounds.run() > 50 and rounds.skipped == 0  # quiet now, and all copied: remembered
        assert rounds.run() == 0 and rounds.skipped == 1
        assert rounds.run() == 0 and rounds.skipped == 2
        writer.execute("INSERT INTO scratch VALUES (x'00')")  # starts the log again from its beginning
        assert rounds.run() >= 1 and rounds.skipped == 2
        time.sleep(storage.db.QUIET_NS / 1e9 + 0.05)
        rounds.run()
        assert rounds.run() == 0 and rounds.skipped == 3
        # Pages it did not skip are all in the database file: read without the log, they are there.
        copy = tmp_path / "copy.db"
        copy.write_bytes(path.read_bytes())
        with sqlite3.connect(str(copy)) as alone:
            assert alone.execute("SELECT count(*) FROM scratch").fetchone() == (51,)
    finally:
        writer.close()
