"""The weekly study push to a member outside the 48-hour window with no study template (issue 16): it waits
for the member's next message instead of failing. Through the webhook with the clock moved on: the reply to
that message ends with the waiting line once (however many pushes wait), a WeChat retry of the same message
gets the same reply and nothing more, the next message gets no line, a message nothing answers (a menu click)
sends the pushes as customer-service messages instead, and after the item's period the line is no longer
given. With a study template the push is a template message; inside the window, a customer-service message."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from bot.wechat.emulator import message_xml
from handlers.study.service import PUSH_WAITS
from harness import hongqi_branch
from storage.models import OutboxMessage
from test_study import ITEMS, at, study_pushes, sweep

TIAOLI_CHASER = "“党员每年学习多少学时”12月6日前学完就好，回复 学习 查看"


@pytest.fixture
def study_service(make_service, tmp_path):
    """make_service(**settings) with the test study items; templates as given (none by default)."""
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "test.toml").write_text(ITEMS, encoding="utf-8")

    async def make(**settings):
        return await make_service(study_dir=str(folder), **{"wechat_templates": {}, **settings})
    return make


async def study_rows(service, openid: str) -> list[OutboxMessage]:
    async with service.sessions() as session:
        return list((await session.execute(
            select(OutboxMessage).where(OutboxMessage.openid == openid, OutboxMessage.kind == "study")
            .order_by(OutboxMessage.id))).scalars())


async def statuses(service, openid: str) -> Counter:
    return Counter((row.status, row.channel) for row in await study_rows(service, openid))


def text_from(service, openid: str, content: str, msg_id: int) -> str:
    """A text message as WeChat posts it, with a fixed MsgId so that it can be posted again (a retry)."""
    return message_xml({"ToUserName": service.emulator.account_id, "FromUserName": openid,
                        "CreateTime": service.clock.timestamp(), "MsgType": "text", "Content": content,
                        "MsgId": msg_id})


async def test_outside_the_window_the_push_waits_and_the_next_reply_carries_it_once(study_service):
    service = await study_service()
    people = await hongqi_branch(service)  # they bound on 24 November: their windows closed on the 26th
    member = people["王秀英"]
    at(service, 11, 30, 8, 0)
    await sweep(service)
    # Both of Hongqi's items were pushed: nothing could reach anyone, nothing failed.
    assert await statuses(service, member) == Counter({("waiting", None): 2})
    assert study_pushes(service, member) == []
    assert service.outbox.failed == 0 and service.outbox.counters.waiting == 10

    at(service, 11, 30, 19, 0)
    body = text_from(service, member, "你好", 880001)
    first = (await service.emulator.post_xml(body)).reply
    assert first.endswith("\n" + PUSH_WAITS) and first.count(PUSH_WAITS) == 1  # two pushes, one line
    assert await statuses(service, member) == Counter({("sent", "reply"): 2})
    # WeChat posts the same message again: the stored reply, the line in it once, and nothing handed over twice.
    assert (await service.emulator.post_xml(body)).reply == first
    # The next message gets no line; no message was spent on the pushes.
    assert PUSH_WAITS not in (await service.emulator.text(member, "你好")).reply
    await service.deliver()
    assert service.pushed(member) == []

    # 学习 as the message that finds them: the item itself, so no line saying "回复 学习 查看".
    shown = (await service.emulator.text(people["李建国"], "学习")).reply
    assert shown.startswith("【学习】党员每年学习多少学时") and PUSH_WAITS not in shown
    assert {row.status for row in await study_rows(service, people["李建国"])} == {"failed"}
    assert {row.error for row in await study_rows(service, people["李建国"])} == {"不用再发：本人已在聊天里看过"}
    # The others still wait.
    assert await statuses(service, people["陈志强"]) == Counter({("waiting", None): 2})


async def test_a_message_nothing_answers_sends_the_waiting_pushes_through_the_window_it_opened(study_service):
    service = await study_service()
    people = await hongqi_branch(service)
    member = people["王秀英"]
    at(service, 11, 30, 8, 0)
    await sweep(service)
    # A menu button no feature has: no reply to carry the line, but the click opened the window.
    assert (await service.emulator.click(member, "NO-SUCH-KEY")).reply is None
    await service.deliver()
    pushed = [text for text in service.pushed(member) if text.startswith("【本周学习】")]
    assert len(pushed) == 2
    assert await statuses(service, member) == Counter({("sent", "custom"): 2})
    assert PUSH_WAITS not in (await service.emulator.text(member, "你好")).reply


async def test_after_the_items_period_its_waiting_line_is_no_longer_given(study_service):
    service = await study_service()
    people = await hongqi_branch(service)
    member, later = people["张卫东"], people["陈志强"]
    at(service, 11, 30, 8, 0)
    await sweep(service)
    at(service, 12, 3, 8, 0)  # the chaser for 党员每年学习多少学时 (it ends on 6 December) waits too
    await sweep(service)
    assert await statuses(service, member) == Counter({("waiting", None): 3})

    # Until the first item's period is over (6 December, local), the chaser's line is given too.
    at(service, 12, 6, 23, 50)
    before = (await service.emulator.text(people["李建国"], "你好")).reply
    assert before.endswith(f"\n{PUSH_WAITS}\n{TIAOLI_CHASER}")
    # 7 December: its push and chaser have lapsed; 党费怎么交 runs to the 13th.
    at(service, 12, 7, 9, 0)
    reply = (await service.emulator.text(member, "你好")).reply
    assert reply.count(PUSH_WAITS) == 1 and TIAOLI_CHASER not in reply
    assert [(row.status, row.channel) for row in await study_rows(service, member)] == [
        ("waiting", None), ("sent", "reply"), ("waiting", None)]  # lapsed, never failed
    # After every period, nothing.
    at(service, 12, 14, 9, 0)
    after = (await service.emulator.text(later, "你好")).reply
    assert PUSH_WAITS not in after and "学完就好" not in after
    assert {row.status for row in await study_rows(service, later)} == {"waiting"}


async def test_with_a_study_template_the_push_is_a_template_message(study_service):
    service = await study_service(wechat_templates={"study": "STUDY-TEMPLATE"})
    people = await hongqi_branch(service)
    member = people["王秀英"]
    at(service, 11, 30, 8, 0)
    await sweep(service)
    assert set(study_pushes(service, member)) == {"【本周学习】党员每年学习多少学时 链接", "【本周学习】党费怎么交 链接"}
    assert await statuses(service, member) == Counter({("sent", "template"): 2})
    assert PUSH_WAITS not in (await service.emulator.text(member, "你好")).reply


async def test_inside_the_window_the_push_is_a_customer_service_message(study_service):
    service = await study_service()
    people = await hongqi_branch(service)
    member = people["王秀英"]
    at(service, 11, 30, 7, 50)
    await service.emulator.text(member, "你好")  # the window opens
    at(service, 11, 30, 8, 0)
    await sweep(service)
    assert len([text for text in service.pushed(member) if text.startswith("【本周学习】")]) == 2
    assert await statuses(service, member) == Counter({("sent", "custom"): 2})
    assert PUSH_WAITS not in (await service.emulator.text(member, "你好")).reply


async def test_done_or_muted_a_waiting_push_is_not_given_afterwards(study_service):
    service = await study_service()
    people = await hongqi_branch(service)
    at(service, 11, 30, 8, 0)
    await sweep(service)
    at(service, 12, 3, 8, 0)
    await sweep(service)  # the chaser of 党员每年学习多少学时 waits too
    # 已学 (by voice): that item's push and chaser stop; the other item's push still waits for the next message.
    done = (await service.emulator.voice(people["王秀英"], "已学")).reply
    assert done.startswith("已记下：学完“党员每年学习多少学时”") and TIAOLI_CHASER not in done
    assert done.endswith("\n" + PUSH_WAITS)  # 党费怎么交 is still waiting
    # 关闭学习提醒: every waiting study push of the member stops, and the reply says nothing of them.
    muted = (await service.emulator.text(people["张卫东"], "关闭学习提醒")).reply
    assert PUSH_WAITS not in muted and TIAOLI_CHASER not in muted
    assert {(row.status, row.error) for row in await study_rows(service, people["张卫东"])} == {("failed", "本人已关闭学习提醒")}
    assert PUSH_WAITS not in (await service.emulator.text(people["张卫东"], "你好")).reply
