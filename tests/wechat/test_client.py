"""The outbound client against the emulated WeChat API over real HTTP, with the token shared in the database."""

from __future__ import annotations

import json

import asyncio

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from bot.clock import ManualClock
from bot.config import DEFAULT_MENU, DemoDefaults
from bot.wechat.client import (
    CredentialsRejected,
    InvalidArgument,
    InvalidMenu,
    InvalidOpenId,
    NotFollowing,
    OutsideWindow,
    QRCode,
    QuotaExceeded,
    SystemBusy,
    TokenInvalid,
    TokenUnavailable,
    TooManyMessages,
    TransportError,
    WeChatClient,
    WeChatError,
    error_for,
)
from bot.wechat.emulated_api import EmulatedApi
from storage.db import create_engine, session_factory
from storage.models import AccessToken
from storage.tokens import LEASE, TokenRefreshTimeout, TokenStore

APP_ID = DemoDefaults.app_id
SECRET = DemoDefaults.app_secret
MEMBER = "o-member-zhangsan"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(clock) -> EmulatedApi:
    return EmulatedApi(app_id=APP_ID, app_secret=SECRET, clock=clock)


@pytest.fixture
async def api_base(api, aiohttp_server) -> str:
    app = web.Application()
    api.add_routes(app)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_client(http, api_base, clock):
    """A client as one process builds it: its own TokenStore (lock and cache) over the given sessions."""
    def make(sessions, *, secret: str = SECRET, **options) -> WeChatClient:
        tokens = TokenStore(sessions, clock, poll_interval=0.01, wait_limit=options.pop("wait_limit", 10.0))
        return WeChatClient(http=http, app_id=APP_ID, app_secret=secret, api_base=api_base, tokens=tokens,
                            backoff=0.01, **options)
    return make


@pytest.fixture
def client(make_client, sessions) -> WeChatClient:
    return make_client(sessions)


@pytest.fixture
async def other_sessions(database_url):
    """A second engine on the same database: what another process of the service would have."""
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def errcodes(api: EmulatedApi, kind: str = "custom") -> list[int]:
    return [record.errcode for record in api.records if record.kind == kind]


# Sending and the shared token.

async def test_text_reaches_the_user_in_readable_chinese(api, client):
    api.user_message(MEMBER)
    await client.send_text(MEMBER, "明天上午九点在村委会开支部党员大会")
    assert api.sent_texts(MEMBER) == ["明天上午九点在村委会开支部党员大会"]
    assert api.token_fetches == 1


async def test_escaped_chinese_would_show_as_escapes(api, api_base, http):
    """The emulator shows \\uXXXX literally, as WeChat does, so ensure_ascii=True in the client would be caught."""
    api.user_message(MEMBER)
    credentials = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}
    async with http.post(f"{api_base}/cgi-bin/stable_token", json=credentials) as response:
        token = (await response.json())["access_token"]
    raw = '{"touser": "%s", "msgtype": "text", "text": {"content": "\\u4f60\\u597d"}}' % MEMBER
    async with http.post(f"{api_base}/cgi-bin/message/custom/send", params={"access_token": token}, data=raw) as response:
        assert (await response.json())["errcode"] == 0
    assert api.sent_texts(MEMBER) == ["\\u4f60\\u597d"]


async def test_two_processes_sending_at_once_fetch_one_token(api, make_client, sessions, other_sessions):
    first, second = make_client(sessions), make_client(other_sessions)
    openids = [f"o-member-{n}" for n in range(20)]
    for openid in openids:
        api.user_message(openid)
    await asyncio.gather(*(
        (first if n % 2 else second).send_text(openid, f"第{n}条通知") for n, openid in enumerate(openids)
    ))
    assert api.token_fetches == 1
    assert sorted(errcodes(api)) == [0] * 20
    assert api.sent_texts("o-member-7") == ["第7条通知"]


async def test_expired_token_is_refreshed_once_before_use(api, clock, client):
    api.user_message(MEMBER)
    await client.send_text(MEMBER, "第一条")
    clock.advance(seconds=7201)
    api.user_message(MEMBER)
    await asyncio.gather(*(client.send_text(MEMBER, f"第{n}条") for n in range(5)))
    assert api.token_fetches == 2
    assert errcodes(api) == [0] * 6  # never sent with the expired token


async def test_token_is_renewed_in_its_last_five_minutes(api, clock, client):
    api.user_message(MEMBER)
    await client.send_text(MEMBER, "第一条")
    clock.advance(seconds=7200 - 200)
    await client.send_text(MEMBER, "第二条")
    assert api.token_fetches == 2
    assert errcodes(api) == [0, 0]


async def test_rejected_token_is_refreshed_once_and_the_message_retried(api, client):
    api.user_message(MEMBER)
    api.fail_next("/message/custom/send", 40001)
    await client.send_text(MEMBER, "请按时参加主题党日")
    assert api.token_fetches == 2
    assert errcodes(api) == [40001, 0]
    assert api.sent_texts(MEMBER) == ["请按时参加主题党日"]


async def test_token_rejected_again_after_refresh_gives_up(api, client):
    api.user_message(MEMBER)
    api.fail_next("/message/custom/send", 42001, times=2)
    with pytest.raises(TokenInvalid):
        await client.send_text(MEMBER, "通知")
    assert api.token_fetches == 2
    assert errcodes(api) == [42001, 42001]


async def test_tasks_and_processes_seeing_the_same_bad_token_refresh_once(clock, sessions, other_sessions):
    fetches: list[bool] = []

    async def fetch(force_refresh: bool) -> tuple[str, int]:
        fetches.append(force_refresh)
        await asyncio.sleep(0.01)
        return f"token-{len(fetches)}", 7200

    here, there = TokenStore(sessions, clock, poll_interval=0.01), TokenStore(other_sessions, clock, poll_interval=0.01)
    first = await here.get(APP_ID, fetch)
    assert await there.get(APP_ID, fetch) == first
    renewed = await asyncio.gather(*(
        store.get(APP_ID, fetch, force=True, failed_token=first) for store in (here, there, here, there)
    ))
    assert fetches == [False, True]
    assert set(renewed) == {"token-2"}


async def test_lease_of_a_dead_process_blocks_only_until_it_expires(api, clock, make_client, sessions):
    async with sessions.begin() as session:
        session.add(AccessToken(app_id=APP_ID, refresh_lease_until=clock.now() + LEASE))
    api.user_message(MEMBER)
    client = make_client(sessions, wait_limit=0.05)
    with pytest.raises(TokenUnavailable) as raised:
        await client.send_text(MEMBER, "通知")
    assert raised.value.transient
    assert api.token_fetches == 0

    clock.advance(seconds=31)
    await client.send_text(MEMBER, "通知")
    assert api.sent_texts(MEMBER) == ["通知"]
    async with sessions() as session:
        row = (await session.execute(select(AccessToken))).scalar_one()
    assert row.refresh_lease_until is None and row.token is not None


async def test_failed_fetch_releases_the_lease(clock, sessions):
    async def broken(force_refresh: bool) -> tuple[str, int]:
        raise RuntimeError("network down")

    async def working(force_refresh: bool) -> tuple[str, int]:
        return "token-ok", 7200

    with pytest.raises(RuntimeError):
        await TokenStore(sessions, clock).get(APP_ID, broken)
    # The clock stands still, so a lease left behind would block this other process past its wait limit.
    other_process = TokenStore(sessions, clock, poll_interval=0.01, wait_limit=0.05)
    assert await other_process.get(APP_ID, working) == "token-ok"


async def test_waiting_for_a_lease_is_bounded(clock, sessions):
    async def never_called(force_refresh: bool) -> tuple[str, int]:
        raise AssertionError("the lease holder refreshes, not the waiter")

    async with sessions.begin() as session:
        session.add(AccessToken(app_id=APP_ID, refresh_lease_until=clock.now() + LEASE))
    with pytest.raises(TokenRefreshTimeout):
        await TokenStore(sessions, clock, poll_interval=0.01, wait_limit=0.05).get(APP_ID, never_called)


async def test_wrong_secret_is_reported_without_retry(api, make_client, sessions):
    client = make_client(sessions, secret="not-the-secret")
    api.user_message(MEMBER)
    with pytest.raises(CredentialsRejected) as raised:
        await client.send_text(MEMBER, "通知")
    assert raised.value.errcode == 40125 and not raised.value.transient
    assert api.records == []


# Transient failures.

async def test_busy_wechat_is_retried_until_it_answers(api, client):
    api.user_message(MEMBER)
    api.fail_next("/message/custom/send", -1, times=2)
    await client.send_text(MEMBER, "通知")
    assert errcodes(api) == [-1, -1, 0]
    assert api.sent_texts(MEMBER) == ["通知"]


async def test_server_errors_and_busy_token_endpoint_are_retried(api, client):
    api.user_message(MEMBER)
    api.fail_next("/stable_token", -1)
    api.fail_next("/message/custom/send", -1, status=502)
    await client.send_text(MEMBER, "通知")
    assert errcodes(api) == [-1, 0]
    assert api.token_fetches == 1


async def test_busy_wechat_gives_up_after_max_attempts(api, make_client, sessions):
    client = make_client(sessions, max_attempts=3)
    api.user_message(MEMBER)
    api.fail_next("/message/custom/send", -1, times=10)
    with pytest.raises(SystemBusy) as raised:
        await client.send_text(MEMBER, "通知")
    assert raised.value.transient
    assert errcodes(api) == [-1, -1, -1]


async def test_unreachable_server_is_a_transient_error(clock, http, sessions):
    client = WeChatClient(http=http, app_id=APP_ID, app_secret=SECRET, api_base="http://127.0.0.1:9",
                          tokens=TokenStore(sessions, clock), max_attempts=2, backoff=0.01)
    with pytest.raises(TransportError) as raised:
        await client.send_text(MEMBER, "通知")
    assert raised.value.transient and raised.value.errcode is None


# The customer-service window and the other permanent refusals.

async def test_outside_the_48_hour_window_fails_without_retry(api, clock, client):
    api.user_message(MEMBER)
    clock.advance(hours=49)
    with pytest.raises(OutsideWindow) as raised:
        await client.send_text(MEMBER, "通知")
    assert raised.value.errcode == 45015 and not raised.value.transient
    assert "48 小时" in raised.value.reason
    assert errcodes(api) == [45015]


async def test_sixth_message_after_a_user_message_is_refused(api, client):
    api.user_message(MEMBER)
    for n in range(5):
        await client.send_text(MEMBER, f"第{n + 1}条")
    with pytest.raises(TooManyMessages):
        await client.send_text(MEMBER, "第6条")
    assert len(api.sent_texts(MEMBER)) == 5
    api.user_message(MEMBER)
    await client.send_text(MEMBER, "对方回复后又能发了")


async def test_menu_click_opens_three_messages_for_a_minute(api, clock, client):
    api.user_event(MEMBER, clock.now(), "CLICK")
    for n in range(3):
        await client.send_text(MEMBER, f"第{n + 1}条")
    with pytest.raises(TooManyMessages):
        await client.send_text(MEMBER, "第4条")
    api.user_event(MEMBER, clock.now(), "CLICK")
    clock.advance(seconds=61)
    with pytest.raises(OutsideWindow):
        await client.send_text(MEMBER, "一分钟后")


async def test_unsubscribed_user_cannot_be_reached_until_they_follow_again(api, clock, client):
    api.user_message(MEMBER)
    api.user_event(MEMBER, clock.now(), "unsubscribe")
    with pytest.raises(NotFollowing):
        await client.send_text(MEMBER, "通知")
    with pytest.raises(NotFollowing):
        await client.send_template(MEMBER, "tmpl-meeting", {"thing1": "支部党员大会"})
    api.user_event(MEMBER, clock.now(), "subscribe")
    await client.send_text(MEMBER, "欢迎回来")
    assert api.sent_texts(MEMBER) == ["欢迎回来"]


async def test_unknown_openid_is_invalid(api, client):
    with pytest.raises(InvalidOpenId) as raised:
        await client.send_text("o-nobody", "通知")
    assert raised.value.errcode == 40003
    assert errcodes(api) == [40003]


async def test_daily_quota_counts_all_messages_and_resets_the_next_day(api, clock, client):
    api.daily_quota = 2
    api.user_message(MEMBER)
    await client.send_text(MEMBER, "第1条")
    await client.send_template(MEMBER, "tmpl-meeting", {"thing1": "支部党员大会"})
    with pytest.raises(QuotaExceeded):
        await client.send_text(MEMBER, "第3条")
    assert errcodes(api) == [0, 45009]
    clock.advance(days=1)
    api.user_message(MEMBER)
    await client.send_text(MEMBER, "第二天")


# Template messages, QR codes, the menu.

async def test_template_reaches_a_member_outside_the_window(api, clock, client):
    api.user_message(MEMBER)
    clock.advance(hours=72)
    msgid = await client.send_template(MEMBER, "tmpl-meeting", {"thing1": "支部党员大会", "time2": "11月26日 09:00"},
                                       url="https://example.org/meeting/42")
    assert isinstance(msgid, int)
    [sent] = api.templates(MEMBER)
    assert sent["template_id"] == "tmpl-meeting"
    assert sent["data"] == {"thing1": {"value": "支部党员大会"}, "time2": {"value": "11月26日 09:00"}}
    assert sent["url"] == "https://example.org/meeting/42"


async def test_template_field_over_20_characters_is_refused(api, client):
    api.user_message(MEMBER)
    with pytest.raises(InvalidArgument) as raised:
        await client.send_template(MEMBER, "tmpl-meeting", {"thing1": "关于召开二〇二六年度组织生活会和民主评议党员的通知"})
    assert raised.value.errcode == 47003
    assert api.templates(MEMBER) == []


async def test_qr_code_remembers_its_scene(api, client):
    code = await client.create_qrcode("checkin:42")
    assert isinstance(code, QRCode)
    assert code.expire_seconds == 30 * 86400
    assert code.url.startswith("http")
    assert api.scene_for(code.ticket) == "checkin:42"
    [record] = api.records
    assert record.body["action_name"] == "QR_STR_SCENE"


async def test_menu_is_published(api, client):
    await client.create_menu(DEFAULT_MENU)
    assert api.menu == DEFAULT_MENU


@pytest.mark.parametrize("menu, errcode", [
    ({"button": [{"type": "click", "name": f"菜单{n}", "key": f"K{n}"} for n in range(4)]}, 40016),
    ({"button": [{"name": "我的", "sub_button": [{"type": "click", "name": "信息", "key": f"K{n}"} for n in range(6)]}]},
     40023),
    ({"button": [{"type": "click", "name": "帮助"}]}, 40019),
    ({"button": [{"type": "click", "name": "", "key": "HELP"}]}, 40018),
])
async def test_invalid_menu_is_refused_without_retry(api, client, menu, errcode):
    with pytest.raises(InvalidMenu) as raised:
        await client.create_menu(menu)
    assert raised.value.errcode == errcode
    assert errcodes(api, "menu") == [errcode]
    assert api.menu is None


# The emulated platform's token rules, seen from outside.

async def test_force_refresh_leaves_the_old_token_five_minutes(api, api_base, http, clock):
    async def stable_token(force: bool) -> str:
        body = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET, "force_refresh": force}
        async with http.post(f"{api_base}/cgi-bin/stable_token", json=body) as response:
            return (await response.json())["access_token"]

    async def menu_errcode(token: str) -> int:
        async with http.post(f"{api_base}/cgi-bin/menu/create", params={"access_token": token},
                             # As the client sends it: WeChat reads \uXXXX escapes literally (and counts them).
                             data=json.dumps(DEFAULT_MENU, ensure_ascii=False).encode("utf-8")) as response:
            return (await response.json())["errcode"]

    old = await stable_token(False)
    assert await stable_token(False) == old
    new = await stable_token(True)
    assert new != old
    assert await menu_errcode(old) == 0
    clock.advance(seconds=301)
    assert await menu_errcode(old) == 40001
    assert await menu_errcode(new) == 0
    clock.advance(seconds=7200)
    assert await menu_errcode(new) == 42001
    assert api.token_fetches == 3


def test_error_for_maps_codes_to_kinds():
    assert isinstance(error_for(45015, "x"), OutsideWindow)
    assert error_for(-1, "system error").transient
    unknown = error_for(48001, "api unauthorized")
    assert type(unknown) is WeChatError and not unknown.transient and "48001" in unknown.reason
