"""Replies while a big roster is imported into the same database.

Staff run `zhibu import members FILE` in their own process while `zhibu serve` answers members. On
SQLite both share one file, so every write of one waits for the other's write lock. This benchmark
starts the real server (bench/webhook.py's, in its own process) on a fresh database, has ordinary
users send 我的 at a steady rate, and measures the reply times

- with no import (the baseline, same run, same server),
- while the real import command (`zhibu import members`, another process, as staff run it) writes a
  generated roster of 20,000 members, and
- while the same file is imported again (every row checked, nothing changes; skip with --no-again),

then prints p50 / p99 / max reply times, how many replies failed or came too late (WeChat was sent
`success` after the reply budget), and how long each import took. Latency counts from each message's
scheduled time, so time spent queueing behind a slow answer is not hidden. The goal: p99 under 1 s
during an import.

    python bench/import_load.py [--rows 20000] [--rate 20] [--baseline-seconds 10] [--no-again]
                                [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webhook import build_requests, connection_worker, free_port, seed, start_server, wait_healthy  # noqa: E402

from storage.db import reset_postgres_schema  # noqa: E402

# Enough that a reply stuck for a few seconds does not hold back the messages scheduled after it.
CONNECTIONS = 64
# Requests are signed with the time they are built: a window's worth at a time, well inside the
# webhook's timestamp window (300 s).
WINDOW_SECONDS = 240.0

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "秀英桂兰玉芳建国志强明华德文国平海军红梅小燕春生永刚金凤丽娟宏伟淑珍晓东卫东树林光荣长青振华"


def write_roster(path: Path, rows: int, seed_value: int = 10) -> None:
    """A county's roster: 20 townships, 50 village branches each, two party groups per branch."""
    rng = random.Random(seed_value)
    roles = ["书记", "副书记", "组织委员", "宣传委员"]
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["序号", "姓名", "手机号", "所属组织", "职务", "出生日期", "入党日期", "党员类别",
                         "困难党员", "流动党员"])
        for index in range(rows):
            town, village = index % 20, (index // 20) % 50
            branch = f"导入县委/第{town + 1:02d}镇党委/第{village + 1:02d}村党支部".translate(str.maketrans("0123456789",
                                                                                            "〇一二三四五六七八九"))
            position = index // 1000  # the member's place in the branch
            org = branch if position < 4 else f"{branch}/第{'一二'[position % 2]}党小组"
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            born = 1940 + rng.randrange(60)
            writer.writerow([index + 1, name, f"13{index:09d}", org, roles[position] if position < 4 else "",
                             f"{born}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                             f"{born + 19 + rng.randrange(min(20, 2024 - born - 19))}年{rng.randrange(1, 13)}月1日",
                             "预备党员" if rng.random() < 0.03 else "正式党员",
                             "是" if rng.random() < 0.05 else "", "是" if rng.random() < 0.1 else "否"])


@contextlib.contextmanager
def stderr_to(handle):
    """Children started inside write their stderr (the server's log) to handle."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(handle.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def zhibu_command() -> list[str]:
    """The `zhibu` command of this environment (the console script next to this Python)."""
    script = Path(sys.executable).with_name("zhibu")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from bot.cli import main; main()"]


async def steady_load(port: int, rate: float, first_msg_id: int, stop: asyncio.Future | None = None,
                      seconds: float = WINDOW_SECONDS) -> tuple[list[float], int]:
    """Send messages at a steady rate for seconds, or until stop is done (at most WINDOW_SECONDS);
    the reply time of each, and how many failed."""
    latencies: list[float] = []
    failures: list[int] = []
    requests = build_requests(int(seconds * rate), False, port, first_msg_id)
    cursor = [0]
    deadline = time.perf_counter() + seconds
    if stop is not None:
        def stop_scheduling(_) -> None:
            # Every message whose time has come is still sent (late, if the connections were stuck), so the
            # wait is counted; the workers stop once those are answered.
            scheduled = int((time.perf_counter() - (deadline - seconds)) * rate) + 1
            del requests[max(scheduled, cursor[0]):]

        stop.add_done_callback(stop_scheduling)
    await asyncio.gather(*(connection_worker(port, requests, cursor, deadline, latencies, failures,
                                             (rate, seconds)) for _ in range(CONNECTIONS)))
    return latencies, len(failures)


def summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"count": len(ordered), "p50": ordered[len(ordered) // 2] * 1000,
            "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, "max": ordered[-1] * 1000}


async def during_import(port: int, rate: float, first_msg_id: int, command: list[str], folder: Path, url: str
                        ) -> dict:
    """Messages at a steady rate for as long as command (an import in its own process) runs."""
    # PYTHONPATH: the import runs this checkout's code, as the server does.
    env = {**os.environ, "ZHIBU_DATABASE_URL": url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    importer = await asyncio.create_subprocess_exec(*command, cwd=folder, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)

    async def finish() -> tuple[bytes, float]:
        output, _ = await importer.communicate()
        return output, time.perf_counter() - started

    finished = asyncio.create_task(finish())
    latencies, failed, msg_id = [], 0, first_msg_id
    while not finished.done():
        window, window_failed = await steady_load(port, rate, msg_id, stop=finished)
        latencies += window
        failed += window_failed
        msg_id += 100_000
    output, seconds = finished.result()
    text = output.decode(errors="replace")
    report = next((line for line in text.splitlines() if "roster" in line and "rows" in line),
                  text.strip().splitlines()[-1] if text.strip() else "(no output)")
    return {"latencies": latencies, "failed": failed, "seconds": seconds, "exit": importer.returncode,
            "report": report.split(": ", 2)[-1]}


async def main(rows: int, rate: float, baseline_seconds: float, database_url: str | None, again: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="zhibu-import-load-"))
    try:
        url = database_url or f"sqlite+aiosqlite:///{folder}/zhibu.db"
        if "postgresql" in url:
            await reset_postgres_schema(url)
        await seed(url)
        roster = folder / "roster.csv"
        write_roster(roster, rows)
        command = [*zhibu_command(), "import", "members", str(roster)]

        port = free_port()
        log_path = folder / "server.log"
        with log_path.open("w") as server_log, stderr_to(server_log):
            server = start_server("full", port, url)
        phases: list[tuple[str, dict]] = []
        try:
            await wait_healthy(port)
            await steady_load(port, rate, 1, seconds=1.0)  # warm-up
            latencies, failed = await steady_load(port, rate, 100_000, seconds=baseline_seconds)
            phases.append(("no import (baseline)", {"latencies": latencies, "failed": failed}))
            phases.append((f"importing {rows:,} new members",
                           await during_import(port, rate, 1_000_000, command, folder, url)))
            if again:
                phases.append(("importing the same file again (nothing changes)",
                               await during_import(port, rate, 5_000_000, command, folder, url)))
        finally:
            server.terminate()
            server.wait()
        server_lines = log_path.read_text(errors="replace").splitlines()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    engine_name = "PostgreSQL" if "postgresql" in url else "SQLite"
    print(f"\nReplies during a roster import: {rows:,} rows, users sending 我的 at {rate:g} messages/s "
          f"(latency from each message's scheduled time), database {engine_name}, {os.cpu_count()} cores\n")
    print("| phase | replies | failed or late | p50 ms | p99 ms | max ms | import |")
    print("|---|---|---|---|---|---|---|")
    for phase, result in phases:
        stats = summary(result["latencies"])
        took = f"{result['seconds']:.1f} s" if "seconds" in result else ""
        print(f"| {phase} | {stats['count']} | {result['failed']} | {stats['p50']:.1f} | {stats['p99']:.1f} | "
              f"{stats['max']:.1f} | {took} |")
    print()
    for phase, result in phases[1:]:
        print(f"{phase}: exit code {result['exit']}: {result['report']}")
    locked = [line for line in server_lines if "locked" in line]
    errors = [line for line in server_lines if line.startswith(("ERROR", "CRITICAL", "Traceback")) or " ERROR " in line]
    print(f"Server log: {len(server_lines)} lines, {len(errors)} errors or tracebacks, {len(locked)} mentioning a "
          "locked database")
    for line in (errors + locked)[:5]:
        print("   ", line[:200])
    worst = max(summary(result["latencies"])["p99"] for _, result in phases[1:])
    print(f"\nGoal p99 < 1000 ms during an import: {'met' if worst < 1000 else 'NOT met'} (worst {worst:.0f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second from ordinary users")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--database-url", default=None, help="Default: a fresh SQLite file. PostgreSQL is reset!")
    parser.add_argument("--no-again", dest="again", action="store_false",
                        help="Skip the second import of the same file (every row unchanged).")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.rate, arguments.baseline_seconds, arguments.database_url,
                     arguments.again))
