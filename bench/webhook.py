"""Webhook throughput: the full path against a bare aiohttp handler, in one run on this machine.

The full path is everything a real message goes through: signature check (and AES in safe mode),
XML parsing, the replay guard's write, the durable dedup write, the member lookup, dispatch to the 我的
handler, the stored reply and the rendered (encrypted) XML. It runs as operators run it: `zhibu init`,
then `zhibu serve` (with `--workers N` when N > 1) in its own process, the outbox, scheduler and Q&A
index included; pushes (only a reply that outran the reply budget is pushed here) go to a closed port
and fail, which costs the server nothing measurable. The baseline is an aiohttp handler in its own
process returning a fixed reply.

The load never comes from this process:
- saturated: wrk (Debian package `wrk`) with a Lua script posting pre-signed requests, every one a
  distinct message (its own MsgId: real work for the full path) from 200 members taking turns; wrk's
  histogram gives p50 and p99. Without wrk, an asyncio client in its own process does the same (on a
  small machine it may then be the bottleneck for the bare handler: the table says which client ran).
- steady: 200 messages a second from an asyncio client in its own process, each request sent at its
  scheduled time on one of the keep-alive connections; latency counts from the scheduled time, so time
  spent queueing behind a slow answer is not hidden.

A third server is the design's ceiling (bench/lean_server.py): the same guarantees written lean (sqlite3 on the
loop, a sender dictionary, no ORM, routing or outbox), so that the table shows how far the full path is from what
the guarantees themselves cost. Bare, lean and full runs are interleaved (bare, lean, full, bare, …) and the
medians reported, so a drift in the machine's speed touches all three. CPU per message is the server's user + system time (every process
of the server, from /proc) over the messages it answered in the run.

    python bench/webhook.py [--seconds 8] [--rounds 3] [--connections 32] [--workers N]
                            [--database-url URL] [--no-wrk] [--modes plaintext,safe]

--database-url: default a fresh SQLite file; a PostgreSQL database given here is wiped first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import (  # noqa: E402
    CpuMeter,
    free_port,
    postgres_cpu_seconds,
    server_env,
    start_zhibu,
    stop,
    supports_workers,
    wait_healthy,
    zhibu_init,
)
from bot.config import DemoDefaults  # noqa: E402
from bot.wechat.emulator import Emulator, message_xml  # noqa: E402
from storage.db import reset_postgres_schema  # noqa: E402

USERS = 200  # bound members sending 我的
# A busy hour for a whole county is a few messages a second; this is fifty times that.
STEADY_RATE = 200
# Where the full server pushes to: nothing listens there (the discard port), so a push fails at once.
CLOSED_API = "http://127.0.0.1:9"
# The goals for one process on SQLite (plaintext and safe mode alike).
GOAL_SHARE = 0.12
GOAL_CPU_US = 400
GOAL_P99_SATURATED = 50.0
GOAL_P99_STEADY = 10.0

WRK_SCRIPT = r"""
-- Posts pre-signed requests from a file (each: its length on a line, then the raw HTTP request), each
-- thread its own share, in turn; counts answers that are not a reply and how often the pool ran out.
local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, count = args[1], tonumber(args[2])
  pool, position, failed, wrapped = {}, 0, 0, 0
  local file = assert(io.open(path, "rb"))
  local seen = 0
  while true do
    local line = file:read("*l")
    if not line then break end
    local data = file:read(tonumber(line))
    if seen % count == index then pool[#pool + 1] = data end
    seen = seen + 1
  end
  file:close()
end

function request()
  position = position + 1
  if position > #pool then
    position, wrapped = 1, wrapped + 1
  end
  return pool[position]
end

function response(status, headers, body)
  if status ~= 200 or body == "" or body == "success" or string.find(body, "系统繁忙", 1, true) then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local failed_all, wrapped_all = 0, 0
  for _, thread in ipairs(threads) do
    failed_all = failed_all + thread:get("failed")
    wrapped_all = wrapped_all + thread:get("wrapped")
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"failed": %d, "wrapped": %d, "socket_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    failed_all, wrapped_all, errors.connect + errors.read + errors.write, errors.timeout))
end
"""


# ---------------------------------------------------------------- the bare server (a child process)


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


def start_bare(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--serve-bare", "--port", str(port)], cwd=ROOT,
                            start_new_session=True)


def start_lean(port: int, folder: Path, safe: bool) -> subprocess.Popen:
    """The design's ceiling (bench/lean_server.py) on a database file of its own."""
    command = [sys.executable, str(ROOT / "bench" / "lean_server.py"), "--port", str(port),
               "--database", str(folder / f"lean-{'safe' if safe else 'plain'}.db")]
    return subprocess.Popen(command + (["--safe"] if safe else []), cwd=ROOT, start_new_session=True)


async def seed(database_url: str) -> None:
    from datetime import datetime, timezone

    from storage.db import create_engine, session_factory
    from storage.members import MemberFields, upsert_member
    from storage.models import WeChatIdentity

    engine = create_engine(database_url)
    now = datetime.now(timezone.utc)
    async with session_factory(engine)() as session, session.begin():
        for index in range(USERS):
            member, _ = await upsert_member(session, MemberFields(
                name=f"党员{index:03d}", org_path=f"基准县委/基准镇党委/第{index % 20}村党支部"), now=now)
            session.add(WeChatIdentity(openid=f"bench-{index}", member_id=member.id, first_seen_at=now, bound_at=now))
    await engine.dispose()


# ---------------------------------------------------------------- the requests


class MessageIds:
    """MsgIds never used before in this run: each message is new work for the full path."""

    def __init__(self) -> None:
        self.next = int(time.time()) * 1000

    def take(self, count: int) -> int:
        first, self.next = self.next, self.next + count
        return first


def build_requests(count: int, safe: bool, port: int, first_msg_id: int) -> list[bytes]:
    """count 我的 messages from USERS members, taking turns, as WeChat would post them (signed, and
    encrypted in safe mode), ready for a socket."""
    emulator = Emulator(app_id=DemoDefaults.app_id, app_secret=DemoDefaults.app_secret, token=DemoDefaults.token,
                        aes_key=DemoDefaults.aes_key if safe else "")
    requests = []
    # WeChat stamps CreateTime when the member writes and posts at once; these requests are signed before the
    # clock starts and sent up to minutes later. A CreateTime that old would make the server (rightly) give up
    # on a passive reply (the reply budget also runs from CreateTime, bot/dispatch.py), so they carry one it
    # does not trust (over a minute away from its clock) and the budget runs from each request's arrival.
    stamped = int(time.time()) - 3600
    for index in range(count):
        plaintext = message_xml({"ToUserName": "gh_bench", "FromUserName": f"bench-{index % USERS}",
                                 "CreateTime": stamped, "MsgType": "text", "Content": "我的",
                                 "MsgId": first_msg_id + index})
        query, body = emulator.sign(plaintext)
        payload = body.encode()
        head = (f"POST /wechat?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: text/xml\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
        requests.append(head + payload)
    return requests


# ---------------------------------------------------------------- the asyncio client (its own process)


async def connection_worker(port: int, requests: list[bytes], cursor: list[int], deadline: float,
                            latencies: list[float], failures: list[int],
                            schedule: tuple[float, float] | None) -> None:
    """Send requests back to back, or (schedule set) each at its slot of a steady rate."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline and cursor[0] < len(requests):
            index = cursor[0]
            request = requests[index]
            cursor[0] += 1
            started = time.perf_counter()
            if schedule is not None:
                slot = schedule[0] + index / schedule[1]
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
            if b" 200 " not in status_line or body in (b"", b"success") or "系统繁忙".encode() in body:
                failures.append(1)
    finally:
        writer.close()


async def run_load(port: int, requests: list[bytes], seconds: float, connections: int,
                   rate: float | None) -> dict:
    latencies: list[float] = []
    failures: list[int] = []
    cursor = [0]
    started = time.perf_counter()
    deadline = started + seconds
    schedule = (started, rate) if rate else None
    await asyncio.gather(*(connection_worker(port, requests, cursor, deadline, latencies, failures, schedule)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]
    return {"rps": len(latencies) / elapsed, "count": len(latencies), "failures": len(failures),
            "p50": statistics.median(ordered) * 1000, "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000,
            "seconds": elapsed, "wrapped": 0}


def client_process(port: int, requests: list[bytes], seconds: float, connections: int, rate: float | None,
                   pipe) -> None:
    started = time.process_time()
    result = asyncio.run(run_load(port, requests, seconds, connections, rate))
    result["client_cpu_s"] = time.process_time() - started
    pipe.send(result)
    pipe.close()


async def load_in_own_process(port: int, requests: list[bytes], seconds: float, connections: int,
                              rate: float | None, server_pid: int) -> dict:
    """The asyncio client in a process of its own; the server's CPU time over the run."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    client = context.Process(target=client_process, args=(port, requests, seconds, connections, rate, sending))
    client.start()
    sending.close()
    # The client needs a moment to import and unpickle before it sends: the server's clock starts with
    # the first answer it gives, as near as /proc allows (the idle server costs next to nothing).
    meter = CpuMeter(server_pid)
    meter.start()
    database = postgres_cpu_seconds()
    result = await asyncio.to_thread(receiving.recv)
    cpu = meter.read()
    result["db_cpu_s"] = postgres_cpu_seconds() - database
    await asyncio.to_thread(client.join)
    result["cpu_s"] = cpu
    return result


# ---------------------------------------------------------------- wrk


def run_wrk(port: int, requests: list[bytes], seconds: float, connections: int, threads: int,
            folder: Path, server_pid: int) -> dict:
    pool = folder / "requests.bin"
    with open(pool, "wb") as file:
        for request in requests:
            file.write(f"{len(request)}\n".encode())
            file.write(request)
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT, encoding="utf-8")
    meter = CpuMeter(server_pid)
    meter.start()
    database = postgres_cpu_seconds()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
         "-s", str(script), f"http://127.0.0.1:{port}/wechat", "--", str(pool), str(threads)],
        capture_output=True, text=True)
    cpu = meter.read()
    database = postgres_cpu_seconds() - database
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    found = re.search(r"^WRK_RESULT (.*)$", completed.stdout, re.M)
    if completed.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stdout}\n{completed.stderr}")
    raw = json.loads(found.group(1))
    elapsed = raw["duration_us"] / 1e6
    return {"rps": raw["requests"] / elapsed, "count": raw["requests"], "seconds": elapsed,
            "failures": raw["failed"] + raw["socket_errors"] + raw["timeouts"],
            "p50": raw["p50_us"] / 1000, "p99": raw["p99_us"] / 1000, "wrapped": raw["wrapped"], "cpu_s": cpu,
            "client_cpu_s": client_cpu, "db_cpu_s": database}


# ---------------------------------------------------------------- one mode (plaintext or safe)


async def saturate(port: int, safe: bool, server_pid: int, ids: MessageIds, args, folder: Path, *,
                   pool: int) -> dict:
    requests = build_requests(pool, safe, port, ids.take(pool))
    if args.wrk:
        result = await asyncio.to_thread(run_wrk, port, requests, args.seconds, args.connections, args.wrk_threads,
                                         folder, server_pid)
    else:
        result = await load_in_own_process(port, requests, args.seconds, args.connections, None, server_pid)
    result["cpu_us"] = result["cpu_s"] / max(result["count"], 1) * 1e6
    result["db_cpu_us"] = result["db_cpu_s"] / max(result["count"], 1) * 1e6
    result["busy"] = result["cpu_s"] / result["seconds"]
    result["client_busy"] = result["client_cpu_s"] / result["seconds"]
    return result


async def steady(port: int, safe: bool, server_pid: int, ids: MessageIds, args) -> dict:
    count = int(args.steady_seconds * STEADY_RATE)
    requests = build_requests(count, safe, port, ids.take(count))
    result = await load_in_own_process(port, requests, args.steady_seconds + 30, args.connections, STEADY_RATE,
                                       server_pid)
    result["cpu_us"] = result["cpu_s"] / max(result["count"], 1) * 1e6
    result["db_cpu_us"] = result["db_cpu_s"] / max(result["count"], 1) * 1e6
    return result


async def measure_mode(mode: str, safe: bool, url: str, folder: Path, ids: MessageIds, args) -> dict:
    env = server_env(url, folder, api_base=CLOSED_API, safe=safe)
    bare_port, lean_port, full_port = free_port(), free_port(), free_port()
    bare = start_bare(bare_port)
    lean = start_lean(lean_port, folder, safe)
    full = start_zhibu(full_port, env, folder, workers=args.workers, log_name=f"server-{mode}.log")
    servers = {"bare": (bare_port, bare, args.bare_pool), "lean": (lean_port, lean, args.pool),
               "full": (full_port, full, args.pool)}
    runs: dict[str, list[dict]] = {name: [] for server in servers for name in (server, f"{server}_steady")}
    try:
        for port, process, _ in servers.values():
            await wait_healthy(port, process)
        # Warm-up: the first messages fill caches and connection pools on every side.
        for port, process, _ in servers.values():
            await load_in_own_process(port, build_requests(500, safe, port, ids.take(500)), 1.0, args.connections,
                                      None, process.pid)
        for round_number in range(args.rounds):
            print(f"  {mode}, round {round_number + 1}/{args.rounds} …", file=sys.stderr, flush=True)
            for name, (port, process, pool) in servers.items():
                runs[name].append(await saturate(port, safe, process.pid, ids, args, folder, pool=pool))
            for name, (port, process, _) in servers.items():
                runs[f"{name}_steady"].append(await steady(port, safe, process.pid, ids, args))
    finally:
        for _, process, _ in servers.values():
            stop(process)
    log_text = (folder / f"server-{mode}.log").read_text(encoding="utf-8", errors="replace")
    runs["log_errors"] = len(re.findall(r" (ERROR|CRITICAL) ", log_text))
    runs["log_tracebacks"] = log_text.count("Traceback (most recent call last)")
    return runs


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def spread(runs: list[dict], key: str) -> str:
    values = [run[key] for run in runs]
    return f"{min(values):,.0f}–{max(values):,.0f}"


def mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


async def main(args) -> None:
    engine_name = "PostgreSQL" if args.database_url and "postgresql" in args.database_url else "SQLite"
    if args.workers > 1 and not supports_workers():
        sys.exit("zhibu serve has no --workers option in this checkout yet; run with --workers 1")
    folder = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    try:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        if engine_name == "PostgreSQL":
            await reset_postgres_schema(url)
        zhibu_init(server_env(url, folder, api_base=CLOSED_API), folder)
        await seed(url)
        ids = MessageIds()
        results = {}
        for mode in args.modes:
            results[mode] = await measure_mode(mode, mode == "safe", url, folder, ids, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(results, engine_name, args)


def report(results: dict, engine_name: str, args) -> None:
    names = {"plaintext": "plaintext", "safe": "safe (AES)"}
    client = (f"wrk ({args.wrk_threads} thread{'s' if args.wrk_threads > 1 else ''})" if args.wrk
              else "an asyncio client in its own process (wrk not found: it may be the bare handler's bottleneck)")
    workers = f"{args.workers} worker{'s' if args.workers > 1 else ''} (`zhibu serve" + \
              (f" --workers {args.workers}`)" if args.workers > 1 else "`)")
    print(f"\nWebhook: full path ({workers}, database {engine_name}) against a bare aiohttp handler, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(f"{args.rounds} rounds, each: bare, lean and full saturated, then bare, lean and full at "
          f"{STEADY_RATE}/s; medians (range over rounds in brackets). Saturated: {args.connections} keep-alive "
          f"connections for {args.seconds:.0f} s, load from {client}. Steady: {STEADY_RATE} messages/s for "
          f"{args.steady_seconds:.0f} s from an asyncio client in its own process, latency from each message's "
          f"scheduled time.\n")
    print("| mode | server | saturated req/s | saturated p50 / p99 ms | at 200/s p50 / p99 ms | CPU µs/message "
          "saturated | CPU µs/message at 200/s | CPU busy saturated: server / client | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    def cpu(runs: list[dict]) -> str:
        shown = f"{median_of(runs, 'cpu_us'):,.0f}"
        if engine_name == "PostgreSQL" and median_of(runs, "db_cpu_us") >= 1:
            shown += f" + {median_of(runs, 'db_cpu_us'):,.0f} PostgreSQL"
        return shown

    for mode, runs in results.items():
        for server in ("bare", "lean", "full"):
            saturated, steady_runs = runs[server], runs[f"{server}_steady"]
            errors = sum(run["failures"] for run in saturated + steady_runs)
            print(f"| {names[mode]} | {server} | {median_of(saturated, 'rps'):,.0f} ({spread(saturated, 'rps')}) | "
                  f"{median_of(saturated, 'p50'):.1f} / {median_of(saturated, 'p99'):.1f} | "
                  f"{median_of(steady_runs, 'p50'):.1f} / {median_of(steady_runs, 'p99'):.1f} | "
                  f"{cpu(saturated)} | {cpu(steady_runs)} | "
                  f"{median_of(saturated, 'busy'):.0%} / {median_of(saturated, 'client_busy'):.0%} | {errors} |")
        for over, under in (("full", "bare"), ("lean", "bare"), ("full", "lean")):
            share = median_of(runs[over], "rps") / median_of(runs[under], "rps")
            cpu_ratio = median_of(runs[over], "cpu_us") / median_of(runs[under], "cpu_us")
            print(f"| {names[mode]} | {over} / {under} | {share:.1%} | | | {cpu_ratio:.1f}× | | | |")
    print("\n'lean': the design's ceiling (bench/lean_server.py): the same signature, replay record, claim committed "
          "before handling and stored reply, written with sqlite3 on the loop, a sender dictionary and nothing else.")
    print("'errors': non-200 answers, empty or 'success' answers (the reply budget ran out) and the busy reply, "
          "over all runs. 'CPU busy': the server's (all its processes) and the load client's CPU seconds over the run's "
          "seconds (100% = one core); a server well under 100% while the client is too is waiting, not working."
          + (" On PostgreSQL the database's own processes are shown apart (+ … PostgreSQL): they run on the same "
             "machine." if engine_name == "PostgreSQL" else ""))
    wrapped = {mode: sum(run["wrapped"] for run in runs["full"]) for mode, runs in results.items()}
    if any(wrapped.values()):
        print(f"\nNote: the pool of distinct full-path requests ran out and was sent again ({wrapped}): "
              "raise --pool; repeated MsgIds are answered from the inbound log, cheaper than new messages.")
    for mode, runs in results.items():
        if runs["log_errors"] or runs["log_tracebacks"]:
            print(f"\nThe full server logged {runs['log_errors']} ERROR lines and {runs['log_tracebacks']} tracebacks "
                  f"in {names[mode]} mode.")

    print(f"\nGoals (one process on SQLite{'' if args.workers == 1 and engine_name == 'SQLite' else '; this run is not that'}):\n")
    print("| goal | target | " + " | ".join(names[mode] for mode in results) + " |")
    print("|---|---|" + "---|" * len(results))
    rows = [
        ("throughput, full / bare", f"≥ {GOAL_SHARE:.0%}",
         lambda runs: median_of(runs["full"], "rps") / median_of(runs["bare"], "rps"),
         lambda value: (f"{value:.1%}", value >= GOAL_SHARE)),
        ("CPU per message (saturated)", f"≤ {GOAL_CPU_US} µs", lambda runs: median_of(runs["full"], "cpu_us"),
         lambda value: (f"{value:,.0f} µs", value <= GOAL_CPU_US)),
        ("p99 saturated", f"< {GOAL_P99_SATURATED:.0f} ms", lambda runs: median_of(runs["full"], "p99"),
         lambda value: (f"{value:.1f} ms", value < GOAL_P99_SATURATED)),
        (f"p99 at {STEADY_RATE} messages/s", f"< {GOAL_P99_STEADY:.0f} ms",
         lambda runs: median_of(runs["full_steady"], "p99"),
         lambda value: (f"{value:.1f} ms", value < GOAL_P99_STEADY)),
    ]
    for name, target, figure, judge in rows:
        cells = []
        for runs in results.values():
            shown, ok = judge(figure(runs))
            cells.append(f"{shown} ({mark(ok)})")
        print(f"| {name} | {target} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="Length of each saturated run.")
    parser.add_argument("--steady-seconds", type=float, default=8, help=f"Length of each run at {STEADY_RATE}/s.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of bare, lean, full saturated, then the three steady.")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="Passed to the full server as zhibu serve --workers N.")
    parser.add_argument("--database-url", default=None, help="Default: a fresh SQLite file. PostgreSQL is reset!")
    parser.add_argument("--modes", default="plaintext,safe", help="Comma-separated: plaintext, safe.")
    parser.add_argument("--pool", type=int, default=40_000,
                        help="Distinct pre-signed requests per saturated full-path run (more than it can answer).")
    parser.add_argument("--bare-pool", type=int, default=20_000, help="The same for the bare handler (cycled).")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--no-wrk", dest="wrk", action="store_false",
                        help="Use the asyncio client (own process) even where wrk is installed.")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve_bare:
        serve_bare(arguments.port)
    else:
        arguments.modes = [mode.strip() for mode in arguments.modes.split(",") if mode.strip()]
        if any(mode not in ("plaintext", "safe") for mode in arguments.modes):
            parser.error("--modes takes plaintext and/or safe")
        arguments.wrk = arguments.wrk and shutil.which("wrk") is not None
        asyncio.run(main(arguments))
