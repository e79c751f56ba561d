"""Browser fixtures: Debian's Chromium driven by Playwright, at a phone's size and a desktop's.

Chromium is /usr/bin/chromium (Debian's package `chromium`; .ci/run installs it). Playwright's own browsers
are never downloaded. Without /usr/bin/chromium every browser test skips, saying so loudly.

Every page a test checks is saved as a full-page PNG in test-artifacts/screenshots/, named
<test>-<phone|desktop>-<step>.png. With ZHIBU_UPDATE_SCREENSHOTS=1 the shots a test names for the README
(phone size) are also written to docs/screenshots/.

The browser is launched per test: pytest-asyncio runs each test and the service's fixtures in the test's own
event loop, and Playwright's objects belong to the loop that made them (a launch costs about a second).
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
UPDATE_DOCS = os.environ.get("ZHIBU_UPDATE_SCREENSHOTS") == "1"

# The in-app browser a member opens a template message's link in (WeChat 8.0 on Android).
WECHAT_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 13; V2148A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MMWEBID/2247 "
    "MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64")

PHONE = dict(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True,
             user_agent=WECHAT_USER_AGENT)
DESKTOP = dict(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
COMMON = dict(locale="zh-CN", timezone_id="Asia/Shanghai")

MISSING = ("\n" + "!" * 88 + "\n"
           "!!! BROWSER TESTS SKIPPED: /usr/bin/chromium is missing.\n"
           "!!! Install Debian's Chromium: apt-get install -y chromium fonts-noto-cjk (.ci/run does).\n"
           "!!! Never `playwright install`: these tests use Debian's browser only.\n"
           + "!" * 88)


@dataclass
class Screen:
    """One browser page at one size, the requests it made, and its screenshots."""

    page: object  # playwright.async_api.Page
    size: str  # "phone" or "desktop"
    test: str
    requests: list[str] = field(default_factory=list)

    async def open(self, url: str):
        """Go to url; the response (its status is the page's)."""
        return await self.page.goto(url, wait_until="load")

    async def shot(self, step: str, *, docs: str | None = None) -> Path:
        """A full-page PNG of what the page shows now, as <test>-<size>-<step>.png. docs: the name the shot
        has in docs/screenshots/ (phone size, written when ZHIBU_UPDATE_SCREENSHOTS=1)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{self.test}-{self.size}-{_safe(step)}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        if docs is not None and UPDATE_DOCS and self.size == "phone":
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SHOTS / f"{docs}.png")
        return path

    def outside(self, base_url: str) -> list[str]:
        """Requests the page made anywhere but base_url (data: URLs stay inside the page)."""
        base = base_url.rstrip("/") + "/"
        return [url for url in self.requests if not url.startswith(base) and not url.startswith("data:")]


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")


@pytest.fixture
async def browser():
    """Debian's Chromium, headless, for one test."""
    if not CHROMIUM.exists():
        warnings.warn(MISSING, stacklevel=1)
        pytest.skip(MISSING)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        # chromium_sandbox=False (--no-sandbox): Chromium's sandbox refuses to start as root, as in CI.
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                   chromium_sandbox=False)
        try:
            yield browser
        finally:
            await browser.close()


async def _screen(browser, request, size: str, options: dict) -> Screen:
    context = await browser.new_context(**options, **COMMON)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    screen = Screen(page=page, size=size, test=_safe(request.node.name))
    page.on("request", lambda sent: screen.requests.append(sent.url))
    return screen


@pytest.fixture
async def phone(browser, request) -> Screen:
    """A page at a phone's size in WeChat's in-app browser: 390×844 CSS pixels, scale 2, touch."""
    screen = await _screen(browser, request, "phone", PHONE)
    yield screen
    await screen.page.context.close()


@pytest.fixture
async def desktop(browser, request) -> Screen:
    """A page at a desktop's size: 1280×800."""
    screen = await _screen(browser, request, "desktop", DESKTOP)
    yield screen
    await screen.page.context.close()
