"""Browser fixtures: Debian's Chromium driven by Playwright, at a phone's size and a desktop's.

Chromium is /usr/bin/chromium (Debian's package `chromium`; .ci/run installs it). Playwright's own browsers
are never downloaded. Without /usr/bin/chromium every browser test skips, saying so loudly.

Every page a test checks is saved as a full-page PNG in test-artifacts/screenshots/, named
<test>-<phone|desktop>-<step>.png. With ZHIBU_UPDATE_SCREENSHOTS=1 the shots a test names for the README
(phone size) are also written to docs/screenshots/.

Chromium is launched once for the whole run (`browser`, session-scoped; a launch with Playwright's driver costs
one to two seconds) and each test gets fresh browser contexts, so no cookie or page outlives its test.
Playwright's objects belong to the event loop that made them, so every test that uses the browser runs in
pytest-asyncio's session-wide loop: pytest_collection_modifyitems marks it `asyncio(loop_scope="session")`, and
pytest_fixture_setup runs its function-scoped async fixtures (make_service, database_url, aiohttp_server …) in that
loop too, unless a fixture names its own loop scope. Those fixtures are still set up and torn down for each test;
only the loop is shared. Every other test, in tests/web and elsewhere, keeps its own loop per test
(asyncio_default_fixture_loop_scope = "function" in pyproject.toml). The second hook relies on how pytest-asyncio
1.x picks a fixture's loop (the `_loop_scope` its fixture decorator sets); were that to change, a browser test's
service would be served by a loop that is not running and its first page would time out, not pass.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from pytest_asyncio import is_async_test

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

    async def refresh_to(self, url: str, arrives_at: str) -> None:
        """Do what a page's own refresh does (go to url) and be at arrives_at after it. The page may refresh by
        itself at the same moment (the sign-in page does every 3 s): then Chromium aborts one of the two
        navigations, and the other one is waited for instead."""
        from playwright.async_api import Error as PlaywrightError

        try:
            await self.open(url)
        except PlaywrightError as error:
            if "ERR_ABORTED" not in str(error):
                raise
        await self.page.wait_for_url(arrives_at, wait_until="load")

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


# The event loop of every test that uses the browser, and of its function-scoped async fixtures.
BROWSER_LOOP = "session"


def pytest_collection_modifyitems(items) -> None:
    """Tests that use the browser run in its loop (this mark goes first, so it is the one pytest-asyncio reads)."""
    for item in items:
        if is_async_test(item) and "browser" in item.fixturenames:
            item.add_marker(pytest.mark.asyncio(loop_scope=BROWSER_LOOP), append=False)


def _loop_of(item) -> str | None:
    marker = item.get_closest_marker("asyncio") if is_async_test(item) else None
    return marker.kwargs.get("loop_scope") if marker else None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    """A function-scoped async fixture of a test in the browser's loop runs in that loop too: pytest-asyncio
    reads a fixture's loop from its function's `_loop_scope` (what @pytest_asyncio.fixture(loop_scope=…) sets),
    so it gets, for this setup only, a copy of the function with that set."""
    func = fixturedef.func
    if (fixturedef.scope != "function" or getattr(func, "_loop_scope", None)
            or not (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func))
            or _loop_of(request.node) != BROWSER_LOOP):
        return (yield)
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
    copy.__kwdefaults__, copy.__qualname__ = func.__kwdefaults__, func.__qualname__
    copy.__dict__.update(func.__dict__)
    copy._loop_scope = BROWSER_LOOP
    fixturedef.func = copy
    try:
        return (yield)
    finally:
        fixturedef.func = func


@pytest_asyncio.fixture(scope="session", loop_scope=BROWSER_LOOP)
async def browser():
    """Debian's Chromium, headless, for the whole run (each test opens its own contexts in it)."""
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


@pytest_asyncio.fixture(loop_scope=BROWSER_LOOP)
async def phone(browser, request) -> Screen:
    """A page at a phone's size in WeChat's in-app browser: 390×844 CSS pixels, scale 2, touch."""
    screen = await _screen(browser, request, "phone", PHONE)
    yield screen
    await screen.page.context.close()


@pytest_asyncio.fixture(loop_scope=BROWSER_LOOP)
async def desktop(browser, request) -> Screen:
    """A page at a desktop's size: 1280×800."""
    screen = await _screen(browser, request, "desktop", DESKTOP)
    yield screen
    await screen.page.context.close()


@pytest_asyncio.fixture(loop_scope=BROWSER_LOOP, params=["desktop", "phone"])
async def screen(browser, request) -> Screen:
    """A page at each size in turn: a test that takes `screen` runs once at a desktop's size, once at a phone's."""
    screen = await _screen(browser, request, request.param, DESKTOP if request.param == "desktop" else PHONE)
    yield screen
    await screen.page.context.close()
