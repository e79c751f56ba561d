"""What a member and a secretary meet in their first ten minutes with meetings: asking when the next one
is (typed, spoken, tapped), changing a meeting only on purpose, a date already past this year asked about,
and attendance from the moment check-in opens. Everything through the chat and the emulator."""

from __future__ import annotations

from harness import hongqi_branch
from test_meetings import at, call, latest_meeting

NEED_BINDING = "这项功能需要先绑定党员身份。回复 绑定 开始。"
NONE_AHEAD = "最近没有安排会议。"
TOPIC = "学习党的二十届四中全会精神"
BRANCH_MEETING = f"支部党员大会\n时间：11月25日（周三）15:00\n地点：村委会\n议题：{TOPIC}"
LEAVE_HINT = "不能参加请回复 请假 原因。"


async def meetings_of_the_week(service, secretary: str) -> None:
    """A branch meeting tomorrow, a committee meeting on Friday, the second group's meeting next Wednesday."""
    await call(service, secretary, when="明天下午3点")
    await call(service, secretary, kind="2", when="周五 9:00", topic="研究冬季慰问")
    await call(service, secretary, kind="3", extra=("2",), when="下周三晚上7点", place="刘家院子", topic="学党章 第三章")


# ---------------------------------------------------------------- 开会时间


async def test_a_member_asks_when_the_next_meeting_is_typed_spoken_or_tapped(service):
    people = await hongqi_branch(service)
    member = people["王秀英"]
    assert await service.say(member, "下次开会啥时候") == NONE_AHEAD
    await meetings_of_the_week(service, people["李建国"])

    # 王秀英 is in the first group and not on the committee: the branch meeting is hers.
    expected = f"下次会议：{BRANCH_MEETING}\n\n{LEAVE_HINT}"
    assert await service.say(member, "下次开会啥时候") == expected
    assert await service.say(member, "开会是哪天") == expected
    assert await service.say(member, "开会时间") == expected
    assert await service.say(member, "请问，最近有会吗？") == expected
    assert (await service.emulator.voice(member, "下次开会是什么时候？")).reply == expected
    assert (await service.emulator.voice(member, "什么时候开会啊。")).reply == expected
    assert (await service.emulator.click(member, "MEETINGS")).reply == expected

    # 陈志强 (second group) also has his group's meeting; the place and topic as the secretary wrote them.
    assert await service.say(people["陈志强"], "什么时候开会") == (
        f"近期有 2 个会议：\n1. {BRANCH_MEETING}\n\n"
        "2. 党小组会（第二党小组）\n时间：12月2日（周三）19:00\n地点：刘家院子\n议题：学党章 第三章\n\n" + LEAVE_HINT)
    # The committee member sees the committee meeting; the secretary sees every meeting of the branch.
    committee = await service.say(people["张卫东"], "啥时候开会")
    assert "支委会" in committee and "第二党小组" not in committee
    secretary = await service.say(people["李建国"], "下次开会啥时候")
    assert secretary.startswith("近期有 3 个会议：\n1. 支部党员大会") and "\n\n2. 支委会\n时间：11月27日（周五）09:00" in secretary
    assert "3. 党小组会（第二党小组）" in secretary

    # An unbound follower is asked to bind, as for any member's command.
    assert await service.say("stranger", "下次开会啥时候") == NEED_BINDING
    assert (await service.emulator.click("stranger", "MEETINGS")).reply == NEED_BINDING


async def test_the_meeting_on_now_is_listed_while_check_in_is_open(service):
    people = await hongqi_branch(service)
    await call(service, people["李建国"], when="明天下午3点")
    at(service, 11, 25, 14, 40)
    assert await service.say(people["王秀英"], "开会是哪天") == (
        f"下次会议：支部党员大会\n时间：11月25日（周三）15:00（现在可以签到）\n地点：村委会\n议题：{TOPIC}\n\n{LEAVE_HINT}")
    at(service, 11, 25, 15, 30)  # started: still on, but too late to ask for leave
    assert await service.say(people["王秀英"], "开会是哪天") == (
        f"下次会议：支部党员大会\n时间：11月25日（周三）15:00（现在可以签到）\n地点：村委会\n议题：{TOPIC}")
    at(service, 11, 25, 16, 1)
    assert await service.say(people["王秀英"], "开会是哪天") == NONE_AHEAD


async def test_asking_when_takes_nothing_from_other_commands_or_policy_questions(service):
    people = await hongqi_branch(service)
    await call(service, people["李建国"])
    # 开会 is still the secretary's command to call one, 改时间 still moves one.
    assert (await service.say(people["李建国"], "开会")).startswith("开什么会？")
    assert await service.say(people["李建国"], "取消") == "已取消。"
    assert (await service.say(people["王秀英"], "开会")).startswith("这项功能只有书记、副书记")
    assert (await service.say(people["李建国"], "改时间")).startswith("11月25日（周三）15:00 支部党员大会改到什么时候？")
    await service.say(people["李建国"], "取消")
    # A policy question that mentions 开会 is answered as one.
    for question in ("开会迟到多少分钟算迟到", "开会有事来不了跟谁说", "会议时间改了 是不是得重新发一遍开会"):
        reply = await service.say(people["王秀英"], question)
        assert not reply.startswith(("下次会议", NONE_AHEAD)), (question, reply)


async def test_a_meeting_next_year_shows_its_year(service):
    at(service, 12, 6, 10)
    people = await hongqi_branch(service)
    await call(service, people["李建国"], when="2027年1月5日上午9点", topic="学习新修订的条例")
    assert await service.say(people["王秀英"], "最近有会吗") == (
        "下次会议：支部党员大会\n时间：2027年1月5日（周二）09:00\n地点：村委会\n议题：学习新修订的条例\n\n" + LEAVE_HINT)


# ---------------------------------------------------------------- changing a meeting only on purpose


async def test_the_cancel_question_keeps_the_meeting_on_2(service):
    people = await hongqi_branch(service)
    secretary, member = people["李建国"], people["王秀英"]
    _, meeting = await call(service, secretary)
    assert await service.say(secretary, "取消会议") == \
        "确定取消11月25日（周三）15:00 支部党员大会吗？回复 1 确定取消会议；回复 2 保留会议。"
    assert (await service.say(secretary, "5")).startswith("确定取消11月25日（周三）15:00 支部党员大会吗？")
    assert await service.say(secretary, "2") == "好的，会议照常举行。"
    await service.say(member, "我的")  # keeps the member's customer-service window open
    at(service, 11, 24, 15, 1)
    await service.deliver()
    assert service.pushed(member)[-1].startswith("【会议提醒】明天 15:00")  # the reminders still go out
    assert not any(text.startswith("【会议取消】") for text in service.pushed(member))
    assert (await latest_meeting(service)).status == meeting.status == "scheduled"


async def test_cancel_typed_in_the_question_says_the_meeting_goes_ahead_and_keeps_it(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await call(service, secretary)
    await service.say(secretary, "取消会议")
    assert await service.say(secretary, "取消") == "好的，会议照常举行。"
    await service.deliver()
    assert not any(text.startswith("【会议取消】") for text in service.pushed(people["王秀英"]))
    assert (await latest_meeting(service)).status == "scheduled"
    # And 1 afterwards is no late confirmation: the question is over.
    assert not (await service.say(secretary, "1")).startswith("会议已取消")
    assert (await latest_meeting(service)).status == "scheduled"
    # Leaving 改时间 the same way keeps the time, and says so.
    await service.say(secretary, "改时间")
    assert await service.say(secretary, "算了") == "好的，会议时间不变。"


async def test_moving_shows_old_and_new_time_and_applies_only_on_1(service):
    people = await hongqi_branch(service)
    secretary, member = people["李建国"], people["王秀英"]
    _, meeting = await call(service, secretary)
    await service.deliver()
    told = len(service.pushed(member))
    await service.say(secretary, "改时间")
    confirm = await service.say(secretary, "后天下午3点")
    assert confirm == (f"请核对：支部党员大会“{TOPIC}”\n原定：11月25日（周三）15:00\n改到：11月26日（周四）15:00\n"
                       "回复 1 确定改时间并通知参会党员；回复 2 不改了。")
    # Nothing changed yet: members have heard nothing and the meeting keeps its time.
    await service.deliver()
    assert len(service.pushed(member)) == told
    assert (await latest_meeting(service)).starts_at == meeting.starts_at
    # A different time at the confirm replaces the last one; 2 keeps the meeting as it was.
    assert "改到：11月27日（周五）09:00" in await service.say(secretary, "周五上午9点")
    assert await service.say(secretary, "2") == "好的，会议时间不变。"
    await service.deliver()
    assert len(service.pushed(member)) == told
    assert (await latest_meeting(service)).starts_at == meeting.starts_at
    # And on 1 it is moved, and everyone told.
    await service.say(secretary, "改时间")
    await service.say(secretary, "后天下午3点")
    assert await service.say(secretary, "1") == "已改到 11月26日（周四）15:00，已通知 4 人（赵德明没绑定微信或已取消关注，收不到，请当面告诉）。"
    await service.deliver()
    assert service.pushed(member)[-1].startswith(f"【会议改时间】支部党员大会“{TOPIC}”改到 11月26日（周四）15:00")


async def test_a_secretary_replaced_before_the_1_cannot_move_the_meeting(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, meeting = await call(service, secretary)
    await service.say(secretary, "改时间")
    await service.say(secretary, "后天下午3点")
    await service.add_member("李建国", "示范县委/城关镇党委/红旗村党支部", phone="13800000001")  # now a member
    assert await service.say(secretary, "1") == "您现在已不是本支部的书记或副书记，不能修改会议时间，这次操作已取消。"
    assert (await latest_meeting(service)).starts_at == meeting.starts_at


# ---------------------------------------------------------------- a date already past this year


async def test_calling_a_meeting_on_a_date_past_this_year_asks_about_next_year(service):
    at(service, 12, 6, 10)
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await service.say(secretary, "开会")
    await service.say(secretary, "1")
    asked = await service.say(secretary, "11月28日 14:30")
    assert asked == "11月28日今年已经过去了。是明年 2027年11月28日（周日）14:30 吗？\n回复 1 是；不是的话请重新回复时间。"
    # Not a yes: the time is asked again, and a date still ahead this year goes straight on.
    assert (await service.say(secretary, "2")).startswith("什么时候开？")
    assert (await service.say(secretary, "12月28日 14:30")).startswith("在哪里开？")
    await service.say(secretary, "取消")

    await service.say(secretary, "开会")
    await service.say(secretary, "1")
    await service.say(secretary, "11月28日 14:30")
    assert (await service.say(secretary, "1")).startswith("在哪里开？")
    await service.say(secretary, "村委会")
    preview = await service.say(secretary, "年度民主评议")
    assert "时间：2027年11月28日（周日）14:30" in preview
    assert (await service.say(secretary, "1")).startswith("会议已召集")
    await service.deliver()
    notice = service.pushed(people["王秀英"])[-1]
    assert notice.startswith("【会议通知】") and "时间：2027年11月28日（周日）14:30" in notice
    # Every list that shows it carries the year.
    assert "时间：2027年11月28日（周日）14:30" in await service.say(people["王秀英"], "开会时间")
    assert (await service.say(people["王秀英"], "请假 外出")).startswith("已向书记请假（2027年11月28日（周日）14:30 支部党员大会）")
    assert (await service.say(secretary, "取消会议")).startswith("确定取消2027年11月28日（周日）14:30 支部党员大会吗？")


async def test_moving_a_meeting_to_a_date_past_this_year_asks_about_next_year(service):
    at(service, 12, 6, 10)
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await call(service, secretary, when="12月9日 14:30")
    await service.deliver()
    await service.say(secretary, "改时间")
    assert await service.say(secretary, "11月28日 14:30") == (
        f"11月28日今年已经过去了，是改到明年吗？\n请核对：支部党员大会“{TOPIC}”\n原定：12月9日（周三）14:30\n"
        "改到：2027年11月28日（周日）14:30\n回复 1 确定改时间并通知参会党员；回复 2 不改了。")
    assert await service.say(secretary, "1") == "已改到 2027年11月28日（周日）14:30，已通知 4 人（赵德明没绑定微信或已取消关注，收不到，请当面告诉）。"
    await service.deliver()
    assert service.pushed(people["刘小梅"])[-1].startswith(f"【会议改时间】支部党员大会“{TOPIC}”改到 2027年11月28日（周日）14:30")


# ---------------------------------------------------------------- attendance from the moment check-in opens


async def test_attendance_and_the_record_work_from_the_moment_check_in_opens(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, earlier = await call(service, secretary, when="今天下午3点", topic="上一次的会")
    _, meeting = await call(service, secretary, when="明天下午3点")
    at(service, 11, 24, 15, 5)
    await service.say(people["张卫东"], f"签到 {earlier.checkin_code}")

    at(service, 11, 25, 14, 29)  # check-in opens at 14:30: the sheet is still yesterday's
    assert (await service.say(secretary, "签到情况")).startswith("支部党员大会“上一次的会”")
    at(service, 11, 25, 14, 35)
    assert (await service.say(people["王秀英"], f"签到 {meeting.checkin_code}")).startswith("签到成功！")
    assert await service.say(secretary, "签到情况") == (
        f"支部党员大会“{TOPIC}”\n11月25日（周三）15:00，村委会\n"
        "应到 6 人，已签到 1 人，请假 0 人，还没签到 5 人。\n已签到：王秀英 14:35\n"
        "还没签到：李建国、张卫东、刘小梅、陈志强、赵德明\n签到 16:00 截止。")
    assert (await service.say(secretary, "会议记录")).startswith("为11月25日（周三）15:00 支部党员大会填写会议记录")
    await service.say(secretary, "取消")

    at(service, 11, 25, 16, 1)  # check-in closed: now they are absent
    report = await service.say(secretary, "出勤")
    assert "应到 6 人，实到 1 人，请假 0 人，缺席 5 人。\n实到：王秀英 14:35\n缺席：" in report
    assert "截止" not in report


async def test_before_any_check_in_opens_there_is_no_sheet(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await call(service, secretary, when="明天下午3点")
    at(service, 11, 25, 14, 29)
    assert await service.say(secretary, "签到情况") == "本支部还没有开始签到的会议。"
    assert await service.say(secretary, "会议记录") == "本支部还没有开始签到的会议。"
