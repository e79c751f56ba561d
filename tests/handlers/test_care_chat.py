"""Care (五必访) in chat, as members, a visitor and branch leaders use it: 上报 (the dialog and everyday sentences),
走访 (a visit with an amount, a fund and photos; a visit nobody reported), 改派, 走访情况, the hardship register,
走访联系人 and 不让上报人看 — and what nobody outside the branch may see. Everything through the webhook."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.app import feature_routers
from handlers.care import jobs
from handlers.care.service import THANKS, TO_VISITOR, Access, access_to
from handlers.care.settings import DEFAULT_OCCASIONS, CareSettings
from harness import DONGFENG, TOWN, hongqi_branch
from storage.models import CareCase, CareMedia, CareProfile, CareReport, CareVisit, Member, MeetingPhoto, Role
from test_meetings import call

SHANGHAI = ZoneInfo("Asia/Shanghai")
UNSUPPORTED = "暂时不能处理这类消息。回复 帮助 查看可以做什么。"


def at(service, month: int, day: int, hour: int, minute: int = 0) -> None:
    """Move the clock to a local (Shanghai) time in 2026 (it starts on 24 November, 10:00)."""
    service.clock.set(datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(timezone.utc))


async def rows(service, table, *where, order=None) -> list:
    async with service.sessions() as session:
        query = select(table).where(*where).order_by(order if order is not None else table.id)
        return list((await session.execute(query)).scalars())


async def member_id(service, name: str) -> int:
    async with service.sessions() as session:
        return (await session.execute(select(Member.id).where(Member.name == name))).scalar_one()


async def dialog(service, openid: str, *answers: str) -> list[str | None]:
    return [await service.say(openid, answer) for answer in answers]


def care_texts(service, openid: str) -> list[str]:
    return [text for text in service.pushed(openid) if "走访" in text or text == THANKS]


async def test_reporting_each_occasion_through_the_dialog(service):
    people = await hongqi_branch(service)
    reporter, secretary = people["王秀英"], people["李建国"]

    asked = await service.say(reporter, "上报")
    assert asked == "要上报谁的情况？回复数字：\n1 我自己（或我家里）\n2 本支部的党员\n3 不是党员的村民"
    assert await service.say(reporter, "4") == asked  # a number not offered: asked again
    assert await service.say(reporter, "2") == "请回复这位党员的姓名。"
    occasions = await service.say(reporter, "刘小梅")
    assert occasions == "是什么情况？回复数字：\n" + "\n".join(
        f"{number} {occasion.name}" for number, occasion in enumerate(DEFAULT_OCCASIONS, start=1))
    assert (await service.say(reporter, "2")).startswith("请简单说几句情况")
    assert (await service.say(reporter, "  她在县医院住院，腿摔伤了！\n要做手术。")).startswith("有照片或语音的话")
    assert (await service.emulator.image(reporter)).reply == "收到照片。还有就接着发，发完了回复 好了。"
    assert (await service.emulator.voice(reporter, "在三楼骨科")).reply == "收到语音。还有就接着发，发完了回复 好了。"
    assert await service.say(reporter, "还有什么") == "请发照片或语音；发完了（或没有）回复 好了。"
    opened = await service.say(reporter, "好了")
    assert opened == "已上报：刘小梅（生病住院）。\n支部安排 李建国 在 11月26日 10:00 前上门看望。谢谢您！"

    # The other occasions, each a case of its own with its own deadline (the same person, other occasions).
    for number, occasion in enumerate(DEFAULT_OCCASIONS, start=1):
        if occasion.name == "生病住院":
            continue
        replies = await dialog(service, reporter, "上报", "2", "刘小梅", str(number), f"关于{occasion.name}", "跳过")
        assert replies[-1].startswith(f"已上报：刘小梅（{occasion.name}）"), replies

    cases = await rows(service, CareCase)
    assert [case.occasion for case in cases] == ["生病住院"] + [o.name for o in DEFAULT_OCCASIONS if o.name != "生病住院"]
    due = {occasion.name: occasion.due_hours for occasion in DEFAULT_OCCASIONS}
    assert all(case.deadline - case.opened_at == timedelta(hours=due[case.occasion]) for case in cases)
    assert {case.source for case in cases} == {"report"}
    assert {case.visitor_id for case in cases} == {await member_id(service, "李建国")}
    report = (await rows(service, CareReport, CareReport.case_id == cases[0].id))[0]
    assert report.details == "她在县医院住院，腿摔伤了！\n要做手术。"  # as written (the ends trimmed)
    media = await rows(service, CareMedia)
    assert [(item.kind, item.report_id) for item in media] == [("image", report.id), ("voice", report.id)]
    assert media[0].pic_url.startswith("http://emulator.local/")

    await service.deliver()
    told = care_texts(service, secretary)
    assert len(told) == len(DEFAULT_OCCASIONS)
    assert told[0] == TO_VISITOR.format(subject="刘小梅", occasion="生病住院", deadline="11月26日 10:00")
    assert service.pushed(reporter) == []


async def test_everyday_sentences_start_the_report_and_questions_stay_questions(service):
    people = await hongqi_branch(service)
    member = people["刘小梅"]

    assert await service.say(member, "王秀英住院了") == "要上报 王秀英 生病住院 吗？回复 1 上报，回复 2 不用"
    assert (await service.say(member, "1")).startswith("已上报：王秀英（生病住院）。\n支部安排 李建国")
    assert await service.say(member, "家里老人走了") == "要上报 刘小梅 家中丧事 吗？回复 1 上报，回复 2 不用"
    assert await service.say(member, "2") == "好的，没有上报。"
    assert await service.say(member, "我家房子着火了") == "要上报 刘小梅 灾害事故 吗？回复 1 上报，回复 2 不用"
    assert (await service.say(member, "是的")).startswith("已上报：刘小梅（灾害事故）")
    # 老王: the one member named 王 in the branch.
    assert await service.say(member, "老王去世了") == "要上报 王秀英 家中丧事 吗？回复 1 上报，回复 2 不用"
    assert await service.say(member, "不用") == "好的，没有上报。"
    # Someone not on the branch's roster: who is it?
    asked = await service.say(member, "张三生病住院了")
    assert asked.startswith("要上报“张三”的情况。要上报谁的情况？")
    assert (await service.say(member, "3")).startswith("要上报 张三（村民，非党员） 生病住院 吗？")
    assert (await service.say(member, "1")).startswith("已上报：张三（村民，非党员）（生病住院）")
    # Said by voice, like typed.
    spoken = await service.emulator.voice(member, "陈志强，住院了。")
    assert spoken.reply == "要上报 陈志强 生病住院 吗？回复 1 上报，回复 2 不用"
    assert await service.say(member, "取消") == "已取消。"
    # Two occasions named: which one?
    assert (await service.say(member, "陈志强车祸住院了")).startswith("是什么情况？回复数字：\n1 节日慰问")
    assert await service.say(member, "住院") == "要上报 陈志强 生病住院 吗？回复 1 上报，回复 2 不用"
    assert await service.say(member, "2") == "好的，没有上报。"
    # After the word 上报, the same.
    assert await service.say(member, "上报 陈志强住院了") == "要上报 陈志强 生病住院 吗？回复 1 上报，回复 2 不用"
    assert await service.say(member, "2") == "好的，没有上报。"

    # Questions and goodbyes are not reports.
    answer = await service.say(member, "党员住院了有什么补助")
    assert answer is not None and "要上报" not in answer and not answer.startswith("已上报")
    assert "要上报" not in (await service.say(member, "我先走了") or "")

    cases = await rows(service, CareCase)
    assert [(case.subject_name, case.occasion, case.member_id is None) for case in cases] == [
        ("王秀英", "生病住院", False), ("刘小梅", "灾害事故", False), ("张三", "生病住院", True)]
    reports = await rows(service, CareReport)
    assert [report.details for report in reports] == ["王秀英住院了", "我家房子着火了", "张三生病住院了"]


async def test_a_second_report_joins_the_open_case_and_the_visitor_hears_once(service):
    people = await hongqi_branch(service)
    await dialog(service, people["刘小梅"], "王秀英住院了", "1")
    joined = await dialog(service, people["陈志强"], "上报", "2", "王秀英", "2", "在镇卫生院", "跳过")
    assert joined[-1] == "这件事支部已经知道了，李建国 会在 11月26日 10:00 前上门看望。您说的情况也记下了，谢谢您！"
    cases = await rows(service, CareCase)
    assert len(cases) == 1
    assert [r.details for r in await rows(service, CareReport)] == ["王秀英住院了", "在镇卫生院"]
    await service.deliver()
    assert len(care_texts(service, people["李建国"])) == 1


async def test_a_villager_and_names_the_roster_does_not_have(service):
    people = await hongqi_branch(service)
    reporter = people["陈志强"]
    await dialog(service, reporter, "上报", "2")
    assert await service.say(reporter, "老刘头") == \
        "本支部党员里没有“老刘头”，请核对后重新回复姓名。如果他（她）不是党员，回复 3 按村民上报。"
    assert (await service.say(reporter, "3")).startswith("是什么情况？")
    replies = await dialog(service, reporter, "5", "一个人住，冬天缺煤", "跳过")
    assert replies[-1].startswith("已上报：老刘头（村民，非党员）（生活困难）")
    # The villager option directly; a name too long is refused.
    await dialog(service, reporter, "上报", "3")
    assert await service.say(reporter, "张" * 21) == "姓名太长了（最多 20 字），请重新回复。"
    await dialog(service, reporter, "张大爷", "3")
    # Said by voice: the words are the report's, and the voice message is kept with it.
    assert (await service.emulator.voice(reporter, "房子漏雨了")).reply.startswith("有照片或语音的话")
    assert (await service.say(reporter, "跳过")).startswith("已上报：张大爷（村民，非党员）（灾害事故）")
    cases = await rows(service, CareCase)
    assert [(case.subject_name, case.member_id) for case in cases] == [("老刘头", None), ("张大爷", None)]
    (report,) = await rows(service, CareReport, CareReport.case_id == cases[1].id)
    assert report.details == "房子漏雨了"
    assert [(item.kind, item.report_id) for item in await rows(service, CareMedia)] == [("voice", report.id)]
    # Namesakes are told apart by the phone's last digits.
    await service.add_member("刘小梅", "示范县委/城关镇党委/红旗村党支部", phone="13811112222")
    await dialog(service, reporter, "上报", "2")
    assert await service.say(reporter, "刘小梅") == \
        "本支部有 2 位党员叫刘小梅，请在姓名后加手机尾号 4 位，例如：刘小梅 0004"
    assert (await service.say(reporter, "刘小梅 2222")).startswith("是什么情况？")


async def test_a_leaders_report_and_the_secretarys_own_case(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    # A name and an occasion typed instead of their numbers.
    replies = await dialog(service, secretary, "上报", "赵德明", "生活困难", "独居，腿脚不便", "跳过")
    assert replies[-1] == "已记下：赵德明（生活困难），由您走访，期限 12月1日 10:00。\n看望后回复 走访 记下情况。"
    # The secretary's own family: a deputy or committee member visits, not the secretary.
    replies = await dialog(service, secretary, "我家房子着火了", "1")
    assert replies[-1].startswith("已上报：李建国（灾害事故）。\n支部安排 张卫东")
    cases = await rows(service, CareCase)
    assert [case.source for case in cases] == ["secretary", "secretary"]
    await service.deliver()
    assert care_texts(service, secretary) == []
    assert len(care_texts(service, people["张卫东"])) == 1
    # Township staff belong to no branch.
    await service.bind("town-1", "周干事", org_path=TOWN, role=Role.STAFF, phone="13700000001")
    assert (await service.say("town-1", "上报")).startswith("上报是给党支部用的")


async def test_the_visitor_is_told_with_a_link_to_the_case(make_service):
    service = await make_service(wechat_templates={"default": "CARE-TEMPLATE"})
    people = await hongqi_branch(service)
    service.clock.advance(hours=49)  # outside the secretary's 48-hour window: a template message with a link
    await dialog(service, people["王秀英"], "陈志强住院了", "1")
    await service.deliver()
    templates = service.emulator.api.templates(people["李建国"])
    assert len(templates) == 1 and templates[0]["url"].startswith(service.url.rstrip("/") + "/m/")
    fields = {name: value["value"] for name, value in templates[0]["data"].items()}
    assert fields["title"] == "走访任务" and fields["content"] == "陈志强 生病住院"


async def test_reassign_visit_with_an_amount_and_photos_and_the_reporters_thanks(service):
    people = await hongqi_branch(service)
    secretary, deputy, reporter = people["李建国"], people["张卫东"], people["王秀英"]
    await dialog(service, reporter, "上报", "2", "刘小梅", "2", "住院了，家里缺人照顾", "跳过")
    await dialog(service, people["陈志强"], "刘小梅住院了", "1")
    # Not the visitor yet, and no leader: the case is not among the committee member's.
    assert await service.say(deputy, "走访") == "现在没有等您走访的情况。\n1 记一次没有上报的走访"
    assert await service.say(deputy, "取消") == "已取消。"

    assert (await service.say(secretary, "改派")).startswith("改派哪一件？回复数字：\n1 刘小梅（生病住院）期限 11月26日 10:00，走访人 李建国")
    assert await service.say(secretary, "1") == \
        "刘小梅（生病住院）现在由 李建国 走访。\n改派给谁？请回复本支部党员的姓名。"
    assert (await service.say(secretary, "张伟")).startswith("本支部党员里没有“张伟”")
    assert await service.say(secretary, "张卫东") == \
        "已改派：刘小梅（生病住院）改由 张卫东 走访，期限不变（11月26日 10:00）。已通知张卫东。"
    await service.deliver()
    assert care_texts(service, deputy)[-1].startswith("【走访任务】刘小梅（生病住院）")

    # A member who is no visitor has nothing to record: 走访 is a question for the policy answers.
    assert "记下走访" not in (await service.say(people["陈志强"], "走访") or "")

    at(service, 11, 25, 18)
    listed = await service.say(deputy, "走访")
    assert listed.startswith("您要走访的有 1 件（最急的在前）。走访过哪一件？回复数字：\n1 刘小梅（生病住院）期限 11月26日 10:00")
    assert listed.endswith("\n2 记一次没有上报的走访")
    picked = await service.say(deputy, "1")
    assert picked == ("上报的情况：住院了，家里缺人照顾\n上报的情况：刘小梅住院了\n"
                      "刘小梅（生病住院）\n哪天去看望的？例如：今天、昨天、11月3日")
    assert (await service.say(deputy, "明天")).startswith("11月26日还没到，走访时间不能晚于现在。")
    assert (await service.say(deputy, "11月28日")).startswith("11月28日还没到")
    assert await service.say(deputy, "昨天下午") == "哪些人去的？例如：李建国、张卫东（回复 我 就是您自己）"
    assert (await service.say(deputy, "我、李建国")).startswith("看望时说了些什么")
    assert (await service.say(deputy, "手术顺利，嘱咐她安心养病。")).startswith("送了什么？")
    assert (await service.say(deputy, "牛奶一箱")).startswith("送了多少钱？")
    assert (await service.say(deputy, "慰问金500元")).startswith("这笔钱是从哪里出的？")
    recorded = await service.say(deputy, "党费")
    assert recorded == ("已记下走访：刘小梅（生病住院）\n时间：11月24日\n走访人：我、李建国\n说了：手术顺利，嘱咐她安心养病。"
                        "\n送了：牛奶一箱\n金额：慰问金500元（党费）\n这件事已办结，谢谢您！"
                        "有照片的话，现在直接发过来，6 小时内发的照片都会附在这次走访上。")
    assert (await service.emulator.image(deputy)).reply == "照片已附到 刘小梅（生病住院）的走访记录，这次走访共 1 张照片。"
    # The reporters are thanked, and told nothing of what was said or given.
    await service.deliver()
    for name in ("王秀英", "陈志强"):
        assert service.pushed(people[name]) == [THANKS]
    assert "500" not in THANKS and "刘小梅" not in THANKS
    # Out of the dialog, within the hours: still the visit's; past them, an image is just an image.
    await service.say(deputy, "谢谢")
    at(service, 11, 25, 23)
    assert (await service.emulator.image(deputy)).reply.endswith("这次走访共 2 张照片。")
    at(service, 11, 26, 1)
    assert (await service.emulator.image(deputy)).reply == UNSUPPORTED

    (case,) = await rows(service, CareCase)
    (visit,) = await rows(service, CareVisit)
    assert case.status == "closed" and visit.case_id == case.id
    assert (visit.visitors, visit.given, visit.amount, visit.amount_fen, visit.fund) == \
        ("我、李建国", "牛奶一箱", "慰问金500元", 50000, "党费")
    assert visit.visited_at == datetime(2026, 11, 24, 12, tzinfo=SHANGHAI)
    assert [(m.visit_id, m.kind) for m in await rows(service, CareMedia)] == [(visit.id, "image")] * 2

    # Nothing left to visit for the deputy (not on the committee's roster as a leader: only the option left).
    assert (await service.say(deputy, "走访")).startswith("现在没有等您走访的情况。\n1 记一次没有上报的走访")


async def test_a_visit_nobody_reported_and_bad_answers(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert (await service.say(secretary, "走访")).startswith("现在没有等您走访的情况。\n1 记一次没有上报的走访")
    assert (await service.say(secretary, "1")).startswith("看望的是谁？")
    assert (await service.say(secretary, "村民")) == "请在“村民”后面写上姓名或称呼，例如：村民 张大爷"
    assert (await service.say(secretary, "王小二")).startswith("本支部党员里没有“王小二”")
    assert (await service.say(secretary, "赵德明")).startswith("是因为什么去看望？")
    assert await service.say(secretary, "9") == (await service.say(secretary, "9"))  # asked again
    assert (await service.say(secretary, "5")) == "赵德明（生活困难）\n哪天去看望的？例如：今天、昨天、11月3日"
    assert (await service.say(secretary, "找个时间")).startswith("没看懂“找个时间”")
    await dialog(service, secretary, "11月20日", "李建国")
    assert await service.say(secretary, "说" * 1001) == "太长了（最多 1000 字），请精简后重新回复。"
    replies = await dialog(service, secretary, "聊了家常，看了住房", "跳过", "跳过")
    assert replies[-1].startswith("已记下走访：赵德明（生活困难）\n时间：11月20日\n走访人：李建国\n说了：聊了家常，看了住房\n这件事已办结")
    (case,) = await rows(service, CareCase)
    assert (case.source, case.status, case.visitor_id) == ("visit", "closed", await member_id(service, "李建国"))
    (visit,) = await rows(service, CareVisit)
    assert (visit.given, visit.amount, visit.amount_fen, visit.fund) == ("", "", None, "")

    # A villager, by a member of the committee.
    replies = await dialog(service, people["张卫东"], "走访", "1", "村民 张大爷", "3", "前天", "张卫东", "帮着修了屋顶",
                           "跳过", "跳过")
    assert replies[-1].startswith("已记下走访：张大爷（村民，非党员）（灾害事故）\n时间：11月22日")
    # The wait for photos ends quietly: half an hour later a question is answered, not told a step ran out.
    service.clock.advance(minutes=30)
    answer = await service.say(people["张卫东"], "党费怎么交")
    assert "党费" in answer and "长时间未回复" not in answer


async def test_photos_after_a_visit_and_a_meetings_photos_do_not_mix(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await call(service, secretary)  # tomorrow 15:00
    await dialog(service, people["王秀英"], "赵德明住院了", "1")
    visit = ("走访", "1", "今天", "李建国", "看望了", "跳过", "跳过")

    # The visit recorded after the meeting began: the photos right after it are the visit's.
    at(service, 11, 25, 16, 30)
    await dialog(service, secretary, *visit)
    assert (await service.emulator.image(secretary)).reply.startswith("照片已附到 赵德明（生病住院）的走访记录")
    # Once the secretary turned to something else, the meeting's window comes first.
    await service.say(secretary, "谢谢")
    assert (await service.emulator.image(secretary)).reply.startswith("照片已附到11月25日（周三）15:00 支部党员大会")

    # A visit recorded before a meeting began: once the meeting is on, its photos are the meeting's.
    await dialog(service, people["王秀英"], "陈志强住院了", "1")
    await call(service, secretary, when="明天上午9点")
    at(service, 11, 26, 8, 30)
    await dialog(service, secretary, *visit)
    at(service, 11, 26, 9, 5)
    assert (await service.emulator.image(secretary)).reply.startswith("照片已附到11月26日（周四）09:00")
    assert len(await rows(service, MeetingPhoto)) == 2
    assert len(await rows(service, CareMedia)) == 1


async def test_a_leaders_photo_in_a_meetings_window_is_the_meetings_even_with_care_listed_first(make_service):
    # Care's photo handler asks meetings' rule (provided by name, never imported): with care tried before meetings
    # it must still step aside while a meeting's window is open.
    routers = sorted(feature_routers(), key=lambda router: router.name != "care")
    assert [router.name for router in routers].index("care") < [router.name for router in routers].index("meetings")
    service = await make_service(routers=routers)
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await call(service, secretary)  # tomorrow 15:00
    await dialog(service, people["王秀英"], "赵德明住院了", "1")
    at(service, 11, 25, 16, 30)
    await dialog(service, secretary, "走访", "1", "今天", "李建国", "看望了", "跳过", "跳过")
    await service.say(secretary, "谢谢")
    assert (await service.emulator.image(secretary)).reply.startswith("照片已附到11月25日（周三）15:00 支部党员大会")
    assert len(await rows(service, MeetingPhoto)) == 1 and await rows(service, CareMedia) == []


async def test_another_branch_sees_nothing_and_cannot_reassign(service):
    people = await hongqi_branch(service)
    await service.bind("df-sec", "吴国庆", org_path=DONGFENG, role=Role.SECRETARY, phone="13900000009")
    await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    await dialog(service, people["王秀英"], "上报", "2", "刘小梅", "4", "母亲去世了，家里很困难", "跳过")

    assert await service.say("df-sec", "改派") == "本支部现在没有未完成的走访。"
    status = await service.say("df-sec", "走访情况")
    assert "刘小梅" not in status and status.endswith("本支部现在没有未完成的走访。")
    assert (await service.say("df-sec", "走访")).startswith("现在没有等您走访的情况。")
    assert (await service.say("df-sec", "困难党员 刘小梅 一般 因病")).startswith("本支部党员里没有“刘小梅”")
    # A member of another branch is no member of this one: reported as a name, not as 红旗村's 刘小梅.
    replies = await dialog(service, "df-1", "上报", "2", "刘小梅")
    assert replies[-1].startswith("本支部党员里没有“刘小梅”")

    (case,) = await rows(service, CareCase)
    expected = {"吴国庆": Access.NONE, "王秀英": Access.REPORTER, "张卫东": Access.FULL, "陈志强": Access.NONE,
                "刘小梅": Access.FULL}
    ids = {name: await member_id(service, name) for name in expected}
    async with service.sessions() as session:
        for name, access in expected.items():
            assert await access_to(session, case, await session.get(Member, ids[name])) is access, name


async def test_care_status_for_the_secretary(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert await service.say(people["王秀英"], "走访情况") == "这项功能只有书记、副书记可以使用。"
    assert await service.say(secretary, "走访情况") == "红旗村党支部走访情况：\n本支部现在没有未完成的走访。"
    await dialog(service, people["王秀英"], "刘小梅住院了", "1")
    await dialog(service, people["王秀英"], "上报", "1", "5", "老伴常年卧床", "跳过")
    at(service, 11, 27, 9)
    status = await service.say(secretary, "走访情况")
    assert status == ("红旗村党支部走访情况：\n还没走访的 2 件（最急的在前）：\n"
                      "· 刘小梅（生病住院）已逾期，走访人 李建国\n"
                      "· 王秀英（生活困难）期限 12月1日 10:00，走访人 李建国\n回复 改派 可以换走访人。")
    # Handed to a member who has not bound WeChat: the secretary is told to tell them in person.
    await dialog(service, secretary, "改派", "2")
    assert (await service.say(secretary, "赵德明")).endswith("赵德明没绑定微信，收不到通知，请当面告诉。")

    # A festival campaign (春节 2027, for the hardship register) shows its progress.
    await service.say(secretary, "困难党员 刘小梅 一般困难 因病")
    at(service, 1, 27, 9)
    service.clock.advance(days=365)  # 2027-01-27
    await jobs.sweep(service.job_context(CareSettings))
    status = await service.say(secretary, "走访情况")
    assert status.startswith("红旗村党支部走访情况：\n· 2027年春节：已走访 0，未走访 1\n还没走访的 3 件")
    listed = await service.say(secretary, "走访")
    assert "\n3 刘小梅（节日慰问）期限 2月5日 20:00\n" in listed  # festival visits are due on the eve
    await dialog(service, secretary, "3", "今天", "李建国", "送去年货", "米面油", "跳过")
    assert (await service.say(secretary, "走访情况")).startswith(
        "红旗村党支部走访情况：\n· 2027年春节：已走访 1，未走访 0\n还没走访的 2 件")


async def test_the_hardship_register(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert (await service.say(secretary, "困难党员")).startswith("本支部困难党员台账里还没有人。")
    added = await service.say(secretary, "困难党员 王秀英 一般困难 老伴常年卧床，看病花销大")
    assert added == ("已登记到困难党员台账：王秀英：一般困难，老伴常年卧床，看病花销大，2026年11月起。\n"
                     "节日走访会把王秀英算上。回复 困难党员 查看台账。")
    await service.say(secretary, "困难党员 赵德明 特困 独居无收入")
    assert await service.say(secretary, "困难党员") == (
        "本支部困难党员台账（2 人）：\n· 王秀英：一般困难，老伴常年卧床，看病花销大，2026年11月起\n"
        "· 赵德明：特困，独居无收入，2026年11月起\n登记或修改：困难党员 姓名 困难程度 原因\n移出：移出困难党员 姓名")
    assert (await service.say(secretary, "困难党员 王晓 一般 因病")).startswith("本支部党员里没有“王晓”")
    wang_id = await member_id(service, "王秀英")
    async with service.sessions() as session:
        wang = await session.get(Member, wang_id)
        profile = await session.get(CareProfile, wang.id)
    assert wang.hardship and (profile.hardship_level, profile.hardship_reason, profile.hardship_since) == \
        ("一般困难", "老伴常年卧床，看病花销大", date(2026, 11, 24))

    assert await service.say(secretary, "移出困难党员 王秀英") == "已把王秀英移出困难党员台账，以前的走访记录都还在。"
    assert await service.say(secretary, "移出困难党员 王秀英") == "王秀英不在困难党员台账上。"
    assert (await service.say(secretary, "困难党员")).startswith("本支部困难党员台账（1 人）：\n· 赵德明")
    # Questions about hardship are the policy answers', from members and leaders alike.
    for who in ("王秀英", "李建国"):
        answer = await service.say(people[who], "困难党员补助")
        assert "台账" not in answer and "只有书记" not in answer, answer


async def test_a_designated_contact_visits_future_cases(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert await service.say(secretary, "走访联系人 王秀英") == \
        "王秀英还没有走访联系人，有事由书记去。设置请回复：走访联系人 王秀英 联系人姓名"
    assert await service.say(secretary, "走访联系人 王秀英 王秀英") == "走访联系人不能是本人，请换一位党员。"
    assert await service.say(secretary, "走访联系人 王秀英 张卫东") == \
        "好的，以后王秀英的走访由 张卫东 负责。已经在办的走访不变，需要的话回复 改派。"
    replies = await dialog(service, people["刘小梅"], "王秀英住院了", "1")
    assert replies[-1].startswith("已上报：王秀英（生病住院）。\n支部安排 张卫东")
    await service.deliver()
    assert len(care_texts(service, people["张卫东"])) == 1 and care_texts(service, secretary) == []
    # The contact may also record visits nobody reported.
    assert (await service.say(people["张卫东"], "走访")).endswith("\n2 记一次没有上报的走访")
    assert await service.say(secretary, "走访联系人 王秀英 无") == "好的，王秀英不再设走访联系人，以后由书记走访。"
    assert await service.say(people["王秀英"], "走访联系人 王秀英 张卫东") == "这项功能只有书记、副书记可以使用。"


async def test_a_member_hides_their_case_from_the_reporters(service):
    people = await hongqi_branch(service)
    assert (await service.say(people["王秀英"], "不让上报人看")).startswith("现在没有关于您的走访记录。")
    await dialog(service, people["刘小梅"], "上报", "2", "王秀英", "5", "儿子欠了债，家里很难", "跳过")
    assert await service.say(people["王秀英"], "不让上报人看") == \
        "好的，关于您的 1 件走访，上报的人不会再看到详情。以后再有人上报您的情况，需要的话再回复一次。"
    (case,) = await rows(service, CareCase)
    assert case.hidden_from_reporter
    reporter_id = await member_id(service, "刘小梅")
    async with service.sessions() as session:
        reporter = await session.get(Member, reporter_id)
        assert await access_to(session, case, reporter) is Access.NONE
    # A later report still joins, and says nothing of who visits when.
    replies = await dialog(service, people["陈志强"], "上报", "2", "王秀英", "5", "听说家里困难", "跳过")
    assert replies[-1] == "这件事支部已经知道了，会安排上门看望。您说的情况也记下了，谢谢您！"


async def test_help_lists_the_care_commands_by_role(service):
    people = await hongqi_branch(service)
    member_help = await service.say(people["王秀英"], "帮助")
    assert "· 上报" in member_help and "· 走访　" in member_help and "· 不让上报人看" in member_help
    assert "· 改派" not in member_help and "· 困难党员" not in member_help
    leader_help = await service.say(people["李建国"], "帮助")
    for usage in ("· 改派", "· 走访情况", "· 困难党员", "· 走访联系人"):
        assert usage in leader_help
