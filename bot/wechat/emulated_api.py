"""A fake WeChat API platform for the emulator and the tests, keeping WeChat's rules and error codes.

Errors come back the way WeChat sends them: HTTP 200 with {"errcode": ..., "errmsg": ...}. Choices
where WeChat's behaviour is not documented precisely:
- A missing access_token gets 41001 (WeChat's code); an unknown or superseded one 40001; one that ran
  out 42001.
- A non-forced stable_token call returns the current token while it has more than five minutes left
  and issues a new one after that (WeChat renews early, so the old and new overlap).
- The daily quota counts successful customer-service and template messages together, per day in
  Beijing time.
- Template fields longer than 20 characters or with a line break get 47003 (the 2023 rules).
- Bad QR code arguments get 40097 (invalid args); an unreadable body 47001 (data format error).
- \\uXXXX escapes in a request body are kept literally, as WeChat shows them to the user.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

BEIJING = ZoneInfo("Asia/Shanghai")
OLD_TOKEN_GRACE = timedelta(minutes=5)
MAX_QR_EXPIRE = 2_592_000
MESSAGE_WINDOW = (timedelta(hours=48), 5)
EVENT_WINDOW = (timedelta(seconds=60), 3)
# Events after which WeChat lets the account answer with customer-service messages.
WINDOW_EVENTS = frozenset({"click", "subscribe", "scan", "scancode_push", "scancode_waitmsg"})
MESSAGE_TYPES = frozenset({"text", "image", "voice", "video", "music", "news", "mpnews", "mpnewsarticle",
                           "msgmenu", "wxcard", "miniprogrampage"})
BUTTON_TYPES = frozenset({"click", "view", "miniprogram", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                          "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id",
                          "article_view_limited"})

# Temporary media stays fetchable for 3 days after the upload.
MEDIA_LIFETIME = timedelta(days=3)

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40037: "invalid template_id",
    40097: "invalid args",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    44004: "empty content",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
    47003: "argument invalid!",
}


@dataclass
class Record:
    kind: str  # "custom" | "template" | "qrcode" | "menu"
    openid: str | None
    body: dict
    at: datetime
    errcode: int


class Refusal(Exception):
    def __init__(self, errcode: int, detail: str = "") -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.errmsg = ERRMSG.get(errcode, "error") + (f" {detail}" if detail else "")


@dataclass
class _Window:
    until: datetime
    left: int


@dataclass
class _Follower:
    following: bool = True
    # At most one window from the user's last message and one from their last qualifying event.
    windows: dict[str, _Window] = field(default_factory=dict)


@dataclass
class _Failure:
    path_suffix: str
    errcode: int
    status: int
    left: int


_ESCAPE = re.compile(r"(\\+)u")


def _keep_unicode_escapes(raw: str) -> str:
    """Make each JSON \\u escape decode to its literal six characters, as WeChat displays it."""
    return _ESCAPE.sub(lambda m: m.group(1) + ("\\" if len(m.group(1)) % 2 else "") + "u", raw)


class EmulatedApi:
    def __init__(self, *, app_id: str, app_secret: str, clock, token_ttl: int = 7200,
                 daily_quota: int = 100_000) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.clock = clock
        self.token_ttl = token_ttl
        self.daily_quota = daily_quota
        self.records: list[Record] = []
        self.token_fetches = 0
        self.menu: dict | None = None
        self.qr_scenes: dict[str, str] = {}
        self._followers: dict[str, _Follower] = {}
        self._token_expiry: dict[str, datetime] = {}
        self._superseded: set[str] = set()
        self._current_token: str | None = None
        self._failures: list[_Failure] = []
        self._sent_on: tuple[date, int] | None = None
        self._next_msgid = 1000
        # Temporary media (a voice message's audio): media_id → (content type, bytes, when it was uploaded).
        self.media: dict[str, tuple[str, bytes, datetime]] = {}
        self.media_fetches = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/cgi-bin/stable_token", self._stable_token)
        app.router.add_get("/cgi-bin/token", self._classic_token)
        app.router.add_post("/cgi-bin/message/custom/send", self._endpoint("custom", self._custom_send))
        app.router.add_post("/cgi-bin/message/template/send", self._endpoint("template", self._template_send))
        app.router.add_post("/cgi-bin/qrcode/create", self._endpoint("qrcode", self._qrcode_create))
        app.router.add_post("/cgi-bin/menu/create", self._endpoint("menu", self._menu_create))
        app.router.add_get("/cgi-bin/media/get", self._media_get)

    # Hooks for the emulator and the tests.

    def add_follower(self, openid: str) -> None:
        """Someone who followed the account before the emulator started (no window open)."""
        self._followers.setdefault(openid, _Follower()).following = True

    def user_message(self, openid: str, at: datetime | None = None) -> None:
        """The user sent a message: 5 customer-service messages may follow within 48 hours."""
        follower = self._followers.setdefault(openid, _Follower())
        follower.following = True
        self._open_window(follower, "message", at or self.clock.now(), MESSAGE_WINDOW)

    def user_event(self, openid: str, at: datetime | None = None, event: str = "CLICK") -> None:
        """A click, follow or scan opens 3 messages within a minute; unsubscribe ends the following."""
        kind = event.lower()
        follower = self._followers.setdefault(openid, _Follower())
        if kind == "unsubscribe":
            follower.following = False
            follower.windows.clear()
            return
        if kind == "subscribe":
            follower.following = True
        if kind in WINDOW_EVENTS:
            self._open_window(follower, "event", at or self.clock.now(), EVENT_WINDOW)

    def fail_next(self, path_suffix: str, errcode: int, times: int = 1, *, status: int = 200) -> None:
        """The next `times` calls to a path ending in path_suffix fail with errcode.

        status other than 200 answers with that HTTP status instead; errcode is still what gets recorded.
        """
        self._failures.append(_Failure(path_suffix, errcode, status, times))

    def sent_texts(self, openid: str) -> list[str]:
        return [r.body["text"]["content"] for r in self.records
                if r.kind == "custom" and r.openid == openid and r.errcode == 0 and r.body.get("msgtype") == "text"]

    def templates(self, openid: str) -> list[dict]:
        return [r.body for r in self.records if r.kind == "template" and r.openid == openid and r.errcode == 0]

    def scene_for(self, ticket: str) -> str | None:
        return self.qr_scenes.get(ticket)

    def add_media(self, data: bytes, content_type: str = "audio/amr") -> str:
        """What a user's voice message uploads before WeChat posts it: a media_id kept for 3 days."""
        media_id = f"media-{self._next_msgid}-{len(self.media)}"
        self._next_msgid += 1
        self.media[media_id] = (content_type, data, self.clock.now())
        return media_id

    # Temporary media: the file itself, or WeChat's JSON error (invalid or older than 3 days: 40007).

    async def _media_get(self, request: web.Request) -> web.Response:
        now = self.clock.now()
        self.media_fetches += 1
        failure = self._take_failure(request.path)
        if failure is not None:
            return self._failure_response(failure)
        try:
            self._check_access_token(request.query.get("access_token"), now)
            stored = self.media.get(request.query.get("media_id", ""))
            if stored is None or now - stored[2] > MEDIA_LIFETIME:
                raise Refusal(40007)
        except Refusal as refusal:
            return self._error(refusal)
        content_type, data, _ = stored
        extension = content_type.split("/")[-1]
        return web.Response(body=data, content_type=content_type, headers={
            "Content-disposition": f'attachment; filename="{request.query["media_id"]}.{extension}"'})

    # Tokens.

    async def _stable_token(self, request: web.Request) -> web.Response:
        failure = self._take_failure(request.path)
        if failure is not None:
            return self._failure_response(failure)
        body = await self._json_body(request)
        if body is None:
            return self._error(Refusal(47001))
        try:
            self._check_credentials(body.get("appid"), body.get("secret"))
        except Refusal as refusal:
            return self._error(refusal)
        now = self.clock.now()
        current = self._current_token
        if (body.get("force_refresh") is True or current is None
                or self._token_expiry[current] - now <= OLD_TOKEN_GRACE):
            current = self._issue_token(now)
        return self._token_reply(current, now)

    async def _classic_token(self, request: web.Request) -> web.Response:
        failure = self._take_failure(request.path)
        if failure is not None:
            return self._failure_response(failure)
        query = request.query
        try:
            if query.get("grant_type") != "client_credential":
                raise Refusal(40097, "grant_type")
            self._check_credentials(query.get("appid"), query.get("secret"))
        except Refusal as refusal:
            return self._error(refusal)
        # The classic endpoint hands out a new token on every call.
        now = self.clock.now()
        return self._token_reply(self._issue_token(now), now)

    def _check_credentials(self, appid: Any, secret: Any) -> None:
        if appid != self.app_id:
            raise Refusal(40013)
        if secret != self.app_secret:
            raise Refusal(40125)

    def _issue_token(self, now: datetime) -> str:
        previous = self._current_token
        if previous is not None:
            self._superseded.add(previous)
            self._token_expiry[previous] = min(self._token_expiry[previous], now + OLD_TOKEN_GRACE)
        token = secrets.token_urlsafe(48)
        self._token_expiry[token] = now + timedelta(seconds=self.token_ttl)
        self._current_token = token
        return token

    def _token_reply(self, token: str, now: datetime) -> web.Response:
        self.token_fetches += 1
        expires_in = int((self._token_expiry[token] - now).total_seconds())
        return web.json_response({"access_token": token, "expires_in": expires_in})

    def _check_access_token(self, token: str | None, now: datetime) -> None:
        if not token:
            raise Refusal(41001)
        expires_at = self._token_expiry.get(token)
        if expires_at is None:
            raise Refusal(40001)
        if now >= expires_at:
            raise Refusal(40001 if token in self._superseded else 42001)

    # The endpoints that need a token.

    def _endpoint(self, kind: str, handle: Callable[[dict, datetime], dict]):
        async def endpoint(request: web.Request) -> web.Response:
            now = self.clock.now()
            body = await self._json_body(request)
            openid = body.get("touser") if isinstance(body, dict) and isinstance(body.get("touser"), str) else None
            failure = self._take_failure(request.path)
            if failure is not None:
                self.records.append(Record(kind, openid, body or {}, now, failure.errcode))
                return self._failure_response(failure)
            try:
                self._check_access_token(request.query.get("access_token"), now)
                if body is None:
                    raise Refusal(47001)
                result = handle(body, now)
            except Refusal as refusal:
                self.records.append(Record(kind, openid, body or {}, now, refusal.errcode))
                return self._error(refusal)
            self.records.append(Record(kind, openid, body, now, 0))
            return self._json({"errcode": 0, "errmsg": "ok", **result})
        return endpoint

    def _custom_send(self, body: dict, now: datetime) -> dict:
        follower = self._reachable(body.get("touser"))
        msgtype = body.get("msgtype")
        if msgtype not in MESSAGE_TYPES or not isinstance(body.get(msgtype), dict):
            raise Refusal(40008)
        if msgtype == "text" and not body["text"].get("content"):
            raise Refusal(44004)
        open_windows = sorted((w for w in follower.windows.values() if w.until > now), key=lambda w: w.until)
        if not open_windows:
            raise Refusal(45015)
        window = next((w for w in open_windows if w.left > 0), None)
        if window is None:
            raise Refusal(45047)
        self._count_against_quota(now)
        window.left -= 1
        return {}

    def _template_send(self, body: dict, now: datetime) -> dict:
        self._reachable(body.get("touser"))
        if not isinstance(body.get("template_id"), str) or not body["template_id"]:
            raise Refusal(40037)
        data = body.get("data")
        if not isinstance(data, dict):
            raise Refusal(47003, "data")
        for name, entry in data.items():
            value = entry.get("value") if isinstance(entry, dict) else None
            if not isinstance(value, str) or len(value) > 20 or "\n" in value or "\r" in value:
                raise Refusal(47003, f"data.{name}.value invalid")
        self._count_against_quota(now)
        self._next_msgid += 1
        return {"msgid": self._next_msgid}

    def _qrcode_create(self, body: dict, now: datetime) -> dict:
        action = body.get("action_name")
        scene = (body.get("action_info") or {}).get("scene") or {}
        if action in ("QR_STR_SCENE", "QR_LIMIT_STR_SCENE"):
            value = scene.get("scene_str")
            if not isinstance(value, str) or not 1 <= len(value) <= 64:
                raise Refusal(40097, "scene_str")
        elif action in ("QR_SCENE", "QR_LIMIT_SCENE"):
            value = scene.get("scene_id")
            if not isinstance(value, int) or value <= 0:
                raise Refusal(40097, "scene_id")
        else:
            raise Refusal(40097, "action_name")
        ticket = secrets.token_urlsafe(32)
        self.qr_scenes[ticket] = str(value)
        reply = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{secrets.token_urlsafe(16)}"}
        if action in ("QR_SCENE", "QR_STR_SCENE"):
            expire = body.get("expire_seconds", 60)
            if not isinstance(expire, int) or expire <= 0:
                raise Refusal(40097, "expire_seconds")
            reply["expire_seconds"] = min(expire, MAX_QR_EXPIRE)
        return reply

    def _menu_create(self, body: dict, now: datetime) -> dict:
        buttons = body.get("button")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise Refusal(40016)
        for button in buttons:
            if not isinstance(button, dict):
                raise Refusal(40017)
            subs = button.get("sub_button")
            _check_name(button, max_bytes=16, errcode=40018)
            if subs:
                if not isinstance(subs, list) or len(subs) > 5:
                    raise Refusal(40023)
                for sub in subs:
                    if not isinstance(sub, dict):
                        raise Refusal(40024)
                    _check_name(sub, max_bytes=60, errcode=40025)
                    _check_action(sub, errcodes=(40024, 40026, 40027))
            else:
                _check_action(button, errcodes=(40017, 40019, 40020))
        self.menu = body
        return {}

    # Shared rules.

    def _reachable(self, openid: Any) -> _Follower:
        follower = self._followers.get(openid) if isinstance(openid, str) else None
        if follower is None:
            raise Refusal(40003)
        if not follower.following:
            raise Refusal(43004)
        return follower

    def _count_against_quota(self, now: datetime) -> None:
        today = now.astimezone(BEIJING).date()
        sent = self._sent_on[1] if self._sent_on and self._sent_on[0] == today else 0
        if sent >= self.daily_quota:
            raise Refusal(45009)
        self._sent_on = (today, sent + 1)

    @staticmethod
    def _open_window(follower: _Follower, name: str, at: datetime, rule: tuple[timedelta, int]) -> None:
        length, count = rule
        follower.windows[name] = _Window(until=at + length, left=count)

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if path.endswith(failure.path_suffix) and failure.left > 0:
                failure.left -= 1
                return failure
        return None

    def _failure_response(self, failure: _Failure) -> web.Response:
        if failure.status != 200:
            return web.Response(status=failure.status, text="injected failure")
        return self._error(Refusal(failure.errcode))

    @staticmethod
    async def _json_body(request: web.Request) -> dict | None:
        try:
            body = json.loads(_keep_unicode_escapes(await request.text()))
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _error(self, refusal: Refusal) -> web.Response:
        return self._json({"errcode": refusal.errcode, "errmsg": refusal.errmsg})

    @staticmethod
    def _json(payload: dict) -> web.Response:
        return web.json_response(payload, dumps=partial(json.dumps, ensure_ascii=False))


def _check_name(button: dict, *, max_bytes: int, errcode: int) -> None:
    name = button.get("name")
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > max_bytes:
        raise Refusal(errcode)


def _check_action(button: dict, *, errcodes: tuple[int, int, int]) -> None:
    """A leaf button: a known type, and the key or url that type needs (type, key, url error codes)."""
    type_error, key_error, url_error = errcodes
    kind = button.get("type")
    if kind not in BUTTON_TYPES:
        raise Refusal(type_error)
    if kind in ("click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album",
                "pic_weixin", "location_select"):
        key = button.get("key")
        if not isinstance(key, str) or not key or len(key.encode("utf-8")) > 128:
            raise Refusal(key_error)
    if kind in ("view", "miniprogram"):
        url = button.get("url")
        if not isinstance(url, str) or not url or len(url.encode("utf-8")) > 1024:
            raise Refusal(url_error)
