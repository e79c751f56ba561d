"""Study items added by staff (issue 16): `zhibu study add` checked by the file items' rules and added once;
an XLSX plan with good and bad rows reported row by row with nothing written, then --allow-errors, then the
same file again adding nothing; a staff item reaching the township's members through 学习 (the webhook) and no
one else; the start-up sync of the files leaving staff items alone; and the hours export, whose set-based
figures agree with 我的学习's (service.hours_of), in roster order, every cell text. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from bot.cli import main
from content.loader import DEFAULT_ROOT
from content.study_items import check_fields, doc_titles, load_study_items
from handlers.study import export, plan, service as study_service
from handlers.study.settings import StudySettings
from harness import HONGQI, hongqi_branch
from storage.models import Attendance, Meeting, Member, Role, StudyDone, StudyItem
from storage.orgs import by_path, under
from test_study import ITEMS, RANKING

SHANGHAI = ZoneInfo("Asia/Shanghai")
TOWN = "示范县委/城关镇党委"
HEKOU = "示范县委/河口镇党委/青山村党支部"
SUMMARY = "按条例，党员每年集中学习培训\n一般不少于32个学时。  \n  支部的集中学习也算。"
PLAN_HEADER = ["标题", "内容摘要", "开始日期", "结束日期", "预计分钟", "链接", "资料", "发布组织",
               "题目1", "选项1", "答案1", "题目2", "选项2", "答案2"]


@pytest.fixture
async def service(make_service, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "test.toml").write_text(ITEMS, encoding="utf-8")
    return await make_service(study_dir=str(folder))


def cli(service, tmp_path, *args: str):
    env = {"ZHIBU_DATABASE_URL": service.settings.effective_database_url, "ZHIBU_DATA_DIR": str(tmp_path)}
    return asyncio.to_thread(lambda: CliRunner().invoke(main, list(args), env=env))


async def staff_items(service) -> list[StudyItem]:
    async with service.sessions() as session:
        return list((await session.execute(select(StudyItem).where(StudyItem.key.startswith("staff:"))
                                            .order_by(StudyItem.id))).scalars())


def said(result) -> str:
    """What the command printed, without the log's lines."""
    return "\n".join(line for line in result.output.splitlines() if " INFO " not in line)


def add_args(**changes) -> list[str]:
    values = {"--org": TOWN, "--title": "  学习党员教育管理工作条例  ", "--summary": SUMMARY, "--starts": "2026-11-23",
              "--ends": "2026-12-06", "--minutes": "20", "--doc": "xuexi"}
    values.update(changes)
    args = ["study", "add"]
    for name, value in values.items():
        if value is not None:
            args += [name, value]
    return args


async def test_zhibu_study_add_checks_like_the_files_and_adds_once(service, tmp_path):
    # Every problem at once, in words, and nothing written.
    bad = await cli(service, tmp_path, *add_args(**{"--org": f"{TOWN}/没有这个村党支部", "--minutes": "0",
                                                   "--starts": "2026-12-06", "--ends": "2026-11-23", "--doc": "nodoc",
                                                   "--link": "www.example.com"}),
                    "--question", "党员每年学习多少学时？", "--options", "32个学时", "--answer", "1",
                    "--question", "", "--options", "对|不对", "--answer", "3")
    assert bad.exit_code == 1, bad.output
    for line in ("发布组织：没有找到组织“示范县委/城关镇党委/没有这个村党支部”", "预计分钟：要写 1 到 600 之间的整数",
                 "结束日期：早于开始日期 2026-12-06", "链接：要以 https:// 或 http:// 开头",
                 "资料：没有叫“nodoc”的资料", "选项1：要有 2 到 6 个选项", "题目2：有选项或答案，却没有题目",
                 "答案2：要写正确选项的序号，1 到 2 之间", "有 8 处问题，没有添加。"):
        assert line in bad.output, (line, bad.output)
    assert await staff_items(service) == []
    # A party group publishes nothing.
    await service.add_member("王秀英", HONGQI + "/第一党小组")
    group = await cli(service, tmp_path, *add_args(**{"--org": HONGQI + "/第一党小组"}))
    assert group.exit_code == 1 and "党小组不单独发布学习内容" in group.output

    good = await cli(service, tmp_path, *add_args(), "--question", "党员每年集中学习培训一般不少于多少学时？",
                     "--options", "16个学时|32个学时／100个学时", "--answer", "2")
    assert good.exit_code == 0, good.output
    assert said(good).startswith("已添加：“学习党员教育管理工作条例”，示范县委/城关镇党委，2026-11-23 至 2026-12-06，约 20 分钟（staff:")
    [item] = await staff_items(service)
    assert (item.title, item.summary, item.org_path, item.minutes, item.doc) == (
        "学习党员教育管理工作条例", SUMMARY.strip(), TOWN, 20, "xuexi")  # the summary as written, inside untouched
    assert json.loads(item.questions) == [{"question": "党员每年集中学习培训一般不少于多少学时？",
                                           "options": ["16个学时", "32个学时", "100个学时"], "answer": 2}]
    assert item.source == "由命令行添加（zhibu study add）" and item.key.startswith("staff:")
    # The same organization, title and period again: nothing new, nothing changed.
    again = await cli(service, tmp_path, *add_args(**{"--minutes": "30"}))
    assert again.exit_code == 0 and said(again).startswith("已经有了"), again.output
    assert [(row.id, row.minutes) for row in await staff_items(service)] == [(item.id, 20)]
    # The curated document named by its title works too (another period: another item).
    by_title = await cli(service, tmp_path, *add_args(**{"--doc": "《党员学习：学时、冬春训和集体学习》",
                                                       "--starts": "2026-12-07", "--ends": "2026-12-20"}))
    assert by_title.exit_code == 0 and [row.doc for row in await staff_items(service)] == ["xuexi", "xuexi"]


async def test_a_staff_item_reaches_the_townships_members_in_chat_and_the_file_sync_leaves_it(service, tmp_path):
    people = await hongqi_branch(service)
    await service.bind("qs-1", "马青山", org_path=HEKOU, role=Role.SECRETARY, phone="13900000001")
    added = await cli(service, tmp_path, *add_args(**{"--starts": "2026-11-20", "--ends": "2026-11-30"}))
    assert added.exit_code == 0, added.output
    # The earliest current item first: 王秀英 in 红旗村 sees the township's item before the files' ones.
    shown = await service.say(people["王秀英"], "学习")
    assert shown.startswith("【学习】学习党员教育管理工作条例\n" + SUMMARY.strip() + "\n约 20 分钟。"), shown
    assert (await service.say(people["王秀英"], "已学")).startswith("已记下：学完“学习党员教育管理工作条例”，约 20 分钟。")
    # 河口镇's branch is not under 城关镇: the item does not reach it.
    assert "学习党员教育管理工作条例" not in (await service.say("qs-1", "学习"))

    # The start-up sync of the files (and a reload) touches only the files' keys.
    [before] = await staff_items(service)
    entries, problems = load_study_items(DEFAULT_ROOT, service.config(StudySettings).study_dir)
    assert not problems and all(entry.key.startswith("file:") for entry in entries)
    async with service.sessions() as session, session.begin():
        await study_service.sync_items(session, entries, service.clock.now() + timedelta(days=1))
    [after] = await staff_items(service)
    assert (after.id, after.key, after.title, after.summary, after.updated_at) == \
        (before.id, before.key, before.title, before.summary, before.updated_at)


def test_a_staff_item_is_checked_by_the_same_rules_as_a_file_item():
    docs = doc_titles(DEFAULT_ROOT)
    draft = plan.Draft(title="标题", summary="摘要", starts="2027-01-04", ends="2027/1/3", minutes="601",
                       questions=[("题目", "甲|乙", "3")])
    table, problems = plan.check_draft(draft, docs)
    # The same findings check_fields gives a file item with these values, worded for staff.
    assert [issue.code for issue in check_fields(table, docs=set(docs))] == ["minutes", "period", "answer"]
    assert [problem.field for problem in problems] == ["minutes", "ends", "a1"]
    # The key is the organization, title and period; a file item's never starts so.
    key = plan.staff_key(TOWN, "标题", date(2027, 1, 4), date(2027, 1, 10))
    assert key.startswith("staff:") and key == plan.staff_key(TOWN, "标题", date(2027, 1, 4), date(2027, 1, 10))
    assert key != plan.staff_key(TOWN, "标题", date(2027, 1, 4), date(2027, 1, 11))


def plan_xlsx(path, rows: list[list]) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["城关镇党委 2026年冬季学习计划"])  # a title above the header
    sheet.append(PLAN_HEADER)
    for row in rows:
        sheet.append(row)
    workbook.save(path)


GOOD_ROWS = [
    ["党费怎么交", "农民党员每月交0.2元到1元。\n具体数由支部定。", date(2026, 11, 23), date(2026, 12, 6), 10, "", "", TOWN,
     "农民党员每月交多少党费？", "0.2元到1元／收入的2%｜不用交", 1, "", "", ""],
    ["送学上门", "年老体弱的党员，支部把学习送到家里。", "2026-11-30", "2026年12月13日", "15", "https://www.12371.cn/",
     "《党员学习：学时、冬春训和集体学习》", "", "年老体弱的党员怎么学习？", "送学上门\n必须到村部", "1", "", "", ""],
]
BAD_ROWS = [
    ["", "没有标题", "2026-11-23", "2026-12-06", 10, "", "", TOWN, "", "", "", "", "", ""],
    ["分钟不对", "摘要", "2026-11-23", "2026-12-06", "半小时", "", "", TOWN, "", "", "", "", "", ""],
    ["组织不对", "摘要", "2026-11-23", "2026-12-06", 10, "", "", "示范县委/没有这个镇党委", "", "", "", "", "", ""],
    ["答案不对", "摘要", "2026-11-23", "2026-12-06", 10, "", "", TOWN, "题目", "对|错|不知道", 4, "", "", ""],
    ["日期反了", "摘要", "2026-12-06", "2026-11-23", 10, "", "", TOWN, "", "", "", "", "", ""],
    GOOD_ROWS[0],  # the same item twice in the file
]


async def test_a_plan_is_reported_row_by_row_and_imported_once(service, tmp_path):
    await service.add_member("王秀英", HONGQI)
    path = tmp_path / "学习计划.xlsx"
    plan_xlsx(path, GOOD_ROWS + BAD_ROWS)
    result = await cli(service, tmp_path, "study", "import", str(path), "--org", TOWN)
    assert result.exit_code == 1, result.output
    lines = said(result).splitlines()
    assert lines[0].startswith("发现 6 处问题，没有导入任何学习内容。")
    assert lines[1:7] == [
        "第 5 行 标题：没有填",
        "第 6 行 预计分钟：要写 1 到 600 之间的整数（大约要学几分钟）",
        "第 7 行 发布组织：没有找到组织“示范县委/没有这个镇党委”。请写完整路径，例如 示范县委/城关镇党委/红旗村党支部",
        "第 8 行 答案1：要写正确选项的序号，1 到 3 之间",
        "第 9 行 结束日期：早于开始日期 2026-12-06",
        "第 10 行：和第 3 行重复（同一发布组织、标题和起止日期），请删去一行"]
    assert await staff_items(service) == []

    partial = await cli(service, tmp_path, "study", "import", str(path), "--org", TOWN, "--allow-errors")
    assert partial.exit_code == 0, partial.output
    assert said(partial).startswith("已导入没有问题的 2 行（新增 2 项，已有 0 项（没有重复添加））。\n下面 6 处问题所在的行没有导入：")
    items = await staff_items(service)
    assert [(item.title, item.org_path, item.starts_on, item.ends_on, item.minutes, item.doc, item.link)
            for item in items] == [
        ("党费怎么交", TOWN, date(2026, 11, 23), date(2026, 12, 6), 10, "", ""),
        ("送学上门", TOWN, date(2026, 11, 30), date(2026, 12, 13), 15, "xuexi", "https://www.12371.cn/")]
    assert items[0].summary == "农民党员每月交0.2元到1元。\n具体数由支部定。"
    assert json.loads(items[0].questions)[0]["options"] == ["0.2元到1元", "收入的2%", "不用交"]
    assert json.loads(items[1].questions)[0]["options"] == ["送学上门", "必须到村部"]
    assert items[0].source == "由学习计划《学习计划.xlsx》导入（zhibu study import）"

    # The same file again: nothing new (and the good rows alone import cleanly, adding nothing).
    again = await cli(service, tmp_path, "study", "import", str(path), "--org", TOWN, "--allow-errors")
    assert "新增 0 项，已有 2 项" in again.output
    clean = tmp_path / "clean.xlsx"
    plan_xlsx(clean, GOOD_ROWS)
    result = await cli(service, tmp_path, "study", "import", str(clean), "--org", TOWN)
    assert result.exit_code == 0 and said(result).startswith("导入完成：共 2 行，新增 0 项，已有 2 项"), result.output
    assert len(await staff_items(service)) == 2

    # Without --org, a row that names no organization is a problem of that row.
    result = await cli(service, tmp_path, "study", "import", str(clean))
    assert result.exit_code == 1 and "第 4 行 发布组织：没有填" in result.output
    # A file that is no table at all.
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    result = await cli(service, tmp_path, "study", "import", str(tmp_path / "old.xls"))
    assert result.exit_code != 0 and "另存为" in result.output


# ---------------------------------------------------------------- the hours


def local(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(timezone.utc)


async def year_of_study(service) -> dict[str, Member]:
    """红旗村 with a year of figures: items done (one just before and one just after the new year, local time),
    a 党课 and a 主题党日 attended, a 支委会 (not counted), and a member called "=1+1"."""
    await hongqi_branch(service)
    await service.add_member("=1+1", HONGQI)
    async with service.sessions() as session, session.begin():
        people = {member.name: member for member in (await session.execute(select(Member))).scalars()}
        items = list((await session.execute(select(StudyItem).order_by(StudyItem.id))).scalars())
        done = [("王秀英", items[0], local(3, 1)), ("王秀英", items[1], local(12, 31, 23, 30)),
                ("王秀英", items[2], local(1, 1, 0, 30, year=2027)), ("李建国", items[0], local(6, 1)),
                ("=1+1", items[1], local(7, 1))]
        for name, item, when in done:
            session.add(StudyDone(item_id=item.id, member_id=people[name].id, done_at=when))
        codes = iter(range(300000, 300100))
        for kind, when, names in (("党课", local(4, 2), ["王秀英", "李建国", "=1+1"]), ("主题党日", local(5, 8), ["王秀英"]),
                                  ("支委会", local(5, 9), ["李建国"]), ("党课", local(1, 5, year=2025), ["王秀英"])):
            meeting = Meeting(org_id=people["李建国"].org_id, kind=kind, topic="学习", place="村部", starts_at=when,
                              called_by=people["李建国"].id, checkin_code=str(next(codes)), created_at=when,
                              updated_at=when)
            session.add(meeting)
            await session.flush()
            for name in names:
                session.add(Attendance(meeting_id=meeting.id, member_id=people[name].id, checked_in_at=when,
                                       method="code"))
    return people


async def test_the_hours_export_agrees_with_each_members_own_hours(service, tmp_path):
    people = await year_of_study(service)
    settings = service.config(StudySettings)
    async with service.sessions() as session:
        branch = await by_path(session, HONGQI)
        for year in (2025, 2026, 2027):
            lines = await export.collect_hours(session, under(branch), year=year, settings=settings)
            assert len(lines) == len(people)
            for line in lines:
                member = await session.get(Member, line.member_id)
                assert line.hours == await study_service.hours_of(session, member, today=date(year, 6, 1),
                                                                  settings=settings), (year, member.name)
    # Roster order: by name, never by hours (王秀英 has the most and is not moved up).
    assert [line.name for line in lines] == sorted(people, key=lambda name: (name, people[name].id))

    out = tmp_path / "学时.xlsx"
    result = await cli(service, tmp_path, "export", "study", "--org", HONGQI, "--year", "2026", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"已导出 {len(people)} 名党员的学时。" in result.output and str(out) in result.output
    book = load_workbook(out)
    values = [[cell.value for cell in row] for row in book.active.iter_rows()]
    assert values[0][0] == "红旗村党支部 2026年党员学习学时（按名册顺序）"
    assert values[2] == ["姓名", "支部", "学完学习内容（项）", "学习内容学时", "参加党课（次）", "党课学时",
                         "参加主题党日（次）", "主题党日学时", "合计学时", "一年要求学时"]
    rows = {row[0]: row for row in values[3:]}
    # 45 + 10 minutes at 45 a 学时 (the 31 December one counts, the 1 January one is next year's).
    assert rows["王秀英"] == ["王秀英", "红旗村党支部", "2", "1.2", "1", "2", "1", "2", "5.2", "32"]
    assert rows["李建国"] == ["李建国", "红旗村党支部", "1", "1", "1", "2", "0", "0", "3", "56"]
    assert rows["=1+1"] == ["=1+1", "红旗村党支部", "1", "0.2", "1", "2", "0", "0", "2.2", "32"]
    assert rows["赵德明"][2:] == ["0", "0", "0", "0", "0", "0", "0", "32"]
    assert [row[0] for row in values[3:]] == [line.name for line in lines]
    for row in book.active.iter_rows(min_row=4):
        assert all(cell.data_type == "s" for cell in row if cell.value is not None)
    formula = next(cell for cell in book.active["A"] if cell.value == "=1+1")
    assert formula.data_type == "s" and formula.quotePrefix
    assert not any(RANKING.search(str(cell)) for row in values for cell in row if cell is not None)

    csv_out = tmp_path / "学时.csv"
    result = await cli(service, tmp_path, "export", "study", "--org", HONGQI, "--year", "2026", "--out", str(csv_out))
    assert result.exit_code == 0 and "'=1+1,红旗村党支部" in csv_out.read_text(encoding="utf-8-sig")
    for args, says in ((["--org", "示范县委/没有这个镇党委", "--year", "2026"], "没有找到组织"),
                       (["--org", HONGQI, "--year", "26"], "年份 26 不对"),
                       (["--org", HONGQI, "--year", "2026", "-o", str(tmp_path / "a.txt")], ".xlsx 或 .csv")):
        result = await cli(service, tmp_path, "export", "study", *args)
        assert result.exit_code != 0 and says in result.output, result.output


async def test_the_plan_import_writes_nothing_when_the_file_has_no_header(service, tmp_path):
    path = tmp_path / "plan.csv"
    path.write_text("名称,内容\n学习,摘要\n", encoding="utf-8")
    result = await cli(service, tmp_path, "study", "import", str(path))
    assert result.exit_code == 1 and "找不到表头" in result.output
    async with service.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(StudyItem)
                                      .where(StudyItem.key.startswith("staff:")))).scalar_one() == 0


def test_options_split_on_every_separator_people_use():
    assert plan.options_of("甲／乙|丙｜丁\n戊\r\n己") == ["甲", "乙", "丙", "丁", "戊", "己"]
    assert plan.options_of(" 甲 | | 乙 ") == ["甲", "乙"]


async def test_processes_starting_together_take_turns_loading_the_study_items(service):
    """Every process loads the study files when it starts; two starting at once must not both insert a new item
    (on PostgreSQL the second insert failed on the unique key and its worker died; storage.db.one_at_a_time)."""
    entries, _ = load_study_items(DEFAULT_ROOT, service.config(StudySettings).study_dir)
    new = [replace(entry, key=f"{entry.key}:new") for entry in entries]

    async def start_up() -> int:
        async with service.sessions() as session, session.begin():
            changed = await study_service.sync_items(session, new, service.clock.now())
            await asyncio.sleep(0.2)  # both have read before either commits, unless they take turns
            return changed

    assert sorted(await asyncio.gather(start_up(), start_up())) == [0, len(new)]
    async with service.sessions() as session:
        keys = (await session.execute(select(StudyItem.key).where(StudyItem.key.like("%:new")))).scalars().all()
    assert sorted(keys) == sorted(entry.key for entry in new)
