"""Roster import (`zhibu import members FILE`) and member listings, on files as townships keep them."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sqlite3
from datetime import date, datetime, timedelta, timezone

import openpyxl
import pytest
from sqlalchemy import func, select

import storage.members as members_module
from handlers.membership.roster import (
    ImportReport,
    RosterFileError,
    format_member_table,
    import_members,
    member_listing_json,
    parse_date,
)
from storage.members import (
    MemberFields,
    issue_binding_code,
    list_members,
    member_by_binding_code,
    members_of,
    upsert_member,
)
from storage.models import Member, MemberCategory, Organization, Role, WeChatIdentity
from storage.orgs import by_path

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)

COUNTY = "青山县委"
HEKOU = f"{COUNTY}/河口镇党委"
LIUSHU = f"{HEKOU}/柳树村党支部"
LIUSHU_GROUP = f"{LIUSHU}/第一党小组"
SHIQIAO = f"{COUNTY}/石桥镇党委/石桥村党支部"

HEADER = ["姓名", "手机号", "所属组织", "职务", "出生日期", "入党日期", "党员类别", "困难党员", "流动党员"]
ROSTER = [
    ["李建国", "138 0000 0001", LIUSHU, "党支部书记", "1968-05-12", "1995/7/1", "正式党员", "", ""],
    ["王秀英", "138-0000-0002", LIUSHU, "组织委员", "1975.3.8", "2001年6月30日", "", "否", ""],
    ["张德福", "", LIUSHU_GROUP, "", "1948/10/01", "19720701", "正式", "是", "否"],
    ["赵春生", "13800000004", LIUSHU_GROUP, "党员", "1990-01-15", "2024-06-20", "预备党员", "", "√"],
    ["刘志强", "13800000005", HEKOU, "组织员", "1985-09-09", "2008-12-01", "", "", ""],
    ["陈桂兰", "13800000006", SHIQIAO, "书记", "1970-02-02", "1999-07-01", "", "", ""],
    ["孙大山", "13800000007", SHIQIAO, "", "1955-11-11", "1980-05-04", "", "Y", "N"],
]


def write_csv(path, rows, *, header=HEADER, encoding="utf-8-sig"):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


async def count(sessions, table) -> int:
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(table))).scalar_one()


async def member_named(sessions, name: str) -> Member:
    async with sessions() as session:
        return (await session.execute(select(Member).where(Member.name == name))).scalar_one()


async def org_at(sessions, path: str) -> Organization:
    async with sessions() as session:
        org = await by_path(session, path)
        assert org is not None, path
        return org


def problems(report: ImportReport) -> set[tuple[int, str | None]]:
    return {(error.row, error.column) for error in report.errors}


async def test_clean_import_builds_the_tree_and_hands_out_codes(sessions, tmp_path):
    report = await import_members(sessions, write_csv(tmp_path / "花名册.csv", ROSTER), now=NOW)

    assert report.imported and report.errors == []
    assert (report.rows, report.created, report.updated, report.unchanged) == (7, 7, 0, 0)
    assert report.describe() == "导入完成：共 7 行，新增 7 人，更新 0 人，无变化 0 人。"

    county = await org_at(sessions, COUNTY)
    hekou = await org_at(sessions, HEKOU)
    liushu = await org_at(sessions, LIUSHU)
    group = await org_at(sessions, LIUSHU_GROUP)
    assert [org.org_type for org in (county, hekou, liushu, group)] == ["党委", "党委", "党支部", "党小组"]
    assert county.parent_id is None and county.tree_path == f"/{county.id}/"
    assert (hekou.parent_id, hekou.tree_path) == (county.id, f"{county.tree_path}{hekou.id}/")
    assert (liushu.parent_id, liushu.tree_path) == (hekou.id, f"{hekou.tree_path}{liushu.id}/")
    assert (group.parent_id, group.tree_path) == (liushu.id, f"{liushu.tree_path}{group.id}/")
    assert await count(sessions, Organization) == 6  # county, 2 townships, 2 branches, 1 group

    secretary = await member_named(sessions, "李建国")
    assert (secretary.org_id, secretary.group_id, secretary.phone) == (liushu.id, None, "13800000001")
    assert secretary.role == Role.SECRETARY
    assert (secretary.birth_date, secretary.join_date) == (date(1968, 5, 12), date(1995, 7, 1))
    assert (await member_named(sessions, "王秀英")).role == Role.COMMITTEE_MEMBER
    assert (await member_named(sessions, "王秀英")).join_date == date(2001, 6, 30)

    elder = await member_named(sessions, "张德福")
    # A group member belongs to the branch; the group is recorded beside it.
    assert (elder.org_id, elder.group_id, elder.phone) == (liushu.id, group.id, "")
    assert (elder.hardship, elder.away_from_home, elder.join_date) == (True, False, date(1972, 7, 1))
    away = await member_named(sessions, "赵春生")
    assert (away.category, away.away_from_home, away.hardship) == (MemberCategory.PROBATIONARY, True, False)

    staff = await member_named(sessions, "刘志强")
    assert (staff.org_id, staff.role) == (hekou.id, Role.STAFF)

    async with sessions() as session:
        codes = list((await session.execute(select(Member.binding_code))).scalars())
    assert all(re.fullmatch(r"[1-9]\d{5}", code) for code in codes)
    assert len(set(codes)) == 7


async def test_a_large_roster_is_written_in_short_transactions_with_the_same_result(sessions, tmp_path,
                                                                                  monkeypatch):
    # Two rows per transaction: the same members, organizations and codes as one transaction would give, and
    # the database is free for other writers between chunks (SQLite's lock is held per chunk only).
    import handlers.membership.roster as roster

    monkeypatch.setattr(roster, "IMPORT_CHUNK", 2)
    transactions = []
    original = roster.save_member

    async def counting(session, fields, **options):
        if not transactions or transactions[-1] is not session:
            transactions.append(session)
        return await original(session, fields, **options)

    monkeypatch.setattr(roster, "save_member", counting)
    report = await import_members(sessions, write_csv(tmp_path / "花名册.csv", ROSTER), now=NOW)
    assert report.imported and (report.created, report.updated, report.unchanged) == (7, 0, 0)
    assert len(transactions) == 4  # 7 rows, 2 at a time
    assert await count(sessions, Member) == 7 and await count(sessions, Organization) == 6
    async with sessions() as session:
        codes = list((await session.execute(select(Member.binding_code))).scalars())
    assert len(set(codes)) == 7


def county_roster(count: int) -> list[list[str]]:
    """count (up to 600) members spread over ten village branches, as a county's roster has them."""
    return [[f"党员{'甲乙丙丁戊己庚辛壬癸'[index % 10]}{'子丑寅卯辰巳午未申酉戌亥'[index // 10 % 12]}{'东南西北中'[index // 120]}",
             f"139{index:08d}", f"{COUNTY}/河口镇党委/第{'一二三四五六七八九十'[index % 10]}村党支部",
             "", "", "", "", "", ""] for index in range(count)]


async def test_a_transaction_ends_after_its_time_so_other_writers_take_turns(sessions, tmp_path, monkeypatch):
    # A slow machine (or a loaded one) writes fewer rows per transaction, not longer transactions: with no
    # time at all each transaction holds one row.
    import handlers.membership.roster as roster

    monkeypatch.setattr(roster, "IMPORT_TRANSACTION_SECONDS", 0.0)
    transactions = []
    original = roster.save_member

    async def counting(session, fields, **options):
        if not transactions or transactions[-1] is not session:
            transactions.append(session)
        return await original(session, fields, **options)

    monkeypatch.setattr(roster, "save_member", counting)
    report = await import_members(sessions, write_csv(tmp_path / "花名册.csv", ROSTER), now=NOW)
    assert report.imported and report.created == 7 and len(transactions) == 7


async def test_a_server_writing_to_the_same_database_is_never_held_up_long_by_an_import(database_url, sessions,
                                                                                      tmp_path):
    # A second engine is a second process's connection (on SQLite: one write lock for the file between them).
    # It writes every 10 ms throughout an import of 400 rows; each of its writes waits about one short
    # import transaction at most, and it gets in between them all along, not only when the import is done.
    from storage.db import create_engine, session_factory

    server = create_engine(database_url)
    server_sessions = session_factory(server)
    waits: list[float] = []
    importing = asyncio.Event()
    done = asyncio.Event()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        number = 0
        while not done.is_set():
            started = loop.time()
            async with server_sessions() as session, session.begin():
                number += 1
                session.add(Organization(name=f"服务{number}党支部", org_type="党支部", path=f"服务/{number}"))
            if importing.is_set():
                waits.append(loop.time() - started)
            await asyncio.sleep(0.01)

    server_task = asyncio.create_task(serve())
    try:
        await asyncio.sleep(0.05)
        importing.set()
        report = await import_members(sessions, write_csv(tmp_path / "县.csv", county_roster(400)), now=NOW)
        done.set()
        await server_task
    finally:
        done.set()
        await server.dispose()
    assert report.imported and report.created == 400
    assert len(waits) >= 10  # it kept writing during the import
    # An import transaction lasts 0.1 s; the margin is for a loaded machine.
    assert max(waits) < 1.0, sorted(waits)[-5:]


async def test_the_checks_read_the_stored_roster_in_a_few_queries_and_take_no_write_lock(database_url, sessions,
                                                                                        tmp_path):
    from sqlalchemy import event

    from storage.db import is_sqlite, sqlite_file

    await import_members(sessions, write_csv(tmp_path / "v1.csv", county_roster(200)), now=NOW)
    statements: list[str] = []
    engine = sessions.kw["bind"].sync_engine

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    # A file only the stored roster finds fault with (a namesake without a phone): checked, nothing written.
    faulty = county_roster(200)
    faulty[150][1] = ""
    path = write_csv(tmp_path / "v2.csv", faulty)
    holder = None
    if is_sqlite(database_url):
        # Another process is writing (the server, say): checking needs none of the write lock.
        holder = sqlite3.connect(sqlite_file(database_url), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    event.listen(engine, "before_cursor_execute", record)
    try:
        report = await asyncio.wait_for(import_members(sessions, path, now=NOW), 10)
    finally:
        event.remove(engine, "before_cursor_execute", record)
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
    assert not report.imported and problems(report) == {(152, "手机号")}
    selects = [statement for statement in statements if statement.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 4, selects  # organizations, then their members: not a query per row
    assert not any(statement.lstrip().upper().startswith(("INSERT", "UPDATE")) for statement in statements)


async def test_importing_the_same_file_again_changes_nothing(sessions, tmp_path):
    roster = write_csv(tmp_path / "roster.csv", ROSTER)
    await import_members(sessions, roster, now=NOW)
    async with sessions() as session:
        before = {m.name: (m.binding_code, m.updated_at) for m in (await session.execute(select(Member))).scalars()}

    again = await import_members(sessions, roster, now=NOW + timedelta(days=3))

    assert again.imported and (again.created, again.updated, again.unchanged) == (0, 0, 7)
    assert await count(sessions, Member) == 7 and await count(sessions, Organization) == 6
    async with sessions() as session:
        after = {m.name: (m.binding_code, m.updated_at) for m in (await session.execute(select(Member))).scalars()}
    assert after == before


async def test_a_changed_phone_or_flag_updates_only_that_member(sessions, tmp_path):
    await import_members(sessions, write_csv(tmp_path / "v1.csv", ROSTER), now=NOW)
    elder_code = (await member_named(sessions, "张德福")).binding_code

    changed = [list(row) for row in ROSTER]
    changed[2][1] = "139 1111 2222"  # 张德福 had no phone; now one is known
    changed[6][7] = "否"  # 孙大山 is no longer in hardship
    changed[3][6] = "正式党员"  # 赵春生 completed probation
    later = NOW + timedelta(days=30)
    report = await import_members(sessions, write_csv(tmp_path / "v2.csv", changed), now=later)

    assert (report.created, report.updated, report.unchanged) == (0, 3, 4)
    assert await count(sessions, Member) == 7
    elder = await member_named(sessions, "张德福")
    assert (elder.phone, elder.binding_code, elder.updated_at) == ("13911112222", elder_code, later)
    assert (await member_named(sessions, "孙大山")).hardship is False
    assert (await member_named(sessions, "赵春生")).category == MemberCategory.FULL
    assert (await member_named(sessions, "李建国")).updated_at == NOW


async def test_a_file_without_a_column_keeps_what_is_stored(sessions, tmp_path):
    await import_members(sessions, write_csv(tmp_path / "full.csv", ROSTER), now=NOW)
    slim = [[row[0], row[1], row[2]] for row in ROSTER]

    report = await import_members(sessions, write_csv(tmp_path / "slim.csv", slim, header=HEADER[:3]), now=NOW)

    # A contact list without 职务 must not demote the secretary or clear the hardship register.
    assert (report.created, report.updated, report.unchanged) == (0, 0, 7)
    assert (await member_named(sessions, "李建国")).role == Role.SECRETARY
    assert (await member_named(sessions, "张德福")).hardship is True
    assert (await member_named(sessions, "刘志强")).role == Role.STAFF

    # Someone new on a township path in such a file has no role to justify it.
    newcomer = slim + [["吴新", "13800000099", HEKOU]]
    report = await import_members(sessions, write_csv(tmp_path / "new.csv", newcomer, header=HEADER[:3]), now=NOW)
    assert not report.imported and problems(report) == {(9, "所属组织")}
    assert "“河口镇党委”是党委，党员请写到具体的党支部" in report.describe()


async def test_a_file_with_errors_imports_nothing_and_names_every_bad_cell(sessions, tmp_path):
    rows = [
        ROSTER[0],                                                               # row 2: fine
        ["王秀英", "1380000", LIUSHU, "", "", "", "", "", ""],                     # row 3
        ["", "13800000010", LIUSHU, "", "", "", "", "", ""],                     # row 4
        ["周小平", "", LIUSHU, "村长", "", "", "", "", ""],                        # row 5
        ["吴海", "", LIUSHU, "", "1980-01-01", "1990-01-01", "", "", ""],         # row 6
        ["郑明", "", LIUSHU, "", "2030-01-01", "", "", "", ""],                   # row 7
        ["钱多", "", LIUSHU, "", "1980-13-01", "", "", "也许", ""],                # row 8
        ["何平", "", f"{HEKOU}/第二党小组", "", "", "", "", "", ""],                # row 9
        ["冯军", "", HEKOU, "党员", "", "", "", "", ""],                           # row 10
        ["褚红", "", LIUSHU, "组织员", "", "", "", "", ""],                        # row 11
        ["卫东", "", "柳树村委会", "", "", "", "", "", ""],                         # row 12
        ["蒋琴", "", LIUSHU, "", "", "1990年7月", "临时", "", ""],                 # row 13
    ]
    report = await import_members(sessions, write_csv(tmp_path / "bad.csv", rows), now=NOW)

    assert not report.imported
    assert problems(report) == {
        (3, "手机号"), (4, "姓名"), (5, "职务"), (6, "入党日期"), (7, "出生日期"),
        (8, "出生日期"), (8, "困难党员"), (9, "所属组织"), (10, "所属组织"), (11, "职务"),
        (12, "所属组织"), (13, "入党日期"), (13, "党员类别"),
    }
    assert report.rows == 12
    assert await count(sessions, Member) == 0 and await count(sessions, Organization) == 0

    text = report.describe()
    assert text.startswith("发现 13 处问题，没有导入任何党员")
    assert "第 3 行 手机号：“1380000”不是 11 位手机号" in text
    assert "第 5 行 职务：“村长”不是可用的职务" in text and "组织员、管理员" in text
    assert "第 9 行 所属组织：党小组“第二党小组”应写在党支部下面" in text
    assert "第 12 行 所属组织：“柳树村委会”不是党组织名称" in text
    assert "第 13 行 入党日期：“1990年7月”只写到了月" in text
    lines = text.splitlines()
    assert lines.index(next(l for l in lines if l.startswith("第 3 行"))) < lines.index(
        next(l for l in lines if l.startswith("第 13 行")))


async def test_allow_errors_imports_only_the_good_rows(sessions, tmp_path):
    rows = [ROSTER[0], ["王秀英", "1380000", LIUSHU, "", "", "", "", "", ""], ROSTER[2]]
    report = await import_members(sessions, write_csv(tmp_path / "mixed.csv", rows), now=NOW, allow_errors=True)

    assert report.imported and problems(report) == {(3, "手机号")}
    assert (report.rows, report.created) == (3, 2)
    assert report.describe().splitlines()[:2] == [
        "已导入没有问题的 2 行（新增 2 人，更新 0 人，无变化 0 人）。",
        "下面 1 处问题所在的行没有导入：",
    ]
    async with sessions() as session:
        names = set((await session.execute(select(Member.name))).scalars())
    assert names == {"李建国", "张德福"}


async def test_township_staff_and_members_sit_where_they_belong(sessions, tmp_path):
    rows = [
        ["刘志强", "13800000005", HEKOU, "组织员", "", "", "", "", ""],
        ["县管理员", "13800000009", COUNTY, "管理员", "", "", "", "", ""],
        ["张德福", "", LIUSHU_GROUP, "", "", "", "", "", ""],
    ]
    report = await import_members(sessions, write_csv(tmp_path / "staff.csv", rows), now=NOW)
    assert report.imported and report.errors == []

    hekou, county = await org_at(sessions, HEKOU), await org_at(sessions, COUNTY)
    assert ((await member_named(sessions, "刘志强")).org_id, (await member_named(sessions, "县管理员")).org_id) == (
        hekou.id, county.id)
    listing = {item.name: item for item in await _listings(sessions)}
    assert (listing["张德福"].org_path, listing["张德福"].group) == (LIUSHU, "第一党小组")
    assert (listing["刘志强"].org_path, listing["刘志强"].group, listing["刘志强"].role) == (HEKOU, None, Role.STAFF)


async def _listings(sessions, org=None):
    async with sessions() as session:
        return await list_members(session, org=org)


async def test_duplicate_rows_are_reported_on_the_later_row(sessions, tmp_path):
    rows = [
        ROSTER[0],
        ["李建国", "13800000001", f"{LIUSHU}/第一党小组", "", "", "", "", "", ""],  # same person, same branch
        ["张德福", "", LIUSHU, "", "", "", "", "", ""],
        ["张德福", "13900000001", LIUSHU, "", "", "", "", "", ""],  # cannot tell whether it is the same man
        ["王芳", "13900000002", LIUSHU, "", "", "", "", "", ""],
        ["王芳", "13900000003", LIUSHU, "", "", "", "", "", ""],  # two women of one name: both kept
        ["李建国", "13800000001", SHIQIAO, "", "", "", "", "", ""],  # another branch: another person
    ]
    report = await import_members(sessions, write_csv(tmp_path / "dup.csv", rows), now=NOW)

    assert not report.imported
    assert problems(report) == {(3, None), (5, "手机号")}
    assert "第 3 行：和第 2 行重复" in report.describe()
    assert "第 5 行 手机号：和第 4 行同名" in report.describe()

    report = await import_members(sessions, write_csv(tmp_path / "dup.csv", rows), now=NOW, allow_errors=True)
    assert (report.created, len(report.errors)) == (5, 2)


async def test_a_row_without_phone_does_not_silently_add_a_second_person(sessions, tmp_path):
    await import_members(sessions, write_csv(tmp_path / "v1.csv", ROSTER[:1]), now=NOW)

    no_phone = [["李建国", "", LIUSHU, "书记", "", "", "", "", ""]]
    report = await import_members(sessions, write_csv(tmp_path / "v2.csv", no_phone), now=NOW)
    assert not report.imported and problems(report) == {(2, "手机号")}
    assert "尾号 0001" in report.describe()

    other_phone = [["李建国", "13700000000", LIUSHU, "", "", "", "", "", ""]]
    report = await import_members(sessions, write_csv(tmp_path / "v3.csv", other_phone), now=NOW)
    # A different phone is a different person (or a new number): added, with a note to check.
    assert report.imported and report.created == 1
    assert any("已作为另一人新增" in warning for warning in report.warnings)
    assert await count(sessions, Member) == 2


async def test_gb18030_csv_with_shuffled_padded_headers_and_a_stray_column(sessions, tmp_path):
    header = [" 所属组织 ", "姓  名", "备注", "困难党员", "*手机号码"]
    rows = [[LIUSHU, "王  五", "老党员", "√", "13800000011"], ["", "", "", "", ""], [SHIQIAO, "欧阳小芳", "", "", ""]]
    path = write_csv(tmp_path / "excel导出.csv", rows, header=header, encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")

    report = await import_members(sessions, path, now=NOW)

    assert report.imported and (report.rows, report.created) == (2, 2)
    assert report.warnings == ["这些列不认识，已忽略：“备注”"]
    assert "提示：这些列不认识，已忽略：“备注”" in report.describe()
    wang = await member_named(sessions, "王五")
    assert (wang.phone, wang.hardship) == ("13800000011", True)
    assert (await member_named(sessions, "欧阳小芳")).org_id == (await org_at(sessions, SHIQIAO)).id


async def test_xlsx_with_a_title_row_date_cells_and_number_cells(sessions, tmp_path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["河口镇柳树村党支部党员花名册"])
    sheet.merge_cells("A1:G1")
    sheet.append(["序号", "姓名", "所属组织", "手机号", "出生日期", "入党日期", "流动党员"])
    sheet.append([1, "李建国", LIUSHU, 13800000001, datetime(1968, 5, 12), date(1995, 7, 1), None])
    sheet.append([2, "王秀英", LIUSHU, "13800000002", "1975年3月8日", 20010630, True])
    sheet.append([3, "赵春生", LIUSHU, 13800000004, datetime(1990, 1, 15), datetime(2005, 1, 1), 0])
    for cell in sheet["E"][2:] + sheet["F"][2:]:
        if isinstance(cell.value, (date, datetime)):
            cell.number_format = "yyyy-mm-dd"
    workbook.create_sheet("说明").append(["姓名", "这一页不导入"])
    path = tmp_path / "花名册.xlsx"
    workbook.save(path)

    report = await import_members(sessions, path, now=NOW, allow_errors=True)

    # Row numbers are the ones Excel shows, title row included; 序号 is ignored without a warning.
    assert problems(report) == {(5, "入党日期")}
    assert report.warnings == []
    assert (report.rows, report.created) == (3, 2)
    secretary = await member_named(sessions, "李建国")
    assert (secretary.phone, secretary.birth_date, secretary.join_date) == (
        "13800000001", date(1968, 5, 12), date(1995, 7, 1))
    second = await member_named(sessions, "王秀英")
    assert (second.birth_date, second.join_date, second.away_from_home) == (date(1975, 3, 8), date(2001, 6, 30), True)


async def test_missing_required_header_is_named(sessions, tmp_path):
    path = write_csv(tmp_path / "no_org.csv", [["李建国", "13800000001"]], header=["姓名", "电话"])
    report = await import_members(sessions, path, now=NOW)

    assert not report.imported and report.rows == 0
    assert [error.describe() for error in report.errors] == ["第 1 行：表头缺少“所属组织”列"]
    assert report.warnings == ["这些列不认识，已忽略：“电话”"]
    assert await count(sessions, Organization) == 0


async def test_header_only_file_is_an_error(sessions, tmp_path):
    report = await import_members(sessions, write_csv(tmp_path / "empty.csv", []), now=NOW)
    assert not report.imported and report.errors[0].message == "表头下面没有党员数据"


@pytest.mark.parametrize("name, hint", [("members.xls", "另存为"), ("members.docx", "不认识的文件类型")])
async def test_unsupported_files_are_refused_clearly(sessions, tmp_path, name, hint):
    path = tmp_path / name
    path.write_bytes(b"\xd0\xcf\x11\xe0 not a roster")
    with pytest.raises(RosterFileError, match=hint):
        await import_members(sessions, path, now=NOW)


async def test_a_broken_xlsx_is_refused_clearly(sessions, tmp_path):
    path = tmp_path / "members.xlsx"
    path.write_text("姓名,所属组织\n", encoding="utf-8")
    with pytest.raises(RosterFileError, match="打不开这个 Excel 文件"):
        await import_members(sessions, path, now=NOW)


async def test_listing_json_and_table_show_codes_until_bound(sessions, tmp_path):
    await import_members(sessions, write_csv(tmp_path / "roster.csv", ROSTER), now=NOW)

    listing = await member_listing_json(sessions, NOW)
    # By organization path, then name, the same on SQLite and PostgreSQL.
    assert [item["name"] for item in listing] == ["刘志强", "张德福", "李建国", "王秀英", "赵春生", "孙大山", "陈桂兰"]
    by_name = {item["name"]: item for item in listing}
    elder = by_name["张德福"]
    assert elder == {
        "id": elder["id"], "name": "张德福", "phone": "", "org_path": LIUSHU, "group": "第一党小组",
        "role": "党员", "category": "正式党员", "birth_date": "1948-10-01", "join_date": "1972-07-01",
        "hardship": True, "away_from_home": False, "binding_code": elder["binding_code"],
        "binding_code_expires_at": "2026-12-24T02:00:00+00:00", "binding_code_expired": False,
        "bound": False, "subscribed": None,
    }
    assert all(re.fullmatch(r"\d{6}", item["binding_code"]) and item["bound"] is False for item in listing)

    async with sessions() as session:
        secretary = (await session.execute(select(Member).where(Member.name == "李建国"))).scalar_one()
        session.add(WeChatIdentity(openid="o-li", member_id=secretary.id, first_seen_at=NOW, bound_at=NOW))
        secretary.binding_code = None
        await session.commit()

    table = format_member_table(await member_listing_json(sessions, NOW))
    lines = table.splitlines()
    assert lines[0].split() == ["姓名", "组织", "职务", "绑定码/已绑定"]
    li_line = next(line for line in lines if line.startswith("李建国"))
    assert li_line.split() == ["李建国", LIUSHU, "书记", "已绑定"]
    assert f"{LIUSHU_GROUP}" in next(line for line in lines if line.startswith("张德福"))
    assert elder["binding_code"] in table
    assert lines[-1] == "共 7 人，已绑定 1 人"
    assert format_member_table([]).startswith("还没有党员")
    assert {item["name"]: item["bound"] for item in await member_listing_json(sessions, NOW)}["李建国"] is True


async def test_members_of_a_township_are_its_own_branches_and_staff(sessions, tmp_path):
    await import_members(sessions, write_csv(tmp_path / "roster.csv", ROSTER), now=NOW)
    hekou = await org_at(sessions, HEKOU)

    async with sessions() as session:
        names = [member.name for member in await members_of(session, hekou)]
        branch_names = [member.name for member in await members_of(session, await by_path(session, LIUSHU))]
    assert sorted(names) == sorted(["李建国", "王秀英", "张德福", "赵春生", "刘志强"])
    assert "陈桂兰" not in names and "孙大山" not in names
    assert sorted(branch_names) == sorted(["李建国", "王秀英", "张德福", "赵春生"])
    assert {item.name for item in await _listings(sessions, hekou)} == set(names)


async def test_binding_codes_are_unique_and_found(sessions, monkeypatch):
    async with sessions() as session:
        first, created = await upsert_member(session, MemberFields(name="李建国", org_path=LIUSHU), now=NOW)
        assert created
        taken = first.binding_code
        second, _ = await upsert_member(session, MemberFields(name="王秀英", org_path=LIUSHU), now=NOW)
        # Force the generator to offer the taken code first: it must move on to a free one.
        offers = iter([int(taken) - 100_000, 23_456])
        monkeypatch.setattr(members_module.secrets, "randbelow", lambda _: next(offers))
        assert await issue_binding_code(session, second, now=NOW) == "123456"
        await session.commit()

    async with sessions() as session:
        assert (await member_by_binding_code(session, taken)).name == "李建国"
        assert (await member_by_binding_code(session, " 123456 ")).name == "王秀英"
        assert await member_by_binding_code(session, "000000") is None
        again, created = await upsert_member(session, MemberFields(name="李建国", org_path=LIUSHU), now=NOW)
        assert not created and again.binding_code == taken


@pytest.mark.parametrize("text, expected", [
    ("1958-03-01", date(1958, 3, 1)),
    ("1958/3/1", date(1958, 3, 1)),
    ("1958.3.1", date(1958, 3, 1)),
    ("1958年3月1日", date(1958, 3, 1)),
    ("19580301", date(1958, 3, 1)),
    ("１９５８－０３－０１", date(1958, 3, 1)),
    ("1958-03-01 00:00:00", date(1958, 3, 1)),
    (19580301, date(1958, 3, 1)),
    (datetime(1958, 3, 1), date(1958, 3, 1)),
    ("", None),
    (None, None),
])
def test_date_styles_people_type(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["1958-02-30", "3/1/1958", "五八年", "1958-03"])
def test_dates_that_are_refused(text):
    with pytest.raises(ValueError):
        parse_date(text)


async def test_a_path_missing_its_county_is_flagged(sessions, tmp_path):
    await import_members(sessions, write_csv(tmp_path / "roster.csv", ROSTER), now=NOW)
    short = [["周平", "13800000020", "河口镇党委/杨树村党支部", "", "", "", "", "", ""]]

    report = await import_members(sessions, write_csv(tmp_path / "short.csv", short), now=NOW)

    assert report.imported and report.created == 1
    assert report.warnings == ["将有多个顶层组织：河口镇党委、青山县委。如果它们本应在同一个县委下，请把所属组织从县委写起"]


async def test_a_name_with_an_invisible_control_character_is_refused_with_its_row(sessions, tmp_path):
    rows = [ROSTER[0], ["王\x01秀英", "", LIUSHU, "", "", "", "", "", ""], ["李\u200b明", "", LIUSHU, "", "", "", "", "", ""]]
    report = await import_members(sessions, write_csv(tmp_path / "hidden.csv", rows), now=NOW)
    assert not report.imported and problems(report) == {(3, "姓名"), (4, "姓名")}
    assert "第 3 行 姓名：姓名里有看不见的控制字符" in report.describe()


async def test_imported_codes_expire_after_the_configured_days(sessions, tmp_path):
    await import_members(sessions, write_csv(tmp_path / "花名册.csv", ROSTER), now=NOW, code_days=10)
    listing = await member_listing_json(sessions, NOW)
    assert {item["binding_code_expires_at"] for item in listing} == {(NOW + timedelta(days=10)).isoformat()}
    assert not any(item["binding_code_expired"] for item in listing)
    later = await member_listing_json(sessions, NOW + timedelta(days=10))
    assert all(item["binding_code_expired"] for item in later)
    assert "（已过期）" in format_member_table(later)
