"""The meetings feature's console pages in Debian's Chromium at a desktop's and a phone's size: sign in by a scan (through
the emulator), find the branch marked 缺 on the overview, open one of its meetings."""

from __future__ import annotations

import re

from handlers.console.common import SCAN_CONFIRMED
from test_console_pages import county_service

SCENE = re.compile(r"/扫码 (login:[A-Za-z0-9_-]+)")


async def test_a_township_finds_the_missed_meeting_and_opens_a_meeting(make_service, desktop):
    await _walk(make_service, desktop)


async def test_the_same_at_a_phones_size(make_service, phone):
    await _walk(make_service, phone)


async def _walk(make_service, desktop) -> None:
    service, ids = await county_service(make_service)
    base = service.url.rstrip("/")

    assert (await desktop.open(base + "/console/overview")).status == 200  # the sign-in page, after a 303
    scene = SCENE.search(await desktop.page.locator("main").inner_text()).group(1)
    assert (await service.emulator.scan("town-1", scene)).reply == SCAN_CONFIRMED
    await desktop.open(base + "/console/login?wait=1")
    # The sign-in page showed WeChat's QR image; from here on nothing is loaded from elsewhere.
    desktop.requests.clear()
    assert desktop.page.url.endswith("/console/overview")
    # Back to the page asked for: the overview. The third quarter, where 红旗村 missed its 支部党员大会.
    await desktop.page.get_by_role("link", name="上一季度").click()
    await desktop.page.wait_for_load_state("load")
    assert "2026年第3季度" in await desktop.page.locator("main").inner_text()
    hongqi = desktop.page.locator('tr[data-branch="红旗村党支部"]')
    assert (await hongqi.locator("td").first.inner_text()).strip() == "缺"
    assert await desktop.page.locator("svg[role=img]").count() == 2
    assert await desktop.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await desktop.shot("overview", docs="console-overview")

    # 红旗村's meetings, then the November 主题党日: who signed in how.
    await hongqi.get_by_role("link", name="红旗村党支部").click()
    await desktop.page.wait_for_load_state("load")
    await desktop.shot("meetings")
    await desktop.page.get_by_role("link", name="学习二十届四中全会精神").click()
    await desktop.page.wait_for_load_state("load")
    text = await desktop.page.locator("main").inner_text()
    assert "签到码" in text and "由李建国代签" in text
    await desktop.shot("meeting", docs="console-meeting")
    assert desktop.outside(service.url) == []
