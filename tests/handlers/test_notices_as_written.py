"""Notices keep what the sender wrote, and only someone still allowed to send can finish sending one."""

from __future__ import annotations

from sqlalchemy import update

from harness import DONGFENG, HONGQI, hongqi_branch
from storage.models import Member, Role
from storage.orgs import by_path

# Line breaks, a full-width colon and comma, an ellipsis and a full stop at the end: what a secretary
# types on a phone, and what the normalized form used for matching commands would lose.
NOTICE = "各位党员：\n本周六上午9点，在村委会门口集合打扫卫生……\n请带上扫帚。"


async def test_a_multi_line_notice_reaches_members_exactly_as_written(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await service.say(secretary, "发通知")
    await service.say(secretary, NOTICE)
    preview = await service.say(secretary, "1")
    assert f"——\n{NOTICE}\n——" in preview
    assert (await service.say(secretary, "1")).startswith("通知已发出，共 5 人。")
    await service.deliver()
    assert service.pushed(people["王秀英"])[-1] == f"【红旗村党支部通知】\n{NOTICE}\n——李建国\n看过后请回复 收到。"

    # The report and the acknowledgement quote its start on one line, punctuation as written.
    quoted = "各位党员： 本周六上午9点，在村委会…"
    assert await service.say(people["王秀英"], "收到") == f"已确认收到：“{quoted}”。谢谢！"
    report = await service.say(secretary, "通知情况")
    assert report.startswith(f"通知“{quoted}”（")



async def test_the_length_limit_counts_the_notice_as_written(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await service.say(secretary, "发通知")
    assert await service.say(secretary, "通" * 1500 + "。") == "通知太长了（最多 1500 字），请删减后重新发送。"
    assert (await service.say(secretary, "通" * 1499 + "。")).startswith("发给谁？")


async def test_a_sender_whose_role_was_taken_away_cannot_finish_the_notice(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    await service.say(secretary, "发通知")
    await service.say(secretary, "明天上午开会")
    assert "共 5 人" in await service.say(secretary, "1")
    # Meanwhile the township re-imports the roster: 李建国 is no longer secretary.
    await service.add_member("李建国", HONGQI, role=Role.MEMBER, phone="13800000001")
    assert await service.say(secretary, "1") == "您的职务或所在组织已经变了，现在不能再发这条通知，已取消。"
    await service.deliver()
    assert not any("明天上午开会" in text for name in people for text in service.pushed(people[name]))
    # The dialog is over: another 1 is no confirmation, and the report is no longer theirs either.
    assert (await service.say(secretary, "1")).startswith("没有听懂")
    assert (await service.say(secretary, "通知情况")).startswith("这项功能只有")


async def test_a_sender_moved_to_another_branch_cannot_send_to_the_old_one(service):
    people = await hongqi_branch(service)
    await service.add_member("孙大海", DONGFENG)
    secretary = people["李建国"]
    await service.say(secretary, "发通知")
    await service.say(secretary, "交党费")
    await service.say(secretary, "3")  # a party group of 红旗村
    assert "发给第一党小组，共 3 人" in await service.say(secretary, "1")
    # Moved to 东风村 as its secretary (in the database: a roster import would add a new member instead).
    async with service.sessions() as session, session.begin():
        dongfeng = await by_path(session, DONGFENG)
        await session.execute(update(Member).where(Member.name == "李建国").values(org_id=dongfeng.id, group_id=None))
    assert await service.say(secretary, "2") == "您的职务或所在组织已经变了，现在不能再发这条通知，已取消。"
    await service.deliver()
    assert not any("交党费" in text for name in people for text in service.pushed(people[name]))
