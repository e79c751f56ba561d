"""What people send first and most: greetings, thanks and nods, answered like a person would."""

from __future__ import annotations

import pytest

from harness import hongqi_branch

NODS = ["好的", "嗯", "嗯嗯", "👍", "🙏🙏🙏", "[强]", "[抱拳][抱拳]", "/::)", "OK", "好的，知道了",
        "【收到不支持的消息类型，暂无法显示】"]


async def test_an_unbound_follower_greeted_back_with_what_to_do_first(service):
    for greeting in ("你好", "在吗", "您好！", "你好，在吗？"):
        reply = await service.say("stranger", greeting)
        assert reply.startswith("您好！您现在可以：") and "回复 绑定" in reply, (greeting, reply)
        assert "没有听懂" not in reply and "转给支部书记" not in reply


async def test_a_member_is_greeted_by_name_with_what_is_pending_first(service):
    people = await hongqi_branch(service)
    member, secretary = people["王秀英"], people["李建国"]
    plain = await service.say(member, "你好")
    assert plain.startswith("王秀英，您好！您现在可以：") and "开会时间" in plain
    assert len([line for line in plain.splitlines() if line.startswith("· ")]) == 3

    # A notice waiting for 收到 and a meeting open for check-in come first.
    await service.say(secretary, "发通知")
    await service.say(secretary, "周六打扫村部卫生")
    await service.say(secretary, "1")
    await service.say(secretary, "1")
    await service.deliver()
    pending = await service.say(member, "在吗")
    assert pending.splitlines()[1] == "· 回复 收到 —— 确认通知“周六打扫村部卫生”"

    leader = await service.say(secretary, "你好")
    assert leader.startswith("李建国，您好！") and "回复 开会" in leader and "回复 发通知" in leader


@pytest.mark.parametrize("text", NODS)
async def test_a_nod_gets_no_reply_and_offers_nothing(service, text):
    await service.bind("m1", "王秀英")
    assert await service.say("m1", text) is None


async def test_thanks_get_a_short_reply_never_an_offer_to_forward(service):
    await service.bind("m1", "王秀英")
    for thanks in ("谢谢", "谢谢书记！", "辛苦了", "好的谢谢"):
        assert await service.say("m1", thanks) == "不客气！有事随时发消息。"
    # An unbound follower too: nothing to forward, nothing to bind first.
    assert await service.say("stranger", "谢谢") == "不客气！有事随时发消息。"
    assert "绑定" not in (await service.say("stranger", "1"))


async def test_a_greeting_by_voice_is_a_greeting(service):
    reply = (await service.emulator.voice("stranger", "你好。")).reply
    assert reply.startswith("您好！您现在可以：")
