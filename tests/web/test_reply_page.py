"""A reply too long for chat: its last part links to a page with all of it, for the follower it answered."""

from __future__ import annotations

import re
import time

import aiohttp

from bot.dispatch import Command, Router
from bot.web.links import Subject
from bot.wechat.emulator import message_xml
from bot.web.pages import LINKS

# Five chat parts hold about 10 KB; this is more, with line breaks and Chinese punctuation to keep.
LONG = "\n".join(f"第{n}条：村里的事，一件一件说清楚；大家看过后回复 收到。" for n in range(1, 400))


def long_reply_feature() -> Router:
    router = Router("long")

    @router.on(Command("长回复"))
    async def long_reply() -> str:
        return LONG

    return router


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def test_the_last_part_of_a_trimmed_reply_links_to_the_whole_text(make_service):
    service = await make_service(routers=[long_reply_feature()])
    first = await service.say("o-1", "长回复")
    service.clock.advance(seconds=10)  # the later parts are due a second apart
    await service.deliver()
    parts = [first, *service.pushed("o-1")]
    assert len(parts) == 5 and LONG not in "".join(parts)
    match = re.search(r"全文：(\S+)$", parts[-1])
    assert match, parts[-1][-80:]
    status, page = await fetch(match.group(1))
    assert status == 200
    # The page shows every line as it was written (HTML-escaped text, line breaks kept by the stylesheet).
    assert "第399条：村里的事，一件一件说清楚；大家看过后回复 收到。" in page
    assert "第1条：村里的事" in page and page.count("\n第") >= 398


async def test_the_page_of_a_reply_is_only_for_the_follower_it_answered(make_service):
    service = await make_service(routers=[long_reply_feature()])
    await service.say("o-1", "长回复")
    service.clock.advance(seconds=10)
    await service.deliver()
    link = re.search(r"全文：(\S+)$", service.pushed("o-1")[-1]).group(1)
    token = link.rsplit("/", 1)[1]  # names the reply and the follower, signed
    ref = service.app[LINKS].read(token).ref
    for other in (Subject(ref=ref, openid="o-2"), Subject(ref="reply:999999", openid="o-1")):
        status, page = await fetch(service.app[LINKS].url(other))
        assert status == 404 and "这个链接已经失效" in page and "第1条" not in page
    status, page = await fetch(link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"))
    assert status == 404 and "第1条" not in page


async def test_pages_carry_the_security_headers(make_service):
    service = await make_service(routers=[long_reply_feature()])
    async with aiohttp.ClientSession() as http, http.get(f"{service.url}/m/not-a-token") as response:
        assert response.status == 404
        assert "script-src" not in response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
    async with aiohttp.ClientSession() as http, http.get(f"{service.url}/static/zhibu.css") as response:
        assert response.status == 200 and "font-size" in await response.text()
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    async with aiohttp.ClientSession() as http, http.get(f"{service.url}/no/such/page") as response:
        assert response.status == 404 and response.headers["X-Frame-Options"] == "DENY"
    # What only WeChat reads goes without them: the webhook's reply (and the health check).
    query, body = service.emulator.sign(message_xml({
        "ToUserName": "gh", "FromUserName": "u1", "CreateTime": int(time.time()), "MsgType": "text", "Content": "帮助",
        "MsgId": 7001}))
    async with aiohttp.ClientSession() as http, http.post(f"{service.url}/wechat", params=query, data=body.encode(),
                                                          headers={"Content-Type": "text/xml"}) as response:
        assert response.status == 200 and "<xml>" in await response.text()
        assert "Content-Security-Policy" not in response.headers and "X-Frame-Options" not in response.headers


async def test_a_reply_that_fits_has_no_link(make_service):
    service = await make_service(routers=[long_reply_feature()])
    reply = await service.say("o-1", "帮助")
    assert "全文：" not in (reply or "")
