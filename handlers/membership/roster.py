"""The member roster (党员花名册): importing it from CSV or Excel, and listing who is in it.

Township staff keep rosters in Excel, typed by hand over years, so reading is forgiving (column
order, title rows above the header, date styles, full-width characters) while validation is strict
and reports every problem at once with the row number Excel shows, so the file can be fixed in one
pass. Nothing is imported from a file with problems unless the caller allows it. Reading the file
into rows (encodings, CSV or XLSX, Excel's row numbers) is bot.tables's job; this module knows what a
roster's columns mean.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tables import Cell, RowError, TableFileError, cell_text, import_report, normalize_header, read_table
from bot.text import display_width
from storage.db import READ_ONLY
from storage.members import (
    BINDING_CODE_DAYS,
    UPDATABLE_FIELDS,
    MemberFields,
    MemberListing,
    MemberOrgCache,
    binding_code_expired,
    list_members,
    member_org_for,
    pick_identity,
    save_member,
)
from storage.models import STAFF_ROLES, Member, MemberCategory, Organization, OrgType, Role
from storage.orgs import PATH_SEPARATOR, InvalidOrgPath, org_type_for, split_path

log = logging.getLogger(__name__)

DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
# The import writes in many short transactions, so that a server answering members on the same SQLite
# file (one write lock for the whole file) waits a moment for each, never for the import. A transaction
# ends after IMPORT_CHUNK rows or IMPORT_TRANSACTION_SECONDS, whichever comes first: a row costs a few
# milliseconds (more on a busy machine), and 300 of them once held the lock for over a second at a time.
IMPORT_CHUNK = 300
IMPORT_TRANSACTION_SECONDS = 0.1
# On SQLite the import then leaves the lock free this long. Waiting writers look for it every few
# milliseconds (storage.db); without a pause the import takes it straight back and they wait on.
IMPORT_PAUSE_SECONDS = 0.03
# Ids per IN (...) when the checks read the stored roster in bulk.
READ_CHUNK = 500

# Header text → MemberFields attribute.
COLUMNS = {
    "姓名": "name",
    "手机号": "phone",
    "所属组织": "org_path",
    "职务": "role",
    "出生日期": "birth_date",
    "入党日期": "join_date",
    "党员类别": "category",
    "困难党员": "hardship",
    "流动党员": "away_from_home",
}
REQUIRED_COLUMNS = ("姓名", "所属组织")
HEADER_ALIASES = {"手机号码": "手机号"}
# Columns rosters commonly carry that mean nothing to us and need no warning.
QUIETLY_IGNORED = {"序号"}
# Title rows ("某村党员花名册") often sit above the header; look this far down for it.
HEADER_SEARCH_ROWS = 10

MAX_NAME_LENGTH = 20
MAX_ORG_NAME_LENGTH = 100
MAX_ORG_PATH_LENGTH = 500
EARLIEST_BIRTH_YEAR = 1900
EARLIEST_JOIN_YEAR = 1921
ADULT_AGE = 18

ROLE_WORDS: dict[str, Role] = {
    "": Role.MEMBER, "党员": Role.MEMBER, "普通党员": Role.MEMBER,
    "书记": Role.SECRETARY, "支部书记": Role.SECRETARY, "党支部书记": Role.SECRETARY,
    "副书记": Role.DEPUTY_SECRETARY, "支部副书记": Role.DEPUTY_SECRETARY, "党支部副书记": Role.DEPUTY_SECRETARY,
    "委员": Role.COMMITTEE_MEMBER, "组织委员": Role.COMMITTEE_MEMBER, "宣传委员": Role.COMMITTEE_MEMBER,
    "纪检委员": Role.COMMITTEE_MEMBER, "支委": Role.COMMITTEE_MEMBER,
    "组织员": Role.STAFF,
    "管理员": Role.ADMIN,
}
ROLE_HELP = "可填：党员、书记、副书记、委员（组织委员/宣传委员/纪检委员/支委）、组织员、管理员，不填即为党员"

CATEGORY_WORDS: dict[str, MemberCategory] = {
    "": MemberCategory.FULL, "正式": MemberCategory.FULL, "正式党员": MemberCategory.FULL,
    "预备": MemberCategory.PROBATIONARY, "预备党员": MemberCategory.PROBATIONARY,
}

YES_WORDS = {"是", "Y", "YES", "1", "√", "✓", "✔", "TRUE"}
NO_WORDS = {"", "否", "N", "NO", "0", "×", "✗", "FALSE"}

FULL_DATE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?"  # "1958-03-01 00:00:00" from tools that export datetimes
)
COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
MONTH_ONLY = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*月?")
PHONE = re.compile(r"1\d{10}")
PHONE_NOISE = re.compile(r"[\s\-()（）]")
CJK_NAME = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\s]+")


# The roster's name for a file that cannot be read as a table at all (bot.cli and the tests catch it).
RosterFileError = TableFileError


@dataclass
class ImportReport:
    rows: int
    created: int
    updated: int
    unchanged: int
    errors: list[RowError]
    imported: bool
    # Things worth a look that did not stop the import (ignored columns, a second top-level org…).
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return import_report(rows=self.rows, imported=self.imported, kept=self.created + self.updated + self.unchanged,
                             counts=f"新增 {self.created} 人，更新 {self.updated} 人，无变化 {self.unchanged} 人",
                             nothing="没有导入任何党员。请改好后重新导入：", errors=self.errors, warnings=self.warnings)


@dataclass(frozen=True)
class RosterRow:
    """A valid row, ready to save."""

    row: int
    fields: MemberFields
    # The path of the organization the member belongs to (a group's branch for group members).
    member_org_path: str
    # On a 党委/党总支 path in a file without 职务: fine only for someone already stored as staff.
    staff_path_unchecked: bool = False


@dataclass
class ParsedRoster:
    rows: int
    valid: list[RosterRow]
    errors: list[RowError]
    warnings: list[str]
    top_level_orgs: set[str]


# Cell values (bot.tables reads the file into rows of cells) -------------------------------------

def column_name(value: Cell) -> str:
    """A header cell as the roster column it names: "手机号码" is 手机号."""
    text = normalize_header(value)
    return HEADER_ALIASES.get(text, text)


def parse_name(text: str) -> str:
    if CJK_NAME.fullmatch(text):
        # Two-character names are padded with spaces in many rosters ("王  五"); it is still 王五.
        return "".join(text.split())
    return " ".join(text.split())


def parse_phone(text: str) -> str:
    digits = PHONE_NOISE.sub("", text)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if digits and not PHONE.fullmatch(digits):
        raise ValueError(f"“{text}”不是 11 位手机号（应以 1 开头）")
    return digits


def parse_date(value: Cell) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = cell_text(value)
    if not text:
        return None
    match = FULL_DATE.fullmatch(text) or COMPACT_DATE.fullmatch(text)
    if match is None:
        if MONTH_ONLY.fullmatch(text):
            raise ValueError(f"“{text}”只写到了月，请写完整日期，如 1985-07-01")
        raise ValueError(f"看不懂日期“{text}”，请写成 1958-03-01 这样")
    year, month, day = (int(part) for part in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        raise ValueError(f"“{text}”不是有效日期") from None


def parse_flag(value: Cell) -> bool:
    text = cell_text(value).upper()
    if text in YES_WORDS:
        return True
    if text in NO_WORDS:
        return False
    raise ValueError(f"“{cell_text(value)}”看不懂，请填 是 或 否（不填即为否）")


def adult_from(birth: date) -> date:
    try:
        return birth.replace(year=birth.year + ADULT_AGE)
    except ValueError:  # born on 29 February
        return date(birth.year + ADULT_AGE, 2, 28)


STAFF_ORG_TYPES = (OrgType.COMMITTEE, OrgType.GENERAL_BRANCH)


def member_on_staff_org(org_name: str, role: Role) -> str:
    return f"“{org_name}”是{org_type_for(org_name).value}，{role.value}请写到具体的党支部（如 …/某村党支部）"


def check_org_path(parts: list[str]) -> None:
    """The path's organizations nest the way party organizations do."""
    types = [org_type_for(part) for part in parts]
    for index, (part, kind) in enumerate(zip(parts, types)):
        if len(part) > MAX_ORG_NAME_LENGTH:
            raise InvalidOrgPath(f"组织名称“{part[:20]}…”太长")
        parent = types[index - 1] if index else None
        if kind is OrgType.GROUP:
            if index != len(parts) - 1:
                raise InvalidOrgPath(f"党小组“{part}”下面不能再有组织")
            if parent is not OrgType.BRANCH:
                raise InvalidOrgPath(f"党小组“{part}”应写在党支部下面，如 …/某村党支部/{part}")
        elif parent is OrgType.BRANCH:
            raise InvalidOrgPath(f"“{parts[index - 1]}”下面只能是党小组，不能是“{part}”")
        elif parent is OrgType.GENERAL_BRANCH and kind is not OrgType.BRANCH:
            raise InvalidOrgPath(f"“{parts[index - 1]}”下面应是党支部，不能是“{part}”")
    if len(PATH_SEPARATOR.join(parts)) > MAX_ORG_PATH_LENGTH:
        raise InvalidOrgPath("组织路径太长")


# Validation -------------------------------------------------------------------------------------

@dataclass
class _Header:
    row: int
    # Column index → header text, for the columns we use.
    columns: dict[int, str]
    errors: list[RowError]
    warnings: list[str]


def _find_header(table: list[tuple[int, list[Cell]]]) -> tuple[int, list[Cell]] | None:
    for number, cells in table[:HEADER_SEARCH_ROWS]:
        if any(column_name(cell) == "姓名" for cell in cells):
            return number, cells
    return next(((number, cells) for number, cells in table if any(cell_text(c) for c in cells)), None)


def _read_header(number: int, cells: list[Cell]) -> _Header:
    header = _Header(row=number, columns={}, errors=[], warnings=[])
    seen: dict[str, int] = {}
    unknown: list[str] = []
    for index, cell in enumerate(cells):
        text = column_name(cell)
        if not text or text in QUIETLY_IGNORED:
            continue
        if text not in COLUMNS:
            unknown.append(text)
            continue
        if text in seen:
            header.errors.append(RowError(number, text, f"“{text}”列出现了两次，请删去一列"))
            continue
        seen[text] = index
        header.columns[index] = text
    for required in REQUIRED_COLUMNS:
        if required not in seen:
            header.errors.append(RowError(number, None, f"表头缺少“{required}”列"))
    if unknown:
        header.warnings.append("这些列不认识，已忽略：" + "、".join(f"“{text}”" for text in unknown))
    return header


def _validate_row(number: int, values: dict[str, Cell], given: frozenset[str],
                  today: date) -> tuple[RosterRow | None, list[RowError]]:
    errors: list[RowError] = []

    def fail(column: str | None, message: str) -> None:
        errors.append(RowError(number, column, message))

    name = parse_name(cell_text(values.get("姓名")))
    if not name:
        fail("姓名", "没有填姓名")
    elif len(name) > MAX_NAME_LENGTH:
        fail("姓名", f"姓名太长（最多 {MAX_NAME_LENGTH} 个字）")
    elif any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        # Invisible characters (pasted from another system) break the exported sheet and any search.
        fail("姓名", "姓名里有看不见的控制字符，请删掉后重新导入")
    elif any(char.isdigit() for char in name):
        fail("姓名", f"“{name}”里有数字，是不是填到了别的列？")

    phone = ""
    try:
        phone = parse_phone(cell_text(values.get("手机号")))
    except ValueError as exc:
        fail("手机号", str(exc))

    parts: list[str] = []
    org_text = cell_text(values.get("所属组织"))
    if not org_text:
        fail("所属组织", "没有填所属组织（如 某县委/某镇党委/某村党支部）")
    else:
        try:
            parts = split_path(re.sub(r"\s*[\\>＞]\s*", PATH_SEPARATOR, org_text))
            check_org_path(parts)
        except InvalidOrgPath as exc:
            fail("所属组织", str(exc))
            parts = []

    role_text = "".join(cell_text(values.get("职务")).split())
    role = ROLE_WORDS.get(role_text)
    if role is None:
        fail("职务", f"“{role_text}”不是可用的职务。{ROLE_HELP}")

    # Without a 职务 column the role of someone on a 党委 path is whatever is stored; checked later.
    staff_path_unchecked = False
    if parts and role is not None:
        kind = org_type_for(parts[-1])
        if role in STAFF_ROLES and kind in (OrgType.BRANCH, OrgType.GROUP):
            fail("职务", f"{role.value}应属于党委或党总支，不能在“{parts[-1]}”下")
        elif role not in STAFF_ROLES and kind in STAFF_ORG_TYPES:
            if "role" in given:
                fail("所属组织", member_on_staff_org(parts[-1], role))
            else:
                staff_path_unchecked = True

    dates: dict[str, date | None] = {}
    for column, earliest in (("出生日期", EARLIEST_BIRTH_YEAR), ("入党日期", EARLIEST_JOIN_YEAR)):
        try:
            value = parse_date(values.get(column))
        except ValueError as exc:
            fail(column, str(exc))
            continue
        if value is not None and value > today:
            fail(column, f"{value.isoformat()} 在今天之后，请检查")
        elif value is not None and value.year < earliest:
            fail(column, f"{value.isoformat()} 太早了，请检查年份")
        else:
            dates[column] = value
    birth, joined = dates.get("出生日期"), dates.get("入党日期")
    if birth and joined and joined < adult_from(birth):
        fail("入党日期", f"{joined.isoformat()} 早于 18 岁生日（出生日期 {birth.isoformat()}）")

    category_text = "".join(cell_text(values.get("党员类别")).split())
    category = CATEGORY_WORDS.get(category_text)
    if category is None:
        fail("党员类别", f"“{category_text}”看不懂，请填 正式党员 或 预备党员（不填即为正式党员）")

    flags: dict[str, bool] = {}
    for column in ("困难党员", "流动党员"):
        try:
            flags[column] = parse_flag(values.get(column))
        except ValueError as exc:
            fail(column, str(exc))

    if errors:
        return None, errors
    member_parts = parts[:-1] if org_type_for(parts[-1]) is OrgType.GROUP else parts
    fields = MemberFields(
        name=name, org_path=PATH_SEPARATOR.join(parts), phone=phone, role=role,
        birth_date=birth, join_date=joined, category=category,
        hardship=flags["困难党员"], away_from_home=flags["流动党员"], given=given,
    )
    return RosterRow(number, fields, PATH_SEPARATOR.join(member_parts), staff_path_unchecked), []


def _check_across_rows(rows: list[RosterRow]) -> tuple[list[RosterRow], list[RowError], list[str]]:
    """Duplicates within the file (errors on the later row) and branches with two secretaries."""
    errors: list[RowError] = []
    kept: list[RosterRow] = []
    seen: dict[tuple[str, str], list[RosterRow]] = {}
    for row in rows:
        earlier_rows = seen.setdefault((row.member_org_path, row.fields.name), [])
        clash = next((earlier for earlier in earlier_rows
                      if earlier.fields.phone == row.fields.phone
                      or not earlier.fields.phone or not row.fields.phone), None)
        if clash is None:
            earlier_rows.append(row)
            kept.append(row)
        elif clash.fields.phone == row.fields.phone:
            errors.append(RowError(row.row, None, f"和第 {clash.row} 行重复（同一组织、姓名、手机号），请删去一行"))
        else:
            errors.append(RowError(row.row, "手机号", (
                f"和第 {clash.row} 行同名，且有一行没填手机号，分不清是不是同一人。"
                "同一人请删去一行；不同的人请都填上手机号")))

    warnings: list[str] = []
    secretaries: dict[str, list[int]] = {}
    for row in kept:
        if row.fields.role is Role.SECRETARY:
            secretaries.setdefault(row.member_org_path, []).append(row.row)
    for org_path, numbers in secretaries.items():
        if len(numbers) > 1:
            listed = "、".join(str(number) for number in numbers)
            warnings.append(f"“{org_path}”有 {len(numbers)} 位书记（第 {listed} 行），请确认")
    return kept, errors, warnings


def parse_roster(path: Path, *, today: date) -> ParsedRoster:
    """Read and validate a roster file without touching the database. Blocking."""
    table = read_table(path)
    found = _find_header(table)
    if found is None:
        return ParsedRoster(0, [], [RowError(1, None, "文件是空的")], [], set())
    header = _read_header(*found)
    if header.errors:
        return ParsedRoster(0, [], header.errors, header.warnings, set())
    given = frozenset(COLUMNS[text] for text in header.columns.values())

    row_count = 0
    valid: list[RosterRow] = []
    errors: list[RowError] = []
    for number, cells in table:
        if number <= header.row:
            continue
        values = {text: cells[index] for index, text in header.columns.items() if index < len(cells)}
        if not any(cell_text(value) for value in values.values()):
            continue
        row_count += 1
        row, row_errors = _validate_row(number, values, given, today)
        if row is not None:
            valid.append(row)
        errors.extend(row_errors)
    if row_count == 0:
        errors.append(RowError(header.row, None, "表头下面没有党员数据"))

    valid, cross_errors, cross_warnings = _check_across_rows(valid)
    return ParsedRoster(
        rows=row_count, valid=valid, errors=errors + cross_errors,
        warnings=header.warnings + cross_warnings,
        top_level_orgs={split_path(row.fields.org_path)[0] for row in valid},
    )


# What the checks and the plan read of each stored member.
STORED_COLUMNS = [getattr(Member, name) for name in ("id", "org_id", "name", "phone", "group_id", *UPDATABLE_FIELDS)]


def _chunks(items: list, size: int = READ_CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def _stored_roster(session: AsyncSession, org_paths: set[str]
                         ) -> tuple[dict[str, Organization], dict[tuple[int, str], list]]:
    """The stored organizations at these paths, and their members by (org id, name) in id order
    (namesakes() for every row, in a few queries instead of one per row)."""
    orgs: dict[str, Organization] = {}
    for paths in _chunks(sorted(org_paths)):
        for org in (await session.execute(select(Organization).where(Organization.path.in_(paths)))).scalars():
            orgs[org.path] = org
    members: dict[tuple[int, str], list] = {}
    for org_ids in _chunks(sorted(org.id for org in orgs.values())):
        rows = await session.execute(
            select(*STORED_COLUMNS).where(Member.org_id.in_(org_ids)).order_by(Member.id))
        for member in rows:
            members.setdefault((member.org_id, member.name), []).append(member)
    return orgs, members


async def _check_against_database(session: AsyncSession, parsed: ParsedRoster) -> tuple[list[RowError], list[str]]:
    """Problems only the stored roster reveals: rows that would silently add a second person."""
    errors: list[RowError] = []
    warnings: list[str] = []
    orgs, stored_members = await _stored_roster(session, {row.member_org_path for row in parsed.valid})
    for row in parsed.valid:
        org = orgs.get(row.member_org_path)
        same_name = stored_members.get((org.id, row.fields.name), []) if org is not None else []
        stored = pick_identity(same_name, row.fields.phone)
        if row.staff_path_unchecked and (stored is None or stored.role not in STAFF_ROLES):
            errors.append(RowError(row.row, "所属组织", member_on_staff_org(
                split_path(row.member_org_path)[-1], Role(stored.role) if stored else Role.MEMBER)))
            continue
        if not same_name or stored is not None:
            continue
        tails = "、".join(f"尾号 {member.phone[-4:]}" for member in same_name if member.phone)
        if not row.fields.phone:
            errors.append(RowError(row.row, "手机号", (
                f"“{org.name}”已有同名党员{row.fields.name}（手机{tails}），这一行没填手机号，"
                "分不清是不是同一人。请填上手机号")))
        else:
            warnings.append(
                f"第 {row.row} 行：“{org.name}”已有同名党员{row.fields.name}（手机{tails}），手机号不同，"
                "已作为另一人新增。请确认不是同一人换了手机号")

    stored_roots = set((await session.execute(
        select(Organization.name).where(Organization.parent_id.is_(None))
    )).scalars())
    new_roots = sorted(parsed.top_level_orgs - stored_roots)
    if new_roots and len(stored_roots | parsed.top_level_orgs) > 1:
        warnings.append("将有多个顶层组织：" + "、".join(sorted(stored_roots | parsed.top_level_orgs))
                        + "。如果它们本应在同一个县委下，请把所属组织从县委写起")
    return errors, warnings


def _today(now: datetime, zone: tzinfo) -> date:
    return now.astimezone(zone).date() if now.tzinfo else now.date()


def path_within(org_path: str, scope_path: str) -> bool:
    """Whether org_path is scope_path or lies below it."""
    return org_path == scope_path or org_path.startswith(scope_path + PATH_SEPARATOR)


def outside_scope(org_path: str, scope_path: str) -> str:
    return f"“{org_path}”不在您管理的范围内，这一行不能导入。所属组织请从“{scope_path}”写起"


@dataclass
class RosterCheck:
    """A roster file checked row by row and against the stored roster, nothing written."""

    # Rows in the file with anything in them.
    rows: int
    # The rows that would be written: valid, in scope, and not refused by the stored roster.
    valid: list[RosterRow]
    # Every problem, in row order.
    errors: list[RowError]
    # About the file (ignored columns, two secretaries for one branch…).
    warnings: list[str]
    # About what writing the valid rows would do (a namesake added as another person…).
    write_warnings: list[str]
    # Who would be added and what changed (check_roster(plan=True)).
    plan: RosterPlan | None = None


async def check_roster(sessions: async_sessionmaker, path: Path, *, now: datetime, zone: tzinfo = DEFAULT_ZONE,
                       within: str | None = None, plan: bool = False) -> RosterCheck:
    """Read a roster file and check every row, reading the stored roster in one read-only transaction (which
    on SQLite leaves the write lock to others). within: an organization's path; a row for an organization
    that is not it or below it is a problem of that row. plan: also say what writing the valid rows would do
    (plan_roster, in the same transaction). Raises RosterFileError when the file cannot be read."""
    parsed = await asyncio.to_thread(parse_roster, Path(path), today=_today(now, zone))
    errors = list(parsed.errors)
    if within is not None:
        kept = [row for row in parsed.valid if path_within(row.fields.org_path, within)]
        errors += [RowError(row.row, "所属组织", outside_scope(row.fields.org_path, within))
                   for row in parsed.valid if not path_within(row.fields.org_path, within)]
        parsed.valid = kept
        parsed.top_level_orgs = {split_path(row.fields.org_path)[0] for row in kept}
    check = RosterCheck(rows=parsed.rows, valid=parsed.valid, errors=errors, warnings=list(parsed.warnings),
                        write_warnings=[])
    if parsed.valid or plan:
        async with sessions() as session:
            await session.connection(execution_options=READ_ONLY)
            db_errors, check.write_warnings = await _check_against_database(session, parsed)
            rejected = {error.row for error in db_errors}
            check.valid = [row for row in parsed.valid if row.row not in rejected]
            check.errors += db_errors
            if plan:
                check.plan = await plan_roster(session, check.valid)
    check.errors.sort(key=lambda error: error.row)
    return check


async def import_members(sessions: async_sessionmaker, path: Path, *, now: datetime,
                         allow_errors: bool = False, zone: tzinfo = DEFAULT_ZONE,
                         code_days: int = BINDING_CODE_DAYS) -> ImportReport:
    """Import a roster file: all of it, or (allow_errors) its valid rows.

    Every row is checked before anything is written (check_roster), so a file with a problem imports nothing.
    Then write_roster writes in short transactions. Raises RosterFileError when the file cannot be read at all.
    """
    path = Path(path)
    check = await check_roster(sessions, path, now=now, zone=zone)
    report = ImportReport(rows=check.rows, created=0, updated=0, unchanged=0,
                          errors=check.errors, imported=False, warnings=list(check.warnings))
    if report.errors and not allow_errors:
        log.info("roster %s: %d problems, nothing imported", path, len(report.errors))
        return report
    report.warnings += check.write_warnings
    await write_roster(sessions, check.valid, report, now=now, code_days=code_days)
    log.info("roster %s: %d rows, %d created, %d updated, %d unchanged, %d rejected",
             path, report.rows, report.created, report.updated, report.unchanged, len(report.errors))
    return report


async def write_roster(sessions: async_sessionmaker, rows: list[RosterRow], report: ImportReport, *,
                       now: datetime, code_days: int = BINDING_CODE_DAYS) -> None:
    """Write checked rows, counting what happened in report (and marking it imported).

    The organizations are created first, then the members written, each in many short transactions
    (IMPORT_CHUNK rows or IMPORT_TRANSACTION_SECONDS) with a pause between them on SQLite: a running server
    answering members waits a fraction of a second for one of them, never for the import (one transaction for
    a whole county held the lock for over a minute). Writing the same rows again changes nothing, so an
    import cut short (a crash between transactions) is completed by running it again.
    """
    # Every organization first, so that the members' transactions only add members. They stay valid
    # across transactions: each is committed before any member refers to it, and imports delete nothing.
    org_cache: MemberOrgCache = {}

    async def add_organizations(session: AsyncSession, org_path: str) -> None:
        org_cache[org_path] = await member_org_for(session, org_path)

    await _write_in_turns(sessions, list(dict.fromkeys(row.fields.org_path for row in rows)), add_organizations)

    async def add_member(session: AsyncSession, row: RosterRow) -> None:
        saved = await save_member(session, row.fields, now=now, org_cache=org_cache, code_days=code_days)
        if saved.created:
            report.created += 1
        elif saved.changed:
            report.updated += 1
        else:
            report.unchanged += 1

    await _write_in_turns(sessions, rows, add_member)
    report.imported = True


async def _write_in_turns(sessions: async_sessionmaker, items: list, write) -> None:
    """write(session, item) for every item, in short transactions taking turns with other writers."""
    loop = asyncio.get_running_loop()
    position = 0
    while position < len(items):
        async with sessions() as session:
            sqlite = session.get_bind().dialect.name == "sqlite"
            async with session.begin():
                started = loop.time()
                end = min(position + IMPORT_CHUNK, len(items))
                while position < end:
                    await write(session, items[position])
                    position += 1
                    if loop.time() - started >= IMPORT_TRANSACTION_SECONDS:
                        break
        if sqlite and position < len(items):
            await asyncio.sleep(IMPORT_PAUSE_SECONDS)


# What a check's rows would do -------------------------------------------------------------------

# How a preview names the stored fields a row may change (the roster's own column names).
FIELD_LABELS = {"phone": "手机号", "group_id": "党小组", "role": "职务", "birth_date": "出生日期",
                "join_date": "入党日期", "category": "党员类别", "hardship": "困难党员", "away_from_home": "流动党员"}
# A party group the file names that is not stored yet: unlike any stored group id.
_NEW_GROUP = object()


@dataclass(frozen=True)
class Change:
    column: str
    before: str
    after: str


@dataclass(frozen=True)
class PlannedRow:
    row: RosterRow
    created: bool
    # For a stored member: what the row would change (none: unchanged).
    changes: tuple[Change, ...] = ()


@dataclass
class RosterPlan:
    rows: list[PlannedRow]
    # Organizations the rows name that are not stored yet, in path order.
    new_orgs: list[str]

    @property
    def created(self) -> list[PlannedRow]:
        return [row for row in self.rows if row.created]

    @property
    def updated(self) -> list[PlannedRow]:
        return [row for row in self.rows if row.changes]

    @property
    def unchanged(self) -> int:
        return sum(1 for row in self.rows if not row.created and not row.changes)


@dataclass
class _Person:
    """A stored member as planning sees it: its phone as earlier rows of the file would leave it."""

    phone: str
    stored: object | None  # the stored values; None for someone an earlier row adds


def _words(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _plain(value):
    # Enums are stored as their plain values (storage.members.save_member compares so too).
    return value.value if isinstance(value, (Role, MemberCategory)) else value


async def plan_roster(session: AsyncSession, rows: list[RosterRow]) -> RosterPlan:
    """What writing checked rows (RosterCheck.valid) would do, read from the stored roster without writing:
    who would be added, who changed and how, which organizations made. The rules are save_member's (a row
    finds its member by organization, name and phone; a field the file does not state is left alone), and
    rows are taken in order, as write_roster takes them."""
    prefixes = set()
    for row in rows:
        parts = split_path(row.fields.org_path)
        prefixes.update(PATH_SEPARATOR.join(parts[:end]) for end in range(1, len(parts) + 1))
    orgs, stored = await _stored_roster(session, prefixes)
    names = {org.id: org.name for org in orgs.values()}
    other_groups = {value.group_id for people in stored.values() for value in people} - set(names) - {None}
    for ids in _chunks(sorted(other_groups)):
        names.update((await session.execute(select(Organization.id, Organization.name)
                                            .where(Organization.id.in_(ids)))).all())
    people: dict[tuple[str, str], list[_Person]] = {}
    planned = []
    for row in rows:
        fields = row.fields
        org = orgs.get(row.member_org_path)
        key = (row.member_org_path, fields.name)
        if key not in people:
            people[key] = [_Person(value.phone, value) for value in stored.get((org.id, fields.name), [])] if org else []
        person = pick_identity(people[key], fields.phone)
        if person is None or person.stored is None:
            if person is None:
                people[key].append(_Person(fields.phone, None))
            planned.append(PlannedRow(row, created=person is None))
            continue
        value = person.stored
        changes = []
        if fields.phone and person.phone != fields.phone:
            changes.append(Change(FIELD_LABELS["phone"], _words(person.phone), fields.phone))
            person.phone = fields.phone
        in_group = fields.org_path != row.member_org_path
        group = orgs.get(fields.org_path) if in_group else None
        wanted = group.id if group is not None else (_NEW_GROUP if in_group else None)
        if value.group_id != wanted:
            after = split_path(fields.org_path)[-1] if in_group else None
            changes.append(Change(FIELD_LABELS["group_id"], _words(names.get(value.group_id)), _words(after)))
        for name in UPDATABLE_FIELDS:
            after = _plain(getattr(fields, name))
            if fields.states(name) and getattr(value, name) != after:
                changes.append(Change(FIELD_LABELS[name], _words(getattr(value, name)), _words(after)))
        planned.append(PlannedRow(row, created=False, changes=tuple(changes)))
    return RosterPlan(planned, sorted(prefixes - set(orgs)))


# Listing ----------------------------------------------------------------------------------------

def listing_json(listing: MemberListing, now: datetime) -> dict:
    expired = bool(listing.binding_code) and binding_code_expired(listing.binding_code_expires_at, now)
    return {
        "id": listing.id,
        "name": listing.name,
        "phone": listing.phone,
        "org_path": listing.org_path,
        "group": listing.group,
        "role": listing.role.value,
        "category": listing.category.value,
        "birth_date": listing.birth_date.isoformat() if listing.birth_date else None,
        "join_date": listing.join_date.isoformat() if listing.join_date else None,
        "hardship": listing.hardship,
        "away_from_home": listing.away_from_home,
        "binding_code": listing.binding_code,
        # When the code stops binding (UTC); None without a code, or for a code from before codes expired.
        "binding_code_expires_at": (listing.binding_code_expires_at.isoformat()
                                    if listing.binding_code and listing.binding_code_expires_at else None),
        "binding_code_expired": expired,
        "bound": listing.bound,
        "subscribed": listing.subscribed,
    }


async def member_listing_json(sessions: async_sessionmaker, now: datetime) -> list[dict]:
    """Every member as a JSON-ready dict, for `zhibu members list --json`."""
    async with sessions() as session:
        return [listing_json(listing, now) for listing in await list_members(session)]


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def binding_state(listing: dict) -> str:
    if listing["bound"]:
        return "已绑定" if listing["subscribed"] else "已绑定（已取消关注）"
    if listing["binding_code_expired"]:
        # Shown so that nobody hands it out: 新绑定码 gives a fresh one.
        return f"{listing['binding_code']}（已过期）"
    return listing["binding_code"] or "—"


def format_member_table(items: list[dict]) -> str:
    """The roster (as member_listing_json gives it) as an aligned plain-text table, for `zhibu members list`."""
    if not items:
        return "还没有党员。请先用 zhibu import members 文件 导入花名册。"
    header = ("姓名", "组织", "职务", "绑定码/已绑定")
    rows = [
        (item["name"],
         item["org_path"] + (PATH_SEPARATOR + item["group"] if item["group"] else ""),
         item["role"],
         binding_state(item))
        for item in items
    ]
    widths = [max(display_width(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(_pad(cell, width) for cell, width in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    bound = sum(1 for item in items if item["bound"])
    lines.append(f"共 {len(items)} 人，已绑定 {bound} 人")
    return "\n".join(lines)
