"""The care feature's pages over HTTP (handlers/care/page.py, console.py) and its ledger export (export.py, `zhibu
export care`), on SQLite and PostgreSQL.

红旗村 (hongqi_branch: secretary 李建国, committee member 张卫东, members 王秀英, 刘小梅, 陈志强) two days after
everyone bound, so what the bot pushes goes as a template message with its page's link. 刘小梅 reports that
王秀英 is in hospital; the case's visitor is the secretary. Around them: 东风村's secretary 孙大海 and member
吴芳, the township's 组织员 周晓燕 (城关镇), 河口镇's 组织员 马青山, and the county's 钱立群.
"""

from __future__ import annotations

import asyncio
import io
import re
from datetime import timedelta

from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from bot.cli import main
from bot.web.links import Subject
from bot.web.pages import LINKS
from handlers.care import service as care
from handlers.care.settings import CareSettings
from harness import DONGFENG, HONGQI, TOWN, hongqi_branch
from storage.models import AuditEntry, CareCase, CareProfile, CareSource, CareVisit, Member, OutboxMessage, Role
from storage.orgs import by_path
from test_console_auth import Browser, browsers, sign_in_by_scan  # noqa: F401  (browsers: a fixture)
from test_member_pages import get, post

COUNTY = "示范县委"
HEKOU = f"{COUNTY}/河口镇党委"
GONE = "链接已失效"
REPORT = "王秀英住院了，在县医院三楼。"
VILLAGER = "=cmd|' /C calc'!A0"  # a villager's name as typed: it must never run as a formula
TODAY = "2026-11-26"


async def care_service(make_service, villager: str = VILLAGER):
    """The people above; returns (service, openids by name, ids: the case, the villager's case (a 灾害事故 reported
    by 陈志强), the branches)."""
    service = await make_service(console_key=Fernet.generate_key().decode(), wechat_templates={"default": "TPL"})
    people = await hongqi_branch(service)
    for openid, name, path, role in (("df-1", "孙大海", DONGFENG, Role.SECRETARY), ("df-2", "吴芳", DONGFENG, Role.MEMBER),
                                     ("town-1", "周晓燕", TOWN, Role.STAFF), ("hk-1", "马青山", HEKOU, Role.STAFF),
                                     ("county-1", "钱立群", COUNTY, Role.STAFF)):
        await service.bind(openid, name, org_path=path, role=role, phone=f"139{len(people):08d}")
        people[name] = openid
    service.clock.advance(hours=49)  # 2026-11-26 11:00 in Shanghai: the 48-hour windows have closed
    ids = {}
    async with service.sessions() as session, session.begin():
        hongqi = await by_path(session, HONGQI)
        ids["hongqi"], ids["dongfeng"] = hongqi.id, (await by_path(session, DONGFENG)).id
        opened = await care.open_case(session, branch=hongqi, subject=await member(session, "王秀英"), subject_name="",
                                      occasion="生病住院", details=REPORT, reporter=await member(session, "刘小梅"),
                                      source=CareSource.REPORT, now=service.clock.now(),
                                      settings=service.config(CareSettings))
        ids["case"] = opened.case.id
        villager = await care.open_case(session, branch=hongqi, subject=None, subject_name=villager, occasion="灾害事故",
                                        details="房子塌了一角", reporter=await member(session, "陈志强"),
                                        source=CareSource.REPORT, now=service.clock.now(),
                                        settings=service.config(CareSettings))
        ids["villager"] = villager.case.id
    await service.deliver()
    return service, people, ids


async def member(session, name: str) -> Member:
    return (await session.execute(select(Member).where(Member.name == name))).scalar_one()


async def link_for(service, case_id: int, name: str) -> str:
    """The case's page, signed for this member (as a message about the case to them would link it)."""
    async with service.sessions() as session:
        member_id = (await member(session, name)).id
    return service.app[LINKS].url(Subject(ref=f"care:{case_id}", member_id=member_id))


def pushed_link(service, openid: str, case_id: int) -> str:
    """The link in the template message this member was sent about the case."""
    links = [template["url"] for template in service.emulator.api.templates(openid)
             if service.app[LINKS].read(template["url"].rsplit("/", 1)[1]).ref == f"care:{case_id}"]
    assert len(links) == 1, service.emulator.api.templates(openid)
    return links[0]


async def scalar(service, query):
    async with service.sessions() as session:
        return (await session.execute(query)).scalar_one()


VISIT = dict(action="visit", day=TODAY, visitors="李建国、张卫东", notes="了解了病情，转达了支部的关心。", given="慰问金、牛奶",
             amount="500元", fund="党费")


# ---------------------------------------------------------------- the member page


async def test_each_role_sees_what_the_privacy_rule_allows(make_service):
    service, people, ids = await care_service(make_service)

    # The visitor's template links to the case; it shows everything and the visit form.
    visitor_link = pushed_link(service, people["李建国"], ids["case"])
    status, page = await get(visitor_link)
    assert status == 200, page
    assert "王秀英" in page and "生病住院" in page and REPORT in page and "刘小梅" in page
    assert "走访人：<b>李建国</b>" in page and "2026年11月28日（周六）11:00" in page  # 48 hours
    assert 'name="action" value="visit"' in page and 'type="date"' in page and f'max="{TODAY}"' in page
    assert "不让上报人看到" not in page and "<script" not in page

    # The member concerned, the committee and the township's staff read it in full, without the form.
    for name in ("王秀英", "张卫东", "周晓燕", "钱立群"):
        status, page = await get(await link_for(service, ids["case"], name))
        assert status == 200 and REPORT in page and "走访人：<b>李建国</b>" in page, name
        assert 'value="visit"' not in page, name
    assert "不让上报人看到" in (await get(await link_for(service, ids["case"], "王秀英")))[1]

    # The reporter: only what she wrote, and that it is not visited yet.
    status, page = await get(await link_for(service, ids["case"], "刘小梅"))
    assert status == 200 and REPORT in page and "会尽快上门看望" in page
    assert "李建国" not in page and "走访期限" not in page and 'value="visit"' not in page

    # Anyone else — another member of the branch, another branch, another township — gets the invalid-link page.
    for name in ("陈志强", "吴芳", "孙大海", "马青山"):
        link = await link_for(service, ids["case"], name)
        for status, page in (await get(link), (await post(link, **VISIT))[:2]):
            assert status == 404 and GONE in page, name
            assert "王秀英" not in page and "住院" not in page, name
    assert await scalar(service, select(func.count()).select_from(CareVisit)) == 0
    # A link to a case that does not exist, or naming something else, says the same.
    for ref in ("care:999999", "care:abc", "care:"):
        status, page = await get(service.app[LINKS].url(Subject(ref=ref, member_id=1)))
        assert status == 404 and GONE in page


async def test_the_visit_form_records_the_visit_and_closes_the_case(make_service):
    service, people, ids = await care_service(make_service)
    link = pushed_link(service, people["李建国"], ids["case"])

    # A day in the future, no visitors, a field too long: the page says what to fix and keeps what was typed.
    status, page, _ = await post(link, **{**VISIT, "day": "2026-11-27"})
    assert status == 400 and "不能晚于今天" in page and "慰问金、牛奶" in page
    status, page, _ = await post(link, **{**VISIT, "visitors": "  "})
    assert status == 400 and "请写上谁去的" in page
    status, page, _ = await post(link, **{**VISIT, "amount": "5" * 51})
    assert status == 400 and "“金额”太长了" in page
    status, page, _ = await post(link, **{**VISIT, "day": "明天"})
    assert status == 400 and "日期看不懂" in page
    assert await scalar(service, select(func.count()).select_from(CareVisit)) == 0

    service.clock.advance(minutes=30)
    status, _, location = await post(link, **{**VISIT, "day": "2026-11-25"})
    assert status == 303 and location == link[len(service.url.rstrip("/")):]
    case = await scalar(service, select(CareCase).where(CareCase.id == ids["case"]))
    assert case.status == "closed" and case.closed_at == service.clock.now()
    visit = await scalar(service, select(CareVisit))
    assert (visit.visitors, visit.given, visit.amount, visit.amount_fen, visit.fund) == (
        "李建国、张卫东", "慰问金、牛奶", "500元", 50000, "党费")
    assert visit.visited_at.isoformat() == "2026-11-25T04:00:00+00:00"  # noon in Shanghai: the page asks the day only

    status, page = await get(link)
    assert status == 200 and "已走访（2026年11月25日）" in page and "了解了病情" in page and "500元" in page
    assert 'value="visit"' not in page
    # A second post (a double tap, a reload) records nothing more.
    assert (await post(link, **VISIT))[0] == 303
    assert await scalar(service, select(func.count()).select_from(CareVisit)) == 1

    # The reporter is thanked and sees that it was visited, and nothing of the visit.
    await service.deliver()
    thanks = await scalar(service, select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.idempotency_key.like(f"care:{ids['case']}:thanks:%")))
    assert thanks == 1
    status, page = await get(await link_for(service, ids["case"], "刘小梅"))
    assert status == 200 and "已经上门看望了" in page
    for private in ("500元", "牛奶", "了解了病情", "党费", "张卫东"):
        assert private not in page


async def test_the_member_concerned_can_hide_the_case_from_the_reporter(make_service):
    service, people, ids = await care_service(make_service)
    reporter = await link_for(service, ids["case"], "刘小梅")
    assert (await get(reporter))[0] == 200
    # The reporter cannot hide it; nor can the visitor.
    for name in ("刘小梅", "李建国"):
        assert (await post(await link_for(service, ids["case"], name), action="hide"))[0] == 303
    assert (await get(reporter))[0] == 200

    own = await link_for(service, ids["case"], "王秀英")
    assert (await post(own, action="hide"))[0] == 303
    status, page = await get(own)
    assert status == 200 and "上报人已经看不到这件事了" in page and "不让上报人看到</button>" not in page
    status, page = await get(reporter)
    assert status == 404 and GONE in page and REPORT not in page
    # The visitor still records the visit on the page.
    assert (await post(pushed_link(service, people["李建国"], ids["case"]), **VISIT))[0] == 303
    assert await scalar(service, select(CareCase.status).where(CareCase.id == ids["case"])) == "closed"


async def test_a_villager_is_marked_and_a_branch_leader_may_record_the_visit(make_service):
    service, people, ids = await care_service(make_service)
    # The deputy or secretary of the branch records it even when someone else is the visitor.
    async with service.sessions() as session, session.begin():
        case = await session.get(CareCase, ids["villager"])
        case.visitor_id = (await member(session, "张卫东")).id
    link = await link_for(service, ids["villager"], "李建国")
    status, page = await get(link)
    assert status == 200 and "（村民，不是党员）" in page and "走访人：<b>张卫东</b>" in page
    assert "=cmd|&#39; /C calc&#39;!A0" in page  # escaped, as written
    assert (await post(link, **{**VISIT, "amount": "两袋米"}))[0] == 303
    visit = await scalar(service, select(CareVisit))
    assert visit.amount == "两袋米" and visit.amount_fen is None


# ---------------------------------------------------------------- the console


async def signed_in(service, browsers, openid: str) -> Browser:
    browser = browsers(service)
    await sign_in_by_scan(service, browser, openid)
    return browser


async def test_the_township_reads_its_cases_and_nobody_reads_anothers(make_service, browsers):
    service, people, ids = await care_service(make_service)
    town = await signed_in(service, browsers, "town-1")

    status, home, _ = await town.get("/console/")
    assert status == 200 and 'href="/console/care"' in home
    status, page, _ = await town.get("/console/care")
    assert status == 200, page
    assert "未走访 <a" in page and page.count("<svg ") == 1 and "城关镇党委 每月开单与走访" in page
    assert "红旗村" not in page.split("<svg", 1)[1]  # the chart ranks no branch, and names none
    status, page, _ = await town.get("/console/care/cases")
    assert status == 200 and "共 2 件" in page and "王秀英" in page and "（村民）" in page
    status, page, _ = await town.get(f"/console/care/cases/{ids['case']}")
    assert status == 200 and REPORT in page and "刘小梅" in page and "李建国" in page
    status, page, _ = await town.get(f"/console/care/cases?branch={ids['dongfeng']}")
    assert status == 200 and "共 0 件" in page
    status, page, _ = await town.get("/console/care/cases?status=overdue")
    assert status == 200 and "共 0 件" in page
    service.clock.advance(days=2, hours=1)
    town = await signed_in(service, browsers, "town-1")  # the last sign-in has been idle too long
    status, page, _ = await town.get("/console/care/cases?status=overdue")
    assert status == 200 and "共 2 件" in page and "已逾期" in page
    status, page, _ = await town.get("/console/care/cases?occasion=灾害事故&from=2026-11-01&to=2026-11-30")
    assert status == 200 and "共 1 件" in page
    status, page, _ = await town.get("/console/care/cases?from=2026-13-01")
    assert status == 200 and "日期看不懂" in page

    # Another township's staff and another branch's secretary: 404 for the case, nothing in their lists.
    for openid in ("hk-1", "df-1"):
        other = await signed_in(service, browsers, openid)
        for path in (f"/console/care/cases/{ids['case']}", f"/console/care/cases?branch={ids['hongqi']}",
                     f"/console/care/cases.xlsx?branch={ids['hongqi']}", "/console/care/cases/999999"):
            status, page, _ = await other.get(path)
            assert status == 404, (openid, path)
            assert "王秀英" not in page and "住院" not in page
        status, page, _ = await other.get("/console/care/cases")
        assert status == 200 and "共 0 件" in page and "王秀英" not in page
    # The branch's own secretary reads it; the county reads it, with a chart per township.
    hongqi = await signed_in(service, browsers, "hq-0")
    assert (await hongqi.get(f"/console/care/cases/{ids['case']}"))[0] == 200
    county = await signed_in(service, browsers, "county-1")
    status, page, _ = await county.get("/console/care")
    assert status == 200 and page.count("<svg ") == 2
    assert "城关镇党委 每月开单与走访" in page and "河口镇党委 每月开单与走访" in page


async def test_the_case_list_exports_without_formulas(make_service, browsers):
    from openpyxl import load_workbook

    service, people, ids = await care_service(make_service)
    town = await signed_in(service, browsers, "town-1")
    status, page, _ = await town.get("/console/care/cases?occasion=灾害事故")
    link = re.search(r'href="(/console/care/cases\.xlsx[^"]*)"', page).group(1).replace("&amp;", "&")
    async with town.http.get(town.base + link) as response:
        assert response.status == 200
        body = await response.read()
    sheet = load_workbook(io.BytesIO(body)).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    header = values.index(["开单时间", "支部", "对象", "是否党员", "情况", "来源", "节日", "走访人", "期限", "状态", "走访日期"])
    assert [row[2] for row in values[header + 1:]] == [VILLAGER]  # exactly what the filter shows
    assert values[header + 1][3] == "否（村民）" and values[header + 1][9] == "未走访"
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    async with town.http.get(town.base + link.replace(".xlsx", ".csv")) as response:
        text = (await response.read()).decode("utf-8-sig")
    assert "'" + VILLAGER in text and "王秀英" not in text
    exports = await audit_details(service, "export")
    assert len(exports) == 2 and "灾害事故" in exports[0] and "房子" not in "".join(exports)


async def test_a_case_list_too_long_for_one_file_is_refused_with_a_page(make_service, browsers, monkeypatch):
    service, people, ids = await care_service(make_service)
    town = await signed_in(service, browsers, "town-1")
    monkeypatch.setattr("bot.web.exports.EXPORT_MAX", 1)
    async with town.http.get(town.base + "/console/care/cases.csv") as response:
        status, page = response.status, await response.text()
    assert status == 422 and "要导出的行太多" in page and "关怀走访共有" in page and "一次最多导出 1 行" in page
    assert await audit_details(service, "export") == []


async def audit_details(service, action: str) -> list[str]:
    async with service.sessions() as session:
        return list((await session.execute(
            select(AuditEntry.detail).where(AuditEntry.action == action).order_by(AuditEntry.id))).scalars())


async def test_the_register_is_kept_in_the_console_and_exported_like_the_paper_ledger(make_service, browsers):
    from openpyxl import load_workbook

    service, people, ids = await care_service(make_service)
    assert (await post(pushed_link(service, people["李建国"], ids["case"]), **VISIT))[0] == 303
    secretary = await signed_in(service, browsers, "hq-0")
    status, page, _ = await secretary.get("/console/care/register")
    assert status == 200 and "台账上还没有党员" in page

    # Find 王秀英 and put her on the register.
    status, _, response = await secretary.get(f"/console/care/register/find?find_branch={ids['hongqi']}&name=王秀英")
    assert status == 303
    entry = response.headers["Location"]
    status, page, _ = await secretary.get(entry)
    assert status == 200 and "不在困难党员台账上" in page and TODAY in page  # the visit she got
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = dict(on="1", level="特别困难", reason="=HYPERLINK(\"x\") 丈夫去世，独自抚养孙子", since="2025-03-01")
    assert (await secretary.post(entry, **form))[0] == 403  # no CSRF token: nothing changes
    status, page, _ = await secretary.post(entry, **{**form, "since": "2030-01-01"}, csrf=csrf)
    assert status == 400 and "不能晚于今天" in page
    status, _, response = await secretary.post(entry, **form, csrf=csrf)
    assert status == 303 and response.headers["Location"] == entry + "?saved=1"
    profile = await scalar(service, select(CareProfile))
    assert (profile.hardship_level, str(profile.hardship_since)) == ("特别困难", "2025-03-01")
    assert await scalar(service, select(Member.hardship).where(Member.name == "王秀英")) is True
    changes = await audit_details(service, "change")
    assert changes == ["困难党员台账：列入 王秀英（红旗村党支部）"]  # never the reason
    status, page, _ = await secretary.get("/console/care/register")
    assert 'data-member="王秀英"' in page and "特别困难" in page and "1 次" in page

    # Another branch's secretary cannot open or change the entry.
    other = await signed_in(service, browsers, "df-1")
    assert (await other.get(entry))[0] == 404
    other_csrf = re.search(r'name="csrf" value="([^"]+)"', (await other.get("/console/"))[1]).group(1)
    assert (await other.post(entry, on="", csrf=other_csrf))[0] == 404
    assert (await other.get(f"/console/care/register/find?find_branch={ids['hongqi']}&name=王秀英"))[0] == 404

    # The ledger: the register, then the year's visits, each under a title row; no formulas.
    async with secretary.http.get(secretary.base + "/console/care/ledger.xlsx?year=2026") as response:
        assert response.status == 200
        book = load_workbook(io.BytesIO(await response.read()))
    assert book.sheetnames == ["困难党员台账", "走访慰问记录"]
    register = [[cell.value for cell in row] for row in book["困难党员台账"].iter_rows()]
    assert register[0][0] == "红旗村党支部 困难党员台账（2026年）"
    assert register[2] == ["序号", "姓名", "支部", "困难程度", "困难原因", "列入时间"]
    assert register[3] == [1, "王秀英", "红旗村党支部", "特别困难", form["reason"], "2025-03-01"]
    visits = [[cell.value for cell in row] for row in book["走访慰问记录"].iter_rows()]
    assert visits[2] == ["序号", "走访日期", "支部", "慰问对象", "走访事由", "走访人", "慰问物品", "金额", "经费来源"]
    assert visits[3] == [1, TODAY, "红旗村党支部", "王秀英", "生病住院", "李建国、张卫东", "慰问金、牛奶", "500元", "党费"]
    assert "500 元" in visits[-1]
    for sheet in book:
        assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    exports = await audit_details(service, "export")
    assert exports == ["导出关怀走访台账（2026年，1 人，1 次走访）"]


async def test_zhibu_export_care_writes_the_ledger(make_service, tmp_path):
    from openpyxl import load_workbook

    service, people, ids = await care_service(make_service)
    async with service.sessions() as session, session.begin():
        case = await session.get(CareCase, ids["villager"])
        await care.record_visit(session, case, care.VisitFields(
            visited_at=service.clock.now() - timedelta(days=1), visitors="李建国", given="米和油", amount="300"),
            by=await member(session, "李建国"), now=service.clock.now(), settings=service.config(CareSettings))
        wang = await member(session, "王秀英")
        wang.hardship = True
    env = {"ZHIBU_DATABASE_URL": service.settings.effective_database_url, "ZHIBU_DATA_DIR": str(tmp_path)}
    out = tmp_path / "台账.xlsx"

    def run(*args):
        return CliRunner().invoke(main, ["export", "care", *args], env=env)

    result = await asyncio.to_thread(run, "--org", TOWN, "--year", "2026", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "困难党员 1 人、走访 1 次" in result.output and str(out) in result.output
    book = load_workbook(out)
    register = [[cell.value for cell in row] for row in book["困难党员台账"].iter_rows()]
    assert register[0][0] == "城关镇党委 困难党员台账（2026年）" and register[3][:3] == [1, "王秀英", "红旗村党支部"]
    visits = [[cell.value for cell in row] for row in book["走访慰问记录"].iter_rows()]
    assert visits[3][1:] == ["2026-11-25", "红旗村党支部", VILLAGER + "（村民）", "灾害事故", "李建国", "米和油", "300", None]
    cell = book["走访慰问记录"].cell(4, 4)
    assert cell.data_type == "s" and cell.quotePrefix
    assert "300 元" in visits[-1]
    for sheet in book:
        assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)

    # Another year has the register and no visits; a wrong path or file type is said in words.
    result = await asyncio.to_thread(run, "--org", COUNTY, "--year", "2025", "--out", str(tmp_path / "2025.xlsx"))
    assert result.exit_code == 0 and "走访 0 次" in result.output
    result = await asyncio.to_thread(run, "--org", f"{COUNTY}/没有这个镇党委", "--year", "2026")
    assert result.exit_code != 0 and "没有找到组织" in result.output
    result = await asyncio.to_thread(run, "--org", TOWN, "--year", "2026", "--out", str(tmp_path / "a.csv"))
    assert result.exit_code != 0 and ".xlsx" in result.output


async def test_a_campaigns_progress_and_its_cases(make_service, browsers):
    from handlers.care.festivals import Campaign

    service, people, ids = await care_service(make_service)
    settings = service.config(CareSettings)
    chongyang = Campaign(next(festival for festival in settings.care_festivals if festival.name == "重阳"),
                         service.clock.now().date() + timedelta(days=5))
    async with service.sessions() as session, session.begin():
        hongqi = await by_path(session, HONGQI)
        # 王秀英 (born 1949) and 赵德明 (born 1941) are over 70; the others are not.
        assert await care.open_campaign(session, hongqi, chongyang, now=service.clock.now(), settings=settings) == 2
    secretary = await signed_in(service, browsers, "hq-0")
    status, page, _ = await secretary.get("/console/care")
    row = re.search(r'<tr data-campaign="重阳:2026">(.*?)</tr>', page, re.S).group(1)
    assert "2026年重阳" in row and re.findall(r"<td>(?:<a [^>]*>)?(\d+)", row) == ["0", "2", "0"]
    status, page, _ = await secretary.get("/console/care/cases?campaign=重阳:2026")
    assert status == 200 and "共 2 件" in page and "赵德明" in page and "刘小梅" not in page
    status, page, _ = await secretary.get("/console/care/cases?campaign=<b>")  # not a campaign: no filter
    assert status == 200 and "共 4 件" in page
