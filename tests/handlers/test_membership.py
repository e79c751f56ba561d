"""Binding (and a new code from the secretary), 我的, 帮助, following and unfollowing, turning reminders off and
on, as members and secretaries do it in the chat."""

from __future__ import annotations

import re

from sqlalchemy import select

from handlers import notices
from harness import DONGFENG, hongqi_branch
from storage.models import Member, OutboxMessage, Role, WeChatIdentity
from handlers.notices import NoticeSettings

BRANCH = "示范县委/城关镇党委/红旗村党支部"


async def test_unbound_follower_is_welcomed_and_told_how_to_bind(service):
    welcome = (await service.emulator.subscribe("newbie")).reply
    assert "欢迎关注" in welcome and "绑定" in welcome
    help_text = await service.say("newbie", "帮助")
    assert "绑定 姓名 绑定码" in help_text and "绑定党员身份后可以使用更多功能" in help_text
    assert "· 我的" not in help_text
    assert await service.say("newbie", "我的") == "这项功能需要先绑定党员身份。回复 绑定 开始。"


async def test_binding_in_one_message(service):
    member_id, code = await service.add_member("王秀英", BRANCH + "/第一党小组", phone="13800000002")
    reply = await service.say("w1", f"绑定 王秀英 {code}")
    assert reply.startswith("绑定成功！王秀英，您好。") and BRANCH in reply
    me = await service.say("w1", "我的")
    assert "姓名：王秀英" in me and f"组织：{BRANCH}" in me and "职务：党员" in me
    async with service.sessions() as session:
        member = await session.get(Member, member_id)
        identity = await session.get(WeChatIdentity, "w1")
    assert member.binding_code is None and identity.member_id == member_id
    # The code was one-time: nobody else can use it.
    assert (await service.say("w2", f"绑定 王秀英 {code}")).startswith("姓名或绑定码不对")
    assert (await service.say("w1", "绑定")).startswith("您已绑定为 王秀英")


async def test_binding_step_by_step_as_an_elderly_member_would(service):
    _, code = await service.add_member("赵德明")
    assert (await service.emulator.click("z1", "BIND")).reply.startswith("请回复您的姓名")
    assert (await service.emulator.voice("z1", "赵德明。")).reply.startswith("请回复 6 位绑定码")
    assert (await service.say("z1", "我不知道")).startswith("绑定码是 6 位数字")
    spaced = " ".join(code[:3]) + " " + code[3:]
    assert (await service.say("z1", spaced)).startswith("绑定成功！赵德明")
    assert "姓名：赵德明" in await service.say("z1", "我的")


async def test_name_and_code_without_a_space(service):
    _, code = await service.add_member("刘小梅")
    assert (await service.say("l1", f"绑定刘小梅{code}")).startswith("绑定成功！刘小梅")


async def test_wrong_attempts_are_limited_per_user(service):
    _, code = await service.add_member("陈志强")
    for left in (4, 3, 2, 1):
        assert await service.say("x1", "绑定 陈志强 000000") == f"姓名或绑定码不对，还可以再试 {left} 次。绑定码由支部书记提供。"
    assert await service.say("x1", "绑定 陈志强 000001") == "尝试次数太多，请 60 分钟后再试，或直接联系支部书记。"
    # Even the right code waits out the lockout, which is not a minute longer than it says.
    assert await service.say("x1", f"绑定 陈志强 {code}") == "尝试次数太多，请 60 分钟后再试，或直接联系支部书记。"
    service.clock.advance(minutes=59, seconds=30)
    assert (await service.say("x1", f"绑定 陈志强 {code}")).startswith("尝试次数太多，请 1 分钟后再试")
    # Another follower is not affected, and the wrong name with the right code fails.
    assert (await service.say("x2", f"绑定 张三 {code}")).startswith("姓名或绑定码不对")
    service.clock.advance(seconds=30)
    assert (await service.say("x1", f"绑定 陈志强 {code}")).startswith("绑定成功！陈志强")


async def test_unfollowing_keeps_the_record_and_following_again_welcomes_back(service):
    member_id = await service.bind("w1", "王秀英")
    assert (await service.emulator.unsubscribe("w1")).reply is None
    async with service.sessions() as session:
        identity = await session.get(WeChatIdentity, "w1")
        assert identity.subscribed is False and identity.member_id == member_id
    service.clock.advance(seconds=5)
    assert (await service.emulator.subscribe("w1")).reply == "王秀英，欢迎回来！回复 帮助 查看可以做什么。"
    async with service.sessions() as session:
        assert (await session.get(WeChatIdentity, "w1")).subscribed is True


async def test_a_member_with_a_new_phone_binds_again_with_a_reissued_code(service):
    from storage.members import issue_binding_code

    member_id = await service.bind("old-phone", "王秀英")
    async with service.sessions() as session, session.begin():
        code = await issue_binding_code(session, await session.get(Member, member_id), now=service.clock.now())
    assert (await service.say("new-phone", f"绑定 王秀英 {code}")).startswith("绑定成功")
    async with service.sessions() as session:
        bound = (await session.execute(select(WeChatIdentity).where(WeChatIdentity.member_id == member_id))).scalars().all()
    assert [identity.openid for identity in bound] == ["new-phone"]
    assert (await service.say("old-phone", "我的")).startswith("这项功能需要先绑定")


async def test_help_shows_each_role_its_commands(service):
    await service.bind("m1", "王秀英")
    await service.bind("s1", "李建国", role=Role.SECRETARY, phone="13800000001")
    member_help = await service.say("m1", "帮助")
    assert member_help.startswith("王秀英，您可以回复：") and "· 我的" in member_help
    assert "绑定党员身份后" not in member_help and "绑定 姓名" not in member_help
    assert (await service.emulator.click("s1", "HELP")).reply.startswith("李建国，您可以回复：")


async def test_asking_for_help_in_the_middle_of_binding_shows_help(service):
    _, code = await service.add_member("赵德明")
    await service.say("z1", "绑定")
    assert (await service.say("z1", "帮助")).startswith("您可以回复")
    # The binding dialog is over: a name now is just text.
    assert (await service.say("z1", "赵德明")).startswith("没有听懂")
    assert (await service.say("z1", f"绑定 赵德明 {code}")).startswith("绑定成功")


# ---------------------------------------------------------------- turning reminders off and on


async def _meeting_tomorrow(service, secretary: str) -> None:
    for reply in ("开会", "1", "明天下午3点", "村委会", "学习党的二十届四中全会精神", "1"):
        last = await service.say(secretary, reply)
    assert last.startswith("会议已召集"), last


async def test_a_member_turns_reminders_off_and_still_gets_the_meeting_notice(service):
    people = await hongqi_branch(service)
    member, other, secretary = people["王秀英"], people["刘小梅"], people["李建国"]
    await _meeting_tomorrow(service, secretary)  # the day-before and hour-before reminders are queued now
    reply = await service.say(member, "关闭提醒")
    assert reply.startswith("好的，提醒已关闭") and "已取消 2 条待发的提醒" in reply and "打开提醒" in reply
    assert await service.say(member, "关闭提醒") == "您的提醒已经是关闭的。想打开，回复 打开提醒。"
    assert "提醒：已关闭" in await service.say(member, "我的")

    await service.deliver()
    assert service.pushed(member)[-1].startswith("【会议通知】")  # the notice itself always comes
    service.clock.advance(hours=24)
    await service.deliver()
    assert not any(text.startswith("【会议提醒】") for text in service.pushed(member))
    assert service.pushed(other)[-1].startswith("【会议提醒】")
    async with service.sessions() as session:
        withdrawn = (await session.execute(select(OutboxMessage).where(
            OutboxMessage.member_id == await _member_id(session, "王秀英"), OutboxMessage.reminder.is_(True)))).scalars().all()
    assert [(row.status, row.error) for row in withdrawn] == [("failed", "本人已关闭提醒")] * 2


async def test_reminders_queued_after_turning_them_off_are_not_sent_until_turned_on(service):
    people = await hongqi_branch(service)
    member, secretary = people["张卫东"], people["李建国"]
    assert (await service.say(member, "关闭提醒")).startswith("好的，提醒已关闭")
    await service.say(secretary, "发通知")
    await service.say(secretary, "请交党费")
    await service.say(secretary, "1")
    await service.say(secretary, "1")
    await service.deliver()
    job = service.job_context(NoticeSettings)
    service.clock.advance(hours=service.config(NoticeSettings).notice_follow_up_hours + 1)
    assert await notices.follow_up(job) == 1
    await service.deliver()
    assert any("请交党费" in text for text in service.pushed(member))  # the notice came
    assert not any("温馨提醒" in text for text in service.pushed(member))  # its reminder did not
    assert any("温馨提醒" in text for text in service.pushed(people["陈志强"]))
    report = next(text for text in service.pushed(secretary) if text.startswith("【通知情况】"))
    assert "张卫东" in report  # still listed as not having answered

    assert await service.say(member, "打开提醒") == "好的，提醒已打开：以后开会前和通知没看时会提醒您。想关掉，回复 关闭提醒。"
    assert "提醒：打开" in await service.say(member, "我的")
    await _meeting_tomorrow(service, secretary)
    service.clock.advance(hours=24)
    await service.deliver()
    assert service.pushed(member)[-1].startswith("【会议提醒】")


async def test_turning_reminders_off_needs_a_bound_member(service):
    assert await service.say("stranger", "关闭提醒") == "这项功能需要先绑定党员身份。回复 绑定 开始。"
    assert "· 关闭提醒" not in await service.say("stranger", "帮助")  # listed once bound
    people = await hongqi_branch(service)
    assert "· 关闭提醒" in await service.say(people["王秀英"], "帮助")


async def _member_id(session, name: str) -> int:
    return (await session.execute(select(Member.id).where(Member.name == name))).scalar_one()


# ---------------------------------------------------------------- a new binding code from the secretary


async def test_a_member_on_a_new_wechat_account_binds_again_with_a_code_from_the_secretary(service):
    people = await hongqi_branch(service)
    secretary, old_account = people["李建国"], people["王秀英"]
    reply = await service.say(secretary, "新绑定码 王秀英")
    code = re.search(r"新绑定码：(\d{6})", reply).group(1)
    assert f"回复 绑定 王秀英 {code}" in reply and "原来的微信自动解除" in reply

    assert (await service.say("new-phone", f"绑定 王秀英 {code}")).startswith("绑定成功！王秀英")
    assert "姓名：王秀英" in await service.say("new-phone", "我的")
    assert await service.say(old_account, "我的") == "这项功能需要先绑定党员身份。回复 绑定 开始。"
    # The code was used up.
    assert (await service.say("third-phone", f"绑定 王秀英 {code}")).startswith("姓名或绑定码不对")


async def test_only_a_branch_leader_gets_codes_and_only_for_their_own_branch(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert (await service.say(people["王秀英"], "新绑定码 刘小梅")).startswith("这项功能只有书记、副书记")
    assert await service.say(secretary, "新绑定码") == "请在后面写上党员的姓名，例如：新绑定码 王秀英"
    assert (await service.say(secretary, "新绑定码 赵大山")).startswith("本支部的名册里没有“赵大山”")
    await service.add_member("周海", DONGFENG, phone="13900000009")  # another village's member
    assert (await service.say(secretary, "新绑定码 周海")).startswith("本支部的名册里没有“周海”")


async def test_namesakes_are_told_apart_by_the_end_of_their_phone_number(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await service.add_member("王秀英", BRANCH, phone="13700001111")
    asked = await service.say(secretary, "新绑定码 王秀英")
    assert asked.startswith("本支部有 2 位党员叫王秀英") and "手机号的后四位" in asked
    picked = await service.say(secretary, "新绑定码 王秀英 1111")
    code = re.search(r"新绑定码：(\d{6})", picked).group(1)
    async with service.sessions() as session:
        holder = (await session.execute(select(Member).where(Member.binding_code == code))).scalar_one()
    assert holder.phone == "13700001111"


async def test_turning_reminders_off_names_the_reminders_this_member_can_get(service):
    # Each feature declares the reminders it sends; a secretary also gets the missing-meetings reminder.
    people = await hongqi_branch(service)
    member_reply = await service.say(people["王秀英"], "关闭提醒")
    assert "开会前一天、前一小时的提醒、通知的催看提醒和每周学习内容的推送都不再发给您" in member_reply
    assert "缺项" not in member_reply
    secretary_reply = await service.say(people["李建国"], "关闭提醒")
    assert ("开会前一天、前一小时的提醒、书记的会议缺项提醒、通知的催看提醒、走访的逾期提醒与每日清单、每周学习内容的推送"
            "和每月的送学上门名单都不再发给您" in secretary_reply)
