"""The notices feature's console pages (handlers/notices/console.py) and the Q&A feature's content page
(handlers/qa.py, /console/content) over HTTP, signed in by a scan through the emulator, on SQLite and
PostgreSQL.

红旗村's secretary 李建国 sends a notice to the whole branch: 王秀英 answers 收到, 刘小梅's copy could not be
delivered (she unfollowed), 赵德明 never bound WeChat.
"""

from __future__ import annotations

import html
import io
import re

from sqlalchemy import select, update

from bot.outbox import UNFOLLOWED
from storage.models import AuditEntry, Member, Notice, OutboxMessage, OutboxStatus
from test_console_auth import browsers, console_service, location, rows, sign_in_by_scan  # noqa: F401

TEXT = "明天上午9点在村委会开党员大会，\n请准时参加。\n=SUM(1,2)"


async def notice_sent(service, people) -> int:
    secretary = people["李建国"]
    for text in ("发通知", TEXT, "1", "1"):
        await service.say(secretary, text)
    await service.deliver()
    assert (await service.say(people["王秀英"], "收到")).startswith("已确认收到")
    async with service.sessions() as session, session.begin():
        notice_id = (await session.execute(select(Notice.id))).scalar_one()
        liu = (await session.execute(select(Member.id).where(Member.name == "刘小梅"))).scalar_one()
        await session.execute(update(OutboxMessage).where(OutboxMessage.ref == f"notice:{notice_id}",
                                                           OutboxMessage.member_id == liu)
                              .values(status=OutboxStatus.FAILED.value, error=UNFOLLOWED))
    return notice_id


async def signed_in(service, browsers, openid: str):
    browser = browsers(service)
    await sign_in_by_scan(service, browser, openid)
    return browser


def row_of(page: str, name: str) -> str:
    match = re.search(r"<tr>\s*<td>" + re.escape(name) + r"</td>(.*?)</tr>", page, re.S)
    assert match, page
    return match.group(1)


def cells(row: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


async def download(browser, path: str) -> tuple[int, bytes, dict]:
    async with browser.http.get(browser.base + path, allow_redirects=False) as response:
        return response.status, await response.read(), dict(response.headers)


async def test_township_staff_see_a_village_notice_its_counts_and_each_recipient(make_service, browsers):
    service, people = await console_service(make_service)
    notice_id = await notice_sent(service, people)
    town = await signed_in(service, browsers, people["周晓燕"])

    status, page, _ = await town.get("/console/")
    assert status == 200 and 'href="/console/notices"' in page and 'href="/console/content"' in page

    status, page, _ = await town.get("/console/notices")
    assert status == 200, page
    line = re.search(r'<tr data-notice="' + str(notice_id) + r'">(.*?)</tr>', page, re.S).group(1)
    # time, organization, sender, audience, excerpt, then 人数 送达 待发送 未送达 未绑定 收到
    found = cells(line)
    assert found[1:4] == ["红旗村党支部", "李建国", "红旗村党支部全体党员"]
    assert found[4].startswith("明天上午9点在村委会开党员大会， 请准时参加。")
    assert found[5:] == ["5", "3", "0", "1", "1", "1"]

    status, page, _ = await town.get(f"/console/notices/{notice_id}")
    assert status == 200, page
    assert f'<p class="record">{html.escape(TEXT)}</p>' in page  # as written, line breaks kept (pre-wrap)
    assert "共 5 人：送达 3，待发送 0，未送达 1，未绑定 1，已回复收到 1" in page
    async with service.sessions() as session:
        acknowledged_at = (await session.execute(
            select(OutboxMessage.acknowledged_at).where(OutboxMessage.acknowledged_at.is_not(None)))).scalar_one()
    local = service.settings.local(acknowledged_at)
    assert cells(row_of(page, "王秀英"))[1] == "送达"
    assert f"{local:%H:%M}" in cells(row_of(page, "王秀英"))[2] and "年" in cells(row_of(page, "王秀英"))[2]
    assert cells(row_of(page, "刘小梅"))[1:] == [f"未送达（{UNFOLLOWED}）", "—"]
    assert cells(row_of(page, "赵德明"))[1:] == ["未绑定", "—"]
    assert cells(row_of(page, "张卫东"))[1:] == ["送达", "—"]

    status, body, headers = await download(town, f"/console/notices/{notice_id}.xlsx")
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.openxmlformats")
    from openpyxl import load_workbook
    sheet = load_workbook(io.BytesIO(body)).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[2] == ["姓名", "支部", "状态", "原因", "收到时间"]
    table = {row[0]: row for row in values[3:]}
    assert set(table) == {"王秀英", "张卫东", "刘小梅", "陈志强", "赵德明"}
    assert table["刘小梅"][2:4] == ["未送达", UNFOLLOWED]
    assert table["王秀英"][4] == f"{local:%Y-%m-%d %H:%M}"
    assert not any(cell.data_type == "f" for row in sheet.iter_rows() for cell in row)

    status, body, headers = await download(town, f"/console/notices/{notice_id}.csv")
    assert status == 200 and body.startswith("\ufeff".encode())
    assert "赵德明,红旗村党支部,未绑定,," in body.decode("utf-8-sig")
    exports = [entry.detail for entry in await rows(service, select(AuditEntry).where(AuditEntry.action == "export"))]
    assert len(exports) == 2 and all(f"通知 {notice_id}" in detail for detail in exports)


async def test_another_branch_gets_404_on_the_notice_and_its_export(make_service, browsers):
    service, people = await console_service(make_service)
    notice_id = await notice_sent(service, people)
    dongfeng = await signed_in(service, browsers, people["孙大海"])
    for path in (f"/console/notices/{notice_id}", f"/console/notices/{notice_id}.xlsx",
                 f"/console/notices/{notice_id}.csv", "/console/notices/999999"):
        status, _, _ = await download(dongfeng, path)
        assert status == 404, path
    status, page, _ = await dongfeng.get("/console/notices")
    assert status == 200 and "data-notice=" not in page and "还没有发过通知" in page
    assert not await rows(service, select(AuditEntry).where(AuditEntry.action == "export"))

    # Its own secretary sees it.
    hongqi = await signed_in(service, browsers, people["李建国"])
    status, page, _ = await hongqi.get(f"/console/notices/{notice_id}")
    assert status == 200 and "赵德明" in page


async def test_the_content_page_lists_the_faq_and_answers_as_chat_does(make_service, browsers):
    service, people = await console_service(make_service)
    secretary = await signed_in(service, browsers, people["李建国"])
    status, page, _ = await secretary.get("/console/content")
    assert status == 200, page
    assert "支部助手能做什么？" in page and "《支部助手使用说明》" in page

    status, page, _ = await secretary.get("/console/content?q=%E5%85%9A%E8%B4%B9")  # 党费
    assert status == 200 and "支部助手能做什么？" not in page and "党费" in page

    for question in ("农民党员党费交多少", "今天天气怎么样啊"):
        expected = await service.say("stranger-1", question)
        assert expected
        status, page, _ = await secretary.get("/console/content?ask=" + question)
        assert status == 200, page
        shown = re.search(r'<p class="record try-reply">(.*?)</p>', page, re.S).group(1)
        assert html.unescape(shown) == expected
