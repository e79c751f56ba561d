"""Every background loop outlives a locked database: the outbox, the orphan recovery, the scheduler (its jobs
and its leadership) and the access token. On SQLite another connection holds the file's write lock
(`BEGIN EXCLUSIVE`, as a roster import in another process would, only longer) and the loops' transactions
give up after a shortened wait; on PostgreSQL another connection holds the tables' locks and the loops'
statements wait. Either way each loop keeps going and does its work once the lock is released. Failures the
database would cause on PostgreSQL too (connections refused, pools exhausted) are injected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import bot.outbox
import bot.scheduler as scheduler_module
import storage.db
from bot.clock import ManualClock
from bot.config import Settings
from bot.dispatch import Command, Router
from bot.messages import Kind, Message
from bot.outbox import Outgoing, enqueue
from bot.scheduler import JobScheduler, registered_jobs
from storage import inbound
from storage.db import is_sqlite, sqlite_file
from storage.models import Organization, OutboxMessage
from storage.tokens import TokenRefreshTimeout, TokenStore

FAST = dict(wechat_templates={"default": "TPL"}, outbox_backoff=1.0, outbox_poll_interval=0.05, outbox_rate=0)
# How long a transaction waits for the write lock in these tests (30 s in service).
LOCK_WAIT = 0.2


@pytest.fixture(autouse=True)
def short_lock_wait(monkeypatch):
    monkeypatch.setattr(storage.db, "SQLITE_LOCK_WAIT", LOCK_WAIT)


@contextlib.asynccontextmanager
async def locked(database_url: str, *tables: str):
    """The database locked by another connection until the block ends: on SQLite the whole file (every
    transaction of the service needs its write lock), on PostgreSQL the named tables."""
    if is_sqlite(database_url):
        holder = sqlite3.connect(sqlite_file(database_url), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE"))
            try:
                yield
            finally:
                await connection.rollback()
    finally:
        await engine.dispose()


def locked_error() -> sa_exc.OperationalError:
    """What SQLAlchemy raises when SQLite's lock stayed taken for longer than a transaction waits."""
    return sa_exc.OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def busy_lines(caplog, logger: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.name == logger and "database is locked" in record.getMessage()]


def assert_one_line_each(records: list[logging.LogRecord]) -> None:
    """A locked database is logged in one line per failed round, without a traceback."""
    assert records and not any(record.exc_info for record in records)
    assert all("\n" not in record.getMessage() for record in records)


# ---------------------------------------------------------------- the outbox


async def statuses(service) -> list[str]:
    async with service.sessions() as session:
        return list((await session.execute(select(OutboxMessage.status).order_by(OutboxMessage.id))).scalars())


async def test_the_outbox_loop_survives_a_locked_database_and_delivers_once_it_is_released(
        make_service, database_url, caplog, monkeypatch):
    monkeypatch.setattr(bot.outbox, "LOOP_BACKOFF_FIRST", 0.1)  # pauses of 0.1, 0.2, 0.4 … s
    service = await make_service(**FAST)
    member_id = await service.bind("o-zhang", "张三")
    async with service.sessions() as session, session.begin():
        await enqueue(session, [Outgoing(key="notice:1:1", kind="notice", text="周五开党员大会", member_id=member_id)],
                      now=service.clock.now(), settings=service.settings)

    with caplog.at_level(logging.INFO):
        async with locked(database_url, "outbox", "wechat_identity", "access_token"):
            # Starting (which recovers first) neither fails nor waits for the lock to go.
            starting = asyncio.create_task(service.outbox.start())
            await asyncio.sleep(1.2)
            assert service.pushed("o-zhang") == []
        await asyncio.wait_for(starting, 5)
        try:
            await until(lambda: _true(service.pushed("o-zhang") == ["周五开党员大会"]))
            await until(lambda: _equal(statuses(service), ["sent"]))
            runner = service.outbox._runner
            assert runner is not None and not runner.done()
        finally:
            await service.outbox.stop()

    if is_sqlite(database_url):
        lines = busy_lines(caplog, "bot.outbox")
        assert_one_line_each(lines)
        # The pause between failed rounds grows: a handful of lines, not one per poll (0.05 s).
        assert len(lines) <= 8
        assert any("works again" in record.getMessage() for record in caplog.records)


async def test_a_send_that_meets_a_locked_database_goes_back_to_the_queue_not_to_failed(make_service):
    service = await make_service(**FAST)
    member_id = await service.bind("o-li", "李四")
    async with service.sessions() as session, session.begin():
        await enqueue(session, [Outgoing(key="notice:2:1", kind="notice", text="通知", member_id=member_id)],
                      now=service.clock.now(), settings=service.settings)
    client = service.outbox.client
    original, calls = client.send_text, []

    async def send_text(openid, content):
        calls.append(openid)
        if len(calls) == 1:  # e.g. the access token's row could not be read
            raise locked_error()
        await original(openid, content)

    client.send_text = send_text
    await service.outbox.run_until_idle()
    # (On PostgreSQL the first pass may end while the released row is still locked by its record: SKIP LOCKED.)
    await service.outbox.run_until_idle()
    assert calls == ["o-li", "o-li"] and service.pushed("o-li") == ["通知"]
    async with service.sessions() as session:
        row = (await session.execute(select(OutboxMessage))).scalar_one()
    # Held back and sent on the next claim: the round that met the lock is neither a failure nor an attempt.
    assert row.status == "sent" and row.attempts == 1 and row.error is None


class FlakySessions:
    """A session factory whose first `failures` sessions cannot be had, as when the database is locked
    or unreachable; then the real one."""

    def __init__(self, sessions, failures: int) -> None:
        self.sessions = sessions
        self.failures = failures

    def _fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise locked_error()

    def __call__(self, *args, **kwargs):
        self._fail()
        return self.sessions(*args, **kwargs)

    def begin(self, *args, **kwargs):
        self._fail()
        return self.sessions.begin(*args, **kwargs)


async def test_the_outbox_loop_keeps_going_through_rounds_that_fail(make_service):
    service = await make_service(**FAST)
    member_id = await service.bind("o-wang", "王五")
    async with service.sessions() as session, session.begin():
        await enqueue(session, [Outgoing(key="notice:3:1", kind="notice", text="通知三", member_id=member_id)],
                      now=service.clock.now(), settings=service.settings)
    outbox = service.outbox
    outbox.sessions = FlakySessions(service.sessions, failures=3)
    await outbox.start()
    try:
        await until(lambda: _true(service.pushed("o-wang") == ["通知三"]))
        assert outbox.sessions.failures == 0 and not outbox._runner.done()
    finally:
        await outbox.stop()


# ---------------------------------------------------------------- orphan recovery


def noting_router(calls: list) -> Router:
    router = Router("noting")

    @router.on(Command("记一下"))
    async def note(session, message) -> str:
        calls.append(message.msg_id)
        return "已记下"

    return router


async def test_the_orphan_recovery_loop_survives_a_locked_database(make_service, database_url, caplog):
    calls: list = []
    # A short lease: the loop looks every lease / 2 = 0.2 s of real time.
    service = await make_service(routers=[noting_router(calls)], claim_lease=0.4, **FAST)
    await service.say("u1", "帮助")  # opens the customer-service window for the pushed reply
    message = Message(user_id="u1", kind=Kind.TEXT, created_at=service.clock.timestamp(), msg_id="9101",
                      text="记一下")
    await inbound.claim(service.sessions, dedup_key=message.dedup_key, openid="u1", kind="text",
                        payload=message.to_payload(), now=service.clock.now())

    with caplog.at_level(logging.INFO):
        async with locked(database_url, "inbound_message"):
            service.clock.advance(seconds=service.settings.claim_lease + 1)  # its process is now presumed dead
            await asyncio.sleep(1.0)
            assert calls == []
        await until(lambda: _true(calls == ["9101"]))

    # The handler ran; its reply is committed with the message's finish a moment later, then pushed.
    async def pushed() -> bool:
        await service.deliver()
        return service.pushed("u1") == ["已记下"]
    await until(pushed)

    if is_sqlite(database_url):
        assert_one_line_each(busy_lines(caplog, "bot.app"))


async def test_the_orphan_recovery_loop_keeps_going_when_a_round_raises(monkeypatch):
    from bot.app import _recover_orphans_forever

    rounds: list[str] = []

    class Dispatcher:
        async def recover_orphans(self) -> int:
            rounds.append("round")
            if len(rounds) <= 3:
                raise locked_error()
            return 0

    task = asyncio.create_task(_recover_orphans_forever(Dispatcher(), 0.05))
    try:
        await until(lambda: _true(len(rounds) >= 6), timeout=5)
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------- the scheduler


async def organization_count(sessions) -> int:
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(Organization))).scalar()


def writing_router(runs: list, **schedule) -> Router:
    router = Router("t")

    @router.job("write", description="写一笔", **schedule)
    async def write(ctx) -> None:
        runs.append("start")
        async with ctx.sessions() as session, session.begin():
            session.add(Organization(name=f"定时{len(runs)}", org_type="党支部", path=f"定时/{len(runs)}"))
        runs.append("done")

    return router


@contextlib.asynccontextmanager
async def scheduler_on(database_url: str, sessions, routers: list[Router]):
    settings = Settings(_env_file=None, database_url=database_url, scheduler_retry_interval=0.1, job_schedules={})
    scheduler = JobScheduler(settings=settings, sessions=sessions, clock=ManualClock(), jobs=registered_jobs(routers))
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()


async def test_a_job_that_meets_a_locked_database_is_tried_again_soon_and_the_scheduler_keeps_running(
        database_url, sessions, monkeypatch, caplog):
    monkeypatch.setattr(scheduler_module, "JOB_BUSY_RETRY_DELAYS", (0.3,) * 20)
    runs: list = []
    with caplog.at_level(logging.INFO):
        async with scheduler_on(database_url, sessions, [writing_router(runs, seconds=0.5)]) as scheduler:
            await until(lambda: _true(scheduler.is_leader))
            async with locked(database_url, "organization"):
                await until(lambda: _true("start" in runs))
                await asyncio.sleep(1.0)
                assert "done" not in runs
                # Leadership needs no write to the main database: it holds on.
                assert scheduler.is_leader
            # The run that met the lock finishes once it is released, and the job keeps its schedule.
            await until(lambda: _true(runs.count("done") >= 1))
            done = runs.count("done")
            await until(lambda: _true(runs.count("done") >= done + 2))
            assert scheduler.is_leader
    assert await organization_count(sessions) == runs.count("done")
    if is_sqlite(database_url):
        lines = [record for record in caplog.records
                 if record.name == "bot.scheduler" and "database is busy" in record.getMessage()]
        assert_one_line_each(lines)
        assert not any(record.name == "bot.scheduler" and record.levelno >= logging.ERROR for record in caplog.records)


async def test_the_leadership_loop_keeps_trying_while_its_lock_cannot_be_had(database_url, sessions, caplog):
    runs: list = []
    async with scheduler_on(database_url, sessions, [writing_router(runs, seconds=0.2)]) as scheduler:
        lock, attempts = scheduler._lock, []
        original = lock.acquire

        async def acquire() -> bool:
            attempts.append(1)
            if len(attempts) <= 3:
                raise locked_error()
            return await original()

        # Too late for the first attempt, which may already have won; step down and compete again.
        await until(lambda: _true(scheduler.is_leader))
        await scheduler._step_down()
        lock.acquire = acquire
        await until(lambda: _true(scheduler.is_leader))
        assert len(attempts) >= 4
        done = runs.count("done")
        await until(lambda: _true(runs.count("done") > done))
    failures = [record for record in caplog.records if "leadership step failed" in record.getMessage()]
    assert len(failures) == 3 and not any(record.exc_info for record in failures)


# ---------------------------------------------------------------- the access token


async def test_the_access_token_waits_out_a_locked_database(database_url, sessions):
    fetched: list[bool] = []

    async def fetch(force: bool) -> tuple[str, int]:
        fetched.append(force)
        return "TOKEN-1", 7200

    tokens = TokenStore(sessions, ManualClock(), poll_interval=0.05, wait_limit=5.0)
    async with locked(database_url, "access_token"):
        getting = asyncio.create_task(tokens.get("wx-app", fetch))
        await asyncio.sleep(0.8)
        assert not getting.done() and fetched == []
    assert await asyncio.wait_for(getting, 5) == "TOKEN-1"
    assert fetched == [False]


async def test_a_database_locked_past_the_wait_limit_is_a_transient_token_failure(database_url, sessions):
    if not is_sqlite(database_url):
        pytest.skip("PostgreSQL statements wait for a lock instead of failing")
    from bot.wechat.client import TokenUnavailable, WeChatClient

    async def fetch(force: bool) -> tuple[str, int]:
        return "TOKEN-2", 7200

    tokens = TokenStore(sessions, ManualClock(), poll_interval=0.05, wait_limit=0.5)
    async with locked(database_url, "access_token"):
        with pytest.raises(TokenRefreshTimeout):
            await tokens.get("wx-app", fetch)
        # What the client makes of it: a transient error, so the outbox sends the message again later.
        client = WeChatClient(http=None, app_id="wx-app", app_secret="s", api_base="http://127.0.0.1:9",
                              tokens=tokens)
        with pytest.raises(TokenUnavailable) as raised:
            await client._token(None)
        assert raised.value.transient
    assert await tokens.get("wx-app", fetch) == "TOKEN-2"


# ---------------------------------------------------------------- helpers for until()


async def _true(value: bool) -> bool:
    return value


async def _equal(awaitable, expected) -> bool:
    return await awaitable == expected


# ---------------------------------------------------------------- the webhook's path on the event loop


async def test_a_message_waits_out_a_locked_database_without_holding_up_the_event_loop(
        make_service, database_url, monkeypatch):
    """On SQLite a message's transactions run on the event loop (storage.sqlite_driver): waiting for the
    write lock that another process holds must sleep on the loop, not block it for everyone else."""
    monkeypatch.setattr(storage.db, "SQLITE_LOCK_WAIT", 10.0)
    service = await make_service()
    await service.bind("o-wang", "王秀英")
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with locked(database_url, "inbound_message", "signed_request", "wechat_identity"):
        ticker = asyncio.create_task(tick())
        asking = asyncio.create_task(service.say("o-wang", "我的"))
        await asyncio.sleep(1.0)
        assert not asking.done()
    try:
        assert (await asyncio.wait_for(asking, 10)).startswith("姓名：王秀英")
    finally:
        ticker.cancel()
    # The loop kept turning while the message waited a second for the lock (a blocked loop shows as one
    # gap of about a second; a loaded test machine shows tens of milliseconds).
    assert len(gaps) > 20 and max(gaps) < 0.3, max(gaps)
