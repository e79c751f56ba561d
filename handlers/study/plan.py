"""Study items added by staff (issue 16): one at a time (`zhibu study add`, the console's form) or as a plan in a
spreadsheet (`zhibu study import`, the console's upload), one row per item.

An item staff add keeps the rules a content/study file item keeps: content.study_items.check_fields checks
both, and this module words its findings in Chinese, by field (the form, the CLI) or by row and column (the
plan). Beyond those rules, the publishing organization must exist (a 党委, 党总支 or 党支部, not a 党小组) and, in
the console, lie within what the staff member looks after.

A staff item is a StudyItem whose key is "staff:" and a digest of its organization, title and period: adding
or importing the same item again finds it and adds nothing (nor changes it). File items are keyed
"file:<file>:<id>", so the start-up sync of the files (service.sync_items, given only file entries) never
reaches a staff item. Its `source` says who added it; the console's additions are also in the audit log.

A plan is checked whole before anything is written: a report lists every row's problems with the row number
Excel shows, what would be added and what is there already; nothing is written while a row is wrong unless
the person asks for the good rows only (`--allow-errors`, "只导入没有问题的 N 行").
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tables import RowError, cell_text, import_report, normalize_header, read_table
from content.study_items import (MAX_LINK, MAX_OPTIONS, MAX_QUESTIONS, MAX_SUMMARY, MAX_TITLE, MIN_MINUTES,
                                 MIN_OPTIONS, MAX_MINUTES, Issue, StudyEntry, check_fields, entry_of)
from handlers.study import service
from storage.db import READ_ONLY
from storage.models import Organization, OrgType, StudyItem
from storage.orgs import InvalidOrgPath, by_path

log = logging.getLogger(__name__)

KEY_PREFIX = "staff:"
MAX_SOURCE = 200  # the column's width
HEADER_SEARCH_ROWS = 10

# The plan's columns (and the console form's fields, by the same keys) in the order a template lists them.
LABELS = {"title": "标题", "summary": "内容摘要", "starts": "开始日期", "ends": "结束日期", "minutes": "预计分钟",
          "link": "链接", "doc": "资料", "org": "发布组织"}
for _number in range(1, MAX_QUESTIONS + 1):
    LABELS |= {f"q{_number}": f"题目{_number}", f"o{_number}": f"选项{_number}", f"a{_number}": f"答案{_number}"}
# Other names a plan's header may give a column.
ALIASES = {"摘要": "summary", "内容": "summary", "学习内容": "summary", "开始": "starts", "结束": "ends",
           "截止日期": "ends", "分钟": "minutes", "预计时长": "minutes", "时长": "minutes", "预计时长分钟": "minutes",
           "原文链接": "link", "相关资料": "doc", "组织": "org", "题目": "q1", "选项": "o1", "答案": "a1"}
for _number in range(1, MAX_QUESTIONS + 1):
    ALIASES |= {f"问题{_number}": f"q{_number}", f"小题{_number}": f"q{_number}", f"正确答案{_number}": f"a{_number}"}
COLUMNS = {label: key for key, label in LABELS.items()} | ALIASES
REQUIRED_COLUMNS = ("title", "summary", "starts", "ends", "minutes")
# Options in one cell or field: separated by ／, |, ｜ or line breaks.
OPTION_SEPARATORS = re.compile(r"[／|｜\r\n]+")
DAY = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?")

# content.study_items' rules, in words for staff (the field's name is shown beside them).
SAYS = {
    "missing": "没有填",
    "empty": "没有填",
    "title_long": f"太长了（最多 {MAX_TITLE} 个字）",
    "summary_long": f"太长了（最多 {MAX_SUMMARY} 个字，写几行要点就好）",
    "minutes": f"要写 {MIN_MINUTES} 到 {MAX_MINUTES} 之间的整数（大约要学几分钟）",
    "date": "看不懂日期“{value}”，请写成 2027-01-04 这样",
    "period": "早于开始日期 {starts}",
    "not_text": "要写成文字",
    "link": "要以 https:// 或 http:// 开头",
    "link_long": f"太长了（最多 {MAX_LINK} 个字符）",
    "doc": "没有叫“{value}”的资料（写资料的编号或标题，见后台的资料列表或 content/docs）",
    "questions": f"小题最多 {MAX_QUESTIONS} 道",
    "question_table": "小题的格式不对",
    "question_key": "小题的格式不对",
    "question": "有选项或答案，却没有题目",
    "options": f"要有 {MIN_OPTIONS} 到 {MAX_OPTIONS} 个选项，用 ／ 或 | 隔开（也可以一行一个）",
    "answer": "要写正确选项的序号，1 到 {count} 之间",
}
# Which of a question's fields a rule about it concerns.
QUESTION_PART = {"question": "q", "options": "o", "answer": "a", "question_table": "q", "question_key": "q"}

NO_ORG = "没有填（写完整路径，如 示范县委/城关镇党委）"
ORG_UNKNOWN = "没有找到组织“{path}”。请写完整路径，例如 示范县委/城关镇党委/红旗村党支部"
ORG_GROUP = "党小组不单独发布学习内容，请写到党支部"
ORG_OUTSIDE = "“{path}”不在您管理的范围内。请从“{scope}”写起"


@dataclass
class Draft:
    """An item as a person typed it (a form, a plan's row, the CLI's options): text, or a spreadsheet's cells."""

    title: object = ""
    summary: object = ""
    starts: object = ""
    ends: object = ""
    minutes: object = ""
    link: object = ""
    doc: object = ""
    org: object = ""
    # (question, options, answer) for questions 1 to 3, as typed.
    questions: list[tuple[object, object, object]] = field(default_factory=list)

    @classmethod
    def from_fields(cls, values: dict) -> Draft:
        """From a mapping by LABELS' keys (the form's field names, a plan's columns)."""
        return cls(**{key: values.get(key, "") for key in ("title", "summary", "starts", "ends", "minutes", "link",
                                                           "doc", "org")},
                   questions=[(values.get(f"q{n}", ""), values.get(f"o{n}", ""), values.get(f"a{n}", ""))
                              for n in range(1, MAX_QUESTIONS + 1)])


@dataclass(frozen=True)
class Problem:
    field: str  # a key of LABELS
    message: str

    @property
    def label(self) -> str:
        return LABELS.get(self.field, self.field)

    def describe(self) -> str:
        return f"{self.label}：{self.message}"


def as_written(value: object) -> str:
    """A title or summary as the person wrote it: only the ends trimmed and a browser's CRLF made LF."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else cell_text(value)
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def options_of(value: object) -> list[str]:
    text = value if isinstance(value, str) else cell_text(value)
    return [option.strip() for option in OPTION_SEPARATORS.split(text) if option.strip()]


def _whole(value: object):
    """A whole number typed or stored, as an int; anything else as written (the rules then say so)."""
    if isinstance(value, bool):
        return cell_text(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = cell_text(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else text


def _day(value: object):
    """A day typed or stored, as a date; anything else as written (the rules then say so)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = cell_text(value)
    match = DAY.fullmatch(text)
    if match:
        try:
            return date(*(int(part) for part in match.groups()))
        except ValueError:
            pass
    return text


def _doc_id(value: object, docs: dict[str, str]) -> str:
    """A curated document named by its id or by its title (with or without 《》)."""
    text = cell_text(value).strip("《》")
    if not text or text in docs:
        return text
    return next((doc_id for doc_id, title in docs.items() if title and cell_text(title).strip("《》") == text), text)


def table_of(draft: Draft, docs: dict[str, str]) -> tuple[dict, list[int]]:
    """The draft as check_fields reads a file's table (what was left empty is missing), and the number of the
    form's question (1 to 3) behind each entry of its questions."""
    table: dict = {}
    for key in ("title", "summary"):
        if text := as_written(getattr(draft, key)):
            table[key] = text
    for key, read in (("starts", _day), ("ends", _day), ("minutes", _whole)):
        if cell_text(getattr(draft, key)):
            table[key] = read(getattr(draft, key))
    if link := cell_text(draft.link):
        table["link"] = link
    if doc := _doc_id(draft.doc, docs):
        table["doc"] = doc
    questions, numbers = [], []
    for number, (text, options, answer) in enumerate(draft.questions, start=1):
        if not (as_written(text) or cell_text(options) or cell_text(answer)):
            continue
        questions.append({"question": as_written(text), "options": options_of(options), "answer": _whole(answer)})
        numbers.append(number)
    if questions:
        table["questions"] = questions
    return table, numbers


def worded(issue: Issue, numbers: list[int]) -> Problem:
    """A rule's finding in words for staff, at the field it concerns."""
    message = SAYS[issue.code].format(**issue.values)
    if issue.key != "questions":
        return Problem(issue.key, message)
    if issue.code == "questions":
        return Problem(f"q{MAX_QUESTIONS}", message)
    number = numbers[issue.values["number"] - 1]
    return Problem(f"{QUESTION_PART[issue.code]}{number}", message)


def staff_key(org_path: str, title: str, starts: date, ends: date) -> str:
    """The key of a staff item: its organization, title and period, digested (never "file:…")."""
    digest = hashlib.sha256(f"{org_path}\n{title}\n{starts.isoformat()}\n{ends.isoformat()}".encode()).hexdigest()
    return KEY_PREFIX + digest[:32]


async def find_org(session: AsyncSession, value: object, within: Organization | None) -> tuple[Organization | None, str]:
    """The publishing organization a person named, or the problem with it (within: the staff member's scope)."""
    text = cell_text(value)
    if not text:
        return None, NO_ORG
    try:
        org = await by_path(session, re.sub(r"\s*[\\>＞]\s*", "/", text))
    except InvalidOrgPath as error:
        return None, f"组织路径不对：{error}"
    if org is None:
        return None, ORG_UNKNOWN.format(path=text)
    if org.org_type == OrgType.GROUP.value:
        return None, ORG_GROUP
    if within is not None and not org.tree_path.startswith(within.tree_path):
        return None, ORG_OUTSIDE.format(path=org.path, scope=within.path)
    return org, ""


def check_draft(draft: Draft, docs: dict[str, str]) -> tuple[dict, list[Problem]]:
    """The draft's table and what breaks the item rules (not the organization: find_org)."""
    table, numbers = table_of(draft, docs)
    return table, [worded(issue, numbers) for issue in check_fields(table, docs=set(docs))]


def entry_from(table: dict, org: Organization, added_by: str) -> StudyEntry:
    """The staff item a checked table describes, published by org."""
    table = {**table, "org": org.path}
    entry = entry_of(table, key="", source=added_by[:MAX_SOURCE])
    return replace(entry, key=staff_key(org.path, entry.title, entry.starts, entry.ends))


# ---------------------------------------------------------------- one item


@dataclass(frozen=True)
class Added:
    item: StudyItem | None  # the item added, or the one that was there already
    created: bool
    problems: list[Problem]


async def add_item(session: AsyncSession, draft: Draft, *, docs: dict[str, str], added_by: str, now: datetime,
                   within: Organization | None = None) -> Added:
    """Check the draft and, when nothing is wrong, add it (in the caller's transaction), unless the same item
    (organization, title, period) is there already."""
    table, problems = check_draft(draft, docs)
    org, org_problem = await find_org(session, draft.org, within)
    if org_problem:
        problems.insert(0, Problem("org", org_problem))
    if problems:
        return Added(None, False, problems)
    entry = entry_from(table, org, added_by)
    existing = await _item_by_key(session, entry.key)
    if existing is not None:
        return Added(existing, False, [])
    await service.sync_items(session, [entry], now)
    return Added(await _item_by_key(session, entry.key), True, [])


async def _item_by_key(session: AsyncSession, key: str) -> StudyItem | None:
    return (await session.execute(select(StudyItem).where(StudyItem.key == key))).scalar_one_or_none()


# ---------------------------------------------------------------- a plan


@dataclass(frozen=True)
class PlannedItem:
    row: int
    entry: StudyEntry
    # Already there: its differences from the row (nothing is changed by an import).
    differs: bool = False


@dataclass
class PlanCheck:
    """A plan checked row by row and against the stored items; nothing written."""

    rows: int
    new: list[PlannedItem]
    existing: list[PlannedItem]
    errors: list[RowError]
    warnings: list[str]


@dataclass
class ParsedPlan:
    rows: int
    drafts: list[tuple[int, Draft]]
    errors: list[RowError]
    warnings: list[str]


def column_key(value) -> str | None:
    return COLUMNS.get(normalize_header(value))


def parse_plan(path: Path) -> ParsedPlan:
    """A plan's rows as drafts, and what is wrong with its header (blocking: reads the file). Raises
    bot.tables.TableFileError when the file cannot be read as a table."""
    table = read_table(path)
    header = next(((number, cells) for number, cells in table[:HEADER_SEARCH_ROWS]
                   if any(column_key(cell) == "title" for cell in cells)), None)
    if header is None:
        first = next((number for number, cells in table if any(cell_text(cell) for cell in cells)), 1)
        return ParsedPlan(0, [], [RowError(first, None, "找不到表头：第一行要有“标题”“内容摘要”“开始日期”“结束日期”“预计分钟”这几列")], [])
    number, cells = header
    columns: dict[int, str] = {}
    errors: list[RowError] = []
    unknown: list[str] = []
    for index, cell in enumerate(cells):
        key, text = column_key(cell), normalize_header(cell)
        if not text:
            continue
        if key is None:
            unknown.append(text)
        elif key in columns.values():
            errors.append(RowError(number, LABELS[key], f"“{LABELS[key]}”列出现了两次，请删去一列"))
        else:
            columns[index] = key
    for key in REQUIRED_COLUMNS:
        if key not in columns.values():
            errors.append(RowError(number, None, f"表头缺少“{LABELS[key]}”列"))
    warnings = ["这些列不认识，已忽略：" + "、".join(f"“{text}”" for text in unknown)] if unknown else []
    if errors:
        return ParsedPlan(0, [], errors, warnings)
    drafts = []
    for row, values in table:
        if row <= number:
            continue
        fields = {key: values[index] for index, key in columns.items() if index < len(values)}
        if any(cell_text(value) for value in fields.values()):
            drafts.append((row, Draft.from_fields(fields)))
    if not drafts:
        errors.append(RowError(number, None, "表头下面没有学习内容"))
    return ParsedPlan(len(drafts), drafts, errors, warnings)


async def check_plan(sessions: async_sessionmaker[AsyncSession], path: Path, *, docs: dict[str, str],
                     added_by: str, within: Organization | None = None, default_org: str = "") -> PlanCheck:
    """Read a plan and check every row: the item rules, the organization (a row without one is default_org's),
    the same item twice in the file, and whether it is there already (read in one read-only transaction).
    Raises bot.tables.TableFileError when the file cannot be read as a table."""
    parsed = await asyncio.to_thread(parse_plan, Path(path))
    check = PlanCheck(rows=parsed.rows, new=[], existing=[], errors=list(parsed.errors), warnings=parsed.warnings)
    planned: list[PlannedItem] = []
    async with sessions() as session:
        await session.connection(execution_options=READ_ONLY)
        seen: dict[str, int] = {}
        orgs: dict[str, tuple[Organization | None, str]] = {}
        for row, draft in parsed.drafts:
            if not cell_text(draft.org):
                draft.org = default_org
            table, problems = check_draft(draft, docs)
            org_text = cell_text(draft.org)
            if org_text not in orgs:
                orgs[org_text] = await find_org(session, draft.org, within)
            org, org_problem = orgs[org_text]
            if org_problem:
                problems.insert(0, Problem("org", org_problem))
            if problems:
                check.errors += [RowError(row, problem.label, problem.message) for problem in problems]
                continue
            entry = entry_from(table, org, added_by)
            if entry.key in seen:
                check.errors.append(RowError(row, None, f"和第 {seen[entry.key]} 行重复（同一发布组织、标题和起止日期），请删去一行"))
                continue
            seen[entry.key] = row
            planned.append(PlannedItem(row, entry))
        stored = {item.key: item for item in (await session.execute(
            select(StudyItem).where(StudyItem.key.in_(list(seen))))).scalars()} if seen else {}
    for item in planned:
        if item.entry.key not in stored:
            check.new.append(item)
            continue
        differs = _differs(stored[item.entry.key], item.entry)
        check.existing.append(PlannedItem(item.row, item.entry, differs))
        if differs:
            check.warnings.append(f"第 {item.row} 行“{item.entry.title}”已经有了（同一发布组织、标题和起止日期），"
                                  "表里改过的摘要、分钟、链接、资料或小题这次不会用上")
    check.errors.sort(key=lambda error: error.row)
    return check


def _differs(item: StudyItem, entry: StudyEntry) -> bool:
    questions = [{"question": q.question, "options": list(q.options), "answer": q.answer} for q in entry.questions]
    return (item.summary, item.minutes, item.link, item.doc, service.questions_of(item)) != \
        (entry.summary, entry.minutes, entry.link, entry.doc, questions)


async def write_plan(sessions: async_sessionmaker[AsyncSession], items: list[PlannedItem], *, now: datetime) -> int:
    """Add the planned items that are not there yet, in one transaction; how many were added."""
    async with sessions() as session, session.begin():
        keys = [item.entry.key for item in items]
        there = set((await session.execute(select(StudyItem.key).where(StudyItem.key.in_(keys)))).scalars()) \
            if keys else set()
        entries = [item.entry for item in items if item.entry.key not in there]
        return await service.sync_items(session, entries, now) if entries else 0


@dataclass
class PlanReport:
    rows: int
    created: int
    existing: int
    errors: list[RowError]
    imported: bool
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return import_report(rows=self.rows, imported=self.imported, kept=self.created + self.existing,
                             counts=f"新增 {self.created} 项，已有 {self.existing} 项（没有重复添加）",
                             nothing="没有导入任何学习内容。请改好后重新导入（或加 --allow-errors 只导入没有问题的行）：",
                             errors=self.errors, warnings=self.warnings)


async def import_plan(sessions: async_sessionmaker[AsyncSession], path: Path, *, docs: dict[str, str], now: datetime,
                      added_by: str, allow_errors: bool = False, default_org: str = "") -> PlanReport:
    """`zhibu study import`: check the whole plan, then add its items; nothing when a row is wrong, unless
    allow_errors (then the good rows). Raises bot.tables.TableFileError when the file cannot be read."""
    check = await check_plan(sessions, path, docs=docs, added_by=added_by, default_org=default_org)
    report = PlanReport(rows=check.rows, created=0, existing=len(check.existing), errors=check.errors,
                        imported=False, warnings=check.warnings)
    if check.errors and not allow_errors:
        log.info("study plan %s: %d problems, nothing imported", path, len(check.errors))
        return report
    report.created = await write_plan(sessions, check.new, now=now)
    report.imported = True
    log.info("study plan %s: %d rows, %d added, %d there already, %d problems", path, check.rows, report.created,
             report.existing, len(check.errors))
    return report
