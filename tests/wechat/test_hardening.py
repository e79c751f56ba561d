"""What an outside probe broke: one bad message failing its neighbours, a captured signed URL speaking for
someone else, a body arriving in pieces, numbers that are not numbers."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest
import xmltodict
from sqlalchemy import func, select

from bot.dispatch import SORRY, Command, Router, intake_rows
from bot.group_commit import GroupCommit
from bot.wechat.emulator import message_xml
from storage import inbound
from storage.driver import PooledTransaction
from storage.models import InboundMessage, InboundStatus, SignedRequest
from storage.signed_requests import Seen

from harness import SQLITE_ONLY
from test_webhook import healthy, post_raw, text_xml

HELP_REPLY = "您可以回复"


async def statuses(service) -> dict[str, int]:
    async with service.sessions() as session:
        rows = (await session.execute(select(InboundMessage.status, func.count()).group_by(InboundMessage.status))).all()
    return dict(rows)


# ---------------------------------------------------------------- one bad message never fails its neighbours


async def test_an_overlong_event_key_or_msgid_among_concurrent_messages_fails_nothing_else(service):
    oauth_url = "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx0&redirect_uri=" + "x" * 180 + \
                "&response_type=code&scope=snsapi_base&state=menu#wechat_redirect"
    assert len(oauth_url) > 236
    view = message_xml({"ToUserName": "gh_x", "FromUserName": "tapper", "CreateTime": service.clock.timestamp(),
                        "MsgType": "event", "Event": "VIEW", "EventKey": oauth_url})
    huge_id = text_xml("帮助", user="forger").replace("<MsgId>1001</MsgId>", f"<MsgId>{'9' * 250}</MsgId>")
    ordinary = [text_xml("帮助", msg_id=5000 + index, user=f"user{index}") for index in range(40)]

    results = await asyncio.gather(post_raw(service, view), post_raw(service, huge_id),
                                   *(post_raw(service, body) for body in ordinary))

    (view_status, view_text), (huge_status, _), *answers = results
    assert (view_status, view_text) == (200, "success")
    assert huge_status == 400
    for status, text in answers:
        assert status == 200 and HELP_REPLY in xmltodict.parse(text)["xml"]["Content"]
    await service.dispatcher.drain()
    # Each ordinary message once, and the menu tap; nothing failed.
    assert await statuses(service) == {InboundStatus.DONE.value: 41}


async def test_a_batch_that_cannot_be_written_is_retried_row_by_row(sessions, caplog):
    claims = GroupCommit(functools.partial(intake_rows, sessions), name="test claims")
    now = datetime.now(timezone.utc)
    good = [inbound.claim_row(dedup_key=f"msg:u{index}:{index}", openid=f"u{index}", kind="text", payload={},
                              now=now) for index in range(40)]
    poison = {**good[0], "dedup_key": "msg:poison:1", "payload": None}  # NOT NULL: this row cannot be written

    results = await asyncio.gather(*(claims.submit((row, None)) for row in [*good[:20], poison, *good[20:]]),
                                   return_exceptions=True)

    failed = [result for result in results if isinstance(result, Exception)]
    assert len(failed) == 1
    assert all(result.claimed for result in results if not isinstance(result, Exception))
    assert "writing its rows one by one" in caplog.text
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(InboundMessage))).scalar() == 40


# ---------------------------------------------------------------- a captured signed URL cannot speak for anyone


async def _post(url: str, query: dict, body: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/wechat?{urlencode(query)}", data=body.encode()) as response:
            return response.status, await response.text()


async def test_a_captured_query_replayed_to_another_process_or_after_a_restart_is_refused(make_service):
    first = await make_service()
    second = await make_service()  # another process on the same database
    query, genuine = first.emulator.sign(text_xml("帮助", msg_id=77, user="member-a"))
    status, reply = await _post(first.url, query, genuine)
    assert status == 200 and HELP_REPLY in reply

    forged = text_xml("新绑定码 王秀英", msg_id=78, user="secretary")
    assert (await _post(second.url, query, forged))[0] == 403
    # WeChat's own retry of the genuine body reaches the other process: answered, from the log.
    assert await _post(second.url, query, genuine) == (200, reply)

    restarted = await make_service()
    assert (await _post(restarted.url, query, forged))[0] == 403
    async with first.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(InboundMessage))).scalar() == 1


async def test_signed_requests_older_than_the_window_are_forgotten(service, monkeypatch):
    from storage import signed_requests

    monkeypatch.setattr(signed_requests, "FORGET_BATCH", 2)  # five old queries: forgotten two at a time
    for msg_id in range(92, 96):
        assert (await _post(service.url, *service.emulator.sign(text_xml("帮助", msg_id=msg_id))))[0] == 200
    query, body = service.emulator.sign(text_xml("帮助", msg_id=91))
    assert (await _post(service.url, query, body))[0] == 200
    service.clock.advance(seconds=3 * service.settings.timestamp_window)
    await service.say("u9", "帮助")  # any later request prunes, at most once a minute, beside the requests
    for _ in range(100):
        async with service.sessions() as session:
            remembered = (await session.execute(select(func.count()).select_from(SignedRequest))).scalar()
        if remembered == 1:
            break
        await asyncio.sleep(0.05)
    assert remembered == 1  # only the newest
    # The old query is still refused: its timestamp is outside the window.
    assert (await _post(service.url, query, body))[0] == 403


async def test_a_msgid_reused_by_another_sender_gets_its_own_answer(service):
    assert HELP_REPLY in (await post_raw(service, text_xml("帮助", msg_id=500, user="first")))[1]
    status, text = await post_raw(service, text_xml("我的", msg_id=500, user="second"))
    assert status == 200
    reply = xmltodict.parse(text)["xml"]
    assert reply["ToUserName"] == "second" and HELP_REPLY not in reply["Content"]
    assert "绑定" in reply["Content"]


async def test_plaintext_mode_warns_once_at_start_up(make_service, caplog):
    with caplog.at_level(logging.WARNING):
        await make_service()
        plaintext_warnings = [r for r in caplog.records if "plaintext mode" in r.getMessage()]
        await make_service(safe=True)
    assert len(plaintext_warnings) == 1 and "safe mode" in plaintext_warnings[0].getMessage()
    assert len([r for r in caplog.records if "plaintext mode" in r.getMessage()]) == 1


# ---------------------------------------------------------------- the whole body, however it arrives


async def test_an_encrypted_message_written_in_pieces_with_pauses_is_handled(make_service):
    service = await make_service(safe=True)
    question = "请问" + "党员" * 700 + "怎么交党费"
    query, body = service.emulator.sign(text_xml(question, msg_id=4242, user="slow"))
    payload = body.encode()
    assert len(payload) > 4700
    target = urlsplit(service.url)
    reader, writer = await asyncio.open_connection(target.hostname, target.port)
    head = (f"POST /wechat?{urlencode(query)} HTTP/1.1\r\nHost: {target.netloc}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    writer.write(head)
    for start in range(0, len(payload), 1460):  # one TCP segment at a time, 2 ms apart
        await writer.drain()
        await asyncio.sleep(0.002)
        writer.write(payload[start:start + 1460])
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    assert b" 200 " in status_line, response[:200]
    reply = service.emulator.read_reply(200, rest.split(b"\r\n\r\n", 1)[1].decode())
    assert reply and "没有收到" not in reply


# ---------------------------------------------------------------- numbers that are not numbers

NOT_NUMBERS = ["inf", "-inf", "nan", "NaN", "1e400", "-1e400", "²", "１２", "١٢", "9" * 30, "9" * 300, "",
               " ", "0x10", "1_000", "-0", "1e-400", "3.5", "+7", "12abc"]
NUMERIC_FIELDS = {
    "text": ({"MsgType": "text", "Content": "帮助"}, ["MsgId", "CreateTime"]),
    "location": ({"MsgType": "location", "Location_X": "30.27", "Location_Y": "120.15", "Scale": "15",
                  "Label": "村委会"}, ["Location_X", "Location_Y", "Scale"]),
    "location event": ({"MsgType": "event", "Event": "LOCATION", "Latitude": "30.2", "Longitude": "120.1",
                        "Precision": "65"}, ["Latitude", "Longitude", "Precision", "CreateTime"]),
    "mass send report": ({"MsgType": "event", "Event": "MASSSENDJOBFINISH", "MsgID": "1000001625",
                          "Status": "send success", "TotalCount": "3", "SentCount": "3", "ErrorCount": "0"},
                         ["MsgID", "TotalCount", "SentCount", "ErrorCount"]),
    "meeting code scan": ({"MsgType": "event", "Event": "SCAN", "EventKey": "meeting:1"}, ["EventKey"]),
    "meeting code follow": ({"MsgType": "event", "Event": "subscribe", "EventKey": "qrscene_meeting:1"},
                            ["EventKey"]),
}


@pytest.mark.parametrize("kind", NUMERIC_FIELDS)
async def test_every_numeric_field_fuzzed_gets_a_4xx_or_a_polite_reply(make_service, kind):
    service = await make_service()
    await service.bind("fuzzer", "王秀英")
    base, fields = NUMERIC_FIELDS[kind]
    msg_id = 10_000
    for field in fields:
        for value in NOT_NUMBERS:
            msg_id += 1
            service.clock.advance(seconds=1)
            if field == "EventKey":
                value = base["EventKey"].replace("1", value or "0")
            message = {"ToUserName": "gh_x", "FromUserName": "fuzzer", "CreateTime": service.clock.timestamp(),
                       **base, field: value}
            if base["MsgType"] != "event" and field != "MsgId":
                message["MsgId"] = msg_id
            status, text = await post_raw(service, message_xml(message))
            assert status < 500, (field, value, status, text)
            if status == 200 and text != "success":
                assert xmltodict.parse(text)["xml"]["Content"] != SORRY, (field, value)
    await service.dispatcher.drain()
    assert InboundStatus.FAILED.value not in await statuses(service)
    assert await healthy(service)
    assert HELP_REPLY in await service.say("fuzzer", "帮助")


def test_a_signed_request_key_is_fixed_length_whatever_the_query_holds():
    seen = Seen.of(timestamp="1" * 12, nonce="n" * 5000, signature="s" * 5000, body="x",
                   at=datetime.now(timezone.utc))
    assert len(seen.key) == 64 and seen.body_digest == hashlib.sha256(b"x").hexdigest()
    # Led by the time, so that a moment's requests are recorded side by side; the rest still tells queries apart.
    early, late = (Seen.of(timestamp=moment, nonce="n", signature="s", body="x", at=datetime.now(timezone.utc))
                   for moment in ("1765000000", "1765000001"))
    assert early.key < late.key and early.key.startswith("001765000000") and len(early.key) == 64
    assert Seen.of(timestamp="1765000000", nonce="m", signature="s", body="x", at=early.at).key != early.key


async def test_a_batch_of_signed_requests_admits_each_query_with_its_first_body_only(engine):
    from storage.signed_requests import admit_many

    now = datetime.now(timezone.utc)

    def seen(nonce: str, body: str) -> Seen:
        return Seen.of(timestamp="1765000000", nonce=nonce, signature="s", body=body, at=now)

    assert await admit_many(engine, [seen("b", "first")]) == [True]
    # New and seen before, each again in the same batch with the same body and with another.
    assert await admit_many(engine, [seen("a", "one"), seen("a", "one"), seen("a", "other"), seen("b", "first"),
                                     seen("b", "forged")]) == [True, True, False, True, False]
    assert await admit_many(engine, [seen("a", "one"), seen("a", "other")]) == [True, False]


async def test_one_transaction_admits_a_batch_s_queries_and_claims_only_the_admitted_messages(sessions):
    now = datetime.now(timezone.utc)

    def seen(nonce: str, body: str) -> Seen:
        return Seen.of(timestamp="1765000000", nonce=nonce, signature="s", body=body, at=now)

    def row(number: int) -> dict:
        return inbound.claim_row(dedup_key=f"msg:{number:020d}:u{number}", openid=f"u{number}", kind="text",
                                 payload={}, now=now)

    assert (await intake_rows(sessions, [(row(1), seen("a", "one"))]))[0].claimed
    results = await intake_rows(sessions, [
        (row(2), seen("a", "forged")),  # a captured query with another body: refused, its message not recorded
        (None, seen("a", "one")),  # WeChat's retry of a message in flight here: admitted, nothing to claim
        (row(3), seen("b", "three")),
        (row(4), None),  # safe mode: nothing to admit
        (row(1), seen("c", "one")),  # a copy that another handling claimed first
    ])
    assert results[0] is False and results[1] is True
    assert results[2].claimed and results[3].claimed
    assert not results[4].claimed and results[4].existing.dedup_key == row(1)["dedup_key"]
    async with sessions() as session:
        keys = set((await session.execute(select(InboundMessage.dedup_key))).scalars())
        remembered = (await session.execute(select(func.count()).select_from(SignedRequest))).scalar()
    assert keys == {row(number)["dedup_key"] for number in (1, 3, 4)}
    assert remembered == 3  # a, b and c: the forged body left nothing behind


def _held_router(command: str, reply: str) -> tuple[Router, asyncio.Event, asyncio.Event]:
    """A router whose command, once its handling has started (the first event), waits for the second event
    before it replies: the handling's transaction stays open meanwhile."""
    started, release = asyncio.Event(), asyncio.Event()
    router = Router("held")

    @router.on(Command(command))
    async def hold(message) -> str:
        started.set()
        await release.wait()
        return reply

    return router, started, release


async def test_a_forged_body_under_a_captured_query_is_refused_while_the_genuine_message_is_handled(make_service):
    # The genuine message is still being handled: a copy of it (its key) under the same query with another body
    # must not share its handling, and another message under that query must not be recorded.
    router, started, release = _held_router("记一下", "记下了")
    service = await make_service(routers=[router])
    query, genuine = service.emulator.sign(text_xml("记一下", msg_id=301, user="member-a"))
    first = asyncio.create_task(_post(service.url, query, genuine))
    await asyncio.wait_for(started.wait(), 10)
    same_message = text_xml("新绑定码 王秀英", msg_id=301, user="member-a")
    other_message = text_xml("新绑定码 王秀英", msg_id=302, user="secretary")
    # Sent while the genuine one is in flight (on SQLite its handling holds the one connection, so they are
    # decided once it lets go).
    forged = [asyncio.create_task(_post(service.url, query, body)) for body in (same_message, other_message)]
    await asyncio.sleep(0.3)
    release.set()
    assert [(await task)[0] for task in forged] == [403, 403]
    status, reply = await first
    assert status == 200 and "记下了" in reply
    assert await _post(service.url, query, genuine) == (200, reply)  # WeChat's retry: the stored answer
    async with service.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(InboundMessage))).scalar() == 1


async def test_a_plaintext_message_costs_two_transactions_its_claim_with_its_query_and_its_handling(service,
                                                                                                      monkeypatch):
    begun = PooledTransaction.begin.__func__
    count = []

    async def counted(cls, engine):
        count.append(engine)
        return await begun(cls, engine)

    monkeypatch.setattr(PooledTransaction, "begin", classmethod(counted))
    status, text = await post_raw(service, text_xml("帮助", msg_id=401))
    assert status == 200 and HELP_REPLY in text
    await service.dispatcher.drain()
    assert len(count) == 2
    async with service.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(SignedRequest))).scalar() == 1


@SQLITE_ONLY
async def test_a_genuine_copy_that_joined_a_refused_one_is_handled_on_its_own(make_service):
    # A forged request (a captured query, another body) happens to carry the key of a message WeChat is about to
    # send: the genuine request joins it in flight, is admitted on its own, and must not share its refusal.
    router, started, release = _held_router("等一下", "好了")

    @router.on(Command("记一下"))
    async def note(message) -> str:
        return "记下了"

    service = await make_service(routers=[router])
    captured, genuine_first = service.emulator.sign(text_xml("记一下", msg_id=600, user="member-a"))
    assert (await _post(service.url, captured, genuine_first))[0] == 200
    # SQLite's one connection is held by a handling, so both requests below wait for it in order.
    holding = asyncio.create_task(service.emulator.post_xml(text_xml("等一下", msg_id=601, user="member-b")))
    await asyncio.wait_for(started.wait(), 10)
    wanted = text_xml("记一下", msg_id=602, user="member-a")
    forged = asyncio.create_task(_post(service.url, captured, text_xml("新绑定码 王秀英", msg_id=602, user="member-a")))
    await asyncio.sleep(0.2)
    query, body = service.emulator.sign(wanted)
    genuine = asyncio.create_task(_post(service.url, query, body))
    await asyncio.sleep(0.2)
    release.set()
    assert (await forged)[0] == 403
    status, reply = await genuine
    assert status == 200 and "记下了" in reply
    await holding
    async with service.sessions() as session:
        keys = list((await session.execute(select(InboundMessage.dedup_key))).scalars())
    assert len(keys) == 3 and sum("602" in key for key in keys) == 1
