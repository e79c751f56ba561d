"""The staff console's shared front: who is signed in, what they may see, and the forms they may post.

Every console page is an aiohttp route wrapped in `staff_page`, which hands the page a `StaffView`:

    @router.web.get("/console/branches/{org_id}")
    @staff_page
    async def branch_page(view: StaffView) -> web.Response:
        branch = await view.org(view.request.match_info["org_id"])  # 404 unless in the viewer's scope
        return view.render("console_branch.html", branch=branch)

Signing in is the console feature's (handlers/console: QR scan or password); what every page shares lives
here, below the features, so that any feature may add console pages without importing another feature.

- The browser holds an encrypted cookie (aiohttp-session's EncryptedCookieStorage, path /console, HttpOnly,
  SameSite=Lax, Secure behind https) whose only lasting content is a random login token. The login is a
  row (storage.models.ConsoleLogin): ending the row ends the session, whatever the cookie says, and a login
  idle for `console_session_hours` is over.
- The member is read afresh on every request: a role taken away or a move to another organization counts
  from the next page on. Staff (组织员, 管理员) see their organization's subtree; a branch's secretary or deputy
  sees their branch. Anything outside answers 404, never 403, so a URL confirms nothing.
- Every POST carries the login's CSRF token in the field `csrf`; without it, or with another, the answer is
  403 and nothing runs. The sign-in forms carry a token kept in the not-yet-signed-in cookie instead.
- Pages are server-rendered, script-free (the CSP says so), desktop-first and still usable on a phone.

The composition root installs no session middleware: `console_route` does that work per route, so that only
console addresses read or write the console cookie.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet
from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.keys import CLIENT, PROVIDED
from storage import console as store
from storage.db import READ_ONLY
from storage.models import BRANCH_LEADERS, STAFF_ROLES, ConsoleLogin, Member, Organization, OrgType
from storage.orgs import under

log = logging.getLogger(__name__)

# Who may use the console at all.
CONSOLE_ROLES = STAFF_ROLES | BRANCH_LEADERS
# The name the console feature provides its runtime under (Runtime.provide).
CONSOLE = "console"
COOKIE_NAME = "zhibu_console"
COOKIE_PATH = "/console"
KEY_FILE = "console-key"
LOGIN_PAGE = "/console/login"
HOME_PAGE = "/console/"
CSRF_FIELD = "csrf"
MAX_FORM_BYTES = 64 * 1024
# A login's "last seen" is written at most this often (not on every page).
SEEN_EVERY = timedelta(minutes=1)
WEEKDAYS = "一二三四五六日"

# This request's decrypted cookie, once read.
COOKIE_SESSION = web.RequestKey("console_cookie", Session)

# What the cookie holds.
_LOGIN = "login"  # a signed-in browser's login token
_FORM_TOKEN = "form"  # before sign-in: the token the sign-in forms carry
_NEXT = "next"  # before sign-in: the console page to return to


class ConsoleSettings(Settings):
    # The key that encrypts the console's cookie: a Fernet key (URL-safe base64 of 32 bytes, as
    # `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"` prints).
    # Empty: one kept in ZHIBU_DATA_DIR/console-key, made on first use (every machine that serves must share it).
    console_key: str = ""
    # A signed-in browser that shows no sign of life for this long must sign in again.
    console_session_hours: int = Field(default=12, ge=1)
    # Wrong passwords: this many within console_lockout_minutes lock that name, or that address, for as long.
    console_max_failures: int = Field(default=5, ge=1)
    console_lockout_minutes: int = Field(default=15, ge=1)

    @field_validator("console_key")
    @classmethod
    def _fernet_key(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                Fernet(value)
            except (ValueError, TypeError):
                raise ValueError("ZHIBU_CONSOLE_KEY must be a Fernet key: URL-safe base64 of 32 bytes") from None
        return value

    @property
    def session_idle(self) -> timedelta:
        return timedelta(hours=self.console_session_hours)

    @property
    def lockout(self) -> timedelta:
        return timedelta(minutes=self.console_lockout_minutes)


def console_key(configured: str, data_dir: Path) -> str:
    """The configured key, or else the one kept in ZHIBU_DATA_DIR/console-key (made on first use)."""
    if configured:
        return configured
    path = data_dir / KEY_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode("ascii")
    try:
        # Exclusive creation: two processes starting together keep whichever key was written first.
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(key + "\n")
        path.chmod(0o600)
        log.warning("no ZHIBU_CONSOLE_KEY: made a console key in %s (set ZHIBU_CONSOLE_KEY when several machines "
                    "serve)", path)
        return key
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()


class Console:
    """What console pages share in one service: its settings, the database, the clock and the cookie."""

    def __init__(self, settings: ConsoleSettings, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self._storage: EncryptedCookieStorage | None = None

    @property
    def storage(self) -> EncryptedCookieStorage:
        # Made on first use: a service whose console nobody opens never writes a key file.
        if self._storage is None:
            self._storage = EncryptedCookieStorage(
                console_key(self.settings.console_key, self.settings.data_dir), cookie_name=COOKIE_NAME,
                path=COOKIE_PATH, httponly=True, samesite="Lax",
                secure=self.settings.effective_public_url.startswith("https://"), max_age=None)
        return self._storage


def console_of(request: web.Request) -> Console:
    try:
        return request.app[PROVIDED][CONSOLE]
    except KeyError:
        raise RuntimeError("the console feature (handlers.console) is not among this service's routers") from None


def platform_of(request: web.Request):
    """The messaging platform's client (bot.dispatch.Channel): for a QR code. Never call it in a transaction."""
    return request.app[CLIENT]


def client_address(request: web.Request) -> str:
    """Where a request came from. Behind a proxy on this machine (the HTTPS proxy the README describes) every
    request comes from loopback, so the address the proxy appended to X-Forwarded-For is the client's."""
    remote = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    try:
        local = ipaddress.ip_address(remote).is_loopback
    except ValueError:
        local = False
    if local and forwarded:
        last = forwarded.split(",")[-1].strip()
        if last:
            return last[:64]
    return remote[:64]


# ---------------------------------------------------------------- the cookie


async def cookie_session(request: web.Request) -> Session:
    """This browser's console cookie, decrypted (a new, empty one when missing or unreadable)."""
    session = request.get(COOKIE_SESSION)
    if session is None:
        session = request[COOKIE_SESSION] = await console_of(request).storage.load_session(request)
    return session


def console_route(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """A console route whose cookie is written back when it changed: aiohttp-session's middleware, for this
    route only."""
    @functools.wraps(handler)
    async def route(request: web.Request) -> web.StreamResponse:
        raised = None
        try:
            response = await handler(request)
        except web.HTTPException as error:
            response = raised = error
        session = request.get(COOKIE_SESSION)
        # `_changed` is the flag aiohttp-session's own middleware reads to decide the same thing.
        if session is not None and session._changed and isinstance(response, (web.Response, web.HTTPException)):
            await console_of(request).storage.save_session(request, response, session)
        if raised is not None:
            raise raised
        return response
    return route


def form_token(cookie: Session) -> str:
    """The token the sign-in forms carry, kept in the not-yet-signed-in cookie."""
    token = cookie.get(_FORM_TOKEN)
    if not isinstance(token, str) or len(token) < 20:
        token = cookie[_FORM_TOKEN] = secrets.token_urlsafe(24)
    return token


def form_token_ok(cookie: Session, posted: object) -> bool:
    token = cookie.get(_FORM_TOKEN)
    return isinstance(token, str) and isinstance(posted, str) and hmac.compare_digest(token, posted)


def remember_next(cookie: Session, path: str) -> None:
    if path.startswith("/console/") and not path.startswith("//") and len(path) <= 300:
        cookie[_NEXT] = path


def next_page(cookie: Session) -> str:
    """Where a browser goes after signing in: the console page it asked for, else the console's home."""
    path = cookie.get(_NEXT)
    if isinstance(path, str) and path.startswith("/console/") and not path.startswith(LOGIN_PAGE):
        return path
    return HOME_PAGE


def may_use_console(member: Member | None) -> bool:
    return member is not None and member.role in CONSOLE_ROLES


async def begin_login(session: AsyncSession, cookie: Session, member: Member, *, method: str, client: str,
                      now: datetime) -> ConsoleLogin:
    """Sign this browser in as member: a new login row, and a cookie that holds only its token and the page it
    asked for (whatever else the browser held before, the scan request and the form token included, is dropped).
    The page stays because the sign-in page refreshes itself: when its own refresh and another one (a tap, the
    browser's) cross, the one that signs in may be abandoned by the browser after its cookie was kept, and the
    other, already signed in, must still send the browser where it wanted to go, not to the console's home."""
    login, token = await store.start_login(session, member_id=member.id, method=method, client=client, now=now)
    asked_for = next_page(cookie)
    cookie.invalidate()
    cookie[_LOGIN] = token
    if asked_for != HOME_PAGE:
        cookie[_NEXT] = asked_for
    return login


def forget_login(cookie: Session) -> None:
    cookie.invalidate()


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


# ---------------------------------------------------------------- who is signed in


@dataclass
class SignedIn:
    login: ConsoleLogin
    member: Member
    scope: Organization


async def signed_in(session: AsyncSession, console: Console, cookie: Session) -> SignedIn | None:
    """The live login this cookie names, with its member read afresh and the organization they may see; None
    when there is none. A login idle too long, or whose member may no longer use the console, is ended."""
    login = await store.login_by_token(session, cookie.get(_LOGIN))
    if login is None or login.ended_at is not None:
        return None
    now = console.clock.now()
    if not store.login_is_live(login, now, console.settings.session_idle):
        await store.end_login(session, login, now, "idle")
        return None
    member = await session.get(Member, login.member_id, populate_existing=True)
    if not may_use_console(member):
        await store.end_login(session, login, now, "role")
        log.info("console: login %s ended, member %s may no longer use the console", login.id, login.member_id)
        return None
    scope = await session.get(Organization, member.org_id, populate_existing=True)
    if scope is None:
        return None
    if now - login.last_seen_at >= SEEN_EVERY:
        login.last_seen_at = now
    return SignedIn(login, member, scope)


# ---------------------------------------------------------------- the page


@dataclass
class StaffView:
    """What a console page gets: who is looking, what they may see, a session, and ways to answer. A POST's
    session is in a transaction that commits when the page returns (a page that raises rolls it back); a
    GET's only reads, and must not write (view.audit is kept for afterwards)."""

    request: web.Request
    session: AsyncSession
    member: Member
    # The organization whose subtree this member may see: a secretary's branch, a staff member's organization.
    scope: Organization
    login: ConsoleLogin
    settings: ConsoleSettings
    clock: Clock
    # The posted form's text fields (a POST's); `posted` has everything, uploaded files included.
    form: dict[str, str] = field(default_factory=dict)
    posted: Any = None
    # A GET: the session only reads (no write lock on SQLite); view.audit's entries are written afterwards.
    reading: bool = False
    audits: list[tuple[str, str]] = field(default_factory=list)

    @property
    def csrf_token(self) -> str:
        """The hidden field every form of this page carries: <input type="hidden" name="csrf" value="…">."""
        return self.login.csrf_token

    @property
    def now(self) -> datetime:
        return self.clock.now()

    @property
    def is_staff(self) -> bool:
        """组织员 or 管理员 (not a branch's secretary or deputy)."""
        return self.member.role in STAFF_ROLES

    @property
    def is_county(self) -> bool:
        """A staff member of the county committee: their organization is a committee at the top of the tree."""
        return self.is_staff and self.scope.parent_id is None and self.scope.org_type == OrgType.COMMITTEE.value

    def in_scope(self, org: Organization | None) -> bool:
        # A scope without a proper tree path would take in everything: refused, as storage.orgs.under does.
        scope = self.scope.tree_path
        if not (scope.startswith("/") and scope.endswith("/") and scope.strip("/")):
            raise ValueError(f"organization {self.scope.id} has no tree path")
        return org is not None and org.tree_path.startswith(scope)

    def require(self, org: Organization | None) -> Organization:
        """org, if this member may see it; otherwise the page ends with 404 (never 403: an address names
        nothing it does not show)."""
        if not self.in_scope(org):
            raise web.HTTPNotFound()
        return org

    async def org(self, org_id: int | str) -> Organization:
        """The organization with this id (as a URL gives it), if in scope; else 404."""
        return self.require(await self.session.get(Organization, _row_id(org_id)))

    async def member_in_scope(self, member_id: int | str) -> tuple[Member, Organization]:
        """The member with this id (as a URL gives it) and their organization, if in scope; else 404."""
        member = await self.session.get(Member, _row_id(member_id))
        if member is None:
            raise web.HTTPNotFound()
        return member, self.require(await self.session.get(Organization, member.org_id))

    def subtree(self):
        """A SELECT of the ids of every organization in scope, for a page's own queries (storage.orgs.under(
        view.scope) is the same condition, for a query that joins Organization itself)."""
        return select(Organization.id).where(under(self.scope))

    async def audit(self, action: str, detail: str = "") -> None:
        """Record what this member did (an export, an import, a change): with a POST's transaction; for a
        GET (an export), in a short transaction of its own once the page has been made."""
        if self.reading:
            self.audits.append((action, detail))
            return
        await store.audit(self.session, self.member, action, detail, now=self.now,
                          client=client_address(self.request))

    def local(self, moment: datetime) -> datetime:
        return self.settings.local(moment)

    def when(self, moment: datetime) -> str:
        """A time as staff read it: 2026年11月26日（周四）15:00."""
        local = self.local(moment)
        return f"{local:%Y年%-m月%-d日}（周{WEEKDAYS[local.weekday()]}）{local:%H:%M}"

    @property
    def role_label(self) -> str:
        return self.member.role

    @property
    def nav(self) -> list[tuple[str, str]]:
        """The console's menu as this member sees it: (label, address)."""
        return [(link.label, link.path) for link in NAV if link.shown_to(self)]

    def back(self, to: str | None = None) -> web.Response:
        """After a form: show a page again by a GET (this one unless told), so reloading it posts nothing."""
        return redirect(to or self.request.path_qs)

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        """A template that extends "console_base.html", with `view` (this) and context."""
        response = aiohttp_jinja2.render_template(template, self.request, {"view": self, **context}, status=status)
        response.headers["Cache-Control"] = "no-store"
        return response


def _row_id(value: int | str) -> int:
    """A row's id as an address gives it; 404 for anything that is not one."""
    text = str(value)
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise web.HTTPNotFound()
    return int(text)


def paging(total: int, page: int, size: int) -> dict:
    """Where a list of total rows, size a page, is when page is asked for: {"page", "last", "total"}, the page
    kept within 1..last (console_paging.html shows it)."""
    last = max(1, (total + size - 1) // size)
    return {"page": min(max(page, 1), last), "last": last, "total": total}


@dataclass(frozen=True)
class NavLink:
    label: str
    path: str
    staff_only: bool = False
    county_only: bool = False

    def shown_to(self, view: StaffView) -> bool:
        return (not self.staff_only or view.is_staff) and (not self.county_only or view.is_county)


# The console's menu, in the order features add to it (at import, beside their pages).
NAV: list[NavLink] = []


def add_nav(label: str, path: str, *, staff_only: bool = False, county_only: bool = False) -> None:
    """Put a console page in the menu (once per path): for everyone signed in, only staff, or only the county."""
    if all(link.path != path for link in NAV):
        NAV.append(NavLink(label, path, staff_only, county_only))


add_nav("首页", HOME_PAGE)


class _Forbidden(Exception):
    """A POST without this login's CSRF token: rolls the page's transaction back."""


def staff_page(handler: Callable[[StaffView], Awaitable[web.StreamResponse]] | None = None, *,
               max_bytes: int = MAX_FORM_BYTES):
    """A console page for a signed-in secretary, deputy or staff member. Others are sent (303) to the sign-in
    page, which brings them back here afterwards (GET pages). A POST must carry the login's CSRF token (403
    without). A page that raises web.HTTPNotFound (view.require, view.org) gets the console's 404 page.

    max_bytes: the largest POST the page takes (`@staff_page(max_bytes=…)` for a form that uploads a file,
    which then is in view.posted); a larger one gets the console's 413 page, saying how large it may be."""
    if handler is None:
        return functools.partial(staff_page, max_bytes=max_bytes)

    @functools.wraps(handler)
    @console_route
    async def page(request: web.Request) -> web.StreamResponse:
        console = console_of(request)
        cookie = await cookie_session(request)
        form: dict[str, str] = {}
        posted = None
        if request.method == "POST":
            if request.content_length is not None and request.content_length > max_bytes:
                return error_page(request, 413, limit=max_bytes)
            if max_bytes > request.client_max_size:
                # The service takes small bodies only (Settings.max_body_bytes); this page takes more.
                request = request.clone(client_max_size=max_bytes)
            try:
                posted = await request.post()
            except web.HTTPRequestEntityTooLarge:  # a body sent without its length
                return error_page(request, 413, limit=max_bytes)
            form = {name: value for name, value in posted.items() if isinstance(value, str)}
        def view_in(session: AsyncSession, who: SignedIn, *, reading: bool) -> StaffView:
            return StaffView(request=request, session=session, member=who.member, scope=who.scope, login=who.login,
                             settings=console.settings, clock=console.clock, form=form, posted=posted,
                             reading=reading)

        try:
            if request.method in ("GET", "HEAD"):
                # A page that only reads renders outside any write transaction: on SQLite the one write lock is
                # not held while a county's figures are gathered, so members' messages never wait on a page.
                async with console.sessions() as session, session.begin():
                    who = await signed_in(session, console, cookie)
                response = None
                if who is not None:
                    async with console.sessions() as session:
                        await session.connection(execution_options=READ_ONLY)
                        view = view_in(session, who, reading=True)
                        response = await _answer(handler, view)
                    if view.audits:
                        async with console.sessions() as session, session.begin():
                            for action, detail in view.audits:
                                await store.audit(session, view.member, action, detail, now=view.now,
                                                  client=client_address(request))
            else:
                async with console.sessions() as session, session.begin():
                    who = await signed_in(session, console, cookie)
                    if who is None:
                        response = None
                    else:
                        if not hmac.compare_digest(who.login.csrf_token, form.get(CSRF_FIELD, "")):
                            raise _Forbidden()
                        response = await _answer(handler, view_in(session, who, reading=False))
        except _Forbidden:
            log.info("console: %s %s without the login's CSRF token, from %s", request.method, request.path,
                     client_address(request))
            return error_page(request, 403)
        except web.HTTPNotFound:
            return error_page(request, 404)
        if response is None:
            cookie.pop(_LOGIN, None)
            if request.method == "GET":
                remember_next(cookie, request.path_qs)
            return redirect(LOGIN_PAGE)
        return response
    return page


async def _answer(handler: Callable[[StaffView], Awaitable[web.StreamResponse]], view: StaffView) -> web.StreamResponse:
    try:
        return await handler(view)
    except web.HTTPRedirection as moved:
        # Raised the aiohttp way, it still means "done": what the page changed commits.
        return redirect(moved.location or HOME_PAGE)


ERRORS = {
    403: ("表单已失效", "这个表单已经失效（可能是页面放得太久，或已经退出登录）。请返回，刷新页面后再提交一次。"),
    404: ("没有找到", "没有这个页面，或者它不在您可以查看的范围里。"),
    413: ("文件太大", "提交的内容超过了 {limit}，没有收下。如果是上传表格，请删掉多余的工作表和图片，"
                      "或者另存为 .csv 后再上传。"),
}


def size_words(size: int) -> str:
    """A size limit as people read it: 5 MB, 64 KB."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.0f} MB"
    return f"{size / 1024:.0f} KB"


def error_page(request: web.Request, status: int, *, limit: int = 0) -> web.Response:
    title, text = ERRORS[status]
    text = text.format(limit=size_words(limit))
    response = aiohttp_jinja2.render_template("console_error.html", request, {"title": title, "text": text},
                                              status=status)
    response.headers["Cache-Control"] = "no-store"
    return response
