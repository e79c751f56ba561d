"""The composition root: builds the aiohttp application from storage, the features and the channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Configs, Settings
from bot.keys import CLIENT, CONFIGS, PROVIDED
from bot.dispatch import REPLY_PAGE, Dispatcher, Router, Runtime
from bot.outbox import Outbox
from bot.scheduler import SCHEDULER, scheduler_context
from bot.speech.audio import tools_missing
from bot.speech.choose import recognizer_from_settings
from bot.speech.listen import Listener, dictionary_terms, hotwords_from
from bot.wechat.client import WeChatClient
from bot.web.links import Links, Subject, link_keys
from bot.web.pages import OUTBOX_WAKE, PageSpec, reply_page, setup_pages
from bot.wechat.webhook import WEBHOOK_PATH, Webhook
from content.loader import DEFAULT_ROOT
from handlers import care, console, meetings, membership, notices, qa, smalltalk, study
from storage.db import READ_ONLY, RoundFailures, checkpoint_forever, create_engine, session_factory, sqlite_file
from storage.tokens import TokenStore

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
OUTBOX = web.AppKey("outbox", Outbox)
RELOADERS = web.AppKey("reloaders", list)
# (ref, member id, openid) → the address of the member page for that outbox row, or None.
LINK_FOR = web.AppKey("link_for", object)
PID_FILE_NAME = "zhibu.pid"
# PostgreSQL's connections for claiming messages and recording signed requests (Dispatcher.intake; SQLite shares
# its one connection): two, so that a batch waiting for row locks does not hold up the next.
INTAKE_POOL_SIZE = 2


def feature_routers() -> list[Router]:
    """Every feature's router. The order is what 帮助 lists first, the order in which features add to a
    reply (what a newly bound member is told, Context.announce) and the order start-up hooks run in;
    which handler takes a message does not depend on it (the longest command wins, declined messages
    pass on, the text fallback runs only when nothing else took the text, and membership's welcome
    leaves a follow through a meeting's QR code to meetings). tests/handlers/test_router_order.py
    checks this."""
    return [meetings.router, membership.router, notices.router, care.router, study.router, smalltalk.router, qa.router,
            console.router]


def build_app(settings: Settings, *, clock: Clock | None = None, routers: list[Router] | None = None,
              overrides: dict[str, Any] | None = None, env_file: str | Path | None = ".env") -> web.Application:
    """The service: the webhook, every feature's handlers, jobs, pages and hooks, the outbox.
    `overrides` sets features' settings by name (tests); `env_file` is where they are read besides the
    environment."""
    clock = clock or Clock()
    app = web.Application(client_max_size=settings.max_body_bytes)
    database_file = sqlite_file(settings.effective_database_url)
    # SQLite's checkpoints run in a thread of their own, never in a message's commit on the loop (storage.db).
    engine = create_engine(settings.effective_database_url, pool_size=settings.database_pool_size,
                           checkpoints_elsewhere=database_file is not None)
    sessions = session_factory(engine)
    # Claims and signed-request records get connections of their own on PostgreSQL (Dispatcher's intake). Not on
    # SQLite: a second connection there finds its page cache stale after every write of the other and reads the
    # pages again (the webhook's CPU per message 700 -> 1,140 µs, bench/webhook.py); one writer at a time anyway,
    # and the handling slots keep the single connection's queue short, so a claim waits for one handling at most.
    intake_engine = engine if database_file is not None else create_engine(
        settings.effective_database_url, pool_size=INTAKE_POOL_SIZE)
    routers = routers if routers is not None else feature_routers()
    configs = Configs(settings, overrides, env_file)
    # Every feature's settings are read now: a bad value stops the process before anything starts.
    configs.check(router.settings for router in routers)
    provided: dict[str, Any] = {}
    reloaders: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
    dispatcher = Dispatcher(routers, sessions=sessions, clock=clock, settings=settings, configs=configs,
                            provided=provided, intake=session_factory(intake_engine))
    # Built here, not on startup, so a bad job schedule in configuration stops the process at once.
    jobs = scheduler_context(settings=settings, sessions=sessions, clock=clock, routers=routers, configs=configs,
                             provided=provided)
    if jobs.scheduler is not None:
        app[SCHEDULER] = jobs.scheduler
    app[SETTINGS], app[ENGINE], app[SESSIONS], app[DISPATCHER] = settings, engine, sessions, dispatcher
    app[CONFIGS], app[PROVIDED], app[RELOADERS] = configs, provided, reloaders

    async def wechat_client(app: web.Application):
        async with aiohttp.ClientSession() as http:
            tokens = TokenStore(sessions, clock)
            client = WeChatClient(http=http, app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
                                  api_base=settings.wechat_api_base, tokens=tokens)
            app[CLIENT] = client
            dispatcher.channel = client
            dispatcher.listener = voice_listener(settings, http, client, dispatcher)
            # The outbox retries from its queue (durably, with backoff), so its client makes each call once.
            outbox_client = WeChatClient(http=http, app_id=settings.wechat_app_id,
                                         app_secret=settings.wechat_app_secret, api_base=settings.wechat_api_base,
                                         tokens=tokens, max_attempts=1)
            outbox = Outbox(sessions=sessions, client=outbox_client, clock=clock, settings=settings,
                            link_for=app[LINK_FOR])
            app[OUTBOX] = outbox
            dispatcher.on_enqueued = app[OUTBOX_WAKE] = outbox.wake
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
        checkpoints = asyncio.create_task(checkpoint_forever(database_file)) if database_file is not None else None
        yield
        if checkpoints is not None:
            checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoints
        await engine.dispose()
        if intake_engine is not engine:
            await intake_engine.dispose()

    # Started in this order and stopped in reverse. The features' hooks start before anything is served or
    # sent (invalid Q&A content refuses the start), and jobs stop before the client and the engine close.
    feature_hooks = [_feature_hook(hook, Runtime(configs.of(router.settings), sessions, clock, provided, reloaders))
                     for router in routers for hook in router.hooks]
    app.cleanup_ctx.extend([close_engine, *feature_hooks, wechat_client, orphan_recovery, jobs])
    Webhook(settings, dispatcher, clock).add_routes(app)
    app.router.add_get("/healthz", healthz)
    for router in routers:
        app.router.add_routes(router.web)
    pages = _member_pages(routers)
    links = Links(link_keys(settings.link_keys, settings.data_dir), public_url=settings.effective_public_url,
                  days=settings.link_days, clock=clock)
    setup_pages(app, pages=pages, template_dirs=[r.templates for r in routers if r.templates is not None],
                sessions=sessions, clock=clock, configs=configs, links=links, machine_paths=[WEBHOOK_PATH, "/healthz"])
    app[LINK_FOR] = dispatcher.link_for = _link_maker(links, pages)
    return app


def voice_listener(settings: Settings, http: aiohttp.ClientSession, client: WeChatClient,
                   dispatcher: Dispatcher) -> Listener:
    """What hears voice messages: the configured engine (none: the member is told to type), the audio fetched
    through the client, and the command words and the content's domain terms as hot words."""
    recognizer = recognizer_from_settings(settings, http)
    if recognizer is not None and (missing := tools_missing()):
        log.error("ZHIBU_SPEECH_ENGINE=%s, but %s is not installed: voice messages cannot be converted "
                  "(apt-get install sox libsox-fmt-base ffmpeg)", settings.speech_engine, "、".join(missing))
    terms = dictionary_terms((settings.content_dir or DEFAULT_ROOT) / "dictionary.txt")
    return Listener(recognizer=recognizer, fetch=client.download_media, min_confidence=settings.speech_min_confidence,
                    hotwords=hotwords_from([*sorted(dispatcher.command_words, key=len), *terms]))


def _member_pages(routers: list[Router]) -> dict[str, PageSpec]:
    """The member page of each kind of thing: the dispatcher's own for long replies, then the features'."""
    pages: dict[str, PageSpec] = {REPLY_PAGE: PageSpec(reply_page, None)}
    for router in routers:
        for kind, (handler, settings_type) in router.pages.items():
            if kind in pages:
                raise ValueError(f"two features declare the member page for {kind!r}")
            pages[kind] = PageSpec(handler, settings_type)
    return pages


def _link_maker(links: Links, pages: dict[str, PageSpec]):
    """What the outbox asks for a row: the signed address of its thing's page, for its recipient."""
    def link_for(ref: str | None, member_id: int | None, openid: str | None) -> str | None:
        if not ref or ref.split(":", 1)[0] not in pages or (member_id is None and openid is None):
            return None
        return links.url(Subject(ref=ref, member_id=member_id, openid=None if member_id is not None else openid))
    return link_for


def _feature_hook(hook: Callable[[Runtime], AsyncIterator[None]], runtime: Runtime):
    """A feature's start-up hook as an aiohttp cleanup context."""
    async def context(app: web.Application):
        async for _ in hook(runtime):
            yield

    context.__qualname__ = getattr(hook, "__qualname__", "feature hook")
    return context


def pid_file(settings: Settings) -> Path:
    return settings.data_dir / PID_FILE_NAME


def reload_on_signal(settings: Settings, *, write_pid_file: bool = True):
    """For `zhibu serve`: write the process id to ZHIBU_DATA_DIR/zhibu.pid (unless a supervisor owns it) and,
    on SIGHUP (what `zhibu content reload` sends), run what features asked to run on a reload
    (Runtime.on_reload)."""
    path = pid_file(settings)

    async def signal_context(app: web.Application):
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Future] = set()

        def reload() -> None:
            for what, reloader in app[RELOADERS]:
                log.info("SIGHUP: reloading %s", what)
                future = asyncio.ensure_future(reloader())
                reloads.add(future)
                future.add_done_callback(reloads.discard)

        if write_pid_file:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{os.getpid()}\n", encoding="utf-8")
        loop.add_signal_handler(signal.SIGHUP, reload)
        yield
        loop.remove_signal_handler(signal.SIGHUP)
        with contextlib.suppress(FileNotFoundError):
            if path.read_text(encoding="utf-8").strip() == str(os.getpid()):
                path.unlink()

    return signal_context


def stop_on_signals(*signums: int):
    """For `zhibu serve`: the first of signums starts an orderly stop (aiohttp's GracefulExit: no new requests,
    those in hand answered, messages being handled finished, then the cleanup); any that come after it are noted
    and ignored. aiohttp's own handlers would raise GracefulExit again on a second signal, in the middle of that
    cleanup, and its run_app then cancels every task left: messages half-handled, their transactions cut off. A
    second SIGTERM is what every worker of `--workers N` gets when the service is stopped as systemd stops one
    (a signal to each of its processes) and the supervisor passes its own on. Registered first, so that it is
    cleaned up last: the handlers stay until everything else has stopped."""
    async def signal_context(app: web.Application):
        loop = asyncio.get_running_loop()
        stopping: list[int] = []

        def stop(signum: int) -> None:
            name = signal.Signals(signum).name
            if stopping:
                log.info("%s while already stopping: finishing what is in hand first", name)
                return
            stopping.append(signum)
            log.info("%s: stopping (finishing what is in hand first)", name)
            raise web.GracefulExit()

        for signum in signums:
            loop.add_signal_handler(signum, stop, signum)
        yield
        for signum in signums:
            loop.remove_signal_handler(signum)

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
