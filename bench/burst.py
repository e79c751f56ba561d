"""A city checks in: 70,000 members sign in to their branches' 主题党日 within ten minutes, over the real webhook.

What a county would recognise: one city (市委), 8 counties (县委), 104 townships (镇党委), 1,400 village
branches (村党支部) of 50 members each; every branch holds its 主题党日 at the same hour and every member
checks in once, in the ten minutes around the start, the way they do it in chat: 55% type 签到 and the
meeting's code, 25% type 签到 alone, 20% tap the menu's 签到 button (a CLICK event). Arrivals follow a
morning peak: 15% spread evenly over the window, 85% in a normal peak around the meeting's start, narrow
enough that the busiest ten seconds run at ten times the window's mean rate.

WeChat's behaviour is played as it is: each request gets 5 seconds; without an answer by then the
connection is dropped and the same message (same MsgId, signed afresh) is sent again, 3 tries in all
(as bot/wechat/emulator.py). Besides those, 2% of messages lose their first answer on the way back and
are sent again 5 seconds after the first try, and 0.5% are delivered twice at once (the same request on
two connections). Time may be compressed (--speed): the window and the gaps between arrivals shrink, the
5-second timeout does not; the output says what the compression was.

The server is the real one (`zhibu init`, `zhibu serve`, with `--workers N` when N > 1), pushing through
its outbox to an emulated WeChat API in its own process (bot/wechat/emulated_api.py; every member's
customer-service window open), so a reply that outran the reply budget reaches the member as a push and
is counted. The load comes from an asyncio client in its own process, over keep-alive connections opened
as needed. The data is written directly: organizations through storage.orgs.ensure_path, members and
their bound followers in bulk (as bench/broadcast.py; save_member takes about 2.6 ms a member, three
minutes for the city), one meeting per branch through storage.meetings.add_meeting.

After the run, once the server has finished every message and its outbox is empty, the database is
checked: every member checked in exactly once, every message recorded once, no reply pushed twice or
pushed to a message that was answered in the HTTP response.

    python bench/burst.py [--members 70000] [--speed 4] [--workers N] [--database-url URL] [--safe]
    python bench/burst.py --members 5000            # a small city, for a quick check

--database-url: default a fresh SQLite file; a PostgreSQL database given here is wiped first
(createdb -h 127.0.0.1 -U postgres bench_burst; then --database-url
postgresql+asyncpg://postgres@127.0.0.1:5432/bench_burst).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import (  # noqa: E402
    CpuMeter,
    free_port,
    peak_rss_mb,
    postgres_cpu_seconds,
    server_env,
    start_zhibu,
    stop,
    supports_workers,
    wait_healthy,
    zhibu_init,
)
from bot.config import DemoDefaults  # noqa: E402

WINDOW = 600.0  # seconds: ten minutes, in real time
BACKGROUND_SHARE = 0.15  # arrivals spread evenly over the window; the rest come in the peak
PEAK_AT = 0.6  # the peak (the meeting's start) six minutes into the window
PEAK_RATIO = 10.0  # the peak's rate over the window's mean
PEAK_BIN = 10.0  # seconds (real time) over which the peak's rate is measured
TIMEOUT = 5.0  # WeChat's wait for an answer
ATTEMPTS = 3  # WeChat's tries in all (bot/wechat/emulator.py)
LOST_ANSWER_SHARE = 0.02  # messages whose first answer WeChat never gets: sent again after 5 s
COPY_SHARE = 0.005  # messages WeChat delivers twice at once
BRANCH_SIZE = 50
COUNTIES = 8
TOWNS_PER_COUNTY = 13
BRANCHES_PER_TOWN = 13.5
TOPIC = "重温入党誓词，学习二十届三中全会精神"


def openid_of(member_id: int) -> str:
    return f"city-{member_id}"


# ---------------------------------------------------------------- the emulated WeChat API (a child process)


def serve_api(port: int) -> None:
    from aiohttp import web

    from bot.clock import Clock
    from bot.wechat.emulated_api import EmulatedApi

    clock = Clock()
    api = EmulatedApi(app_id=DemoDefaults.app_id, app_secret=DemoDefaults.app_secret, clock=clock,
                      daily_quota=10_000_000)

    async def followers(request: web.Request) -> web.Response:
        """Members 1..count follow the account and wrote to it a minute ago (their window is open)."""
        body = await request.json()
        a_minute_ago = clock.now() - timedelta(minutes=1)
        for member_id in range(1, body["count"] + 1):
            api.user_message(openid_of(member_id), at=a_minute_ago)
        return web.json_response({"followers": body["count"]})

    async def pushes(request: web.Request) -> web.Response:
        sent = [[record.openid, record.at.timestamp(), record.kind,
                 (record.body.get("text") or {}).get("content", "")]
                for record in api.records if record.errcode == 0 and record.kind in ("custom", "template")]
        errors = Counter(str(record.errcode) for record in api.records if record.errcode != 0)
        return web.json_response({"sent": sent, "errors": errors})

    app = web.Application(client_max_size=2**24)
    api.add_routes(app)
    app.router.add_post("/bench/followers", followers)
    app.router.add_get("/bench/pushes", pushes)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def api_call(api_base: str, method: str, path: str, body: dict | None = None) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{api_base}{path}", json=body) as response:
            return await response.json()


async def wait_for_api(api_base: str) -> None:
    for _ in range(300):
        try:
            await api_call(api_base, "GET", "/bench/pushes")
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the emulated API did not come up")


# ---------------------------------------------------------------- the city


def city_shape(members: int) -> tuple[int, int, int]:
    """(counties, townships, branches) for this many members: 1,400 branches of 50 for 70,000, 13–14
    branches a township, 13 townships a county, at most 8 counties."""
    branches = max(1, math.ceil(members / BRANCH_SIZE))
    towns = max(1, round(branches / BRANCHES_PER_TOWN))
    counties = max(1, min(COUNTIES, math.ceil(towns / TOWNS_PER_COUNTY)))
    return counties, towns, branches


async def build_city(url: str, members: int, meeting_at: datetime) -> dict:
    """Organizations, members, bound followers and one 主题党日 per branch; the members' branches and
    their meetings' check-in codes."""
    import sqlalchemy as sa

    from storage.db import create_engine, is_sqlite, session_factory
    from storage.meetings import add_meeting
    from storage.models import Meeting, MeetingKind, Member, Role, WeChatIdentity
    from storage.orgs import ensure_path

    counties, towns, branches = city_shape(members)
    now = datetime.now(timezone.utc)
    engine = create_engine(url)
    sessions = session_factory(engine)
    branch_ids: list[int] = []
    async with sessions() as session, session.begin():
        for number in range(branches):
            town = number * towns // branches
            county = town * counties // towns
            path = (f"江川市委/第{county + 1}县委/第{county + 1}县第{town + 1}镇党委/"
                    f"第{town + 1}镇第{number + 1}村党支部")
            branch_ids.append((await ensure_path(session, path)).id)
    member_branch = [0] * (members + 1)  # member id → index of their branch
    async with sessions() as session, session.begin():
        for start in range(1, members + 1, 5000):
            ids = range(start, min(members, start + 4999) + 1)
            rows, followers = [], []
            for member_id in ids:
                branch = (member_id - 1) * branches // members
                member_branch[member_id] = branch
                first = member_id == 1 or member_branch[member_id - 1] != branch
                rows.append({"id": member_id, "org_id": branch_ids[branch], "name": f"党员{member_id}", "phone": "",
                             "role": (Role.SECRETARY if first else Role.MEMBER).value, "category": "正式党员",
                             "hardship": False, "away_from_home": False, "created_at": now, "updated_at": now})
                followers.append({"openid": openid_of(member_id), "member_id": member_id, "subscribed": True,
                                  "first_seen_at": now, "bound_at": now, "last_message_at": now - timedelta(minutes=1),
                                  "window_sent": 0, "failed_bind_attempts": 0})
            await session.execute(sa.insert(Member.__table__), rows)
            await session.execute(sa.insert(WeChatIdentity.__table__), followers)
        if not is_sqlite(url):
            await session.execute(sa.text("SELECT setval(pg_get_serial_sequence('member', 'id'), "
                                          "(SELECT max(id) FROM member))"))
    secretaries = {}
    for member_id in range(1, members + 1):
        secretaries.setdefault(member_branch[member_id], member_id)
    codes, meeting_ids = [], []
    async with sessions() as session, session.begin():
        for branch, org_id in enumerate(branch_ids):
            meeting = await add_meeting(session, Meeting(
                org_id=org_id, kind=MeetingKind.THEME_DAY.value, topic=TOPIC, place="村党群服务中心",
                starts_at=meeting_at, called_by=secretaries[branch], checkin_code="", created_at=now, updated_at=now))
            codes.append(meeting.checkin_code)
            meeting_ids.append(meeting.id)
    await engine.dispose()
    return {"counties": counties, "towns": towns, "branches": branches, "member_branch": member_branch,
            "codes": codes}


# ---------------------------------------------------------------- the arrivals


def arrivals(members: int, rng: random.Random) -> list[float]:
    """Each member's arrival in real seconds from the window's start: BACKGROUND_SHARE evenly, the rest in a
    normal peak whose height is PEAK_RATIO times the mean rate (sigma solved from that)."""
    peak_share = 1 - BACKGROUND_SHARE
    # rate at the peak = members * (BACKGROUND_SHARE / WINDOW + peak_share / (sigma * sqrt(2 pi))) = RATIO * members / WINDOW
    sigma = peak_share * WINDOW / ((PEAK_RATIO - BACKGROUND_SHARE) * math.sqrt(2 * math.pi))
    times = []
    for _ in range(members):
        if rng.random() < BACKGROUND_SHARE:
            times.append(rng.uniform(0, WINDOW))
        else:
            while not 0 <= (moment := rng.gauss(PEAK_AT * WINDOW, sigma)) <= WINDOW:
                pass
            times.append(moment)
    return times


def busiest(times: list[float], width: float) -> float:
    """The most arrivals in any bin of width seconds (bins from 0), per second."""
    bins = Counter(int(moment // width) for moment in times)
    return max(bins.values()) / width


def plan(city: dict, members: int, speed: float, seed: int) -> tuple[list[tuple], dict]:
    """The messages in the order they are sent: (at seconds from the start, openid, fields, copy, lost answer)."""
    rng = random.Random(seed)
    times = arrivals(members, rng)
    msg_id = int(time.time()) * 1000
    planned = []
    for member_id in range(1, members + 1):
        roll = rng.random()
        if roll < 0.55:
            fields = {"MsgType": "text", "Content": f"签到 {city['codes'][city['member_branch'][member_id]]}"}
        elif roll < 0.80:
            fields = {"MsgType": "text", "Content": "签到"}
        else:
            fields = {"MsgType": "event", "Event": "CLICK", "EventKey": "CHECKIN"}
        if fields["MsgType"] != "event":
            msg_id += 1
            fields["MsgId"] = msg_id
        planned.append((times[member_id - 1] / speed, openid_of(member_id), fields, rng.random() < COPY_SHARE,
                        rng.random() < LOST_ANSWER_SHARE))
    planned.sort(key=lambda item: item[0])
    shape = {"mean": members / WINDOW, "peak": busiest(times, PEAK_BIN),
             "typed_code": sum(1 for p in planned if p[2].get("Content", "").startswith("签到 ")),
             "typed": sum(1 for p in planned if p[2].get("Content") == "签到"),
             "tapped": sum(1 for p in planned if p[2]["MsgType"] == "event")}
    return planned, shape


# ---------------------------------------------------------------- the client (its own process)


class Connections:
    """Keep-alive connections to the server, opened as needed, at most limit in use."""

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)
        self.opened = 0
        self.most_in_use = 0
        self.in_use = 0

    async def exchange(self, raw: bytes, timeout: float) -> tuple[int, str]:
        """Send one request and read its answer within timeout; TimeoutError drops the connection."""
        async with self.slots:
            self.in_use += 1
            self.most_in_use = max(self.most_in_use, self.in_use)
            try:
                deadline = asyncio.get_running_loop().time() + timeout
                for fresh in (False, True):
                    reused = bool(self.idle) and not fresh
                    if reused:
                        connection = self.idle.pop()
                    else:
                        left = deadline - asyncio.get_running_loop().time()
                        connection = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), left)
                        self.opened += 1
                    try:
                        left = deadline - asyncio.get_running_loop().time()
                        status, body, keep = await asyncio.wait_for(self._one(connection, raw), max(left, 0.001))
                    except (ConnectionError, asyncio.IncompleteReadError) as error:
                        connection[1].close()
                        if reused:
                            continue  # the server closed an idle connection: try once on a new one
                        raise error
                    except BaseException:
                        connection[1].close()
                        raise
                    if keep:
                        self.idle.append(connection)
                    else:
                        connection[1].close()
                    return status, body
                raise ConnectionError("no connection")
            finally:
                self.in_use -= 1

    @staticmethod
    async def _one(connection, raw: bytes) -> tuple[int, str, bool]:
        reader, writer = connection
        writer.write(raw)
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, keep = 0, True
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        body = await reader.readexactly(length)
        return status, body.decode("utf-8", "replace"), keep


def client_process(port: int, planned: list[tuple], safe: bool, limit: int, pipe) -> None:
    started = time.process_time()
    result = asyncio.run(run_client(port, planned, safe, limit))
    result["client_cpu_s"] = time.process_time() - started
    pipe.send(result)
    pipe.close()


async def run_client(port: int, planned: list[tuple], safe: bool, limit: int) -> dict:
    from bot.wechat.emulator import Emulator, message_xml

    emulator = Emulator(app_id=DemoDefaults.app_id, app_secret=DemoDefaults.app_secret, token=DemoDefaults.token,
                        aes_key=DemoDefaults.aes_key if safe else "")
    connections = Connections(port, limit)
    loop = asyncio.get_running_loop()
    # Wall-clock times (time.time()) so that the emulated API's push times compare with them.
    offset = time.time() - loop.time()
    start = loop.time() + 0.5
    outcomes = Counter()
    messages = []
    lags = []

    def request(plaintext: str) -> bytes:
        query, body = emulator.sign(plaintext)
        payload = body.encode()
        return (f"POST /wechat?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: text/xml\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload

    async def attempt(raw: bytes, record: dict, what: str) -> str | None:
        """One HTTP try; the reply text shown (None: an empty answer), or raises on no answer."""
        record["requests"] += 1
        try:
            status, body = await connections.exchange(raw, TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            outcomes[f"{what}: no answer in 5 s"] += 1
            raise
        except OSError as error:
            outcomes[f"{what}: {type(error).__name__}"] += 1
            raise
        if status >= 500:  # WeChat tries again, as after a timeout
            outcomes[f"{what}: HTTP {status}"] += 1
            raise ConnectionError(status)
        if status != 200:  # a refusal: WeChat shows nothing and does not try again
            outcomes[f"{what}: HTTP {status}"] += 1
            return None
        text = emulator.read_reply(status, body)
        outcomes[f"{what}: {'reply' if text else 'empty (success)'}"] += 1
        return text

    async def deliver(index: int, at: float, openid: str, fields: dict, copy: bool, lost: bool) -> None:
        scheduled = start + at
        lags.append(loop.time() - scheduled)
        created = int(scheduled + offset)
        plaintext = message_xml({"ToUserName": "gh_bench", "FromUserName": openid, "CreateTime": created, **fields})
        record = {"openid": openid, "scheduled": scheduled + offset, "requests": 0, "replies": [], "tries": 0}
        messages.append(record)
        copy_task = None
        for number in range(ATTEMPTS):
            record["tries"] = number + 1
            tried_at = loop.time()
            raw = request(plaintext)
            what = "first try" if number == 0 else "retry"
            if number == 0 and copy:
                copy_task = asyncio.ensure_future(attempt(raw, record, "copy (delivered twice)"))
            try:
                text = await attempt(raw, record, what)
            except Exception:
                continue  # WeChat tries again at once after dropping the connection
            if number == 0 and lost:
                # The answer is lost on its way back to WeChat: it tries again when its 5 s are up.
                outcomes["answers lost on the way back (sent again)"] += 1
                record["lost"] = True
                await asyncio.sleep(max(0.0, tried_at + TIMEOUT - loop.time()))
                continue
            if text:
                record["replies"].append((loop.time() + offset, text))
            break
        if copy_task is not None:
            try:
                text = await copy_task
                if text:
                    record["copy_reply"] = text
            except Exception:
                pass

    tasks = set()
    for index, (at, openid, fields, copy, lost) in enumerate(planned):
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(deliver(index, at, openid, fields, copy, lost))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    last_sent = loop.time()
    while tasks:
        await asyncio.gather(*list(tasks), return_exceptions=True)
    finished = loop.time()
    lags.sort()
    return {"messages": messages, "outcomes": dict(outcomes), "started": start + offset,
            "last_scheduled": last_sent + offset, "finished": finished + offset,
            "connections_opened": connections.opened, "most_in_use": connections.most_in_use,
            "lag_p99": lags[int(len(lags) * 0.99) - 1] if lags else 0.0, "lag_max": lags[-1] if lags else 0.0}


async def client_in_own_process(port: int, planned: list[tuple], safe: bool, limit: int) -> dict:
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    client = context.Process(target=client_process, args=(port, planned, safe, limit, sending))
    client.start()
    sending.close()
    result = await asyncio.to_thread(receiving.recv)
    await asyncio.to_thread(client.join)
    return result


# ---------------------------------------------------------------- after the run: the database's word


async def wait_until_settled(url: str, seconds: float) -> float:
    """Wait until no message is being handled and no reply is waiting in the outbox; seconds waited."""
    import sqlalchemy as sa

    from storage.db import create_engine

    engine = create_engine(url)
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < seconds:
            async with engine.connect() as connection:
                busy = (await connection.execute(sa.text(
                    "SELECT (SELECT count(*) FROM inbound_message WHERE status = 'processing') + "
                    "(SELECT count(*) FROM outbox WHERE kind = 'reply' AND status IN ('pending', 'sending'))"))).scalar()
            if not busy:
                return time.perf_counter() - began
            waited = time.perf_counter() - began
            if int(waited) % 30 == 0:
                print(f"  {waited:.0f} s after the last answer: {busy:,} messages or replies still in hand …",
                      file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)
        return time.perf_counter() - began
    finally:
        await engine.dispose()


async def database_checks(url: str, members: int) -> dict:
    import sqlalchemy as sa

    from storage.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            async def rows(sql: str) -> list:
                return list((await connection.execute(sa.text(sql))).all())

            per_member = dict(await rows("SELECT member_id, count(*) FROM attendance GROUP BY member_id"))
            checked_openids = {openid for (openid,) in await rows(
                "SELECT DISTINCT w.openid FROM attendance a JOIN wechat_identity w ON w.member_id = a.member_id")}
            inbound = await rows("SELECT id, openid, status, reply_mode FROM inbound_message")
            replies = await rows("SELECT idempotency_key, status, openid FROM outbox WHERE kind = 'reply'")
            other_outbox = dict(await rows("SELECT kind, count(*) FROM outbox WHERE kind <> 'reply' GROUP BY kind"))
    finally:
        await engine.dispose()
    inbound_per_openid = Counter(openid for _, openid, _, _ in inbound)
    reply_mode = {message_id: mode for message_id, _, _, mode in inbound}
    rows_per_message = Counter(int(key.split(":")[1]) for key, _, _ in replies)
    return {
        "checked_once": sum(1 for count in per_member.values() if count == 1),
        "checked_twice": sum(1 for count in per_member.values() if count > 1),
        "not_checked": members - len(per_member),
        "inbound": len(inbound),
        "inbound_once": sum(1 for count in inbound_per_openid.values() if count == 1),
        "inbound_more": sum(1 for count in inbound_per_openid.values() if count > 1),
        "inbound_status": Counter(status for _, _, status, _ in inbound),
        "pushed_mode": sum(1 for _, _, _, mode in inbound if mode == "push"),
        "reply_rows": len(replies),
        "reply_status": Counter(status for _, status, _ in replies),
        "messages_with_several_reply_rows": sum(1 for count in rows_per_message.values() if count > 1),
        "reply_rows_of_passive": sum(1 for message_id in rows_per_message if reply_mode.get(message_id) != "push"),
        "pushed_openids": {openid for _, status, openid in replies},
        "other_outbox": other_outbox,
        "checked_openids": checked_openids,
    }


# ---------------------------------------------------------------- the run


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * share) - 1))] if ordered else float("nan")


def classify(text: str) -> str:
    if text.startswith("签到成功"):
        return "签到成功"
    if text.startswith("您已于"):
        return "已签到 (already)"
    return text[:30]


async def main(args) -> None:
    engine_name = "PostgreSQL" if args.database_url and "postgresql" in args.database_url else "SQLite"
    if args.workers > 1 and not supports_workers():
        sys.exit("zhibu serve has no --workers option in this checkout yet; run with --workers 1")
    folder = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    api_port, port = free_port(), free_port()
    api_base = f"http://127.0.0.1:{api_port}"
    api = multiprocessing.get_context("spawn").Process(target=serve_api, args=(api_port,), daemon=True)
    server = None
    try:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/burst.db"
        if engine_name == "PostgreSQL":
            from storage.db import reset_postgres_schema

            await reset_postgres_schema(url)
        env = server_env(url, folder, api_base=api_base, safe=args.safe,
                         extra={"ZHIBU_QUIET_HOURS_START": "00:00", "ZHIBU_QUIET_HOURS_END": "00:00"})
        zhibu_init(env, folder)
        seeding = time.perf_counter()
        # The meetings start at the peak; the window (30 minutes before to 60 after) holds every check-in.
        meeting_at = datetime.now(timezone.utc) + timedelta(seconds=60 + PEAK_AT * WINDOW / args.speed)
        city = await build_city(url, args.members, meeting_at.replace(microsecond=0))
        planned, shape = plan(city, args.members, args.speed, args.seed)
        seeded = time.perf_counter() - seeding
        print(f"  city written in {seeded:.0f} s; starting the server …", file=sys.stderr, flush=True)
        api.start()
        await wait_for_api(api_base)
        await api_call(api_base, "POST", "/bench/followers", {"count": args.members})
        server = start_zhibu(port, env, folder, workers=args.workers)
        await wait_healthy(port, server)
        await asyncio.sleep(2)  # let start-up work (the scheduler's first look, the outbox) settle
        meter = CpuMeter(server.pid)
        meter.start()
        database_cpu = postgres_cpu_seconds()
        print(f"  sending {len(planned):,} check-ins over {WINDOW / args.speed:.0f} s …", file=sys.stderr, flush=True)
        client = await client_in_own_process(port, planned, args.safe, args.connections)
        settled = await wait_until_settled(url, args.settle)
        cpu = meter.read()
        database_cpu = postgres_cpu_seconds() - database_cpu if engine_name == "PostgreSQL" else None
        peaks = peak_rss_mb(server.pid)
        pushes = await api_call(api_base, "GET", "/bench/pushes")
    finally:
        if server is not None:
            stop(server)
        if api.is_alive():
            api.terminate()
            api.join()
    try:
        checks = await database_checks(url, args.members)
        log_text = (folder / "server.log").read_text(encoding="utf-8", errors="replace")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(args, engine_name, city, shape, seeded, client, settled, (cpu, database_cpu), peaks, pushes, checks,
           log_text)


def report(args, engine_name, city, shape, seeded, client, settled, cpus, peaks, pushes, checks, log_text) -> None:
    cpu, database_cpu = cpus
    messages = client["messages"]
    distinct = len(messages)
    requests = sum(record["requests"] for record in messages)
    outcomes = Counter(client["outcomes"])
    push_times: dict[str, list[float]] = {}
    push_texts: dict[str, list[str]] = {}
    for openid, at, _kind, text in pushes["sent"]:
        push_times.setdefault(openid, []).append(at)
        push_texts.setdefault(openid, []).append(text)
    latencies, kinds = [], Counter()
    no_reply = both = 0
    never_told: set[str] = set()
    checked_openids = checks["checked_openids"]
    for record in messages:
        seen = [at for at, _ in record["replies"]] + push_times.get(record["openid"], [])
        texts = [text for _, text in record["replies"]] + push_texts.get(record["openid"], [])
        if record["replies"] and record["openid"] in push_times:
            both += 1
        if not seen:
            no_reply += 1
            never_told.add(record["openid"])
            continue
        latencies.append(min(seen) - record["scheduled"])
        kinds[classify(texts[0])] += 1
    latencies.sort()
    elapsed = client["finished"] - client["started"]
    late = sum(1 for value in latencies if value > TIMEOUT)
    # A message whose first answer was lost is answered on WeChat's retry, 5 s on: late by construction.
    late_lost = sum(1 for record in messages if record.get("lost") and record["replies"]
                    and record["replies"][0][0] - record["scheduled"] > TIMEOUT)
    pushes_per_member = Counter(openid for openid, *_ in pushes["sent"])
    several_pushes = sum(1 for count in pushes_per_member.values() if count > 1)
    retries = sum(max(0, record["tries"] - 1) for record in messages)
    copies = sum(value for key, value in outcomes.items() if key.startswith("copy"))
    workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    served = "`zhibu serve" + (f" --workers {args.workers}`" if args.workers > 1 else "`")

    print(f"\nBurst: {args.members:,} members check in to their branch's 主题党日 within ten minutes "
          f"({engine_name}, {workers} — {served}, {'safe mode' if args.safe else 'plaintext'}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')})\n")
    print(f"City: 1 市委, {city['counties']} 县委, {city['towns']} 镇党委, {city['branches']:,} 村党支部 "
          f"(~{args.members / city['branches']:.0f} members each), written in {seeded:.0f} s. "
          f"Check-ins: {shape['typed_code']:,} 签到 + code, {shape['typed']:,} 签到 alone, "
          f"{shape['tapped']:,} menu taps.")
    print(f"Time compressed {args.speed:g}×: the 10-minute window played in {WINDOW / args.speed:.0f} s. Real rates: "
          f"mean {shape['mean']:.0f}/s, peak {shape['peak']:.0f}/s (busiest {PEAK_BIN:.0f} s, "
          f"{shape['peak'] / shape['mean']:.1f}× the mean); as played: mean {shape['mean'] * args.speed:,.0f}/s, "
          f"peak {shape['peak'] * args.speed:,.0f}/s. WeChat's 5-second timeout is not compressed.")
    print(f"Pushes go to an emulated WeChat API in its own process. Load client: its own process, "
          f"{client['connections_opened']:,} connections opened, at most {client['most_in_use']:,} in use at once, "
          f"{client['client_cpu_s']:.0f} s of its CPU; it sent each message p99 {client['lag_p99'] * 1000:.0f} ms "
          f"(worst {client['lag_max'] * 1000:.0f} ms) after its scheduled time.\n")
    rows = [
        ("messages sent (HTTP requests)", f"{requests:,}"),
        ("distinct messages", f"{distinct:,}"),
        ("… of which delivered twice at once (copies)", f"{copies:,}"),
        ("… sent again: answer lost on the way back (2%)", f"{outcomes['answers lost on the way back (sent again)']:,}"),
        ("… sent again: retries after a timeout or error", f"{retries - outcomes['answers lost on the way back (sent again)']:,}"),
        ("throughput (distinct messages, first send until the server had finished them all)",
         f"{distinct / (elapsed + settled):,.0f}/s over {elapsed + settled:.0f} s"),
        ("reply p50 / p99 (scheduled send → the reply the member sees, passive or pushed)",
         f"{percentile(latencies, 0.5) * 1000:,.0f} / {percentile(latencies, 0.99) * 1000:,.0f} ms"),
        ("slowest reply", f"{latencies[-1]:.1f} s" if latencies else "–"),
        ("replies past the 5 s budget", f"{late:,} ({late / max(distinct, 1):.1%}); {late - late_lost:,} "
                                        f"({(late - late_lost) / max(distinct, 1):.1%}) besides the {late_lost:,} "
                                        "whose first answer was lost"),
        ("replies the members saw", ", ".join(f"{kind} {count:,}" for kind, count in kinds.most_common(5))),
        ("HTTP answers", "; ".join(f"{key} {value:,}" for key, value in sorted(outcomes.items())
                                   if not key.startswith("answers lost"))),
        ("server CPU per distinct message (all its processes)", f"{cpu / max(distinct, 1) * 1e6:,.0f} µs ({cpu:.0f} s of CPU; "
                                            f"{cpu / max(requests, 1) * 1e6:,.0f} µs per request)"
         + ("" if database_cpu is None else f"; PostgreSQL besides: {database_cpu / max(distinct, 1) * 1e6:,.0f} µs "
                                            f"({database_cpu:.0f} s)")),
        ("server peak RSS", " + ".join(f"{peak:.0f}" for peak in peaks) + " MB"
                            + (f" = {sum(peaks):.0f} MB" if len(peaks) > 1 else "")),
        ("time after the last HTTP answer until the server had finished everything",
         f"{settled:.0f} s" + (" (gave up waiting: see the checks)" if settled >= args.settle else "")),
    ]
    statuses = checks["inbound_status"]
    ok = lambda good: "✓" if good else "**✗**"  # noqa: E731
    check_rows = [
        ("CHECK every member checked in exactly once (attendance rows per member)",
         f"{checks['checked_once']:,} of {args.members:,} {ok(checks['checked_once'] == args.members)} "
         f"(none: {checks['not_checked']:,}, more than one: {checks['checked_twice']:,})"),
        ("CHECK every message recorded once (inbound rows per member)",
         f"{checks['inbound_once']:,} of {distinct:,} {ok(checks['inbound_once'] == distinct and not checks['inbound_more'])} "
         f"({checks['inbound']:,} rows; more than one: {checks['inbound_more']:,}; "
         + ", ".join(f"{status} {count:,}" for status, count in sorted(statuses.items())) + ")"),
        ("CHECK no duplicate replies pushed (outbox rows of kind reply per inbound message)",
         f"{ok(not checks['messages_with_several_reply_rows'] and not checks['reply_rows_of_passive'])} "
         f"{checks['reply_rows']:,} reply rows for {checks['pushed_mode']:,} messages answered by push; "
         f"messages with more than one: {checks['messages_with_several_reply_rows']:,}; rows for a message answered "
         f"in the HTTP response: {checks['reply_rows_of_passive']:,}"
         + "".join(f"; {status} {count:,}" for status, count in sorted(checks["reply_status"].items()))),
        ("CHECK every member was told (a reply in an HTTP answer WeChat received, or a push)",
         f"{distinct - no_reply:,} of {distinct:,} {ok(not no_reply)} (never told: {no_reply:,}, of whom checked in: "
         f"{len(never_told & checked_openids):,})"),
        ("CHECK no member got the reply twice (HTTP answer and push, or two pushes)",
         f"{ok(not both and not several_pushes)} answered and pushed: {both:,}; pushed more than once: "
         f"{several_pushes:,}"),
    ]
    print("| figure | value |")
    print("|---|---|")
    for name, value in rows + check_rows:
        print(f"| {name} | {value} |")
    if pushes["errors"]:
        print(f"\nThe emulated API refused pushes: {pushes['errors']}")
    if checks["other_outbox"]:
        print(f"Other outbox rows: {checks['other_outbox']}")
    problems = Counter()
    for line in log_text.splitlines():
        found = re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)", line)
        if found:
            problems[f"{found.group(1)} {found.group(2)}: {re.sub(r'[0-9a-f]{8,}|[0-9]+', 'N', found.group(3))[:120]}"] += 1
    budget = len(re.findall(r"reply budget exceeded", log_text))
    print(f"\nServer log: {budget:,} 'reply budget exceeded'; "
          f"{log_text.count('Traceback (most recent call last)'):,} tracebacks; warnings and errors:"
          + ("" if problems else " none"))
    for line, count in problems.most_common(8):
        print(f"- {count:,} × {line}")
    # The last lines of each kind of traceback (its cause), so a failure can be read without the log.
    endings = Counter()
    for block in log_text.split("Traceback (most recent call last):")[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        frames = [line.strip() for line in lines if line.lstrip().startswith("File ")]
        ending = next((line for line in lines if re.match(r"\w[\w.]*(Error|Exception|Exit)\b", line)), "?")
        endings[f"{frames[-1] if frames else '?'} → {ending[:200]}"] += 1
    for ending, count in endings.most_common(5):
        print(f"- traceback ×{count:,}: {ending}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=70_000)
    parser.add_argument("--speed", type=float, default=4.0,
                        help="Time compression: the 10-minute window is played in 600/speed seconds.")
    parser.add_argument("--workers", type=int, default=1, help="Passed to the server as zhibu serve --workers N.")
    parser.add_argument("--database-url", default=None, help="Default: a fresh SQLite file. PostgreSQL is reset!")
    parser.add_argument("--safe", action="store_true", help="Safe mode (AES): the client encrypts, the server decrypts.")
    parser.add_argument("--connections", type=int, default=10_000, help="Most connections the client keeps in use.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle", type=float, default=1800,
                        help="Longest wait, after the last answer, for the server to finish every message.")
    asyncio.run(main(parser.parse_args()))
