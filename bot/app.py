"""The composition root: builds the aiohttp application from storage, the features and the channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging

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
from handlers import meetings, membership, notices
from storage.db import create_engine, session_factory
from storage.tokens import TokenStore

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
CLIENT = web.AppKey("wechat_client", WeChatClient)
OUTBOX = web.AppKey("outbox", Outbox)


def feature_routers() -> list[Router]:
    """Every feature's router, in the order their handlers are tried."""
    # Meetings come before membership: a follow through a meeting's QR code is a check-in, not only a welcome.
    return [meetings.router, membership.router, notices.router]


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
    Webhook(settings, dispatcher, clock).add_routes(app)
    app.router.add_get("/healthz", healthz)
    return app


async def _recover_orphans_forever(dispatcher: Dispatcher, interval: float) -> None:
    while True:
        try:
            await dispatcher.recover_orphans()
        except Exception:
            log.exception("orphan recovery failed; will try again")
        await asyncio.sleep(interval)


async def healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[ENGINE].connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        log.error("health check: database unreachable: %s", error)
        return web.json_response({"status": "database unreachable"}, status=503)
    return web.json_response({"status": "ok"})
