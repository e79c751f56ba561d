"""`zhibu serve --workers 2` as an operator runs it: two processes on one port sharing the database, one of
them running the jobs, a content reload reaching both, a dead worker started again, and an orderly stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from test_serve_reload import Server, ask, content_dir, env, zhibu  # noqa: F401 (fixtures)


def _children(parent: int) -> list[int]:
    """The worker processes of the supervisor `parent` (read from /proc, as `ps` would); not the helper
    process multiprocessing starts beside them."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
                found.append(int(entry.name))
    return found


def _listening_sockets(pid: int, port: int) -> set[str]:
    """The inodes of the sockets pid holds that listen on port (its own, not shared with another process)."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
            listening.add(fields[9])
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            held.add(match.group(1))
    return held & listening


async def _wait(condition, what: str, server: Server, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s:\n{server.log()}")
        await asyncio.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the process table from /proc (Linux)")
async def test_two_workers_share_the_port_the_database_and_one_scheduler(env, tmp_path):
    assert zhibu(env, tmp_path, "init").returncode == 0
    server = Server(env, tmp_path, "--workers", "2")
    try:
        await server.wait_until_healthy(seconds=60)
        supervisor = server.process.pid
        assert int((tmp_path / "data" / "zhibu.pid").read_text()) == supervisor
        await _wait(lambda: server.log().count("content loaded from") == 2, "both workers loading", server)
        workers = _children(supervisor)
        # Each worker holds a listening socket of its own on the one port (SO_REUSEPORT).
        await _wait(lambda: all(_listening_sockets(pid, server.port) for pid in _children(supervisor)),
                    "both workers listening", server)
        assert len(workers) == 2
        await server.wait_for_log("this process runs the scheduler")
        await server.wait_for_log("another process runs the scheduler")
        assert server.log().count("this process runs the scheduler") == 1

        # Twenty followers, each message on a connection of its own: every one answered once.
        replies = await asyncio.gather(*(ask(server, "你好", openid=f"worker-test-{n}") for n in range(20)))
        assert all("您好！您现在可以" in reply for reply in replies), replies
        # Three copies of one message at once, to whichever workers the kernel picks: one handling, one answer.
        copies = await asyncio.gather(*(ask(server, "帮助", openid="worker-test-0", msg_id=424242) for _ in range(3)))
        assert len(set(copies)) == 1
        with sqlite3.connect(tmp_path / "data" / "zhibu.db") as database:
            counts = database.execute("SELECT count(*), count(DISTINCT dedup_key) FROM inbound_message").fetchone()
        assert counts == (21, 21)

        # `zhibu content reload` signals the supervisor, which passes it on to both workers.
        assert zhibu(env, tmp_path, "content", "reload").returncode == 0
        await _wait(lambda: server.log().count("SIGHUP: reloading content") == 2, "the reload in both", server)

        # A worker that dies is started again; the other keeps answering meanwhile.
        os.kill(workers[0], signal.SIGKILL)
        # (Connections the kernel had already queued for the killed worker are reset; WeChat sends again.)
        await _wait(lambda: not Path(f"/proc/{workers[0]}").exists(), "the killed worker gone", server)
        assert "您好！您现在可以" in await ask(server, "你好", openid="worker-test-alone")
        await server.wait_for_log("starting it again")
        replaced = lambda: (len(_children(supervisor)) == 2 and workers[0] not in _children(supervisor)  # noqa: E731
                            and all(_listening_sockets(pid, server.port) for pid in _children(supervisor)))
        await _wait(replaced, "the dead worker's replacement listening", server, seconds=60)
    finally:
        server.stop()
    log = server.log()
    assert server.process.returncode == 0, log
    assert "lost the scheduler lock" not in log and "Traceback" not in log
    assert not (tmp_path / "data" / "zhibu.pid").exists()


async def test_a_stop_signalled_to_every_process_lets_the_message_in_hand_finish(env, tmp_path):
    """systemd stops a service by signalling each of its processes (KillMode=control-group), and the supervisor
    passes its own SIGTERM on: every worker gets two. The second must not cut short the orderly stop the first
    began: a message that was waiting for the database when the stop came is handled, answered and recorded, and
    nothing is logged as failed (before, the second signal made aiohttp cancel every task mid-transaction)."""
    assert zhibu(env, tmp_path, "init").returncode == 0
    server = Server(env, tmp_path, "--workers", "2", own_group=True)
    try:
        await server.wait_until_healthy(seconds=60)
        # Both workers all the way up (the scheduler's turn comes last in a start), so that the stop finds them serving.
        await server.wait_for_log("this process runs the scheduler", seconds=60)
        await server.wait_for_log("another process runs the scheduler", seconds=60)
        # Something else holds the database's write lock (an import, say): the message waits for it.
        holder = sqlite3.connect(tmp_path / "data" / "zhibu.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            asking = asyncio.create_task(ask(server, "你好", openid="stop-test", msg_id=9090))
            await asyncio.sleep(1.0)
            assert not asking.done()
            os.killpg(server.process.pid, signal.SIGTERM)
            await server.wait_for_log("stopping 2 worker(s)")  # and the supervisor sends its own SIGTERM to each
            await asyncio.sleep(1.0)
        finally:
            holder.execute("COMMIT")
            holder.close()
        reply = await asyncio.wait_for(asking, 30)
        assert "您好！您现在可以" in reply
        server.process.wait(timeout=40)
    finally:
        server.stop()
    log = server.log()
    assert server.process.returncode == 0, log
    assert "Traceback" not in log and "handler failed" not in log, log
    # The worker holding the message surely had both (the idle one may have exited before the supervisor's came).
    assert log.count("SIGTERM while already stopping") >= 1
    with sqlite3.connect(tmp_path / "data" / "zhibu.db") as database:
        status, reply = database.execute(
            "SELECT status, reply FROM inbound_message WHERE dedup_key LIKE '%9090%'").fetchone()
    assert status == "done" and "您好！您现在可以" in reply
