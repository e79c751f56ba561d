"""Does the webhook's throughput grow with the workers (`zhibu serve --workers N`), core by core?

On a machine with two cores the question cannot be asked plainly: the workers, the database's own processes and
the load client all take turns on the same two cores, and a second worker only takes CPU from the others
(README, 性能: every PostgreSQL run with `--workers 2` so far). Here each process of the server is capped at a
share of one core (bench.servers.CpuCaps, a cgroup each), so that N workers are N small cores of that speed,
and PostgreSQL and wrk run uncapped on what is left. If the design scales — no lock, pool or shared row that
the workers queue on — N workers answer about N times what one does.

One server per N in --workers, all on the same database (as operators run it: `zhibu init`, then
`zhibu serve --workers N`). Once every worker has loaded its content, each process of each server is capped.
Rounds interleave the servers (1, 2, 3, 1, 2, 3, …), each a saturated run of wrk posting distinct 我的 messages
from 200 members (bench/webhook.py's requests), and the table shows medians, so a drift in the machine's speed
touches every N alike. The baseline is one worker, measured in the same run.

    python bench/scaling.py [--workers 1,2,3] [--core 0.3] [--rounds 3] [--seconds 8]
                            [--database-url URL] [--pool-size 8] [--safe]

--database-url: default a fresh SQLite file (whose single writer is expected not to scale); a PostgreSQL
database given here is wiped first. Needs root (cgroups) and wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import (  # noqa: E402
    CpuCaps,
    free_port,
    process_tree,
    server_env,
    start_zhibu,
    stop,
    wait_healthy,
    zhibu_init,
)
from bench.webhook import CLOSED_API, MessageIds, build_requests, run_wrk, seed  # noqa: E402
from storage.db import reset_postgres_schema  # noqa: E402

LOADED = "content loaded from"  # each worker logs it once its Q&A index is in place
READY_SECONDS = 180


async def all_workers_ready(log: Path, workers: int, process, port: int) -> None:
    """Every worker has loaded its content (a worker still starting would otherwise start under its cap)."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server with {workers} workers exited with {process.returncode}")
        if log.exists() and log.read_text(encoding="utf-8", errors="replace").count(LOADED) >= workers:
            await wait_healthy(port, process)
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the server with {workers} workers was not ready in {READY_SECONDS} s")


async def saturate(port: int, pid: int, ids: MessageIds, args, folder: Path) -> dict:
    requests = build_requests(args.pool, args.safe, port, ids.take(args.pool))
    result = await asyncio.to_thread(run_wrk, port, requests, args.seconds, args.connections, 1, folder, pid)
    count = max(result["count"], 1)
    result["cpu_us"] = result["cpu_s"] / count * 1e6
    result["db_cpu_us"] = result["db_cpu_s"] / count * 1e6
    for name in ("cpu", "db_cpu", "client_cpu"):
        result[f"{name}_cores"] = result[f"{name}_s"] / result["seconds"]
    return result


async def main(args) -> None:
    postgres = bool(args.database_url and "postgresql" in args.database_url)
    folder = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    caps = CpuCaps(args.core)
    servers: dict[int, tuple[int, object]] = {}
    runs: dict[int, list[dict]] = {count: [] for count in args.workers}
    try:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        if postgres:
            await reset_postgres_schema(url)
        # The servers run at once, and PostgreSQL's stock 100 connections must hold all their pools: a capped
        # worker keeps far fewer than 30 transactions open.
        env = server_env(url, folder, api_base=CLOSED_API, safe=args.safe,
                         extra={"ZHIBU_DATABASE_POOL_SIZE": str(args.pool_size)})
        zhibu_init(env, folder)
        await seed(url)
        # The most workers first: the first process up takes the scheduler's leader lock (and runs the jobs for
        # every server on this database), a cost that is then borne by the largest N, not by the baseline.
        for count in sorted(args.workers, reverse=True):
            port = free_port()
            servers[count] = (port, start_zhibu(port, env, folder, workers=count, log_name=f"server-{count}.log"))
            # One at a time: the first builds the content cache the others then load.
            await all_workers_ready(folder / f"server-{count}.log", count, servers[count][1], port)
        servers = {count: servers[count] for count in args.workers}  # measured in the order given
        for _, process in servers.values():
            for pid in process_tree(process.pid):
                caps.cap(pid)
        ids = MessageIds()
        for port, process in servers.values():  # warm-up, capped
            await saturate(port, process.pid, ids, argparse.Namespace(**{**vars(args), "seconds": 2}), folder)
        for round_number in range(args.rounds):
            print(f"  round {round_number + 1}/{args.rounds} …", file=sys.stderr, flush=True)
            for count, (port, process) in servers.items():
                runs[count].append(await saturate(port, process.pid, ids, args, folder))
    finally:
        for _, process in servers.values():
            stop(process)
        caps.release()
        logs = {count: folder / f"server-{count}.log" for count in servers if (folder / f"server-{count}.log").exists()}
        kept = Path(tempfile.mkdtemp(prefix="bench-scaling-logs-"))
        logs = {count: Path(shutil.copy(log, kept)) for count, log in logs.items()}
        shutil.rmtree(folder, ignore_errors=True)
    report(runs, logs, args, "PostgreSQL" if postgres else "SQLite")


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report(runs: dict[int, list[dict]], logs: dict[int, Path], args, engine: str) -> None:
    print(f"\nScaling: the full webhook path (我的, {'safe mode' if args.safe else 'plaintext'}, database {engine}) "
          f"with `zhibu serve --workers N`, each process capped at {args.core:.2f} of a core; "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(f"{args.rounds} rounds of {args.seconds:.0f} s saturated runs (wrk, {args.connections} connections), "
          f"the servers interleaved; medians, range over rounds in brackets.\n")
    print("| workers | cap (cores) | req/s | × one worker | p50 / p99 ms | CPU µs/message | cores used: server / "
          + ("PostgreSQL / " if engine == "PostgreSQL" else "") + "wrk | errors |")
    print("|---|---|---|---|---|---|---|---|")
    base = median(runs[args.workers[0]], "rps") / args.workers[0]
    for count, measured in runs.items():
        rates = [run["rps"] for run in measured]
        cpu = f"{median(measured, 'cpu_us'):,.0f}"
        used = f"{median(measured, 'cpu_cores'):.2f}"
        if engine == "PostgreSQL":
            cpu += f" + {median(measured, 'db_cpu_us'):,.0f} PostgreSQL"
            used += f" / {median(measured, 'db_cpu_cores'):.2f}"
        used += f" / {median(measured, 'client_cpu_cores'):.2f}"
        errors = sum(run["failures"] for run in measured)
        print(f"| {count} | {count * args.core:.2f} | {median(measured, 'rps'):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | "
              f"{median(measured, 'rps') / base:.2f} | {median(measured, 'p50'):.1f} / {median(measured, 'p99'):.1f} | "
              f"{cpu} | {used} | {errors} |")
    print("\n'× one worker': req/s over one worker's (per worker, if the first N measured is not 1). 'cores used': CPU "
          "seconds over the run's seconds. 'errors': non-200, empty, 'success' or busy answers. A capped process "
          "that has spent its share waits for the next period, which shows in p99, not in what is measured here.")
    for count, log in logs.items():
        text = log.read_text(encoding="utf-8", errors="replace")
        errors, tracebacks = len(re.findall(r" (ERROR|CRITICAL) ", text)), text.count("Traceback (most recent call last)")
        if errors or tracebacks:
            print(f"\nThe server with {count} workers logged {errors} ERROR lines and {tracebacks} tracebacks ({log}).")
        else:
            log.unlink()
    for folder in {log.parent for log in logs.values()}:
        if not any(folder.iterdir()):
            folder.rmdir()  # nothing worth keeping


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,3", help="Comma-separated worker counts; the first is the baseline.")
    parser.add_argument("--core", type=float, default=0.3, help="The share of one core each process may use.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pool", type=int, default=20_000, help="Distinct pre-signed requests per run.")
    parser.add_argument("--database-url", default=None, help="Default: a fresh SQLite file. PostgreSQL is reset!")
    parser.add_argument("--pool-size", type=int, default=8,
                        help="ZHIBU_DATABASE_POOL_SIZE of every worker (PostgreSQL): all the servers run at once.")
    parser.add_argument("--safe", action="store_true", help="Encrypted requests and replies (safe mode).")
    arguments = parser.parse_args()
    arguments.workers = [int(count) for count in arguments.workers.split(",") if count.strip()]
    if shutil.which("wrk") is None:
        parser.error("wrk is needed (Debian package wrk)")
    asyncio.run(main(arguments))
