"""Care's sweep with the clock moved on: festival campaigns open on the lunar calendar's dates for the right
members, a case past its deadline reminds its visitor once and reaches the township once a day later, and the
secretaries' daily list goes out only when it has something new — nobody hears twice a day about one case."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import re

import pytest
from aiohttp import ClientSession
from sqlalchemy import func, select

from handlers.care import jobs
from handlers.care.service import open_case
from handlers.care.settings import CareSettings
from harness import DONGFENG, HONGQI, TOWN, hongqi_branch
from storage.models import CareCase, CareProfile, CareSource, Member, Organization, Role

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(service, year: int, month: int, day: int, hour: int, minute: int = 0) -> None:
    service.clock.set(datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(timezone.utc))


async def sweep(service) -> dict[str, int]:
    done = await jobs.sweep(service.job_context(CareSettings))
    await service.deliver()
    return done


async def cases(service, **where) -> list[CareCase]:
    async with service.sessions() as session:
        query = select(CareCase).order_by(CareCase.id)
        for name, value in where.items():
            query = query.where(getattr(CareCase, name) == value)
        return list((await session.execute(query)).scalars())


@pytest.fixture
async def service(make_service):
    # Weeks pass in these tests: outside the 48-hour window, messages go as template messages.
    return await make_service(wechat_templates={"default": "CARE-TEMPLATE"})


def care_pushes(service, openid: str) -> list[str]:
    """What the member got from care: a chat message's text, or a template message's title, content and
    whether it links to a page."""
    texts = [text for text in service.pushed(openid) if text.startswith("【") and "走访" in text[:8]]
    for body in service.emulator.api.templates(openid):
        fields = {name: value["value"] for name, value in body["data"].items()}
        if "走访" in fields.get("title", ""):
            texts.append(f"【{fields['title']}】{fields.get('content', '')}" + (" 链接" if body.get("url") else ""))
    return texts


async def report(service, subject_name: str, occasion: str, *, reporter_name: str = "王秀英") -> CareCase:
    """A case as a member's report opens it (the chat dialog calls the same service function)."""
    async with service.sessions() as session, session.begin():
        subject = (await session.execute(select(Member).where(Member.name == subject_name))).scalar_one()
        reporter = (await session.execute(select(Member).where(Member.name == reporter_name))).scalar_one()
        branch = await session.get(Organization, subject.org_id)
        opened = await open_case(session, branch=branch, subject=subject, subject_name=subject.name, occasion=occasion,
                                 details="他昨天摔了一跤，住进了镇卫生院。", reporter=reporter, source=CareSource.REPORT,
                                 now=service.clock.now(), settings=service.config(CareSettings))
        return opened.case


async def test_the_spring_festival_campaign_opens_on_the_lunar_date_for_the_hardship_register(service):
    people = await hongqi_branch(service)
    await service.add_member("孙福贵", HONGQI, hardship=True, birth_date=date(1958, 5, 1))
    await service.add_member("周玉兰", DONGFENG, hardship=True)
    await service.bind("df-sec", "吴国庆", org_path=DONGFENG, role=Role.SECRETARY, phone="13900000009")

    # 春节 2027 is 6 February (lunar 1/1); cases open 10 days ahead, on 27 January, not before.
    at(service, 2027, 1, 26, 9)
    assert (await sweep(service))["campaign_cases"] == 0
    at(service, 2027, 1, 27, 9)
    assert (await sweep(service))["campaign_cases"] == 2
    opened = await cases(service, campaign="春节:2027")
    assert sorted(case.subject_name for case in opened) == ["周玉兰", "孙福贵"]
    due = opened[0].deadline.astimezone(SHANGHAI)
    assert (due.date(), due.hour) == (date(2027, 2, 5), 20)  # visited before the festival: due on its eve
    # Each branch's secretary hears once, in one message naming their members.
    # Weeks after they last wrote: a template message, its link opening the case.
    assert care_pushes(service, people["李建国"]) == ["【2027年春节走访】1位：孙福贵 链接"]
    assert care_pushes(service, "df-sec") == ["【2027年春节走访】1位：周玉兰 链接"]

    # The sweep runs every 15 minutes: nothing opens or is sent twice.
    service.clock.advance(minutes=15)
    assert (await sweep(service))["campaign_cases"] == 0
    assert len(care_pushes(service, people["李建国"])) == 1


async def test_chongyang_visits_members_aged_seventy_and_july_first_the_fifty_year_members(service):
    await hongqi_branch(service)  # 王秀英 born 1949, 赵德明 1941, the others 1960
    await service.add_member("钱老", HONGQI, birth_date=date(1956, 10, 19), join_date=date(1976, 7, 1))
    member_id, _ = await service.add_member("郑干部", HONGQI, birth_date=date(1962, 1, 1), join_date=date(1985, 1, 1))
    async with service.sessions() as session, session.begin():
        session.add(CareProfile(member_id=member_id, old_cadre=True, updated_at=service.clock.now()))

    # 重阳 2026 is 18 October (lunar 9/9).
    at(service, 2026, 10, 8, 9)
    assert (await sweep(service))["campaign_cases"] == 2
    assert sorted(case.subject_name for case in await cases(service, campaign="重阳:2026")) == ["王秀英", "赵德明"]
    # 钱老 turns 70 on 19 October, the day after the festival: not yet.

    # 七一 2027: 50 years in the party (the 光荣在党50年 medal) and old cadres. The fixture's members joined in 1990.
    at(service, 2027, 6, 25, 9)
    await sweep(service)
    assert sorted(case.subject_name for case in await cases(service, campaign="七一:2027")) == ["郑干部", "钱老"]
    assert len(await cases(service, campaign="元旦:2027")) == 0  # 元旦 visits only the register, which is empty


async def test_an_overdue_case_reminds_its_visitor_once_then_reaches_the_township_once(service):
    people = await hongqi_branch(service)
    await service.bind("town-1", "林组织员", org_path=TOWN, role=Role.STAFF, phone="13700000001")
    await service.bind("county-1", "县组织员", org_path="示范县委", role=Role.STAFF, phone="13700000002")
    at(service, 2026, 12, 2, 10)
    case = await report(service, "赵德明", "生病住院")  # due in 48 hours, visited by the secretary
    await service.deliver()
    assert len(care_pushes(service, people["李建国"])) == 1  # told at once

    at(service, 2026, 12, 4, 9, 45)  # 47h45m: not yet due
    assert (await sweep(service))["reminded"] == 0
    at(service, 2026, 12, 4, 10, 15)
    assert (await sweep(service))["reminded"] == 1
    reminders = [text for text in care_pushes(service, people["李建国"]) if text.startswith("【走访提醒】")]
    assert reminders == ["【走访提醒】已过期限：赵德明（生病住院） 链接"]
    for _ in range(4):  # an hour of sweeps: nothing more
        service.clock.advance(minutes=15)
        done = await sweep(service)
        assert done["reminded"] == done["escalated"] == 0
    assert care_pushes(service, "town-1") == []

    # A day after the reminder: the township's staff, once; the county's staff are not the nearest.
    at(service, 2026, 12, 5, 10, 15)
    assert (await sweep(service))["escalated"] == 1
    [escalated] = care_pushes(service, "town-1")
    assert "红旗村党支部" in escalated and "赵德明（生病住院）" in escalated
    assert "摔了一跤" not in escalated  # the report's words stay with those who may read the case
    assert care_pushes(service, "county-1") == []
    service.clock.advance(hours=3)
    assert (await sweep(service))["escalated"] == 0
    assert len(care_pushes(service, "town-1")) == 1
    assert (await cases(service, id=case.id))[0].escalated_at is not None


async def test_reminders_respect_the_mute_but_escalation_to_staff_does_not(service):
    people = await hongqi_branch(service)
    await service.bind("town-1", "林组织员", org_path=TOWN, role=Role.STAFF, phone="13700000001")
    assert "已关闭" in await service.say(people["李建国"], "关闭提醒")
    assert "已关闭" in await service.say("town-1", "关闭提醒")
    at(service, 2026, 12, 2, 10)
    await report(service, "赵德明", "灾害事故")  # due in 24 hours
    at(service, 2026, 12, 3, 10, 30)
    assert (await sweep(service))["reminded"] == 1
    assert [text for text in care_pushes(service, people["李建国"]) if "走访提醒" in text] == []
    at(service, 2026, 12, 4, 10, 30)
    assert (await sweep(service))["escalated"] == 1
    assert len(care_pushes(service, "town-1")) == 1  # not a reminder: the mute does not hold it


async def test_the_daily_list_goes_out_once_a_day_only_with_something_new_in_it(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]

    at(service, 2026, 12, 2, 8, 45)
    await sweep(service)
    assert care_pushes(service, secretary) == []  # nothing open: no list

    at(service, 2026, 12, 2, 9, 0)
    await report(service, "赵德明", "生活困难")  # due in 7 days; the secretary is told at once
    await service.deliver()
    service.clock.advance(minutes=15)
    await sweep(service)
    assert len(care_pushes(service, secretary)) == 1  # the list leaves out what they heard today

    at(service, 2026, 12, 3, 8, 15)  # before 08:30: no list yet
    await sweep(service)
    assert len(care_pushes(service, secretary)) == 1
    at(service, 2026, 12, 3, 8, 30)
    await sweep(service)
    daily = [text for text in care_pushes(service, secretary) if text.startswith("【每日走访】")]
    assert daily == ["【每日走访】1件：赵德明 链接"]
    # The list's link opens the secretary's open cases, each linking to its page.
    [body] = [body for body in service.emulator.api.templates(secretary) if "每日走访" in str(body["data"])]
    async with ClientSession() as client:
        async with client.get(body["url"]) as response:
            listing = await response.text()
            assert response.status == 200 and "赵德明" in listing and "生活困难" in listing
        case_link = re.search(r'href="(/m/[^"]+)"', listing).group(1)
        async with client.get(service.url.rstrip("/") + case_link) as response:
            assert response.status == 200 and "走访：赵德明（生活困难）" in await response.text()
    at(service, 2026, 12, 3, 17, 0)
    await sweep(service)
    assert len([text for text in care_pushes(service, secretary) if text.startswith("【每日走访】")]) == 1

    async with service.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CareCase)) == 1
