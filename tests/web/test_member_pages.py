"""The notice and meeting pages a template message links to, through the real path: a secretary sends in chat,
the outbox sends a template (the members' 48-hour windows have closed), its link is opened over HTTP, the
page's form is posted, and the secretary's chat shows what happened."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from aiohttp import ClientSession
from sqlalchemy import func, select

from bot.web.links import Subject
from bot.web.pages import LINKS
from harness import DONGFENG, hongqi_branch
from storage.models import LeaveRequest, Meeting, Member, Notice, OutboxMessage

SHANGHAI = ZoneInfo("Asia/Shanghai")
# As the secretary typed it: two line breaks, leading spaces, Chinese punctuation.
NOTICE = "周六上午9点打扫村部卫生。\n请带上扫帚、簸箕；\n  不能来的请跟书记说一声！"
HALL = (30.27415, 120.15515)
GONE = "链接已失效"


async def outside_the_window(make_service):
    """The Hongqi branch two days after everyone bound: what members get now goes as a template message."""
    service = await make_service(wechat_templates={"default": "TPL"})
    people = await hongqi_branch(service)
    service.clock.advance(hours=49)  # 2026-11-26 11:00 in Shanghai
    return service, people


def link_of(service, openid: str) -> str:
    templates = service.emulator.api.templates(openid)
    assert templates, openid
    url = templates[-1]["url"]
    assert url.startswith(service.url.rstrip("/") + "/m/"), url
    return url


async def get(url: str) -> tuple[int, str]:
    async with ClientSession() as client, client.get(url, allow_redirects=False) as response:
        return response.status, await response.text()


async def post(url: str, **form: str) -> tuple[int, str, str | None]:
    async with ClientSession() as client, client.post(url, data=form, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers.get("Location")


async def one(service, query):
    async with service.sessions() as session:
        return (await session.execute(query)).scalar_one()


async def id_of(service, name: str) -> int:
    return await one(service, select(Member.id).where(Member.name == name))


# ---------------------------------------------------------------- notices


async def send_notice(service, secretary: str, text: str = NOTICE) -> Notice:
    for said in ("发通知", text, "1"):
        await service.say(secretary, said)
    assert (await service.say(secretary, "1")).startswith("通知已发出")
    await service.deliver()
    return await one(service, select(Notice).order_by(Notice.id.desc()).limit(1))


def acknowledged_at(member_id: int, notice_id: int):
    return select(OutboxMessage.acknowledged_at).where(
        OutboxMessage.ref == f"notice:{notice_id}", OutboxMessage.kind == "notice",
        OutboxMessage.member_id == member_id)


async def test_a_notice_template_opens_the_whole_notice_and_its_button_acknowledges_it_once(make_service):
    service, people = await outside_the_window(make_service)
    member, secretary = people["王秀英"], people["李建国"]
    notice = await send_notice(service, secretary)
    url = link_of(service, member)
    member_id = await id_of(service, "王秀英")

    status, page = await get(url)
    assert status == 200
    assert f'<div class="text">{html.escape(NOTICE)}</div>' in page  # every line, as written
    assert "红旗村党支部通知" in page and "李建国" in page and "2026年11月26日（周四）11:00" in page
    assert 'name="action" value="ack"' in page and "<button" in page and "已确认收到" not in page
    assert await one(service, acknowledged_at(member_id, notice.id)) is None  # a GET changes nothing

    service.clock.advance(minutes=10)
    status, _, location = await post(url, action="ack")
    assert status == 303 and location == url[len(service.url.rstrip("/")):]
    status, page = await get(url)
    assert status == 200 and "已确认收到（2026年11月26日（周四）11:10）" in page and "<button" not in page
    assert html.escape(NOTICE) in page

    # 通知情况 counts it at once, and the chat's 收到 has nothing left to confirm.
    report = await service.say(secretary, "通知情况")
    assert "已回复收到 1。" in report and "王秀英" not in report.split("还没回复收到：")[1]
    assert await service.say(member, "收到") == "目前没有需要确认的通知。"

    # A second tap, later: nothing changes.
    first = await one(service, acknowledged_at(member_id, notice.id))
    service.clock.advance(minutes=5)
    status, _, _ = await post(url, action="ack")
    assert status == 303
    assert await one(service, acknowledged_at(member_id, notice.id)) == first
    assert "已确认收到（2026年11月26日（周四）11:10）" in (await get(url))[1]
    assert "已回复收到 1。" in await service.say(secretary, "通知情况")


async def test_changed_foreign_and_expired_notice_links_say_only_that_the_link_is_gone(make_service):
    service, people = await outside_the_window(make_service)
    outsider = await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    notice = await send_notice(service, people["李建国"])
    url = link_of(service, people["王秀英"])

    token = url.rsplit("/", 1)[1]
    middle = len(token) // 2
    changed = url[: -len(token)] + token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    foreign = service.app[LINKS].url(Subject(ref=f"notice:{notice.id}", member_id=outsider))
    for bad in (changed, foreign):
        for status, page in (await get(bad), (await post(bad, action="ack"))[:2]):
            assert status == 404 and GONE in page
            assert "打扫" not in page and "李建国" not in page and "<button" not in page
    assert await one(service, select(func.count()).where(OutboxMessage.acknowledged_at.is_not(None))) == 0

    assert (await get(url))[0] == 200
    service.clock.advance(days=61)
    status, page = await get(url)
    assert status == 404 and GONE in page and "打扫" not in page


# ---------------------------------------------------------------- meetings


def at(service, month: int, day: int, hour: int, minute: int = 0) -> None:
    service.clock.set(datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(timezone.utc))


async def call_meeting(service, secretary: str, *, located: bool = True) -> Meeting:
    """A branch meeting tomorrow (Friday 27 November) at 15:00, its place sent as a location."""
    for said in ("开会", "1", "明天下午3点"):
        await service.say(secretary, said)
    if located:
        await service.emulator.location(secretary, *HALL, label="红旗村村委会")
    else:
        await service.say(secretary, "红旗村村委会")
    await service.say(secretary, "学习新修订的《条例》；\n讨论冬季慰问名单")
    assert (await service.say(secretary, "1")).startswith("会议已召集")
    await service.deliver()
    return await one(service, select(Meeting).order_by(Meeting.id.desc()).limit(1))


async def leave_rows(service) -> list[tuple[str, str]]:
    async with service.sessions() as session:
        return [(row.reason, row.status) for row in
                (await session.execute(select(LeaveRequest).order_by(LeaveRequest.id))).scalars()]


async def test_the_meeting_template_opens_the_meeting_and_leave_there_is_chats_leave(make_service):
    service, people = await outside_the_window(make_service)
    secretary = people["李建国"]
    meeting = await call_meeting(service, secretary)
    url = link_of(service, people["王秀英"])

    status, page = await get(url)
    assert status == 200
    assert "支部党员大会" in page and "2026年11月27日（周五）15:00" in page and "红旗村村委会" in page
    assert html.escape("学习新修订的《条例》；\n讨论冬季慰问名单") in page
    assert ('href="https://uri.amap.com/marker?position=120.15515,30.27415&amp;name=%E7%BA%A2%E6%97%97%E6%9D%91'
            '%E6%9D%91%E5%A7%94%E4%BC%9A"') in page and 'class="map"' in page and 'rel="noreferrer"' in page
    assert meeting.checkin_code not in page  # read out at the meeting, never on the page
    assert '<textarea id="reason" name="reason"' in page and 'value="leave"' in page
    assert "已请假" not in page and "已签到" not in page

    # On the page, then in chat: the secretary is told in the same words.
    status, _, location = await post(url, action="leave", reason="住院复查")
    assert status == 303 and location == url[len(service.url.rstrip("/")):]
    assert (await service.say(people["刘小梅"], "请假 住院复查")).startswith("已向书记请假")
    await service.deliver()
    # Both were delivered by one run: the outbox sends rows due at the same moment in no set order.
    from_page = "王秀英 请假：住院复查\n会议：11月27日（周五）15:00 支部党员大会\n回复 同意 或 不同意。"
    from_chat = from_page.replace("王秀英", "刘小梅")
    assert sorted(text for text in service.pushed(secretary) if "请假：" in text) == sorted([from_page, from_chat])

    status, page = await get(url)
    assert "已请假，等书记回复" in page and "住院复查" in page and "<textarea" not in page
    # Asked once: a second post, and 请假 in chat, change nothing and tell nobody.
    assert (await post(url, action="leave", reason="再说一次"))[0] == 303
    assert (await service.say(people["王秀英"], "请假 再说一次")).startswith("您已为11月27日（周五）15:00 支部党员大会请过假")
    await service.deliver()
    assert len([text for text in service.pushed(secretary) if "请假：" in text]) == 2
    assert await leave_rows(service) == [("住院复查", "pending"), ("住院复查", "pending")]

    # The secretary's own page lists who asked; their answer shows on the member's page.
    leader = service.app[LINKS].url(Subject(ref=f"meeting:{meeting.id}", member_id=await id_of(service, "李建国")))
    page = (await get(leader))[1]
    assert "请假的党员" in page and "王秀英" in page and "回复 同意 或 不同意" in page
    assert (await service.say(secretary, "同意 王秀英")).startswith("已同意 王秀英 的请假")
    assert "请假已同意" in (await get(url))[1]


async def test_a_bad_reason_keeps_what_was_typed_and_a_started_meeting_takes_no_leave(make_service):
    service, people = await outside_the_window(make_service)
    secretary = people["李建国"]
    await call_meeting(service, secretary, located=False)
    url = link_of(service, people["陈志强"])

    status, page = await get(url)
    assert status == 200 and "uri.amap.com" not in page  # no location, no map
    status, page, _ = await post(url, action="leave", reason="   ")
    assert status == 400 and "请先写上请假原因，再点“请假”。" in page and "<textarea" in page
    typed = "家里有事" * 51  # 204 characters: over the 200 that chat allows
    status, page, _ = await post(url, action="leave", reason=typed)
    assert status == 400 and "请假原因太长了：最多 200 字，现在是 204 字。" in page
    assert f">{typed}</textarea>" in page  # what the member typed is still there

    at(service, 11, 27, 15, 5)
    status, page, _ = await post(url, action="leave", reason="临时有事")
    assert status == 409 and "会议已经开始，不能在这里请假了" in page and "<textarea" not in page
    status, page = await get(url)
    assert "会议已经开始" in page and "点菜单 签到" in page
    await service.deliver()
    assert not any("请假：" in text for text in service.pushed(secretary)) and await leave_rows(service) == []


async def test_a_cancelled_meeting_shows_cancelled_and_takes_no_leave(make_service):
    service, people = await outside_the_window(make_service)
    secretary = people["李建国"]
    await call_meeting(service, secretary)
    called = link_of(service, people["王秀英"])
    assert (await service.say(secretary, "取消会议")).startswith("确定取消")
    assert (await service.say(secretary, "1")).startswith("会议已取消")
    await service.deliver()
    cancelled = link_of(service, people["王秀英"])

    for url in (called, cancelled):
        status, page = await get(url)
        assert status == 200 and "已取消" in page and "不用参加" in page and "<textarea" not in page
    status, page, _ = await post(cancelled, action="leave", reason="住院")
    assert status == 409 and "这次会议已经取消，不用请假。" in page
    assert await leave_rows(service) == []


async def test_a_meeting_link_is_only_for_those_expected_or_told(make_service):
    service, people = await outside_the_window(make_service)
    outsider = await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    meeting = await call_meeting(service, people["李建国"])
    foreign = service.app[LINKS].url(Subject(ref=f"meeting:{meeting.id}", member_id=outsider))
    for status, page in (await get(foreign), (await post(foreign, action="leave", reason="有事"))[:2]):
        assert status == 404 and GONE in page and "村委会" not in page
    assert await leave_rows(service) == []
