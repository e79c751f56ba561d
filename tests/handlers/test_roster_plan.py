"""The roster import's report before writing (handlers/membership/roster.py: check_roster with plan=True, and
within a scope), on SQLite and PostgreSQL: what it says would happen is what writing then does."""

from __future__ import annotations

from datetime import date, datetime, timezone

from handlers.membership.roster import Change, ImportReport, check_roster, import_members, path_within, write_roster
from test_roster import HEKOU, LIUSHU, LIUSHU_GROUP, ROSTER, SHIQIAO, count, member_named, write_csv
from storage.models import Member

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
SECOND_GROUP = f"{LIUSHU}/第二党小组"


async def test_the_plan_says_what_writing_then_does(sessions, tmp_path):
    await import_members(sessions, write_csv(tmp_path / "first.csv", ROSTER), now=NOW)
    before = await count(sessions, Member)
    # No 入党日期 column: nobody's join date is touched.
    header = ["姓名", "手机号", "所属组织", "职务"]
    path = write_csv(tmp_path / "second.csv", [
        ["李建国", "13800000001", LIUSHU, "书记"],  # row 2: unchanged
        ["王秀英", "13800000002", LIUSHU_GROUP, "组织委员"],  # row 3: into the group
        ["张德福", "13800000009", LIUSHU, "党员"],  # row 4: out of the group, a phone for the first time
        ["赵春生", "13800000004", SECOND_GROUP, "党员"],  # row 5: into a new group
        ["钱明", "", LIUSHU, ""],  # row 6: new
        ["李建国", "13900000001", LIUSHU, ""],  # row 7: a namesake with another phone: someone new
    ], header=header)

    check = await check_roster(sessions, path, now=NOW, plan=True)
    assert check.errors == [] and check.rows == 6
    plan = check.plan
    assert [(row.row.row, row.row.fields.name) for row in plan.created] == [(6, "钱明"), (7, "李建国")]
    assert {row.row.row: row.changes for row in plan.updated} == {
        3: (Change("党小组", "—", "第一党小组"),),
        4: (Change("手机号", "—", "13800000009"), Change("党小组", "第一党小组", "—")),
        5: (Change("党小组", "第一党小组", "第二党小组"),),
    }
    assert plan.unchanged == 1 and plan.new_orgs == [SECOND_GROUP]
    assert any("已有同名党员李建国" in warning for warning in check.write_warnings)
    assert await count(sessions, Member) == before  # nothing written

    report = ImportReport(rows=check.rows, created=0, updated=0, unchanged=0, errors=[], imported=False)
    await write_roster(sessions, check.valid, report, now=NOW)
    assert report.imported
    assert (report.created, report.updated, report.unchanged) == (2, 3, 1)
    assert await count(sessions, Member) == before + 2
    elder = await member_named(sessions, "张德福")
    assert (elder.phone, elder.group_id, elder.join_date) == ("13800000009", None, date(1972, 7, 1))
    # Planned again now, everything is unchanged.
    again = await check_roster(sessions, path, now=NOW, plan=True)
    assert again.plan.unchanged == 6 and not again.plan.created and not again.plan.updated


async def test_rows_outside_the_scope_are_problems_of_their_rows(sessions, tmp_path):
    path = write_csv(tmp_path / "county.csv", ROSTER)
    check = await check_roster(sessions, path, now=NOW, within=HEKOU, plan=True)
    outside = [row for row in ROSTER if not path_within(row[2], HEKOU)]
    assert [error.row for error in check.errors] == [7, 8]
    assert check.errors[0].describe() == (f"第 7 行 所属组织：“{SHIQIAO}”不在您管理的范围内，这一行不能导入。"
                                          f"所属组织请从“{HEKOU}”写起")
    assert len(outside) == 2 and len(check.valid) == 5 and len(check.plan.created) == 5
    # A sibling whose name begins like the scope's is not inside it.
    assert not path_within(HEKOU + "新区党委", HEKOU) and path_within(HEKOU, HEKOU)
    assert await count(sessions, Member) == 0
