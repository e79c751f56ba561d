"""Compliance: which required meetings a branch held, and the reminder a week before a period ends."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.clock import ManualClock
from bot.dispatch import JobContext
from handlers.meetings import compliance, router
from handlers.meetings.compliance import check_compliance, check_compliance_for, compliance_reminder, period_of
from harness import hongqi_branch
from storage.members import MemberFields, upsert_member
from storage.models import (
    Attendance,
    CheckInMethod,
    Meeting,
    MeetingKind,
    MeetingStatus,
    MemberCategory,
    OutboxMessage,
    Role,
    WeChatIdentity,
)
from storage.orgs import by_path
from handlers.meetings.settings import MeetingSettings

ZONE = ZoneInfo("Asia/Shanghai")
TOWN = "示范县委/城关镇党委"
HONGQI = f"{TOWN}/红旗村党支部"
DONGFENG = f"{TOWN}/东风村党支部"
CODES = itertools.count(100000)


def settings(**overrides) -> MeetingSettings:
    return MeetingSettings(_env_file=None, **overrides)


def local(year: int, month: int, day: int, hour: int = 9) -> datetime:
    return datetime(year, month, day, hour, tzinfo=ZONE)


async def add_member(session, name: str, path: str, role: Role = Role.MEMBER, openid: str | None = None,
                     subscribed: bool = True):
    member, _ = await upsert_member(session, MemberFields(
        name=name, org_path=path, phone="", role=role, birth_date=date(1960, 1, 1), join_date=date(1990, 7, 1),
        category=MemberCategory.FULL, hardship=False, away_from_home=False), now=datetime.now(timezone.utc))
    if openid:
        session.add(WeChatIdentity(openid=openid, member_id=member.id, subscribed=subscribed,
                                   first_seen_at=datetime.now(timezone.utc)))
        await session.flush()
    return member


async def add_meeting(session, branch_path: str, kind: MeetingKind, starts_at: datetime, attendees: list,
                      *, group_path: str | None = None, status: MeetingStatus = MeetingStatus.SCHEDULED):
    branch = await by_path(session, branch_path)
    group = await by_path(session, group_path) if group_path else None
    caller = attendees[0] if attendees else await add_member(session, "召集人", branch_path, Role.SECRETARY)
    meeting = Meeting(org_id=branch.id, group_id=group.id if group else None, kind=kind.value, topic="学习",
                      place="村委会", starts_at=starts_at, status=status.value, called_by=caller.id,
                      checkin_code=str(next(CODES)), created_at=starts_at, updated_at=starts_at)
    session.add(meeting)
    await session.flush()
    for person in attendees:
        session.add(Attendance(meeting_id=meeting.id, member_id=person.id, checked_in_at=starts_at,
                               method=CheckInMethod.CODE.value))
    await session.flush()
    return meeting


async def hongqi(session) -> dict:
    """红旗村党支部: a secretary and a deputy (bound), a committee member, two party groups."""
    people = {
        "secretary": await add_member(session, "李建国", HONGQI, Role.SECRETARY, openid="hq-secretary"),
        "deputy": await add_member(session, "孙红", HONGQI, Role.DEPUTY_SECRETARY, openid="hq-deputy"),
        "committee": await add_member(session, "张卫东", HONGQI + "/第一党小组", Role.COMMITTEE_MEMBER, openid="hq-c"),
        "one": await add_member(session, "王秀英", HONGQI + "/第一党小组", openid="hq-one"),
        "two": await add_member(session, "刘小梅", HONGQI + "/第二党小组", openid="hq-two"),
    }
    return people


async def hold_everything(session, people, *, skip: tuple = ()) -> None:
    """Every required meeting of Q4 2026 up to 24 November, and the yearly ones, but those in skip."""
    everyone = list(people.values())
    committee = [people["secretary"], people["deputy"], people["committee"]]
    if MeetingKind.GENERAL not in skip:
        await add_meeting(session, HONGQI, MeetingKind.GENERAL, local(2026, 10, 15), everyone)
    await add_meeting(session, HONGQI, MeetingKind.COMMITTEE, local(2026, 11, 3), committee)
    await add_meeting(session, HONGQI, MeetingKind.GROUP, local(2026, 11, 5), [people["one"]],
                      group_path=HONGQI + "/第一党小组")
    await add_meeting(session, HONGQI, MeetingKind.GROUP, local(2026, 11, 6), [people["two"]],
                      group_path=HONGQI + "/第二党小组")
    await add_meeting(session, HONGQI, MeetingKind.LECTURE, local(2026, 11, 10), everyone)
    await add_meeting(session, HONGQI, MeetingKind.THEME_DAY, local(2026, 11, 1), everyone)
    await add_meeting(session, HONGQI, MeetingKind.LIFE, local(2026, 11, 20), everyone)
    await add_meeting(session, HONGQI, MeetingKind.REVIEW, local(2026, 11, 20, 14), everyone)


def by_title(report) -> dict:
    return {requirement.title: requirement for requirement in report.requirements}


def test_the_job_is_declared_on_the_meetings_router():
    spec = next(job for job in router.jobs if job.name == "meetings.compliance_reminder")
    assert spec.func is compliance_reminder
    assert spec.trigger == "cron" and spec.trigger_args == {"hour": 9, "minute": 0}


def test_periods():
    assert period_of(date(2026, 11, 24), 1).label == "2026年11月"
    quarter = period_of(date(2026, 11, 24), 3)
    assert (quarter.label, quarter.key, quarter.start, quarter.end) == (
        "2026年第4季度", "2026-Q4", date(2026, 10, 1), date(2027, 1, 1))
    assert period_of(date(2026, 2, 1), 12).label == "2026年"
    assert period_of(date(2026, 8, 1), 6).label == "2026年下半年"
    assert period_of(date(2026, 8, 1), 4).label == "2026年5—8月"


async def test_a_branch_that_held_everything(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        await hold_everything(session, people)
        branch = await by_path(session, HONGQI)
        report = await check_compliance(session, branch, today=date(2026, 11, 24), settings=settings())
    assert report.complete and report.missing == []
    titles = by_title(report)
    assert set(titles) == {"支部党员大会", "支委会", "党小组会（第一党小组）", "党小组会（第二党小组）", "党课", "主题党日",
                           "组织生活会", "民主评议党员"}
    assert titles["支部党员大会"].period.label == "2026年第4季度"
    assert titles["支部党员大会"].held == [date(2026, 10, 15)]
    assert titles["支委会"].period.label == "2026年11月"
    assert titles["组织生活会"].period.label == "2026年"
    assert titles["党课"].local_rule and "本地" in titles["党课"].frequency


async def test_a_branch_that_missed_its_quarterly_general_meeting(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        await hold_everything(session, people, skip=(MeetingKind.GENERAL,))
        everyone = list(people.values())
        # Q3's general meeting does not count for Q4; a cancelled one and one nobody signed do not count.
        await add_meeting(session, HONGQI, MeetingKind.GENERAL, local(2026, 9, 30, 20), everyone)
        await add_meeting(session, HONGQI, MeetingKind.GENERAL, local(2026, 11, 12), everyone,
                          status=MeetingStatus.CANCELLED)
        await add_meeting(session, HONGQI, MeetingKind.GENERAL, local(2026, 11, 19), [])
        # Another branch's general meeting is not Hongqi's.
        await add_member(session, "周海", DONGFENG, Role.SECRETARY)
        dongfeng_people = [await add_member(session, "吴芳", DONGFENG)]
        await add_meeting(session, DONGFENG, MeetingKind.GENERAL, local(2026, 11, 2), dongfeng_people)
        branch = await by_path(session, HONGQI)
        report = await check_compliance(session, branch, today=date(2026, 11, 24), settings=settings())
    assert [(item.title, item.period.label) for item in report.missing] == [("支部党员大会", "2026年第4季度")]
    assert not report.complete


async def test_general_meeting_on_the_last_evening_of_a_quarter_counts_in_local_time(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        # 30 September 20:00 in Shanghai is 12:00 UTC; 1 October 01:00 local is still 30 September in UTC.
        await add_meeting(session, HONGQI, MeetingKind.GENERAL, local(2026, 9, 30, 20), [people["one"]])
        await add_meeting(session, HONGQI, MeetingKind.GENERAL, local(2026, 10, 1, 1), [people["one"]])
        branch = await by_path(session, HONGQI)
        q3 = await check_compliance_for(session, branch, year=2026, quarter=3, settings=settings())
        q4 = await check_compliance(session, branch, today=date(2026, 10, 2), settings=settings())
    assert by_title(q3)["支部党员大会"].held == [date(2026, 9, 30)]
    assert by_title(q4)["支部党员大会"].held == [date(2026, 10, 1)]


async def test_group_meetings_are_required_of_each_group(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        await add_meeting(session, HONGQI, MeetingKind.GROUP, local(2026, 11, 5), [people["one"]],
                          group_path=HONGQI + "/第一党小组")
        branch = await by_path(session, HONGQI)
        report = await check_compliance(session, branch, today=date(2026, 11, 24), settings=settings())
        titles = by_title(report)
        assert titles["党小组会（第一党小组）"].held == [date(2026, 11, 5)]
        assert titles["党小组会（第二党小组）"].missing

        # A branch without groups has no group meetings to hold, and without a committee no 支委会.
        await add_member(session, "周海", DONGFENG, Role.SECRETARY)
        dongfeng = await by_path(session, DONGFENG)
        small = by_title(await check_compliance(session, dongfeng, today=date(2026, 11, 24), settings=settings()))
    assert not any(title.startswith("党小组会") for title in small)
    assert "支委会" not in small and "支部党员大会" in small


async def test_lecture_frequency_is_a_local_rule(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        # One lecture, in March.
        await add_meeting(session, HONGQI, MeetingKind.LECTURE, local(2026, 3, 10), [people["one"]])
        branch = await by_path(session, HONGQI)
        quarterly = by_title(await check_compliance(session, branch, today=date(2026, 11, 24), settings=settings()))
        yearly = by_title(await check_compliance(session, branch, today=date(2026, 11, 24),
                                                 settings=settings(lecture_per_year=1)))
        monthly = by_title(await check_compliance(session, branch, today=date(2026, 3, 24),
                                                  settings=settings(lecture_per_year=12)))
        whole_year = await check_compliance_for(session, branch, year=2026, settings=settings())
    # The default (a common local rule): once a quarter, so Q4 is missing it.
    assert quarterly["党课"].missing and quarterly["党课"].period.label == "2026年第4季度"
    assert quarterly["党课"].local_rule
    # The 条例's own minimum: once a year, held in March.
    assert yearly["党课"].held == [date(2026, 3, 10)] and not yearly["党课"].local_rule
    assert yearly["党课"].period.label == "2026年"
    assert monthly["党课"].held == [date(2026, 3, 10)]
    lectures = [item for item in whole_year.requirements if item.kind == MeetingKind.LECTURE]
    assert [(item.period.label, bool(item.held)) for item in lectures] == [
        ("2026年第1季度", True), ("2026年第2季度", False), ("2026年第3季度", False), ("2026年第4季度", False)]


def test_lecture_rule_must_divide_the_year():
    with pytest.raises(ValueError):
        settings(lecture_per_year=5)
    assert settings(lecture_per_year=6).lecture_per_year == 6


async def test_a_past_period(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        await add_meeting(session, HONGQI, MeetingKind.COMMITTEE, local(2026, 7, 3), [people["secretary"]])
        await add_meeting(session, HONGQI, MeetingKind.COMMITTEE, local(2026, 9, 3), [people["secretary"]])
        branch = await by_path(session, HONGQI)
        quarter = await check_compliance_for(session, branch, year=2026, quarter=3, settings=settings())
        month = await check_compliance_for(session, branch, year=2026, month=8, settings=settings())
    committee = [(item.period.label, item.held) for item in quarter.requirements if item.kind == MeetingKind.COMMITTEE]
    assert committee == [("2026年7月", [date(2026, 7, 3)]), ("2026年8月", []), ("2026年9月", [date(2026, 9, 3)])]
    assert (quarter.start, quarter.end) == (date(2026, 7, 1), date(2026, 10, 1))
    assert "支部党员大会" in {item.kind.value for item in quarter.requirements}
    assert {item.period.label for item in month.requirements} == {"2026年8月"}
    assert "组织生活会" not in {item.kind.value for item in month.requirements}


# ---------------------------------------------------------------- the reminder job


def job_at(sessions, moment: datetime, **overrides) -> JobContext:
    clock = ManualClock(moment.astimezone(timezone.utc))
    return JobContext(sessions=sessions, clock=clock, settings=settings(**overrides))


async def outbox_rows(sessions) -> list[OutboxMessage]:
    async with sessions() as session:
        return list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def test_the_reminder_goes_once_to_the_branch_secretaries_only_when_something_is_missing(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        # Everything but the general meeting and the 党课 of Q4, and the second group's meeting.
        everyone = list(people.values())
        await add_meeting(session, HONGQI, MeetingKind.COMMITTEE, local(2026, 12, 3), [people["secretary"]])
        await add_meeting(session, HONGQI, MeetingKind.GROUP, local(2026, 12, 5), [people["one"]],
                          group_path=HONGQI + "/第一党小组")
        await add_meeting(session, HONGQI, MeetingKind.THEME_DAY, local(2026, 12, 1), everyone)
        await add_meeting(session, HONGQI, MeetingKind.LIFE, local(2026, 12, 10), everyone)
        await add_meeting(session, HONGQI, MeetingKind.REVIEW, local(2026, 12, 10, 14), everyone)
        # 东风村 held everything it must (no committee, no groups)...
        dongfeng_secretary = await add_member(session, "周海", DONGFENG, Role.SECRETARY, openid="df-secretary")
        for kind in (MeetingKind.GENERAL, MeetingKind.LECTURE, MeetingKind.THEME_DAY, MeetingKind.LIFE,
                     MeetingKind.REVIEW):
            await add_meeting(session, DONGFENG, kind, local(2026, 12, 2), [dongfeng_secretary])
        # ...and a third branch misses things but its secretary never bound a WeChat.
        await add_member(session, "郑强", f"{TOWN}/光明村党支部", Role.SECRETARY)
        # A member who unfollowed is not a reachable secretary.
        await add_member(session, "钱进", HONGQI, Role.DEPUTY_SECRETARY, openid="hq-gone", subscribed=False)

    # Not a week before a period ends: nothing.
    assert await compliance_reminder(job_at(sessions, local(2026, 12, 23))) == 0
    assert await outbox_rows(sessions) == []

    # 24 December: seven days before the month, the quarter and the year end.
    assert await compliance_reminder(job_at(sessions, local(2026, 12, 24))) == 2
    rows = await outbox_rows(sessions)
    assert sorted(row.openid for row in rows) == ["hq-deputy", "hq-secretary"]
    text = rows[0].text
    assert rows[0].text == rows[1].text
    assert text.startswith("【会议提醒】红旗村党支部：2026年第4季度还有 7 天结束")
    assert "· 支部党员大会（2026年第4季度）" in text
    assert "· 党小组会（第二党小组）（2026年12月）" in text
    assert "党课（2026年第4季度；本地要求每年 4 次，条例要求每年至少 1 次）" in text
    for held in ("支委会", "第一党小组", "主题党日", "组织生活会", "民主评议党员"):
        assert held not in text
    assert "东风" not in text and "排名" not in text
    assert {row.ref for row in rows} == {f"compliance:{people['secretary'].org_id}:2026-12"}

    # A second run (a retry, another process) sends nothing more.
    assert await compliance_reminder(job_at(sessions, local(2026, 12, 24, 15))) == 0
    assert len(await outbox_rows(sessions)) == 2


async def test_month_end_reminder_lists_only_the_monthly_meetings(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        await add_meeting(session, HONGQI, MeetingKind.COMMITTEE, local(2026, 11, 3), [people["secretary"]])
    # November has 30 days: the 23rd is a week before it ends. The quarter's general meeting is not due yet.
    assert await compliance_reminder(job_at(sessions, local(2026, 11, 23))) == 2
    text = (await outbox_rows(sessions))[0].text
    assert text.startswith("【会议提醒】红旗村党支部：2026年11月还有 7 天结束")
    assert "党小组会（第一党小组）（2026年11月）" in text and "主题党日（2026年11月）" in text
    assert "支委会" not in text and "支部党员大会" not in text and "组织生活会" not in text


async def test_nothing_is_sent_when_nothing_is_missing(sessions):
    async with sessions() as session, session.begin():
        people = await hongqi(session)
        await hold_everything(session, people)
    assert await compliance_reminder(job_at(sessions, local(2026, 11, 23))) == 0
    assert await outbox_rows(sessions) == []


async def test_the_reminder_reaches_the_secretary_through_the_service(service):
    await service.bind("hq-secretary", "李建国", role=Role.SECRETARY)
    await service.bind("hq-member", "王秀英")
    service.clock._now = local(2026, 11, 23).astimezone(timezone.utc)
    job = service.job_context(MeetingSettings)
    assert await compliance.compliance_reminder(job) == 1
    await service.deliver()
    pushed = service.pushed("hq-secretary")
    assert pushed and pushed[-1].startswith("【会议提醒】红旗村党支部：2026年11月还有 7 天结束")
    assert not any("会议提醒" in text for text in service.pushed("hq-member"))
    # Moving on a day changes nothing: the reminder is for the seventh day before the end only.
    service.clock.advance(days=1)
    assert await compliance.compliance_reminder(job) == 0


async def test_a_secretary_asks_which_required_meetings_this_branch_has_held(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert (await service.say(people["王秀英"], "会议达标")).startswith("这项功能只有书记、副书记")
    for reply in ("开会", "1", "明天下午3点", "村委会", "学习党的二十届四中全会精神", "1"):
        await service.say(secretary, reply)
    service.clock._now = local(2026, 11, 25, 15).astimezone(timezone.utc)
    assert "已为 王秀英 代签（15:00）" in await service.say(secretary, "代签 王秀英")
    status = await service.say(secretary, "会议达标")
    lines = status.splitlines()
    assert lines[0] == "【会议情况】红旗村党支部，截至11月25日："
    assert "✓ 支部党员大会（2026年第4季度，每季度一次）：11月25日" in lines
    assert "· 主题党日（2026年11月，每月一次）：还没有签到记录" in lines
    assert "· 组织生活会（2026年，每年一次）：还没有签到记录" in lines
    assert lines[-1].startswith("只算在助手里有人签到的会")
    assert not any(other in status for other in ("东风村", "排名", "第一名"))  # this branch only, no ranking
