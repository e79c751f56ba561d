"""The webhook WeChat calls: verify, decrypt, parse, hand the Message to the dispatcher, render the reply.

Every request that is not a genuine message ends in a 4xx with one log line saying why; nothing a
sender puts in a request can produce a 500.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from bot.clock import Clock
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.wechat import xml
from bot.wechat.signing import MessageCipher, new_nonce, signature_matches
from storage import signed_requests
from storage.db import short_error
from storage.signed_requests import Replayed, Seen

log = logging.getLogger(__name__)

SUCCESS = "success"  # tells WeChat "received, nothing to show, do not retry"
BUSY_REPLY = "系统繁忙，这条消息没有收到，请过一会儿再发一次。"


# Where WeChat posts messages and events (the account's server URL).
WEBHOOK_PATH = "/wechat"


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Webhook:
    def __init__(self, settings: Settings, dispatcher: Dispatcher, clock: Clock) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.clock = clock
        self.cipher = (MessageCipher(settings.wechat_token, settings.wechat_aes_key, settings.wechat_app_id)
                       if settings.safe_mode else None)
        self._last_pruned: float = 0.0
        self._pruning: asyncio.Task | None = None
        if self.cipher is None:
            log.warning("plaintext mode: message bodies are not signed, only the query string is; anyone who "
                        "reads a logged URL can try to replay it. Set ZHIBU_WECHAT_AES_KEY and choose safe "
                        "mode (安全模式) in the account's server settings.")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(WEBHOOK_PATH, self.verify)
        app.router.add_post(WEBHOOK_PATH, self.receive)

    # -- checks shared by GET and POST

    def _check_timestamp(self, query) -> str:
        timestamp = query.get("timestamp", "")
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses (a 500), and "١٢", which it reads.
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            raise Rejected(400, "missing or malformed timestamp")
        if abs(self.clock.timestamp() - int(timestamp)) > self.settings.timestamp_window:
            raise Rejected(403, f"timestamp {timestamp} outside the {self.settings.timestamp_window}s window")
        return timestamp

    def _check_plain_signature(self, query, timestamp: str) -> None:
        nonce = query.get("nonce", "")
        if not signature_matches((self.settings.wechat_token, timestamp, nonce), query.get("signature", "")):
            raise Rejected(403, "bad or missing signature")

    # -- GET: the URL verification when the account's server settings are saved

    async def verify(self, request: web.Request) -> web.Response:
        try:
            timestamp = self._check_timestamp(request.query)
            self._check_plain_signature(request.query, timestamp)
            echostr = request.query.get("echostr", "")
            if not echostr or len(echostr) > 256:
                raise Rejected(400, "missing or oversized echostr")
        except Rejected as rejected:
            log.warning("webhook verification rejected from %s: %s", request.remote, rejected.reason)
            return web.Response(status=rejected.status, text=rejected.reason)
        log.info("webhook URL verified")
        return web.Response(text=echostr)

    # -- POST: a message or event

    async def receive(self, request: web.Request) -> web.Response:
        # WeChat's five seconds started before this request was read; the reply budget counts from here.
        arrived = asyncio.get_running_loop().time()
        try:
            body = await self._read_body(request)
            timestamp = self._check_timestamp(request.query)
            plaintext, encrypted = self._open(request.query, body, timestamp)
            message = xml.parse(plaintext)
        except Rejected as rejected:
            log.warning("webhook rejected from %s: %s", request.remote, rejected.reason)
            return web.Response(status=rejected.status, text=rejected.reason)
        except xml.BadMessage as bad:
            log.warning("webhook rejected from %s: %s", request.remote, bad)
            return web.Response(status=400, text="bad message")

        # In safe mode msg_signature covers the ciphertext, so a query can only come again with the same message,
        # which the inbound log answers once; only a signature that leaves the body open needs the record. It is
        # written with the message's claim, in the same transaction (bot.dispatch.intake_rows).
        signed = None if encrypted else self._signed(request.query, timestamp, body)
        try:
            reply = await self.dispatcher.feed(message, arrived=arrived, signed=signed)
        except Replayed:
            log.warning("webhook rejected from %s: replayed signature with a different body", request.remote)
            return web.Response(status=403, text="replayed signature with a different body")
        except Exception:
            log.exception("message %s could not be recorded", message.dedup_key)
            reply = BUSY_REPLY
        if reply is None:
            return web.Response(text=SUCCESS)
        rendered = xml.render_text_reply(to_user=message.user_id, from_account=message.account_id, text=reply,
                                         timestamp=self.clock.timestamp())
        if encrypted:
            rendered = self.cipher.encrypt(rendered, timestamp=str(self.clock.timestamp()), nonce=new_nonce())
        return web.Response(text=rendered, content_type="application/xml")

    def _signed(self, query, timestamp: str, body: str) -> Seen:
        """The request's signed query, to be admitted with its message; once a minute, old ones are forgotten."""
        signature = query.get("msg_signature") or query.get("signature") or ""
        now = self.clock.timestamp()
        if now - self._last_pruned > 60 and (self._pruning is None or self._pruning.done()):
            self._last_pruned = now
            # Beside the requests, not in their way: a minute's old rows, deleted in the connection's thread.
            self._pruning = asyncio.create_task(self._prune())
        return Seen.of(timestamp=timestamp, nonce=query.get("nonce", ""), signature=signature, body=body,
                       at=self.clock.now())

    async def _prune(self) -> None:
        cutoff = self.clock.now() - signed_requests.retention(self.settings.timestamp_window)
        try:
            # A transaction a piece (signed_requests.FORGET_BATCH), so that messages are not held up behind one long one.
            batch = signed_requests.FORGET_BATCH
            while True:
                async with self.dispatcher.sessions() as session, session.begin():
                    forgotten = await signed_requests.forget_before(session, cutoff, limit=batch)
                if forgotten < batch:
                    return
        except Exception as error:  # the next minute tries again; the table only grows meanwhile
            log.warning("could not forget old signed requests (%s)", short_error(error))

    async def _read_body(self, request: web.Request) -> str:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Rejected(413, f"body of {request.content_length} bytes over the {limit}-byte limit")
        # Read to the end: a body may arrive in several segments, and read(n) returns what has arrived.
        raw = bytearray()
        async for chunk in request.content.iter_any():
            raw += chunk
            if len(raw) > limit:
                raise Rejected(413, f"body over the {limit}-byte limit")
        if not raw:
            raise Rejected(400, "empty body")
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as error:
            raise Rejected(400, f"body is not UTF-8 ({error.reason} at byte {error.start})") from error

    def _open(self, query, body: str, timestamp: str) -> tuple[str, bool]:
        """The plaintext XML and whether the reply must be encrypted; checks the right signature."""
        if query.get("encrypt_type", "raw").lower() == "aes":
            if self.cipher is None:
                # Compatible mode with no key configured: the body carries the plaintext too.
                self._check_plain_signature(query, timestamp)
                return body, False
            envelope = xml.read_xml(body)
            ciphertext = envelope.get("Encrypt")
            if not isinstance(ciphertext, str) or not ciphertext:
                raise Rejected(400, "encrypted request without <Encrypt>")
            parts = (self.settings.wechat_token, timestamp, query.get("nonce", ""), ciphertext)
            if not signature_matches(parts, query.get("msg_signature", "")):
                raise Rejected(403, "bad or missing msg_signature")
            try:
                return self.cipher.decrypt(ciphertext), True
            except ValueError as error:
                raise Rejected(400, str(error)) from error
        if self.cipher is not None:
            raise Rejected(403, "plaintext request while safe mode is configured")
        self._check_plain_signature(query, timestamp)
        return body, False
