"""The whole service on a test server, with the emulator playing WeChat on both sides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest
from aiohttp import web

from bot.app import CONFIGS, DISPATCHER, OUTBOX, PROVIDED, build_app
from bot.web.pages import LINKS
from bot.clock import ManualClock
from bot.config import DemoDefaults, Settings
from bot.dispatch import Dispatcher, JobContext
from bot.outbox import Outbox
from bot.wechat.emulator import Emulator
from storage.models import MemberCategory, Role


# A test whose subject never reaches the database (the Q&A index, a content reload) runs on SQLite alone
# rather than once per engine: a second run would test the same code again.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Service:
    """The bot served over HTTP, with the emulator playing WeChat on both sides."""

    app: web.Application
    emulator: Emulator
    clock: ManualClock
    settings: Settings
    url: str

    @property
    def dispatcher(self) -> Dispatcher:
        return self.app[DISPATCHER]

    @property
    def outbox(self) -> Outbox:
        """The delivery engine. Its workers do not run in tests unless asked (outbox_enabled=True):
        tests deliver with `await service.outbox.run_until_idle()`."""
        return self.app[OUTBOX]

    @property
    def sessions(self):
        return self.dispatcher.sessions

    def config(self, kind):
        """A feature's settings as this service runs with them (kind: its Settings subclass)."""
        return self.app[CONFIGS].of(kind)

    def job_context(self, kind=None) -> JobContext:
        """What a scheduled job of the feature with settings kind gets, to run one by hand."""
        return JobContext(sessions=self.sessions, clock=self.clock, settings=self.config(kind),
                          configs=self.app[CONFIGS], provided=self.app[PROVIDED])

    async def deliver(self) -> None:
        """Let handlers still running finish, then send everything the outbox holds that is due."""
        await self.dispatcher.drain()
        await self.outbox.run_until_idle()

    async def say(self, openid: str, text: str) -> str | None:
        """What the user sees after typing text (None when the bot answers nothing)."""
        return (await self.emulator.text(openid, text)).reply

    def pushed(self, openid: str) -> list[str]:
        return self.emulator.api.sent_texts(openid)

    async def add_member(self, name: str, org_path: str = "示范县委/城关镇党委/红旗村党支部", *, role=None,
                         phone: str = "", **fields) -> tuple[int, str]:
        """A member from the roster; returns (member id, binding code)."""
        from storage.members import MemberFields, upsert_member

        values = dict(name=name, phone=phone, org_path=org_path, role=role or Role.MEMBER,
                      birth_date=date(1960, 1, 1), join_date=date(1990, 7, 1), category=MemberCategory.FULL,
                      hardship=False, away_from_home=False)
        values.update(fields)
        async with self.sessions() as session, session.begin():
            member, _ = await upsert_member(session, MemberFields(**values), now=self.clock.now())
            return member.id, member.binding_code

    async def bind(self, openid: str, name: str, **fields) -> int:
        """A member who has bound their WeChat through the chat, as they would."""
        member_id, code = await self.add_member(name, **fields)
        reply = await self.say(openid, f"绑定 {name} {code}")
        assert reply is not None and "绑定成功" in reply, reply
        return member_id


@pytest.fixture
async def make_service(database_url, aiohttp_server):
    """make_service(safe=False, **settings) → a running Service on a fresh database."""
    created: list[Service] = []

    async def make(*, safe: bool = False, routers=None, reply_timeout: float = 25.0, **overrides) -> Service:
        # A busy test machine (two workers, a browser) can take seconds over a message; tests of the reply
        # budget set their own. Elsewhere a late reply would only turn a reply into a push, not find a bug.
        overrides.setdefault("reply_budget", 20.0)
        clock = ManualClock()
        # The account's identity; a test may give another (a real key pair from the corpus).
        account = dict(wechat_app_id=DemoDefaults.app_id, wechat_token=DemoDefaults.token,
                       wechat_aes_key=DemoDefaults.aes_key if safe else "")
        account.update({name: overrides.pop(name) for name in list(account) if name in overrides})
        emulator = Emulator(app_id=account["wechat_app_id"], app_secret=DemoDefaults.app_secret,
                            token=account["wechat_token"], aes_key=account["wechat_aes_key"], clock=clock,
                            reply_timeout=reply_timeout)
        emulator_server = await aiohttp_server(emulator.web_app())
        # The core's settings go to Settings; the rest are features' (build_app refuses a name nobody has).
        core = {name: overrides.pop(name) for name in list(overrides) if name in Settings.model_fields}
        settings = Settings(_env_file=None, database_url=database_url, wechat_app_secret=DemoDefaults.app_secret,
                            wechat_api_base=str(emulator_server.make_url("")).rstrip("/"),
                            **account, **{"outbox_enabled": False, "link_keys": ["test-link-key"], **core})
        app = build_app(settings, clock=clock, routers=routers, overrides=overrides, env_file=None)
        server = await aiohttp_server(app)
        emulator.webhook_url = str(server.make_url("/wechat"))
        # Links in messages point at this test server (a deployment sets ZHIBU_PUBLIC_URL).
        app[LINKS].public_url = str(server.make_url("")).rstrip("/")
        service = Service(app=app, emulator=emulator, clock=clock, settings=settings, url=str(server.make_url("")))
        created.append(service)
        return service

    yield make
    for service in created:
        await service.dispatcher.drain()


@pytest.fixture
async def service(make_service) -> Service:
    return await make_service()


# ---------------------------------------------------------------- a branch to test features with

TOWN = "示范县委/城关镇党委"
HONGQI = f"{TOWN}/红旗村党支部"
DONGFENG = f"{TOWN}/东风村党支部"


async def hongqi_branch(service) -> dict[str, str]:
    """The Hongqi branch with a secretary, a committee member, two groups and members; name → openid."""
    people = {
        "李建国": dict(org_path=HONGQI, role=Role.SECRETARY, phone="13800000001"),
        "张卫东": dict(org_path=HONGQI + "/第一党小组", role=Role.COMMITTEE_MEMBER, phone="13800000003"),
        "王秀英": dict(org_path=HONGQI + "/第一党小组", birth_date=date(1949, 10, 3), phone="13800000002"),
        "刘小梅": dict(org_path=HONGQI + "/第二党小组", away_from_home=True, phone="13800000004"),
        "陈志强": dict(org_path=HONGQI + "/第二党小组", category=MemberCategory.PROBATIONARY, phone="13800000005"),
    }
    openids = {}
    for index, (name, fields) in enumerate(people.items()):
        openids[name] = f"hq-{index}"
        await service.bind(openids[name], name, **fields)
    # No smartphone: on the roster, never bound.
    await service.add_member("赵德明", HONGQI + "/第一党小组", birth_date=date(1941, 2, 2))
    return openids
