"""The care pages in Debian's Chromium: the visitor opens the case from the template message on a phone and records
the visit; a township's 组织员 finds the case list and the chart in the console, at a desktop's and a phone's
size. The people and cases are test_care_pages.py's."""

from __future__ import annotations

import re
from datetime import date, timedelta

from playwright.async_api import expect
from sqlalchemy import select

from handlers.care import service as care
from handlers.care.festivals import Campaign
from handlers.care.settings import CareSettings
from handlers.console.common import SCAN_CONFIRMED
from harness import DONGFENG, HONGQI
from storage.models import CareCase, CareProfile, CareSource, CareVisit
from storage.orgs import by_path
from test_care_pages import REPORT, care_service, member, pushed_link

SCENE = re.compile(r"/扫码 (login:[A-Za-z0-9_-]+)")


async def test_the_visitor_opens_the_case_from_the_message_and_records_the_visit(make_service, phone, desktop):
    service, people, ids = await care_service(make_service)
    link = pushed_link(service, people["李建国"], ids["case"])

    assert (await phone.open(link)).status == 200
    main = phone.page.locator("main")
    shown = await main.inner_text()
    assert "走访：王秀英（生病住院）" in shown and REPORT in shown and "待走访" in shown, shown
    # The day is today's, and the visitor's own name is filled in; the rest is typed.
    await expect(phone.page.locator("input[name=day]")).to_have_value("2026-11-26")
    await expect(phone.page.locator("input[name=visitors]")).to_have_value("李建国")
    await phone.page.locator("input[name=visitors]").fill("李建国、张卫东")
    await phone.page.locator("textarea[name=notes]").fill("了解了病情，转达了支部的关心，嘱咐好好养病。")
    await phone.page.locator("input[name=given]").fill("慰问金、牛奶一箱")
    await phone.page.locator("input[name=amount]").fill("500元")
    await phone.page.locator("input[name=fund]").fill("党费")
    assert await phone.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await phone.shot("case-form", docs="care-case")

    await phone.page.get_by_role("button", name="记下走访").click()
    await expect(main.locator(".status.done")).to_contain_text("已走访（2026年11月26日）")
    shown = await main.inner_text()
    assert "500元" in shown and "嘱咐好好养病" in shown and "李建国、张卫东" in shown, shown
    await expect(phone.page.get_by_role("button", name="记下走访")).to_have_count(0)
    await phone.shot("visited", docs="care-visited")
    async with service.sessions() as session:
        case = await session.get(CareCase, ids["case"])
        visits = list((await session.execute(select(CareVisit))).scalars())
    assert case.status == "closed" and [visit.amount_fen for visit in visits] == [50000]

    # The same link on a desktop shows the visit, no form.
    assert (await desktop.open(link)).status == 200
    assert "嘱咐好好养病" in await desktop.page.locator("main").inner_text()
    assert await desktop.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await desktop.shot("visited")
    assert phone.outside(service.url) == [] and desktop.outside(service.url) == []


async def test_a_township_finds_the_cases_and_the_chart(make_service, desktop):
    await _console(make_service, desktop)


async def test_the_care_console_at_a_phones_size(make_service, phone):
    await _console(make_service, phone)


# (months before today, villagers helped: (name, visited)) in the two branches of 城关镇.
HISTORY = [(6, [("孙桂兰", True)]), (5, [("周老汉", True), ("钱二婶", True)]), (4, [("吴大娘", True)]),
           (3, [("郑大爷", True), ("冯婆婆", True), ("陈老三", False)]), (2, [("褚阿婆", True), ("卫大叔", True)]),
           (1, [("蒋奶奶", True), ("沈大爷", False)])]


async def history(service) -> None:
    """Half a year of care before today: villagers' hardship visits opened month by month in 红旗村 and 东风村,
    most of them made; 王秀英 on the hardship register; and this year's 重阳 (18 October), which opened cases
    for 王秀英 and 赵德明 (over 70): 王秀英 was visited, 赵德明 was not."""
    settings = service.config(CareSettings)
    now = service.clock.now()
    async with service.sessions() as session, session.begin():
        branches = [await by_path(session, HONGQI), await by_path(session, DONGFENG)]
        secretary = await member(session, "李建国")
        for months_ago, villagers in HISTORY:
            for index, (name, visited) in enumerate(villagers):
                opened_at = now - timedelta(days=30 * months_ago - 3 * index)
                opened = await care.open_case(session, branch=branches[index % 2], subject=None, subject_name=name,
                                              occasion="生活困难", details="", reporter=secretary,
                                              source=CareSource.SECRETARY, now=opened_at, settings=settings,
                                              notify=False)
                if visited:
                    await care.record_visit(session, opened.case, care.VisitFields(
                        visited_at=opened_at + timedelta(days=2), visitors="李建国", given="米和油", amount="200元",
                        fund="党费"), by=secretary, now=opened_at + timedelta(days=2), settings=settings)
        festival = next(festival for festival in settings.care_festivals if festival.name == "重阳")
        campaign = Campaign(festival, date(2026, 10, 18))
        await care.open_campaign(session, branches[0], campaign, now=now - timedelta(days=48), settings=settings)
        wang = await member(session, "王秀英")
        wang.hardship = True
        session.add(CareProfile(member_id=wang.id, hardship_level="比较困难", hardship_reason="独居，常年慢性病，子女在外打工",
                                hardship_since=date(2024, 3, 1), updated_by=secretary.id, updated_at=now))
        case = (await session.execute(select(CareCase).where(CareCase.campaign == campaign.key,
                                                             CareCase.member_id == wang.id))).scalar_one()
        await care.record_visit(session, case, care.VisitFields(
            visited_at=now - timedelta(days=40), visitors="李建国、孙红", given="重阳糕、牛奶", amount="300元",
            fund="上级拨付慰问金"), by=secretary, now=now - timedelta(days=40), settings=settings)


async def _console(make_service, screen) -> None:
    service, people, ids = await care_service(make_service, villager="孙桂芳")
    await history(service)
    base = service.url.rstrip("/")
    assert (await screen.open(base + "/console/care")).status == 200  # the sign-in page, after a 303
    scene = SCENE.search(await screen.page.locator("main").inner_text()).group(1)
    assert (await service.emulator.scan("town-1", scene)).reply == SCAN_CONFIRMED
    await screen.refresh_to(base + "/console/login?wait=1", arrives_at=base + "/console/care")
    screen.requests.clear()  # the sign-in page showed WeChat's QR image; nothing else comes from elsewhere
    assert screen.page.url == base + "/console/care"

    main = screen.page.locator("main")
    shown = " ".join((await main.inner_text()).split())
    assert "未走访 5 件（其中已逾期 3 件），已走访 10 件" in shown, shown
    assert "2026年重阳" in shown
    chart = screen.page.locator("svg[role=img]")
    await expect(chart).to_have_count(1)
    assert "城关镇党委 每月开单与走访" in await chart.locator("title").first.text_content()
    assert await screen.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screen.shot("care", docs="console-care")

    await screen.page.locator("nav.periods").get_by_role("link", name="走访件").click()
    await screen.page.wait_for_load_state("load")
    rows = screen.page.locator("tr[data-case]")
    await expect(rows).to_have_count(15)
    await screen.shot("cases")
    await screen.page.get_by_role("link", name="王秀英").first.click()
    await screen.page.wait_for_load_state("load")
    shown = await main.inner_text()
    assert REPORT in shown and "刘小梅" in shown and "还没有走访记录" in shown, shown
    await screen.shot("case")

    await screen.page.locator("nav.periods").get_by_role("link", name="困难党员台账").click()
    await screen.page.wait_for_load_state("load")
    entry = screen.page.locator('tr[data-member="王秀英"]')
    assert "比较困难" in await entry.inner_text() and "重阳糕" in await entry.inner_text()
    await screen.shot("register")
    assert screen.outside(service.url) == []
