"""The console's home (who is signed in, what they see) and the audit log, for the county's staff."""

from __future__ import annotations

from aiohttp import web

from bot.web.console import HOME_PAGE, StaffView, add_nav, redirect, staff_page
from handlers.console.common import router
from storage import console as store

AUDIT_PAGE = "/console/audit"
AUDIT_PAGE_SIZE = 100

add_nav("操作记录", AUDIT_PAGE, county_only=True)

# How the audit page names the actions it knows; others are shown as written.
ACTION_LABELS = {
    "sign_in_scan": "扫码登录",
    "sign_in_password": "密码登录",
    "sign_in_failed": "登录失败",
    "sign_out": "退出登录",
    "sign_out_chat": "微信里退出后台",
    "password_set": "设置密码",
    "export": "导出",
    "import": "导入",
    "change": "修改",
}
METHODS = {"scan": "微信扫码", "password": "密码"}


@router.web.get("/console")
async def console_root(request: web.Request) -> web.Response:
    return redirect(HOME_PAGE)


@router.web.get(HOME_PAGE)
@staff_page
async def home(view: StaffView) -> web.Response:
    return view.render("console_home.html", method=METHODS.get(view.login.method, view.login.method))


@router.web.get(AUDIT_PAGE)
@staff_page
async def audit_page(view: StaffView) -> web.Response:
    if not view.is_county:
        raise web.HTTPNotFound()
    before = view.request.query.get("before", "")
    before_id = int(before) if before.isascii() and before.isdigit() and len(before) <= 18 else None
    rows = await store.audit_entries(view.session, view.scope, before_id=before_id, limit=AUDIT_PAGE_SIZE + 1)
    more = len(rows) > AUDIT_PAGE_SIZE
    rows = rows[:AUDIT_PAGE_SIZE]
    return view.render("console_audit.html", rows=rows, labels=ACTION_LABELS,
                       older=rows[-1].entry.id if more and rows else None)
