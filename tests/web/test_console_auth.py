"""The staff console's front door over HTTP: a browser with its own cookie jar against the test server, the scan
through the emulator (WeChat's SCAN event reaches the webhook), passwords set with `zhibu staff passwd`."""

from __future__ import annotations

import asyncio
import html
import re
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select
from yarl import URL

from bot.app import feature_routers
from bot.cli import main
from bot.dispatch import Router
from bot.web.console import StaffView, console_key, staff_page
from handlers.console.common import (
    LEFT_CONSOLE,
    NOT_IN_CONSOLE,
    SCAN_BIND_FIRST,
    SCAN_CONFIRMED,
    SCAN_EXPIRED,
    SCAN_NOT_STAFF,
    WRONG_PASSWORD,
)
from harness import DONGFENG, HONGQI, TOWN, hongqi_branch
from storage.models import AuditEntry, ConsoleFailure, ConsoleLogin, Member, Organization, Role

COUNTY = "示范县委"
PASSWORD = "hongqi-2026-secret"
SCENE = re.compile(r"/扫码 (login:[A-Za-z0-9_-]+)")
QR_IMAGE = re.compile(r'<img class="qr" src="([^"]+)"')


class Browser:
    """One browser: its own cookies, no redirects followed (the tests look at each 303)."""

    def __init__(self, service, forwarded_for: str | None = None) -> None:
        self.base = service.url.rstrip("/")
        # unsafe=True: the test server is an IP address, whose cookies aiohttp's jar refuses by default.
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.base + path, allow_redirects=False, headers=self.headers) as response:
            return response.status, await response.text(), response

    async def post(self, path: str, **form: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.post(self.base + path, data=form, allow_redirects=False,
                                  headers=self.headers) as response:
            return response.status, await response.text(), response

    def cookie(self) -> str | None:
        found = [cookie.value for cookie in self.http.cookie_jar if cookie.key == "zhibu_console"]
        return found[0] if found else None

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def browsers():
    made: list[Browser] = []

    def make(service, **options) -> Browser:
        browser = Browser(service, **options)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        await browser.close()


async def console_service(make_service, **overrides):
    """The Hongqi branch (secretary 李建国), a Dongfeng member, a township and a county staff member."""
    service = await make_service(console_key=Fernet.generate_key().decode(), **overrides)
    people = await hongqi_branch(service)
    await service.bind("df-1", "孙大海", org_path=DONGFENG, role=Role.SECRETARY, phone="13900000001")
    await service.bind("town-1", "周晓燕", org_path=TOWN, role=Role.STAFF, phone="13800000007")
    await service.bind("county-1", "钱立群", org_path=COUNTY, role=Role.STAFF, phone="13700000001")
    people.update(孙大海="df-1", 周晓燕="town-1", 钱立群="county-1")
    return service, people


def scene_of(page: str) -> str:
    match = SCENE.search(page)
    assert match, page
    return match.group(1)


def location(response) -> str | None:
    return response.headers.get("Location")


async def sign_in_by_scan(service, browser: Browser, openid: str) -> None:
    status, page, _ = await browser.get("/console/login")
    assert status == 200, page
    assert (await service.emulator.scan(openid, scene_of(page))).reply == SCAN_CONFIRMED
    status, _, response = await browser.get("/console/login?wait=1")
    assert status == 303 and location(response) == "/console/"


async def csrf_of(browser: Browser) -> str:
    status, page, _ = await browser.get("/console/")
    assert status == 200, page
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def rows(service, query) -> list:
    async with service.sessions() as session:
        return list((await session.execute(query)).scalars())


async def set_password(service, name: str, password: str = PASSWORD, *more: str):
    """`zhibu staff passwd NAME` against the service's database (in a thread: the command runs its own loop)."""
    env = {"ZHIBU_DATABASE_URL": service.settings.effective_database_url, "ZHIBU_DATA_DIR": "/nonexistent"}
    return await asyncio.to_thread(CliRunner().invoke, main, ["staff", "passwd", name, *more],
                                   input=f"{password}\n{password}\n", env=env)


# ---------------------------------------------------------------- by scan


async def test_a_secretary_scans_the_code_and_that_browser_is_signed_in_once(make_service, browsers):
    service, people = await console_service(make_service)
    browser = browsers(service)

    status, _, response = await browser.get("/console/")
    assert status == 303 and location(response) == "/console/login"

    status, page, response = await browser.get("/console/login")
    assert status == 200
    assert '<meta http-equiv="refresh" content="3;url=/console/login?wait=1">' in page
    assert "<script" not in page
    scene = scene_of(page)
    # The image is the platform's QR code for exactly this scene (the emulator knows its tickets).
    image = html.unescape(QR_IMAGE.search(page).group(1))
    assert image.startswith("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=")
    assert service.emulator.api.scene_for(parse_qs(urlparse(image).query)["ticket"][0]) == scene
    assert "img-src 'self' data: https://mp.weixin.qq.com;" in response.headers["Content-Security-Policy"]
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie and "Secure" not in cookie

    # Refreshing while nobody scanned shows the same code: no new request, no new call to the platform.
    status, again, _ = await browser.get("/console/login?wait=1")
    assert status == 200 and scene_of(again) == scene
    assert sum(1 for record in service.emulator.api.records if record.kind == "qrcode") == 1
    before_scan = browser.cookie()

    assert (await service.emulator.scan(people["李建国"], scene)).reply == SCAN_CONFIRMED

    # The next refresh signs this browser in and goes where it first wanted to go.
    status, _, response = await browser.get("/console/login?wait=1")
    assert status == 303 and location(response) == "/console/"
    status, page, _ = await browser.get("/console/")
    assert status == 200 and "李建国" in page and "红旗村党支部" in page and "微信扫码" in page
    assert 'href="/console/audit"' not in page  # the audit log is the county's

    # The same request cannot sign in anything else: not a copy of the browser's earlier cookie, not a rescan.
    copy = browsers(service)
    copy.http.cookie_jar.update_cookies({"zhibu_console": before_scan}, response_url=URL(copy.base))
    status, page, _ = await copy.get("/console/login?wait=1")
    assert status == 200 and scene_of(page) != scene
    status, _, response = await copy.get("/console/")
    assert status == 303
    service.clock.advance(seconds=5)  # a later scan, not WeChat retrying the first (that gets the same answer)
    assert (await service.emulator.scan(people["李建国"], scene)).reply == SCAN_EXPIRED

    logins = await rows(service, select(ConsoleLogin))
    assert [(login.method, login.ended_at) for login in logins] == [("scan", None)]
    actions = [(entry.member_name, entry.action) for entry in await rows(service, select(AuditEntry))]
    assert actions == [("李建国", "sign_in_scan")]


async def test_two_refreshes_crossing_as_the_scan_signs_in_still_reach_the_page_asked_for(make_service, browsers):
    """The sign-in page refreshes itself every 3 s; a tap can refresh it at the same moment. The refresh that signs
    in may be the one the browser abandons, after keeping its cookie; the other one, signed in by then, still sends
    the browser to the page it first asked for (before, to the console's home)."""
    service, people = await console_service(make_service)
    browser = browsers(service)
    status, _, response = await browser.get("/console/overview")
    assert status == 303 and location(response) == "/console/login"
    status, page, _ = await browser.get("/console/login")
    assert (await service.emulator.scan(people["李建国"], scene_of(page))).reply == SCAN_CONFIRMED
    status, _, response = await browser.get("/console/login?wait=1")  # signs in (the answer the browser drops)
    assert status == 303 and location(response) == "/console/overview"
    status, _, response = await browser.get("/console/login?wait=1")  # the crossing refresh, signed in already
    assert status == 303 and location(response) == "/console/overview"
    status, page, _ = await browser.get("/console/overview")
    assert status == 200 and "李建国" in page


async def test_an_expired_code_is_refused_in_chat_and_the_page_offers_a_new_one(make_service, browsers):
    service, people = await console_service(make_service)
    browser = browsers(service)
    status, page, _ = await browser.get("/console/login")
    scene = scene_of(page)

    service.clock.advance(minutes=3)
    assert (await service.emulator.scan(people["李建国"], scene)).reply == SCAN_EXPIRED

    # The page's own refresh stops at an expired code instead of asking for codes for ever …
    status, page, _ = await browser.get("/console/login?wait=1")
    assert status == 200 and "二维码已经过期了" in page and "http-equiv" not in page
    assert "/扫码" not in page
    # … and reloading the page shows a new one, which works.
    status, page, _ = await browser.get("/console/login")
    fresh = scene_of(page)
    assert fresh != scene
    assert (await service.emulator.scan(people["李建国"], fresh)).reply == SCAN_CONFIRMED
    status, _, response = await browser.get("/console/login?wait=1")
    assert status == 303


async def test_members_who_may_not_use_the_console_are_refused_and_the_code_stays_unused(make_service, browsers):
    service, people = await console_service(make_service)
    browser = browsers(service)
    status, page, _ = await browser.get("/console/login")
    scene = scene_of(page)

    assert (await service.emulator.scan(people["王秀英"], scene)).reply == SCAN_NOT_STAFF
    assert (await service.emulator.scan(people["张卫东"], scene)).reply == SCAN_NOT_STAFF  # 委员: no console
    assert (await service.emulator.scan("stranger", scene)).reply == SCAN_BIND_FIRST
    assert (await service.emulator.scan(people["李建国"], "login:not-one-of-ours!")).reply == SCAN_EXPIRED
    status, page, _ = await browser.get("/console/login?wait=1")
    assert status == 200 and scene_of(page) == scene

    # The refusals took nothing: the secretary's scan still works.
    assert (await service.emulator.scan(people["李建国"], scene)).reply == SCAN_CONFIRMED
    # And a second staff member scanning the confirmed code does not take it over.
    assert (await service.emulator.scan(people["孙大海"], scene)).reply == SCAN_EXPIRED
    status, _, _ = await browser.get("/console/login?wait=1")
    status, page, _ = await browser.get("/console/")
    assert status == 200 and "李建国" in page


async def test_a_secretary_who_follows_again_through_the_code_is_signed_in_not_welcomed(make_service, browsers):
    # Someone who had unfollowed scans the code: WeChat sends a follow carrying the scene. It is a sign-in,
    # whatever order the features are listed in (membership's welcome leaves it alone).
    service, people = await console_service(make_service)
    browser = browsers(service)
    status, page, _ = await browser.get("/console/login")
    await service.emulator.unsubscribe(people["李建国"])
    assert (await service.emulator.subscribe(people["李建国"], scene_of(page))).reply == SCAN_CONFIRMED
    status, _, _ = await browser.get("/console/login?wait=1")
    assert status == 303
    status, page, _ = await browser.get("/console/")
    assert status == 200 and "李建国" in page


async def test_the_cookie_is_secure_behind_https_and_a_browser_without_cookies_is_told(make_service):
    service = await make_service(console_key=Fernet.generate_key().decode(), public_url="https://zhibu.example.gov.cn")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(service.url.rstrip("/") + "/console/login", allow_redirects=False) as response:
            assert response.status == 200 and "Secure" in response.headers["Set-Cookie"]
        # The page's refresh comes back without the cookie: no new code every three seconds, but a reason.
        async with http.get(service.url.rstrip("/") + "/console/login?wait=1", allow_redirects=False) as response:
            page = await response.text()
            assert response.status == 200 and "cookie" in page and "http-equiv" not in page
    assert sum(1 for record in service.emulator.api.records if record.kind == "qrcode") == 1


# ---------------------------------------------------------------- by password


async def test_password_sign_in_right_wrong_and_unknown_names(make_service, browsers):
    service, people = await console_service(make_service)
    result = await set_password(service, "李建国")
    assert result.exit_code == 0, result.output
    assert "已设置" in result.output and PASSWORD not in result.output

    browser = browsers(service)
    status, page, _ = await browser.get("/console/login/password")
    assert status == 200 and 'type="password"' in page
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    status, wrong, _ = await browser.post("/console/login/password", csrf=token, name="李建国", password="nope-nope")
    assert status == 200 and WRONG_PASSWORD in wrong
    status, unknown, _ = await browser.post("/console/login/password", csrf=token, name="李不存在", password="nope-nope")
    assert status == 200 and WRONG_PASSWORD in unknown
    # A member with no console role and no password gets the same answer.
    status, plain, _ = await browser.post("/console/login/password", csrf=token, name="王秀英", password=PASSWORD)
    assert WRONG_PASSWORD in plain

    status, _, response = await browser.post("/console/login/password", csrf=token, name="李 建国", password=PASSWORD)
    assert status == 303 and location(response) == "/console/"
    status, page, _ = await browser.get("/console/")
    assert status == 200 and "李建国" in page and "密码" in page

    audit = [(entry.member_name, entry.action) for entry in await rows(service, select(AuditEntry).order_by(AuditEntry.id))]
    assert audit == [("李建国", "password_set"), ("", "sign_in_failed"), ("", "sign_in_failed"), ("", "sign_in_failed"),
                     ("李建国", "sign_in_password")]


async def test_five_failures_lock_the_name_and_the_address_for_fifteen_minutes(make_service, browsers):
    service, people = await console_service(make_service)
    assert (await set_password(service, "李建国")).exit_code == 0
    assert (await set_password(service, "周晓燕")).exit_code == 0

    async def attempt(address: str, name: str, password: str) -> tuple[int, str]:
        browser = browsers(service, forwarded_for=address)
        _, page, _ = await browser.get("/console/login/password")
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        status, page, _ = await browser.post("/console/login/password", csrf=token, name=name, password=password)
        return status, page

    # The name: five wrong passwords from five addresses lock it, even for the right password from a sixth.
    for index in range(5):
        status, page = await attempt(f"10.0.0.{index}", "李建国", f"wrong-{index}")
        assert WRONG_PASSWORD in page
    status, page = await attempt("10.0.0.99", "李建国", PASSWORD)
    assert status == 429 and "15 分钟后再试" in page
    count = len(await rows(service, select(ConsoleFailure)))
    await attempt("10.0.0.98", "李建国", "wrong-again")  # while locked, nothing is checked or counted
    assert len(await rows(service, select(ConsoleFailure))) == count
    # Another name is not locked.
    assert (await attempt("10.0.0.97", "周晓燕", PASSWORD))[0] == 303

    # The address: five failures with any names lock it; other addresses go on.
    for index in range(5):
        await attempt("10.9.9.9", f"路人{index}", "whatever-1")
    status, page = await attempt("10.9.9.9", "周晓燕", PASSWORD)
    assert status == 429
    assert (await attempt("10.9.9.10", "周晓燕", PASSWORD))[0] == 303

    service.clock.advance(minutes=15, seconds=1)
    assert (await attempt("10.0.0.99", "李建国", PASSWORD))[0] == 303
    assert (await attempt("10.9.9.9", "周晓燕", PASSWORD))[0] == 303


async def test_zhibu_staff_passwd_needs_a_console_role_and_one_person(make_service):
    service, people = await console_service(make_service)
    plain = await set_password(service, "王秀英")
    assert plain.exit_code != 0 and "后台只供" in plain.output
    nobody = await set_password(service, "李不存在")
    assert nobody.exit_code != 0 and "没有叫 李不存在 的党员" in nobody.output
    await service.bind("df-2", "李建国", org_path=DONGFENG, role=Role.DEPUTY_SECRETARY, phone="13900000002")
    two = await set_password(service, "李建国")
    assert two.exit_code != 0 and "--org" in two.output and DONGFENG in two.output and HONGQI in two.output
    short = await asyncio.to_thread(
        CliRunner().invoke, main, ["staff", "passwd", "李建国", "--org", DONGFENG], input="short\nshort\n",
        env={"ZHIBU_DATABASE_URL": service.settings.effective_database_url})
    assert short.exit_code != 0 and "至少 8 位" in short.output
    one = await set_password(service, "李建国", PASSWORD, "--org", DONGFENG)
    assert one.exit_code == 0, one.output


# ---------------------------------------------------------------- CSRF, signing out, idle time


async def test_a_post_without_the_login_s_token_is_refused_and_changes_nothing(make_service, browsers):
    service, people = await console_service(make_service)
    browser = browsers(service)
    await sign_in_by_scan(service, browser, people["李建国"])
    token = await csrf_of(browser)

    for form in ({}, {"csrf": "forged"}, {"csrf": token[:-1]}):
        status, page, _ = await browser.post("/console/logout", **form)
        assert status == 403 and "表单已经失效" in page
    status, _, _ = await browser.get("/console/")
    assert status == 200
    assert [login.ended_at for login in await rows(service, select(ConsoleLogin))] == [None]

    # The sign-in form's token belongs to the browser that loaded the form.
    assert (await set_password(service, "周晓燕")).exit_code == 0
    other = browsers(service)
    await other.get("/console/login/password")
    status, _, _ = await other.post("/console/login/password", name="周晓燕", password=PASSWORD)
    assert status == 403
    status, _, _ = await other.post("/console/login/password", csrf=token, name="周晓燕", password=PASSWORD)
    assert status == 403
    assert await rows(service, select(ConsoleFailure)) == []

    status, _, response = await browser.post("/console/logout", csrf=token)
    assert status == 303 and location(response) == "/console/login"
    status, _, response = await browser.get("/console/")
    assert status == 303 and location(response) == "/console/login"
    [login] = await rows(service, select(ConsoleLogin))
    assert login.ended_reason == "sign_out"


async def test_tuichu_houtai_in_chat_ends_every_session_and_any_scan_not_yet_used(make_service, browsers):
    service, people = await console_service(make_service)
    secretary = people["李建国"]
    office, laptop, intruder = browsers(service), browsers(service), browsers(service)
    await sign_in_by_scan(service, office, secretary)
    await sign_in_by_scan(service, laptop, secretary)
    # Someone else's page, scanned by the secretary but not yet refreshed: "that was not me".
    status, page, _ = await intruder.get("/console/login")
    assert (await service.emulator.scan(secretary, scene_of(page))).reply == SCAN_CONFIRMED

    assert await service.say(secretary, "退出后台") == LEFT_CONSOLE
    for browser in (office, laptop):
        status, _, response = await browser.get("/console/")
        assert status == 303 and location(response) == "/console/login"
    status, page, _ = await intruder.get("/console/login?wait=1")
    assert status == 200 and "/扫码 login:" in page
    assert (await intruder.get("/console/"))[0] == 303

    assert await service.say(secretary, "退出后台") == NOT_IN_CONSOLE
    assert await service.say(people["王秀英"], "退出后台") == NOT_IN_CONSOLE
    [entry] = await rows(service, select(AuditEntry).where(AuditEntry.action == "sign_out_chat"))
    assert entry.member_name == "李建国" and "2 处登录" in entry.detail


async def test_a_session_idle_for_twelve_hours_is_over(make_service, browsers):
    service, people = await console_service(make_service)
    browser = browsers(service)
    await sign_in_by_scan(service, browser, people["李建国"])
    service.clock.advance(hours=11)
    assert (await browser.get("/console/"))[0] == 200
    service.clock.advance(hours=11, minutes=59)  # 11:59 after the last page: still in
    assert (await browser.get("/console/"))[0] == 200
    service.clock.advance(hours=12)
    status, _, response = await browser.get("/console/")
    assert status == 303 and location(response) == "/console/login"
    [login] = await rows(service, select(ConsoleLogin))
    assert login.ended_reason == "idle"


# ---------------------------------------------------------------- scope


def scope_check_feature() -> Router:
    """A test-only console page naming an organization by id, as the console's other pages will."""
    router = Router("scope-check")

    @router.web.get("/console/test/org/{org_id}")
    @staff_page
    async def org_page(view: StaffView) -> web.Response:
        org = await view.org(view.request.match_info["org_id"])
        return web.Response(text=f"{org.path} in {view.scope.path}")

    return router


async def org_ids(service) -> dict[str, int]:
    async with service.sessions() as session:
        return {org.path: org.id for org in (await session.execute(select(Organization))).scalars()}


async def test_each_sees_only_their_scope_and_anything_else_is_404(make_service, browsers):
    service, people = await console_service(make_service, routers=[*feature_routers(), scope_check_feature()])
    ids = await org_ids(service)
    secretary, town, county = browsers(service), browsers(service), browsers(service)
    await sign_in_by_scan(service, secretary, people["李建国"])
    await sign_in_by_scan(service, town, people["周晓燕"])
    await sign_in_by_scan(service, county, people["钱立群"])

    async def status_of(browser, path: str) -> int:
        return (await browser.get(f"/console/test/org/{ids[path]}"))[0]

    # A secretary: their branch and its groups, nothing else.
    assert await status_of(secretary, HONGQI) == 200
    assert await status_of(secretary, HONGQI + "/第一党小组") == 200
    status, page, _ = await secretary.get(f"/console/test/org/{ids[DONGFENG]}")
    assert status == 404 and "不在您可以查看的范围里" in page and "东风" not in page
    assert await status_of(secretary, TOWN) == 404
    assert (await secretary.get("/console/test/org/999999"))[0] == 404
    assert (await secretary.get("/console/test/org/１"))[0] == 404
    # Township staff: the township's subtree.
    assert await status_of(town, DONGFENG) == 200 and await status_of(town, HONGQI) == 200
    assert await status_of(town, COUNTY) == 404
    # The county: everything under it, and the audit log nobody else sees.
    assert await status_of(county, DONGFENG) == 200 and await status_of(county, COUNTY) == 200
    for browser in (secretary, town):
        status, page, _ = await browser.get("/console/audit")
        assert status == 404 and "李建国" not in page.split("</header>")[1]
    status, page, _ = await county.get("/console/audit")
    assert status == 200 and "操作记录" in page
    assert page.count("<td>扫码登录</td>") == 3 and "周晓燕" in page and HONGQI in page

    # A move or a role change counts from the next page on.
    async with service.sessions() as session, session.begin():
        member = (await session.execute(select(Member).where(Member.name == "周晓燕"))).scalar_one()
        member.org_id = ids[DONGFENG]
        secretary_row = (await session.execute(select(Member).where(Member.name == "李建国"))).scalar_one()
        secretary_row.role = Role.MEMBER.value
    assert await status_of(town, HONGQI) == 404 and await status_of(town, DONGFENG) == 200
    status, _, response = await secretary.get("/console/")
    assert status == 303 and location(response) == "/console/login"
    ended = [login.ended_reason for login in await rows(service, select(ConsoleLogin).order_by(ConsoleLogin.id))]
    assert ended == ["role", None, None]


def test_the_console_key_is_made_once_in_the_data_folder(tmp_path):
    first = console_key("", tmp_path)
    assert Fernet(first) and (tmp_path / "console-key").stat().st_mode & 0o777 == 0o600
    assert console_key("", tmp_path) == first
    assert console_key("configured", tmp_path) == "configured"
