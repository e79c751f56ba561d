"""A local fake WeChat platform: its API (EmulatedApi) and the WeChat server that talks to our webhook.

Playing the server, it builds the XML WeChat would send for a user's message or event, signs it
(and encrypts it in safe mode), posts it to the webhook, waits at most 5 seconds, and retries the
same message up to three times in all, as WeChat does. It reads the passive reply the way the
WeChat app would show it. `zhibu emulator` serves it over HTTP; `zhibu chat` and the tests drive it.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import xmltodict
from aiohttp import web

from bot.clock import Clock
from bot.wechat.emulated_api import EmulatedApi
from bot.wechat.signing import new_nonce, signature, signature_matches
from bot.wechat.xml import cdata_safe

log = logging.getLogger(__name__)

UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"
ACCOUNT_ID = "gh_zhibu0demo"
EMULATOR_APP_KEY = web.AppKey("emulator", "Emulator")


@dataclass
class Delivery:
    """What happened to one message: the text the user saw (None: nothing) and how many posts it took."""

    reply: str | None
    attempts: int
    statuses: list[int | str] = field(default_factory=list)


class WeChatSideCipher:
    """WeChat's end of safe mode, with wechatpy's implementation of the scheme: independent of the server's own
    (bot.wechat.signing), so that every safe-mode exchange through the emulator checks one against the other."""

    def __init__(self, token: str, aes_key: str, app_id: str) -> None:
        from wechatpy.crypto import PrpCrypto, WeChatCrypto  # wechatpy is WeChat's side here, never the server's

        self._crypto = WeChatCrypto(token, aes_key, app_id)
        self._prp = PrpCrypto(self._crypto.key)
        self.app_id = app_id

    def encrypt(self, xml: str, *, timestamp: str, nonce: str) -> str:
        return self._crypto.encrypt_message(xml, nonce, timestamp)

    def decrypt(self, ciphertext: str) -> str:
        return self._prp.decrypt(ciphertext, self.app_id)


class Emulator:
    def __init__(self, *, app_id: str, app_secret: str, token: str, aes_key: str = "",
                 webhook_url: str | None = None, clock: Clock | None = None, reply_timeout: float = 5.0,
                 attempts: int = 3, account_id: str = ACCOUNT_ID) -> None:
        self.clock = clock or Clock()
        self.api = EmulatedApi(app_id=app_id, app_secret=app_secret, clock=self.clock)
        self.token = token
        self.cipher = WeChatSideCipher(token, aes_key, app_id) if aes_key else None
        self.webhook_url = webhook_url
        self.reply_timeout = reply_timeout
        self.attempts = attempts
        self.account_id = account_id
        self._msg_ids = itertools.count(self.clock.timestamp() * 1000)
        self._http: aiohttp.ClientSession | None = None

    # -- lifecycle

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def web_app(self) -> web.Application:
        """The API endpoints plus the control endpoints `zhibu chat` uses."""
        app = web.Application()
        app[EMULATOR_APP_KEY] = self
        self.api.add_routes(app)
        app.router.add_post("/emulator/send", self._control_send)
        app.router.add_get("/emulator/pushed", self._control_pushed)

        async def close_client(_app):
            await self.close()
        app.on_cleanup.append(close_client)
        return app

    # -- what users do

    async def text(self, openid: str, content: str) -> Delivery:
        return await self.send(openid, {"MsgType": "text", "Content": content})

    async def voice(self, openid: str, recognition: str) -> Delivery:
        """A voice message as WeChat sent them before 2023, with its own speech recognition as text."""
        return await self.send(openid, {"MsgType": "voice", "MediaId": f"voice-{next(self._msg_ids)}",
                                        "Format": "amr", "Recognition": recognition})

    async def voice_audio(self, openid: str, audio: bytes, audio_format: str = "amr") -> Delivery:
        """A voice message as WeChat sends them now: the audio uploaded as temporary media, the message
        carrying its MediaId and an empty Recognition."""
        media_id = self.api.add_media(audio, f"audio/{audio_format}")
        return await self.send(openid, {"MsgType": "voice", "MediaId": media_id, "Format": audio_format,
                                        "Recognition": ""})

    async def image(self, openid: str) -> Delivery:
        media = f"image-{next(self._msg_ids)}"
        return await self.send(openid, {"MsgType": "image", "PicUrl": f"http://emulator.local/{media}.jpg",
                                        "MediaId": media})

    async def location(self, openid: str, latitude: float, longitude: float, label: str = "") -> Delivery:
        return await self.send(openid, {"MsgType": "location", "Location_X": latitude, "Location_Y": longitude,
                                        "Scale": 15, "Label": label})

    async def link(self, openid: str, title: str, url: str) -> Delivery:
        return await self.send(openid, {"MsgType": "link", "Title": title, "Description": "", "Url": url})

    async def click(self, openid: str, key: str) -> Delivery:
        return await self.send(openid, {"MsgType": "event", "Event": "CLICK", "EventKey": key})

    async def scan(self, openid: str, scene: str) -> Delivery:
        return await self.send(openid, {"MsgType": "event", "Event": "SCAN", "EventKey": scene, "Ticket": "t"})

    async def subscribe(self, openid: str, scene: str | None = None) -> Delivery:
        fields = {"MsgType": "event", "Event": "subscribe"}
        if scene:
            fields.update(EventKey=f"qrscene_{scene}", Ticket="t")
        return await self.send(openid, fields)

    async def unsubscribe(self, openid: str) -> Delivery:
        return await self.send(openid, {"MsgType": "event", "Event": "unsubscribe"})

    async def send(self, openid: str, fields: dict) -> Delivery:
        """Post one message or event to the webhook as WeChat would, retries included."""
        body_fields = {"ToUserName": self.account_id, "FromUserName": openid, "CreateTime": self.clock.timestamp(),
                       **fields}
        if fields.get("MsgType") != "event":
            body_fields["MsgId"] = next(self._msg_ids)
        return await self.post_xml(message_xml(body_fields))

    async def post_xml(self, plaintext_xml: str, *, url: str | None = None) -> Delivery:
        """Sign (and in safe mode encrypt) a body and post it, retrying like WeChat."""
        url = url or self.webhook_url
        if not url:
            raise RuntimeError("the emulator has no webhook URL to post to")
        self._note_user_activity(plaintext_xml)
        delivery = Delivery(reply=None, attempts=0)
        for _ in range(self.attempts):
            delivery.attempts += 1
            query, body = self.sign(plaintext_xml)
            try:
                async with self._session().post(f"{url}?{urlencode(query)}", data=body.encode("utf-8"),
                                                headers={"Content-Type": "text/xml"},
                                                timeout=aiohttp.ClientTimeout(total=self.reply_timeout)) as response:
                    text = await response.text()
                    delivery.statuses.append(response.status)
            except (TimeoutError, aiohttp.ClientError) as error:
                delivery.statuses.append(type(error).__name__)
                continue
            if response.status >= 500:
                continue
            delivery.reply = self.read_reply(response.status, text)
            return delivery
        delivery.reply = UNAVAILABLE
        return delivery

    def _note_user_activity(self, plaintext_xml: str) -> None:
        """What the user did opens (or closes) their customer-service window on the API side."""
        fields = xmltodict.parse(plaintext_xml)["xml"]
        openid = fields.get("FromUserName") or ""
        if fields.get("MsgType") == "event":
            self.api.user_event(openid, self.clock.now(), str(fields.get("Event") or "").lower())
        else:
            self.api.user_message(openid, self.clock.now())

    def sign(self, plaintext_xml: str) -> tuple[dict, str]:
        timestamp, nonce = str(self.clock.timestamp()), new_nonce()
        query = {"timestamp": timestamp, "nonce": nonce, "signature": signature(self.token, timestamp, nonce)}
        if self.cipher is None:
            return query, plaintext_xml
        envelope = dict(xmltodict.parse(self.cipher.encrypt(plaintext_xml, timestamp=timestamp, nonce=nonce))["xml"])
        query.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
        body = message_xml({"ToUserName": self.account_id, "Encrypt": envelope["Encrypt"]})
        return query, body

    def read_reply(self, status: int, text: str) -> str | None:
        """What the WeChat app shows for this HTTP answer."""
        if status != 200:
            return UNAVAILABLE
        if text in ("", "success"):
            return None
        try:
            fields = xmltodict.parse(text)["xml"]
            if self.cipher is not None:
                # WeChat checks the reply's signature before it decrypts it.
                if not signature_matches((self.token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"]),
                                         fields["MsgSignature"]):
                    raise ValueError("bad MsgSignature on the reply")
                fields = xmltodict.parse(self.cipher.decrypt(fields["Encrypt"]))["xml"]
            if fields.get("MsgType") != "text":
                return UNAVAILABLE
            return fields.get("Content") or ""
        except Exception:
            log.warning("the webhook answered something WeChat cannot show: %.200r", text)
            return UNAVAILABLE

    # -- control endpoints for `zhibu chat`

    async def _control_send(self, request: web.Request) -> web.Response:
        command = await request.json()
        openid = command.pop("openid")
        if "AudioBase64" in command:  # `zhibu chat`'s /语音 @file: upload the audio, send its MediaId
            audio = base64.b64decode(command.pop("AudioBase64"))
            command["MediaId"] = self.api.add_media(audio, f"audio/{command.get('Format', 'amr')}")
        delivery = await self.send(openid, command)
        return web.json_response({"reply": delivery.reply, "attempts": delivery.attempts}, dumps=_readable_json)

    async def _control_pushed(self, request: web.Request) -> web.Response:
        openid = request.query.get("openid", "")
        after = int(request.query.get("after", "0"))
        pushed = [
            {"index": index, "kind": record.kind, "body": record.body}
            for index, record in enumerate(self.api.records)
            if index >= after and record.openid == openid and record.errcode == 0
        ]
        return web.json_response({"pushed": pushed, "next": len(self.api.records)}, dumps=_readable_json)


def _readable_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def message_xml(fields: dict) -> str:
    """WeChat-style XML: numbers bare, strings in CDATA."""
    lines = ["<xml>"]
    for name, value in fields.items():
        if isinstance(value, (int, float)):
            lines.append(f"<{name}>{value}</{name}>")
        else:
            lines.append(f"<{name}><![CDATA[{cdata_safe(str(value))}]]></{name}>")
    lines.append("</xml>")
    return "".join(lines)

