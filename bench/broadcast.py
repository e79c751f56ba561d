"""Broadcast throughput: a generated 70,000-member city receives notices through the outbox.

The city has 1,673 village branches under a few counties and townships, every member bound to a
follower (one in twenty wrote to the account an hour ago, so their 48-hour window is open). The
emulated WeChat API runs in its own process, served over HTTP. Each delivery runs in a fresh process,
so its peak memory is its own: one township, one county and the whole city get a notice through
enqueue_members and Outbox.run_until_idle. The baseline is a bare aiohttp loop posting the same number
of template messages to the same emulator endpoint, with the same number of requests in flight.

    python bench/broadcast.py [--members 70000] [--branches 1673] [--rate 0] [--concurrency 32]
                              [--database-url URL]
    python bench/broadcast.py --kill-test      # SIGKILL the engine mid-broadcast, restart, count duplicates

--database-url: default a fresh SQLite file; a PostgreSQL database given here is wiped first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import DemoDefaults, Settings  # noqa: E402

TEMPLATE_ID = "TPL-BENCH-NOTICE"
NOTICE_TEXT = "【示范市委通知】请各支部于本月25日前组织党员学习新修订的《中国共产党农村基层组织工作条例》，并报送学习情况。"
WINDOW_EVERY = 20  # one member in this many has an open customer-service window
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def openid_of(member_id: int) -> str:
    return f"city-{member_id}"


# ---------------------------------------------------------------- the emulated WeChat API (child process)


def serve_emulator(port: int) -> None:
    from aiohttp import web

    from bot.clock import Clock
    from bot.wechat.emulated_api import EmulatedApi

    clock = Clock()
    api = EmulatedApi(app_id=DemoDefaults.app_id, app_secret=DemoDefaults.app_secret, clock=clock,
                      daily_quota=10_000_000)

    async def followers(request: web.Request) -> web.Response:
        """Members 1..count follow the account; every WINDOW_EVERY-th wrote an hour ago."""
        body = await request.json()
        an_hour_ago = clock.now() - timedelta(hours=1)
        for member_id in range(1, body["count"] + 1):
            api.user_event(openid_of(member_id), event="subscribe")
            if member_id % WINDOW_EVERY == 0:
                api.user_message(openid_of(member_id), at=an_hour_ago)
        return web.json_response({"followers": body["count"]})

    async def reset(request: web.Request) -> web.Response:
        api.records.clear()
        return web.json_response({})

    async def summary(request: web.Request) -> web.Response:
        sent = Counter(r.openid for r in api.records if r.errcode == 0 and r.kind in ("custom", "template"))
        kinds = Counter(r.kind for r in api.records if r.errcode == 0)
        errors = Counter(str(r.errcode) for r in api.records if r.errcode != 0)
        return web.json_response({"total": sum(sent.values()), "distinct": len(sent),
                                  "duplicates": sum(sent.values()) - len(sent), "by_kind": kinds, "errors": errors})

    app = web.Application()
    api.add_routes(app)
    app.router.add_post("/bench/followers", followers)
    app.router.add_post("/bench/reset", reset)
    app.router.add_get("/bench/summary", summary)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def emulator_call(api_base: str, method: str, path: str, body: dict | None = None) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{api_base}{path}", json=body) as response:
            return await response.json()


async def wait_for_emulator(api_base: str) -> None:
    for _ in range(200):
        try:
            await emulator_call(api_base, "GET", "/bench/summary")
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the emulator did not come up")


# ---------------------------------------------------------------- the city


async def build_city(url: str, members: int, branches: int, counties: int = 4, towns_per_county: int = 10) -> dict:
    """Organizations, members and bound followers, written in bulk; returns the scopes' tree paths."""
    import sqlalchemy as sa

    from storage.db import create_engine, is_sqlite, session_factory, upgrade_schema_async
    from storage.models import Member, Organization, WeChatIdentity

    await upgrade_schema_async(url)
    now = datetime.now(timezone.utc)
    orgs: list[dict] = []

    def add_org(name: str, org_type: str, parent: dict | None) -> dict:
        org_id = len(orgs) + 1
        org = {"id": org_id, "parent_id": parent["id"] if parent else None, "name": name, "org_type": org_type,
               "path": f"{parent['path']}/{name}" if parent else name,
               "tree_path": f"{parent['tree_path'] if parent else '/'}{org_id}/"}
        orgs.append(org)
        return org

    city = add_org("示范市委", "党委", None)
    towns = []
    for c in range(counties):
        county = add_org(f"第{c + 1}县委", "党委", city)
        towns += [add_org(f"第{c + 1}县第{t + 1}镇党委", "党委", county) for t in range(towns_per_county)]
    branch_rows = [add_org(f"第{b + 1}村党支部", "党支部", towns[b * len(towns) // branches])
                   for b in range(branches)]

    engine = create_engine(url)
    sessions = session_factory(engine)
    an_hour_ago = now - timedelta(hours=1)
    async with sessions() as session, session.begin():
        await session.execute(sa.insert(Organization.__table__), orgs)
        for start in range(0, members, 5000):
            ids = range(start + 1, min(members, start + 5000) + 1)
            await session.execute(sa.insert(Member.__table__), [
                {"id": i, "org_id": branch_rows[(i - 1) * branches // members]["id"], "name": f"党员{i}", "phone": "",
                 "role": "党员", "category": "正式党员", "hardship": False, "away_from_home": False,
                 "created_at": now, "updated_at": now} for i in ids])
            await session.execute(sa.insert(WeChatIdentity.__table__), [
                {"openid": openid_of(i), "member_id": i, "subscribed": True, "first_seen_at": now, "bound_at": now,
                 "last_message_at": an_hour_ago if i % WINDOW_EVERY == 0 else None, "window_sent": 0,
                 "failed_bind_attempts": 0} for i in ids])
        if not is_sqlite(url):
            for table in ("organization", "member"):
                await session.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                              f"(SELECT max(id) FROM {table}))"))
    await engine.dispose()
    return {"township": towns[0]["tree_path"], "county": orgs[1]["tree_path"], "city": city["tree_path"]}


def bench_settings(url: str, api_base: str, args) -> Settings:
    # Quiet hours off: the benchmark must not depend on the time of day it runs at.
    return Settings(_env_file=None, database_url=url, wechat_app_id=DemoDefaults.app_id,
                    wechat_app_secret=DemoDefaults.app_secret, wechat_api_base=api_base,
                    wechat_templates={"notice": TEMPLATE_ID}, outbox_rate=args.rate,
                    outbox_concurrency=args.concurrency, outbox_batch=args.batch, outbox_lease=args.lease,
                    outbox_batches_in_flight=args.batches,
                    outbox_recover_interval=1.0, outbox_poll_interval=0.2,
                    quiet_hours_start="00:00", quiet_hours_end="00:00")


def make_outbox(settings, sessions, http):
    from bot.clock import Clock
    from bot.outbox import Outbox
    from bot.wechat.client import WeChatClient
    from storage.tokens import TokenStore

    clock = Clock()
    client = WeChatClient(http=http, app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
                          api_base=settings.wechat_api_base, tokens=TokenStore(sessions, clock), max_attempts=1)
    return Outbox(sessions=sessions, client=client, clock=clock, settings=settings)


async def enqueue_notice(sessions, settings, tree_path: str, notice: str) -> int:
    from sqlalchemy import select

    from bot.outbox import enqueue_members
    from bot.summary import Summary
    from storage.models import Member, Organization

    audience = (select(Member.id).join(Organization, Organization.id == Member.org_id)
                .where(Organization.tree_path.startswith(tree_path)))
    async with sessions() as session, session.begin():
        return await enqueue_members(session, audience, key_prefix=notice, kind="notice", text=NOTICE_TEXT,
                                     ref=notice, urgent=False,
                                     summary=Summary(title="示范市委通知", content="学习新修订的农村基层组织工作条例"),
                                     now=datetime.now(timezone.utc), settings=settings)


# ---------------------------------------------------------------- one delivery (child process)


async def deliver(url: str, api_base: str, tree_path: str, notice: str, args) -> dict:
    import aiohttp

    from storage import outbox as store
    from storage.db import create_engine, session_factory

    settings = bench_settings(url, api_base, args)
    engine = create_engine(url)
    sessions = session_factory(engine)
    peak = [rss_mb()]
    started_rss = peak[0]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_mb())
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    began = time.perf_counter()
    recipients = await enqueue_notice(sessions, settings, tree_path, notice)
    enqueued = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        outbox = make_outbox(settings, sessions, http)
        await outbox.run_until_idle()
    finished = time.perf_counter()
    sampler.cancel()
    async with sessions() as session:
        counts = await store.status_counts(session, notice)
    await engine.dispose()
    return {"recipients": recipients, "enqueue_s": enqueued - began, "deliver_s": finished - enqueued,
            "rate": outbox.sent / (finished - enqueued), "sent": outbox.sent, "failed": outbox.failed,
            "retried": outbox.retried, "channels": dict(outbox.counters.by_channel), "counts": counts,
            "rss_start_mb": started_rss, "rss_peak_mb": max(peak[0], peak_rss_mb())}


# ---------------------------------------------------------------- the bare loop (child process)


async def bare_loop(api_base: str, count: int, concurrency: int) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api_base}/cgi-bin/stable_token",
                             json={"grant_type": "client_credential", "appid": DemoDefaults.app_id,
                                   "secret": DemoDefaults.app_secret}) as response:
            token = (await response.json())["access_token"]
        url = f"{api_base}/cgi-bin/message/template/send"
        cursor = iter(range(1, count + 1))
        failures = 0

        async def worker() -> None:
            nonlocal failures
            for member_id in cursor:
                body = {"touser": openid_of(member_id), "template_id": TEMPLATE_ID,
                        "data": {"title": {"value": "示范市委通知"}, "content": {"value": "学习新修订的农村基层组织工作条例"}}}
                async with http.post(url, params={"access_token": token},
                                     data=json.dumps(body, ensure_ascii=False).encode(),
                                     headers={"Content-Type": "application/json; charset=utf-8"}) as response:
                    if (await response.json(content_type=None)).get("errcode", 0) != 0:
                        failures += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {"count": count, "seconds": elapsed, "rate": count / elapsed, "failures": failures,
            "rss_peak_mb": peak_rss_mb()}


# ---------------------------------------------------------------- the engine for the kill test (child process)


async def run_engine(url: str, api_base: str, notice: str, args) -> dict:
    """Deliver in the background, as `zhibu serve` would, until the notice has no row pending or in flight."""
    import aiohttp

    from storage import outbox as store
    from storage.db import create_engine, session_factory

    settings = bench_settings(url, api_base, args)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with aiohttp.ClientSession() as http:
        outbox = make_outbox(settings, sessions, http)
        await outbox.start()
        while True:
            await asyncio.sleep(0.2)
            async with sessions() as session:
                counts = await store.status_counts(session, notice)
            if not counts.get("pending") and not counts.get("sending"):
                break
        await outbox.stop()
    await engine.dispose()
    return {"sent": outbox.sent, "recovered": outbox.recovered, "failed": outbox.failed}


# ---------------------------------------------------------------- the parent


def child(*arguments: str, args) -> subprocess.Popen:
    common = ["--rate", str(args.rate), "--concurrency", str(args.concurrency), "--batch", str(args.batch),
              "--batches", str(args.batches), "--lease", str(args.lease)]
    return subprocess.Popen([sys.executable, __file__, *arguments, *common], cwd=ROOT, stdout=subprocess.PIPE)


def result_of(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"child failed with {process.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def prepare(args, folder: str) -> tuple[str, subprocess.Popen, str, dict]:
    from storage.db import reset_postgres_schema

    url = args.database_url or f"sqlite+aiosqlite:///{folder}/city.db"
    if args.database_url and "postgresql" in args.database_url:
        await reset_postgres_schema(args.database_url)
    port = free_port()
    emulator = subprocess.Popen([sys.executable, __file__, "--serve-emulator", str(port)], cwd=ROOT)
    api_base = f"http://127.0.0.1:{port}"
    began = time.perf_counter()
    scopes = await build_city(url, args.members, args.branches)
    await wait_for_emulator(api_base)
    await emulator_call(api_base, "POST", "/bench/followers", {"count": args.members})
    print(f"Generated {args.members:,} members in {args.branches:,} branches (4 counties, 40 townships), all bound, "
          f"in {time.perf_counter() - began:.1f} s; database {'PostgreSQL' if 'postgresql' in url else 'SQLite'}.",
          flush=True)
    return url, emulator, api_base, scopes


async def throughput(args) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url, emulator, api_base, scopes = await prepare(args, folder)
        try:
            runs = []
            for number, scope in enumerate(("township", "county", "city"), start=1):
                await emulator_call(api_base, "POST", "/bench/reset")
                result = result_of(child("--deliver", url, api_base, scopes[scope], f"notice:{number}", args=args))
                result["emulator"] = await emulator_call(api_base, "GET", "/bench/summary")
                runs.append((scope, result))
                print(f"  {scope}: {result['recipients']:,} recipients, {result['rate']:,.0f} msgs/s", flush=True)
            await emulator_call(api_base, "POST", "/bench/reset")
            bare = result_of(child("--bare", api_base, str(runs[-1][1]["recipients"]), args=args))
        finally:
            emulator.terminate()
            emulator.wait()

    rate = "no limit" if args.rate <= 0 else f"{args.rate:g}/s"
    print(f"\nBroadcast through the outbox: {args.concurrency} requests in flight, batches of {args.batch}, "
          f"rate limit {rate}, {os.cpu_count()} cores\n")
    print("| audience | recipients | enqueue s | deliver s | msgs/s | custom / template | "
          "WeChat saw (distinct, dups) | RSS start MB | RSS peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scope, r in runs:
        channels = f"{r['channels'].get('custom', 0):,} / {r['channels'].get('template', 0):,}"
        seen = f"{r['emulator']['distinct']:,}, {r['emulator']['duplicates']}"
        print(f"| {scope} | {r['recipients']:,} | {r['enqueue_s']:.2f} | {r['deliver_s']:.1f} | {r['rate']:,.0f} | "
              f"{channels} | {seen} | {r['rss_start_mb']:.0f} | {r['rss_peak_mb']:.0f} |")
    city = runs[-1][1]
    print(f"\n| same {bare['count']:,} messages | msgs/s | peak RSS MB |")
    print("|---|---|---|")
    print(f"| bare aiohttp loop ({args.concurrency} in flight) | {bare['rate']:,.0f} | {bare['rss_peak_mb']:.0f} |")
    print(f"| outbox | {city['rate']:,.0f} | {city['rss_peak_mb']:.0f} |")
    print(f"\nOutbox / bare loop: {city['rate'] / bare['rate']:.0%}. "
          f"Goal: at least 1,000 msgs/s ({'met' if city['rate'] >= 1000 else 'NOT met'}) and at least 50% of the "
          f"bare loop ({'met' if city['rate'] >= bare['rate'] / 2 else 'NOT met'}).")


async def kill_test(args) -> None:
    from storage import outbox as store
    from storage.db import create_engine, session_factory

    with tempfile.TemporaryDirectory() as folder:
        url, emulator, api_base, scopes = await prepare(args, folder)
        engine = create_engine(url)
        sessions = session_factory(engine)
        try:
            notice = "notice:kill"
            recipients = await enqueue_notice(sessions, bench_settings(url, api_base, args), scopes["city"], notice)
            first = child("--engine", url, api_base, notice, args=args)
            target = recipients * args.kill_at
            while True:
                await asyncio.sleep(0.05)
                async with sessions() as session:
                    counts = await store.status_counts(session, notice)
                if counts.get("sent", 0) >= target or first.poll() is not None:
                    break
            first.send_signal(signal.SIGKILL)
            first.wait()
            async with sessions() as session:
                at_kill = await store.status_counts(session, notice)
            killed_summary = await emulator_call(api_base, "GET", "/bench/summary")
            print(f"SIGKILL after {at_kill.get('sent', 0):,} recorded as sent; {at_kill.get('sending', 0)} rows left "
                  f"SENDING; WeChat had accepted {killed_summary['total']:,}. Restarting (lease {args.lease:g} s)…",
                  flush=True)
            second = result_of(child("--engine", url, api_base, notice, args=args))
            async with sessions() as session:
                final = await store.status_counts(session, notice)
            seen = await emulator_call(api_base, "GET", "/bench/summary")
        finally:
            await engine.dispose()
            emulator.terminate()
            emulator.wait()

    everyone = seen["distinct"] == recipients and final.get("sent") == recipients
    print("\n| recipients | rows sent | members WeChat delivered to | deliveries | duplicates | "
          "in flight at the crash (engine's recovered count) |")
    print("|---|---|---|---|---|---|")
    print(f"| {recipients:,} | {final.get('sent', 0):,} | {seen['distinct']:,} | {seen['total']:,} | "
          f"{seen['duplicates']} | {second['recovered']} |")
    bounded = seen["duplicates"] <= second["recovered"]
    print(f"\nEvery member has the notice: {'yes' if everyone else 'NO'}. Duplicates ({seen['duplicates']}) ≤ "
          f"reported in-flight count ({second['recovered']}): {'yes' if bounded else 'NO'}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=70_000)
    parser.add_argument("--branches", type=int, default=1_673)
    parser.add_argument("--rate", type=float, default=0, help="outbox messages per second (0: no limit)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (outbox and bare loop)")
    parser.add_argument("--batch", type=int, default=500, help="rows per claim")
    parser.add_argument("--batches", type=int, default=4, help="batches in flight")
    parser.add_argument("--lease", type=float, default=5.0, help="seconds a claimed row is held (kill test)")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--kill-test", action="store_true")
    parser.add_argument("--kill-at", type=float, default=0.3, help="fraction sent before the SIGKILL")
    parser.add_argument("--serve-emulator", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--deliver", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--engine", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator:
        serve_emulator(args.serve_emulator)
    elif args.deliver:
        print(json.dumps(asyncio.run(deliver(*args.deliver, args))))
    elif args.bare:
        print(json.dumps(asyncio.run(bare_loop(args.bare[0], int(args.bare[1]), args.concurrency))))
    elif args.engine:
        print(json.dumps(asyncio.run(run_engine(*args.engine, args))))
    elif args.kill_test:
        asyncio.run(kill_test(args))
    else:
        asyncio.run(throughput(args))


if __name__ == "__main__":
    main()
