"""The meetings feature's console pages over HTTP (handlers/meetings/console.py), signed in by a scan through
the emulator, on SQLite and PostgreSQL.

The county is test_console_data's (tests/handlers): 红旗村 missed its third-quarter 支部党员大会, 东风村 held
its own; today is 2026-11-24. November adds a 主题党日 at 红旗村 where a member called "=1+1" signed in by code
and 王秀英 was signed in by the secretary (代签).
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from urllib.parse import unquote

from cryptography.fernet import Fernet
from sqlalchemy import select

from storage.models import AuditEntry, CheckInMethod, Member, MeetingKind, Organization, Role
from test_console_auth import Browser, browsers, location, sign_in_by_scan  # noqa: F401  (browsers: a fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "handlers"))
from test_console_data import (  # noqa: E402
    DONGFENG,
    HONGQI,
    TOWN,
    county,
    local,
    meeting,
    person,
)

FORMULA_NAME = "=1+1"


async def county_service(make_service):
    """The county, a November meeting, and three people bound to WeChat: the township's 组织员 (town-1), 红旗村's
    secretary 李建国 (hq-sec) and 东风村's secretary 周海 (df-sec)."""
    service = await make_service(console_key=Fernet.generate_key().decode())
    async with service.sessions() as session, session.begin():
        made = await county(session)
        hq = made["hq"]
        formula = await person(session, FORMULA_NAME, HONGQI)
        november = await meeting(session, HONGQI, MeetingKind.THEME_DAY, local(11, 2), [
            (formula, CheckInMethod.CODE, 0, None), (hq["wang"], CheckInMethod.PROXY, 3, hq["secretary"])],
            topic="学习二十届四中全会精神")
        ids = {"general": made["general"].id, "november": november.id, "qingshan": made["qingshan_general"].id,
               "hongqi": (await session.execute(select(Organization.id).where(Organization.path == HONGQI))).scalar_one(),
               "dongfeng": (await session.execute(select(Organization.id).where(Organization.path == DONGFENG))).scalar_one()}
        codes = {name: code for name, code in (await session.execute(
            select(Member.name, Member.binding_code).where(Member.name.in_(["李建国", "周海"])))).all()}
    await service.bind("town-1", "周晓燕", org_path=TOWN, role=Role.STAFF, phone="13800000007")
    for openid, name in (("hq-sec", "李建国"), ("df-sec", "周海")):
        reply = await service.say(openid, f"绑定 {name} {codes[name]}")
        assert reply is not None and "绑定成功" in reply, reply
    return service, ids


async def signed_in_browser(service, browsers, openid: str) -> Browser:
    browser = browsers(service)
    await sign_in_by_scan(service, browser, openid)
    return browser


async def download(browser: Browser, path: str) -> tuple[int, bytes, dict]:
    async with browser.http.get(browser.base + path, allow_redirects=False) as response:
        return response.status, await response.read(), dict(response.headers)


def row_of(page: str, branch: str) -> str:
    match = re.search(r'<tr data-branch="' + re.escape(branch) + r'">(.*?)</tr>', page, re.S)
    assert match, page
    return match.group(1)


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", " ", cell).split() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


async def audits(service) -> list[AuditEntry]:
    async with service.sessions() as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())


# ---------------------------------------------------------------- the overview


async def test_the_township_sees_the_branch_that_missed_its_general_meeting(make_service, browsers):
    service, ids = await county_service(make_service)
    browser = await signed_in_browser(service, browsers, "town-1")

    status, home, _ = await browser.get("/console/")
    assert status == 200 and 'href="/console/overview"' in home and 'href="/console/checkins"' in home

    status, page, _ = await browser.get("/console/overview?period=quarter&day=2026-08-01")
    assert status == 200, page
    assert "2026年第3季度" in page and "<script" not in page
    # Columns in the rules' order; 红旗村 missed its 支部党员大会, 东风村 held its own on 9 September.
    header = re.search(r"<thead>(.*?)</thead>", page, re.S).group(1)
    assert header.index("支部党员大会") < header.index("支委会") < header.index("党小组会")
    hongqi, dongfeng = cells(row_of(page, "红旗村党支部")), cells(row_of(page, "东风村党支部"))
    assert hongqi[0][0] == "缺"
    assert dongfeng[0][:2] == ["已开", "9月10日"]
    assert 'class="cell missing"' in row_of(page, "红旗村党支部")
    # 东风村 missed September's 主题党日; its committee and groups are not required.
    assert dongfeng[4][0] == "缺" and "缺：2026年9月" in dongfeng[4]
    assert dongfeng[1] == ["不需要"]
    # Attendance with its counts, and each branch links to its meetings.
    assert re.search(r"实到 \d+/应到 \d+", row_of(page, "东风村党支部"))
    assert f'href="/console/meetings?branch={ids["hongqi"]}"' in page
    # The charts are inline SVG, not escaped text.
    assert page.count("<svg ") == 2 and "&lt;svg" not in page
    # The period chooser.
    for word in ("本月", "本季度", "本年"):
        assert word in page

    # This quarter: 红旗村's 支部党员大会 is not due yet.
    status, page, _ = await browser.get("/console/overview")
    assert status == 200 and "2026年第4季度" in page
    assert cells(row_of(page, "红旗村党支部"))[0] == ["未到期"]


async def test_the_overview_keeps_the_tree_order_whatever_the_figures(make_service, browsers):
    service, ids = await county_service(make_service)
    # 东风村, first in the tree, has a poorly attended lecture in August: its figures are now the worse.
    async with service.sessions() as session, session.begin():
        secretary = (await session.execute(select(Member).where(Member.name == "周海"))).scalar_one()
        await meeting(session, DONGFENG, MeetingKind.LECTURE, local(8, 16), [secretary])
    browser = await signed_in_browser(service, browsers, "town-1")
    status, page, _ = await browser.get("/console/overview?period=quarter&day=2026-08-01")
    assert status == 200

    def percent(branch: str) -> int:
        return int(re.search(r"<b>(\d+)%</b>", row_of(page, branch)).group(1))

    # 红旗村 comes after 东风村 in the tree even where its figures are better; it is never moved up.
    assert percent("红旗村党支部") > percent("东风村党支部"), (percent("红旗村党支部"), percent("东风村党支部"))
    assert page.index('data-branch="东风村党支部"') < page.index('data-branch="红旗村党支部"')
    # Whatever the period.
    for period in ("month", "year"):
        status, other, _ = await browser.get(f"/console/overview?period={period}&day=2026-09-15")
        assert status == 200
        assert other.index('data-branch="东风村党支部"') < other.index('data-branch="红旗村党支部"')
    # 青山村 is another township's: not in this 组织员's overview.
    assert "青山村党支部" not in page


# ---------------------------------------------------------------- meetings


async def test_a_meeting_shows_who_signed_in_how(make_service, browsers):
    service, ids = await county_service(make_service)
    browser = await signed_in_browser(service, browsers, "town-1")

    status, listing, _ = await browser.get(f"/console/meetings?branch={ids['dongfeng']}&kind=支部党员大会")
    assert status == 200, listing
    assert f'href="/console/meetings/{ids["general"]}"' in listing and "共 1 次会" in listing

    status, page, _ = await browser.get(f"/console/meetings/{ids['general']}")
    assert status == 200, page
    assert "讨论村集体经济项目" in page
    # 周海 by QR code; 吴芳 signed in by 周海, late; 郑玉兰 on leave (住院, approved by 周海).
    assert re.search(r"<td>周海</td>.*?<td>扫码</td>", page, re.S)
    assert re.search(r"<td>吴芳</td>.*?<td>代签</td>.*?迟到.*?由周海代签", page, re.S)
    assert re.search(r"<td>郑玉兰</td><td>住院</td>.*?已准假（周海", page, re.S)
    assert "通过分红方案" in page and "1 张" in page

    status, page, _ = await browser.get(f"/console/meetings/{ids['november']}")
    assert status == 200
    assert re.search(r"<td>=1\+1</td>.*?<td>签到码</td>", page, re.S)
    assert re.search(r"<td>王秀英</td>.*?<td>代签</td>.*?由李建国代签", page, re.S)

    # Filters by dates, and a date nobody can read is said so, not a 500.
    status, listing, _ = await browser.get("/console/meetings?from=2026-11-01&to=2026-11-30")
    assert status == 200 and "共 1 次会" in listing
    status, listing, _ = await browser.get("/console/meetings?from=2026-13-01")
    assert status == 200 and "日期看不懂" in listing


async def test_a_secretary_cannot_reach_another_branch(make_service, browsers):
    service, ids = await county_service(make_service)
    browser = await signed_in_browser(service, browsers, "hq-sec")

    status, page, _ = await browser.get(f"/console/meetings/{ids['november']}")
    assert status == 200
    for path in (f"/console/meetings/{ids['general']}", f"/console/meetings/{ids['general']}/attendance.xlsx",
                 f"/console/meetings/{ids['qingshan']}", "/console/meetings/999999",
                 f"/console/meetings?branch={ids['dongfeng']}", f"/console/checkins.xlsx?branch={ids['dongfeng']}"):
        status, body, _ = await download(browser, path)
        assert status == 404, path
        assert "讨论村集体经济项目".encode() not in body
    # The lists show only the secretary's branch.
    status, listing, _ = await browser.get("/console/checkins")
    assert status == 200 and "周海" not in listing and "吴芳" not in listing and "王秀英" in listing
    status, overview, _ = await browser.get("/console/overview?period=quarter&day=2026-08-01")
    assert status == 200 and "东风村党支部" not in overview and 'data-branch="红旗村党支部"' in overview
    assert not [entry for entry in await audits(service) if entry.action == "export"]


# ---------------------------------------------------------------- exports


async def test_the_months_checkins_export_as_xlsx_without_formulas(make_service, browsers):
    from openpyxl import load_workbook

    service, ids = await county_service(make_service)
    browser = await signed_in_browser(service, browsers, "town-1")

    status, page, _ = await browser.get("/console/checkins?from=2026-11-01&to=2026-11-30")
    assert status == 200 and "共 2 条签到" in page
    link = re.search(r'href="(/console/checkins\.xlsx[^"]*)"', page).group(1).replace("&amp;", "&")
    status, body, headers = await download(browser, link)
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''" in disposition
    assert unquote(disposition.split("filename*=UTF-8''")[1]).startswith("签到记录-城关镇党委-2026-11-24")

    sheet = load_workbook(io.BytesIO(body)).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    header = values.index(["姓名", "支部", "会议类型", "会议主题", "会议时间", "签到时间", "方式", "迟到", "代签人"])
    lines = {row[0]: row for row in values[header + 1:]}
    assert set(lines) == {FORMULA_NAME, "王秀英"}
    assert lines["王秀英"][6] == "代签" and lines["王秀英"][8] == "李建国"
    assert lines[FORMULA_NAME][6] == "签到码"
    # "=1+1" is text, not a formula.
    formula_cell = next(row[0] for row in sheet.iter_rows() if row[0].value == FORMULA_NAME)
    assert formula_cell.data_type == "s"
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)

    # The CSV of the same filters: a BOM, and the apostrophe that keeps "=1+1" text.
    status, body, headers = await download(browser, link.replace(".xlsx", ".csv"))
    assert status == 200 and body.startswith(b"\xef\xbb\xbf")
    text = body.decode("utf-8-sig")
    assert "'=1+1" in text and "代签" in text and "周海" not in text

    exports = [entry for entry in await audits(service) if entry.action == "export"]
    assert len(exports) == 2 and "签到记录" in exports[0].detail and "2026-11-01" in exports[0].detail


async def test_a_download_of_more_rows_than_one_file_may_hold_is_refused_with_a_page_not_cut_short(
        make_service, browsers, monkeypatch):
    # With the limit at one row, the month's two check-ins are too many: the page says how many and what to do,
    # and nothing is downloaded (nor audited as one). Under the limit the same address downloads them all.
    monkeypatch.setattr("bot.web.exports.EXPORT_MAX", 1)
    service, ids = await county_service(make_service)
    browser = await signed_in_browser(service, browsers, "town-1")
    status, body, headers = await download(browser, "/console/checkins.csv?from=2026-11-01&to=2026-11-30")
    page = body.decode()
    assert status == 422 and headers["Content-Type"].startswith("text/html") and "Content-Disposition" not in headers
    assert "要导出的行太多" in page and "签到记录共有 2 行，一次最多导出 1 行" in page and "缩小" in page
    assert not [entry for entry in await audits(service) if entry.action == "export" and "签到记录" in entry.detail]
    monkeypatch.setattr("bot.web.exports.EXPORT_MAX", 2)
    status, body, _ = await download(browser, "/console/checkins.csv?from=2026-11-01&to=2026-11-30")
    assert status == 200 and "王秀英" in body.decode("utf-8-sig")


async def test_the_meetings_list_and_a_sign_in_sheet_export(make_service, browsers):
    from openpyxl import load_workbook

    service, ids = await county_service(make_service)
    browser = await signed_in_browser(service, browsers, "town-1")

    status, body, headers = await download(browser, f"/console/meetings.xlsx?branch={ids['dongfeng']}")
    assert status == 200
    rows = [[cell.value for cell in row] for row in load_workbook(io.BytesIO(body)).active.iter_rows()]
    header = rows.index(next(row for row in rows if row[0] == "支部"))
    assert {row[0] for row in rows[header + 1:]} == {"东风村党支部"} and len(rows) - header - 1 == 4

    status, body, headers = await download(browser, f"/console/meetings/{ids['general']}/attendance.xlsx")
    assert status == 200
    assert "签到表-东风村党支部-支部党员大会-2026-09-10.xlsx" in unquote(headers["Content-Disposition"])
    sheet = load_workbook(io.BytesIO(body)).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][0] == "东风村党支部 支部党员大会 签到表"
    assert ["序号", "姓名", "签到时间", "方式", "备注"] in values
    assert any(row[1] == "吴芳" and row[3] == "代签" for row in values)
    assert any(row[1] == "郑玉兰" and row[4] == "请假：住院" for row in values)
    exports = [entry for entry in await audits(service) if entry.action == "export"]
    assert len(exports) == 2 and "签到表" in exports[1].detail
