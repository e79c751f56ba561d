"""Members' pages: the whole message behind a template's link, readable and answerable on a phone.

Served by the same aiohttp app. Every member page lives at /m/<token>: the signed token (bot/web/links.py)
says whose page it is and what it shows, and the feature that declared that kind (`@router.page("notice")`)
renders it. Pages are server-rendered Jinja2 (autoescaped), simplified Chinese, one column, large type;
nothing is loaded from the internet, and no script runs. A GET never changes anything; a form posts back to
the same signed address. A token that was changed, has expired or names something that is not the member's
gets one plain page that says so and what to do, with status 404 whatever the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Configs
from bot.web.links import InvalidLink, Links, Subject
from storage.models import InboundMessage, Member

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
LINKS = web.AppKey("links", Links)
# Wakes the outbox after a form's changes are committed; set by the composition root once the outbox runs.
OUTBOX_WAKE = web.AppKey("outbox_wake", object)
MAX_FORM_BYTES = 8 * 1024
WEEKDAYS = "一二三四五六日"

# No script, no frames, nothing from elsewhere; forms post only back here. The token is in the address, so
# no Referer may carry it to a site a page links to (the map). The one outside source is WeChat's QR image
# host, for the console's sign-in code (the browser shows the platform's image; we neither fetch nor keep it).
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data: https://mp.weixin.qq.com; "
                                "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class LinkGone(Exception):
    """Raised by a page handler when what the link names is not (or no longer) this member's to see."""


@dataclass
class MemberPage:
    """What a feature's page handler gets: who opened it, what it shows, a session, and ways to answer."""

    request: web.Request
    subject: Subject
    session: AsyncSession
    member: Member | None
    settings: Any  # the feature's settings
    clock: Clock
    form: dict[str, str] = field(default_factory=dict)

    @property
    def posted(self) -> bool:
        return self.request.method == "POST"

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def local(self, moment: datetime) -> datetime:
        return self.settings.local(moment)

    def when(self, moment: datetime) -> str:
        """A time as members read it on a page: 2026年11月26日（周四）15:00."""
        local = self.local(moment)
        return f"{local:%Y年%-m月%-d日}（周{WEEKDAYS[local.weekday()]}）{local:%H:%M}"

    def link_to(self, ref: str) -> str:
        """A link to another page for the same member (a list page linking to each of its items)."""
        subject = Subject(ref, member_id=self.member.id if self.member is not None else None,
                          openid=self.subject.openid)
        return f"/m/{self.request.app[LINKS].token(subject)}"

    def back(self) -> web.Response:
        """After a form: show the page again by a GET, so reloading it does not post twice."""
        return web.Response(status=303, headers={"Location": self.request.path, "Cache-Control": "no-store"})

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        response = aiohttp_jinja2.render_template(template, self.request, {"page": self, **context}, status=status)
        # A member's page is theirs alone: no shared cache keeps it.
        response.headers["Cache-Control"] = "no-store"
        return response


PageHandler = Callable[[MemberPage], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class PageSpec:
    handler: PageHandler
    settings_type: Any


def setup_pages(app: web.Application, *, pages: dict[str, PageSpec], template_dirs: Iterable[Path],
                sessions: async_sessionmaker[AsyncSession], clock: Clock, configs: Configs, links: Links,
                machine_paths: Iterable[str] = ()) -> None:
    """Templates, static files, security headers and the /m/<token> route for the features' pages.

    machine_paths: paths only machines call (WeChat's webhook, the health check), whose answers no browser
    shows: they go without the pages' headers."""
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(path)) for path in [HERE / "templates", *template_dirs]])
    aiohttp_jinja2.setup(app, loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    app[LINKS] = links
    app.on_response_prepare.append(_security_headers(frozenset(machine_paths)))
    app.router.add_static("/static/", HERE / "static", name="static")

    async def member_page(request: web.Request) -> web.StreamResponse:
        try:
            subject = links.read(request.match_info["token"])
        except InvalidLink as reason:
            log.info("member page: invalid link (%s) from %s", reason, request.remote)
            return _gone(request)
        spec = pages.get(subject.kind)
        if spec is None:
            log.info("member page: no page for %s", subject.ref)
            return _gone(request)
        form: dict[str, str] = {}
        if request.method == "POST":
            if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES, actual_size=request.content_length)
            posted = await request.post()
            form = {name: value for name, value in posted.items() if isinstance(value, str)}
        async with sessions() as session, session.begin():
            member = None
            if subject.member_id is not None:
                member = await session.get(Member, subject.member_id)
                if member is None:
                    log.info("member page: member %s of %s is gone", subject.member_id, subject.ref)
                    return _gone(request)
            page = MemberPage(request=request, subject=subject, session=session, member=member,
                              settings=configs.of(spec.settings_type), clock=clock, form=form)
            try:
                response = await spec.handler(page)
            except LinkGone as reason:
                log.info("member page: %s not shown to %s: %s", subject.ref, subject.member_id or subject.openid,
                         reason)
                return _gone(request)
        wake = request.app.get(OUTBOX_WAKE)
        if request.method == "POST" and wake is not None:
            wake()  # what the form queued (a leave request to the secretary) goes now, not at the next poll
        return response

    app.router.add_get("/m/{token}", member_page)
    app.router.add_post("/m/{token}", member_page)


async def reply_page(page: MemberPage) -> web.Response:
    """A chat reply that was too long for chat, whole: only for the follower it answered."""
    thing = page.subject.thing_id
    message = await page.session.get(InboundMessage, int(thing)) if thing.isdigit() and len(thing) < 19 else None
    if message is None or message.openid != page.subject.openid or not message.full_reply:
        raise LinkGone("no such reply for this follower")
    return page.render("long_text.html", title="完整回复", text=message.full_reply)


def _gone(request: web.Request) -> web.Response:
    response = aiohttp_jinja2.render_template("link_invalid.html", request, {}, status=404)
    response.headers["Cache-Control"] = "no-store"
    return response


def _security_headers(machine_paths: frozenset[str]):
    """The headers every response a browser may show carries, errors and static files included. Added as the
    response is prepared, not by a middleware: a middleware wraps every request, the webhook's too, and cost
    each WeChat message about 10 µs (this, about 4)."""
    async def add(request: web.BaseRequest, response: web.StreamResponse) -> None:
        if request.path not in machine_paths:
            response.headers.update(SECURITY_HEADERS)
    return add
