"""storage.sqlite_driver: a statement whose caller was cancelled while it ran in the connection's thread finishes
there before the connection is used again."""

from __future__ import annotations

import asyncio
import contextlib

from storage.sqlite_driver import LoopConnection

# A statement SQLite needs a good part of a second for.
SLOW = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
        "SELECT count(*) FROM n")


async def test_a_statement_cancelled_in_the_thread_ends_before_the_connection_is_used_again(tmp_path):
    """A request cancelled mid-statement (a browser that hung up on a console page, a stop during start-up) leaves
    its statement running in the connection's thread. Closing its cursor, or the next transaction on the loop, must
    wait for it rather than use the connection at the same time (sqlite3 refused: "Recursive use of cursors")."""
    connection = LoopConnection(str(tmp_path / "cancel.db"), busy_round_ms=10, lock_wait=lambda: 5.0, timeout=5)
    try:
        cursor = connection.cursor()
        running = asyncio.create_task(cursor.execute(SLOW))
        await asyncio.sleep(0.05)  # in the thread by now
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await cursor.close()
        connection.use_loop(True)
        await connection.begin_immediate()
        assert connection.fetch_on_loop("SELECT 1", ()) == [(1,)]
        connection.end_on_loop(commit=False)
        connection.use_loop(False)
        assert await (await connection.execute("SELECT 2")).fetchall() == [(2,)]
    finally:
        await connection.close()
