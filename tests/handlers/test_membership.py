"""Binding, 我的, 帮助, following and unfollowing, as members do it in the chat."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import Member, Role, WeChatIdentity

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
    # Even the right code waits out the lockout.
    assert (await service.say("x1", f"绑定 陈志强 {code}")).startswith("尝试次数太多")
    # Another follower is not affected, and the wrong name with the right code fails.
    assert (await service.say("x2", f"绑定 张三 {code}")).startswith("姓名或绑定码不对")
    service.clock.advance(minutes=61)
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
        code = await issue_binding_code(session, await session.get(Member, member_id))
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
