"""The console overview keeps the figures of months that did not change (handlers/meetings/overview_cache.py):
whatever changes after a render shows on the next one, exactly as a render from nothing would show it.

Each test renders (which keeps the months), changes something in another session as the chat or an import
would, and renders again: the change shows, and the figures equal those of a render with nothing kept.
The county is test_console_data's (today 2026-11-24; the third quarter has ended).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, event, func, select

from handlers.meetings import overview_cache
from handlers.meetings.overview import (
    CellStatus,
    attendance_by_month,
    branch_overview,
    overview_page_data,
    required_held_by_quarter,
)
from storage.models import Attendance, LeaveRequest, LeaveStatus, Meeting, MeetingKind, MeetingStatus, Member, Role
from storage.orgs import by_path
from test_console_data import (DONGFENG, GROUP_ONE, GROUP_TWO, HONGQI, QINGSHAN, TODAY, TOWN, county, local, person,
                               settings, sign)

NOW = datetime(2026, 11, 24, 2, tzinfo=timezone.utc)


async def render(sessions, path: str = TOWN, **period):
    """The console page's figures for the scope at path (the third quarter unless told), in a session of
    their own as a page has."""
    period = period or {"period": "quarter", "day": date(2026, 8, 1)}
    async with sessions() as session:
        scope = await by_path(session, path)
        return await overview_page_data(session, scope, today=TODAY, settings=settings(), **period)


async def render_from_nothing(sessions, path: str = TOWN, **period):
    overview_cache.forget()
    return await render(sessions, path, **period)


async def rendered_twice(sessions, path: str = TOWN, **period):
    """A render after the change (using what the first render kept) and one from nothing: they must agree."""
    kept = await render(sessions, path, **period)
    assert kept == await render_from_nothing(sessions, path, **period)
    return kept


async def setup(sessions) -> dict:
    async with sessions() as session, session.begin():
        made = await county(session)
    return made


async def meeting_at(session, path: str, kind: MeetingKind, starts_at: datetime) -> Meeting:
    branch = await by_path(session, path)
    return (await session.execute(select(Meeting).where(Meeting.org_id == branch.id, Meeting.kind == kind.value,
                                                        Meeting.starts_at == starts_at))).scalar_one()


def hongqi_and_dongfeng(data):
    dongfeng, hongqi = data.overview.rows
    return hongqi, dongfeng


async def test_a_second_render_counts_nothing_again(sessions, engine):
    await setup(sessions)
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    async def counted() -> tuple:
        async with sessions() as session:
            scope = await by_path(session, TOWN)
            statements.clear()
            event.listen(engine.sync_engine, "before_cursor_execute", seen)
            try:
                data = await overview_page_data(session, scope, period="quarter", today=TODAY, settings=settings(),
                                                day=date(2026, 8, 1))
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", seen)
        return data, list(statements)

    first, cold = await counted()
    second, warm = await counted()
    assert first == second
    # The fingerprint, the branches, the notices (two): no check-in counted, no roster read.
    assert len(warm) == 4 < len(cold), warm
    assert not any("attendance.member_id" in statement for statement in warm)


async def test_a_check_in_added_to_a_past_meeting_shows(sessions):
    await setup(sessions)
    before = await render(sessions)
    hongqi, dongfeng = hongqi_and_dongfeng(before)
    assert hongqi.cell(MeetingKind.GENERAL).status == CellStatus.MISSING
    assert (dongfeng.attendance.present, dongfeng.attendance.expected) == (10, 12)
    async with sessions() as session, session.begin():
        # The 支部党员大会 called for 9月28日 that nobody signed: a check-in makes it held.
        general = await meeting_at(session, HONGQI, MeetingKind.GENERAL, local(9, 28))
        secretary = (await session.execute(select(Member).where(Member.name == "李建国"))).scalar_one()
        await sign(session, general, secretary.id, now=general.starts_at, method="code", late=False)
        # 郑玉兰 at 东风村's August 主题党日, which two of three had signed.
        theme = await meeting_at(session, DONGFENG, MeetingKind.THEME_DAY, local(8, 1))
        zheng = (await session.execute(select(Member).where(Member.name == "郑玉兰"))).scalar_one()
        await sign(session, theme, zheng.id, now=theme.starts_at, method="qr", late=False)
    after = await rendered_twice(sessions)
    hongqi, dongfeng = hongqi_and_dongfeng(after)
    assert hongqi.cell(MeetingKind.GENERAL).status == CellStatus.HELD
    assert hongqi.cell(MeetingKind.GENERAL).dates == (date(2026, 9, 28),)
    assert (dongfeng.attendance.present, dongfeng.attendance.expected) == (11, 12)
    third = {item.label: item for item in after.quarters}["2026年第3季度"]
    assert (third.held, third.missing) == (18, 1)
    async with sessions() as session:
        scope = await by_path(session, DONGFENG)
        months = await attendance_by_month(session, scope, months=12, today=TODAY, settings=settings())
    august = {item.month: item.figures for item in months}[date(2026, 8, 1)]
    assert (august.present, august.expected) == (3, 3)


async def test_a_check_in_in_the_current_month_shows(sessions):
    await setup(sessions)
    this_month = {"period": "month"}
    before = await render(sessions, **this_month)
    assert all(row.attendance.meetings == 0 for row in before.overview.rows)
    async with sessions() as session, session.begin():
        branch = await by_path(session, DONGFENG)
        people = list((await session.execute(select(Member).where(Member.org_id == branch.id)
                                             .order_by(Member.id))).scalars())
        theme = Meeting(org_id=branch.id, kind=MeetingKind.THEME_DAY.value, topic="学习", place="村委会",
                        starts_at=local(11, 2), called_by=people[0].id, checkin_code="300001", created_at=NOW,
                        updated_at=NOW)
        session.add(theme)
        await session.flush()
        await sign(session, theme, people[0].id, now=theme.starts_at, method="code", late=False)
    after = await rendered_twice(sessions, **this_month)
    dongfeng = after.overview.rows[0]
    assert dongfeng.cell(MeetingKind.THEME_DAY).status == CellStatus.HELD
    assert (dongfeng.attendance.meetings, dongfeng.attendance.present, dongfeng.attendance.expected) == (1, 1, 3)
    assert after.months[-1].figures.present == 1


async def test_leave_approved_after_a_render_shows(sessions):
    made = await setup(sessions)
    before = await render(sessions)
    hongqi, _ = hongqi_and_dongfeng(before)
    async with sessions() as session, session.begin():
        # 王秀英's leave for the group meeting of 9月15日 was still pending.
        request = (await session.execute(select(LeaveRequest).where(
            LeaveRequest.meeting_id == made["group_meeting"].id))).scalar_one()
        request.status, request.decided_at = LeaveStatus.APPROVED.value, NOW
    after, _ = hongqi_and_dongfeng(await rendered_twice(sessions))
    assert after.attendance.on_leave == hongqi.attendance.on_leave + 1
    assert after.attendance.absent == hongqi.attendance.absent - 1


async def test_a_meeting_cancelled_after_a_render_shows(sessions):
    made = await setup(sessions)
    await render(sessions)
    async with sessions() as session, session.begin():
        general = await session.get(Meeting, made["general"].id)
        general.status, general.updated_at = MeetingStatus.CANCELLED.value, NOW
    _, dongfeng = hongqi_and_dongfeng(await rendered_twice(sessions))
    assert dongfeng.cell(MeetingKind.GENERAL).status == CellStatus.MISSING


@pytest.mark.parametrize("kind, moved, slots", [
    # Within its month: the date shown changes.
    (MeetingKind.LECTURE, ((7, 15), (7, 20)), ["2026-07-20"]),
    # To another month of the quarter: August's theme day missing, September's held.
    (MeetingKind.THEME_DAY, ((8, 1), (9, 2)), ["2026-07-01", "missing", "2026-09-02"]),
])
async def test_a_meeting_moved_after_a_render_shows(sessions, kind, moved, slots):
    await setup(sessions)
    await render(sessions)
    (from_month, from_day), (to_month, to_day) = moved
    async with sessions() as session, session.begin():
        row = await meeting_at(session, DONGFENG, kind, local(from_month, from_day))
        row.starts_at, row.updated_at = local(to_month, to_day), NOW
    _, dongfeng = hongqi_and_dongfeng(await rendered_twice(sessions))
    assert [slot.dates[0].isoformat() if slot.dates else slot.status.value for slot in dongfeng.cell(kind).slots] \
        == slots


async def test_a_roster_change_after_a_render_shows(sessions):
    await setup(sessions)
    before = await render(sessions)
    hongqi, _ = hongqi_and_dongfeng(before)
    async with sessions() as session, session.begin():
        # 王秀英 moves to the second group, 刘小梅 joins the committee.
        await person(session, "王秀英", GROUP_TWO)
        await person(session, "刘小梅", GROUP_TWO, Role.COMMITTEE_MEMBER)
    after, _ = hongqi_and_dongfeng(await rendered_twice(sessions))
    assert after.attendance != hongqi.attendance


async def test_a_party_group_renamed_after_a_render_shows(sessions):
    await setup(sessions)
    await render(sessions)
    async with sessions() as session, session.begin():
        group = await by_path(session, GROUP_ONE)
        group.name, group.path = "第三党小组", group.path.replace("第一党小组", "第三党小组")
    hongqi, _ = hongqi_and_dongfeng(await rendered_twice(sessions))
    assert {slot.group for slot in hongqi.cell(MeetingKind.GROUP).slots} == {"第三党小组", "第二党小组"}


async def test_a_check_in_deleted_after_a_render_shows(sessions):
    made = await setup(sessions)
    before = await render(sessions)
    _, dongfeng = hongqi_and_dongfeng(before)
    async with sessions() as session, session.begin():
        await session.execute(delete(Attendance).where(Attendance.meeting_id == made["general"].id))
    after = await rendered_twice(sessions)
    _, now = hongqi_and_dongfeng(after)
    assert dongfeng.cell(MeetingKind.GENERAL).status == CellStatus.HELD
    assert now.cell(MeetingKind.GENERAL).status == CellStatus.MISSING
    assert now.attendance.meetings == dongfeng.attendance.meetings - 1


async def test_a_check_in_committed_late_under_a_lower_id_shows(sessions):
    """PostgreSQL hands out ids when rows are written, not when they are committed: a check-in can appear
    after a render with an id below the highest the render saw."""
    made = await setup(sessions)
    async with sessions() as session, session.begin():
        highest = (await session.execute(select(func.max(Attendance.id)))).scalar_one()
        wu = (await session.execute(select(Member).where(Member.name == "吴芳"))).scalar_one()
        october = Meeting(org_id=wu.org_id, kind=MeetingKind.THEME_DAY.value, topic="学习", place="村委会",
                          starts_at=local(10, 1), called_by=wu.id, checkin_code="300002", created_at=NOW,
                          updated_at=NOW)
        session.add(october)
        await session.flush()
        session.add(Attendance(id=highest + 10, meeting_id=october.id, member_id=wu.id, method="code",
                               checked_in_at=october.starts_at))
    before = await render(sessions)
    async with sessions() as session, session.begin():
        zheng = (await session.execute(select(Member).where(Member.name == "郑玉兰"))).scalar_one()
        session.add(Attendance(id=highest + 5, meeting_id=made["general"].id, member_id=zheng.id, method="proxy",
                               checked_in_at=made["general"].starts_at + timedelta(minutes=5)))
    after = await rendered_twice(sessions)
    assert after.overview.rows[0].attendance.present == before.overview.rows[0].attendance.present + 1


async def test_many_check_ins_since_a_month_was_kept_count_it_again(sessions, monkeypatch):
    await setup(sessions)
    monkeypatch.setattr(overview_cache, "CATCH_UP_LIMIT", 1)
    await render(sessions)
    async with sessions() as session, session.begin():
        theme = await meeting_at(session, DONGFENG, MeetingKind.THEME_DAY, local(8, 1))
        for name in ("郑玉兰", "李建国"):  # a member and a guest from the other branch
            member = (await session.execute(select(Member).where(Member.name == name))).scalar_one()
            await sign(session, theme, member.id, now=theme.starts_at, method="code", late=False)
    after = await rendered_twice(sessions)
    assert after.overview.rows[0].attendance.present == 11


async def test_figures_read_in_a_transaction_that_rolled_back_are_not_kept(sessions):
    made = await setup(sessions)
    before = await render(sessions)
    async with sessions() as session:
        async with session.begin():
            zheng = (await session.execute(select(Member).where(Member.name == "郑玉兰"))).scalar_one()
            general = await session.get(Meeting, made["general"].id)
            await sign(session, general, zheng.id, now=general.starts_at, method="code", late=False)
            town = await by_path(session, TOWN)
            inside = await branch_overview(session, town, period="quarter", today=TODAY, settings=settings(),
                                           day=date(2026, 8, 1))
            assert inside.rows[0].attendance.present == before.overview.rows[0].attendance.present + 1
            await session.rollback()
    assert await render(sessions) == before


async def test_each_scope_and_period_keeps_its_own(sessions):
    await setup(sessions)
    town_quarter = await render(sessions)
    county_year = await render(sessions, "示范县委", period="year")
    hongqi_month = await render(sessions, HONGQI, period="month", day=date(2026, 7, 1))
    assert await render(sessions) == town_quarter
    assert await render_from_nothing(sessions, "示范县委", period="year") == county_year
    assert await render_from_nothing(sessions, HONGQI, period="month", day=date(2026, 7, 1)) == hongqi_month
    async with sessions() as session:
        town = await by_path(session, TOWN)
        alone = await required_held_by_quarter(session, town, quarters=4, today=TODAY, settings=settings())
    assert alone == town_quarter.quarters


async def test_a_check_in_elsewhere_keeps_the_scopes_months_and_shows_where_it_belongs(sessions, engine):
    await setup(sessions)
    async with sessions() as session, session.begin():
        # 河口镇's 青山村, outside 城关镇: a theme day in August its secretary signed.
        qingshan = await by_path(session, QINGSHAN)
        secretary, namesake = (await session.execute(select(Member).where(Member.org_id == qingshan.id)
                                                     .order_by(Member.id))).scalars()
        theme = Meeting(org_id=qingshan.id, kind=MeetingKind.THEME_DAY.value, topic="学习", place="村委会",
                        starts_at=local(8, 1), called_by=secretary.id, checkin_code="300003", created_at=NOW,
                        updated_at=NOW)
        session.add(theme)
        await session.flush()
        await sign(session, theme, secretary.id, now=theme.starts_at, method="code", late=False)
    town_before = await render(sessions)
    county_before = await render(sessions, "示范县委")
    async with sessions() as session, session.begin():
        await sign(session, await session.get(Meeting, theme.id), namesake.id, now=theme.starts_at,
                              method="code", late=False)
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        town_after = await render(sessions)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert town_after == town_before
    # The scope's lookup, the fingerprint, the check-ins added since, the branches, the notices: nothing
    # counted again.
    assert len(statements) == 6 and not any("attendance.member_id" in statement for statement in statements)
    county_after = await rendered_twice(sessions, "示范县委")
    qingshan_row = county_after.overview.rows[2]
    assert qingshan_row.attendance.present == county_before.overview.rows[2].attendance.present + 1
