"""The dispatcher through the webhook: exactly-once handling, the reply budget, dialogs, filters and roles."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from bot.app import ENGINE, build_app
from conftest import POSTGRES_URL
from harness import SQLITE_ONLY
from bot.dispatch import (
    SORRY,
    Choice,
    Click,
    Command,
    Context,
    Dialog,
    MessageKind,
    Refusal,
    Regex,
    Router,
    Scene,
    SkipHandler,
    settled_within,
)
from bot.messages import Kind, Message
from bot.wechat.emulator import message_xml
from handlers import membership
from storage import inbound
from storage.models import DialogState, InboundMessage, InboundStatus, Organization, Role, WeChatIdentity
from storage.sqlite_driver import LoopConnection, LoopCursor
from storage.transaction import MessageTransaction



def counting_router(calls: list, *, delay: float = 0.0, fail: bool = False) -> Router:
    """A handler with a visible side effect: it creates an organization row per call."""
    router = Router("counting")

    @router.on(Command("记一下"))
    async def note(session, message) -> str:
        calls.append(message.msg_id)
        if delay:
            await asyncio.sleep(delay)
        if fail:
            raise RuntimeError("boom")
        session.add(Organization(name=f"第{len(calls)}党支部", org_type="党支部", path=f"x/{message.msg_id}/{len(calls)}"))
        return f"已记下第 {len(calls)} 次"

    return router


async def organization_count(service) -> int:
    async with service.sessions() as session:
        return (await session.execute(select(func.count()).select_from(Organization))).scalar()


def fixed_text(user: str, content: str, msg_id: int) -> str:
    return message_xml({"ToUserName": "gh", "FromUserName": user, "CreateTime": 1_764_000_000, "MsgType": "text",
                        "Content": content, "MsgId": msg_id})


# ---------------------------------------------------------------- exactly once


def test_dedup_keys_sort_in_the_order_messages_arrive_and_stay_bounded():
    """The inbound log's keys are led by the MsgId (zero-padded) or an event's CreateTime, so that each new claim is
    written at the end of the unique index rather than at a random page of it; sender and id still both count."""
    def text(user: str, msg_id: int) -> Message:
        return Message(kind=Kind.TEXT, user_id=user, created_at=1_764_000_000, msg_id=str(msg_id), text="我的")

    def tap(user: str, created: int) -> Message:
        return Message(kind=Kind.EVENT, user_id=user, created_at=created, event="click", event_key="MY_INFO")

    arriving = [text("zz", 9), text("aa", 10), text("mm", 11), text("aa", 99_999_999_999_999_999_999 // 10)]
    assert [message.dedup_key for message in arriving] == sorted(message.dedup_key for message in arriving)
    taps = [tap("zz", 1_764_000_000), tap("aa", 1_764_000_001), tap("mm", 1_764_000_002)]
    assert [message.dedup_key for message in taps] == sorted(message.dedup_key for message in taps)
    assert text("aa", 10).dedup_key != text("bb", 10).dedup_key  # a MsgId another sender reuses is another message
    longest = Message(kind=Kind.TEXT, user_id="o" * 64, created_at=10 ** 12 - 1, msg_id="9" * 20, text="x")
    assert len(longest.dedup_key) <= 89 and len(tap("o" * 64, 10 ** 12 - 1).dedup_key) <= 89


async def test_three_copies_at_the_same_instant_run_the_handler_once_and_get_one_reply(make_service):
    calls: list = []
    service = await make_service(routers=[counting_router(calls, delay=0.05)])
    body = fixed_text("u1", "记一下", 5001)
    deliveries = await asyncio.gather(*(service.emulator.post_xml(body) for _ in range(3)))
    assert [d.reply for d in deliveries] == ["已记下第 1 次"] * 3
    assert calls == ["5001"] and await organization_count(service) == 1
    # A retry long after the first finished gets the stored reply and runs nothing.
    again = await service.emulator.post_xml(body)
    assert again.reply == "已记下第 1 次" and calls == ["5001"]


async def test_two_processes_sharing_the_database_handle_a_message_once(make_service, aiohttp_server):
    calls: list = []
    service = await make_service(routers=[counting_router(calls, delay=0.05)])
    second_app = build_app(service.settings, clock=service.clock, routers=[counting_router(calls, delay=0.05)])
    second = await aiohttp_server(second_app)
    body = fixed_text("u1", "记一下", 6001)
    urls = [service.emulator.webhook_url, str(second.make_url("/wechat"))] * 2
    deliveries = await asyncio.gather(*(service.emulator.post_xml(body, url=url) for url in urls))
    assert calls == ["6001"] and await organization_count(service) == 1
    assert {d.reply for d in deliveries} == {"已记下第 1 次"}


async def test_a_failing_handler_answers_sorry_once_and_is_not_run_again(make_service, caplog):
    calls: list = []
    service = await make_service(routers=[counting_router(calls, fail=True)])
    body = fixed_text("u1", "记一下", 7001)
    assert (await service.emulator.post_xml(body)).reply == SORRY
    assert (await service.emulator.post_xml(body)).reply == SORRY
    assert calls == ["7001"] and await organization_count(service) == 0  # its writes were rolled back
    assert any("handler failed" in record.getMessage() for record in caplog.records)
    async with service.sessions() as session:
        row = (await session.execute(select(InboundMessage))).scalar_one()
    assert row.status == InboundStatus.FAILED and "boom" in row.error


# ---------------------------------------------------------------- the reply budget


async def test_a_slow_handler_answers_within_the_budget_and_pushes_its_reply_later(make_service):
    calls: list = []
    service = await make_service(routers=[counting_router(calls, delay=0.6)], reply_budget=0.2)
    body = fixed_text("u1", "记一下", 8001)
    first, retry = await asyncio.gather(service.emulator.post_xml(body), service.emulator.post_xml(body))
    # WeChat got "success" in time (no retry needed) and the user sees nothing yet.
    assert first.reply is None and retry.reply is None and first.attempts == 1
    await service.deliver()
    assert service.pushed("u1") == ["已记下第 1 次"]
    # A later retry does not show the reply a second time.
    assert (await service.emulator.post_xml(body)).reply is None
    assert calls == ["8001"] and service.pushed("u1") == ["已记下第 1 次"]
    async with service.sessions() as session:
        row = (await session.execute(select(InboundMessage))).scalar_one()
    assert row.reply_mode == "push" and row.status == InboundStatus.DONE


async def hold_every_connection(engine) -> list:
    """Check out every connection of engine's pool, as handlings queued in a peak would (no transaction begun, so
    SQLite's write lock stays free)."""
    return [await engine.connect() for _ in range(engine.pool.size())]


# On SQLite one connection serves both (a second one's page cache went stale with every write of the other), and
# a claim waits for one handling at most: there is nothing to hold apart.
@pytest.mark.parametrize("database_url", ["postgres"] if POSTGRES_URL else [], indirect=True)
async def test_in_a_peak_a_message_is_recorded_at_once_and_its_reply_pushed_when_handling_catches_up(make_service):
    """On PostgreSQL handling waits for a connection behind the messages before it; claiming a new message does not
    (it has a pool of its own): the message is safe at once, WeChat gets `success` in time and does not send it
    again, and the member's reply is pushed when its turn comes."""
    calls: list = []
    service = await make_service(routers=[counting_router(calls)], reply_budget=0.5, database_pool_size=2)
    held = await hold_every_connection(service.app[ENGINE])
    try:
        delivery = await service.emulator.post_xml(fixed_text("u1", "记一下", 8051))
        assert delivery.reply is None and delivery.attempts == 1
        async with service.dispatcher.intake() as session:
            row = (await session.execute(select(InboundMessage))).scalar_one()
        assert row.status == InboundStatus.PROCESSING and calls == []
    finally:
        for connection in held:
            await connection.close()
    await service.deliver()
    assert calls == ["8051"] and service.pushed("u1") == ["已记下第 1 次"]


async def test_wechat_is_not_told_success_before_the_message_is_recorded(make_service, monkeypatch):
    """When the claim itself has to wait (the database busy past the reply budget), `success` would let WeChat drop
    a message a crash could still lose: the webhook stays silent, WeChat sends again, and the try that finds the
    message recorded gets the answer. Handled once, told once."""
    calls: list = []
    service = await make_service(routers=[counting_router(calls)], reply_budget=0.2, reply_timeout=0.6)
    database_free = asyncio.Event()
    claim_on = inbound.claim_on

    async def slow_claim(driver, rows):
        await database_free.wait()
        return await claim_on(driver, rows)

    monkeypatch.setattr(inbound, "claim_on", slow_claim)
    posting = asyncio.create_task(service.emulator.post_xml(fixed_text("u1", "记一下", 8061)))
    await asyncio.sleep(0.9)  # WeChat's first try hung up unanswered; the second is waiting
    database_free.set()
    delivery = await posting
    assert delivery.attempts >= 2 and delivery.statuses[0] == "TimeoutError"
    await service.deliver()
    seen = [delivery.reply] if delivery.reply else service.pushed("u1")
    assert calls == ["8061"] and seen == ["已记下第 1 次"]


async def test_a_reply_ready_after_wechat_gave_up_is_pushed_not_lost(make_service):
    """Under load WeChat's five seconds can run out before the reply budget does (the request queued before
    it was read): a passive reply into a connection WeChat closed reaches no one, so it is pushed, once."""
    calls: list = []
    service = await make_service(routers=[counting_router(calls, delay=1.5)], reply_budget=20, reply_timeout=0.4)
    body = fixed_text("u1", "记一下", 8101)
    # Every copy WeChat sends gives up before the handler is done.
    gave_up = await service.emulator.post_xml(body)
    assert gave_up.statuses == ["TimeoutError"] * 3
    await service.dispatcher.drain()
    # The webhook's request handlers finish a moment after the handling: they find WeChat gone.
    for _ in range(100):
        await service.deliver()
        if service.pushed("u1"):
            break
        await asyncio.sleep(0.05)
    assert calls == ["8101"] and service.pushed("u1") == ["已记下第 1 次"]
    async with service.sessions() as session:
        row = (await session.execute(select(InboundMessage))).scalar_one()
    assert row.reply_mode == "push"


async def test_a_reply_ready_after_the_budget_is_pushed_even_if_the_loop_ran_the_timer_late(make_service):
    """A loop busy for a second runs the budget's timer late. A reply that was ready after the budget ran out,
    but before that timer fired, must not go out passively: WeChat's five seconds may be over by then."""
    router = Router("busy")

    @router.on(Command("记一下"))
    async def busy(message) -> str:
        time.sleep(0.6)  # the loop stalls (other work, a long garbage collection): no timer fires meanwhile
        return "记下了"

    service = await make_service(routers=[router], reply_budget=0.3)
    delivery = await service.emulator.post_xml(fixed_text("u1", "记一下", 8201))
    # WeChat (which waits longer here) got "success" and no reply; the reply is pushed, once.
    assert delivery.reply is None and delivery.attempts == 1
    await service.deliver()
    assert service.pushed("u1") == ["记下了"]
    assert (await service.emulator.post_xml(fixed_text("u1", "记一下", 8201))).reply is None
    await service.deliver()
    assert service.pushed("u1") == ["记下了"]


async def test_a_loop_stalled_as_the_reply_is_decided_still_shows_it_once(make_service):
    """The loop stalls right after the handler's commit, past the budget, so the budget's timer and the
    decision between a passive reply and a push meet in one turn. Whichever way it goes, the member sees the
    reply exactly once: before the fix, the decision said passive, the timer said "success", and the reply
    was neither given nor pushed."""
    router = Router("stall")

    @router.on(Command("记一下"))
    async def note(ctx) -> str:
        ctx.after_commit(stall)
        return "记下了"

    async def stall(job) -> None:
        time.sleep(0.6)  # runs as the handling ends, before the waiting request sees the decision

    service = await make_service(routers=[router], reply_budget=0.3)
    delivery = await service.emulator.post_xml(fixed_text("u1", "记一下", 8301))
    await service.deliver()
    assert [reply for reply in [delivery.reply] if reply] + service.pushed("u1") == ["记下了"]


async def test_the_reply_budget_counts_from_when_the_request_arrived(make_service):
    calls: list = []
    service = await make_service(routers=[counting_router(calls)], reply_budget=2.0)
    service.emulator.api.user_message("u1")  # a follower who wrote: the window is open
    message = Message(user_id="u1", kind=Kind.TEXT, created_at=1_764_000_000, msg_id="8201", text="记一下")
    # A request that waited its whole budget before it was read gets no passive reply: it is pushed.
    loop = asyncio.get_running_loop()
    assert await service.dispatcher.feed(message, arrived=loop.time() - 2.5) is None
    await service.dispatcher.drain()
    await service.deliver()
    assert service.pushed("u1") == ["已记下第 1 次"]
    fresh = Message(user_id="u1", kind=Kind.TEXT, created_at=1_764_000_000, msg_id="8202", text="记一下")
    assert await service.dispatcher.feed(fresh, arrived=loop.time()) == "已记下第 2 次"
    # Written 3 s ago by WeChat's clock (ours agrees): it waited before the server read it, which the arrival
    # time cannot see; with 2 s of budget there is nothing left, so it is pushed.
    waited = Message(user_id="u1", kind=Kind.TEXT, created_at=service.clock.timestamp() - 3, msg_id="8203",
                     text="记一下")
    assert await service.dispatcher.feed(waited, arrived=loop.time()) is None
    await service.dispatcher.drain()
    await service.deliver()
    assert service.pushed("u1") == ["已记下第 1 次", "已记下第 3 次"]


async def test_wechats_retry_after_a_lost_answer_gets_the_stored_reply_in_its_own_five_seconds(make_service):
    """WeChat tries again 5 s after it sent a message when no answer reached it, with the same CreateTime. The
    retry has its own five seconds: it gets the stored reply, not `success` because the first try's are over."""
    calls: list = []
    service = await make_service(routers=[counting_router(calls)], reply_budget=4.0)
    loop = asyncio.get_running_loop()
    message = Message(user_id="u1", kind=Kind.TEXT, created_at=service.clock.timestamp(), msg_id="8301", text="记一下")
    assert await service.dispatcher.feed(message, arrived=loop.time()) == "已记下第 1 次"  # lost on its way back
    service.clock.advance(seconds=5.3)
    assert await service.dispatcher.feed(message, arrived=loop.time()) == "已记下第 1 次"
    assert calls == ["8301"] and service.pushed("u1") == []
    # A try that arrives when its five seconds are nearly over still gets nothing (WeChat has hung up).
    service.clock.advance(seconds=4.5)  # 9.8 s after CreateTime: 4.8 s into the second try
    assert await service.dispatcher.feed(replace(message, msg_id="8302"), arrived=loop.time()) is None


async def test_an_orphaned_message_is_handled_after_its_process_died(make_service):
    calls: list = []
    service = await make_service(routers=[counting_router(calls)])
    await service.say("u1", "帮助")  # opens the customer-service window for the pushed reply
    message = Message(user_id="u1", kind=Kind.TEXT, created_at=service.clock.timestamp(), msg_id="9001",
                      text="记一下")
    await inbound.claim(service.sessions, dedup_key=message.dedup_key, openid="u1", kind="text",
                        payload=message.to_payload(), now=service.clock.now())
    assert await service.dispatcher.recover_orphans() == 0  # still within its lease
    service.clock.advance(seconds=service.settings.claim_lease + 1)
    assert await service.dispatcher.recover_orphans() == 1
    await service.deliver()
    assert calls == ["9001"] and service.pushed("u1") == ["已记下第 1 次"]
    assert await service.dispatcher.recover_orphans() == 0


async def test_a_message_waiting_its_turn_past_the_lease_is_not_taken_for_an_orphan(make_service):
    """In a peak a recorded message may wait in this process longer than a claim's lease before its handling gets
    its turn. Its process is alive, so recovery leaves it: it is handled once, by the handling that waits."""
    calls: list = []
    service = await make_service(routers=[counting_router(calls)], reply_budget=0.2)
    slots = service.dispatcher.handling_slots
    taken = 0
    while not slots.locked():  # every turn taken by the messages before it
        await slots.acquire()
        taken += 1
    try:
        assert (await service.emulator.post_xml(fixed_text("u1", "记一下", 9101))).reply is None
        service.clock.advance(seconds=service.settings.claim_lease + 1)
        assert await asyncio.wait_for(service.dispatcher.recover_orphans(), 5) == 0
    finally:
        for _ in range(taken):
            slots.release()
    await service.deliver()
    assert calls == ["9101"] and service.pushed("u1") == ["已记下第 1 次"]


async def test_a_busy_database_during_handling_handles_the_message_again_instead_of_saying_sorry(make_service,
                                                                                                caplog):
    """Under load no pooled connection may come free in time (SQLAlchemy's pool TimeoutError), or SQLite's
    lock is held too long. The claim stands and the transaction rolled back: the member's check-in must not be
    lost to 抱歉 — the handling runs again and the member gets the real reply, once."""
    calls: list = []
    router = Router("flaky")

    @router.on(Command("记一下"))
    async def note(session, message) -> str:
        calls.append(message.msg_id)
        if len(calls) == 1:
            raise sa_exc.TimeoutError("QueuePool limit of size 30 overflow 0 reached, connection timed out")
        session.add(Organization(name="第1党支部", org_type="党支部", path=f"x/{message.msg_id}"))
        return "记下了"

    service = await make_service(routers=[router])
    assert (await service.emulator.post_xml(fixed_text("u1", "记一下", 9101))).reply == "记下了"
    assert calls == ["9101", "9101"] and await organization_count(service) == 1
    async with service.sessions() as session:
        row = (await session.execute(select(InboundMessage))).scalar_one()
    assert row.status == InboundStatus.DONE and row.error is None
    assert any("database busy" in record.getMessage() for record in caplog.records)


async def test_a_handling_whose_claim_was_taken_over_commits_nothing(make_service):
    """A handling that ran past the claim's lease may find the message taken over by orphan recovery (in this
    process or another). Its transaction must then commit nothing — the taking handling answers — or the
    message would be handled twice."""
    calls: list = []
    service = await make_service(routers=[counting_router(calls)])
    await service.say("u1", "帮助")  # opens the customer-service window for the pushed reply
    dispatcher = service.dispatcher
    handle_once = dispatcher._handle_once

    async def taken_over_first(message_id, claimed_at, message, entry, prepared):
        # What recover_orphans does from elsewhere once the lease ran out: claim the message anew.
        async with service.sessions() as session, session.begin():
            orphan = await inbound.get(session, message_id)
            assert await inbound.take_over(session, orphan, claimed_at + timedelta(seconds=61))
        return await handle_once(message_id, claimed_at, message, entry, prepared)

    dispatcher._handle_once = taken_over_first
    assert (await service.emulator.post_xml(fixed_text("u1", "记一下", 9201))).reply is None
    assert calls == ["9201"] and await organization_count(service) == 0  # its writes rolled back
    async with service.sessions() as session:
        row = (await session.execute(select(InboundMessage).where(InboundMessage.dedup_key.like("msg:%9201:u1")))).scalar_one()
    assert row.status == InboundStatus.PROCESSING  # still the taker's to finish
    # The taking handling (here: recovery after the new lease) answers, once.
    dispatcher._handle_once = handle_once
    service.clock.advance(seconds=service.settings.claim_lease + 62)
    assert await dispatcher.recover_orphans() == 1
    await service.deliver()
    assert calls == ["9201", "9201"] and await organization_count(service) == 1
    assert service.pushed("u1") == ["已记下第 2 次"]  # the router counts its calls: the dropped one was the first


# ---------------------------------------------------------------- filters, dialogs and roles


def survey_router() -> Router:
    router = Router("survey")

    @router.text("问卷", usage="问卷", summary="做一个小问卷")
    async def start(dialog: Dialog) -> str:
        dialog.start("survey", "age")
        return "您多大年纪？"

    @router.on(Regex(r"(\d{1,3})岁?"), dialog="survey", step="age")
    async def age(dialog: Dialog, match) -> str:
        dialog.goto("confirm", age=int(match.group(1)))
        return f"您 {match.group(1)} 岁。回复 1 确认，回复 2 重填。"

    @router.on(Choice(1, 2), dialog="survey", step="confirm")
    async def confirm(dialog: Dialog, choice: int) -> str:
        if choice == 2:
            dialog.goto("age")
            return "请重新回复年纪。"
        age = dialog.data["age"]
        dialog.finish()
        return f"已记录：{age} 岁"

    @router.text("管理", roles={Role.SECRETARY}, usage="管理", summary="书记专用")
    async def manage() -> str:
        return "管理页面"

    @router.on(Command("回声", takes_args=True))
    async def echo(args: str, ctx: Context) -> str:
        ctx.reply("第一段")
        return f"第二段：{args}"

    return router


async def test_a_dialog_keeps_its_state_between_messages_and_cancel_leaves_it(make_service):
    service = await make_service(routers=[survey_router()])
    assert await service.say("u1", "问卷") == "您多大年纪？"
    assert await service.say("u1", "６８岁") == "您 68 岁。回复 1 确认，回复 2 重填。"  # full-width digits
    assert await service.say("u1", "2") == "请重新回复年纪。"
    assert (await service.say("u1", "70")).startswith("您 70 岁")
    assert await service.say("u1", "1") == "已记录：70 岁"
    assert await service.say("u1", "1") == "没有听懂“1”。回复 帮助 查看可以做什么。"
    assert await service.say("u1", "问卷") == "您多大年纪？"
    assert await service.say("u1", "取消") == "已取消。"
    assert await service.say("u1", "取消") == "当前没有进行中的操作。"
    # Another command in the middle of a dialog is that command, not an answer.
    await service.say("u1", "问卷")
    assert await service.say("u1", "回声 你好") == "第一段\n\n第二段：你好"
    assert (await service.say("u1", "68")).startswith("没有听懂")


async def test_a_dialog_times_out(make_service):
    service = await make_service(routers=[survey_router()], dialog_timeout_minutes=15)
    await service.say("u1", "问卷")
    service.clock.advance(minutes=16)
    assert await service.say("u1", "68") == "上一步操作因长时间未回复已结束，请重新开始。"
    assert (await service.say("u1", "68")).startswith("没有听懂")


async def test_roles_are_checked_with_a_clear_answer(make_service):
    service = await make_service(routers=[membership.router, survey_router()])
    assert await service.say("u1", "管理") == "这项功能需要先绑定党员身份。回复 绑定 开始。"
    await service.bind("u1", "王秀英")
    assert await service.say("u1", "管理") == "这项功能只有书记可以使用。"
    await service.bind("u2", "李建国", role=Role.SECRETARY, phone="13800000001")
    assert await service.say("u2", "管理") == "管理页面"


async def test_help_lists_only_what_the_role_may_use(make_service):
    service = await make_service(routers=[membership.router, survey_router()])
    await service.bind("u1", "王秀英")
    await service.bind("u2", "李建国", role=Role.SECRETARY, phone="13800000001")
    member_help, secretary_help = await service.say("u1", "帮助"), await service.say("u2", "帮助")
    assert "问卷" in member_help and "管理" not in member_help
    assert "管理" in secretary_help


async def test_handler_replies_are_joined_and_arguments_parsed(make_service):
    service = await make_service(routers=[survey_router()])
    assert await service.say("u1", "回声 你好") == "第一段\n\n第二段：你好"
    assert await service.say("u1", "回声你好") == "第一段\n\n第二段：你好"


async def test_stored_payload_round_trips(make_service):
    service = await make_service(routers=[survey_router()])
    await service.emulator.location("u1", 30.5, 120.25, "村委会")
    async with service.sessions() as session:
        row = (await session.execute(select(InboundMessage))).scalar_one()
    restored = Message.from_payload(json.loads(row.payload))
    assert restored.location.latitude == 30.5 and restored.location.label == "村委会"
    assert row.received_at <= service.clock.now() < row.received_at + timedelta(seconds=1)



async def test_a_retry_that_joins_after_the_reply_was_pushed_is_not_shown_it_again(make_service):
    """The first copy's request was dropped, so the handler's transaction stored the reply for pushing; a retry
    that joins before the handler returns must get "success", not the reply a second time (it once did)."""
    calls: list = []
    service = await make_service(routers=[counting_router(calls, delay=0.2)])
    await service.say("u1", "帮助")  # opens the customer-service window for the push
    dispatcher = service.dispatcher
    handle, seen = dispatcher._handle, []

    async def handle_then_a_retry_joins(message_id, claimed_at, message, entry):
        result = await handle(message_id, claimed_at, message, entry)
        entry.waiting += 1  # WeChat's retry arrives just now, after the commit
        seen.append(entry)
        return result

    dispatcher._handle = handle_then_a_retry_joins
    message = Message(user_id="u1", kind=Kind.TEXT, created_at=service.clock.timestamp(), msg_id="9601",
                      text="记一下")
    first = asyncio.create_task(dispatcher.feed(message))
    await asyncio.sleep(0.05)
    first.cancel()  # the first copy's request is dropped: nobody waits when the handler commits
    await dispatcher.drain()
    await service.deliver()
    assert seen and seen[0].future.result() is None  # what the retry is answered: no passive reply
    assert service.pushed("u1") == ["已记下第 1 次"] and calls == ["9601"]


async def test_a_retry_that_arrives_while_the_first_copy_is_handled_shows_the_reply_once(make_service):
    """WeChat gives up on a slow answer and retries; the handler runs once and the member sees its reply once:
    passively to the retry if it waits when the reply is ready, else pushed (the retry is then told
    "success"). (The handler takes at least 1 s, so the first try always times out at 0.95 s.)"""
    calls: list = []
    service = await make_service(routers=[counting_router(calls, delay=1.0)], reply_timeout=0.95, reply_budget=3.0)
    delivery = await service.emulator.post_xml(fixed_text("u1", "记一下", 9501))
    assert delivery.attempts == 2 and delivery.statuses == ["TimeoutError", 200]
    await service.dispatcher.drain()
    await service.deliver()
    shown = ([delivery.reply] if delivery.reply else []) + service.pushed("u1")
    assert shown == ["已记下第 1 次"] and calls == ["9501"]


async def test_qr_scene_and_click_filters_route_by_prefix_and_key(make_service):
    router = Router("qr")

    @router.on(Scene("meeting:"))
    async def meeting(scene: str) -> str:
        return f"会议 {scene}"

    @router.on(Click("CHECKIN") | Click("签到"))
    async def check_in() -> str:
        return "签到菜单"

    @router.on(MessageKind(Kind.IMAGE))
    async def photo(message) -> str:
        return f"照片 {message.media_id[:6]}"

    service = await make_service(routers=[router])
    assert (await service.emulator.scan("u1", "meeting:42")).reply == "会议 42"
    service.clock.advance(seconds=1)
    assert (await service.emulator.subscribe("u2", scene="meeting:7")).reply == "会议 7"
    assert (await service.emulator.scan("u1", "other:1")).reply is None
    assert (await service.emulator.click("u1", "CHECKIN")).reply == "签到菜单"
    assert (await service.emulator.image("u1")).reply == "照片 image-"


async def test_filters_compose_with_and_or_not(make_service):
    router = Router("compose")

    @router.on(MessageKind(Kind.EVENT) & Click("A"))
    async def both() -> str:
        return "A 键"

    @router.on(Command("甲") | Command("乙"))
    async def either(args: str) -> str:
        return "甲或乙"

    @router.on(MessageKind(Kind.TEXT) & ~Command("丙"))
    async def not_c() -> str:
        return "不是丙"

    service = await make_service(routers=[router])
    assert (await service.emulator.click("u1", "A")).reply == "A 键"
    assert await service.say("u1", "乙") == "甲或乙"
    assert await service.say("u1", "丁") == "不是丙"
    assert (await service.say("u1", "丙")).startswith("没有听懂")


# ---------------------------------------------------------------- one user, one message at a time


def tally_router() -> Router:
    """Counts one user's messages in the database, slowly: two handled at once would both read the same
    count, and one message would be lost."""
    router = Router("tally")

    @router.on(Command("加一"))
    async def add_one(session, message) -> str:
        count = (await session.execute(select(func.count()).select_from(Organization)
                                       .where(Organization.path.like("tally/%")))).scalar()
        await asyncio.sleep(0.3)
        session.add(Organization(name=f"第{count + 1}", org_type="党支部", path=f"tally/{message.msg_id}"))
        return f"第 {count + 1} 次"

    return router


@pytest.mark.parametrize("first_contact", [False, True], ids=["known user", "first contact"])
async def test_one_users_messages_on_two_processes_are_handled_one_after_the_other(make_service, first_contact):
    first = await make_service(routers=[tally_router()])
    second = await make_service(routers=[tally_router()])  # another process on the same database
    if not first_contact:
        assert (await first.say("u1", "加一")) == "第 1 次"
    replies = await asyncio.gather(first.emulator.post_xml(fixed_text("u1", "加一", 7001)),
                                   second.emulator.post_xml(fixed_text("u1", "加一", 7002)))
    done = 1 if not first_contact else 0
    assert sorted(delivery.reply for delivery in replies) == [f"第 {done + 1} 次", f"第 {done + 2} 次"]


async def test_a_handler_that_skips_passes_the_message_on_with_the_dialog_untouched(make_service):
    router = Router("photos")
    seen: list[str] = []

    @router.text("开始")
    async def start(dialog) -> str:
        dialog.start("talk", "open")
        return "开始了"

    @router.on(MessageKind(Kind.IMAGE))
    async def meeting_photo(message) -> str:
        seen.append("meeting")
        raise SkipHandler  # no meeting on

    @router.on(MessageKind(Kind.IMAGE))
    async def care_photo(dialog) -> str:
        seen.append("care")
        return f"关怀照片（对话：{dialog.name}）"

    @router.on(MessageKind(Kind.LOCATION))
    async def nobody(message) -> str:
        raise SkipHandler

    service = await make_service(routers=[router])
    await service.say("u1", "开始")
    # Every matching handler skips: the fallback answers, and the dialog the user is in stays as it was.
    assert (await service.emulator.location("u1", 30.2, 120.1)).reply.startswith("暂时不能处理这类消息")
    async with service.sessions() as session:
        assert (await session.get(DialogState, "u1")).name == "talk"
    # One skips, the next takes it.
    assert (await service.emulator.image("u1")).reply == "关怀照片（对话：None）"
    assert seen == ["meeting", "care"]


async def test_the_longest_command_wins_whatever_the_order_they_were_registered_in(make_service):
    router = Router("order")

    @router.text("签到", takes_args=True)
    async def check_in(args: str) -> str:
        return f"签到：{args}"

    @router.text("签到情况")
    async def attendance() -> str:
        return "签到情况"

    service = await make_service(routers=[router])
    assert await service.say("u1", "签到情况") == "签到情况"
    assert await service.say("u1", "签到 123456") == "签到：123456"
    assert await service.say("u1", "签到123456") == "签到：123456"


async def test_a_handler_led_by_a_command_is_asked_only_about_that_command(make_service):
    # The router's index: a handler whose first filter is a command word is not asked about other texts or events
    # (a policy question used to be put to every handler before the fallback got it). Routing is unchanged.
    asked: list[str] = []

    class NotedCommand(Command):
        def __call__(self, message, ctx):
            asked.append(message.text or message.event)
            return super().__call__(message, ctx)

    router = Router("index")

    @router.on(NotedCommand("签到", takes_args=True))
    async def check_in(args: str) -> str:
        return f"签到：{args}"

    @router.on(NotedCommand("记一下"))
    async def note() -> str:
        return "记下了"

    service = await make_service(routers=[router])
    assert await service.say("u1", "签到123456") == "签到：123456"
    assert await service.say("u1", "记一下") == "记下了"
    assert (await service.say("u1", "记一下明天的事")).startswith("没有听懂")  # 记一下 takes nothing after it
    assert (await service.say("u1", "党费交多少")).startswith("没有听懂")
    await service.emulator.subscribe("u1")
    assert asked == ["签到123456", "记一下"]


async def test_handlers_are_asked_only_about_the_kinds_of_message_their_filters_take(make_service):
    # The router's index by kind: a menu tap is never put to a handler of text, nor a text to a handler of taps;
    # a text that comes again is routed from the list kept for it, in a dialog and out of it alike.
    asked: list[tuple[str, str]] = []

    class NotedClick(Click):
        def __call__(self, message, ctx):
            asked.append(("click", message.text or message.event_key))
            return super().__call__(message, ctx)

    class NotedRegex(Regex):
        def __call__(self, message, ctx):
            asked.append(("regex", message.text or message.event_key))
            return super().__call__(message, ctx)

    router = Router("kinds")

    @router.on(NotedClick("TAPPED"))
    async def tapped() -> str:
        return "点了"

    @router.on(NotedRegex(r"\d{3}号") & MessageKind(Kind.TEXT))
    async def numbered(dialog: Dialog) -> str:
        dialog.start("numbers", "more")
        return "号码"

    @router.on(Choice(1), dialog="numbers")
    async def one(dialog: Dialog) -> str:
        dialog.finish()
        return "一"

    service = await make_service(routers=[router])
    assert await service.say("u1", "123号") == "号码"
    assert (await service.emulator.click("u1", "TAPPED")).reply == "点了"
    assert await service.say("u1", "123号") == "号码"  # the same text again: the same handlers asked
    assert await service.say("u1", "1") == "一"  # the dialog's own handler first
    assert (await service.emulator.voice("u1", "123号")).reply != "号码"  # spoken: the regex's, but not the kind
    assert asked == [("regex", "123号"), ("click", "TAPPED"), ("regex", "123号")]
    # Long texts (a pasted notice) are routed without being kept: what is kept stays small whatever is sent.
    await service.say("u1", "长" * 5000)
    kept = service.dispatcher._routes
    assert kept and all(text is None or len(text) <= 40 for _, _, text in kept)


async def test_one_text_fallback_takes_what_is_left_after_the_dispatchers_own_answers(make_service):
    asked: list[str] = []
    router = Router("answers")

    @router.text_fallback()
    async def answer(text: str, written: str) -> str:
        asked.append(written)
        return f"答：{text}"

    service = await make_service(routers=[router])
    assert await service.say("u1", "党费交多少？") == "答：党费交多少"
    assert await service.say("u1", "7") == "没有听懂“7”。回复 帮助 查看可以做什么。"
    assert await service.say("u1", "取消") == "当前没有进行中的操作。"
    assert asked == ["党费交多少？"]

    other = Router("more answers")
    other.text_fallback()(answer)
    with pytest.raises(ValueError, match="only one feature"):
        await make_service(routers=[router, other])


async def test_a_refusal_raised_deep_inside_a_handler_is_its_reply_and_what_it_changed_stands(make_service):
    router = Router("refusing")

    def parse_code(args: str) -> int:
        if not (args.isascii() and args.isdigit()):
            raise Refusal("签到码是 6 位数字，请重新回复。")
        return int(args)

    @router.text("登记", takes_args=True)
    async def register(dialog, args: str) -> str:
        dialog.start("register", "retry")  # kept: the next reply is read as a retry
        return f"已登记 {parse_code(args)}"

    service = await make_service(routers=[router])
    assert await service.say("u1", "登记 abc") == "签到码是 6 位数字，请重新回复。"
    async with service.sessions() as session:
        assert (await session.get(DialogState, "u1")).name == "register"
    assert await service.say("u1", "登记 123456") == "已登记 123456"


# ---------------------------------------------------------------- the claim, straight on the driver


async def test_a_claim_written_on_the_driver_reads_back_as_sqlalchemy_writes_it(sessions):
    """Claims skip SQLAlchemy (storage.driver); the row must be the one the ORM would have written, or
    orphan recovery, which compares claimed_at, and the console's times would go wrong."""
    from datetime import datetime, timezone

    claimed_at = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)  # whole seconds: formatted like any other
    claims = await inbound.claim_many(sessions, [
        inbound.claim_row(dedup_key=f"msg:u{index}:{index}", openid=f"u{index}", kind="text",
                          payload={"text": "签到 会议码"}, now=claimed_at + timedelta(microseconds=index))
        for index in range(3)])
    async with sessions() as session, session.begin():
        session.add(InboundMessage(dedup_key="msg:orm:1", openid="orm", kind="text", payload="{}",
                                   received_at=claimed_at, claimed_at=claimed_at))
    async with sessions() as session:
        rows = {row.dedup_key: row for row in (await session.execute(select(InboundMessage))).scalars()}
        # Stored alike: the ORM's row and the driver's row of the same moment compare equal in SQL.
        same_moment = (await session.execute(
            select(func.count()).select_from(InboundMessage).where(InboundMessage.claimed_at == claimed_at)
        )).scalar()
    assert same_moment == 2
    for index in range(3):
        row = rows[f"msg:u{index}:{index}"]
        assert claims[row.dedup_key].message_id == row.id
        assert row.claimed_at == claimed_at + timedelta(microseconds=index)
        assert json.loads(row.payload) == {"text": "签到 会议码"} and row.status == InboundStatus.PROCESSING.value
    # A copy claimed again is seen before, with the row another copy wrote.
    again = await inbound.claim(sessions, dedup_key="msg:u1:1", openid="u1", kind="text", payload={},
                                now=claimed_at)
    assert not again.claimed and again.existing.id == rows["msg:u1:1"].id


def test_utc_times_on_sqlite_are_the_text_and_values_sqlalchemy_makes_of_them():
    """UTCDateTime converts in one step on SQLite (storage.models); the text must be what SQLAlchemy's two steps
    write — claimed_at is compared as text when a message is finished — and read back the same."""
    from datetime import datetime, timezone

    from sqlalchemy.dialects import sqlite
    from sqlalchemy.types import TypeDecorator

    from storage.models import UTCDateTime

    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect)
    theirs_bind = TypeDecorator.bind_processor(ours, dialect)
    theirs_read = TypeDecorator.result_processor(ours, dialect, None)
    bind, read = ours.bind_processor(dialect), ours.result_processor(dialect, None)
    beijing = timezone(timedelta(hours=8))
    for moment in (datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc), datetime(2026, 12, 31, 23, 59, 59, 999999,
                   tzinfo=timezone.utc), datetime(2027, 1, 1, 7, 5, 3, 120, tzinfo=beijing), None):
        text = bind(moment)
        assert text == theirs_bind(moment)
        assert read(text) == theirs_read(text) == moment
    assert bind(datetime(2026, 3, 1, 9, 0, tzinfo=beijing)) == "2026-03-01 01:00:00.000000"
    with pytest.raises(ValueError):
        bind(datetime(2026, 3, 1, 9, 0))  # naive: refused as before


async def test_a_batch_that_fails_on_the_driver_leaves_nothing_behind(sessions):
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    good = inbound.claim_row(dedup_key="msg:good:1", openid="good", kind="text", payload={}, now=now)
    with pytest.raises(Exception):
        await inbound.claim_many(sessions, [good, {**good, "dedup_key": "msg:bad:1", "payload": None}])
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(InboundMessage))).scalar() == 0
    assert (await inbound.claim_many(sessions, [good]))["msg:good:1"].claimed  # the connection still works



async def test_the_sender_read_on_the_driver_is_in_the_state_the_orm_gives_a_loaded_object(make_service):
    """storage.identities builds the sender's objects itself; each must be what make_transient_to_detached makes of
    the same values (its identity, nothing changed, expired or unloaded), or a session they join would write them
    again, or load them."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import make_transient_to_detached

    from storage import identities

    service = await make_service()
    await service.say("u1", "帮助")
    async with MessageTransaction(service.sessions) as transaction:
        rows = await identities._SENDER.rows(transaction.driver, {"sender_openid": "u1"})
    built = [found for found in identities._detached(rows[0]) if found is not None]
    assert built
    for found in built:
        state = inspect(found)
        values = {key: value for key, value in found.__dict__.items() if key != "_sa_instance_state"}
        twin = inspect(type(found)).class_manager.new_instance()
        twin.__dict__.update(values)
        make_transient_to_detached(twin)
        twin_state = inspect(twin)
        assert state.key == twin_state.key and state.key is not None
        assert not state.modified and not state.committed_state and not state.expired_attributes
        assert state.unloaded == twin_state.unloaded == set()
        assert state.detached and twin_state.detached


async def test_a_claim_after_the_pools_connection_was_dropped_connects_again(engine, sessions):
    """Claims take an idle pooled connection without a greenlet (storage.driver); one the pool dropped must be
    connected again, which needs the greenlet: the claim falls back to it and succeeds."""
    import warnings
    from datetime import datetime, timezone

    from sqlalchemy.util import greenlet_spawn

    now = datetime.now(timezone.utc)
    assert (await inbound.claim_many(sessions, [inbound.claim_row(
        dedup_key="msg:a:1", openid="a", kind="text", payload={}, now=now)]))["msg:a:1"].claimed
    pooled = await engine.raw_connection()
    await greenlet_spawn(pooled.invalidate)  # as after the server closed it
    await greenlet_spawn(pooled.close)
    assert engine.sync_engine.pool.checkedin()  # the dropped one lies in the pool, to be connected on checkout
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        claims = await inbound.claim_many(sessions, [inbound.claim_row(
            dedup_key="msg:b:1", openid="b", kind="text", payload={}, now=now)])
    assert not [warning for warning in warned if issubclass(warning.category, RuntimeWarning)]
    assert claims["msg:b:1"].claimed
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(InboundMessage))).scalar() == 2


async def test_waiting_for_the_reply_never_cancels_the_handling():
    """A copy waits for the handling's result with a timeout (settled_within): the timeout, or the copy's request
    being cancelled (WeChat hung up), ends only that wait; the handling's future goes on for the other copies."""
    loop = asyncio.get_running_loop()
    handling = loop.create_future()
    assert await settled_within(handling, 0.01) is False
    waiting = asyncio.create_task(settled_within(handling, 60))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not handling.done()
    loop.call_later(0.01, handling.set_result, "回复")
    started = loop.time()
    assert await settled_within(handling, 60) is True
    assert loop.time() - started < 30 and handling.result() == "回复"


async def test_a_reply_decided_as_the_budget_timer_fires_is_given_once(make_service, monkeypatch):
    """The timer can win even when the decision is already made (a busy loop runs the handler's end and the
    budget's timer in one turn, and Python 3.12's wait_for, used here before, reported the timer): the request
    then answers with the decided reply, or nobody would see it."""
    router = Router("quick")

    @router.on(Command("记一下"))
    async def note() -> str:
        return "记下了"

    service = await make_service(routers=[router], reply_budget=5.0)

    async def decided_then_timed_out(future, seconds):
        await future  # the decision is made…
        raise TimeoutError  # …and the timer is what the request sees

    monkeypatch.setattr("bot.dispatch.settled_within", decided_then_timed_out)
    delivery = await service.emulator.post_xml(fixed_text("u1", "记一下", 8401))
    await service.deliver()
    assert [reply for reply in [delivery.reply] if reply] + service.pushed("u1") == ["记下了"]


@SQLITE_ONLY
async def test_a_messages_statements_on_sqlite_run_straight_on_sqlite3(service, monkeypatch):
    """On the loop, the small transactions of a message (its claim, its handling) run each statement straight on
    sqlite3, not through the coroutine interface SQLAlchemy's adapter uses (a cursor, a lambda and three awaits
    per statement cost about what SQLite takes to run it); what they write and read is the same."""
    member_id = await service.bind("w1", "王秀英")  # binding writes through the ORM session: the interface
    through_interface: list[str] = []
    straight: list[str] = []
    execute, fetch_on_loop = LoopCursor.execute, LoopConnection.fetch_on_loop

    async def counted(cursor, sql, parameters=()):
        if cursor._owner.on_loop:
            through_interface.append(sql)
        return await execute(cursor, sql, parameters)

    monkeypatch.setattr(LoopCursor, "execute", counted)
    monkeypatch.setattr(LoopConnection, "fetch_on_loop",
                        lambda connection, sql, parameters: straight.append(sql) or fetch_on_loop(connection, sql,
                                                                                                  parameters))
    assert (await service.say("w1", "我的")).startswith("姓名：王秀英")
    assert through_interface == []
    assert any(sql.startswith("INSERT INTO inbound_message") for sql in straight)
    assert any(sql.startswith("UPDATE inbound_message") for sql in straight)
    async with service.sessions() as session:
        message = (await session.execute(select(InboundMessage).order_by(InboundMessage.id.desc()))).scalars().first()
        assert message.status == InboundStatus.DONE.value and message.openid == "w1"
        assert json.loads(message.reply)[0].startswith("姓名：王秀英")
        assert (await session.get(WeChatIdentity, "w1")).member_id == member_id


async def test_messages_that_need_no_session_are_handled_without_one(service, monkeypatch):
    """A message's transaction is begun on the driver and its ORM session opened only when a handler asks for it
    (storage.transaction): 我的 and 帮助 never do; binding does, and what it writes is kept; a change to the
    sender made without one (unfollowing) is still written."""
    opened: list[str] = []
    session_of = MessageTransaction.session.fget
    monkeypatch.setattr(MessageTransaction, "session",
                        property(lambda transaction: opened.append("session") or session_of(transaction)))
    member_id = await service.bind("w1", "王秀英")
    assert opened, "binding writes through the session"
    opened.clear()
    assert (await service.say("w1", "我的")).startswith("姓名：王秀英\n组织：示范县委/城关镇党委/红旗村党支部")
    assert "我的" in await service.say("w1", "帮助")
    assert opened == []
    assert (await service.emulator.unsubscribe("w1")).reply is None
    async with service.sessions() as session:
        identity = await session.get(WeChatIdentity, "w1")
        assert identity.subscribed is False and identity.member_id == member_id


async def test_a_handling_whose_connection_was_closed_under_it_fails_with_that_and_the_next_one_connects(make_service):
    """A connection closed in the middle of a handling (the database restarted, or the process stopping) ends its
    transaction with the database's error, not one of the handing back (storage.transaction.MessageTransaction); the
    pool drops it and the next message is answered on a new one."""
    from sqlalchemy import text
    from sqlalchemy.util import greenlet_spawn

    service = await make_service()
    before = await service.say("u1", "帮助")
    with pytest.raises(Exception) as raised:
        async with MessageTransaction(service.sessions) as transaction:
            await transaction.session.execute(text("SELECT 1"))
            await greenlet_spawn(transaction._begun.pooled.invalidate)
            await transaction.session.execute(text("SELECT 1"))
    assert not isinstance(raised.value, AttributeError), raised.value
    assert before and await service.say("u1", "帮助") == before
