"""Long messages against everyone else's replies: what a 10,000-character text or voice message costs others.

One full service (bench/webhook.py starts it in its own process, with the shipped content) gets ordinary
traffic from other members at a steady rate: half 我的, half questions from tests/qa/dev.tsv. First that
traffic alone (the baseline), then the same traffic again while other followers send 10,000-character texts
and voice messages (the text in <Recognition>, as WeChat's voice recognition delivers it). By default the
long text is the worst case for the search: domain terms with sound-alike slips and no punctuation, every few
characters a possible slip to check (--kind story: a rambling story instead). Latency counts
from each message's scheduled time, so waiting behind a slow reply is not hidden.

The table gives the others' p50, p99 and worst reply time in both runs and the difference (the delay the
long messages cause; goal under 100 ms), and the long messages' own reply times (goal under 1 s).

    python bench/long_text.py [--seconds 10] [--rate 20] [--long-messages 10] [--length 10000]
                              [--kind slips|story] [--safe] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.webhook import (  # noqa: E402
    USERS,
    connection_worker,
    free_port,
    seed,
    signed_requests,
    start_server,
    wait_healthy,
)
from storage.db import reset_postgres_schema  # noqa: E402

CONNECTIONS = 16  # for the ordinary traffic; the long messages have their own
KINDS = {
    # The slips of tests/content/test_homophones.py run together, as a voice transcript without punctuation.
    "slips": "在公众号上情假发啥字三会一颗是啥党远大会都讲些啥五必防具体指什么预备其多长只委会多久开一次",
    "story": "我是老党员了今年七十多岁眼睛不太好字也认不全孩子们都在外地打工平时就我和老伴在家种地",
}


def ordinary_messages(count: int) -> list[tuple[str, dict]]:
    """Other members' everyday messages: 我的 and ordinary questions, alternating."""
    questions = [line.split("\t")[0] for line in (ROOT / "tests" / "qa" / "dev.tsv").read_text("utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
    messages = []
    for index in range(count):
        content = "我的" if index % 2 == 0 else questions[index // 2 % len(questions)]
        messages.append((f"bench-{index % USERS}", {"MsgType": "text", "Content": content}))
    return messages


def long_messages(count: int, length: int, kind: str) -> list[tuple[str, dict]]:
    """Texts and voice messages of length characters, alternating, each from a follower of its own."""
    text = (KINDS[kind] * (length // len(KINDS[kind]) + 1))[:length]
    messages = []
    for index in range(count):
        if index % 2 == 0:
            fields = {"MsgType": "text", "Content": text}
        else:
            fields = {"MsgType": "voice", "MediaId": f"long-voice-{index}", "Format": "amr", "Recognition": text}
        messages.append((f"long-{index}", fields))
    return messages


async def run(port: int, ordinary: list[bytes], seconds: float, long: list[bytes] | None = None) -> dict:
    """The ordinary requests at a steady rate over seconds; the long ones spread evenly over the same time."""
    deadline = time.perf_counter() + seconds
    result = {"others": [], "others_failed": [], "long": [], "long_failed": []}
    cursor = [0]
    work = [connection_worker(port, ordinary, cursor, deadline, result["others"], result["others_failed"],
                              (len(ordinary) / seconds, seconds)) for _ in range(CONNECTIONS)]
    if long:
        long_cursor = [0]
        # Each long message on a connection of its own, so that one slow reply never delays the next one's send.
        work += [connection_worker(port, long, long_cursor, deadline, result["long"], result["long_failed"],
                                   (len(long) / seconds, seconds)) for _ in range(len(long))]
    await asyncio.gather(*work)
    return result


def stats(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0, "p50": float("nan"), "p99": float("nan"), "worst": float("nan")}
    return {"count": len(ordered), "p50": statistics.median(ordered) * 1000,
            "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, "worst": ordered[-1] * 1000}


async def first_reply(port: int, request: bytes) -> str:
    """The reply body to one request (to show what the long message's sender sees)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return (await reader.readexactly(length)).decode()
    finally:
        writer.close()


async def main(seconds: float, rate: float, long_count: int, length: int, kind: str, safe: bool,
               database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        if database_url and "postgresql" in database_url:
            await reset_postgres_schema(database_url)
        await seed(url)
        port = free_port()
        server = start_server("full", port, url, safe)
        try:
            await wait_healthy(port)
            count = int(seconds * rate)
            # A warm-up with every kind of message, then the two measured runs with fresh message ids.
            await run(port, signed_requests(ordinary_messages(40), safe, port, 1), 2.0,
                      signed_requests(long_messages(2, length, kind), safe, port, 900_000))
            sample = await first_reply(port, signed_requests(long_messages(2, length, kind)[1:], safe, port,
                                                             950_000)[0])
            baseline = await run(port, signed_requests(ordinary_messages(count), safe, port, 100_000), seconds)
            loaded = await run(port, signed_requests(ordinary_messages(count), safe, port, 200_000), seconds,
                               signed_requests(long_messages(long_count, length, kind), safe, port, 300_000))
        finally:
            server.terminate()
            server.wait()
    engine = "PostgreSQL" if "postgresql" in url else "SQLite"
    alone, along = stats(baseline["others"]), stats(loaded["others"])
    print(f"\nLong messages and other members' replies: {rate:g} ordinary messages/s for {seconds:g} s per run, "
          f"{long_count} messages of {length:,} characters ({kind}; texts and voice alternating) in the second run, "
          f"{'safe mode (AES)' if safe else 'plaintext'}, database {engine}, {os.cpu_count()} cores\n")
    print("| other members' replies | replies | p50 ms | p99 ms | worst ms | errors |")
    print("|---|---|---|---|---|---|")
    print(f"| ordinary traffic alone (baseline) | {alone['count']} | {alone['p50']:.1f} | {alone['p99']:.1f} | "
          f"{alone['worst']:.1f} | {len(baseline['others_failed'])} |")
    print(f"| the same with the long messages | {along['count']} | {along['p50']:.1f} | {along['p99']:.1f} | "
          f"{along['worst']:.1f} | {len(loaded['others_failed'])} |")
    print(f"| **extra delay** (goal < 100 ms) | | {along['p50'] - alone['p50']:+.1f} | "
          f"{along['p99'] - alone['p99']:+.1f} | {along['worst'] - alone['worst']:+.1f} | |")
    own = stats(loaded["long"])
    print("\n| long messages' own replies (goal < 1 s) | replies | p50 ms | worst ms | errors |")
    print("|---|---|---|---|---|")
    print(f"| {length:,}-character text or voice | {own['count']} | {own['p50']:.1f} | {own['worst']:.1f} | "
          f"{len(loaded['long_failed'])} |")
    if not safe:
        shown = sample.split("<Content><![CDATA[", 1)[-1].split("]]>", 1)[0]
        print(f"\nWhat a voice message of {length:,} characters gets back:\n\n    " + shown.replace("\n", "\n    "))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=20, help="ordinary messages a second")
    parser.add_argument("--long-messages", type=int, default=10, help="long messages in the second run")
    parser.add_argument("--length", type=int, default=10_000, help="characters in each long message")
    parser.add_argument("--kind", choices=sorted(KINDS), default="slips", help="what the long messages say")
    parser.add_argument("--safe", action="store_true", help="safe mode (AES) instead of plaintext")
    parser.add_argument("--database-url", default=None, help="Default: a fresh SQLite file. PostgreSQL is reset!")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.rate, arguments.long_messages, arguments.length, arguments.kind,
                     arguments.safe, arguments.database_url))
