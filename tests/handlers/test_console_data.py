"""The staff console's data (handlers/meetings/overview.py): what a township 组织员 checks.

A small county, on SQLite and PostgreSQL:

    示范县委
    ├── 河口镇党委 / 青山村党支部          (created first: ids are not the tree's order)
    └── 城关镇党委
        ├── 红旗村党支部  committee, 第一党小组, 第二党小组; every Q3 meeting but the 支部党员大会
        └── 东风村党支部  three members, no committee, no groups; misses September's 主题党日

Today is 2026-11-24: the third quarter has ended, the fourth has not.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event

import storage.notices
from bot.web.charts import attendance_chart, held_chart
from handlers.meetings.compliance import check_compliance_for
from handlers.meetings.overview import (
    CellStatus,
    attendance_by_month,
    attendance_points,
    branch_overview,
    checkin_log,
    day_range,
    held_points,
    meeting_detail,
    meetings_in_scope,
    required_held_by_quarter,
)
from handlers.meetings.settings import MeetingSettings
from storage.meetings import held_meetings_under, roster_under, sign_in_sheet
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
    Notice,
    OutboxMessage,
    Organization,
    OutboxStatus,
    Role,
)
from storage.orgs import branches_under, by_path, tree_order

ZONE = ZoneInfo("Asia/Shanghai")
COUNTY = "示范县委"
TOWN = f"{COUNTY}/城关镇党委"
HONGQI = f"{TOWN}/红旗村党支部"
DONGFENG = f"{TOWN}/东风村党支部"
HEKOU = f"{COUNTY}/河口镇党委"
QINGSHAN = f"{HEKOU}/青山村党支部"
GROUP_ONE = f"{HONGQI}/第一党小组"
GROUP_TWO = f"{HONGQI}/第二党小组"
TODAY = date(2026, 11, 24)
CODES = itertools.count(200000)


def settings() -> MeetingSettings:
    return MeetingSettings(_env_file=None)


def local(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZONE)


async def person(session, name: str, path: str, role: Role = Role.MEMBER):
    member, _ = await upsert_member(session, MemberFields(
        name=name, org_path=path, role=role, birth_date=date(1960, 1, 1), join_date=date(1990, 7, 1),
        category=MemberCategory.FULL), now=datetime.now(timezone.utc))
    return member


async def sign(session, meeting: Meeting, member_id: int, *, now: datetime, method: str, late: bool) -> None:
    """One more check-in on a meeting's sheet, as chat's 签到 leaves it (the console reads what it is given)."""
    session.add(Attendance(meeting_id=meeting.id, member_id=member_id, checked_in_at=now, method=method, late=late))
    await session.flush()


async def meeting(session, path: str, kind: MeetingKind, starts_at: datetime, signed: list, *, group: str | None = None,
                  caller=None, method: CheckInMethod = CheckInMethod.CODE, status=MeetingStatus.SCHEDULED,
                  topic: str = "学习") -> Meeting:
    """A meeting; each entry of signed is a member (signed with `method` at the start) or a tuple
    (member, method, minutes after the start, proxy_by)."""
    branch = await by_path(session, path)
    group_org = await by_path(session, group) if group else None
    entries = [entry if isinstance(entry, tuple) else (entry, method, 0, None) for entry in signed]
    caller = caller or entries[0][0]
    row = Meeting(org_id=branch.id, group_id=group_org.id if group_org else None, kind=kind.value, topic=topic,
                  place="村委会", starts_at=starts_at, status=status.value, called_by=caller.id,
                  checkin_code=str(next(CODES)), created_at=starts_at, updated_at=starts_at)
    session.add(row)
    await session.flush()
    for member, how, minutes, proxy in entries:
        session.add(Attendance(meeting_id=row.id, member_id=member.id, method=how.value,
                               checked_in_at=starts_at + timedelta(minutes=minutes), late=minutes > 10,
                               proxy_by=proxy.id if proxy else None))
    await session.flush()
    return row


async def leave(session, meeting_row: Meeting, member, reason: str, status: LeaveStatus, decided_by=None):
    session.add(LeaveRequest(meeting_id=meeting_row.id, member_id=member.id, reason=reason, status=status.value,
                             requested_at=meeting_row.starts_at - timedelta(days=1),
                             decided_at=meeting_row.starts_at - timedelta(hours=20) if decided_by else None,
                             decided_by=decided_by.id if decided_by else None))
    await session.flush()


async def notice(session, sender, path: str, created_at: datetime, outcomes: list[tuple[object, str, bool]]) -> Notice:
    org = await by_path(session, path)
    row = Notice(sender_id=sender.id, org_id=org.id, audience="全体党员", text="请于月底前报送学习情况。",
                 created_at=created_at, report_due_at=created_at + timedelta(days=1), recipients=len(outcomes))
    session.add(row)
    await session.flush()
    for member, status, acknowledged in outcomes:
        session.add(OutboxMessage(idempotency_key=f"notice:{row.id}:{member.id}", kind="notice", ref=f"notice:{row.id}",
                                  member_id=member.id, text=row.text, status=status, due_at=created_at,
                                  created_at=created_at, sent_at=created_at if status == OutboxStatus.SENT.value else None,
                                  acknowledged_at=created_at + timedelta(hours=2) if acknowledged else None,
                                  error="用户已取消关注" if status == OutboxStatus.FAILED.value else None))
    await session.flush()
    return row


async def county(session) -> dict:
    """The county above; returns the people and the meetings the tests look at."""
    # 河口镇 first, then 红旗村, then 东风村: creation order is the reverse of the tree's.
    qingshan_secretary = await person(session, "马青山", QINGSHAN, Role.SECRETARY)
    qingshan_namesake = await person(session, "刘小梅", QINGSHAN)
    qingshan_general = await meeting(session, QINGSHAN, MeetingKind.GENERAL, local(8, 12),
                                     [qingshan_secretary, qingshan_namesake])

    hq = {
        "secretary": await person(session, "李建国", HONGQI, Role.SECRETARY),
        "deputy": await person(session, "孙红", HONGQI, Role.DEPUTY_SECRETARY),
        "committee": await person(session, "张卫东", GROUP_ONE, Role.COMMITTEE_MEMBER),
        "wang": await person(session, "王秀英", GROUP_ONE),
        "liu": await person(session, "刘小梅", GROUP_TWO),
        "chen": await person(session, "陈志强", GROUP_TWO),
        "zhao": await person(session, "赵德明", GROUP_TWO),
    }
    everyone = list(hq.values())
    committee = [hq["secretary"], hq["deputy"], hq["committee"]]
    secretary = hq["secretary"]
    methods = itertools.cycle([CheckInMethod.CODE, CheckInMethod.QR, CheckInMethod.LOCATION, CheckInMethod.MENU])
    for month in (7, 8, 9):
        await meeting(session, HONGQI, MeetingKind.COMMITTEE, local(month, 3), committee, method=next(methods))
        await meeting(session, HONGQI, MeetingKind.GROUP, local(month, 5), [hq["committee"], hq["wang"]],
                      group=GROUP_ONE, method=next(methods))
        await meeting(session, HONGQI, MeetingKind.GROUP, local(month, 6), [hq["liu"], hq["chen"]],
                      group=GROUP_TWO, method=next(methods))
        theme = await meeting(session, HONGQI, MeetingKind.THEME_DAY, local(month, 1), everyone[:5],
                              method=next(methods))
    # The last theme day: 赵德明 (no phone) signed in by the secretary, 陈志强 came late by QR.
    session.add(Attendance(meeting_id=theme.id, member_id=hq["zhao"].id, method=CheckInMethod.PROXY.value,
                           checked_in_at=theme.starts_at + timedelta(minutes=2), proxy_by=secretary.id))
    session.add(Attendance(meeting_id=theme.id, member_id=hq["chen"].id, method=CheckInMethod.QR.value,
                           checked_in_at=theme.starts_at + timedelta(minutes=25), late=True))
    await session.flush()
    await meeting(session, HONGQI, MeetingKind.LECTURE, local(8, 20), everyone)
    # No 支部党员大会 in Q3: one was cancelled, one was called but nobody signed its sheet.
    await meeting(session, HONGQI, MeetingKind.GENERAL, local(9, 25), [], caller=secretary,
                  status=MeetingStatus.CANCELLED)
    await meeting(session, HONGQI, MeetingKind.GENERAL, local(9, 28), [], caller=secretary)
    # A group meeting 刘小梅 of the other group came to (a guest), with 王秀英's leave still pending.
    group_meeting = await meeting(session, HONGQI, MeetingKind.GROUP, local(9, 15), [hq["committee"], hq["liu"]],
                                  group=GROUP_ONE)
    await leave(session, group_meeting, hq["wang"], "在外地打工", LeaveStatus.PENDING)
    # Q4 so far: October's 支委会.
    await meeting(session, HONGQI, MeetingKind.COMMITTEE, local(10, 8), committee)

    df = {
        "secretary": await person(session, "周海", DONGFENG, Role.SECRETARY),
        "wu": await person(session, "吴芳", DONGFENG),
        "zheng": await person(session, "郑玉兰", DONGFENG),
    }
    df_all = list(df.values())
    await meeting(session, DONGFENG, MeetingKind.THEME_DAY, local(7, 1), df_all)
    await meeting(session, DONGFENG, MeetingKind.LECTURE, local(7, 15), df_all, method=CheckInMethod.MENU)
    await meeting(session, DONGFENG, MeetingKind.THEME_DAY, local(8, 1), df_all[:2])
    general = await meeting(session, DONGFENG, MeetingKind.GENERAL, local(9, 10, 19, 30), [
        (df["secretary"], CheckInMethod.QR, -5, None),
        (df["wu"], CheckInMethod.PROXY, 15, df["secretary"]),
    ], topic="讨论村集体经济项目")
    await leave(session, general, df["zheng"], "住院", LeaveStatus.APPROVED, decided_by=df["secretary"])
    general.host, general.recorder = "周海", "吴芳"
    general.minutes, general.resolutions, general.votes = "讨论了合作社分红方案。", "通过分红方案", "同意 2 票"
    general.record_added_at = general.starts_at + timedelta(hours=3)
    session.add(MeetingPhoto(meeting_id=general.id, media_id="MEDIA-1", pic_url="http://mmbiz.example/1.jpg",
                             added_by=df["secretary"].id, added_at=general.starts_at + timedelta(hours=1)))
    await session.flush()

    town_notice = await notice(session, hq["secretary"], TOWN, local(8, 20), [
        (hq["deputy"], OutboxStatus.SENT.value, True), (hq["wang"], OutboxStatus.SENT.value, False),
        (df["wu"], OutboxStatus.FAILED.value, False)])
    await notice(session, qingshan_secretary, HEKOU, local(8, 21), [(qingshan_namesake, OutboxStatus.SENT.value, True)])
    await notice(session, hq["secretary"], TOWN, local(5, 20), [(hq["wang"], OutboxStatus.SENT.value, True)])
    return {"hq": hq, "df": df, "general": general, "group_meeting": group_meeting, "qingshan_general": qingshan_general,
            "town_notice": town_notice}


def q3() -> dict:
    return dict(period="quarter", today=TODAY, settings=settings(), day=date(2026, 8, 1))


async def test_the_branch_that_missed_its_quarterly_general_meeting_shows_missing(sessions):
    async with sessions() as session, session.begin():
        await county(session)
        town = await by_path(session, TOWN)
        overview = await branch_overview(session, town, **q3())
    assert overview.period.label == "2026年第3季度"
    assert [column.kind for column in overview.columns] == [
        MeetingKind.GENERAL, MeetingKind.COMMITTEE, MeetingKind.GROUP, MeetingKind.LECTURE, MeetingKind.THEME_DAY]
    dongfeng, hongqi = overview.rows
    assert hongqi.cell(MeetingKind.GENERAL).status == CellStatus.MISSING
    assert hongqi.cell(MeetingKind.GENERAL).label == "缺"
    assert dongfeng.cell(MeetingKind.GENERAL).status == CellStatus.HELD
    assert dongfeng.cell(MeetingKind.GENERAL).dates == (date(2026, 9, 10),)
    # Every month's 支委会 and each group's monthly meeting, with the dates.
    committee = hongqi.cell(MeetingKind.COMMITTEE)
    assert committee.status == CellStatus.HELD and (committee.held, committee.required) == (3, 3)
    assert committee.dates == (date(2026, 7, 3), date(2026, 8, 3), date(2026, 9, 3))
    groups = hongqi.cell(MeetingKind.GROUP)
    assert [(slot.period_label, slot.group) for slot in groups.slots[:2]] == [
        ("2026年7月", "第一党小组"), ("2026年7月", "第二党小组")]
    assert groups.status == CellStatus.HELD and groups.required == 6
    # 东风村 has no committee and no groups; it missed September's 主题党日.
    assert dongfeng.cell(MeetingKind.COMMITTEE).status == CellStatus.NOT_REQUIRED
    assert dongfeng.cell(MeetingKind.GROUP).status == CellStatus.NOT_REQUIRED
    theme = dongfeng.cell(MeetingKind.THEME_DAY)
    assert theme.status == CellStatus.MISSING
    assert [slot.status for slot in theme.slots] == [CellStatus.HELD, CellStatus.HELD, CellStatus.MISSING]


async def test_rows_are_in_tree_order_never_by_a_score(sessions):
    async with sessions() as session, session.begin():
        await county(session)
        whole = await by_path(session, COUNTY)
        overview = await branch_overview(session, whole, **q3())
        hongqi = await by_path(session, HONGQI)
        alone = await branch_overview(session, hongqi, **q3())
    # Created 青山村, 红旗村, 东风村; listed by township, then village, by name.
    assert [row.path for row in overview.rows] == [DONGFENG, HONGQI, QINGSHAN]
    assert [row.section for row in overview.rows] == ["城关镇党委", "城关镇党委", "河口镇党委"]
    # A branch's own scope: just itself.
    assert [row.name for row in alone.rows] == ["红旗村党支部"] and alone.rows[0].section == ""


def test_tree_order_reads_numbers_by_value():
    paths = ["县委/第10镇党委", "县委/第2镇党委/第10村党支部", "县委/第2镇党委", "县委/第2镇党委/第9村党支部"]
    assert sorted(paths, key=tree_order) == [
        "县委/第2镇党委", "县委/第2镇党委/第9村党支部", "县委/第2镇党委/第10村党支部", "县委/第10镇党委"]


async def test_the_current_quarter_is_not_yet_due_until_its_months_end(sessions):
    async with sessions() as session, session.begin():
        await county(session)
        town = await by_path(session, TOWN)
        overview = await branch_overview(session, town, period="quarter", today=TODAY, settings=settings())
        month = await branch_overview(session, town, period="month", today=TODAY, settings=settings())
        year = await branch_overview(session, town, period="year", today=TODAY, settings=settings())
        with pytest.raises(ValueError):
            await branch_overview(session, town, period="week", today=TODAY, settings=settings())
    dongfeng, hongqi = overview.rows
    assert overview.period.key == "2026-Q4"
    assert hongqi.cell(MeetingKind.GENERAL).status == CellStatus.NOT_DUE
    committee = hongqi.cell(MeetingKind.COMMITTEE)
    assert committee.status == CellStatus.NOT_DUE and committee.dates == (date(2026, 10, 8),)
    assert [slot.status for slot in committee.slots] == [CellStatus.HELD, CellStatus.NOT_DUE, CellStatus.NOT_DUE]
    # October ended without any group meeting: missing, though November's are not due yet.
    assert hongqi.cell(MeetingKind.GROUP).status == CellStatus.MISSING
    # A month shows only the monthly kinds; a year all seven, the yearly ones not yet due.
    assert {column.kind for column in month.columns} == {MeetingKind.COMMITTEE, MeetingKind.GROUP,
                                                         MeetingKind.THEME_DAY}
    assert len(year.columns) == 7
    assert year.rows[1].cell(MeetingKind.LIFE).status == CellStatus.NOT_DUE
    assert year.rows[1].cell(MeetingKind.GENERAL).status == CellStatus.MISSING  # Q1–Q3 have none


async def test_attendance_and_notices_over_the_period(sessions, monkeypatch):
    async with sessions() as session, session.begin():
        await county(session)
        town = await by_path(session, TOWN)
        whole = await by_path(session, COUNTY)
        overview = await branch_overview(session, town, **q3())
        # Recipients are counted a bounded number of refs at a time: one at a time here.
        monkeypatch.setattr(storage.notices, "REFS_PER_STATEMENT", 1)
        county_view = await branch_overview(session, whole, **q3())
    dongfeng = overview.rows[0].attendance
    # 7月 主题党日 3/3, 党课 3/3; 8月 主题党日 2/3; 9月 大会 2/3 and 郑玉兰 on approved leave.
    assert (dongfeng.meetings, dongfeng.expected, dongfeng.present, dongfeng.on_leave, dongfeng.absent) == (4, 12, 10, 1, 1)
    assert dongfeng.percent == 83
    assert overview.attendance == overview.rows[0].attendance + overview.rows[1].attendance
    # The township's notice (not 河口镇's, not May's): 3 recipients, 2 delivered, 1 failed, 1 收到.
    notices = overview.notices
    assert [line.org_name for line in notices.lines] == ["城关镇党委"]
    assert (notices.recipients, notices.sent, notices.failed, notices.acknowledged, notices.pending) == (3, 2, 1, 1, 0)
    assert [line.org_name for line in county_view.notices.lines] == ["城关镇党委", "河口镇党委"]
    assert [(line.recipients, line.acknowledged) for line in county_view.notices.lines] == [(3, 1), (1, 1)]


async def test_figures_agree_with_the_sign_in_sheets_and_the_per_branch_rules(sessions):
    async with sessions() as session, session.begin():
        await county(session)
        whole = await by_path(session, COUNTY)
        start, end = local(1, 1, 0), local(1, 1, 0, year=2027)
        roster = await roster_under(session, whole)
        held = await held_meetings_under(session, whole, start, end, with_counts=True)
        rows, total = await meetings_in_scope(session, whole, limit=200)
        by_id = {row.id: row for row in rows}
        assert total == len(rows) and len(held) == sum(row.held for row in rows)
        for item in held:
            sheet = await sign_in_sheet(session, await session.get(Meeting, item.id))
            assert roster.expected(item.kind, item.org_id, item.group_id) == sheet.expected
            assert item.present == len(sheet.present) == by_id[item.id].present
            assert item.signed == len(sheet.present) + len(sheet.guests) == by_id[item.id].signed
            assert item.on_leave == by_id[item.id].on_leave == len(sheet.on_leave)
            assert by_id[item.id].expected == sheet.expected
        # The overview's cells are check_compliance_for's requirements, branch by branch.
        overview = await branch_overview(session, whole, **q3())
        for (node, _), row in zip(await branches_under(session, whole), overview.rows):
            branch = await session.get(Organization, node.id)
            report = await check_compliance_for(session, branch, year=2026, quarter=3, settings=settings())
            expected = sorted((r.kind.value, r.period.key, r.group.name if r.group else "", tuple(r.held))
                              for r in report.requirements)
            got = sorted((cell.kind.value, slot.period_key, slot.group, slot.dates)
                         for cell in row.cells for slot in cell.slots)
            assert got == expected, branch.name


async def test_the_overview_reads_a_few_grouped_queries_whatever_the_number_of_branches(sessions, engine):
    async with sessions() as session, session.begin():
        await county(session)
        whole = await by_path(session, COUNTY)
        statements = []

        def count(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            await branch_overview(session, whole, **q3())
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) <= 8, statements


async def test_meeting_detail_shows_the_evidence_and_nothing_outside_the_scope(sessions):
    async with sessions() as session, session.begin():
        made = await county(session)
        town = await by_path(session, TOWN)
        other_town = await by_path(session, HEKOU)
        dongfeng = await by_path(session, DONGFENG)
        detail = await meeting_detail(session, made["general"].id, town)
        assert await meeting_detail(session, made["general"].id, other_town) is None
        assert await meeting_detail(session, made["qingshan_general"].id, town) is None
        assert await meeting_detail(session, 987654, town) is None
        assert await meeting_detail(session, made["general"].id, dongfeng) is not None
        group_detail = await meeting_detail(session, made["group_meeting"].id, town)
    assert (detail.kind, detail.topic, detail.branch_name, detail.called_by) == (
        "支部党员大会", "讨论村集体经济项目", "东风村党支部", "周海")
    assert detail.held and detail.expected == 3
    assert [(line.name, line.method_label, line.late, line.proxy_by) for line in detail.present] == [
        ("周海", "扫码", False, None), ("吴芳", "代签", True, "周海")]
    assert detail.present[0].checked_in_at == local(9, 10, 19, 25).astimezone(timezone.utc)
    assert [(line.name, line.reason, line.status_label, line.decided_by) for line in detail.on_leave] == [
        ("郑玉兰", "住院", "已准假", "周海")]
    assert detail.absent == () and detail.guests == ()
    assert (detail.record.host, detail.record.recorder, detail.record.resolutions, detail.record.votes) == (
        "周海", "吴芳", "通过分红方案", "同意 2 票")
    assert [(photo.media_id, photo.added_by) for photo in detail.photos] == [("MEDIA-1", "周海")]
    # A group meeting: another group's member is a guest; a pending leave leaves its asker absent.
    assert group_detail.group_name == "第一党小组"
    assert [line.name for line in group_detail.guests] == ["刘小梅"]
    assert [(line.name, line.leave.status_label) for line in group_detail.absent] == [("王秀英", "待批")]
    assert [line.name for line in group_detail.leave_requests] == ["王秀英"]


async def test_meetings_in_scope_filter_and_page(sessions):
    async with sessions() as session, session.begin():
        made = await county(session)
        town = await by_path(session, TOWN)
        dongfeng = await by_path(session, DONGFENG)
        generals, total = await meetings_in_scope(session, town, kind=MeetingKind.GENERAL, limit=10)
        second, same_total = await meetings_in_scope(session, town, kind="支部党员大会", limit=1, offset=1)
        september = day_range(date(2026, 9, 1), date(2026, 9, 30), ZONE)
        in_september, _ = await meetings_in_scope(session, town, branch_id=dongfeng.id, start=september[0],
                                                  end=september[1])
        qingshan = await by_path(session, QINGSHAN)
        foreign, foreign_total = await meetings_in_scope(session, town, branch_id=qingshan.id)
    # Newest first; the cancelled one and the unsigned one are listed, neither counts as held.
    assert [(row.branch_name, row.starts_at.astimezone(ZONE).day, row.cancelled, row.held) for row in generals] == [
        ("红旗村党支部", 28, False, False), ("红旗村党支部", 25, True, False), ("东风村党支部", 10, False, True)]
    assert total == same_total == 3 and [row.id for row in second] == [generals[1].id]
    assert [row.id for row in in_september] == [made["general"].id]
    row = in_september[0]
    assert (row.expected, row.present, row.on_leave, row.photos, row.has_record) == (3, 2, 1, 1, True)
    assert foreign == [] and foreign_total == 0


async def test_checkin_log_search_finds_exactly_that_person(sessions):
    async with sessions() as session, session.begin():
        made = await county(session)
        town = await by_path(session, TOWN)
        liu = made["hq"]["liu"]
        rows, total = await checkin_log(session, town, name_query=" 刘小梅 ")
        all_rows, everyone = await checkin_log(session, town, limit=500)
        page, page_total = await checkin_log(session, town, limit=5, offset=5)
        wildcard, wildcard_total = await checkin_log(session, town, name_query="%")
        zhao, _ = await checkin_log(session, town, name_query="德明")
        july = day_range(date(2026, 7, 1), date(2026, 7, 31), ZONE)
        in_july, july_total = await checkin_log(session, town, start=july[0], end=july[1], limit=500)
    # 刘小梅 of 红旗村: her group's three meetings, three theme days, the lecture and the other group's
    # meeting she visited — not her namesake in 河口镇's 青山村.
    assert total == len(rows) == 8 and {row.member_id for row in rows} == {liu.id}
    assert {row.branch_name for row in rows} == {"红旗村党支部"}
    assert everyone == len(all_rows) and page_total == everyone
    assert [row.attendance_id for row in page] == [row.attendance_id for row in all_rows[5:10]]
    # Newest meeting first, and in a meeting the latest check-in first.
    assert all((a.meeting_starts_at, a.checked_in_at) >= (b.meeting_starts_at, b.checked_in_at)
               for a, b in zip(all_rows, all_rows[1:]))
    assert {row.method_label for row in all_rows} == {"签到码", "扫码", "位置", "菜单", "代签"}
    assert (wildcard, wildcard_total) == ([], 0)
    assert [(row.method_label, row.proxy_by) for row in zhao] == [("代签", "李建国"), ("签到码", None)]
    assert july_total == len(in_july) > 0 and all(row.meeting_starts_at.astimezone(ZONE).month == 7 for row in in_july)


async def test_chart_figures_and_charts(sessions):
    async with sessions() as session, session.begin():
        await county(session)
        town = await by_path(session, TOWN)
        dongfeng = await by_path(session, DONGFENG)
        months = await attendance_by_month(session, dongfeng, months=12, today=TODAY, settings=settings())
        quarters = await required_held_by_quarter(session, town, quarters=4, today=TODAY, settings=settings())
    assert [item.label for item in months][:2] == ["2025年12月", "2026年1月"] and months[-1].label == "2026年11月"
    by_month = {item.month.month: item.figures for item in months}
    assert (by_month[7].present, by_month[7].expected) == (6, 6)
    assert (by_month[8].present, by_month[8].expected) == (2, 3)
    assert (by_month[9].present, by_month[9].expected, by_month[9].on_leave) == (2, 3, 1)
    assert by_month[10].rate is None

    # Q1, Q2: nothing (红旗村 14 requirements a quarter, 东风村 5). Q3: 红旗村 all but the general meeting,
    # 东风村 all but September's theme day. Q4 so far: October's 支委会 held, October's other monthly ones missed.
    assert [(item.label, item.held, item.missing, item.not_due) for item in quarters] == [
        ("2026年第1季度", 0, 19, 0), ("2026年第2季度", 0, 19, 0), ("2026年第3季度", 17, 2, 0),
        ("2026年第4季度", 1, 4, 14)]

    svg = attendance_chart(attendance_points(months), title="东风村党支部 每月出勤率")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<title" in svg and 'role="img"' in svg and "<script" not in svg and "style=" not in svg
    for label in ("12月", "2025年", "1月", "2026年", "7月", "11月"):
        assert f">{label}</tspan>" in svg
    assert ">100%</tspan>" in svg and ">67%</tspan>" in svg and ">无会议</tspan>" in svg

    bars = held_chart(held_points(quarters))
    assert ">第3季度</tspan>" in bars and ">17/19</tspan>" in bars and ">1/19</tspan>" in bars
    assert "已开 17，缺 2，未到期 0，应开 19" in bars
