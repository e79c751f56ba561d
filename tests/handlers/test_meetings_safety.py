"""Check-in and meeting dialogs against what goes wrong in real use: namesakes at 代签, guessed codes,
a secretary replaced mid-dialog, a busy server, and odd numbers in codes and QR scenes."""

from __future__ import annotations

from datetime import datetime

import pytest

from harness import DONGFENG, HONGQI, hongqi_branch
from storage.models import Member, Role
from test_meetings import SHANGHAI, at, attendance_rows, call, latest_meeting

WRONG_CODE = "签到码不对，请核对会上公布的 6 位数字，再回复 签到 加签到码。"
UNKNOWN_QR = "这个二维码不是有效的会议签到码。请回复 签到 加会上公布的签到码，或点菜单 签到。"


def moment(hour: int, minute: int) -> int:
    """Unix seconds of a local time on the meeting day (25 November 2026)."""
    return int(datetime(2026, 11, 25, hour, minute, tzinfo=SHANGHAI).timestamp())


async def sent_at(service, openid: str, text: str, created: int) -> str | None:
    """A message the member sent at `created` that reaches the service only now (WeChat's CreateTime)."""
    return (await service.emulator.send(openid, {"MsgType": "text", "Content": text, "CreateTime": created})).reply


# ---------------------------------------------------------------- 代签 with namesakes


async def test_proxy_check_in_asks_which_namesake_and_takes_the_phone_end(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await service.add_member("李明", HONGQI, phone="13800001234")
    await service.add_member("李明", HONGQI, phone="13900005678")
    _, meeting = await call(service, secretary)
    at(service, 11, 25, 14, 50)
    asked = await service.say(secretary, "代签 李明")
    assert asked.endswith("本支部有 2 位党员叫李明，请在姓名后加上手机号的后四位，例如：代签 李明 1234")
    assert await attendance_rows(service, meeting.id) == []  # nobody signed in on a guess
    assert (await service.say(secretary, "代签 李明 0000")).endswith("本支部叫李明的党员里，没有手机号后四位是 0000 的，请核对。")
    assert (await service.say(secretary, "代签 李明 5678 赵德明")).endswith(
        "已为 李明（手机尾号 5678） 代签（14:50）。\n已为 赵德明 代签（14:50）。")
    # Without the space, and in full-width digits, it is the same person.
    assert (await service.say(secretary, "代签 李明５６７８")).endswith("李明（手机尾号 5678） 已于 14:50 签到。")
    rows = await attendance_rows(service, meeting.id)
    async with service.sessions() as session:
        signed = {(await session.get(Member, row.member_id)).phone for row in rows}
    assert signed == {"13900005678", ""}  # the second 李明 and 赵德明 (no phone on the roster)


# ---------------------------------------------------------------- another branch's code


async def test_another_branchs_live_code_gets_the_answer_a_wrong_code_gets(service):
    people = await hongqi_branch(service)
    await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    _, meeting = await call(service, people["李建国"])
    at(service, 11, 25, 14, 55)  # 红旗村's meeting is open for check-in right now
    other_branch = await service.say("df-1", f"签到 {meeting.checkin_code}")
    assert other_branch == await service.say("df-1", "签到 000000") == WRONG_CODE
    assert await attendance_rows(service, meeting.id) == []
    assert (await service.say(people["王秀英"], f"签到 {meeting.checkin_code}")).startswith("签到成功！")


# ---------------------------------------------------------------- a secretary replaced mid-dialog


async def demote(service) -> None:
    """The township re-imports the roster: 李建国 is an ordinary member now."""
    await service.add_member("李建国", HONGQI, role=Role.MEMBER, phone="13800000001")


async def test_a_replaced_secretary_cannot_finish_calling_a_meeting(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    for answer in ("开会", "1", "明天下午3点", "村委会"):
        await service.say(secretary, answer)
    assert "应到 6 人" in await service.say(secretary, "学习党章")
    await demote(service)
    assert await service.say(secretary, "1") == "您现在已不是本支部的书记或副书记，不能召集会议，这次操作已取消。"
    await service.deliver()
    assert not any("学习党章" in text for openid in people.values() for text in service.pushed(openid))
    assert await service.say(people["王秀英"], "请假 有事") == "近期没有需要您参加的会议，不用请假。"


@pytest.mark.parametrize("command, answer, refusal", [
    ("改时间", "后天下午3点", "您现在已不是本支部的书记或副书记，不能修改会议时间，这次操作已取消。"),
    ("取消会议", "1", "您现在已不是本支部的书记或副书记，不能取消会议，这次操作已取消。"),
], ids=["move", "cancel"])
async def test_a_replaced_secretary_cannot_move_or_cancel_a_meeting(service, command, answer, refusal):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, meeting = await call(service, secretary)
    await service.deliver()
    told_before = len(service.pushed(people["王秀英"]))
    await service.say(secretary, command)
    await demote(service)
    assert await service.say(secretary, answer) == refusal
    await service.deliver()
    assert len(service.pushed(people["王秀英"])) == told_before  # no 改时间 or 取消 notice
    unchanged = await latest_meeting(service)
    assert (unchanged.starts_at, unchanged.status) == (meeting.starts_at, meeting.status)


# ---------------------------------------------------------------- the time a check-in was sent


async def test_a_check_in_counts_when_it_was_sent_not_when_it_was_handled(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, meeting = await call(service, secretary)  # 15:00; late after 15:10, closed after 16:00
    code = meeting.checkin_code
    at(service, 11, 25, 15, 12)
    assert await sent_at(service, people["王秀英"], f"签到 {code}", moment(15, 9)) == \
        "签到成功！支部党员大会“学习党的二十届四中全会精神”，签到时间 15:09。"
    assert (await sent_at(service, secretary, "代签 赵德明", moment(15, 8))).endswith("已为 赵德明 代签（15:08）。")
    at(service, 11, 25, 16, 2)  # the window closed two minutes ago; these were sent before it did
    assert (await sent_at(service, people["刘小梅"], "签到", moment(15, 59))).startswith("签到成功（迟到）")
    rows = {row.member_id: row for row in await attendance_rows(service, meeting.id)}
    times = sorted((row.checked_in_at.astimezone(SHANGHAI).strftime("%H:%M"), row.late) for row in rows.values())
    assert times == [("15:08", False), ("15:09", False), ("15:59", True)]
    # Sent now, it is too late: the time is the member's, not a free pass.
    assert (await service.say(people["张卫东"], f"签到 {code}")).startswith("这次会议的签到已在 16:00 结束")


async def test_a_leave_sent_before_the_start_is_in_time_though_handled_after(service):
    people = await hongqi_branch(service)
    await call(service, people["李建国"])
    at(service, 11, 25, 15, 2)
    assert (await sent_at(service, people["王秀英"], "请假 家里有事", moment(14, 59))).startswith("已向书记请假")
    assert await service.say(people["刘小梅"], "请假 家里有事") == "近期没有需要您参加的会议，不用请假。"


# ---------------------------------------------------------------- odd numbers in scenes and codes


@pytest.mark.parametrize("scene", [
    "meeting:99999999999999999999999",  # beyond any id column
    "meeting:²",  # str.isdigit() says yes, int() says no
    "meeting:１",  # full-width: never in a scene we made
    "meeting:-1",
    "meeting:",
    "meeting:1 OR 1=1",
    "meeting:123456789",  # well formed, no such meeting
])
async def test_a_scene_that_is_no_meeting_gets_a_polite_answer(service, scene):
    people = await hongqi_branch(service)
    await call(service, people["李建国"])
    at(service, 11, 25, 14, 55)
    assert (await service.emulator.scan(people["王秀英"], scene)).reply == UNKNOWN_QR
    assert (await service.emulator.subscribe("hq-new", scene)).reply.startswith("欢迎关注支部助手！请先绑定")


async def test_odd_numbers_after_commands_get_polite_answers_and_full_width_digits_work(service):
    people = await hongqi_branch(service)
    secretary, member = people["李建国"], people["王秀英"]
    _, meeting = await call(service, secretary)
    at(service, 11, 25, 14, 55)
    # Too long; five superscripts (NFKC makes them 23456: five digits); digits of other scripts.
    for code in ("1" * 30, "²³⁴⁵⁶", "፩፪፫፬፭፮", "١٢٣٤٥٦", "12345６７"):
        assert await service.say(member, f"签到 {code}") == WRONG_CODE, code
    assert (await service.say(secretary, "代签 " + "9" * 30)).endswith(f"本支部没有叫 {'9' * 30} 的党员，请核对姓名。")
    assert (await service.say(secretary, "代签 赵德明 ²³⁴⁵")).endswith("本支部叫赵德明的党员里，没有手机号后四位是 2345 的，请核对。")
    full_width = meeting.checkin_code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert (await service.say(member, f"签到 {full_width}")).startswith("签到成功！")
    for answer in ("开会", "1"):
        await service.say(secretary, answer)
    assert "例如" in await service.say(secretary, "明天下午99999999999999999999点")
