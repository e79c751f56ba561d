"""The `zhibu` command."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
from aiohttp import web
from pydantic import ValidationError

from bot.clock import Clock
from bot.config import Configs, DemoDefaults, Settings, SettingsT

log = logging.getLogger("zhibu")


def _settings(kind: type[SettingsT] = Settings) -> SettingsT:
    """The core settings, or a feature's (a subclass of Settings), from the environment."""
    try:
        return kind()
    except ValidationError as error:
        for problem in error.errors():
            click.echo(f"配置错误 ZHIBU_{str(problem['loc'][0]).upper()}: {problem['msg']}", err=True)
        sys.exit(2)


class _LocalTimeFormatter(logging.Formatter):
    """Log times in the configured zone (ZHIBU_TIMEZONE), the clock the staff reading them live by."""

    def __init__(self, fmt: str, zone) -> None:
        super().__init__(fmt)
        self.zone = zone

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        moment = datetime.fromtimestamp(record.created, self.zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S") + f",{int(record.msecs):03d}"


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _zone():
    try:
        return Settings().zone
    except Exception:  # a bad setting is reported by the command itself, in Chinese
        return timezone.utc


def _logging(verbose: bool, *, to_file: Path | None = None) -> None:
    handler = logging.FileHandler(to_file, encoding="utf-8") if to_file else logging.StreamHandler()
    handler.setFormatter(_LocalTimeFormatter(LOG_FORMAT, _zone()))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    # SQL and access logs drown the lines that matter; --verbose brings them back.
    if not verbose:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.pass_context
def main(context: click.Context, verbose: bool) -> None:
    """支部助手 (zhibu): a WeChat bot for rural party branches."""
    context.obj = {"verbose": verbose}
    _logging(verbose)


def _require_database(settings: Settings) -> str:
    """The database URL, once it is known to exist: the embedded SQLite file is created only by
    `zhibu init` (or the demo), never as a side effect of a command run in the wrong folder."""
    url = settings.effective_database_url
    if not settings.database_url:
        path = (settings.data_dir / "zhibu.db").resolve()
        if not path.exists():
            raise click.ClickException(f"这里没有数据库：{path}。请先运行 zhibu init，或设置 ZHIBU_DATA_DIR "
                                       "指向已有的数据文件夹（或用 ZHIBU_DATABASE_URL 指定数据库）。")
    return url


@main.command()
def init() -> None:
    """Create the database schema, or upgrade it to the newest version."""
    from storage.db import upgrade_schema

    settings = _settings()
    upgrade_schema(settings.effective_database_url)
    click.echo(f"数据库已就绪：{settings.effective_database_url}")


@main.command()
@click.option("--host", default=None, help="Address to listen on (default ZHIBU_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default ZHIBU_PORT or 8080).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the port (SO_REUSEPORT) and the database; one of them runs the jobs.")
@click.pass_context
def serve(context: click.Context, host: str | None, port: int | None, workers: int) -> None:
    """Run the webhook server (GET|POST /wechat, GET /healthz)."""
    settings = _settings()
    missing = [name for name, value in (("ZHIBU_WECHAT_TOKEN", settings.wechat_token),
                                        ("ZHIBU_WECHAT_APP_ID", settings.wechat_app_id),
                                        ("ZHIBU_WECHAT_APP_SECRET", settings.wechat_app_secret)) if not value]
    if missing:
        raise click.ClickException("缺少配置：" + "、".join(missing) + "（见 README 的“接入公众号”）")
    _require_database(settings)
    from storage.db import is_sqlite

    if not is_sqlite(settings.effective_database_url):
        _fit_connection_pool(settings, workers)
    host, port = host or settings.host, port or settings.port
    if workers == 1:
        _serve(host, port, reuse_port=False, own_pid_file=True, stop_signals=(signal.SIGINT, signal.SIGTERM))
        return
    from bot.app import pid_file
    from bot.workers import Supervisor

    click.echo(f"在 http://{host}:{port} 启动 {workers} 个服务进程（Ctrl+C 停止）")
    supervisor = Supervisor(workers, _serve_worker, (host, port, context.obj["verbose"]), pid_path=pid_file(settings))
    sys.exit(supervisor.run())


# Connections a server process holds besides its pool: the intake's (bot.app.INTAKE_POOL_SIZE), and at times the
# scheduler leader's lock and the job store's.
CONNECTIONS_BESIDE_POOL = 5
# Left for the `zhibu` commands run beside the server (an import, a content check) and for psql.
CONNECTIONS_FOR_COMMANDS = 5


def _fit_connection_pool(settings: Settings, workers: int) -> None:
    """On PostgreSQL: every process holds its pool open, and once the server refuses a connection, messages fail
    (at the busiest moment, when the pools fill). The pool is made to fit: when workers × (pool + the rest) is
    more than the server allows, each process's pool is made smaller, and said so; when not even a pool of 2
    fits, the server is not started."""
    from storage.db import postgres_connections_allowed, short_error

    try:
        allowed = asyncio.run(postgres_connections_allowed(settings.effective_database_url))
    except Exception as error:  # the server would fail its first statement the same way: say it plainly now
        raise click.ClickException(f"连不上 PostgreSQL（{short_error(error)}）：检查 ZHIBU_DATABASE_URL，"
                                   "以及数据库是否在运行") from error
    fits = (allowed - CONNECTIONS_FOR_COMMANDS) // workers - CONNECTIONS_BESIDE_POOL
    if fits >= settings.database_pool_size:
        return
    if fits < 2:
        raise click.ClickException(
            f"PostgreSQL 只允许 {allowed} 个连接，不够 {workers} 个服务进程用（每个进程至少要 "
            f"{2 + CONNECTIONS_BESIDE_POOL} 个，另留 {CONNECTIONS_FOR_COMMANDS} 个给命令行）：少开几个进程，或调大 "
            "PostgreSQL 的 max_connections")
    log.warning("PostgreSQL allows %d connections: the pool of each of %d process(es) is %d, not %d "
                "(ZHIBU_DATABASE_POOL_SIZE)", allowed, workers, fits, settings.database_pool_size)
    click.echo(f"PostgreSQL 只允许 {allowed} 个连接：{workers} 个服务进程每个的连接池用 {fits} 个"
               f"（ZHIBU_DATABASE_POOL_SIZE 是 {settings.database_pool_size}）", err=True)
    # Read by _settings() in this process and in every worker it spawns.
    os.environ["ZHIBU_DATABASE_POOL_SIZE"] = str(fits)


def _serve_worker(host: str, port: int, verbose: bool, slot: int) -> None:
    """One of `serve --workers N`'s processes (started by bot.workers.Supervisor)."""
    # The supervisor stops its workers with SIGTERM; Ctrl+C in the terminal reaches it and them alike,
    # and one orderly stop is enough.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _logging(verbose)
    _serve(host, port, reuse_port=True, own_pid_file=False, stop_signals=(signal.SIGTERM,))


# The collector's youngest generation is examined after this many new objects (Python's default is 700). Under
# load every collection also walks what the messages in flight hold, so at 700 the server spent about 13 µs of each
# message's CPU collecting; at 3,000 about 3 µs, the second generation's rarer passes taking some 7 ms each
# (bench/webhook.py: p99 at 200 messages a second unchanged within its noise).
SERVER_GC_THRESHOLD = 3_000


def _serve(host: str, port: int, *, reuse_port: bool, own_pid_file: bool, stop_signals: tuple[int, ...]) -> None:
    import gc

    from bot.app import ENGINE, build_app, reload_on_signal, stop_on_signals
    from storage.db import schema_is_current

    _, older, oldest = gc.get_threshold()
    gc.set_threshold(SERVER_GC_THRESHOLD, older, oldest)
    settings = _settings()
    app = build_app(settings)

    async def require_schema(app: web.Application) -> None:
        if not await schema_is_current(app[ENGINE]):
            raise click.ClickException("数据库结构不是最新的，请先运行 zhibu init")

    app.on_startup.append(require_schema)
    # `zhibu content reload` finds the server through the pid file and sends SIGHUP (to the supervisor,
    # which passes it on, when there are several workers).
    app.cleanup_ctx.append(reload_on_signal(settings, write_pid_file=own_pid_file))
    # A stop signal stops the server once, however often it comes (instead of aiohttp's handle_signals).
    app.cleanup_ctx.insert(0, stop_on_signals(*stop_signals))
    # handler_cancellation: a request WeChat hung up on stops there (a message not yet claimed comes again with
    # WeChat's retry; one being handled is finished and its reply pushed), instead of piling up under load.
    web.run_app(app, host=host, port=port, access_log=None, reuse_port=reuse_port or None, handler_cancellation=True,
                handle_signals=False, print=(lambda text: click.echo(text)) if own_pid_file else None)


@main.command()
@click.option("--port", type=int, default=8080, show_default=True, help="Port of the bot's webhook server.")
@click.option("--emulator-port", type=int, default=8081, show_default=True, help="Port of the WeChat emulator.")
@click.option("--no-chat", is_flag=True, help="Only serve; chat from another terminal with `zhibu chat`.")
@click.option("--reset", is_flag=True, help="Start again from fresh demo data (the embedded SQLite only).")
@click.pass_context
def demo(context: click.Context, port: int, emulator_port: int, no_chat: bool, reset: bool) -> None:
    """Run a demo: demo data, the emulator and the server together, and a terminal chat."""
    from bot.demo import remove_demo_database, run_demo

    settings = _settings()
    if reset:
        if settings.database_url:
            raise click.ClickException("--reset 只清空内置的 SQLite 演示数据库；设置了 ZHIBU_DATABASE_URL 时请自己清空那个库。")
        remove_demo_database(settings)
    # The server's log lines would break into the terminal chat: they go to a file named at start.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_file = (settings.data_dir / "demo.log").resolve()
    _logging(context.obj["verbose"], to_file=log_file)
    try:
        asyncio.run(run_demo(settings, port=port, emulator_port=emulator_port, chat=not no_chat, log_file=log_file))
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--user", "openid", default="demo-member", show_default=True, help="The WeChat openid to chat as.")
@click.option("--url", default="http://127.0.0.1:8081", show_default=True, help="The emulator's address.")
def chat(openid: str, url: str) -> None:
    """Chat in the terminal as a WeChat user, through the emulator."""
    from bot.wechat.chat import run_chat

    try:
        asyncio.run(run_chat(url.rstrip("/"), openid))
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--port", type=int, default=8081, show_default=True)
@click.option("--webhook", default=None, help="Webhook to post users' messages to (default: this machine's serve).")
def emulator(port: int, webhook: str | None) -> None:
    """Run the local fake WeChat platform (API endpoints and the server that posts to the webhook)."""
    from bot.wechat.emulator import Emulator

    settings = _settings()
    emulated = Emulator(
        app_id=settings.wechat_app_id or DemoDefaults.app_id,
        app_secret=settings.wechat_app_secret or DemoDefaults.app_secret,
        token=settings.wechat_token or DemoDefaults.token, aes_key=settings.wechat_aes_key,
        webhook_url=webhook or f"http://127.0.0.1:{settings.port}/wechat", clock=Clock())
    web.run_app(emulated.web_app(), host="127.0.0.1", port=port, access_log=None,
                print=lambda text: click.echo(text))


@main.group("import")
def import_group() -> None:
    """Import data from files."""


@import_group.command("members")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--allow-errors", is_flag=True, help="Import the valid rows even if some rows have errors.")
def import_members_command(file: Path, allow_errors: bool) -> None:
    """Import members from a CSV or XLSX file with Chinese headers (姓名, 所属组织, …)."""
    from handlers.membership import MembershipSettings
    from handlers.membership.roster import RosterFileError, import_members

    try:
        settings = _settings(MembershipSettings)
        report = asyncio.run(_with_sessions(lambda sessions: import_members(
            sessions, file, now=Clock().now(), allow_errors=allow_errors, zone=settings.zone,
            code_days=settings.binding_code_days)))
    except RosterFileError as error:
        raise click.ClickException(str(error)) from error
    click.echo(report.describe())
    if report.errors and not report.imported:
        sys.exit(1)


@main.group()
def members() -> None:
    """Members and their binding codes."""


@members.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for other tools.")
def members_list(as_json: bool) -> None:
    """List members with their organization, role, and binding code (marked when expired) or binding state."""
    from handlers.membership.roster import format_member_table, member_listing_json

    rows = asyncio.run(_with_sessions(lambda sessions: member_listing_json(sessions, Clock().now())))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        click.echo(format_member_table(rows))


@main.group()
def staff() -> None:
    """Secretaries and organization staff who use the web console."""


@staff.command("passwd")
@click.argument("name")
@click.option("--org", "org_path", default=None,
              help="Organization path when several secretaries or staff share the name, e.g. 示范县委/城关镇党委.")
def staff_passwd(name: str, org_path: str | None) -> None:
    """Set a console password for NAME (a secretary, deputy or staff member), for computers that cannot scan.
    Their console sessions end."""
    from handlers.console.passwords import PasswordError, check_new_password, find_console_member, hash_password, \
        save_password

    async def find(sessions):
        async with sessions() as session:
            member = await find_console_member(session, name, org_path)
            return member.id, member.name, member.role

    try:
        member_id, member_name, role = asyncio.run(_with_sessions(find))
    except PasswordError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"为 {member_name}（{role}）设置后台密码，至少 8 位。")
    while True:
        password = click.prompt("新密码", hide_input=True, confirmation_prompt="再输一次")
        try:
            check_new_password(password)
            break
        except PasswordError as error:
            click.echo(str(error), err=True)
    password_hash = hash_password(password)

    async def store(sessions):
        from storage.models import Member

        async with sessions() as session, session.begin():
            member = await session.get(Member, member_id)
            if member is None:
                raise PasswordError(f"{member_name} 已不在名册上。")
            await save_password(session, member, password_hash, Clock().now())

    try:
        asyncio.run(_with_sessions(store))
    except PasswordError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"已设置。{member_name} 可以在登录页面点“用密码登录”，填姓名和这个密码；原来的后台登录都已结束。")


@main.group("export")
def export_group() -> None:
    """Export records to files."""


@export_group.command("attendance")
@click.option("--org", "org_path", required=True, help="Organization path, e.g. 示范县委/城关镇党委/红旗村党支部.")
@click.option("--from", "start_text", required=True, help="First day, YYYY-MM-DD (local date).")
@click.option("--to", "end_text", required=True, help="Last day, YYYY-MM-DD (inclusive).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (.xlsx or .csv); default attendance-<org>-<from>-<to>.xlsx here.")
def export_attendance_command(org_path: str, start_text: str, end_text: str, out: Path | None) -> None:
    """Meeting sign-in sheets of an organization and its branches: XLSX (a sheet per meeting) or CSV."""
    from handlers.meetings.export import ExportError, export_attendance, parse_day

    settings = _settings()
    try:
        start, end = parse_day(start_text, "--from"), parse_day(end_text, "--to")
        result = asyncio.run(_with_sessions(lambda sessions: export_attendance(
            sessions, org_path=org_path, start=start, end=end, out=out, zone=settings.zone)))
    except ExportError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"已导出 {result.meetings} 次会议的签到表。", err=True)
    click.echo(str(result.path))


@export_group.command("care")
@click.option("--org", "org_path", required=True, help="Organization path, e.g. 示范县委/城关镇党委/红旗村党支部.")
@click.option("--year", type=int, required=True, help="The year whose visits are listed, e.g. 2026.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (.xlsx); default 关怀走访台账-<org>-<year>.xlsx here.")
def export_care_command(org_path: str, year: int, out: Path | None) -> None:
    """The care ledger of an organization and its branches: the hardship register and the year's visits (XLSX)."""
    from handlers.care.export import CareExportError, export_care

    settings = _settings()
    try:
        result = asyncio.run(_with_sessions(lambda sessions: export_care(
            sessions, org_path=org_path, year=year, out=out, zone=settings.zone)))
    except CareExportError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"已导出困难党员 {result.members} 人、走访 {result.visits} 次。", err=True)
    click.echo(str(result.path))


@export_group.command("study")
@click.option("--org", "org_path", required=True, help="Organization path, e.g. 示范县委/城关镇党委/红旗村党支部.")
@click.option("--year", type=int, required=True, help="The year whose hours are listed, e.g. 2026.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (.xlsx or .csv); default 学习学时-<org>-<year>.xlsx here.")
def export_study_command(org_path: str, year: int, out: Path | None) -> None:
    """The members' study hours for a year, in roster order (name, branch, items, meetings, total, requirement)."""
    from handlers.study.export import StudyExportError, export_study
    from handlers.study.settings import StudySettings
    from storage.orgs import InvalidOrgPath

    settings = _settings(StudySettings)
    try:
        result = asyncio.run(_with_sessions(lambda sessions: export_study(
            sessions, org_path=org_path, year=year, out=out, settings=settings)))
    except (StudyExportError, InvalidOrgPath) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"已导出 {result.members} 名党员的学时。", err=True)
    click.echo(str(result.path))


@main.group()
def study() -> None:
    """Study items added by staff (the content/study files are checked by `zhibu content check`)."""


@study.command("add")
@click.option("--org", "org_path", required=True, help="The publishing organization's path, e.g. 示范县委/城关镇党委.")
@click.option("--title", required=True, help="The title (at most 100 characters).")
@click.option("--summary", required=True, help="A few lines to read, as they should be shown.")
@click.option("--starts", required=True, help="First day of the period, YYYY-MM-DD.")
@click.option("--ends", required=True, help="Last day of the period, YYYY-MM-DD.")
@click.option("--minutes", required=True, help="Estimated minutes (1-600).")
@click.option("--link", default="", help="An optional link to the original (https://…).")
@click.option("--doc", default="", help="An optional curated document of content/docs: its id or title.")
@click.option("--question", "questions", multiple=True, help="A check question (up to 3; repeat the option).")
@click.option("--options", "options", multiple=True,
              help="The options of the question in the same place, separated by | or ／, e.g. \"16个学时|32个学时\".")
@click.option("--answer", "answers", multiple=True, help="The right option's number (from 1) of that question.")
def study_add(org_path: str, title: str, summary: str, starts: str, ends: str, minutes: str, link: str, doc: str,
              questions: tuple[str, ...], options: tuple[str, ...], answers: tuple[str, ...]) -> None:
    """Add one study item; adding the same organization, title and period again adds nothing."""
    from content.loader import DEFAULT_ROOT
    from content.study_items import doc_titles
    from handlers.study.plan import Draft, add_item

    def nth(values: tuple[str, ...], index: int) -> str:
        return values[index] if index < len(values) else ""

    count = max(len(questions), len(options), len(answers))
    draft = Draft(title=title, summary=summary, starts=starts, ends=ends, minutes=minutes, link=link, doc=doc,
                  org=org_path, questions=[(nth(questions, i), nth(options, i), nth(answers, i)) for i in range(count)])

    async def add(sessions):
        async with sessions() as session, session.begin():
            return await add_item(session, draft, docs=doc_titles(DEFAULT_ROOT), added_by="由命令行添加（zhibu study add）",
                                  now=Clock().now())

    added = asyncio.run(_with_sessions(add))
    if added.problems:
        for problem in added.problems:
            click.echo(problem.describe(), err=True)
        raise click.ClickException(f"有 {len(added.problems)} 处问题，没有添加。")
    item = added.item
    what = "已添加" if added.created else "已经有了（同一组织、标题和起止日期），没有重复添加"
    click.echo(f"{what}：“{item.title}”，{item.org_path}，{item.starts_on} 至 {item.ends_on}，约 {item.minutes} 分钟（{item.key}）")


@study.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--allow-errors", is_flag=True, help="Import the valid rows even if some rows have errors.")
@click.option("--org", "org_path", default="", help="The publishing organization of rows that leave 发布组织 empty.")
def study_import(file: Path, allow_errors: bool, org_path: str) -> None:
    """Import a study plan (XLSX or CSV, one item a row: 标题, 内容摘要, 开始日期, 结束日期, 预计分钟, …)."""
    from bot.tables import TableFileError
    from content.loader import DEFAULT_ROOT
    from content.study_items import doc_titles
    from handlers.study.plan import import_plan

    try:
        report = asyncio.run(_with_sessions(lambda sessions: import_plan(
            sessions, file, docs=doc_titles(DEFAULT_ROOT), now=Clock().now(), allow_errors=allow_errors,
            added_by=f"由学习计划《{file.name}》导入（zhibu study import）", default_org=org_path)))
    except TableFileError as error:
        raise click.ClickException(str(error)) from error
    click.echo(report.describe())
    if report.errors and not report.imported:
        sys.exit(1)


@main.group()
def menu() -> None:
    """The official account's custom menu."""


@menu.command("push")
def menu_push() -> None:
    """Send the menu from configuration (ZHIBU_MENU_FILE, or the built-in one) to WeChat."""
    import aiohttp

    from bot.wechat.client import WeChatClient, WeChatError
    from storage.tokens import TokenStore

    settings = _settings()

    async def push(sessions) -> None:
        async with aiohttp.ClientSession() as http:
            client = WeChatClient(http=http, app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
                                  api_base=settings.wechat_api_base, tokens=TokenStore(sessions, Clock()))
            await client.create_menu(settings.menu())

    try:
        asyncio.run(_with_sessions(push))
    except WeChatError as error:
        raise click.ClickException(f"菜单推送失败：{error}") from error
    click.echo("菜单已推送。")


@main.group()
def jobs() -> None:
    """Periodic jobs the features declare."""


def _planned_jobs(settings: Settings):
    from bot.app import feature_routers
    from bot.scheduler import SchedulerConfigError, plan_jobs, registered_jobs

    try:
        return plan_jobs(registered_jobs(feature_routers()), settings)
    except SchedulerConfigError as error:
        raise click.ClickException(f"任务配置错误：{error}") from error


@jobs.command("list")
def jobs_list() -> None:
    """List the jobs: name, schedule, next run time (from the job store), description."""
    from bot.scheduler import format_job_table, stored_next_run_times

    settings = _settings()
    planned = _planned_jobs(settings)
    next_runs = asyncio.run(_with_sessions(lambda sessions: stored_next_run_times(settings)))
    click.echo(format_job_table(planned, next_runs))


@jobs.command("run")
@click.argument("name")
def jobs_run(name: str) -> None:
    """Run the job NAME once, now, in this process (no need to be the process running the scheduler)."""
    import time

    from bot.dispatch import JobContext
    from bot.scheduler import run_job_now

    settings = _settings()
    planned = _planned_jobs(settings)
    if name not in {plan.name for plan in planned}:
        known = "、".join(plan.name for plan in planned) or "（无）"
        raise click.ClickException(f"没有名为 {name} 的任务。已有的任务：{known}（见 zhibu jobs list）")
    started = time.monotonic()
    try:
        asyncio.run(_with_sessions(lambda sessions: run_job_now(
            name, jobs=[plan.spec for plan in planned], context=JobContext(sessions, Clock(), settings, configs=Configs(settings)))))
    except click.ClickException:
        raise
    except Exception as error:
        log.exception("job %s failed", name)
        raise click.ClickException(f"任务 {name} 运行失败：{type(error).__name__}: {error}") from error
    click.echo(f"任务 {name} 已运行完毕，用时 {time.monotonic() - started:.1f} 秒。")


@main.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per question (status, answer, source, …).")
def ask(question: str, as_json: bool) -> None:
    """Ask the Q&A a QUESTION, or "-" for one question per line of standard input (index loaded once)."""
    from content.loader import ContentError
    from content.search import holder_for
    from handlers.qa import QaSettings

    settings = _settings(QaSettings)
    # The server's cached index when this is a deployment's folder (a second's start instead of a build);
    # elsewhere no data folder is made for it.
    cache = settings.effective_cache_dir if settings.cache_dir or settings.data_dir.is_dir() else None
    try:
        index = holder_for(settings.content_dir, cache_dir=cache).index
    except ContentError as error:
        for problem in error.problems:
            click.echo(problem.describe(error.root), err=True)
        raise click.ClickException("问答内容有错误，请先修正（zhibu content check）") from error
    questions = (line.strip() for line in sys.stdin) if question == "-" else iter([question])
    for text in questions:
        if not text:
            continue
        result = index.search(text)
        if as_json:
            click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        else:
            click.echo(_readable_answer(result))


def _readable_answer(result) -> str:
    from content.search import ANSWERED, UNSURE
    from handlers.qa import answer_text

    header = f"问：{result.question}\n"
    if result.status == ANSWERED:
        text, _ = answer_text(result, max_bytes=1 << 20)
        return f"{header}{text}\n（{result.entry_id}，置信度 {result.confidence:.2f}）\n"
    if result.status == UNSURE:
        options = "\n".join(f"  {n}. {s.question}（{s.id}）" for n, s in enumerate(result.suggestions, start=1))
        return f"{header}不太确定（置信度 {result.confidence:.2f}），您是不是想问：\n{options}\n"
    return f"{header}这个问题不在问答内容范围内（置信度 {result.confidence:.2f}）。\n"


@main.group()
def content() -> None:
    """The curated content: Q&A and study items (ZHIBU_CONTENT_DIR, default the content/ folder of the package)."""


def _checked_content():
    """The content folder, the loaded Q&A content, the study items and every problem found in either."""
    from content.loader import DEFAULT_ROOT, load_content
    from content.study_items import load_study_items
    from handlers.study.settings import StudySettings

    settings = _settings(StudySettings)
    root = Path(settings.content_dir or DEFAULT_ROOT)
    loaded, problems = load_content(root)
    # The study items (content/study, or ZHIBU_STUDY_DIR): dates, fields, answers among the options.
    study, study_problems = load_study_items(root, settings.study_dir)
    return root, loaded, study, problems + study_problems


@content.command("check")
def content_check() -> None:
    """Validate every content file; print each problem as file:line, exit 1 if there is any."""
    root, loaded, study, problems = _checked_content()
    for problem in problems:
        click.echo(problem.describe(root))
    if problems:
        click.echo(f"发现 {len(problems)} 个问题。", err=True)
        sys.exit(1)
    click.echo(f"内容检查通过：{len(loaded.faq)} 条问答，{loaded.documents} 篇文档（{len(loaded.passages)} 段），"
               f"{len(loaded.sources)} 个来源，{len(study)} 项学习内容。")


@content.command("reload")
def content_reload() -> None:
    """Check the content, then tell the running server (`zhibu serve`, found through ZHIBU_DATA_DIR/zhibu.pid)
    to reload it by sending SIGHUP. The server also reloads by itself within seconds of a file change; a reload
    that fails keeps the content it had."""
    import os
    import signal

    from bot.app import pid_file

    root, _, _, problems = _checked_content()
    if problems:
        for problem in problems:
            click.echo(problem.describe(root), err=True)
        raise click.ClickException(f"内容有 {len(problems)} 个问题，没有重新加载（服务继续使用原来的内容）")
    path = pid_file(_settings())
    try:
        pid = int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError) as error:
        raise click.ClickException(f"没有找到正在运行的服务（{path}）") from error
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as error:
        raise click.ClickException(f"进程 {pid} 已不在运行（{path} 已过时）") from error
    click.echo(f"已通知服务（进程 {pid}）重新加载问答和学习内容。")


async def _with_sessions(work):
    """Run work(sessions) against the configured database, which must be initialized."""
    from storage.db import create_engine, schema_is_current, session_factory

    engine = create_engine(_require_database(_settings()))
    try:
        if not await schema_is_current(engine):
            raise click.ClickException("数据库结构不是最新的，请先运行 zhibu init")
        return await work(session_factory(engine))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    main()
