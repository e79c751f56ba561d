"""Signing in to the console and out of it.

By scan: GET /console/login makes a one-time request (a random nonce, good for two minutes), keeps its nonce in
this browser's cookie, and shows a WeChat QR code whose scene is "login:<nonce>". The page refreshes itself
(no script may run) until the scan is confirmed. The scan reaches the webhook as an event; if the sender is a
bound secretary, deputy or staff member and the request is unexpired and unused, it is confirmed for them.
The next refresh of that same browser, and only that one, signs it in, once.

By password (`zhibu staff passwd` sets it): GET|POST /console/login/password. Wrong passwords are counted per
name typed and per address; the answer is the same for an unknown name and a wrong password.

Out: the form on every console page (POST /console/logout) ends that login; 退出后台 in chat ends all of the
member's logins and withdraws any scan confirmed but not yet used (the answer to "that was not me").
"""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp_jinja2
from aiohttp import web

from bot.config import DemoDefaults
from bot.dispatch import Context, EventType, Scene
from bot.web.console import (
    CONSOLE_ROLES,
    ConsoleSettings,
    LOGIN_PAGE,
    StaffView,
    begin_login,
    client_address,
    console_of,
    console_route,
    cookie_session,
    error_page,
    forget_login,
    form_token,
    form_token_ok,
    may_use_console,
    next_page,
    platform_of,
    redirect,
    signed_in,
    staff_page,
)
from handlers.console.common import (
    CONFIRMED_WITHIN,
    FILL_BOTH,
    LEFT_CONSOLE,
    LOCKED,
    NO_COOKIES,
    NOT_IN_CONSOLE,
    QR_FAILED,
    REFRESH_SECONDS,
    SCAN_BIND_FIRST,
    SCAN_CONFIRMED,
    SCAN_EXPIRED,
    SCAN_LIFETIME,
    SCAN_LIMIT,
    SCAN_LIMIT_WINDOW,
    SCAN_NOT_STAFF,
    SIGN_IN_FAILED,
    SIGN_IN_PASSWORD,
    SIGN_IN_SCAN,
    SIGN_OUT,
    SIGN_OUT_CHAT,
    TOO_MANY_CODES,
    WRONG_PASSWORD,
    router,
)
from handlers.console.passwords import normalized_name, verify_password
from storage import console as store
from storage.models import Member

log = logging.getLogger(__name__)

SCENE_PREFIX = "login:"
# What new_scan makes (token_urlsafe(18)); anything else in a scene is not one of ours.
NONCE = re.compile(r"[A-Za-z0-9_-]{16,43}")
# Where the cookie keeps this browser's scan request.
SCAN_KEY = "scan"
MAX_LOGIN_FORM = 4 * 1024
QR_TIMEOUT = 10.0


# ---------------------------------------------------------------- by scan: the page


def _page(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.web.get(LOGIN_PAGE)
@console_route
async def login_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    cookie = await cookie_session(request)
    client = client_address(request)
    # The page's own refresh: a code that ran out while nobody looked is not replaced by itself for ever.
    automatic = "wait" in request.query
    now = console.clock.now()
    if automatic and cookie.new:
        # The page refreshes itself only after setting the cookie: a browser that refuses cookies would ask
        # for a new code every few seconds and could never sign in.
        return _page(request, "console_login.html", problem=NO_COOKIES, token=form_token(cookie))
    async with console.sessions() as session, session.begin():
        if await signed_in(session, console, cookie) is not None:
            return redirect(next_page(cookie))
        scan = await store.scan_by_nonce(session, cookie.get(SCAN_KEY))
        if scan is not None and scan.member_id is not None:
            member_id = await store.take_confirmed_scan(session, scan.id, now, CONFIRMED_WITHIN)
            member = await session.get(Member, member_id) if member_id is not None else None
            if may_use_console(member):
                destination = next_page(cookie)
                await begin_login(session, cookie, member, method="scan", client=client, now=now)
                await store.audit(session, member, SIGN_IN_SCAN, "微信扫码登录后台", now=now, client=client)
                log.info("console: member %s signed in by scan from %s", member.id, client)
                return redirect(destination)
            scan = None  # used already, or confirmed too long ago: a new code
        if scan is not None and scan.used_at is None and scan.expires_at > now:
            pending = True
        elif scan is not None and automatic:
            return _page(request, "console_login.html", expired=True, token=form_token(cookie))
        else:
            pending = False
        if not pending:
            if await store.scans_asked_since(session, client, now - SCAN_LIMIT_WINDOW) >= SCAN_LIMIT:
                log.info("console: %s asked for too many sign-in codes", client)
                return _page(request, "console_login.html", status=429, problem=TOO_MANY_CODES,
                             token=form_token(cookie))
            scan = await store.new_scan(session, client=client, now=now, lifetime=SCAN_LIFETIME)
            cookie[SCAN_KEY] = scan.nonce
        scan_id, nonce, qr_url, expires_at = scan.id, scan.nonce, scan.qr_url, scan.expires_at
    scene = SCENE_PREFIX + nonce
    if qr_url is None:
        # The platform is asked outside any transaction; the image address is kept for the page's refreshes.
        qr_url = await _qr_code(request, scene)
        if qr_url is not None:
            async with console.sessions() as session, session.begin():
                await store.set_scan_image(session, scan_id, qr_url)
    settings: ConsoleSettings = console.settings
    return _page(request, "console_login.html", qr_url=qr_url, scene=scene, problem=None if qr_url else QR_FAILED,
                 refresh=REFRESH_SECONDS if qr_url else None, token=form_token(cookie),
                 expires=settings.local(expires_at).strftime("%H:%M:%S"),
                 demo=settings.wechat_app_id == DemoDefaults.app_id)


async def _qr_code(request: web.Request, scene: str) -> str | None:
    try:
        return await asyncio.wait_for(platform_of(request).qr_code_url(scene, expire_seconds=int(
            SCAN_LIFETIME.total_seconds())), QR_TIMEOUT)
    except Exception:
        log.exception("console: no QR code for signing in")
        return None


# ---------------------------------------------------------------- by scan: the chat side


@router.on((EventType("scan") | EventType("subscribe")) & Scene(SCENE_PREFIX))
async def login_scanned(ctx: Context, member: Member | None, scene: str) -> str:
    if member is None:
        return SCAN_BIND_FIRST
    if not may_use_console(member):
        log.info("console: member %s (%s) scanned a sign-in code", member.id, member.role)
        return SCAN_NOT_STAFF
    if not NONCE.fullmatch(scene) or not await store.confirm_scan(ctx.session, scene, member.id, ctx.now):
        return SCAN_EXPIRED
    log.info("console: member %s confirmed a sign-in by scan", member.id)
    return SCAN_CONFIRMED


@router.text("退出后台", bound=True)
async def leave_console(ctx: Context, member: Member, settings: ConsoleSettings) -> str:
    ended = await store.end_member_logins(ctx.session, member.id, ctx.now, "chat", idle=settings.session_idle)
    withdrawn = await store.withdraw_confirmed_scans(ctx.session, member.id, ctx.now)
    if not ended and not withdrawn:
        return NOT_IN_CONSOLE
    await store.audit(ctx.session, member, SIGN_OUT_CHAT,
                      f"在微信里回复 退出后台，结束了 {ended} 处登录" + ("（含一次未完成的扫码）" if withdrawn else ""),
                      now=ctx.now)
    return LEFT_CONSOLE


# ---------------------------------------------------------------- by password


@router.web.get(LOGIN_PAGE + "/password")
@console_route
async def password_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    cookie = await cookie_session(request)
    async with console.sessions() as session, session.begin():
        if await signed_in(session, console, cookie) is not None:
            return redirect(next_page(cookie))
    return _page(request, "console_password.html", token=form_token(cookie), settings=console.settings)


@router.web.post(LOGIN_PAGE + "/password")
@console_route
async def password_sign_in(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    settings: ConsoleSettings = console.settings
    cookie = await cookie_session(request)
    if request.content_length is not None and request.content_length > MAX_LOGIN_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_LOGIN_FORM, actual_size=request.content_length)
    form = await request.post()
    client = client_address(request)
    if not form_token_ok(cookie, form.get("csrf")):
        log.info("console: password sign-in without the form's token, from %s", client)
        return error_page(request, 403)
    name, password = form.get("name"), form.get("password")
    name = normalized_name(name) if isinstance(name, str) else ""
    password = password if isinstance(password, str) else ""

    def again(problem: str, status: int = 200) -> web.Response:
        return _page(request, "console_password.html", status=status, problem=problem, name=name,
                     token=form_token(cookie), settings=settings)

    if not name or not password:
        return again(FILL_BOTH)
    now = console.clock.now()
    async with console.sessions() as session, session.begin():
        locked = await store.locked_until(session, name=name, client=client, now=now,
                                          limit=settings.console_max_failures, window=settings.lockout,
                                          lockout=settings.lockout)
        if locked is None:
            candidates = await store.password_candidates(session, name, CONSOLE_ROLES)
    if locked is not None:
        log.info("console: password sign-in for %r from %s refused: locked", name, client)
        minutes = max(1, -(-int((locked - now).total_seconds()) // 60))
        return again(LOCKED.format(minutes=minutes, until=settings.local(locked).strftime("%H:%M")), status=429)
    # The check runs outside any transaction, in a thread: it is slow on purpose.
    member_id, new_hash = await asyncio.to_thread(verify_password, candidates, password)
    async with console.sessions() as session, session.begin():
        member = await session.get(Member, member_id) if member_id is not None else None
        if not may_use_console(member):
            await store.record_failure(session, name=name, client=client, now=now)
            await store.audit(session, None, SIGN_IN_FAILED, f"密码登录失败，填写的姓名：{name}", now=now, client=client)
            log.info("console: wrong password for %r from %s", name, client)
            signed = None
        else:
            await store.clear_failures(session, name)
            if new_hash is not None:
                await store.save_password_hash(session, member.id, new_hash, now)
            destination = next_page(cookie)
            await begin_login(session, cookie, member, method="password", client=client, now=now)
            await store.audit(session, member, SIGN_IN_PASSWORD, "用密码登录后台", now=now, client=client)
            log.info("console: member %s signed in by password from %s", member.id, client)
            signed = destination
    return redirect(signed) if signed is not None else again(WRONG_PASSWORD)


# ---------------------------------------------------------------- signing out


@router.web.post("/console/logout")
@staff_page
async def sign_out(view: StaffView) -> web.StreamResponse:
    await store.end_login(view.session, view.login, view.now, "sign_out")
    await view.audit(SIGN_OUT, "在后台点了 退出登录")
    forget_login(await cookie_session(view.request))
    return redirect(LOGIN_PAGE)
