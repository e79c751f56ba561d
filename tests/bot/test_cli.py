"""The `zhibu` command as an operator uses it: init, import, list, serve, menu push, demo and chat."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.clock import Clock
from bot.config import DemoDefaults
from bot.wechat.emulator import Emulator
from conftest import POSTGRES_URL

ROSTER = """姓名,手机号,所属组织,职务,出生日期,入党日期,党员类别,困难党员,流动党员
李建国,13800000001,示范县委/城关镇党委/红旗村党支部,书记,1968-05-12,1995-07-01,正式党员,否,否
王秀英,13800000002,示范县委/城关镇党委/红旗村党支部/第一党小组,党员,1949/10/3,1972年6月20日,正式,是,否
"""


@pytest.fixture
def env(tmp_path) -> dict:
    values = {"ZHIBU_DATA_DIR": str(tmp_path / "data"), "ZHIBU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
              "ZHIBU_WECHAT_APP_ID": DemoDefaults.app_id, "ZHIBU_WECHAT_APP_SECRET": DemoDefaults.app_secret,
              "ZHIBU_WECHAT_TOKEN": DemoDefaults.token}
    return values


def run(env: dict, *args: str):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_init_import_and_list_members(env, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    assert run(env, "members", "list").exit_code != 0  # before init: a clear refusal
    assert "数据库已就绪" in run(env, "init").output
    first = run(env, "import", "members", str(roster))
    assert first.exit_code == 0 and "新增 2" in first.output
    again = run(env, "import", "members", str(roster))
    assert again.exit_code == 0 and "新增 0" in again.output
    listing = json.loads(run(env, "members", "list", "--json").output)
    assert [(row["name"], row["bound"], len(row["binding_code"])) for row in listing] == [
        ("李建国", False, 6), ("王秀英", False, 6)]
    table = run(env, "members", "list").output
    assert "李建国" in table and listing[0]["binding_code"] in table


def test_members_list_shows_when_binding_codes_expire(env, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    run(env, "init")
    imported_at = datetime.now(timezone.utc)
    assert run(env, "import", "members", str(roster)).exit_code == 0
    for row in json.loads(run(env, "members", "list", "--json").output):
        expires_in = datetime.fromisoformat(row["binding_code_expires_at"]) - imported_at
        assert timedelta(days=30) <= expires_in < timedelta(days=30, minutes=5)
        assert row["binding_code_expired"] is False
    assert "已过期" not in run(env, "members", "list").output

    asyncio.run(_expire_binding_code(env["ZHIBU_DATABASE_URL"], "王秀英"))
    listing = {row["name"]: row for row in json.loads(run(env, "members", "list", "--json").output)}
    assert listing["王秀英"]["binding_code_expired"] is True and listing["李建国"]["binding_code_expired"] is False
    lines = run(env, "members", "list").output.splitlines()
    assert f"{listing['王秀英']['binding_code']}（已过期）" in next(line for line in lines if line.startswith("王秀英"))
    assert "已过期" not in next(line for line in lines if line.startswith("李建国"))


async def _expire_binding_code(url: str, name: str) -> None:
    """As if the member's code had been issued 31 days ago and never used."""
    from sqlalchemy import select

    from storage.db import create_engine, session_factory
    from storage.models import Member

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            member = (await session.execute(select(Member).where(Member.name == name))).scalar_one()
            member.binding_code_expires_at = datetime.now(timezone.utc) - timedelta(days=1)
    finally:
        await engine.dispose()


def test_a_roster_with_errors_imports_nothing_and_says_where(env, tmp_path):
    roster = tmp_path / "bad.csv"
    roster.write_text(ROSTER + "张三,12345,示范县委/城关镇党委/红旗村党支部,党员,,,,,\n", encoding="utf-8")
    run(env, "init")
    result = run(env, "import", "members", str(roster))
    assert result.exit_code == 1 and "第 4 行" in result.output and "手机号" in result.output
    assert json.loads(run(env, "members", "list", "--json").output) == []
    partial = run(env, "import", "members", str(roster), "--allow-errors")
    assert partial.exit_code == 0
    assert len(json.loads(run(env, "members", "list", "--json").output)) == 2


def test_an_old_excel_file_gets_a_hint_instead_of_a_traceback(env, tmp_path):
    old_excel = tmp_path / "名册.xls"
    old_excel.write_bytes(b"\xd0\xcf\x11\xe0 not really excel")
    run(env, "init")
    result = CliRunner().invoke(main, ["import", "members", str(old_excel)], env=env)
    assert result.exit_code == 1 and "xlsx" in result.output and "Traceback" not in result.output


def test_serve_refuses_without_credentials(env):
    result = CliRunner().invoke(main, ["serve"], env={**env, "ZHIBU_WECHAT_TOKEN": ""})
    assert result.exit_code != 0 and "ZHIBU_WECHAT_TOKEN" in result.output


def test_a_bad_aes_key_is_a_clear_configuration_error(env):
    result = CliRunner().invoke(main, ["init"], env={**env, "ZHIBU_WECHAT_AES_KEY": "short"})
    assert result.exit_code == 2 and "ZHIBU_WECHAT_AES_KEY" in result.output


async def test_menu_push_sends_the_configured_menu(env, tmp_path, aiohttp_server):
    emulator = Emulator(app_id=DemoDefaults.app_id, app_secret=DemoDefaults.app_secret, token=DemoDefaults.token,
                        clock=Clock())
    server = await aiohttp_server(emulator.web_app())
    menu = {"button": [{"type": "click", "name": "签到", "key": "CHECKIN"}]}
    (tmp_path / "menu.json").write_text(json.dumps(menu, ensure_ascii=False), encoding="utf-8")
    env = {**env, "ZHIBU_WECHAT_API_BASE": str(server.make_url("")).rstrip("/"),
           "ZHIBU_MENU_FILE": str(tmp_path / "menu.json")}
    await asyncio.to_thread(run, env, "init")
    result = await asyncio.to_thread(run, env, "menu", "push")
    assert result.exit_code == 0 and "菜单已推送" in result.output
    assert emulator.api.menu == menu
    bad = {"button": [{"type": "click", "name": "签到"}]}  # a click button needs a key
    (tmp_path / "menu.json").write_text(json.dumps(bad, ensure_ascii=False), encoding="utf-8")
    failed = await asyncio.to_thread(lambda: CliRunner().invoke(main, ["menu", "push"], env=env))
    assert failed.exit_code == 1 and "菜单推送失败" in failed.output


def _zhibu(*args: str, env: dict, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", *args], env={**os.environ, **env},
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **options)


async def _wait_for(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


async def test_demo_serves_a_bound_member_and_a_terminal_chat_binds_a_newcomer(tmp_path):
    port, emulator_port = free_port(), free_port()
    env = {"ZHIBU_DATA_DIR": str(tmp_path / "demo-data"), "ZHIBU_DATABASE_URL": ""}
    demo = _zhibu("demo", "--no-chat", "--port", str(port), "--emulator-port", str(emulator_port), env=env)
    try:
        await _wait_for(f"http://127.0.0.1:{port}/healthz")
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{emulator_url}/emulator/send",
                                 json={"openid": "demo-member", "MsgType": "text", "Content": "我的"}) as response:
                assert "姓名：王秀英" in (await response.json())["reply"]
        members = subprocess.run([sys.executable, "-m", "bot.cli", "members", "list", "--json"], env={**os.environ, **env},
                                 capture_output=True, text=True, check=True)
        unbound = next(row for row in json.loads(members.stdout) if row["binding_code"])
        chat = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "bot.cli", "chat", "--user", "newcomer", "--url", emulator_url],
            input=f"绑定 {unbound['name']} {unbound['binding_code']}\n我的\n/位置 30.2 120.1 村委会\n/点击 HELP\n/退出\n",
            capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        assert f"绑定成功！{unbound['name']}" in chat.stdout
        assert f"姓名：{unbound['name']}" in chat.stdout
        assert "暂时不能处理这类消息" in chat.stdout and "您可以回复" in chat.stdout
    finally:
        demo.terminate()
        output, _ = demo.communicate(timeout=20)
    assert "支部助手演示已启动" in output and "demo-secretary" in output
    # The server's log lines went to the file the greeting names, not into the terminal.
    log_file = (tmp_path / "demo-data" / "demo.log").resolve()
    assert f"服务日志：{log_file}" in output and " INFO " not in output
    assert "webhook" in log_file.read_text(encoding="utf-8")

    # --reset starts from fresh demo data: the newcomer's member is unbound again, and the hint names a code.
    port, emulator_port = free_port(), free_port()
    again = _zhibu("demo", "--no-chat", "--reset", "--port", str(port), "--emulator-port", str(emulator_port),
                   env=env)
    try:
        await _wait_for(f"http://127.0.0.1:{port}/healthz")
    finally:
        again.terminate()
        output, _ = again.communicate(timeout=20)
    assert f"{unbound['name']} " in output.split("未绑定党员的绑定码：")[1]
    assert "试试绑定：/用户 new-user，然后发 绑定 " in output


def test_a_command_where_there_is_no_database_says_so_and_creates_nothing(tmp_path):
    missing = tmp_path / "nothing-here"
    result = CliRunner().invoke(main, ["members", "list"], env={"ZHIBU_DATA_DIR": str(missing),
                                                                "ZHIBU_DATABASE_URL": ""})
    assert result.exit_code != 0
    assert "这里没有数据库" in result.output and "zhibu init" in result.output and "ZHIBU_DATA_DIR" in result.output
    assert not missing.exists()


def test_log_lines_carry_the_configured_time_zone():
    import logging
    from zoneinfo import ZoneInfo

    from bot.cli import LOG_FORMAT, _LocalTimeFormatter

    record = logging.LogRecord("zhibu", logging.INFO, __file__, 1, "hello", None, None)
    record.created = datetime(2026, 12, 6, 2, 30, tzinfo=timezone.utc).timestamp()
    record.msecs = 0
    line = _LocalTimeFormatter(LOG_FORMAT, ZoneInfo("Asia/Shanghai")).format(record)
    assert line.startswith("2026-12-06 10:30:00,000 INFO zhibu: hello")


def test_the_terminal_chat_explains_scan_and_click_without_their_argument():
    from bot.wechat.chat import parse_command

    assert "/扫码 meeting:1" in parse_command("/扫码")
    assert "/点击 HELP" in parse_command("/点击")
    assert parse_command("/扫码 meeting:3")["EventKey"] == "meeting:3"


@pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL (ZHIBU_TEST_POSTGRES_URL; CI sets it)")
def test_serve_fits_every_workers_pool_into_what_postgresql_allows(monkeypatch, capsys):
    """`zhibu serve --workers N` on PostgreSQL: N processes each holding a pool of ZHIBU_DATABASE_POOL_SIZE must not
    ask for more connections than the server allows, or messages fail at the busiest moment. The pool is made
    smaller, and the operator told; when not even the smallest fits, the server refuses to start."""
    import click

    from bot.cli import CONNECTIONS_BESIDE_POOL, CONNECTIONS_FOR_COMMANDS, _fit_connection_pool
    from bot.config import Settings
    from storage.db import postgres_connections_allowed

    monkeypatch.setenv("ZHIBU_DATABASE_POOL_SIZE", "30")  # put back after the test
    allowed = asyncio.run(postgres_connections_allowed(POSTGRES_URL))
    settings = Settings(database_url=POSTGRES_URL, database_pool_size=30)
    one_process = 30 + CONNECTIONS_BESIDE_POOL + CONNECTIONS_FOR_COMMANDS
    assert allowed >= one_process  # a stock server (max_connections 100) takes one process as configured
    _fit_connection_pool(settings, 1)
    assert os.environ["ZHIBU_DATABASE_POOL_SIZE"] == "30" and capsys.readouterr().err == ""

    workers = allowed // (30 + CONNECTIONS_BESIDE_POOL) + 1  # more than fit with pools of 30
    _fit_connection_pool(settings, workers)
    fitted = int(os.environ["ZHIBU_DATABASE_POOL_SIZE"])
    assert 2 <= fitted < 30
    assert workers * (fitted + CONNECTIONS_BESIDE_POOL) + CONNECTIONS_FOR_COMMANDS <= allowed
    assert f"每个的连接池用 {fitted} 个" in capsys.readouterr().err

    with pytest.raises(click.ClickException) as refused:
        _fit_connection_pool(settings, allowed)
    assert "max_connections" in refused.value.message


def test_serve_says_plainly_when_postgresql_cannot_be_reached(env):
    """The first thing `zhibu serve` asks PostgreSQL is how many connections it allows: a server that is down or a
    wrong address is a one-line refusal naming the setting, not a traceback."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    result = CliRunner().invoke(main, ["serve"], env={**env, "ZHIBU_DATABASE_URL": url})
    assert result.exit_code == 1 and "连不上 PostgreSQL" in result.output and "ZHIBU_DATABASE_URL" in result.output
    assert "Traceback" not in result.output
