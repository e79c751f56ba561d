"""Binding that cannot be guessed: an account-wide limit on failed attempts, codes that expire, and the old
WeChat account told when a member's identity moves to a new one. All through the chat, as people do it."""

from __future__ import annotations

import logging
import re

from sqlalchemy import select

from harness import HONGQI, hongqi_branch
from storage.models import BindingFailure

MISMATCH = "姓名或绑定码不对"
PAUSED_10 = "为了安全，绑定暂停了：最近输错绑定码的太多。请 10 分钟后再试，或直接联系支部书记。"
NOT_BOUND = "这项功能需要先绑定党员身份。回复 绑定 开始。"


def wrong_code(n: int) -> str:
    # Real codes never start with 0 (storage.members.issue_binding_code), so these are always wrong.
    return f"0{n:05d}"


def pause_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "handlers.membership" and record.levelno == logging.WARNING]


async def test_failures_from_many_followers_pause_binding_for_everyone_until_the_window_passes(service, caplog):
    _, code = await service.add_member("孙大山", HONGQI)
    # 10 followers, 3 wrong codes each: every one well under their own limit of 5, 30 in all.
    guess = 0
    for follower in range(10):
        for left in (4, 3, 2):
            guess += 1
            reply = await service.say(f"guesser-{follower}", f"绑定 孙大山 {wrong_code(guess)}")
            assert reply == f"姓名或绑定码不对，还可以再试 {left} 次。绑定码由支部书记提供。"

    # Now nobody's attempt is evaluated, not even the member's own right code.
    assert await service.say("member-phone", f"绑定 孙大山 {code}") == PAUSED_10
    assert await service.say("member-phone", "我的") == NOT_BOUND
    assert await service.say("guesser-11", f"绑定 孙大山 {wrong_code(99)}") == PAUSED_10
    assert await service.say("guesser-0", f"绑定 孙大山 {wrong_code(98)}") == PAUSED_10
    assert await service.say("newcomer", "绑定") == PAUSED_10  # told before typing a name and code
    service.clock.advance(minutes=6)
    assert (await service.say("member-phone", f"绑定 孙大山 {code}")).startswith("为了安全，绑定暂停了：最近输错绑定码的太多。请 4 分钟后再试")
    # One warning when it tripped, none for the refused attempts.
    warnings = pause_warnings(caplog)
    assert len(warnings) == 1 and "30 failed attempts within 10 minutes" in warnings[0]

    service.clock.advance(minutes=4)
    assert (await service.say("member-phone", f"绑定 孙大山 {code}")).startswith("绑定成功！孙大山")
    # The refused attempts were not counted against guesser-0 either: 3 wrong before, so 1 try left now.
    assert await service.say("guesser-0", f"绑定 孙大山 {wrong_code(97)}") == (
        "姓名或绑定码不对，还可以再试 1 次。绑定码由支部书记提供。")


async def test_a_follower_in_the_middle_of_binding_step_by_step_hears_of_the_pause(make_service):
    service = await make_service(bind_account_max_failures=2)
    _, code = await service.add_member("赵德明", HONGQI)
    assert (await service.say("z1", "绑定")).startswith("请回复您的姓名")
    assert (await service.say("z1", "赵德明")).startswith("请回复 6 位绑定码")
    for n in (1, 2):
        assert (await service.say(f"guesser-{n}", f"绑定 赵德明 {wrong_code(n)}")).startswith(MISMATCH)
    assert await service.say("z1", code) == PAUSED_10
    # That ended the step-by-step binding: the code alone is not taken as one now.
    assert (await service.say("z1", code)).startswith(f"没有听懂“{code}”")
    service.clock.advance(minutes=10)
    assert (await service.say("z1", f"绑定 赵德明 {code}")).startswith("绑定成功！赵德明")


async def test_the_limit_counts_only_failures_within_the_window_and_pauses_for_a_window_after_the_last(
        make_service, caplog):
    service = await make_service(bind_account_max_failures=3, bind_account_window_minutes=10)
    _, code = await service.add_member("孙大山", HONGQI)
    assert (await service.say("g1", f"绑定 孙大山 {wrong_code(1)}")).startswith(MISMATCH)
    assert (await service.say("g2", f"绑定 孙大山 {wrong_code(2)}")).startswith(MISMATCH)
    service.clock.advance(minutes=11)  # those two are too old to count
    assert (await service.say("g3", f"绑定 孙大山 {wrong_code(3)}")).startswith(MISMATCH)
    service.clock.advance(minutes=4)
    assert (await service.say("g4", f"绑定 孙大山 {wrong_code(4)}")).startswith(MISMATCH)
    service.clock.advance(minutes=5)
    assert (await service.say("g5", f"绑定 孙大山 {wrong_code(5)}")).startswith(MISMATCH)  # the 3rd in 10 minutes
    assert pause_warnings(caplog) and len(pause_warnings(caplog)) == 1

    # Closed for 10 minutes after the failure that tripped it, though the oldest of the three ages out sooner.
    service.clock.advance(minutes=1)
    assert (await service.say("m", f"绑定 孙大山 {code}")).endswith("请 9 分钟后再试，或直接联系支部书记。")
    service.clock.advance(minutes=8)
    assert (await service.say("m", f"绑定 孙大山 {code}")).endswith("请 1 分钟后再试，或直接联系支部书记。")

    # Open again; three more failures pause it again, with a second warning.
    service.clock.advance(minutes=1)
    for n in (6, 7, 8):
        assert (await service.say(f"g{n}", f"绑定 孙大山 {wrong_code(n)}")).startswith(MISMATCH)
    assert await service.say("m", f"绑定 孙大山 {code}") == PAUSED_10
    assert len(pause_warnings(caplog)) == 2
    # The table keeps only the failures the limit still counts; the five older ones were deleted.
    async with service.sessions() as session:
        kept = (await session.execute(select(BindingFailure.openid).order_by(BindingFailure.openid))).scalars().all()
    assert kept == ["g6", "g7", "g8"]


# ---------------------------------------------------------------- codes that expire


async def test_an_expired_code_tells_the_member_to_ask_the_secretary_for_a_new_one(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, code = await service.add_member("孙大山", HONGQI, phone="13800000009")
    service.clock.advance(days=30, minutes=1)

    expired = await service.say("sun", f"绑定 孙大山 {code}")
    assert expired == ("这个绑定码已过期。请向支部书记要一个新的（书记在公众号回复 新绑定码 孙大山 就能拿到），"
                       "再回复 绑定 孙大山 新绑定码。")
    # Someone with the code but not the name learns nothing about it.
    assert (await service.say("guesser", f"绑定 张三 {code}")).startswith(MISMATCH)
    # Trying the old slip of paper again and again does not lock the member out.
    for _ in range(6):
        assert await service.say("sun", f"绑定 孙大山 {code}") == expired
    # Step by step, the expired code ends the binding dialog too.
    await service.say("sun", "绑定")
    await service.say("sun", "孙大山")
    assert await service.say("sun", code) == expired
    assert await service.say("sun", "我的") == NOT_BOUND

    renewed = await service.say(secretary, "新绑定码 孙大山")
    assert "30 天内有效" in renewed
    new_code = re.search(r"新绑定码：(\d{6})", renewed).group(1)
    assert (await service.say("sun", f"绑定 孙大山 {code}")).startswith(MISMATCH)  # the old code is gone
    assert (await service.say("sun", f"绑定 孙大山 {new_code}")).startswith("绑定成功！孙大山")


async def test_a_code_binds_until_the_end_of_its_last_day(service):
    _, early = await service.add_member("孙大山", HONGQI)
    _, late = await service.add_member("钱二妹", HONGQI)
    service.clock.advance(days=30, minutes=-1)
    assert (await service.say("sun", f"绑定 孙大山 {early}")).startswith("绑定成功！孙大山")
    service.clock.advance(minutes=1)
    assert (await service.say("qian", f"绑定 钱二妹 {late}")).startswith("这个绑定码已过期")


async def test_a_renewed_code_lasts_the_configured_days(make_service):
    service = await make_service(binding_code_days=7)
    people = await hongqi_branch(service)
    renewed = await service.say(people["李建国"], "新绑定码 赵德明")
    assert "7 天内有效" in renewed
    code = re.search(r"新绑定码：(\d{6})", renewed).group(1)
    service.clock.advance(days=7)
    assert (await service.say("zhao", f"绑定 赵德明 {code}")).startswith("这个绑定码已过期")
    again = re.search(r"新绑定码：(\d{6})", await service.say(people["李建国"], "新绑定码 赵德明")).group(1)
    service.clock.advance(days=6)
    assert (await service.say("zhao", f"绑定 赵德明 {again}")).startswith("绑定成功！赵德明")


# ---------------------------------------------------------------- the old WeChat account is told


async def test_the_old_wechat_hears_when_the_member_binds_on_a_new_one(service):
    people = await hongqi_branch(service)
    secretary, old_phone = people["李建国"], people["王秀英"]
    await service.deliver()
    assert not any("另一个微信号" in text for name in people for text in service.pushed(people[name]))  # first bindings

    code = re.search(r"新绑定码：(\d{6})", await service.say(secretary, "新绑定码 王秀英")).group(1)
    assert (await service.say("new-phone", f"绑定 王秀英 {code}")).startswith("绑定成功！王秀英")
    await service.deliver()
    assert service.pushed(old_phone) == [
        "您这个微信原来绑定的党员身份（王秀英）现在已绑定到另一个微信号，这个微信不再绑定。\n"
        "如果不是您本人换的微信，请马上联系支部书记。"]
    assert not any("另一个微信号" in text for text in service.pushed("new-phone"))
    await service.deliver()  # told once, however often the outbox runs
    assert len(service.pushed(old_phone)) == 1


async def test_after_following_the_name_and_code_alone_bind_and_nothing_else_is_taken_for_them(service):
    _, code = await service.add_member("孙桂兰")
    welcome = (await service.emulator.subscribe("newcomer")).reply
    assert "直接回复您的姓名和绑定码，例如：王秀英 123456" in welcome
    assert (await service.say("newcomer", f"孙桂兰 {code}")).startswith("绑定成功！孙桂兰")


async def test_a_command_right_after_following_is_not_read_as_a_name(service):
    from sqlalchemy import func, select

    from storage.models import BindingFailure

    await service.emulator.subscribe("newcomer")
    reply = await service.say("newcomer", "签到 123456")
    assert "姓名或绑定码不对" not in reply
    async with service.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(BindingFailure))).scalar() == 0
    # Nor is a question: it is answered, and the welcome's dialog is over.
    await service.emulator.subscribe("asker")
    assert "姓名或绑定码" not in await service.say("asker", "党费怎么交")
