"""The composition root: builds the aiohttp application from storage, the features and the channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.dispatch import Dispatcher, Router
from bot.outbox import Outbox
from bot.scheduler import SCHEDULER, scheduler_context
from bot.wechat.client import WeChatClient
from bot.wechat.webhook import Webhook
from content.search import IndexHolder, holder_for
from handlers import meetings, membership, notices, qa, smalltalk
from storage.db import READ_ONLY, RoundFailures, create_engine, session_factory
from storage.tokens import TokenStore

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
CLIENT = web.AppKey("wechat_client", WeChatClient)
OUTBOX = web.AppKey("outbox", Outbox)
CONTENT = web.AppKey("content", IndexHolder)
PID_FILE_NAME = "zhibu.pid"


def feature_routers() -> list[Router]:
    """Every feature's router, in the order their handlers are tried."""
    # Meetings come before membership: a follow through a meeting's QR code is a check-in, not only a welcome.
    # Among commands the longest word wins, and Q&A's text fallback runs only when nothing else took the text,
    # wherever they are listed; the follow above is the one case where the order still decides.
    return [meetings.router, membership.router, notices.router, smalltalk.router, qa.router]


def build_app(settings: Settings, *, clock: Clock | None = None, routers: list[Router] | None = None) -> web.Application:
    clock = clock or Clock()
    app = web.Application(client_max_size=settings.max_body_bytes)
    engine = create_engine(settings.effective_database_url)
    sessions = session_factory(engine)
    routers = routers if routers is not None else feature_routers()
    dispatcher = Dispatcher(routers, sessions=sessions, clock=clock, settings=settings)
    # Built here, not on startup, so a bad job schedule in configuration stops the process at once.
    jobs = scheduler_context(settings=settings, sessions=sessions, clock=clock, routers=routers)
    if jobs.scheduler is not None:
        app[SCHEDULER] = jobs.scheduler
    app[SETTINGS], app[ENGINE], app[SESSIONS], app[DISPATCHER] = settings, engine, sessions, dispatcher

    async def wechat_client(app: web.Application):
        async with aiohttp.ClientSession() as http:
            tokens = TokenStore(sessions, clock)
            client = WeChatClient(http=http, app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
                                  api_base=settings.wechat_api_base, tokens=tokens)
            app[CLIENT] = client
            dispatcher.channel = client
            # The outbox retries from its queue (durably, with backoff), so its client makes each call once.
            outbox_client = WeChatClient(http=http, app_id=settings.wechat_app_id,
                                         app_secret=settings.wechat_app_secret, api_base=settings.wechat_api_base,
                                         tokens=tokens, max_attempts=1)
            outbox = Outbox(sessions=sessions, client=outbox_client, clock=clock, settings=settings)
            app[OUTBOX] = outbox
            dispatcher.on_enqueued = outbox.wake
            if settings.outbox_enabled:
                await outbox.start()
            yield
            # Late replies still being handled go out before the client closes.
            await dispatcher.drain()
            await outbox.stop()

    async def orphan_recovery(app: web.Application):
        task = asyncio.create_task(_recover_orphans_forever(dispatcher, settings.claim_lease / 2))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close_engine(app: web.Application):
        yield
        await engine.dispose()

    # Started in this order and stopped in reverse: jobs stop before the client and the engine close.
    app.cleanup_ctx.extend([close_engine, wechat_client, orphan_recovery, jobs])
    if qa.router in routers:
        # First: invalid content stops the start before anything else runs.
        app.cleanup_ctx.insert(0, content_context(settings))
    Webhook(settings, dispatcher, clock).add_routes(app)
    app.router.add_get("/healthz", healthz)
    return app


def content_context(settings: Settings):
    """Load the Q&A content before serving (a ContentError refuses the start), then reload it whenever its
    files change (polling their modification times). A reload that fails keeps the last good index."""
    holder = holder_for(settings.content_dir)

    async def content_index(app: web.Application):
        if holder.changed() or holder.last_error is not None or not holder.loaded:
            await asyncio.to_thread(holder.load)
        app[CONTENT] = holder
        watcher = None
        if settings.content_poll_seconds > 0:
            watcher = asyncio.create_task(_watch_content(holder, settings.content_poll_seconds))
        yield
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    return content_index


async def _watch_content(holder: IndexHolder, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            if holder.changed():
                log.info("content files changed; reloading")
                await asyncio.to_thread(holder.reload)
        except Exception:
            log.exception("content watch failed; will look again")


def pid_file(settings: Settings) -> Path:
    return settings.data_dir / PID_FILE_NAME


def reload_on_signal(settings: Settings):
    """For `zhibu serve`: write the process id to ZHIBU_DATA_DIR/zhibu.pid and reload the content on
    SIGHUP (what `zhibu content reload` sends)."""
    path = pid_file(settings)
    holder = holder_for(settings.content_dir)

    async def signal_context(app: web.Application):
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Future] = set()

        def reload() -> None:
            log.info("SIGHUP: reloading content")
            future = asyncio.ensure_future(asyncio.to_thread(holder.reload))
            reloads.add(future)
            future.add_done_callback(reloads.discard)

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()}\n", encoding="utf-8")
        loop.add_signal_handler(signal.SIGHUP, reload)
        yield
        loop.remove_signal_handler(signal.SIGHUP)
        with contextlib.suppress(FileNotFoundError):
            if path.read_text(encoding="utf-8").strip() == str(os.getpid()):
                path.unlink()

    return signal_context


async def _recover_orphans_forever(dispatcher: Dispatcher, interval: float) -> None:
    """Look for messages a dead process left half-handled every interval. A round that fails (the database
    locked by an import, say) is logged in one line and tried again after a short pause, never longer than
    the interval; the loop ends only when cancelled."""
    failures = RoundFailures(log, "orphan recovery", first=min(0.5, interval), limit=interval)
    while True:
        try:
            await dispatcher.recover_orphans()
        except Exception as error:
            await asyncio.sleep(failures.failed(error))
            continue
        failures.succeeded()
        await asyncio.sleep(interval)


async def healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[ENGINE].connect() as connection:
            # A read that takes no write lock: the health check answers during an import too.
            connection = await connection.execution_options(**READ_ONLY)
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        log.error("health check: database unreachable: %s", error)
        return web.json_response({"status": "database unreachable"}, status=503)
    return web.json_response({"status": "ok"})
