"""The delivery engine against the emulated WeChat API over HTTP: who got what, through which channel,
and what the records say about those who did not."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import aiohttp
import pytest
from sqlalchemy import func, select, update

from bot.app import CLIENT
from bot.dispatch import Command, Router
from bot.outbox import (
    MUTED,
    NO_CHANNEL,
    UNBOUND,
    UNFOLLOWED,
    Outbox,
    Outgoing,
    enqueue,
    enqueue_members,
    quiet_until,
)
from bot.summary import Summary
from bot.wechat.client import WeChatClient
from handlers import membership
from handlers.notices.console import notices_in_scope
from storage import notices
from storage import outbox as outbox_store
from storage.models import Member, Notice, OutboxMessage, WeChatIdentity
from storage.orgs import by_path, ensure_path
from storage.tokens import TokenStore
from bot.web.links import Subject
from bot.web.pages import LINKS

BRANCH = "示范县委/城关镇党委/红旗村党支部"
TEMPLATES = {"notice": "TPL-NOTICE", "default": "TPL-DEFAULT"}
# Short real-time intervals so that nothing in these tests sleeps for long.
FAST = dict(wechat_templates=TEMPLATES, outbox_backoff=1.0, outbox_poll_interval=0.05, outbox_rate=0)


@pytest.fixture
async def svc(make_service):
    return await make_service(**FAST)


async def in_window(service, openid: str, name: str) -> int:
    """A member who bound through the chat a moment ago: their 48-hour window is open."""
    return await service.bind(openid, name)


async def out_of_window(service, openid: str, name: str, *, days: float = 3) -> int:
    """A bound member whose last message to the account was days ago."""
    member_id, _ = await service.add_member(name)
    then = service.clock.now() - timedelta(days=days)
    async with service.sessions() as session, session.begin():
        session.add(WeChatIdentity(openid=openid, member_id=member_id, first_seen_at=then, bound_at=then,
                                   last_message_at=then))
    service.emulator.api.user_message(openid, at=then)
    return member_id


async def crowd(service, count: int, *, prefix: str = "c", unbound: int = 0, unfollowed: int = 0,
                org_path: str = BRANCH) -> list[int]:
    """count members of one branch; all followers of the account except the unbound and unfollowed ones."""
    now = service.clock.now()
    async with service.sessions() as session, session.begin():
        org = await ensure_path(session, org_path)
        members = [Member(org_id=org.id, name=f"{prefix}{index:04d}", created_at=now, updated_at=now)
                   for index in range(count)]
        session.add_all(members)
        await session.flush()
        for index, member in enumerate(members[unbound:], start=unbound):
            following = index >= unbound + unfollowed
            session.add(WeChatIdentity(openid=f"{prefix}-{member.id}", member_id=member.id, first_seen_at=now,
                                       bound_at=now, subscribed=following, unsubscribed_at=None if following else now))
            service.emulator.api.user_event(f"{prefix}-{member.id}", event="subscribe" if following else "unsubscribe")
        return [member.id for member in members]


def notice_for(member_id: int, text: str = "周五上午9点开党员大会", **fields) -> Outgoing:
    return Outgoing(key=f"notice:1:{member_id}", kind="notice", text=text, member_id=member_id, ref="notice:1",
                    **fields)


async def put(service, *items: Outgoing) -> int:
    async with service.sessions() as session, session.begin():
        return await enqueue(session, items, now=service.clock.now(), settings=service.settings)


async def rows(service, **where) -> list[OutboxMessage]:
    async with service.sessions() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        for name, value in where.items():
            query = query.where(getattr(OutboxMessage, name) == value)
        return list((await session.execute(query)).scalars())


async def row_of(service, member_id: int) -> OutboxMessage:
    [row] = await rows(service, member_id=member_id)
    return row


async def identity(service, openid: str) -> WeChatIdentity:
    async with service.sessions() as session:
        return await session.get(WeChatIdentity, openid)


def delivered(service) -> Counter:
    """Successful sends the emulator recorded, per openid."""
    return Counter(record.openid for record in service.emulator.api.records
                   if record.kind in ("custom", "template") and record.errcode == 0)


def attempts_at(service, openid: str) -> list[tuple[str, int]]:
    return [(record.kind, record.errcode) for record in service.emulator.api.records if record.openid == openid]


# ---------------------------------------------------------------- channels


async def test_members_in_their_window_get_a_message_and_the_others_the_notice_template(svc):
    zhang = await in_window(svc, "o-zhang", "张三")
    li = await out_of_window(svc, "o-li", "李四")
    long_title = "关于召开二〇二六年第四季度支部党员大会暨民主评议党员的通知"
    added = await put(svc, notice_for(zhang), notice_for(li, summary=Summary(title=long_title, time="周五\n上午9点")))
    assert added == 2
    await svc.outbox.run_until_idle()

    assert svc.pushed("o-zhang") == ["周五上午9点开党员大会"]
    assert svc.emulator.api.templates("o-zhang") == []
    [template] = svc.emulator.api.templates("o-li")
    assert template["template_id"] == "TPL-NOTICE"
    # Template fields were cut to WeChat's 20 characters on one line, so WeChat accepted them.
    assert template["data"]["title"]["value"] == long_title[:19] + "…"
    assert template["data"]["time"]["value"] == "周五 上午9点"
    assert [(r.status, r.channel, r.attempts) for r in await rows(svc)] == [
        ("sent", "custom", 1), ("sent", "template", 1)]
    assert (await identity(svc, "o-zhang")).window_sent == 1
    assert svc.outbox.sent == 2 and svc.outbox.failed == 0


async def test_a_members_messages_due_together_arrive_in_the_order_they_were_written(svc, monkeypatch):
    """Rows due at the same moment are claimed in the order they were written, and one member's go out one after
    another: a slower call for an earlier message must not let a later one overtake it. Members still go side by
    side."""
    zhang, li = await in_window(svc, "o-zhang", "张三"), await in_window(svc, "o-li", "李四")
    for number in range(1, 5):
        await put(svc, Outgoing(key=f"reminder:zhang:{number}", kind="reminder", text=f"第{number}条", member_id=zhang),
                  Outgoing(key=f"reminder:li:{number}", kind="reminder", text=f"第{number}条", member_id=li))
    send, calls_at_once, busy = svc.outbox.client.send_text, [], set()

    async def earlier_is_slower(openid: str, text: str):
        busy.add(openid)
        calls_at_once.append(len(busy))
        await asyncio.sleep(0.03 * (5 - int(re.search(r"第(\d)条", text).group(1))))
        busy.discard(openid)
        return await send(openid, text)

    monkeypatch.setattr(svc.outbox.client, "send_text", earlier_is_slower)
    await svc.outbox.run_until_idle()
    assert svc.pushed("o-zhang") == svc.pushed("o-li") == ["第1条", "第2条", "第3条", "第4条"]
    assert max(calls_at_once) == 2  # the two members' calls overlapped


async def test_template_fields_go_out_under_the_names_the_accounts_template_uses(make_service):
    # A real template has its own field names ("thing1", "time2"…); ours are mapped onto them and fields the
    # template lacks are left out rather than sent to be rejected.
    fields = {"TPL-NOTICE": {"title": "thing1", "content": "thing2", "time": "time3"}}
    svc = await make_service(**FAST, wechat_template_fields=fields)
    li = await out_of_window(svc, "o-li", "李四")
    await put(svc, notice_for(li, summary=Summary(title="党员大会通知", content="学习新条例", time="周五上午9点",
                                                  sender="李建国")))
    await svc.outbox.run_until_idle()
    [template] = svc.emulator.api.templates("o-li")
    assert {name: value["value"] for name, value in template["data"].items()} == {
        "thing1": "党员大会通知", "thing2": "学习新条例", "time3": "周五上午9点"}


async def test_the_sixth_message_in_a_window_goes_as_a_template(svc):
    zhang = await in_window(svc, "o-zhang", "张三")
    await put(svc, *(Outgoing(key=f"reminder:{n}", kind="reminder", text=f"提醒{n}", member_id=zhang) for n in range(6)))
    await svc.outbox.run_until_idle()
    assert len(svc.pushed("o-zhang")) == 5
    [template] = svc.emulator.api.templates("o-zhang")
    assert template["template_id"] == "TPL-DEFAULT"  # no template for "reminder": the default one
    # Our count kept us inside WeChat's: not a single 45047.
    assert all(code == 0 for _, code in attempts_at(svc, "o-zhang"))


async def test_a_window_that_closed_on_wechats_side_falls_back_to_the_template(svc):
    # 张三 wrote an hour ago by our records, but WeChat no longer counts the window as open (45015).
    zhang = await out_of_window(svc, "o-zhang", "张三")
    async with svc.sessions() as session, session.begin():
        await session.execute(update(WeChatIdentity).where(WeChatIdentity.openid == "o-zhang")
                              .values(last_message_at=svc.clock.now() - timedelta(hours=1)))
    # 李四's window was used up by five pushes the outbox did not make (45047).
    li = await in_window(svc, "o-li", "李四")
    for n in range(5):
        await svc.app[CLIENT].send_text("o-li", f"回复{n}")
    await put(svc, notice_for(zhang), notice_for(li))
    await svc.outbox.run_until_idle()

    assert attempts_at(svc, "o-zhang") == [("custom", 45015), ("template", 0)]
    assert attempts_at(svc, "o-li")[-2:] == [("custom", 45047), ("template", 0)]
    assert {(r.status, r.channel) for r in await rows(svc)} == {("sent", "template")}
    # Until they write again, the next message goes straight to the template.
    assert (await identity(svc, "o-zhang")).window_sent == 5 and (await identity(svc, "o-li")).window_sent == 5
    await put(svc, Outgoing(key="notice:2:zhang", kind="notice", text="又一条", member_id=zhang))
    await svc.outbox.run_until_idle()
    assert attempts_at(svc, "o-zhang")[-1] == ("template", 0)


async def test_no_template_and_a_closed_window_is_recorded_as_undeliverable(make_service):
    service = await make_service(**{**FAST, "wechat_templates": {}})
    li = await out_of_window(service, "o-li", "李四")
    zhang = await out_of_window(service, "o-zhang", "张三")
    async with service.sessions() as session, session.begin():
        await session.execute(update(WeChatIdentity).where(WeChatIdentity.openid == "o-zhang")
                              .values(last_message_at=service.clock.now() - timedelta(hours=1)))
    await put(service, notice_for(li), notice_for(zhang))
    await service.outbox.run_until_idle()
    assert [(r.status, r.error) for r in await rows(service)] == [("failed", NO_CHANNEL)] * 2
    assert attempts_at(service, "o-li") == []  # known in advance: WeChat was not even asked
    assert attempts_at(service, "o-zhang") == [("custom", 45015)]
    assert (await row_of(service, zhang)).error_code == 45015


WAITS = "您有一条支部通知，回复 通知 查看"


async def test_a_message_that_may_wait_waits_instead_of_failing_and_counts_as_pending(make_service):
    service = await make_service(**{**FAST, "wechat_templates": {}})
    li = await out_of_window(service, "o-li", "李四")
    zhang = await out_of_window(service, "o-zhang", "张三")
    async with service.sessions() as session, session.begin():  # by our records 张三 wrote an hour ago
        await session.execute(update(WeChatIdentity).where(WeChatIdentity.openid == "o-zhang")
                              .values(last_message_at=service.clock.now() - timedelta(hours=1)))
        notice = Notice(sender_id=li, org_id=(await session.get(Member, li)).org_id, audience="全体党员", text="通知",
                        created_at=service.clock.now(), report_due_at=service.clock.now() + timedelta(days=1))
        session.add(notice)
    await put(service, notice_for(li, waits=WAITS), notice_for(zhang, waits=WAITS))
    await service.outbox.run_until_idle()

    assert [(r.status, r.error, r.waits) for r in await rows(service)] == [("waiting", None, WAITS)] * 2
    assert attempts_at(service, "o-li") == [] and attempts_at(service, "o-zhang") == [("custom", 45015)]
    assert (await identity(service, "o-zhang")).window_sent == 5  # WeChat said the window is closed
    assert service.outbox.failed == 0 and service.outbox.counters.waiting == 2
    # Every figure that counts failures counts them as not yet delivered.
    async with service.sessions() as session:
        assert await outbox_store.status_counts(session, "notice:1") == {"waiting": 2}
        report = await notices.report(session, notice, by_branch=False)
        assert (report.pending, report.failed, report.failed_names) == (2, 0, [])
        assert sorted(report.waiting_names) == ["张三", "李四"]
        county = await by_path(session, BRANCH.split("/")[0])
        [totals] = await notices.totals_under(session, county, service.clock.now() - timedelta(days=1),
                                              service.clock.now() + timedelta(days=1))
        assert (totals.sent, totals.pending, totals.failed) == (0, 2, 0)
        [line], _ = await notices_in_scope(SimpleNamespace(session=session, scope=county), limit=10, offset=0)
        assert (line.pending, line.failed, line.not_bound) == (2, 0, 0)
    # A later pass leaves waiting rows alone: only the member's next message hands them over.
    service.clock.advance(hours=1)
    await service.outbox.run_until_idle()
    assert {r.status for r in await rows(service)} == {"waiting"} and attempts_at(service, "o-li") == []


async def test_turning_reminders_off_or_withdrawing_the_record_ends_the_wait(make_service):
    service = await make_service(**{**FAST, "wechat_templates": {}})
    li = await out_of_window(service, "o-li", "李四")
    zhang = await out_of_window(service, "o-zhang", "张三")
    await put(service, notice_for(li, waits=WAITS, reminder=True), notice_for(zhang, waits=WAITS))
    await service.outbox.run_until_idle()
    async with service.sessions() as session, session.begin():
        assert await outbox_store.withdraw_reminders(session, li, reason=MUTED) == 1
        assert await outbox_store.withdraw_pending(session, "notice:1", reason="通知已撤回") == 1
    assert [(r.member_id, r.status, r.error) for r in await rows(service)] == [
        (li, "failed", MUTED), (zhang, "failed", "通知已撤回")]
    # Nothing is handed over when they write.
    assert WAITS not in await service.say("o-li", "帮助")


# ---------------------------------------------------------------- people who cannot be reached


async def test_members_without_wechat_or_who_unfollowed_are_recorded_with_reasons(svc):
    ids = await crowd(svc, 6, unbound=2, unfollowed=1)
    async with svc.sessions() as session, session.begin():
        added = await enqueue_members(session, select(Member.id).where(Member.id.in_(ids)), key_prefix="notice:7",
                                      kind="notice", text="通知", ref="notice:7", urgent=False, summary=None,
                                      now=svc.clock.now(), settings=svc.settings)
    # A single item for an unbound member is recorded the same way.
    assert added == 6 and await put(svc, Outgoing(key="reply:1", kind="reply", text="x", member_id=ids[0])) == 1
    await svc.outbox.run_until_idle()

    by_member = {row.member_id: row for row in await rows(svc, ref="notice:7")}
    assert [(by_member[i].status, by_member[i].error) for i in ids] == [
        ("failed", UNBOUND), ("failed", UNBOUND), ("failed", UNFOLLOWED),
        ("sent", None), ("sent", None), ("sent", None)]
    assert (await rows(svc, idempotency_key="reply:1"))[0].error == UNBOUND
    assert sum(delivered(svc).values()) == 3
    assert f"c-{ids[2]}" not in delivered(svc)


async def test_an_unfollow_we_did_not_hear_about_fails_with_43004_and_is_not_retried(svc):
    zhang = await out_of_window(svc, "o-zhang", "张三")
    svc.emulator.api.user_event("o-zhang", event="unsubscribe")  # the unsubscribe event never reached us
    await put(svc, notice_for(zhang))
    await svc.outbox.run_until_idle()
    svc.clock.advance(hours=2)
    await svc.outbox.run_until_idle()

    row = await row_of(svc, zhang)
    assert (row.status, row.error_code, row.error, row.attempts) == ("failed", 43004, "对方已取消关注公众号", 1)
    assert attempts_at(svc, "o-zhang") == [("template", 43004)]
    assert svc.outbox.retried == 0


# ---------------------------------------------------------------- retries and limits


async def test_a_busy_wechat_is_retried_with_growing_delays_until_the_message_goes(svc):
    zhang = await out_of_window(svc, "o-zhang", "张三")
    svc.emulator.api.fail_next("/message/template/send", -1, times=2)
    await put(svc, notice_for(zhang))
    start = svc.clock.now()

    await svc.outbox.run_until_idle()
    row = await row_of(svc, zhang)
    assert (row.status, row.attempts, row.error_code, row.error) == ("pending", 1, -1, "微信系统繁忙")
    assert row.due_at == start + timedelta(seconds=1)

    svc.clock.advance(seconds=1)
    await svc.outbox.run_until_idle()
    row = await row_of(svc, zhang)
    assert (row.status, row.attempts) == ("pending", 2)
    assert row.due_at == start + timedelta(seconds=3)  # the delay doubled

    svc.clock.advance(seconds=1)
    await svc.outbox.run_until_idle()  # not due yet
    assert (await row_of(svc, zhang)).attempts == 2
    svc.clock.advance(seconds=1)
    await svc.outbox.run_until_idle()
    row = await row_of(svc, zhang)
    assert (row.status, row.attempts, row.error) == ("sent", 3, None)
    assert attempts_at(svc, "o-zhang") == [("template", -1), ("template", -1), ("template", 0)]
    assert svc.outbox.retried == 2 and svc.outbox.sent == 1


async def test_a_message_that_keeps_failing_is_given_up_after_the_configured_attempts(make_service):
    service = await make_service(**{**FAST, "outbox_backoff": 0, "outbox_max_attempts": 3})
    zhang = await out_of_window(service, "o-zhang", "张三")
    service.emulator.api.fail_next("/message/template/send", -1, times=10)
    await put(service, notice_for(zhang))
    await service.outbox.run_until_idle()  # with no backoff every retry is due at once
    row = await row_of(service, zhang)
    assert (row.status, row.attempts, row.error) == ("failed", 3, "微信系统繁忙（已尝试 3 次，不再重试）")
    assert len(attempts_at(service, "o-zhang")) == 3


async def test_the_daily_quota_running_out_pauses_sending_and_keeps_the_rest_queued(svc):
    ids = await crowd(svc, 5)
    svc.emulator.api.daily_quota = 2
    await put(svc, *(notice_for(i) for i in ids))
    await svc.outbox.run_until_idle()

    statuses = Counter(row.status for row in await rows(svc))
    assert statuses == {"sent": 2, "pending": 3}  # held back, not failed
    assert svc.outbox.paused_until == svc.clock.now() + timedelta(seconds=svc.settings.outbox_pause)
    assert all(row.attempts == 0 and row.error is None for row in await rows(svc, status="pending"))
    await svc.outbox.run_until_idle()
    assert sum(delivered(svc).values()) == 2  # paused: WeChat is not asked again

    svc.emulator.api.daily_quota = 100  # e.g. the quota was reset in the WeChat admin console
    svc.clock.advance(seconds=svc.settings.outbox_pause)
    await svc.outbox.run_until_idle()
    assert Counter(row.status for row in await rows(svc)) == {"sent": 5}
    assert delivered(svc) == Counter({f"c-{i}": 1 for i in ids})


async def test_the_per_second_rate_limit_spaces_the_sends(make_service):
    service = await make_service(**{**FAST, "outbox_rate": 50, "outbox_burst": 1})
    ids = await crowd(service, 8)
    await put(service, *(notice_for(i) for i in ids))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await service.outbox.run_until_idle()
    elapsed = loop.time() - started
    assert sum(delivered(service).values()) == 8
    assert elapsed >= 7 / 50 * 0.95  # the first goes at once, then one every 20 ms


# ---------------------------------------------------------------- crashes and restarts


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def fresh_engine(service, http, **overrides) -> Outbox:
    """An Outbox as a newly started process builds it."""
    settings = service.settings.model_copy(update=overrides)
    client = WeChatClient(http=http, app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
                          api_base=settings.wechat_api_base, tokens=TokenStore(service.sessions, service.clock),
                          max_attempts=1)
    return Outbox(sessions=service.sessions, client=client, clock=service.clock, settings=settings)


async def records_reach(service, count: int) -> None:
    while sum(delivered(service).values()) < count:
        await asyncio.sleep(0.002)


async def test_a_broadcast_cut_off_by_a_crash_reaches_everyone_and_reports_possible_duplicates(svc, http):
    ids = await crowd(svc, 80)
    await put(svc, *(notice_for(i) for i in ids))
    slow = dict(outbox_rate=400, outbox_burst=1, outbox_batch=10, outbox_concurrency=4, outbox_lease=30)
    first = fresh_engine(svc, http, **slow)
    await first.start()
    await asyncio.wait_for(records_reach(svc, 25), 5)
    await first.abort()  # as SIGKILL would: nothing more is recorded
    left_sending = len(await rows(svc, status="sending"))
    assert left_sending > 0

    second = fresh_engine(svc, http, outbox_rate=0)
    assert await second.recover() == 0  # the dead process's lease has not run out yet
    svc.clock.advance(seconds=31)
    await second.start()  # recovers at start
    await asyncio.wait_for(second.run_until_idle(), 5)
    await second.stop()

    assert second.recovered == left_sending
    got = delivered(svc)
    assert set(got) == {f"c-{i}" for i in ids}  # everyone has the notice
    duplicates = sum(got.values()) - len(got)
    assert duplicates <= second.recovered
    assert Counter(row.status for row in await rows(svc)) == {"sent": 80}


async def test_stopping_mid_broadcast_finishes_what_is_on_the_wire_and_leaves_the_rest_queued(svc, http):
    ids = await crowd(svc, 60)
    await put(svc, *(notice_for(i) for i in ids))
    first = fresh_engine(svc, http, outbox_rate=400, outbox_burst=1, outbox_batch=10, outbox_concurrency=4)
    await first.start()
    await asyncio.wait_for(records_reach(svc, 10), 5)
    await first.stop()
    statuses = Counter(row.status for row in await rows(svc))
    assert statuses["sending"] == 0 and statuses["sent"] == sum(delivered(svc).values())

    second = fresh_engine(svc, http)
    await second.start()
    await second.run_until_idle()
    await second.stop()
    assert second.recovered == 0
    assert delivered(svc) == Counter({f"c-{i}": 1 for i in ids})  # nobody twice


# ---------------------------------------------------------------- quiet hours


async def test_quiet_hours_hold_a_notice_until_seven_and_let_an_urgent_one_through(svc):
    zhang = await out_of_window(svc, "o-zhang", "张三")
    svc.clock.set(datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc))  # 22:00 in Shanghai
    await put(svc, notice_for(zhang, "明天停水"),
              Outgoing(key="alert:1", kind="notice", text="山洪预警，请立即转移", member_id=zhang, urgent=True))
    await svc.outbox.run_until_idle()

    held = (await rows(svc, idempotency_key=f"notice:1:{zhang}"))[0]
    seven = datetime(2026, 11, 24, 23, 0, tzinfo=timezone.utc)  # 07:00 the next morning in Shanghai
    assert (held.status, held.due_at) == ("pending", seven)
    assert [t["data"]["content"]["value"] for t in svc.emulator.api.templates("o-zhang")] == ["山洪预警，请立即转移"]

    svc.clock.set(seven - timedelta(minutes=1))
    await svc.outbox.run_until_idle()
    assert len(svc.emulator.api.templates("o-zhang")) == 1
    svc.clock.set(seven)
    await svc.outbox.run_until_idle()
    assert svc.emulator.api.templates("o-zhang")[-1]["data"]["content"]["value"] == "明天停水"


async def test_a_backlog_that_runs_into_the_quiet_hours_waits_for_morning(svc):
    zhang = await out_of_window(svc, "o-zhang", "张三")
    svc.clock.set(datetime(2026, 11, 24, 12, 55, tzinfo=timezone.utc))  # 20:55: due at once
    await put(svc, notice_for(zhang))
    svc.clock.set(datetime(2026, 11, 24, 13, 5, tzinfo=timezone.utc))  # still queued at 21:05
    await svc.outbox.run_until_idle()
    assert (await row_of(svc, zhang)).status == "pending"
    svc.clock.set(datetime(2026, 11, 24, 23, 0, tzinfo=timezone.utc))
    await svc.outbox.run_until_idle()
    assert (await row_of(svc, zhang)).status == "sent"


def test_quiet_hours_boundaries(svc):
    settings = svc.settings
    shanghai = settings.zone
    at = lambda h, m=0: datetime(2026, 11, 24, h, m, tzinfo=shanghai)  # noqa: E731
    assert quiet_until(at(20, 59), settings) is None
    assert quiet_until(at(21, 0), settings) == datetime(2026, 11, 25, 7, 0, tzinfo=shanghai)
    assert quiet_until(at(3, 0), settings) == datetime(2026, 11, 24, 7, 0, tzinfo=shanghai)
    assert quiet_until(at(7, 0), settings) is None
    assert quiet_until(at(3, 0), settings.model_copy(update={"quiet_hours_end": "21:00"})) is None


# ---------------------------------------------------------------- enqueueing


async def test_enqueueing_the_same_messages_again_adds_nothing_and_sends_nothing_twice(svc):
    ids = await crowd(svc, 3)
    assert await put(svc, *(notice_for(i) for i in ids)) == 3
    assert await put(svc, *(notice_for(i) for i in ids)) == 0
    select_all = select(Member.id).where(Member.id.in_(ids))
    for expected in (3, 0):
        async with svc.sessions() as session, session.begin():
            assert await enqueue_members(session, select_all, key_prefix="notice:2", kind="notice", text="二号通知",
                                         ref="notice:2", urgent=False, summary=None, now=svc.clock.now(),
                                         settings=svc.settings) == expected
    await svc.outbox.run_until_idle()
    assert await put(svc, notice_for(ids[0])) == 0  # already sent: still nothing new
    await svc.outbox.run_until_idle()
    assert delivered(svc) == Counter({f"c-{i}": 2 for i in ids})


async def test_enqueue_members_for_a_few_hundred_makes_one_row_each(svc):
    ids = await crowd(svc, 300, unbound=30, unfollowed=20)
    await crowd(svc, 5, prefix="other", org_path="示范县委/城关镇党委/东风村党支部")
    async with svc.sessions() as session, session.begin():
        added = await enqueue_members(session, select(Member.id).where(Member.name.like("c%")), key_prefix="notice:9",
                                      kind="notice", text="全村通知", ref="notice:9", urgent=False,
                                      summary=Summary(title="红旗村党支部通知"), now=svc.clock.now(), settings=svc.settings)
    assert added == 300
    all_rows = await rows(svc, ref="notice:9")
    assert sorted(row.member_id for row in all_rows) == sorted(ids)
    assert {row.idempotency_key for row in all_rows} == {f"notice:9:{i}" for i in ids}
    assert Counter(row.status for row in all_rows) == {"pending": 250, "failed": 50}
    assert json.loads(all_rows[-1].template_data) == {"title": "红旗村党支部通知"}
    await svc.outbox.run_until_idle()
    got = delivered(svc)
    assert len(got) == 250 and set(got.values()) == {1}
    async with svc.sessions() as session:
        sent = (await session.execute(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.status == "sent"))).scalar()
    assert sent == 250


# ---------------------------------------------------------------- from a handler, with the engine running


def enqueuing_router() -> Router:
    router = Router("test-outbox")

    @router.on(Command("提醒李四"), bound=True)
    async def remind(ctx, member) -> str:
        target = (await ctx.session.execute(select(Member.id).where(Member.name == "李四"))).scalar_one()
        ctx.enqueue(Outgoing(key=f"ask:{ctx.message.msg_id}", kind="reminder", text=f"{member.name}提醒您交党费",
                             member_id=target))
        return "已提醒"

    @router.on(Command("提醒后出错"), bound=True)
    async def broken(ctx, member) -> str:
        target = (await ctx.session.execute(select(Member.id).where(Member.name == "李四"))).scalar_one()
        ctx.enqueue(Outgoing(key=f"ask:{ctx.message.msg_id}", kind="reminder", text="不该发出", member_id=target))
        raise RuntimeError("the handler fails after enqueueing")

    return router


async def test_a_handlers_enqueued_message_commits_with_it_and_the_running_engine_sends_it(make_service):
    service = await make_service(**{**FAST, "outbox_enabled": True, "outbox_poll_interval": 30},
                                 routers=[membership.router, enqueuing_router()])
    await in_window(service, "o-zhang", "张三")
    await out_of_window(service, "o-li", "李四")
    assert await service.say("o-zhang", "提醒李四") == "已提醒"
    # The engine was woken by the commit: no 30-second poll needed.
    for _ in range(200):
        if service.emulator.api.templates("o-li"):
            break
        await asyncio.sleep(0.005)
    assert service.emulator.api.templates("o-li")[0]["data"]["content"]["value"] == "张三提醒您交党费"

    assert (await service.say("o-zhang", "提醒后出错")).startswith("抱歉")
    assert len(await rows(service)) == 1  # rolled back with the handler


async def test_a_template_links_to_the_page_and_a_text_too_long_for_wechat_ends_with_it(svc):
    # The template can only point (20 characters a field since 2023): its url opens the whole message.
    # A customer-service text longer than WeChat takes is cut, and its end carries the same page.
    zhang = await in_window(svc, "o-zhang", "张三")
    li = await out_of_window(svc, "o-li", "李四")
    long_text = "\n".join(f"第{n}项：请各位党员按时参加，带好笔记本。" for n in range(1, 200))
    await put(svc, notice_for(zhang, text=long_text), notice_for(li, text=long_text))
    await svc.outbox.run_until_idle()
    [template] = svc.emulator.api.templates("o-li")
    assert template["url"].startswith(f"{svc.url}/m/")
    assert svc.app[LINKS].read(template["url"].rsplit("/", 1)[1]) == Subject(ref="notice:1", member_id=li)
    [text] = svc.pushed("o-zhang")
    assert len(text.encode("utf-8")) <= 2048 and text.startswith("第1项：请各位党员按时参加，带好笔记本。\n第2项")
    link = text.rsplit("全文：", 1)[1]
    assert svc.app[LINKS].read(link.rsplit("/", 1)[1]) == Subject(ref="notice:1", member_id=zhang)


async def test_a_row_whose_thing_has_no_page_gets_no_link(svc):
    li = await out_of_window(svc, "o-li", "李四")
    await put(svc, Outgoing(key=f"binding:1:{li}", kind="binding", text="绑定变更", member_id=li, ref=f"member:{li}"))
    await svc.outbox.run_until_idle()
    [template] = svc.emulator.api.templates("o-li")
    assert "url" not in template
