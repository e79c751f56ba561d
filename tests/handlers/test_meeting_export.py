"""`zhibu export attendance`: sign-in sheets as XLSX (one sheet per meeting) and CSV."""

from __future__ import annotations

import asyncio
import csv
import itertools
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.config import DemoDefaults
from handlers.meetings.export import ExportError, MeetingSheet, export_attendance, sheet_name
from storage.db import create_engine, session_factory
from storage.members import MemberFields, upsert_member
from storage.models import (
    Attendance,
    CheckInMethod,
    LeaveRequest,
    LeaveStatus,
    Meeting,
    MeetingKind,
    MeetingPhoto,
    MeetingStatus,
    MemberCategory,
    Role,
)
from storage.orgs import by_path

ZONE = ZoneInfo("Asia/Shanghai")
TOWN = "示范县委/城关镇党委"
HONGQI = f"{TOWN}/红旗村党支部"
DONGFENG = f"{TOWN}/东风村党支部"
CODES = itertools.count(200000)


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZONE)


async def add_member(session, name: str, path: str, role: Role = Role.MEMBER):
    member, _ = await upsert_member(session, MemberFields(
        name=name, org_path=path, phone="", role=role, birth_date=date(1960, 1, 1), join_date=date(1990, 7, 1),
        category=MemberCategory.FULL, hardship=False, away_from_home=False), now=datetime.now(timezone.utc))
    return member


async def add_meeting(session, path: str, kind: MeetingKind, starts_at: datetime, caller, *, group_path=None,
                      status=MeetingStatus.SCHEDULED, **record) -> Meeting:
    branch = await by_path(session, path)
    group = await by_path(session, group_path) if group_path else None
    meeting = Meeting(org_id=branch.id, group_id=group.id if group else None, kind=kind.value,
                      topic=record.pop("topic", "学习党的二十届四中全会精神"), place=record.pop("place", "村委会二楼会议室"),
                      starts_at=starts_at, status=status.value, called_by=caller.id, checkin_code=str(next(CODES)),
                      created_at=starts_at, updated_at=starts_at, **record)
    session.add(meeting)
    await session.flush()
    return meeting


def sign(session, meeting: Meeting, member, minutes_after: int, method: CheckInMethod, *, late=False, proxy_by=None):
    session.add(Attendance(meeting_id=meeting.id, member_id=member.id, method=method.value, late=late,
                           checked_in_at=meeting.starts_at + timedelta(minutes=minutes_after),
                           proxy_by=proxy_by.id if proxy_by else None))


async def populate(sessions) -> None:
    async with sessions() as session, session.begin():
        secretary = await add_member(session, "李建国", HONGQI, Role.SECRETARY)
        wang = await add_member(session, "王秀英", HONGQI + "/第一党小组")
        zhao = await add_member(session, "赵德明", HONGQI + "/第一党小组")  # no smartphone
        chen = await add_member(session, "陈志强", HONGQI + "/第二党小组")
        liu = await add_member(session, "刘小梅", HONGQI + "/第二党小组")
        sun = await add_member(session, "孙红", HONGQI)
        qian = await add_member(session, "钱进", HONGQI)

        general = await add_meeting(session, HONGQI, MeetingKind.GENERAL, local(2026, 11, 25, 15), secretary,
                                    host="李建国", recorder="王秀英", resolutions="同意推荐张三为入党积极分子。",
                                    votes="应到 7 人，实到 5 人，同意 5 票，反对 0 票，弃权 0 票")
        sign(session, general, secretary, -10, CheckInMethod.CODE)
        sign(session, general, wang, -5, CheckInMethod.QR)
        sign(session, general, zhao, -3, CheckInMethod.PROXY, proxy_by=secretary)
        sign(session, general, qian, 25, CheckInMethod.LOCATION, late=True)
        sign(session, general, liu, 2, CheckInMethod.MENU)
        session.add(LeaveRequest(meeting_id=general.id, member_id=chen.id, reason="外出务工",
                                 requested_at=general.starts_at,
                                 status=LeaveStatus.APPROVED.value))
        # A declined leave is an absence on the sheet.
        session.add(LeaveRequest(meeting_id=general.id, member_id=sun.id, reason="有事", requested_at=general.starts_at,
                                 status=LeaveStatus.DECLINED.value))
        session.add(MeetingPhoto(meeting_id=general.id, media_id="m1", added_by=secretary.id,
                                 added_at=general.starts_at))

        group = await add_meeting(session, HONGQI, MeetingKind.GROUP, local(2026, 11, 25, 19), wang,
                                  group_path=HONGQI + "/第一党小组")
        sign(session, group, wang, 0, CheckInMethod.CODE)
        sign(session, group, liu, 1, CheckInMethod.CODE)  # another group's member who came along

        # Outside the range (the 30th is the last day; 1 December is out), cancelled: not exported.
        await add_meeting(session, HONGQI, MeetingKind.THEME_DAY, local(2026, 12, 1, 9), secretary)
        await add_meeting(session, HONGQI, MeetingKind.LECTURE, local(2026, 11, 26, 9), secretary,
                          status=MeetingStatus.CANCELLED)
        # The last evening of the range counts (local dates, inclusive).
        await add_meeting(session, HONGQI, MeetingKind.THEME_DAY, local(2026, 11, 30, 20), secretary)

        dongfeng_secretary = await add_member(session, "周海", DONGFENG, Role.SECRETARY)
        other = await add_meeting(session, DONGFENG, MeetingKind.GENERAL, local(2026, 11, 25, 15), dongfeng_secretary)
        sign(session, other, dongfeng_secretary, 0, CheckInMethod.CODE)


def rows_of(sheet) -> list[list]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def table_of(rows: list[list]) -> dict[str, list]:
    start = next(index for index, row in enumerate(rows) if row[:2] == ["序号", "姓名"])
    table = {}
    for row in rows[start + 1:]:
        if row[0] is None:
            break
        table[row[1]] = row
    return table


async def test_xlsx_has_a_sign_in_sheet_per_meeting(sessions, tmp_path):
    await populate(sessions)
    out = tmp_path / "sheets.xlsx"
    result = await export_attendance(sessions, org_path=HONGQI, start=date(2026, 11, 1), end=date(2026, 11, 30),
                                     out=out, zone=ZONE)
    assert result.path == out and result.meetings == 3
    workbook = openpyxl.load_workbook(out)
    assert workbook.sheetnames == ["11-25 支部党员大会", "11-25 党小组会 第一党小组", "11-30 主题党日"]

    rows = rows_of(workbook["11-25 支部党员大会"])
    assert rows[0][0] == "红旗村党支部 支部党员大会 签到表"
    facts = {row[0]: row[1] for row in rows[1:6]}
    assert facts == {"会议时间": "2026-11-25 15:00", "会议地点": "村委会二楼会议室", "会议主题": "学习党的二十届四中全会精神",
                     "主持人": "李建国", "记录人": "王秀英"}
    table = table_of(rows)
    assert list(table) == ["李建国", "王秀英", "赵德明", "陈志强", "刘小梅", "孙红", "钱进"]  # roster order
    assert [row[0] for row in table.values()] == [1, 2, 3, 4, 5, 6, 7]
    assert table["李建国"][2:] == ["14:50", "签到码", None]
    assert table["王秀英"][3] == "扫码"
    assert table["赵德明"][3:] == ["代签", "由李建国代签"]
    assert table["钱进"][2:] == ["15:25", "位置", "迟到"]
    assert table["刘小梅"][3] == "菜单"
    assert table["陈志强"][2:] == [None, None, "请假：外出务工"]
    assert table["孙红"][4] == "缺席"
    summary = next(row for row in rows if row[0] == "合计")
    assert summary == ["合计", "应到 7", "实到 5", "请假 1", "缺席 1"]
    record = {row[0]: row[1] for row in rows if row[0] in ("决议", "表决情况", "会议照片")}
    assert record == {"决议": "同意推荐张三为入党积极分子。", "表决情况": "应到 7 人，实到 5 人，同意 5 票，反对 0 票，弃权 0 票",
                      "会议照片": "1 张"}

    group_rows = rows_of(workbook["11-25 党小组会 第一党小组"])
    assert group_rows[0][0] == "红旗村党支部第一党小组 党小组会 签到表"
    group_table = table_of(group_rows)
    assert list(group_table) == ["王秀英", "赵德明", "刘小梅"]
    assert group_table["赵德明"][4] == "缺席"
    assert group_table["刘小梅"][4].startswith("列席")
    assert next(row for row in group_rows if row[0] == "合计")[1:3] == ["应到 2", "实到 1"]


async def test_a_township_export_covers_its_branches_with_unique_sheet_names(sessions, tmp_path):
    await populate(sessions)
    result = await export_attendance(sessions, org_path=TOWN, start=date(2026, 11, 25), end=date(2026, 11, 25),
                                     out=tmp_path / "town.xlsx", zone=ZONE)
    names = openpyxl.load_workbook(result.path).sheetnames
    # In order of time: both general meetings began at 15:00.
    assert names == ["红旗村党支部 11-25 支部党员大会", "东风村党支部 11-25 支部党员大会", "红旗村党支部 11-25 党小组会 第一党小组"]


async def test_csv_has_a_line_per_expected_member_per_meeting(sessions, tmp_path):
    await populate(sessions)
    out = tmp_path / "sheets.csv"
    result = await export_attendance(sessions, org_path=HONGQI, start=date(2026, 11, 25), end=date(2026, 11, 25),
                                     out=out, zone=ZONE)
    assert result.meetings == 2
    assert out.read_bytes().startswith("\ufeff".encode())  # Excel needs the BOM for Chinese
    with out.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    general = [row for row in rows if row["会议类型"] == "支部党员大会"]
    assert len(general) == 7 and len([row for row in rows if row["会议类型"] == "党小组会"]) == 3
    by_name = {row["姓名"]: row for row in general}
    assert by_name["赵德明"]["方式"] == "代签" and by_name["赵德明"]["出席情况"] == "已签到"
    assert by_name["钱进"]["备注"] == "迟到"
    assert by_name["陈志强"]["出席情况"] == "请假" and by_name["陈志强"]["备注"] == "请假：外出务工"
    assert by_name["孙红"]["出席情况"] == "缺席"
    assert by_name["李建国"]["会议时间"] == "2026-11-25 15:00" and by_name["李建国"]["主持人"] == "李建国"
    assert by_name["李建国"]["组织"] == "红旗村党支部" and by_name["李建国"]["地点"] == "村委会二楼会议室"


async def test_unknown_org_and_bad_ranges_are_refused(sessions, tmp_path):
    await populate(sessions)
    with pytest.raises(ExportError, match="没有找到组织"):
        await export_attendance(sessions, org_path="示范县委/没有这个村党支部", start=date(2026, 11, 1),
                                end=date(2026, 11, 30), out=tmp_path / "x.xlsx", zone=ZONE)
    with pytest.raises(ExportError, match="不是党组织名称"):
        await export_attendance(sessions, org_path="示范县委/没有这个村", start=date(2026, 11, 1),
                                end=date(2026, 11, 30), out=tmp_path / "x.xlsx", zone=ZONE)
    with pytest.raises(ExportError, match="晚于"):
        await export_attendance(sessions, org_path=HONGQI, start=date(2026, 12, 1), end=date(2026, 11, 1),
                                out=tmp_path / "x.xlsx", zone=ZONE)
    with pytest.raises(ExportError, match=".xlsx 或 .csv"):
        await export_attendance(sessions, org_path=HONGQI, start=date(2026, 11, 1), end=date(2026, 11, 30),
                                out=tmp_path / "x.pdf", zone=ZONE)


def _sheet(kind: str, group: str = "", branch: str = "红旗村党支部") -> MeetingSheet:
    return MeetingSheet(branch=branch, kind=kind, group=group, starts_at=local(2026, 11, 25, 15), place="", topic="",
                        host="", recorder="", resolutions="", votes="", photos=0)


def test_sheet_names_are_valid_and_unique():
    used: set[str] = set()
    first = sheet_name(_sheet("支部党员大会"), used, with_branch=False)
    second = sheet_name(_sheet("支部党员大会"), used, with_branch=False)
    assert (first, second) == ("11-25 支部党员大会", "11-25 支部党员大会(2)")
    odd = sheet_name(_sheet("党小组会", group="第[一]/小组:*?\\"), used, with_branch=False)
    assert not set("[]:*?/\\") & set(odd)
    long_names = [sheet_name(_sheet("党小组会", group="第一党小组", branch="某某县某某镇某某村某某某某某党总支第三党支部"), used,
                             with_branch=True) for _ in range(12)]
    assert all(len(name) <= 31 for name in long_names)
    assert len(set(long_names)) == 12 and long_names[-1].endswith("(12)")


# ---------------------------------------------------------------- the command


@pytest.fixture
def env(tmp_path) -> dict:
    return {"ZHIBU_DATA_DIR": str(tmp_path / "data"), "ZHIBU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
            "ZHIBU_WECHAT_APP_ID": DemoDefaults.app_id, "ZHIBU_WECHAT_APP_SECRET": DemoDefaults.app_secret,
            "ZHIBU_WECHAT_TOKEN": DemoDefaults.token}


def run(env: dict, *args: str):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def populated(env: dict) -> None:
    assert run(env, "init").exit_code == 0

    async def fill():
        engine = create_engine(env["ZHIBU_DATABASE_URL"])
        try:
            await populate(session_factory(engine))
        finally:
            await engine.dispose()

    asyncio.run(fill())


def test_command_writes_xlsx_in_the_current_folder_and_prints_the_path(env, tmp_path, monkeypatch):
    populated(env)
    folder = tmp_path / "here"
    folder.mkdir()
    monkeypatch.chdir(folder)
    result = run(env, "export", "attendance", "--org", HONGQI, "--from", "2026-11-01", "--to", "2026-11-30")
    assert result.exit_code == 0, result.output
    printed = Path(result.stdout.strip())
    assert printed == folder / "attendance-红旗村党支部-2026-11-01-2026-11-30.xlsx"
    assert "已导出 3 次会议" in result.stderr
    assert len(openpyxl.load_workbook(printed).sheetnames) == 3


def test_command_writes_csv_by_suffix(env, tmp_path):
    populated(env)
    out = tmp_path / "out" / "红旗.csv"
    out.parent.mkdir()
    result = run(env, "export", "attendance", "--org", HONGQI, "--from", "2026-11-25", "--to", "2026-11-25",
                 "--out", str(out))
    assert result.exit_code == 0 and result.stdout.strip() == str(out)
    assert "姓名" in out.read_text(encoding="utf-8-sig").splitlines()[0]


@pytest.mark.parametrize("args, message", [
    (["--org", "示范县委/不存在的村党支部", "--from", "2026-11-01", "--to", "2026-11-30"], "没有找到组织"),
    (["--org", "示范县委/不存在的村", "--from", "2026-11-01", "--to", "2026-11-30"], "不是党组织名称"),
    (["--org", HONGQI, "--from", "2026-11-31", "--to", "2026-12-01"], "YYYY-MM-DD"),
    (["--org", HONGQI, "--from", "11/01", "--to", "2026-12-01"], "YYYY-MM-DD"),
    (["--org", HONGQI, "--from", "2026-12-01", "--to", "2026-11-01"], "晚于"),
    (["--org", HONGQI, "--from", "2026-11-01", "--to", "2026-11-30", "--out", "x.pdf"], ".xlsx 或 .csv"),
])
def test_command_errors_exit_with_1(env, args, message):
    populated(env)
    result = run(env, "export", "attendance", *args)
    assert result.exit_code == 1
    assert message in result.output
