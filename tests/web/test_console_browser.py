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


async def sign_in(screen, service, openid: str, path: str = "/console/overview") -> None:
    """Open path, land on the sign-in page, scan its code in WeChat (the emulator) as openid, and let the page's
    refresh bring the browser back to path, signed in."""
    base = service.url.rstrip("/")
    assert (await screen.open(base + path)).status == 200  # the sign-in page, after a 303
    scene = SCENE.search(await screen.page.locator("main").inner_text()).group(1)
    assert (await service.emulator.scan(openid, scene)).reply == SCAN_CONFIRMED
    await screen.refresh_to(base + "/console/login?wait=1", arrives_at=base + path)
    # The sign-in page showed WeChat's QR image; from here on nothing is loaded from elsewhere.
    screen.requests.clear()
    assert screen.page.url == base + path


async def _walk(make_service, screen) -> None:
    service, ids = await county_service(make_service)
    await sign_in(screen, service, "town-1")
    # Back to the page asked for: the overview. The third quarter, where 红旗村 missed its 支部党员大会.
    await screen.page.get_by_role("link", name="上一季度").click()
    await screen.page.wait_for_load_state("load")
    assert "2026年第3季度" in await screen.page.locator("main").inner_text()
    hongqi = screen.page.locator('tr[data-branch="红旗村党支部"]')
    assert (await hongqi.locator("td").first.inner_text()).strip() == "缺"
    assert await screen.page.locator("svg[role=img]").count() == 2
    assert await screen.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screen.shot("overview", docs="console-overview")

    # 红旗村's meetings, then the November 主题党日: who signed in how.
    await hongqi.get_by_role("link", name="红旗村党支部").click()
    await screen.page.wait_for_load_state("load")
    await screen.shot("meetings")
    await screen.page.get_by_role("link", name="学习二十届四中全会精神").click()
    await screen.page.wait_for_load_state("load")
    text = await screen.page.locator("main").inner_text()
    assert "签到码" in text and "由李建国代签" in text
    await screen.shot("meeting", docs="console-meeting")
    assert screen.outside(service.url) == []
