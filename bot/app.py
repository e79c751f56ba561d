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
from bot.wechat.client import WeChatClient
from bot.wechat.webhook import Webhook
from handlers import membership
from storage.db import create_engine, session_factory
from storage.tokens import TokenStore

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
CLIENT = web.AppKey("wechat_client", WeChatClient)


def feature_routers() -> list[Router]:
    """Every feature's router, in the order their handlers are tried."""
    return [membership.router]


def build_app(settings: Settings, *, clock: Clock | None = None, routers: list[Router] | None = None) -> web.Application:
    clock = clock or Clock()
    app = web.Application(client_max_size=settings.max_body_bytes)
    engine = create_engine(settings.effective_database_url)
    sessions = session_factory(engine)
    dispatcher = Dispatcher(routers if routers is not None else feature_routers(), sessions=sessions, clock=clock,
                            settings=settings)
    app[SETTINGS], app[ENGINE], app[SESSIONS], app[DISPATCHER] = settings, engine, sessions, dispatcher

    async def wechat_client(app: web.Application):
        async with aiohttp.ClientSession() as http:
            client = WeChatClient(http=http, app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
                                  api_base=settings.wechat_api_base, tokens=TokenStore(sessions, clock))
            app[CLIENT] = client
            dispatcher.pusher = client.send_text
            yield
            # Late replies still being handled go out before the client closes.
            await dispatcher.drain()

    async def orphan_recovery(app: web.Application):
        task = asyncio.create_task(_recover_orphans_forever(dispatcher, settings.claim_lease / 2))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close_engine(app: web.Application):
        yield
        await engine.dispose()

    app.cleanup_ctx.extend([close_engine, wechat_client, orphan_recovery])
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
