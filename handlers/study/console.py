"""The study feature's staff console pages (issue 16): the plan that reaches the viewer's organization with a
completion count per item, items added by hand or by a plan upload, 送学上门, and the year's hours.

Staff (组织员, 管理员) see their organization's subtree; a branch's secretary or deputy sees their branch. An
item is in view when it reaches the viewer's organization (published by it or above it) or was published below
it; anything else, like a branch or member outside the scope, answers 404.

- /console/study: the current items, those still to come and those ended in the last RECENT_DAYS, by period,
  each with "已学 x 人 / 共 y 人" among the members it reaches in the viewer's scope. Counts per item, never a
  figure per person, never an order by completion.
- /console/study/items/{id}: one item as members see it, and for staff its counts branch by branch in the
  tree's order.
- /console/study/new: the form to add an item (plan.add_item: the file items' rules, errors beside the fields,
  what was typed kept); audited.
- /console/study/import: a plan (XLSX or CSV) uploaded, checked row by row and shown before anything is written
  (bot/web/uploads.py keeps it), then "确认导入" or "只导入没有问题的 N 行"; audited.
- /console/study/at-home: a branch's members in roster order, each marked or unmarked 送学上门 with one
  button (storage.study.set_profile); audited.
- /console/study/hours.csv and .xlsx?year=YYYY: every member's hours for the year in roster order
  (export.py, as `zhibu export study` writes them); audited.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select

from bot.keys import CONFIGS, PROVIDED
from bot.tables import TableFileError
from bot.web.console import StaffView, add_nav, size_words, staff_page
from bot.web.exports import XLSX, attachment, send_table, table_xlsx
from bot.web.uploads import Upload, Uploads, audit_apart, leave_page_transaction
from content.study_items import MAX_QUESTIONS
from handlers.study import export, plan, service
from handlers.study.common import router
from handlers.study.settings import StudySettings
from storage import study as store
from storage.models import Member, Organization, OrgType, StudyItem, StudyProfile
from storage.orgs import PATH_SEPARATOR, branches_under, tree_order, under

log = logging.getLogger(__name__)

STUDY_PAGE = "/console/study"
ITEM_PAGE = STUDY_PAGE + "/items"
NEW_PAGE = STUDY_PAGE + "/new"
IMPORT_PAGE = STUDY_PAGE + "/import"
AT_HOME_PAGE = STUDY_PAGE + "/at-home"
HOURS = STUDY_PAGE + "/hours"
RECENT_DAYS = 90
AHEAD_DAYS = 366
# A plan of a year's items is a few dozen rows; a county's, a few hundred.
UPLOAD_LIMIT = 2 * 1024 * 1024
UPLOADS = Uploads("study-uploads", limit=UPLOAD_LIMIT, hours=2)
SHOWN_ROWS = 300
CHANGED = "在您查看之后，文件里的内容或系统里的学习内容有了变化，没有导入。请看一下新的检查结果，再确认导入。"

add_nav("学习", STUDY_PAGE)


def study_settings(view: StaffView) -> StudySettings:
    return view.request.app[CONFIGS].of(StudySettings)


def doc_titles(view: StaffView) -> dict[str, str]:
    """The curated documents an item may name, as the study feature loaded them at start-up."""
    return view.request.app[PROVIDED].get("study_doc_titles", {})


def today(view: StaffView) -> date:
    return view.local(view.now).date()


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def in_view(view: StaffView, item: StudyItem) -> bool:
    """The item reaches the viewer's organization or was published below it."""
    scope = view.scope.path
    return not item.org_path or item.org_path == scope or scope.startswith(item.org_path + PATH_SEPARATOR) or \
        item.org_path.startswith(scope + PATH_SEPARATOR)


async def item_in_view(view: StaffView) -> StudyItem:
    item_id = _int(view.request.match_info.get("item_id"))
    item = await view.session.get(StudyItem, item_id) if item_id is not None else None
    if item is None or not in_view(view, item):
        raise web.HTTPNotFound()
    return item


# ---------------------------------------------------------------- the plan and its counts


@dataclass(frozen=True)
class ItemLine:
    item: StudyItem
    done: int
    total: int
    questions: int

    @property
    def publisher(self) -> str:
        return self.item.org_path.rsplit(PATH_SEPARATOR, 1)[-1] if self.item.org_path else "所有组织"


async def item_line(view: StaffView, item: StudyItem) -> ItemLine:
    counts = await store.completion_by_org(view.session, item, under(view.scope))
    return ItemLine(item, sum(done for done, _ in counts.values()), sum(total for _, total in counts.values()),
                    len(service.questions_of(item)))


@router.web.get(STUDY_PAGE)
@staff_page
async def study_page(view: StaffView) -> web.Response:
    day = today(view)
    items = await store.items_in_scope(view.session, view.scope.path, day - timedelta(days=RECENT_DAYS),
                                       day + timedelta(days=AHEAD_DAYS))
    lines = [await item_line(view, item) for item in items]
    sections = [("正在学", [line for line in lines if line.item.starts_on <= day <= line.item.ends_on]),
                ("还没开始", [line for line in lines if line.item.starts_on > day]),
                (f"最近结束（{RECENT_DAYS} 天内）", [line for line in lines if line.item.ends_on < day])]
    return view.render("console_study.html", sections=sections, year=day.year, years=range(day.year, day.year - 5, -1))


@dataclass(frozen=True)
class BranchCount:
    name: str
    done: int
    total: int


@router.web.get(ITEM_PAGE + "/{item_id}")
@staff_page
async def item_page(view: StaffView) -> web.Response:
    item = await item_in_view(view)
    counts = await store.completion_by_org(view.session, item, under(view.scope))
    orgs = (await view.session.execute(select(Organization.id, Organization.name, Organization.path)
                                       .where(Organization.id.in_(list(counts))))).all() if counts else []
    branches = [BranchCount(name, *counts[org_id]) for org_id, name, _ in sorted(orgs, key=lambda row: tree_order(row[2]))]
    query = view.request.query
    notice = "已添加。" if query.get("added") == "1" else \
        "已经有同一组织、标题和起止日期的学习内容，没有重复添加。" if query.get("exists") == "1" else ""
    return view.render("console_study_item.html", item=item, line=await item_line(view, item), branches=branches,
                       questions=service.questions_of(item), doc_title=doc_titles(view).get(item.doc, ""),
                       notice=notice)


# ---------------------------------------------------------------- adding an item


async def publishers(view: StaffView) -> list[str]:
    """The organizations this viewer may publish for: their own and those below it but the party groups, in the
    tree's order."""
    paths = (await view.session.execute(select(Organization.path).where(
        under(view.scope), Organization.org_type != OrgType.GROUP.value))).scalars()
    return sorted(paths, key=tree_order)


async def _new_form(view: StaffView, typed: dict, problems: dict[str, str], status: int = 200) -> web.Response:
    return view.render("console_study_new.html", status=status, typed=typed, problems=problems,
                       orgs=await publishers(view), docs=doc_titles(view), labels=plan.LABELS,
                       numbers=range(1, MAX_QUESTIONS + 1))


@router.web.get(NEW_PAGE)
@staff_page
async def new_page(view: StaffView) -> web.Response:
    day = today(view)
    return await _new_form(view, {"org": view.scope.path, "starts": day.isoformat(),
                                  "ends": (day + timedelta(days=13)).isoformat(), "minutes": "15"}, {})


@router.web.post(NEW_PAGE)
@staff_page
async def new_item(view: StaffView) -> web.Response:
    typed = {key: view.form.get(key, "") for key in plan.LABELS}
    added = await plan.add_item(view.session, plan.Draft.from_fields(typed), docs=doc_titles(view),
                                added_by=f"由{view.member.name}（{view.scope.name}）添加", now=view.now,
                                within=view.scope)
    if added.problems:
        return await _new_form(view, typed, {problem.field: problem.message for problem in added.problems}, 400)
    item = added.item
    if not added.created:
        return view.back(f"{ITEM_PAGE}/{item.id}?exists=1")
    await view.audit("change", f"添加学习内容“{item.title}”（{item.org_path}，{item.starts_on} 至 {item.ends_on}）")
    log.info("console: member %s added study item %s", view.member.id, item.id)
    return view.back(f"{ITEM_PAGE}/{item.id}?added=1")


# ---------------------------------------------------------------- a plan by upload


def _added_by(view: StaffView, upload: Upload) -> str:
    return f"由{view.member.name}（{view.scope.name}）从《{upload.name}》导入"


def _import_page(view: StaffView, *, status: int = 200, **context) -> web.Response:
    values = {"problem": "", "upload": None, "check": None, "result": None, "shown": SHOWN_ROWS, "fingerprint": "",
              "limit": size_words(UPLOAD_LIMIT), "hours": UPLOADS.hours, "labels": plan.LABELS}
    return view.render("console_study_import.html", status=status, **(values | context))


async def _check(view: StaffView, upload: Upload, path: Path) -> plan.PlanCheck:
    """The plan checked (ends the page's transaction). Raises TableFileError when it cannot be read."""
    sessions = await leave_page_transaction(view)
    return await plan.check_plan(sessions, path, docs=doc_titles(view), added_by=_added_by(view, upload),
                                 within=view.scope, default_org=view.scope.path)


def fingerprint(check: plan.PlanCheck) -> str:
    """What a preview showed, in short: a confirmation writes only if the check still comes out the same."""
    shown = [[error.describe() for error in check.errors], [[item.row, item.entry.key] for item in check.new],
             [[item.row, item.entry.key] for item in check.existing]]
    return hashlib.sha256(json.dumps(shown, ensure_ascii=False).encode()).hexdigest()


async def _preview(view: StaffView, upload: Upload, *, problem: str = "", status: int = 200) -> web.Response:
    try:
        check = await _check(view, upload, UPLOADS.data_file(view, upload))
    except TableFileError as error:
        return _import_page(view, upload=upload, problem=str(error), status=status)
    return _import_page(view, upload=upload, check=check, fingerprint=fingerprint(check), problem=problem,
                        status=status)


@router.web.get(IMPORT_PAGE)
@staff_page
async def import_page(view: StaffView) -> web.Response:
    form = functools.partial(_import_page, view)
    return await UPLOADS.page(view, form=form, preview=functools.partial(_preview, view),
                              done=lambda upload: form(upload=upload, result=upload.result))


@router.web.post(IMPORT_PAGE)
@staff_page(max_bytes=UPLOADS.max_bytes)
async def upload_plan(view: StaffView) -> web.Response:
    return await UPLOADS.accept(view, missing="请先选择要上传的学习计划文件（.xlsx 或 .csv）。",
                                form=functools.partial(_import_page, view))


@router.web.post(IMPORT_PAGE + "/confirm")
@staff_page
async def confirm_import(view: StaffView) -> web.Response:
    return await UPLOADS.confirm(
        view, form=functools.partial(_import_page, view), check=functools.partial(_check, view),
        fingerprint=fingerprint, write=functools.partial(_import, view),
        changed=lambda upload, check: _import_page(view, upload=upload, check=check, fingerprint=fingerprint(check),
                                                   problem=CHANGED, status=409))


async def _import(view: StaffView, upload: Upload, check: plan.PlanCheck, taken: Path) -> web.Response:
    created = await plan.write_plan(await leave_page_transaction(view), check.new, now=view.now)
    left_out = f"，{len(check.errors)} 处问题所在的行没有导入" if check.errors else ""
    await audit_apart(view, "import", f"导入学习计划《{upload.name}》：{check.rows} 行，新增 {created} 项，"
                                      f"已有 {len(check.existing)} 项{left_out}")
    log.info("console: member %s imported the study plan %s: %d added", view.member.id, upload.name, created)
    await UPLOADS.finish(view, upload, taken, {
        "rows": check.rows, "created": created, "existing": len(check.existing),
        "problems": [error.describe() for error in check.errors], "warnings": check.warnings})
    return view.back(f"{IMPORT_PAGE}?{urlencode({'done': upload.token})}")


@router.web.get(IMPORT_PAGE + "/template.xlsx")
@staff_page
async def plan_template(view: StaffView) -> web.Response:
    """An empty plan with every column, to fill in."""
    header = list(plan.LABELS.values())
    body = table_xlsx("学习计划（每行一项；表头不要改。选项用 ／ 或 | 隔开，答案写正确选项的序号）", header, [])
    return attachment(body, "学习计划模板.xlsx", XLSX)


# ---------------------------------------------------------------- 送学上门


@dataclass(frozen=True)
class AtHomeLine:
    id: int
    name: str
    role: str
    group: str
    at_home: bool


async def branch_choices(view: StaffView) -> list[tuple[int, str]]:
    return [(node.id, node.name) for node, _ in await branches_under(view.session, view.scope)]


async def branch_members(view: StaffView, branch: Organization) -> list[AtHomeLine]:
    """The branch's members in roster order (name, then id), with their 送学上门 mark."""
    group = Organization.__table__.alias("party_group")
    rows = (await view.session.execute(
        select(Member.id, Member.name, Member.role, group.c.name, StudyProfile.at_home)
        .outerjoin(group, group.c.id == Member.group_id)
        .outerjoin(StudyProfile, StudyProfile.member_id == Member.id)
        .where(Member.org_id == branch.id))).all()
    rows.sort(key=lambda row: (row[1], row[0]))
    return [AtHomeLine(member_id, name, role, group_name or "", bool(at_home))
            for member_id, name, role, group_name, at_home in rows]


@router.web.get(AT_HOME_PAGE)
@staff_page
async def at_home_page(view: StaffView) -> web.Response:
    branches = await branch_choices(view)
    branch_id = _int(view.request.query.get("branch"))
    if branch_id is None and len(branches) == 1:
        branch_id = branches[0][0]
    branch = await view.org(branch_id) if branch_id is not None else None
    if branch is not None and branch.org_type != OrgType.BRANCH.value:
        raise web.HTTPNotFound()
    members = await branch_members(view, branch) if branch is not None else []
    return view.render("console_study_at_home.html", branches=branches, branch=branch, members=members,
                       saved=view.request.query.get("saved", ""))


@router.web.post(AT_HOME_PAGE + "/{member_id:\\d+}")
@staff_page
async def at_home_mark(view: StaffView) -> web.Response:
    member, branch = await view.member_in_scope(view.request.match_info["member_id"])
    on = view.form.get("on") == "1"
    profile = await store.profile_of(view.session, member.id)
    if bool(profile and profile.at_home) != on:
        await store.set_profile(view.session, member.id, view.now, at_home=on)
        await view.audit("change", f"{'标记' if on else '取消'}送学上门：{member.name}（{branch.name}）")
    saved = "on" if on else "off"
    return view.back(f"{AT_HOME_PAGE}?{urlencode({'branch': branch.id, 'saved': saved})}#m{member.id}")


# ---------------------------------------------------------------- the year's hours


@router.web.get(HOURS + ".{extension:(csv|xlsx)}")
@staff_page
async def hours_export(view: StaffView) -> web.Response:
    year = _int(view.request.query.get("year")) or today(view).year
    try:
        export.check_year(year)
    except export.StudyExportError:
        raise web.HTTPNotFound() from None
    settings = study_settings(view)
    lines = await export.collect_hours(view.session, under(view.scope), year=year, settings=settings)
    return await send_table(view, export.WHAT, view.request.match_info["extension"],
                            f"{view.scope.name} 党员学习学时", export.header(settings),
                            [export.hours_row(line, settings) for line in lines], f"{year}年，按名册顺序")
