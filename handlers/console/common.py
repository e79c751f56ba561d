"""The console feature's router, its start-up hook, its housekeeping job and its texts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.dispatch import JobContext, Router, Runtime
from bot.web.console import CONSOLE, Console, ConsoleSettings
from storage import console as store

router = Router("console", settings=ConsoleSettings, templates=Path(__file__).parent / "templates")

# A QR code for signing in is good for this long; a confirmed scan signs its browser in if that browser looks
# within this long after the scan (it looks every few seconds).
SCAN_LIFETIME = timedelta(minutes=2)
CONFIRMED_WITHIN = timedelta(minutes=2)
# The login page refreshes itself this often (seconds) while it waits for the scan.
REFRESH_SECONDS = 3
# One address may ask for at most this many QR codes in SCAN_LIMIT_WINDOW (each is a call to the platform).
SCAN_LIMIT = 30
SCAN_LIMIT_WINDOW = timedelta(minutes=10)
# Sign-in requests and failed attempts are kept this long (the audit log keeps what happened).
KEEP_RECORDS = timedelta(days=2)

# Audit actions written here.
SIGN_IN_SCAN = "sign_in_scan"
SIGN_IN_PASSWORD = "sign_in_password"
SIGN_IN_FAILED = "sign_in_failed"
SIGN_OUT = "sign_out"
SIGN_OUT_CHAT = "sign_out_chat"
PASSWORD_SET = "password_set"

# -- texts: chat
SCAN_CONFIRMED = "已在电脑上登录支部助手后台（如果不是您本人操作，回复 退出后台）"
SCAN_EXPIRED = "这个登录二维码已经过期或用过了。请在电脑上刷新登录页面，再扫一次新的二维码。"
SCAN_NOT_STAFF = "支部助手后台只供支部书记、副书记和组织员使用，您不能用它登录。回复 帮助 可以查看您能用的功能。"
SCAN_BIND_FIRST = "扫码登录后台要先绑定党员身份：回复 绑定 姓名 绑定码（绑定码向支部书记要）。"
LEFT_CONSOLE = "已退出电脑上的支部助手后台，所有登录都已结束。要再用，请在电脑上重新扫码登录。"
NOT_IN_CONSOLE = "您现在没有在电脑上登录支部助手后台，不用退出。"

# -- texts: pages
WRONG_PASSWORD = "姓名或密码不对，请核对后再试。"
LOCKED = "登录失败的次数太多，请 {minutes} 分钟后再试（{until} 以后）。也可以用微信扫码登录。"
FILL_BOTH = "请填写姓名和密码。"
TOO_MANY_CODES = "刷新得太频繁了，请过几分钟再打开登录页面。"
QR_FAILED = "登录二维码暂时没有生成成功。"
NO_COOKIES = "这个浏览器没有保存登录用的 cookie，扫码后也进不了后台。请允许本网站使用 cookie，再打开登录页面。"


@router.lifespan
async def console_runtime(runtime: Runtime):
    runtime.provide(CONSOLE, Console(runtime.settings, runtime.sessions, runtime.clock))
    yield


@router.job("prune", hours=6, description="删除两天前的扫码登录请求和密码登录失败记录")
async def prune(job: JobContext) -> None:
    async with job.sessions() as session, session.begin():
        await store.prune(session, before=job.clock.now() - KEEP_RECORDS)
