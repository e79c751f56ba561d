"""Meetings as a secretary and members use them: calling, check-in by every path, leave, the sheet,
the record and photos, moving and cancelling. Everything goes through the chat and the emulator."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from harness import DONGFENG, hongqi_branch
from storage.models import Attendance, CheckInMethod, LeaveRequest, Meeting, MeetingPhoto
from storage.transaction import MessageTransaction

SHANGHAI = ZoneInfo("Asia/Shanghai")
# The village committee building, and a spot about 50 m away.
HALL = (30.27415, 120.15515)
NEARBY = (30.27455, 120.15530)
TOWN_CENTRE = (30.31000, 120.18000)  # about 5 km away


def at(service, month: int, day: int, hour: int, minute: int = 0) -> None:
    """Move the clock to a local (Shanghai) time in 2026."""
    service.clock.set(datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(timezone.utc))


async def call(service, secretary: str, *, kind: str = "1", when: str = "明天下午3点", place: str | tuple = "村委会",
               topic: str = "学习党的二十届四中全会精神", extra: tuple[str, ...] = ()) -> tuple[list[str], Meeting]:
    replies = [await service.say(secretary, "开会"), await service.say(secretary, kind)]
    for answer in extra:
        replies.append(await service.say(secretary, answer))
    replies.append(await service.say(secretary, when))
    if isinstance(place, tuple):
        replies.append((await service.emulator.location(secretary, *place[:2], label=place[2])).reply)
    else:
        replies.append(await service.say(secretary, place))
    replies.append(await service.say(secretary, topic))
    replies.append(await service.say(secretary, "1"))
    assert replies[-1].startswith("会议已召集"), replies
    return replies, await latest_meeting(service)


async def latest_meeting(service) -> Meeting:
    async with service.sessions() as session:
        return (await session.execute(select(Meeting).order_by(Meeting.id.desc()).limit(1))).scalar_one()


async def attendance_rows(service, meeting_id: int) -> list[Attendance]:
    async with service.sessions() as session:
        return list((await session.execute(
            select(Attendance).where(Attendance.meeting_id == meeting_id).order_by(Attendance.id))).scalars())


async def test_calling_a_meeting_notifies_attendees_then_reminds_them_the_day_and_hour_before(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert (await service.say(people["王秀英"], "开会")).startswith("这项功能只有书记、副书记")

    assert (await service.say(secretary, "开会")).startswith("开什么会？回复数字：\n1 支部党员大会")
    await service.say(secretary, "1")
    assert "例如" in await service.say(secretary, "找个时间")  # not a time: asked again, with examples
    past = await service.say(secretary, "今天上午9点")  # it is 10:00 already
    assert past.startswith("11月24日（周二）09:00 已经过去了")
    assert (await service.say(secretary, "明天下午3点")).startswith("在哪里开？")
    assert await service.say(secretary, "村委会会议室") == "会议议题是什么？请用一两句话说明。"
    preview = await service.say(secretary, "学习党的二十届四中全会精神")
    assert "支部党员大会" in preview and "时间：11月25日（周三）15:00" in preview and "地点：村委会会议室" in preview
    assert "应到 6 人" in preview  # the whole branch, the member without a phone included
    called = await service.say(secretary, "1")
    code = re.search(r"签到码：(\d{6})", called).group(1)
    assert "已通知 4 人（赵德明没绑定微信或已取消关注，收不到，请当面告诉）" in called and f"签到 {code}" in called

    await service.deliver()
    for name in ("张卫东", "王秀英", "刘小梅", "陈志强"):
        notice = service.pushed(people[name])[-1]
        assert notice.startswith("【会议通知】红旗村党支部召开支部党员大会") and "11月25日（周三）15:00" in notice
        assert code not in notice  # the code is read out at the meeting
    assert service.pushed(secretary) == []  # the caller knows

    at(service, 11, 24, 15, 1)
    await service.deliver()
    assert service.pushed(people["王秀英"])[-1].startswith("【会议提醒】明天 15:00 在村委会会议室召开支部党员大会")
    assert service.pushed(secretary)[-1].startswith("【会议提醒】明天 15:00")
    at(service, 11, 25, 14, 1)
    await service.deliver()
    assert service.pushed(people["刘小梅"])[-1].startswith("【会议提醒】15:00 在村委会会议室召开支部党员大会，还有 1 小时")
    assert len(service.pushed(people["刘小梅"])) == 3


async def test_a_committee_meeting_and_a_group_meeting_expect_only_their_members(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    replies, meeting = await call(service, secretary, kind="2", when="周五 9:00")
    assert "应到 2 人" in replies[-2] and meeting.kind == "支委会"
    replies, meeting = await call(service, secretary, kind="3", when="下周三晚上7点", extra=("2",))
    assert replies[1].startswith("哪个党小组开会？") and "2 第二党小组" in replies[1]
    assert "党小组会（第二党小组）" in replies[-2] and "应到 2 人" in replies[-2]
    await service.deliver()
    assert any("党小组会" in text for text in service.pushed(people["陈志强"]))
    assert not any("党小组会" in text for text in service.pushed(people["王秀英"]))


async def test_check_in_by_code_with_the_window_late_marking_duplicates_and_wrong_codes(service):
    people = await hongqi_branch(service)
    _, meeting = await call(service, people["李建国"])
    code = meeting.checkin_code
    at(service, 11, 25, 14, 0)
    assert await service.say(people["王秀英"], f"签到 {code}") == "还没到签到时间，14:30 起可以签到。"
    at(service, 11, 25, 14, 42)
    assert await service.say(people["王秀英"], f"签到{code}") == \
        "签到成功！支部党员大会“学习党的二十届四中全会精神”，签到时间 14:42。"
    at(service, 11, 25, 14, 50)
    assert await service.say(people["王秀英"], f"签到 {code}") == "您已于 14:42 签到。"
    assert (await service.say(people["刘小梅"], "签到 000000")).startswith("签到码不对")
    assert (await service.say(people["刘小梅"], "签到 12ab")).startswith("签到码不对")
    at(service, 11, 25, 15, 20)
    assert (await service.say(people["刘小梅"], f"签到 {code}")).startswith("签到成功（迟到）")
    at(service, 11, 25, 16, 1)
    too_late = await service.say(people["陈志强"], f"签到 {code}")
    assert too_late.startswith("这次会议的签到已在 16:00 结束") and "请当面告诉书记" in too_late
    rows = await attendance_rows(service, meeting.id)
    assert [(row.method, row.late) for row in rows] == [("code", False), ("code", True)]


async def test_check_in_by_qr_scan_and_by_following_through_the_code(service):
    people = await hongqi_branch(service)
    await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    _, meeting = await call(service, people["李建国"])
    at(service, 11, 25, 14, 55)
    scene = f"meeting:{meeting.id}"
    assert (await service.emulator.scan(people["王秀英"], scene)).reply.startswith("签到成功！")
    assert (await service.emulator.subscribe(people["刘小梅"], scene)).reply.startswith("签到成功！")
    assert (await service.emulator.scan("df-1", scene)).reply == "这不是您所在支部的会议，不能签到。"
    assert (await service.emulator.subscribe("newcomer", scene)).reply.startswith("欢迎关注支部助手！请先绑定")
    # A plain follow still gets the membership welcome.
    assert (await service.emulator.subscribe("another")).reply.startswith("欢迎关注支部助手！\n党员请直接回复")
    assert {row.method for row in await attendance_rows(service, meeting.id)} == {CheckInMethod.QR.value}


async def test_check_in_by_location_inside_and_far_outside_the_radius(service):
    people = await hongqi_branch(service)
    replies, meeting = await call(service, people["李建国"], place=(*HALL, "红旗村村委会"))
    assert replies[-3].startswith("已记下会场位置") and "已设会场位置" in replies[-2]
    assert meeting.place == "红旗村村委会" and meeting.latitude == HALL[0]
    # No meeting open: a location is just a location.
    assert (await service.emulator.location(people["王秀英"], *NEARBY)).reply.startswith("暂时不能处理这类消息")
    at(service, 11, 25, 14, 50)
    far = (await service.emulator.location(people["刘小梅"], *TOWN_CENTRE)).reply
    assert far.startswith("您离会场约 4.") and "公里，不在签到范围（300 米）内" in far
    near = (await service.emulator.location(people["王秀英"], *NEARBY)).reply
    assert near.startswith("签到成功！")
    rows = await attendance_rows(service, meeting.id)
    assert [row.method for row in rows] == [CheckInMethod.LOCATION.value]


async def test_menu_tap_with_none_one_and_two_open_meetings(service):
    people = await hongqi_branch(service)
    secretary, member = people["李建国"], people["张卫东"]
    first = (await call(service, secretary, when="明天下午3点"))[1]
    none_open = (await service.emulator.click(member, "CHECKIN")).reply
    assert none_open.startswith("现在没有可以签到的会议。\n下一次会议：11月25日（周三）15:00")
    at(service, 11, 25, 14, 50)
    assert (await service.emulator.click(member, "CHECKIN")).reply.startswith("签到成功！")
    second = (await call(service, secretary, kind="2", when="今天下午3点20", topic="研究冬季慰问"))[1]
    listed = (await service.emulator.click(people["李建国"], "CHECKIN")).reply
    assert listed.startswith("现在有 2 个会议可以签到") and "2 11月25日（周三）15:20 支委会：研究冬季慰问" in listed
    assert (await service.say(secretary, "9")).startswith("请回复列表里的数字")
    assert (await service.say(secretary, "2")).startswith("签到成功！支委会")
    # 签到 typed without a code works like the tap; only the committee meeting is still open to 张卫东.
    assert (await service.say(member, "签到")).startswith("签到成功！支委会")
    assert len(await attendance_rows(service, first.id)) == 1
    assert len(await attendance_rows(service, second.id)) == 2


async def test_concurrent_check_ins_leave_one_row_each_and_no_error(service):
    people = await hongqi_branch(service)
    _, meeting = await call(service, people["李建国"])
    at(service, 11, 25, 14, 58)
    member = people["王秀英"]
    replies = await asyncio.gather(service.say(member, f"签到 {meeting.checkin_code}"),
                                   service.emulator.click(member, "CHECKIN"),
                                   service.emulator.scan(member, f"meeting:{meeting.id}"))
    texts = [replies[0], replies[1].reply, replies[2].reply]
    assert sum(text.startswith("签到成功") for text in texts) == 1
    assert sum(text == "您已于 14:58 签到。" for text in texts) == 2
    others = [people[name] for name in ("张卫东", "刘小梅", "陈志强", "李建国")]
    texts = await asyncio.gather(*(service.say(openid, f"签到 {meeting.checkin_code}") for openid in others))
    assert all(text.startswith("签到成功") for text in texts), texts
    assert len(await attendance_rows(service, meeting.id)) == 5


async def test_checking_in_by_code_tap_typed_word_or_scan_opens_no_orm_session(service, monkeypatch):
    """A check-in is the message a whole county sends within minutes: its reads and its insert run on the message's
    driver (storage.meetings), and the ORM session, which cost more than the statements, is never opened — nor for
    the early 签到 and the 近期会议 tap of the same morning. What each path writes is the same row the sheet reads."""
    people = await hongqi_branch(service)
    _, meeting = await call(service, people["李建国"])
    opened: list[str] = []
    session_of = MessageTransaction.session.fget
    monkeypatch.setattr(MessageTransaction, "session",
                        property(lambda transaction: opened.append("session") or session_of(transaction)))
    # Too early: 签到 and the 近期会议 tap say when the meeting is and when its check-in opens.
    at(service, 11, 25, 12, 0)
    assert await service.say(people["刘小梅"], "签到") == \
        "现在没有可以签到的会议。\n下一次会议：11月25日（周三）15:00，支部党员大会。开会前 30 分钟起可以签到。"
    listed = (await service.emulator.click(people["刘小梅"], "MEETINGS")).reply
    assert listed.startswith("下次会议：支部党员大会") and "议题：学习党的二十届四中全会精神" in listed
    at(service, 11, 25, 14, 40)
    assert await service.say(people["王秀英"], f"签到 {meeting.checkin_code}") == \
        "签到成功！支部党员大会“学习党的二十届四中全会精神”，签到时间 14:40。"
    assert (await service.say(people["刘小梅"], "签到 000000")).startswith("签到码不对")
    at(service, 11, 25, 15, 12)
    assert (await service.emulator.click(people["刘小梅"], "CHECKIN")).reply.startswith("签到成功（迟到）")
    assert (await service.say(people["陈志强"], "签到")).startswith("签到成功（迟到）")
    assert (await service.emulator.scan(people["张卫东"], f"meeting:{meeting.id}")).reply.startswith("签到成功（迟到）")
    assert await service.say(people["王秀英"], "签到") == "您已于 14:40 签到。"
    at(service, 11, 25, 16, 30)
    assert await service.say(people["王秀英"], f"签到 {meeting.checkin_code}") == "您已于 14:40 签到。"
    assert opened == []
    rows = await attendance_rows(service, meeting.id)
    assert [(row.method, row.late, row.checked_in_at.astimezone(SHANGHAI).strftime("%H:%M"), row.proxy_by)
            for row in rows] == [("code", False, "14:40", None), ("menu", True, "15:12", None),
                                 ("menu", True, "15:12", None), ("qr", True, "15:12", None)]


async def test_a_cancelled_meeting_refuses_check_in_and_attendees_are_told(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, meeting = await call(service, secretary, when="后天上午九点半")
    await service.deliver()
    assert (await service.say(secretary, "取消会议")).startswith("确定取消11月26日（周四）09:30 支部党员大会吗？")
    assert await service.say(secretary, "1") == "会议已取消，已通知 4 人（赵德明没绑定微信或已取消关注，收不到，请当面告诉）。"
    await service.deliver()
    assert service.pushed(people["王秀英"])[-1].startswith("【会议取消】原定 11月26日（周四）09:30 召开的支部党员大会")
    at(service, 11, 26, 9, 20)
    assert await service.say(people["王秀英"], f"签到 {meeting.checkin_code}") == "这次会议已取消，不用签到。"
    await service.deliver()
    # The day-before and hour-before reminders were withdrawn.
    assert not any(text.startswith("【会议提醒】") for text in service.pushed(people["王秀英"]))
    assert await service.say(secretary, "取消会议") == "本支部没有还未开始的会议。"


async def test_moving_a_meeting_replaces_its_reminders(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await call(service, secretary, when="明天下午3点")
    await call(service, secretary, kind="2", when="11月28日 14:30", topic="研究冬季慰问")
    listed = await service.say(secretary, "改时间")
    assert listed.startswith("哪个会议？回复数字：\n1 11月25日（周三）15:00 支部党员大会")
    assert (await service.say(secretary, "1")).startswith("11月25日（周三）15:00 支部党员大会改到什么时候？")
    assert "例如" in await service.say(secretary, "下午")
    assert await service.say(secretary, "后天下午3点") == (
        "请核对：支部党员大会“学习党的二十届四中全会精神”\n原定：11月25日（周三）15:00\n改到：11月26日（周四）15:00\n"
        "回复 1 确定改时间并通知参会党员；回复 2 不改了。")
    assert await service.say(secretary, "1") == "已改到 11月26日（周四）15:00，已通知 4 人（赵德明没绑定微信或已取消关注，收不到，请当面告诉）。"
    await service.deliver()
    member = people["刘小梅"]
    assert service.pushed(member)[-1].startswith("【会议改时间】支部党员大会“学习党的二十届四中全会精神”改到 11月26日")
    at(service, 11, 24, 15, 5)  # the old day-before time: nothing for the moved meeting
    await service.deliver()
    assert not any(text.startswith("【会议提醒】") for text in service.pushed(member))
    await service.say(member, "我的")  # keeps the customer-service window open
    at(service, 11, 25, 15, 5)
    await service.deliver()
    assert service.pushed(member)[-1].startswith("【会议提醒】明天 15:00 在村委会召开支部党员大会")
    at(service, 11, 26, 14, 5)
    await service.deliver()
    assert service.pushed(member)[-1].startswith("【会议提醒】15:00 在村委会召开支部党员大会，还有 1 小时")
    reminders = [text for text in service.pushed(member) if text.startswith("【会议提醒】")]
    assert len(reminders) == 2


async def test_proxy_check_in_for_a_member_without_a_phone(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, meeting = await call(service, secretary)
    assert (await service.say(secretary, "代签 赵德明")).startswith("现在没有正在签到的本支部会议")
    at(service, 11, 25, 15, 15)
    reply = await service.say(secretary, "代签 赵德明 王秀英 孙悟空")
    assert reply.startswith("11月25日（周三）15:00 支部党员大会：")
    assert "已为 赵德明 代签（15:15，迟到）" in reply and "已为 王秀英 代签" in reply
    assert "本支部没有叫 孙悟空 的党员" in reply
    assert (await service.say(secretary, "代签 赵德明")).endswith("赵德明 已于 15:15 签到。")
    assert await service.say(people["王秀英"], "签到") == "您已于 15:15 签到。"
    assert (await service.say(people["王秀英"], "代签 张卫东")).startswith("这项功能只有书记、副书记")
    rows = await attendance_rows(service, meeting.id)
    assert {row.method for row in rows} == {CheckInMethod.PROXY.value}
    assert all(row.proxy_by is not None for row in rows)
    report = await service.say(secretary, "签到情况")
    assert "赵德明 15:15（迟到，李建国代签）" in report


async def test_leave_is_approved_in_one_reply_and_shows_on_the_sheet(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert await service.say(people["王秀英"], "请假 住院") == "近期没有需要您参加的会议，不用请假。"
    _, meeting = await call(service, secretary)
    assert await service.say(people["王秀英"], "请假 住院复查") == \
        "已向书记请假（11月25日（周三）15:00 支部党员大会），书记回复后会告诉您。\n原因：住院复查"
    assert await service.say(people["刘小梅"], "请假") == "请回复请假原因，例如：请假 外出务工。"
    assert (await service.say(people["刘小梅"], "在外地打工")).startswith("已向书记请假")
    assert (await service.say(people["王秀英"], "请假 再说一次")).startswith("您已为11月25日（周三）15:00 支部党员大会请过假（等待书记回复）")
    await service.deliver()
    assert "王秀英 请假：住院复查\n会议：11月25日（周三）15:00 支部党员大会\n回复 同意 或 不同意。" \
        in service.pushed(secretary)
    # Two people waiting: a bare 同意 asks whose, so it cannot answer someone the secretary did not mean.
    which = await service.say(secretary, "同意")
    assert which.startswith("有 2 个请假等您回复：\n· 王秀英：住院复查") and "例如：同意 王秀英" in which
    approved = await service.say(secretary, "同意 王秀英")
    assert approved.startswith("已同意 王秀英 的请假") and "还有 1 条请假待处理：刘小梅（在外地打工）" in approved
    assert (await service.say(secretary, "不同意 刘小梅")).startswith("已不同意 刘小梅 的请假")
    assert await service.say(secretary, "同意") == "目前没有待处理的请假。"
    await service.deliver()
    assert service.pushed(people["王秀英"])[-1] == "书记已同意您的请假（11月25日（周三）15:00 支部党员大会）。"
    assert service.pushed(people["刘小梅"])[-1].startswith("书记没有同意您的请假")
    async with service.sessions() as session:
        statuses = dict((await session.execute(select(LeaveRequest.reason, LeaveRequest.status))).all())
    assert statuses == {"住院复查": "approved", "在外地打工": "declined"}

    at(service, 11, 25, 14, 55)
    await service.say(people["张卫东"], f"签到 {meeting.checkin_code}")
    await service.say(people["陈志强"], "签到")
    at(service, 11, 25, 17, 0)
    report = await service.say(secretary, "出勤")
    assert report.startswith("支部党员大会“学习党的二十届四中全会精神”\n11月25日（周三）15:00，村委会")
    assert "应到 6 人，实到 2 人，请假 1 人，缺席 3 人。" in report
    assert "实到：张卫东 14:55、陈志强 14:55" in report
    assert "请假：王秀英（住院复查）" in report
    assert "缺席：李建国、刘小梅、赵德明" in report
    # Reports only: nobody absent gets a message about it.
    await service.deliver()
    assert not any("缺席" in text for text in service.pushed(people["刘小梅"]))


async def test_leave_with_two_upcoming_meetings_asks_which(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await call(service, secretary, when="明天下午3点")
    await call(service, secretary, when="周五 9:00", topic="主题党日活动", kind="5")
    listed = await service.say(people["王秀英"], "请假 走亲戚")
    assert listed.startswith("哪个会议？") and "2 11月27日（周五）09:00 主题党日：主题党日活动" in listed
    assert (await service.say(people["王秀英"], "2")).startswith("已向书记请假（11月27日（周五）09:00 主题党日）")


async def test_the_record_dialog_and_photos(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert await service.say(secretary, "会议记录") == "本支部还没有开始签到的会议。"
    _, meeting = await call(service, secretary)
    # Before the meeting an image is just an image.
    assert (await service.emulator.image(secretary)).reply == "暂时不能处理这类消息。回复 帮助 查看可以做什么。"
    at(service, 11, 25, 16, 30)
    started = await service.say(secretary, "会议记录")
    assert started.startswith("为11月25日（周三）15:00 支部党员大会填写会议记录") and started.endswith("1/5 主持人是谁？")
    assert (await service.say(secretary, "李建国")).startswith("2/5 记录人是谁？")
    assert (await service.say(secretary, "跳过")).startswith("3/5")
    assert (await service.say(secretary, "传达全会精神，大家结合村里产业发展谈体会。")).startswith("4/5")
    assert (await service.say(secretary, "冬季组织一次产业培训")).startswith("5/5")
    saved = await service.say(secretary, "同意 30，反对 0，弃权 1")
    assert saved.startswith("会议记录已保存") and "记录人：（未填）" in saved and "表决：同意 30，反对 0，弃权 1" in saved

    assert (await service.emulator.image(secretary)).reply == \
        "照片已附到11月25日（周三）15:00 支部党员大会，这次会议共 1 张照片。"
    assert (await service.emulator.image(secretary)).reply.endswith("共 2 张照片。")
    # A member's photo, and a secretary's long after the meeting, get the usual answer.
    assert (await service.emulator.image(people["王秀英"])).reply.startswith("暂时不能处理这类消息")
    at(service, 11, 26, 9, 0)
    assert (await service.emulator.image(secretary)).reply.startswith("暂时不能处理这类消息")

    async with service.sessions() as session:
        stored = await session.get(Meeting, meeting.id)
        photos = list((await session.execute(select(MeetingPhoto))).scalars())
    assert (stored.host, stored.recorder, stored.votes) == ("李建国", None, "同意 30，反对 0，弃权 1")
    assert stored.minutes == "传达全会精神，大家结合村里产业发展谈体会。" and stored.resolutions == "冬季组织一次产业培训"
    assert len(photos) == 2 and all(photo.pic_url.startswith("http://emulator.local/") for photo in photos)


async def test_only_one_attendance_row_per_member_in_the_table(service):
    """The unique (meeting, member) holds whatever path was used."""
    people = await hongqi_branch(service)
    _, meeting = await call(service, people["李建国"])
    at(service, 11, 25, 15, 0)
    for openid in people.values():
        await service.say(openid, "签到")
        await service.emulator.scan(openid, f"meeting:{meeting.id}")
    async with service.sessions() as session:
        count = (await session.execute(select(func.count()).select_from(Attendance))).scalar_one()
    assert count == len(people)


async def test_the_secretary_gets_a_qr_code_that_checks_members_in(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, meeting = await call(service, secretary)
    assert (await service.say(people["王秀英"], "会议二维码")).startswith("这项功能只有")
    assert (await service.say(secretary, "会议二维码")).startswith("正在为 ")
    await service.deliver()
    sent = [text for text in service.pushed(secretary) if text.startswith("【会议签到二维码】")]
    assert len(sent) == 1 and f"签到 {meeting.checkin_code}" in sent[0]
    ticket = re.search(r"showqrcode\?ticket=(\S+)", sent[0]).group(1)
    qr = [record for record in service.emulator.api.records if record.kind == "qrcode"]
    assert qr[0].body["action_info"]["scene"]["scene_str"] == f"meeting:{meeting.id}"
    # The member scans the code the secretary printed, at the meeting.
    scene = service.emulator.api.scene_for(unquote(ticket))
    at(service, 11, 25, 14, 55)
    assert "签到成功" in (await service.emulator.scan(people["王秀英"], scene)).reply
    assert [row.method for row in await attendance_rows(service, meeting.id)] == [CheckInMethod.QR]


async def test_no_meeting_no_qr_code(service):
    people = await hongqi_branch(service)
    assert await service.say(people["李建国"], "会议二维码") == "本支部近期没有会议。先发 开会 召集会议。"


async def test_who_a_meeting_expects_is_the_same_whether_asked_of_the_database_or_of_a_loaded_member(service):
    """Check-in, leave and the member's meeting list decide from the member's loaded row (storage.meetings
    .expects); the sign-in sheet and the reminders from the database (expected_member_ids). They must agree
    for every kind of meeting, or a member could sign in to a meeting whose sheet leaves them out."""
    from storage import meetings as store
    from storage.models import Member, MeetingKind, Organization

    await hongqi_branch(service)
    await service.add_member("孙红", DONGFENG)
    now = service.clock.now()
    async with service.sessions() as session, session.begin():
        members = list((await session.execute(select(Member))).scalars())
        branch = next(m.org_id for m in members if m.name == "李建国")
        group = (await session.execute(select(Organization).where(Organization.name == "第一党小组"))).scalar_one()
        meetings = [await store.add_meeting(session, Meeting(
            org_id=branch, kind=kind.value, topic="议题", place="村部", starts_at=now, called_by=members[0].id,
            checkin_code="", created_at=now, updated_at=now,
            group_id=group.id if kind == MeetingKind.GROUP else None)) for kind in MeetingKind]
        checked = 0
        for meeting in meetings:
            from_database = set((await session.execute(store.expected_member_ids(meeting))).scalars())
            for member in members:
                assert store.expects(meeting, member) == (member.id in from_database), (meeting.kind, member.name)
                checked += 1
    assert checked == len(MeetingKind) * 7
    # And they differ where they should: the committee meeting expects two of the seven.
    assert sum(store.expects(meetings[1], member) for member in members) == 2
