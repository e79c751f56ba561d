"""Notices as a secretary, a township staffer and members use them, delivered through the emulator."""

from __future__ import annotations

from sqlalchemy import select

from handlers import notices
from harness import DONGFENG, TOWN, hongqi_branch
from storage.models import OutboxMessage, Role
from handlers.notices import NoticeSettings



async def send_notice(service, openid: str, text: str, *choices: str) -> list[str]:
    replies = [await service.say(openid, "发通知"), await service.say(openid, text)]
    for choice in choices:
        replies.append(await service.say(openid, choice))
    return replies


async def test_a_secretary_notifies_the_whole_branch_and_sees_who_acknowledged(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    replies = await send_notice(service, secretary, "明天上午9点在村委会开党员大会，请准时参加。", "1")
    assert replies[0].startswith("请发送通知内容")
    assert replies[1].startswith("发给谁？") and "1 红旗村党支部全体党员" in replies[1]
    assert "共 5 人" in replies[2] and "明天上午9点" in replies[2]  # the sender is left out
    sent = await service.say(secretary, "1")
    assert sent.startswith("通知已发出，共 5 人。")
    await service.deliver()
    for name in ("王秀英", "刘小梅", "张卫东", "陈志强"):
        received = service.pushed(people[name])[-1]
        assert received.startswith("【红旗村党支部通知】") and "明天上午9点" in received and "——李建国" in received

    assert (await service.say(people["王秀英"], "收到")).startswith("已确认收到：“明天上午9点")
    assert await service.say(people["王秀英"], "收到") == "目前没有需要确认的通知。"
    report = await service.say(secretary, "通知情况")
    assert "共 5 人：已送达 4，待发送 0，未送达 0，未绑定 1，已回复收到 1。" in report
    assert "未绑定微信（发出后 7 天内绑定的会补收这条通知）：赵德明" in report and "未送达：" not in report
    assert "还没回复收到：" in report and "王秀英" not in report.split("还没回复收到：")[1]


async def test_audiences_committee_group_elderly_away_and_named(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]

    async def count_for(*choices: str) -> str:
        replies = await send_notice(service, secretary, "测试", *choices)
        await service.say(secretary, "取消")
        return replies[-1]

    assert "发给支委，共 1 人" in await count_for("2")
    group_menu = (await send_notice(service, secretary, "测试", "3"))[-1]
    assert group_menu.startswith("发给哪个党小组？") and "1 第一党小组" in group_menu and "2 第二党小组" in group_menu
    assert "发给第二党小组，共 2 人" in await service.say(secretary, "2")
    await service.say(secretary, "取消")
    assert "70岁以上老党员，共 2 人" in await count_for("4")
    assert "发给流动党员，共 1 人" in await count_for("5")
    assert "发给王秀英、刘小梅，共 2 人" in await count_for("6", "王秀英，刘小梅")


async def test_a_secretary_cannot_reach_another_branch_and_members_cannot_send(service):
    people = await hongqi_branch(service)
    await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    replies = await send_notice(service, people["李建国"], "测试", "6", "孙大海")
    assert replies[-1] == "本支部没有：孙大海。请重新回复姓名。"
    assert await service.say(people["王秀英"], "发通知") == "这项功能只有书记、副书记、组织员、管理员可以使用。"
    assert await service.say(people["张卫东"], "发通知") == "这项功能只有书记、副书记、组织员、管理员可以使用。"
    assert (await service.say("df-1", "通知情况")).startswith("这项功能只有")


async def test_township_staff_notify_their_subtree_and_get_counts_per_branch(service):
    people = await hongqi_branch(service)
    await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    await service.bind("staff", "周晓燕", org_path=TOWN, role=Role.STAFF, phone="13700000001")
    replies = await send_notice(service, "staff", "请各支部本周五前报送党费收缴情况。", "1")
    assert "1 城关镇党委全体党员" in replies[1] and "党小组" not in replies[1]
    assert "共 7 人" in replies[2]
    await service.say("staff", "1")
    await service.deliver()
    assert "党费收缴" in service.pushed("df-1")[-1]
    await service.say(people["王秀英"], "收到")
    report = await service.say("staff", "通知情况")
    assert "东风村党支部：1 人，送达 1，收到 0" in report
    assert "红旗村党支部：6 人，送达 5，收到 1" in report


async def test_one_report_and_one_gentle_reminder_after_the_follow_up_time(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await send_notice(service, secretary, "请交党费", "1", "1")
    await service.deliver()
    await service.say(people["王秀英"], "收到")
    job = service.job_context(NoticeSettings)
    assert await notices.follow_up(job) == 0  # not due yet
    service.clock.advance(hours=service.config(NoticeSettings).notice_follow_up_hours + 1)
    assert await notices.follow_up(job) == 1
    assert await notices.follow_up(job) == 0  # never a second time
    await service.deliver()
    reminded = {name for name, openid in people.items() if any("温馨提醒" in text for text in service.pushed(openid))}
    assert reminded == {"刘小梅", "张卫东", "陈志强"}
    report = [text for text in service.pushed(secretary) if text.startswith("【通知情况】")]
    assert len(report) == 1 and "已回复收到 1" in report[0]
    async with service.sessions() as session:
        reminders = (await session.execute(select(OutboxMessage).where(OutboxMessage.kind == "reminder"))).scalars().all()
    assert len(reminders) == 3


async def test_voice_and_forwarded_articles_become_notice_text(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await service.say(secretary, "发通知")
    menu = (await service.emulator.voice(secretary, "今晚七点看新闻联播")).reply
    assert menu.startswith("发给谁？")
    await service.say(secretary, "取消")
    await service.say(secretary, "发通知")
    assert (await service.emulator.link(secretary, "学习文章", "http://example.com/a")).reply.startswith("发给谁？")
    preview = await service.say(secretary, "2")
    assert "学习文章\nhttp://example.com/a" in preview


async def test_a_night_notice_waits_for_morning_unless_urgent(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    service.clock.advance(hours=12)  # 22:00 in Shanghai
    sent = (await send_notice(service, secretary, "明早修路停水", "1", "1"))[-1]
    assert "现在是夜间休息时间，通知将在早上" in sent
    await service.deliver()
    assert not any("停水" in text for text in service.pushed(people["王秀英"]))
    urgent = (await send_notice(service, secretary, "山洪预警，请立即转移", "1", "2"))[-1]
    assert "夜间" not in urgent
    await service.deliver()
    assert any("山洪预警" in text for text in service.pushed(people["王秀英"]))
    service.clock.advance(hours=9)  # 07:00
    await service.deliver()
    assert any("停水" in text for text in service.pushed(people["王秀英"]))


async def test_a_member_who_binds_late_gets_the_last_weeks_notices_and_the_report_follows(make_service):
    # Templates reach members whose 48-hour window has closed in the week the test skips.
    service = await make_service(wechat_templates={"default": "DEMO-TEMPLATE"})
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    _, code = await service.add_member("孙桂兰", "示范县委/城关镇党委/红旗村党支部/第一党小组")
    await send_notice(service, secretary, "上个月的旧通知", "1")
    await service.say(secretary, "1")
    service.clock.advance(days=8)
    await send_notice(service, secretary, "周六上午打扫村部卫生。\n请带上扫帚。", "1")
    await service.say(secretary, "1")
    await service.deliver()
    before = await service.say(secretary, "通知情况")
    assert "已送达 4，待发送 0，未送达 0，未绑定 2，" in before and "孙桂兰" in before

    bound = await service.say("late-binder", f"绑定 孙桂兰 {code}")
    assert "绑定成功" in bound and "您绑定前 7 天里支部发的 1 条通知，马上发给您。" in bound
    await service.deliver()
    received = service.pushed("late-binder")
    assert len(received) == 1 and "周六上午打扫村部卫生。\n请带上扫帚。" in received[0]
    after = await service.say(secretary, "通知情况")
    assert "已送达 5，待发送 0，未送达 0，未绑定 1，" in after
    assert "未绑定微信（发出后 7 天内绑定的会补收这条通知）：赵德明\n" in after and "孙桂兰" in after.split("还没回复收到：")[1]
    assert (await service.say("late-binder", "收到")).startswith("已确认收到：“周六上午打扫村部卫生。")


async def test_a_member_who_binds_late_hears_of_the_meetings_ahead(service):
    people = await hongqi_branch(service)
    _, code = await service.add_member("孙桂兰", "示范县委/城关镇党委/红旗村党支部/第一党小组")
    secretary = people["李建国"]
    for reply in ("开会", "1", "后天下午3点", "村委会", "学习新修订的条例", "1"):
        last = await service.say(secretary, reply)
    assert last.startswith("会议已召集，已通知 4 人（赵德明、孙桂兰没绑定微信或已取消关注，收不到，请当面告诉）。"), last
    bound = await service.say("late-binder", f"绑定 孙桂兰 {code}")
    assert bound.startswith("绑定成功！孙桂兰，您好。")
    assert "下次会议：支部党员大会" in bound and "学习新修订的条例" in bound and "请假" in bound
