"""The outbound WeChat API client, on aiohttp.

wechatpy's API client is synchronous (requests) in every release and keeps its token per process, so
this small client exists: it shares one access token between processes through storage.tokens,
retries what WeChat calls transient, and turns WeChat's error codes into exceptions whose `reason`
an operator can read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from storage.tokens import TokenRefreshTimeout, TokenStore

log = logging.getLogger(__name__)

MAX_QR_EXPIRE_SECONDS = 30 * 86400
# Where WeChat serves a QR code's image for its ticket.
QR_IMAGE_BASE = "https://mp.weixin.qq.com/cgi-bin/showqrcode"
# A voice message's audio is a minute at most (about 100 KB of AMR); anything far larger is not one.
MAX_MEDIA_BYTES = 4 * 1024 * 1024


class WeChatError(Exception):
    """A call WeChat refused (errcode set) or that never got an answer from it (errcode None).

    transient: the same call may succeed later; the others will fail again until something changes.
    """

    codes: tuple[int, ...] = ()
    transient_by_default = False
    default_reason = "微信接口返回了错误"

    def __init__(self, errcode: int | None, errmsg: str, *, transient: bool | None = None,
                 reason: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.transient = self.transient_by_default if transient is None else transient
        self.reason = reason or self.default_reason
        super().__init__(errcode, errmsg)

    def __str__(self) -> str:
        return f"{self.reason}（errcode={self.errcode}, errmsg={self.errmsg}）"


class TokenInvalid(WeChatError):
    codes = (40001, 40014, 42001)
    default_reason = "接口凭证（access_token）无效或已过期"


class CredentialsRejected(WeChatError):
    codes = (40013, 40125, 40164)
    default_reason = "公众号的 AppID、AppSecret 不对，或本机 IP 不在公众号的白名单里"


class InvalidOpenId(WeChatError):
    codes = (40003,)
    default_reason = "找不到这个微信用户（openid 无效）"


class NotFollowing(WeChatError):
    codes = (43004,)
    default_reason = "对方已取消关注公众号"


class OutsideWindow(WeChatError):
    codes = (45015,)
    default_reason = "对方 48 小时内没有给公众号发过消息，客服消息发不出去，请改用模板消息"


class TooManyMessages(WeChatError):
    codes = (45047,)
    default_reason = "对方上次发消息后，公众号已发满客服消息条数上限，要等对方再发消息"


class QuotaExceeded(WeChatError):
    codes = (45009,)
    default_reason = "今天的接口调用次数已用完，明天再发"


class InvalidTemplate(WeChatError):
    codes = (40037,)
    default_reason = "模板消息的模板 ID 无效"


class InvalidArgument(WeChatError):
    codes = (40007, 40097, 47001, 47003)
    default_reason = "请求内容不符合微信的要求（如模板字段超过 20 个字或含换行）"


class InvalidMenu(WeChatError):
    # 40016–40027: button count, type, name, key and url checks for top and sub buttons.
    codes = tuple(range(40016, 40028))
    default_reason = "菜单不符合微信的要求（最多 3 个一级菜单、每个最多 5 个子菜单，名称和 key 不能为空）"


class SystemBusy(WeChatError):
    codes = (-1,)
    transient_by_default = True
    default_reason = "微信系统繁忙"


class TransportError(WeChatError):
    """No usable answer: the network failed, the request timed out, or the reply was not WeChat's JSON."""

    default_reason = "连不上微信接口或微信接口答非所问"


class TokenUnavailable(WeChatError):
    """Another process is refreshing the token and has not finished; try the message again later."""

    transient_by_default = True
    default_reason = "正在等待其他进程获取接口凭证"


_ERRORS_BY_CODE: dict[int, type[WeChatError]] = {
    code: cls
    for cls in (TokenInvalid, CredentialsRejected, InvalidOpenId, NotFollowing, OutsideWindow, TooManyMessages,
                QuotaExceeded, InvalidTemplate, InvalidArgument, InvalidMenu, SystemBusy)
    for code in cls.codes
}


def error_for(errcode: int, errmsg: str) -> WeChatError:
    """The exception for an errcode WeChat returned; unknown codes give a permanent WeChatError."""
    cls = _ERRORS_BY_CODE.get(errcode)
    if cls is None:
        return WeChatError(errcode, errmsg, reason=f"微信接口返回错误 {errcode}")
    return cls(errcode, errmsg)


@dataclass(frozen=True)
class QRCode:
    ticket: str
    # The content to encode into the QR image (WeChat's short link); the ticket also fetches an image.
    url: str
    expire_seconds: int


class WeChatClient:
    def __init__(self, *, http: aiohttp.ClientSession, app_id: str, app_secret: str, api_base: str,
                 tokens: TokenStore, max_attempts: int = 4, backoff: float = 0.5, timeout: float = 10.0) -> None:
        self._http = http
        self._app_id = app_id
        self._app_secret = app_secret
        self._api_base = api_base.rstrip("/")
        self._tokens = tokens
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send_text(self, openid: str, text: str) -> None:
        await self._call("/cgi-bin/message/custom/send",
                         {"touser": openid, "msgtype": "text", "text": {"content": text}})

    async def send_template(self, openid: str, template_id: str, data: dict[str, str],
                            url: str | None = None) -> int:
        body: dict = {"touser": openid, "template_id": template_id,
                      "data": {name: {"value": value} for name, value in data.items()}}
        if url:
            body["url"] = url
        reply = await self._call("/cgi-bin/message/template/send", body)
        return int(reply["msgid"])

    async def create_qrcode(self, scene: str, expire_seconds: int = MAX_QR_EXPIRE_SECONDS) -> QRCode:
        """A temporary QR code whose scans reach the webhook with this scene string (1–64 characters)."""
        if not 1 <= len(scene) <= 64:
            raise ValueError("a QR scene string has 1 to 64 characters")
        reply = await self._call("/cgi-bin/qrcode/create", {
            "expire_seconds": min(expire_seconds, MAX_QR_EXPIRE_SECONDS),
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}},
        })
        return QRCode(ticket=reply["ticket"], url=reply["url"], expire_seconds=int(reply["expire_seconds"]))

    async def qr_code_url(self, scene: str, expire_seconds: int) -> str:
        """The image address of a new temporary QR code for scene (the Channel a feature sees)."""
        code = await self.create_qrcode(scene, expire_seconds)
        return f"{QR_IMAGE_BASE}?ticket={quote(code.ticket, safe='')}"

    async def create_menu(self, menu: dict) -> None:
        await self._call("/cgi-bin/menu/create", menu)

    async def download_media(self, media_id: str) -> bytes:
        """A temporary media file (a voice message's audio) by its media_id, within WeChat's 3 days; an
        unknown or expired media_id is InvalidArgument (40007)."""
        return await self._call("/cgi-bin/media/get", {"media_id": media_id}, fetch=self._get_media)

    async def _fetch_token(self, force_refresh: bool) -> tuple[str, int]:
        reply = await self._post("/cgi-bin/stable_token", {
            "grant_type": "client_credential", "appid": self._app_id, "secret": self._app_secret,
            "force_refresh": force_refresh,
        })
        try:
            return str(reply["access_token"]), int(reply["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise TransportError(None, "stable_token reply without access_token/expires_in") from None

    async def _call(self, path: str, body: dict, *, fetch=None):
        """POST with the shared token (or fetch(path, body, token)): one forced refresh on a token error,
        backoff on transient errors."""
        attempt = 0
        token_refreshed = False
        failed_token: str | None = None
        while True:
            attempt += 1
            token: str | None = None
            try:
                token = await self._token(failed_token)
                return await (fetch or self._post)(path, body, token)
            except TokenInvalid as exc:
                # token None: the rejection came from fetching the token itself; a refresh won't help.
                if token is None or token_refreshed:
                    self._log_failure(path, attempt, exc)
                    raise
                token_refreshed, failed_token = True, token
                attempt -= 1  # a token refresh does not use up the retries meant for busy servers
            except WeChatError as exc:
                if not exc.transient or isinstance(exc, TokenUnavailable) or attempt >= self._max_attempts:
                    self._log_failure(path, attempt, exc)
                    raise
                log.debug("wechat %s attempt %d failed, retrying: %s", path, attempt, exc)
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))

    async def _token(self, failed_token: str | None) -> str:
        try:
            return await self._tokens.get(self._app_id, self._fetch_token, force=failed_token is not None,
                                          failed_token=failed_token)
        except TokenRefreshTimeout as exc:
            raise TokenUnavailable(None, str(exc)) from exc

    async def _post(self, path: str, body: dict, token: str | None = None) -> dict:
        params = {"access_token": token} if token is not None else None
        # ensure_ascii=False: WeChat shows \uXXXX escapes literally instead of decoding them.
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            async with self._http.post(f"{self._api_base}{path}", params=params, data=payload,
                                       headers={"Content-Type": "application/json; charset=utf-8"},
                                       timeout=self._timeout) as response:
                if response.status != 200:
                    raise TransportError(None, f"HTTP {response.status}", transient=response.status >= 500)
                reply = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransportError(None, f"{type(exc).__name__}: {exc}", transient=True) from exc
        except ValueError as exc:
            raise TransportError(None, f"reply is not JSON: {exc}", transient=True) from exc
        if not isinstance(reply, dict):
            raise TransportError(None, "reply is not a JSON object", transient=True)
        errcode = reply.get("errcode", 0)
        if errcode:
            raise error_for(int(errcode), str(reply.get("errmsg", "")))
        return reply

    async def _get_media(self, path: str, query: dict, token: str) -> bytes:
        """GET a file: its bytes, or WeChat's JSON error in place of the file."""
        try:
            async with self._http.get(f"{self._api_base}{path}", params={"access_token": token, **query},
                                      timeout=self._timeout) as response:
                if response.status != 200:
                    raise TransportError(None, f"HTTP {response.status}", transient=response.status >= 500)
                if response.content_length is not None and response.content_length > MAX_MEDIA_BYTES:
                    raise TransportError(None, f"media of {response.content_length} bytes", transient=False)
                data = await response.content.read(MAX_MEDIA_BYTES + 1)
                is_json = response.content_type in ("application/json", "text/plain")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransportError(None, f"{type(exc).__name__}: {exc}", transient=True) from exc
        if len(data) > MAX_MEDIA_BYTES:
            raise TransportError(None, f"media over {MAX_MEDIA_BYTES} bytes", transient=False)
        if is_json or data[:1] == b"{":
            try:
                reply = json.loads(data)
            except ValueError:
                reply = None
            if isinstance(reply, dict) and reply.get("errcode"):
                raise error_for(int(reply["errcode"]), str(reply.get("errmsg", "")))
        if not data:
            raise TransportError(None, "empty media file", transient=True)
        return data

    @staticmethod
    def _log_failure(path: str, attempts: int, exc: WeChatError) -> None:
        # The path only: the query string carries the access token, which must stay out of logs.
        log.warning("wechat %s failed after %d attempt(s): %s", path, attempts, exc)
