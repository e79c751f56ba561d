"""The webhook as WeChat sees it: signed XML in (plaintext and safe mode), replies out, hostile bodies refused."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlencode

import aiohttp
import pytest
import xmltodict
from sqlalchemy import func, select

from bot.dispatch import Router
from bot.wechat.emulator import UNAVAILABLE, message_xml
from bot.wechat.signing import signature
from storage.models import InboundMessage, SignedRequest, WeChatIdentity

TOKEN = "zhibudemotoken"


async def post_raw(service, body: bytes | str, query: dict | None = None, sign: bool = True) -> tuple[int, str]:
    """POST a body as-is, with a valid plaintext signature unless sign is False."""
    timestamp, nonce = str(service.clock.timestamp()), "n" + hashlib.md5(str(body).encode()).hexdigest()[:8]
    params = {"timestamp": timestamp, "nonce": nonce}
    if sign:
        params["signature"] = signature(TOKEN, timestamp, nonce)
    params.update(query or {})
    data = body.encode("utf-8") if isinstance(body, str) else body
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{service.url}/wechat?{urlencode(params)}", data=data) as response:
            return response.status, await response.text()


async def healthy(service) -> bool:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.url}/healthz") as response:
            return response.status == 200 and (await response.json())["status"] == "ok"


def text_xml(content: str, msg_id: int = 1001, user: str = "u1") -> str:
    return message_xml({"ToUserName": "gh_x", "FromUserName": user, "CreateTime": 1_764_000_000,
                        "MsgType": "text", "Content": content, "MsgId": msg_id})


# ---------------------------------------------------------------- verification


async def test_url_verification_echoes_only_a_genuine_request(service):
    timestamp, nonce = str(service.clock.timestamp()), "abc"
    good = {"timestamp": timestamp, "nonce": nonce, "echostr": "hello123", "signature": signature(TOKEN, timestamp, nonce)}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.url}/wechat", params=good) as response:
            assert (response.status, await response.text()) == (200, "hello123")
        async with http.get(f"{service.url}/wechat", params={**good, "signature": "0" * 40}) as response:
            assert response.status == 403
        stale = str(service.clock.timestamp() - 3600)
        async with http.get(f"{service.url}/wechat", params={**good, "timestamp": stale,
                                                             "signature": signature(TOKEN, stale, nonce)}) as response:
            assert response.status == 403
        async with http.get(f"{service.url}/wechat") as response:
            assert response.status == 400


# ---------------------------------------------------------------- every message type, both modes


@pytest.mark.parametrize("safe", [False, True], ids=["plaintext", "safe"])
async def test_every_message_type_gets_a_sensible_answer(make_service, safe):
    service = await make_service(safe=safe)
    emulator = service.emulator
    assert "欢迎关注" in (await emulator.subscribe("u1")).reply
    assert "帮助" in (await emulator.text("u1", "帮助")).reply
    # A voice message is read through WeChat's speech recognition.
    assert "您可以回复" in (await emulator.voice("u1", "帮助。")).reply
    assert "您可以回复" in (await emulator.click("u1", "HELP")).reply
    for delivery in (await emulator.image("u1"), await emulator.location("u1", 30.27, 120.15, "村委会"),
                     await emulator.link("u1", "一篇文章", "http://example.com/a"),
                     await emulator.send("u1", {"MsgType": "video", "MediaId": "v", "ThumbMediaId": "t"}),
                     await emulator.send("u1", {"MsgType": "shortvideo", "MediaId": "v", "ThumbMediaId": "t"}),
                     await emulator.send("u1", {"MsgType": "miniprogrampage", "Title": "x"})):
        assert delivery.reply == "暂时不能处理这类消息。回复 帮助 查看可以做什么。"
        assert delivery.attempts == 1
    assert "没有听懂" in (await emulator.text("u1", "今天天气怎么样")).reply
    # Events the user did not type are acknowledged silently.
    for fields in ({"Event": "VIEW", "EventKey": "http://example.com"},
                   {"Event": "LOCATION", "Latitude": "30.1", "Longitude": "120.2", "Precision": "50"},
                   {"Event": "TEMPLATESENDJOBFINISH", "MsgID": "200", "Status": "success"},
                   {"Event": "MASSSENDJOBFINISH", "MsgID": "201", "Status": "send success"},
                   {"Event": "SCAN", "EventKey": "unknown-scene", "Ticket": "t"},
                   {"Event": "some_future_event"}):
        service.clock.advance(seconds=1)
        delivery = await emulator.send("u1", {"MsgType": "event", **fields})
        assert delivery.reply is None and delivery.statuses == [200]
    assert (await emulator.unsubscribe("u1")).reply is None
    async with service.sessions() as session:
        identity = await session.get(WeChatIdentity, "u1")
        assert identity.subscribed is False and identity.unsubscribed_at is not None
        recorded = (await session.execute(select(func.count()).select_from(InboundMessage))).scalar()
    assert recorded == 18


async def test_subscribe_through_a_qr_code_keeps_the_scene(make_service):
    seen = []
    router = Router("qr")

    @router.on()
    async def record(message) -> str:
        seen.append((message.event, message.scene))
        return "ok"

    service = await make_service(routers=[router])
    await service.emulator.subscribe("u1", scene="meeting:42")
    service.clock.advance(seconds=1)
    await service.emulator.scan("u1", "meeting:43")
    assert seen == [("subscribe", "meeting:42"), ("scan", "meeting:43")]


# ---------------------------------------------------------------- replies


async def test_reply_with_cdata_terminator_and_control_characters_is_delivered_intact(make_service):
    router = Router("echo")

    @router.on()
    async def echo() -> str:
        return "a]]>b\x07c <tag> & 'quote'"

    service = await make_service(routers=[router])
    assert await service.say("u1", "hi") == "a]]>bc <tag> & 'quote'"


def test_a_passive_reply_reads_as_wechat_reads_it():
    import xmltodict

    from bot.wechat.xml import render_text_reply

    rendered = render_text_reply(to_user="o-user]]>1", from_account="gh_account", text="第一行\n第二行 ]]> <b>&",
                                 timestamp=1765000000)
    assert xmltodict.parse(rendered)["xml"] == {
        "ToUserName": "o-user]]>1", "FromUserName": "gh_account", "CreateTime": "1765000000", "MsgType": "text",
        "Content": "第一行\n第二行 ]]> <b>&"}


async def test_long_reply_is_split_into_wechat_sized_parts(make_service):
    long_text = "\n".join(f"第{i}条：" + "党员应当按时缴纳党费。" * 6 for i in range(60))
    router = Router("long")

    @router.on()
    async def answer() -> str:
        return long_text

    service = await make_service(routers=[router])
    first = await service.say("u1", "长")
    service.clock.advance(seconds=5)  # the parts are due a second apart, so that they arrive in order
    await service.deliver()
    rest = service.pushed("u1")
    assert len(first.encode()) <= 2048 and all(len(part.encode()) <= 2048 for part in rest)
    assert first.startswith("第0条") and 1 <= len(rest) <= 4
    # In order, although the outbox sends concurrently.
    starts = [int(re.match(r"第(\d+)条", part).group(1)) for part in [first, *rest]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    # Nothing is lost silently: either all of it arrives or the last part links to a page with all of it
    # (tests/web/test_reply_page.py opens it).
    joined = "\n".join([first, *rest])
    assert joined.replace("\n", "") == long_text.replace("\n", "") or re.search(r"……\n全文：http\S+/m/\S+$", rest[-1])


# ---------------------------------------------------------------- hostile bodies


HOSTILE_BODIES = {
    "not xml": b"hello",
    "empty": b"",
    "entity expansion": (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                         b"<xml><FromUserName>u</FromUserName><MsgType>text</MsgType><Content>&b;</Content>"
                         b"<MsgId>1</MsgId></xml>"),
    "external entity": (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        b"<xml><FromUserName>u</FromUserName><MsgType>text</MsgType><Content>&x;</Content></xml>"),
    "bare doctype": b"<!DOCTYPE xml><xml><FromUserName>u</FromUserName><MsgType>text</MsgType></xml>",
    "duplicate tags": text_xml("a").replace("</xml>", "<Content>b</Content></xml>").encode(),
    "nested content": text_xml("a").replace("<![CDATA[a]]>", "<b>x</b>").encode(),
    "gbk bytes": text_xml("中文").encode("gbk"),
    "gbk declaration": ('<?xml version="1.0" encoding="gbk"?>' + text_xml("中文")).encode("utf-8"),
    "missing sender": b"<xml><MsgType>text</MsgType><Content>x</Content><MsgId>5</MsgId></xml>",
    "non-numeric msgid": text_xml("a").replace("<MsgId>1001</MsgId>", "<MsgId>1 OR 1=1</MsgId>").encode(),
    "other root": b"<html><FromUserName>u</FromUserName></html>",
    "attribute root": b'<xml a="1"><FromUserName>u</FromUserName><MsgType>text</MsgType></xml>',
    "location out of range": message_xml({"FromUserName": "u", "MsgType": "location", "Location_X": "999",
                                          "Location_Y": "1", "MsgId": 7}).encode(),
    "truncated": text_xml("a")[:-10].encode(),
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
async def test_hostile_bodies_get_a_4xx_and_leave_the_server_healthy(service, name, caplog):
    status, _ = await post_raw(service, HOSTILE_BODIES[name])
    assert 400 <= status < 500
    assert any("webhook rejected" in record.getMessage() for record in caplog.records)
    assert await healthy(service)
    async with service.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(InboundMessage))).scalar() == 0


async def test_oversized_body_is_refused(service):
    status, _ = await post_raw(service, text_xml("x" * 100_000))
    assert status == 413
    assert await healthy(service)


async def test_forged_and_missing_signatures_are_refused(service):
    assert (await post_raw(service, text_xml("帮助"), sign=False))[0] == 403
    assert (await post_raw(service, text_xml("帮助"), query={"signature": "f" * 40}))[0] == 403
    stale = str(service.clock.timestamp() - 10_000)
    query = {"timestamp": stale, "signature": signature(TOKEN, stale, "n1"), "nonce": "n1"}
    assert (await post_raw(service, text_xml("帮助"), query=query))[0] == 403
    assert (await post_raw(service, text_xml("帮助"), query={"timestamp": "abc"}))[0] == 400
    for unusual in ("²", "١٧٦٥٠٠٠٠٠٠"):  # digits to str.isdigit(), not to WeChat
        assert (await post_raw(service, text_xml("帮助"), query={"timestamp": unusual}))[0] == 400


async def test_a_replayed_signature_with_another_body_is_refused_but_a_retry_is_answered(service):
    query, body = service.emulator.sign(text_xml("帮助", msg_id=77))
    async with aiohttp.ClientSession() as http:
        url = f"{service.url}/wechat?{urlencode(query)}"
        async with http.post(url, data=body.encode()) as first:
            first_text = await first.text()
        async with http.post(url, data=body.encode()) as retry:
            assert retry.status == 200 and await retry.text() == first_text
        async with http.post(url, data=text_xml("我的", msg_id=78).encode()) as forged:
            assert forged.status == 403


async def test_safe_mode_refuses_plaintext_bad_signatures_and_garbage(make_service):
    service = await make_service(safe=True)
    assert (await post_raw(service, text_xml("帮助")))[0] == 403
    query, body = service.emulator.sign(text_xml("帮助", msg_id=9))
    assert (await post_raw(service, body, query={**query, "msg_signature": "0" * 40}))[0] == 403
    timestamp, nonce = str(service.clock.timestamp()), "zz"
    garbage = message_xml({"ToUserName": "gh", "Encrypt": "bm90IHJlYWxseSBlbmNyeXB0ZWQ="})
    query = {"timestamp": timestamp, "nonce": nonce, "encrypt_type": "aes", "signature": signature(TOKEN, timestamp, nonce),
             "msg_signature": signature(TOKEN, timestamp, nonce, "bm90IHJlYWxseSBlbmNyeXB0ZWQ=")}
    assert (await post_raw(service, garbage, query=query, sign=False))[0] == 400
    assert await healthy(service)
    assert "您可以回复" in await service.say("u1", "帮助")


async def test_safe_mode_answers_a_signature_once_per_message_without_recording_it(make_service):
    # msg_signature covers the ciphertext: the same query can only carry the same message again, which the inbound
    # log answers from its stored reply; another message under it fails the signature. Nothing else to remember.
    service = await make_service(safe=True)
    query, body = service.emulator.sign(text_xml("帮助", msg_id=88))
    first = await post_raw(service, body, query=query, sign=False)
    assert first[0] == 200 and "您可以回复" in service.emulator.read_reply(*first)
    ciphertext = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", body).group(1)
    other_envelope = message_xml({"ToUserName": "gh_other", "Encrypt": ciphertext})
    again = await post_raw(service, other_envelope, query=query, sign=False)
    assert again[0] == 200 and service.emulator.read_reply(*again) == service.emulator.read_reply(*first)
    _, forged = service.emulator.sign(text_xml("我的", msg_id=89))
    assert (await post_raw(service, forged, query=query, sign=False))[0] == 403
    async with service.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(InboundMessage))).scalar() == 1
        assert (await session.execute(select(func.count()).select_from(SignedRequest))).scalar() == 0


async def test_a_message_encrypted_for_another_account_is_refused(make_service):
    from bot.wechat.signing import MessageCipher

    service = await make_service(safe=True)
    other = MessageCipher(TOKEN, "B" * 43, "wx-someone-else")
    timestamp, nonce = str(service.clock.timestamp()), "n2"
    envelope = xmltodict.parse(other.encrypt(text_xml("帮助"), timestamp=timestamp, nonce=nonce))["xml"]
    query = {"timestamp": timestamp, "nonce": nonce, "encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}
    status, _ = await post_raw(service, message_xml({"Encrypt": envelope["Encrypt"]}), query=query, sign=False)
    assert status == 400


async def test_unreachable_webhook_shows_the_user_wechats_apology(make_service):
    service = await make_service(reply_timeout=0.5)
    service.emulator.webhook_url = "http://127.0.0.1:9/wechat"
    delivery = await service.emulator.text("u1", "帮助")
    assert delivery.reply == UNAVAILABLE and delivery.attempts == 3

