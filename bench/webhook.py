"""Webhook throughput: the full path against a bare aiohttp handler, in one run on this machine.

The full path is everything a real message goes through: signature check (and AES in safe mode),
XML parsing, the durable dedup write, the member lookup, dispatch to the 我的 handler, the stored
reply and the rendered (encrypted) XML. The baseline is an aiohttp handler returning a fixed reply.

Each server runs in its own process; the load comes from this process over 32 keep-alive
connections with requests built before the clock starts, so the client costs as little as it can.

    python bench/webhook.py [--seconds 8] [--connections 32] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import DemoDefaults  # noqa: E402
from bot.wechat.emulator import Emulator, message_xml  # noqa: E402
from storage.db import reset_postgres_schema  # noqa: E402

USERS = 200  # bound members sending 我的
# A busy hour for a whole county is a few messages a second; this is fifty times that.
STEADY_RATE = 200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- the servers (run in child processes)


def serve_bare(port: int) -> None:
    from aiohttp import web

    reply = message_xml({"ToUserName": "u", "FromUserName": "gh", "CreateTime": 1, "MsgType": "text",
                         "Content": "姓名：某某"})

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=reply, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", handle)
    app.router.add_get("/healthz", lambda request: web.json_response({"status": "ok"}))
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_full(port: int, database_url: str, safe: bool) -> None:
    import logging

    from aiohttp import web

    from bot.app import build_app
    from bot.config import Settings

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(_env_file=None, database_url=database_url, wechat_app_id=DemoDefaults.app_id,
                        wechat_app_secret=DemoDefaults.app_secret, wechat_token=DemoDefaults.token,
                        wechat_aes_key=DemoDefaults.aes_key if safe else "", wechat_api_base="http://127.0.0.1:9")
    web.run_app(build_app(settings), host="127.0.0.1", port=port, access_log=None, print=None)


async def seed(database_url: str) -> None:
    from datetime import datetime, timezone

    from storage.db import create_engine, session_factory, upgrade_schema_async
    from storage.members import MemberFields, upsert_member
    from storage.models import WeChatIdentity

    await upgrade_schema_async(database_url)
    engine = create_engine(database_url)
    now = datetime.now(timezone.utc)
    async with session_factory(engine)() as session, session.begin():
        for index in range(USERS):
            member, _ = await upsert_member(session, MemberFields(
                name=f"党员{index:03d}", org_path=f"基准县委/基准镇党委/第{index % 20}村党支部"), now=now)
            session.add(WeChatIdentity(openid=f"bench-{index}", member_id=member.id, first_seen_at=now, bound_at=now))
    await engine.dispose()


# ---------------------------------------------------------------- the load


def build_requests(count: int, safe: bool, port: int, first_msg_id: int) -> list[bytes]:
    """count 我的 messages from USERS members, taking turns."""
    messages = [(f"bench-{index % USERS}", {"MsgType": "text", "Content": "我的"}) for index in range(count)]
    return signed_requests(messages, safe, port, first_msg_id)


def signed_requests(messages: list[tuple[str, dict]], safe: bool, port: int, first_msg_id: int) -> list[bytes]:
    """Each (openid, fields) as WeChat would post it (signed, and encrypted in safe mode), ready for a socket."""
    emulator = Emulator(app_id=DemoDefaults.app_id, app_secret=DemoDefaults.app_secret, token=DemoDefaults.token,
                        aes_key=DemoDefaults.aes_key if safe else "")
    requests = []
    for index, (openid, fields) in enumerate(messages):
        plaintext = message_xml({"ToUserName": "gh_bench", "FromUserName": openid, "CreateTime": int(time.time()),
                                 **fields, "MsgId": first_msg_id + index})
        query, body = emulator.sign(plaintext)
        payload = body.encode()
        head = (f"POST /wechat?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: text/xml\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
        requests.append(head + payload)
    return requests


async def connection_worker(port: int, requests: list[bytes], cursor: list[int], deadline: float,
                            latencies: list[float], failures: list[int],
                            schedule: tuple[float, float] | None) -> None:
    """Send requests back to back, or (schedule set) each at its slot of a steady rate.

    At a steady rate, latency counts from the request's slot, so time spent queueing behind a slow
    answer is not hidden (no coordinated omission)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline and cursor[0] < len(requests):
            index = cursor[0]
            request = requests[index]
            cursor[0] += 1
            started = time.perf_counter()
            if schedule is not None:
                slot = deadline - schedule[1] + index / schedule[0]
                if slot > started:
                    await asyncio.sleep(slot - started)
                started = slot
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b" 200 " not in status_line or body in (b"", b"success"):
                failures.append(1)
    finally:
        writer.close()


async def run_load(port: int, requests: list[bytes], seconds: float, connections: int,
                   rate: float | None = None) -> dict:
    latencies: list[float] = []
    failures: list[int] = []
    cursor = [0]
    started = time.perf_counter()
    deadline = started + seconds
    schedule = (rate, seconds) if rate else None
    await asyncio.gather(*(connection_worker(port, requests, cursor, deadline, latencies, failures, schedule)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"rps": len(latencies) / elapsed, "count": len(latencies), "failures": len(failures),
            "p50": statistics.median(ordered) * 1000, "p99": ordered[int(len(ordered) * 0.99) - 1] * 1000}


async def wait_healthy(port: int) -> None:
    for _ in range(200):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if b"200" in await reader.readline():
                writer.close()
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server on {port} did not come up")


def start_server(kind: str, port: int, database_url: str = "", safe: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port),
                             "--database-url", database_url] + (["--safe"] if safe else []), cwd=ROOT)


async def measure(kind: str, *, seconds: float, connections: int, database_url: str = "", safe: bool = False,
                  first_msg_id: int = 1, rate: float | None = None) -> dict:
    port = free_port()
    server = start_server(kind, port, database_url, safe)
    try:
        await wait_healthy(port)
        # A short warm-up, then the measured run with fresh message ids.
        await run_load(port, build_requests(500, safe, port, first_msg_id), 1.0, connections)
        count = int(seconds * rate) if rate else int(seconds * 25_000)
        requests = build_requests(count, safe, port, first_msg_id + 10_000)
        return await run_load(port, requests, seconds, connections, rate)
    finally:
        server.terminate()
        server.wait()


async def main(seconds: float, connections: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        if database_url and "postgresql" in database_url:
            await reset_postgres_schema(database_url)
        await seed(url)
        engine_name = "PostgreSQL" if "postgresql" in url else "SQLite"
        rows = []
        for mode, safe in (("plaintext", False), ("safe (AES)", True)):
            bare = await measure("bare", seconds=seconds, connections=connections, safe=safe)
            full = await measure("full", seconds=seconds, connections=connections, database_url=url, safe=safe,
                                 first_msg_id=1_000_000 if safe else 1)
            steady = await measure("full", seconds=seconds, connections=connections, database_url=url, safe=safe,
                                   first_msg_id=3_000_000 if safe else 2_000_000, rate=STEADY_RATE)
            rows.append((mode, bare, full, steady))
    print(f"\nWebhook throughput, {connections} connections, {seconds:.0f} s per run, database {engine_name}, "
          f"{os.cpu_count()} cores\n")
    print("Saturated (every connection sends again as soon as it has its answer):\n")
    print("| mode | bare req/s | full req/s | full / bare | bare p50 / p99 ms | full p50 / p99 ms | full errors |")
    print("|---|---|---|---|---|---|---|")
    for mode, bare, full, _ in rows:
        print(f"| {mode} | {bare['rps']:.0f} | {full['rps']:.0f} | {full['rps'] / bare['rps']:.1%} | "
              f"{bare['p50']:.1f} / {bare['p99']:.1f} | {full['p50']:.1f} / {full['p99']:.1f} | {full['failures']} |")
    print(f"\nFull path at a steady {STEADY_RATE} messages/s (latency from each message's scheduled time):\n")
    print("| mode | answered req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for mode, _, _, steady in rows:
        print(f"| {mode} | {steady['rps']:.0f} | {steady['p50']:.1f} | {steady['p99']:.1f} | {steady['failures']} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-url", default=None, help="Default: a fresh SQLite file. PostgreSQL is reset!")
    parser.add_argument("--serve", choices=["bare", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--safe", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve == "bare":
        serve_bare(arguments.port)
    elif arguments.serve == "full":
        serve_full(arguments.port, arguments.database_url, arguments.safe)
    else:
        asyncio.run(main(arguments.seconds, arguments.connections, arguments.database_url))
