"""`zhibu demo`: a demo county with members, the emulator and the server in one process, and a chat.

Everything runs on the embedded defaults: SQLite in the data folder and the demo credentials, so
nothing here ever talks to the real WeChat.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from bot.app import build_app
from bot.clock import Clock
from bot.config import Configs, DemoDefaults, Settings
from bot.wechat.chat import run_chat, stdin_is_interactive
from bot.wechat.emulator import Emulator
from handlers.membership import MembershipSettings
from storage.db import create_engine, session_factory, upgrade_schema_async
from storage.members import MemberFields, binding_code_expired, issue_binding_code, upsert_member
from storage.models import MemberCategory, Role, WeChatIdentity

BRANCH = "示范县委/城关镇党委/红旗村党支部"
DEMO_MEMBER_OPENID = "demo-member"
DEMO_SECRETARY_OPENID = "demo-secretary"

# (name, phone, org path below the county, role, birth, joined, category, hardship, away)
DEMO_PEOPLE = [
    ("李建国", "13800000001", BRANCH, Role.SECRETARY, date(1968, 5, 12), date(1995, 7, 1), MemberCategory.FULL, False, False),
    ("王秀英", "13800000002", BRANCH + "/第一党小组", Role.MEMBER, date(1949, 10, 3), date(1972, 6, 20), MemberCategory.FULL, True, False),
    ("张卫东", "13800000003", BRANCH + "/第一党小组", Role.COMMITTEE_MEMBER, date(1975, 3, 8), date(2001, 7, 1), MemberCategory.FULL, False, False),
    ("刘小梅", "13800000004", BRANCH + "/第二党小组", Role.MEMBER, date(1990, 8, 15), date(2018, 6, 30), MemberCategory.FULL, False, True),
    ("陈志强", "13800000005", BRANCH + "/第二党小组", Role.MEMBER, date(1998, 1, 20), date(2025, 12, 1), MemberCategory.PROBATIONARY, False, False),
    ("赵德明", "", BRANCH + "/第一党小组", Role.MEMBER, date(1941, 2, 2), date(1965, 3, 1), MemberCategory.FULL, False, False),
    ("周晓燕", "13800000007", "示范县委/城关镇党委", Role.STAFF, date(1985, 11, 11), date(2008, 7, 1), MemberCategory.FULL, False, False),
]
PREBOUND = {"王秀英": DEMO_MEMBER_OPENID, "李建国": DEMO_SECRETARY_OPENID}


def demo_settings(base: Settings, *, port: int, emulator_port: int) -> Settings:
    return base.model_copy(update={
        "wechat_app_id": DemoDefaults.app_id, "wechat_app_secret": DemoDefaults.app_secret,
        "wechat_token": DemoDefaults.token, "wechat_aes_key": "",
        "wechat_api_base": f"http://127.0.0.1:{emulator_port}", "host": "127.0.0.1", "port": port,
        # The emulator accepts any template id: members who have not chatted yet still get notices.
        "wechat_templates": {"default": "DEMO-TEMPLATE"},
    })


async def seed_demo(settings: Settings, clock: Clock) -> tuple[dict[str, str], list[str]]:
    """Create the demo tree and members (idempotent). Returns the binding codes of those not yet
    bound, and every follower on record (the emulator forgets them between runs; WeChat would not)."""
    await upgrade_schema_async(settings.effective_database_url)
    engine = create_engine(settings.effective_database_url)
    sessions = session_factory(engine)
    codes: dict[str, str] = {}
    code_days = Configs(settings).of(MembershipSettings).binding_code_days
    try:
        async with sessions() as session, session.begin():
            for name, phone, path, role, born, joined, category, hardship, away in DEMO_PEOPLE:
                member, _ = await upsert_member(session, MemberFields(
                    name=name, phone=phone, org_path=path, role=role, birth_date=born, join_date=joined,
                    category=category, hardship=hardship, away_from_home=away), now=clock.now())
                openid = PREBOUND.get(name)
                if openid and await session.get(WeChatIdentity, openid) is None:
                    taken = (await session.execute(
                        select(WeChatIdentity).where(WeChatIdentity.member_id == member.id))).scalar_one_or_none()
                    if taken is None:
                        session.add(WeChatIdentity(openid=openid, member_id=member.id, first_seen_at=clock.now(),
                                                   bound_at=clock.now()))
                        member.binding_code = None
                bound = (await session.execute(
                    select(WeChatIdentity.openid).where(WeChatIdentity.member_id == member.id))).first()
                if bound is None and (member.binding_code is None
                                      or binding_code_expired(member.binding_code_expires_at, clock.now())):
                    # A demo folder from last month: its codes expired; the hint must name one that works.
                    await issue_binding_code(session, member, now=clock.now(), days=code_days)
                if member.binding_code:
                    codes[name] = member.binding_code
            followers = list((await session.execute(
                select(WeChatIdentity.openid).where(WeChatIdentity.subscribed.is_(True)))).scalars())
    finally:
        await engine.dispose()
    return codes, followers


def remove_demo_database(settings: Settings) -> None:
    """Delete the embedded SQLite database (with its WAL files), so the demo seeds afresh."""
    database = settings.data_dir / "zhibu.db"
    for path in (database, database.with_name("zhibu.db-wal"), database.with_name("zhibu.db-shm")):
        path.unlink(missing_ok=True)


def greeting(settings: Settings, codes: dict[str, str], emulator_url: str, log_file: Path | None = None) -> str:
    lines = [
        "支部助手演示已启动：",
        f"  · 服务（webhook）：http://{settings.host}:{settings.port}/wechat",
        f"  · 微信模拟器：{emulator_url}",
        f"  · 数据库：{settings.effective_database_url}",
        *([f"  · 服务日志：{log_file}"] if log_file else []),
        f"你是党员 王秀英（{DEMO_MEMBER_OPENID}，已绑定）。试试：帮助、我的。",
        f"切换成支部书记 李建国：输入 /用户 {DEMO_SECRETARY_OPENID}",
    ]
    if codes:
        name, code = next(iter(codes.items()))
        lines.append(f"试试绑定：/用户 new-user，然后发 绑定 {name} {code}")
        lines.append("未绑定党员的绑定码：" + "，".join(f"{n} {c}" for n, c in codes.items()))
    else:
        lines.append("演示党员都已绑定过；想从头再试绑定，用 zhibu demo --reset 重新开始。")
    return "\n".join(lines)


async def run_demo(base: Settings, *, port: int, emulator_port: int, chat: bool, log_file: Path | None = None) -> None:
    settings = demo_settings(base, port=port, emulator_port=emulator_port)
    clock = Clock()
    codes, followers = await seed_demo(settings, clock)
    emulator = Emulator(app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
                        token=settings.wechat_token, webhook_url=f"http://127.0.0.1:{port}/wechat", clock=clock)
    for openid in followers:
        emulator.api.add_follower(openid)
    runners = []
    try:
        for app, bind_port in ((emulator.web_app(), emulator_port), (build_app(settings, clock=clock), port)):
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)  # as `zhibu serve`
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", bind_port).start()
            runners.append(runner)
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        text = greeting(settings, codes, emulator_url, log_file)
        if chat and stdin_is_interactive():
            await run_chat(emulator_url, DEMO_MEMBER_OPENID, greeting=text)
        else:
            print(text)
            print(f"在另一个终端运行 zhibu chat --user {DEMO_MEMBER_OPENID} 开始聊天；按 Ctrl+C 结束演示。", flush=True)
            await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
