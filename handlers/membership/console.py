"""The membership feature's staff console pages (issue 14, item 3 "members"): the roster with who has bound
WeChat, binding codes to hand out, and the roster import by upload. Thin faces over what the chat and the CLI
use: storage.members (issue_binding_code as 新绑定码 gives a code, binding_code_expired as `zhibu members list`
marks one) and roster.py (check_roster and write_roster, as `zhibu import members` checks and writes).

- /console/members: the members in the viewer's scope (a secretary's branch, a staff member's subtree),
  filtered by branch, binding state (已绑定, 未绑定, 绑定码已过期) and name, paginated, in the tree's order.
  An unbound member's row shows the binding code and until when it binds, and a POST form (CSRF, audited)
  gives a new one, as 新绑定码 does in chat. A bound member's row shows no code: a member who changed WeChat
  gets a new code from the secretary's 新绑定码, which the old account is told about.
- /console/members.csv and .xlsx: exactly what the filters show, codes included (to print and hand out);
  no cell is a formula; audited.
- /console/members/import: upload an XLSX or CSV (up to UPLOAD_LIMIT); the page then shows every row's
  problem with its row number, who would be added, what would change for whom and which organizations would
  be made, before anything is written. "确认导入" writes it. A row for an organization outside the viewer's
  scope is a problem of that row.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import aliased

from bot.keys import CONFIGS
from bot.tables import TableFileError
from bot.web.console import StaffView, add_nav, console_of, paging, size_words, staff_page
from bot.web.exports import send_table
from bot.web.uploads import Upload, Uploads, audit_apart, leave_page_transaction
from handlers.membership import MembershipSettings, router
from handlers.membership.roster import ImportReport, RosterCheck, check_roster, write_roster
from storage import identities
from storage.members import binding_code_expired, issue_binding_code
from storage.models import Member, Organization, WeChatIdentity
from storage.orgs import PATH_SEPARATOR, branches_under, tree_order, under

log = logging.getLogger(__name__)

MEMBERS_PAGE = "/console/members"
IMPORT_PAGE = "/console/members/import"
PAGE_SIZE = 50
# The largest roster file taken (a county's 12,000 members, every column filled, make about 0.5 MB of XLSX).
UPLOAD_LIMIT = 5 * 1024 * 1024
# Uploads wait for "确认导入" in ZHIBU_DATA_DIR/roster-uploads, this long at most.
UPLOAD_DIR = "roster-uploads"
UPLOAD_HOURS = 2
UPLOADS = Uploads(UPLOAD_DIR, limit=UPLOAD_LIMIT, hours=UPLOAD_HOURS)
# A preview lists at most this many rows of each kind (the counts are always whole).
SHOWN_ROWS = 300
CHANGED = "在您查看之后，文件里的内容或系统里的党员有了变化，没有导入。请看一下新的检查结果，再确认导入。"

add_nav("党员名册", MEMBERS_PAGE)

BOUND, UNBOUND, EXPIRED = "bound", "unbound", "expired"
STATES = {BOUND: "已绑定", UNBOUND: "未绑定", EXPIRED: "绑定码已过期"}
HEADER = ["姓名", "组织", "党小组", "职务", "绑定状态", "绑定码", "绑定码有效期至"]


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def membership_settings(view: StaffView) -> MembershipSettings:
    return view.request.app[CONFIGS].of(MembershipSettings)


# ---------------------------------------------------------------- the list


@dataclass(frozen=True)
class MemberLine:
    id: int
    name: str
    org_path: str
    group: str
    role: str
    bound: bool
    # False: bound, but the WeChat account no longer follows.
    subscribed: bool
    # An unbound member's code and when it stops binding (None: it never does); a bound member's is never shown.
    code: str | None
    code_expires_at: datetime | None
    code_expired: bool

    @property
    def org_name(self) -> str:
        return self.org_path.rsplit(PATH_SEPARATOR, 1)[-1]

    @property
    def state(self) -> str:
        if self.bound:
            return BOUND
        return EXPIRED if self.code_expired else UNBOUND

    @property
    def state_words(self) -> str:
        if self.bound:
            return "已绑定" if self.subscribed else "已绑定（已取消关注）"
        if self.code_expired:
            return "未绑定，绑定码已过期"
        return "未绑定" if self.code else "未绑定，没有绑定码"


@dataclass
class Filters:
    """The list's filters as its GET form sends them; a branch outside the scope is a 404."""

    branch: Organization | None = None
    state: str = ""
    name: str = ""
    page: int = 1

    def query(self, **changes) -> str:
        values = {"branch": self.branch.id if self.branch else "", "state": self.state, "name": self.name,
                  "page": self.page}
        values.update(changes)
        shown = {key: value for key, value in values.items()
                 if value not in ("", None) and not (key == "page" and value == 1)}
        return ("?" + urlencode(shown)) if shown else ""

    def describe(self) -> str:
        parts = [self.branch.name] if self.branch else []
        if self.state:
            parts.append(STATES[self.state])
        if self.name:
            parts.append(f"姓名含“{self.name}”")
        return "，".join(parts) or "全部"


async def read_filters(view: StaffView) -> Filters:
    query = view.request.query
    filters = Filters()
    branch = query.get("branch", "").strip()
    if branch:
        filters.branch = await view.org(branch)  # 404 unless in scope
    if query.get("state") in STATES:
        filters.state = query["state"]
    filters.name = " ".join(query.get("name", "").split())[:50]
    filters.page = max(1, min(_int(query.get("page")) or 1, 100_000))
    return filters


async def members_shown(view: StaffView, filters: Filters) -> list[MemberLine]:
    """Every member the filters select, branches in the tree's order (as the overview lists them), in one
    query of the columns shown: a county's 12,000 members in about 0.4 s on SQLite, where
    storage.members.list_members (`zhibu members list`), building a model object per member, takes 2.5 s."""
    group = aliased(Organization)
    query = (select(Member.id, Member.name, Member.role, Member.binding_code, Member.binding_code_expires_at,
                    Organization.path, group.name, WeChatIdentity.openid, WeChatIdentity.subscribed)
             .join(Organization, Organization.id == Member.org_id)
             .outerjoin(group, group.id == Member.group_id)
             .outerjoin(WeChatIdentity, WeChatIdentity.member_id == Member.id)
             .where(under(filters.branch or view.scope)))
    if filters.state:
        query = query.where(WeChatIdentity.openid.is_not(None) if filters.state == BOUND
                            else WeChatIdentity.openid.is_(None))
    if filters.state == EXPIRED:
        query = query.where(Member.binding_code.is_not(None), Member.binding_code_expires_at <= view.now)
    if filters.name:
        query = query.where(Member.name.icontains(filters.name, autoescape=True))
    now = view.now
    lines = []
    for member_id, name, role, code, expires_at, org_path, group_name, openid, subscribed in \
            await view.session.execute(query):
        bound = openid is not None
        code = None if bound else code
        expired = bool(code) and binding_code_expired(expires_at, now)
        lines.append(MemberLine(id=member_id, name=name, org_path=org_path, group=group_name or "", role=role,
                                bound=bound, subscribed=bool(subscribed), code=None if expired else code,
                                code_expires_at=expires_at if code else None, code_expired=expired))
    order = {path: tree_order(path) for path in {line.org_path for line in lines}}
    lines.sort(key=lambda line: (order[line.org_path], line.group, line.name, line.id))
    return lines


@router.web.get(MEMBERS_PAGE)
@staff_page
async def members_page(view: StaffView) -> web.Response:
    filters = await read_filters(view)
    lines = await members_shown(view, filters)
    where = paging(len(lines), filters.page, PAGE_SIZE)
    start = (where["page"] - 1) * PAGE_SIZE
    branches = [(node.id, node.name) for node, _ in await branches_under(view.session, view.scope)]
    return view.render("console_members.html", filters=filters, rows=lines[start:start + PAGE_SIZE], paging=where,
                       bound=sum(1 for line in lines if line.bound), branches=branches, states=STATES,
                       back=MEMBERS_PAGE + filters.query(page=where["page"]),
                       days=membership_settings(view).binding_code_days)


def _export_line(view: StaffView, line: MemberLine) -> list:
    expires = f"{view.local(line.code_expires_at):%Y-%m-%d %H:%M}" if line.code and line.code_expires_at else ""
    return [line.name, line.org_name, line.group, line.role, line.state_words, line.code or "", expires]


@router.web.get(MEMBERS_PAGE + ".{extension:(csv|xlsx)}")
@staff_page
async def members_export(view: StaffView) -> web.Response:
    filters = await read_filters(view)
    lines = [_export_line(view, line) for line in await members_shown(view, filters)]
    return await send_table(view, "党员名册", view.request.match_info["extension"], f"{view.scope.name} 党员名册",
                            HEADER, lines, filters.describe())


def _back(view: StaffView, member_id: int) -> str:
    """The list the form was on (its filters and page), at the member's row."""
    back = view.form.get("back", "")
    if not (back == MEMBERS_PAGE or back.startswith(MEMBERS_PAGE + "?")) or len(back) > 500:
        back = MEMBERS_PAGE
    return f"{back}#m{member_id}"


@router.web.post(MEMBERS_PAGE + "/{member_id:\\d+}/code")
@staff_page
async def new_code(view: StaffView) -> web.Response:
    """A new binding code for an unbound member (the old one stops binding), as 新绑定码 gives one in chat."""
    member, org = await view.member_in_scope(view.request.match_info["member_id"])
    # Bound meanwhile (or a second click after binding): nothing to hand out, the list says so.
    if await identities.by_member(view.session, member.id) is None:
        days = membership_settings(view).binding_code_days
        await issue_binding_code(view.session, member, now=view.now, days=days)
        await view.audit("change", f"给{member.name}（{org.path}）发了新绑定码，{days} 天内有效")
        log.info("console: member %s got a new binding code from %s", member.id, view.member.id)
    return view.back(_back(view, member.id))


# ---------------------------------------------------------------- the import
#
# The uploaded file waits for "确认导入" on the server (bot/web/uploads.py says how, and why).
#
# A file with problems imports nothing by default. The report offers, as a second, deliberate button, to
# import only the rows without problems: a township's roster typed by hand over years often has a few rows
# that need a phone call to the village before they can be fixed (a missing phone number, a date), and holding
# back every other member's binding code for them helps nobody. Importing the corrected file later adds what
# was left out and changes nothing already imported.


def _import_form(view: StaffView, *, problem: str = "", status: int = 200) -> web.Response:
    return view.render("console_members_import.html", status=status, problem=problem, limit=size_words(UPLOAD_LIMIT),
                       upload=None, check=None, plan=None, result=None, hours=UPLOAD_HOURS)


@router.web.get(IMPORT_PAGE)
@staff_page
async def import_page(view: StaffView) -> web.Response:
    def result(upload: Upload) -> web.Response:
        return view.render("console_members_import.html", problem="", upload=upload, check=None, plan=None,
                           result=upload.result, limit=size_words(UPLOAD_LIMIT), hours=UPLOAD_HOURS)

    return await UPLOADS.page(view, form=functools.partial(_import_form, view), preview=functools.partial(_preview, view),
                              done=result)


@router.web.post(IMPORT_PAGE)
@staff_page(max_bytes=UPLOADS.max_bytes)
async def upload_roster(view: StaffView) -> web.Response:
    return await UPLOADS.accept(view, missing="请先选择要上传的花名册文件（.xlsx 或 .csv）。",
                                form=functools.partial(_import_form, view))


async def _check(view: StaffView, path: Path) -> RosterCheck:
    """The file checked against the stored roster and the viewer's scope, with its plan (ends the page's
    transaction). Raises TableFileError when it cannot be read."""
    sessions = await leave_page_transaction(view)
    return await check_roster(sessions, path, now=view.now, zone=view.settings.zone, within=view.scope.path,
                              plan=True)


def fingerprint(check: RosterCheck) -> str:
    """What a preview showed, in short: a confirmation writes only if the check still comes out the same."""
    shown = [[error.describe() for error in check.errors], check.plan.new_orgs,
             [[row.row.row, row.created, [[c.column, c.before, c.after] for c in row.changes]] for row in check.plan.rows]]
    return hashlib.sha256(json.dumps(shown, ensure_ascii=False).encode()).hexdigest()


def _render_preview(view: StaffView, upload: Upload, check: RosterCheck | None, *, problem: str = "",
                    status: int = 200) -> web.Response:
    return view.render("console_members_import.html", status=status, problem=problem, upload=upload, check=check,
                       plan=check.plan if check else None, result=None, shown=SHOWN_ROWS,
                       fingerprint=fingerprint(check) if check else "", limit=size_words(UPLOAD_LIMIT),
                       hours=UPLOAD_HOURS)


async def _preview(view: StaffView, upload: Upload) -> web.Response:
    try:
        check = await _check(view, UPLOADS.data_file(view, upload))
    except TableFileError as error:
        return _render_preview(view, upload, None, problem=str(error))
    return _render_preview(view, upload, check)


@router.web.post(IMPORT_PAGE + "/confirm")
@staff_page
async def confirm_import(view: StaffView) -> web.Response:
    return await UPLOADS.confirm(
        view, form=functools.partial(_import_form, view), check=lambda upload, path: _check(view, path),
        fingerprint=fingerprint, write=functools.partial(_import, view),
        changed=lambda upload, check: _render_preview(view, upload, check, problem=CHANGED, status=409))


async def _import(view: StaffView, upload: Upload, check: RosterCheck, taken: Path) -> web.Response:
    report = ImportReport(rows=check.rows, created=0, updated=0, unchanged=0, errors=check.errors,
                          imported=False, warnings=check.warnings + check.write_warnings)
    try:
        await write_roster(console_of(view.request).sessions, check.valid, report, now=view.now,
                           code_days=membership_settings(view).binding_code_days)
    except Exception:
        log.exception("console: roster import of %s by member %s cut short", upload.name, view.member.id)
        await audit_apart(view, "import", f"导入花名册《{upload.name}》中断：已新增 {report.created} 人，"
                                          f"更新 {report.updated} 人（再确认导入一次即可补全）")
        raise
    left_out = f"，{len(check.errors)} 处问题所在的行没有导入" if check.errors else ""
    await audit_apart(view, "import", f"导入花名册《{upload.name}》：{check.rows} 行，新增 {report.created} 人，"
                                      f"更新 {report.updated} 人，无变化 {report.unchanged} 人{left_out}")
    log.info("console: member %s imported %s: %d created, %d updated, %d unchanged, %d problems left out",
             view.member.id, upload.name, report.created, report.updated, report.unchanged, len(check.errors))
    await UPLOADS.finish(view, upload, taken, {
        "rows": report.rows, "created": report.created, "updated": report.updated, "unchanged": report.unchanged,
        "problems": [error.describe() for error in report.errors], "warnings": report.warnings})
    return view.back(f"{IMPORT_PAGE}?{urlencode({'done': upload.token})}")
