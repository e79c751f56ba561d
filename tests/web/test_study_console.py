"""The study feature's console pages over HTTP (handlers/study/console.py), signed in by a scan through the
emulator, on SQLite and PostgreSQL: the plan with a count per item (per branch in the tree's order for a
township), another township's or branch's item, branch and member answering 404, the add form's errors beside
their fields with what was typed kept, CSRF, the plan upload's report before anything is written, 送学上门, and
the year's hours opened with openpyxl cell by cell — and nowhere a ranking, a place or a share per person.

The county is test_console_pages' (county_service): 城关镇's 组织员 周晓燕 (town-1) looks after 红旗村 and 东风村;
红旗村's secretary 李建国 (hq-sec) and 东风村's 周海 (df-sec); 青山村 belongs to 河口镇. Today is 2026-11-24.
"""

from __future__ import annotations

import html
import io
import re
from datetime import date

import aiohttp
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from handlers.study import plan
from handlers.study import service as study_service
from handlers.study.settings import StudySettings
from storage import study as store
from storage.models import AuditEntry, Member, Organization, StudyDone, StudyItem, StudyProfile
from test_console_auth import browsers, csrf_of, location, rows  # noqa: F401  (browsers: a fixture)
from test_console_pages import FORMULA_NAME, county_service, signed_in_browser
from test_console_data import DONGFENG, HEKOU, HONGQI, QINGSHAN, TOWN  # tests/handlers: on the path test_console_pages gives
from test_study import RANKING

# Beyond test_study's scan (名次, 排名, 排行, 第 N 名, 积分, a percentage…): places written in words.
PLACES = re.compile(r"第[一二三四五六七八九十]+名|名列|倒数第")
NOT_FOUND = "没有这个页面，或者它不在您可以查看的范围里。"


def main_of(page: str) -> str:
    return re.search(r"<main.*?</main>", page, re.S).group(0)


def assert_no_ranking(text: str) -> None:
    assert not RANKING.search(text) and not PLACES.search(text), (RANKING.search(text) or PLACES.search(text))


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


async def add(service, title: str, org: str, *, starts: str = "2026-11-20", ends: str = "2026-11-30",
              questions: list | None = None) -> int:
    async with service.sessions() as session, session.begin():
        added = await plan.add_item(session, plan.Draft(title=title, summary=f"{title}的要点。", starts=starts, ends=ends,
                                                        minutes="15", org=org, questions=questions or []),
                                    docs={}, added_by="测试", now=service.clock.now())
        assert not added.problems, added.problems
        return added.item.id


async def member_id(service, name: str, under: str) -> int:
    async with service.sessions() as session:
        return (await session.execute(select(Member.id).join(Organization, Organization.id == Member.org_id)
                                      .where(Member.name == name, Organization.path.startswith(under)))).scalar_one()


async def study_county(make_service, tmp_path):
    """county_service (no study files; uploads kept under tmp_path) with four items — the township's (with a question), 红旗村's, 东风村's and 河口镇's — and
    the township's done by 王秀英, "=1+1" and 周海, 红旗村's by 王秀英."""
    folder = tmp_path / "study"
    folder.mkdir(exist_ok=True)

    async def make(**settings):
        return await make_service(data_dir=tmp_path / "data", study_dir=str(folder), **settings)

    service, ids = await county_service(make)
    items = {"town": await add(service, "城关镇冬季学习", TOWN, questions=[("学时多少？", "16|32", "2")]),
             "hongqi": await add(service, "红旗村自己的学习", HONGQI),
             "dongfeng": await add(service, "东风村自己的学习", DONGFENG),
             "hekou": await add(service, "河口镇的学习", HEKOU)}
    async with service.sessions() as session, session.begin():
        for name, under, item in (("王秀英", HONGQI, "town"), (FORMULA_NAME, HONGQI, "town"), ("周海", DONGFENG, "town"),
                                  ("王秀英", HONGQI, "hongqi")):
            session.add(StudyDone(item_id=items[item], member_id=await member_id(service, name, under),
                                  done_at=service.clock.now()))
    return service, ids, items


def item_row(page: str, item_id: int) -> str:
    match = re.search(rf'<tr data-item="{item_id}">(.*?)</tr>', page, re.S)
    return text_of(match.group(1)) if match else ""


async def audits(service, action: str) -> list[str]:
    return [entry.detail for entry in await rows(service, select(AuditEntry).where(AuditEntry.action == action)
                                                 .order_by(AuditEntry.id))]


# ---------------------------------------------------------------- the plan


async def test_the_plan_counts_each_item_in_scope_and_answers_404_outside(make_service, browsers, tmp_path):
    service, ids, items = await study_county(make_service, tmp_path)
    town = await signed_in_browser(service, browsers, "town-1")
    status, page, _ = await town.get("/console/")
    assert 'href="/console/study"' in page
    status, page, _ = await town.get("/console/study")
    assert status == 200, page
    # 城关镇: its 组织员, 红旗村's eight and 东风村's three.
    assert "已学 3 人 / 共 12 人" in item_row(page, items["town"])
    assert "已学 1 人 / 共 8 人" in item_row(page, items["hongqi"])
    assert "已学 0 人 / 共 3 人" in item_row(page, items["dongfeng"])
    assert item_row(page, items["hekou"]) == "" and "河口镇的学习" not in page
    assert_no_ranking(main_of(page))

    # The township's item, branch by branch in the tree's order: 红旗村 did more and still comes after 东风村.
    status, page, _ = await town.get(f"/console/study/items/{items['town']}")
    assert status == 200 and "学时多少？" in page and "32（正确）" in page
    branches = re.findall(r'<tr data-branch="([^"]+)"><td>[^<]*</td><td class="num count">([^<]*)</td>', page)
    assert branches == [("城关镇党委", "已学 0 人 / 共 1 人"), ("东风村党支部", "已学 1 人 / 共 3 人"),
                        ("红旗村党支部", "已学 2 人 / 共 8 人")]
    assert_no_ranking(main_of(page))
    # Another township's item: 404, like one that does not exist.
    for path in (f"/console/study/items/{items['hekou']}", "/console/study/items/999999", "/console/study/items/x"):
        status, page, _ = await town.get(path)
        assert status == 404 and NOT_FOUND in page, path

    # 红旗村's secretary: the township's item counted among 红旗村's members only; 东风村's item is not there.
    secretary = await signed_in_browser(service, browsers, "hq-sec")
    status, page, _ = await secretary.get("/console/study")
    assert "已学 2 人 / 共 8 人" in item_row(page, items["town"])
    assert "东风村自己的学习" not in page
    status, page, _ = await secretary.get(f"/console/study/items/{items['town']}")
    assert status == 200 and 'data-branch="东风村党支部"' not in page
    for item in ("dongfeng", "hekou"):
        status, _, _ = await secretary.get(f"/console/study/items/{items[item]}")
        assert status == 404, item


# ---------------------------------------------------------------- adding an item


async def test_the_add_form_shows_each_problem_beside_its_field_and_keeps_what_was_typed(make_service, browsers, tmp_path):
    service, ids, items = await study_county(make_service, tmp_path)
    town = await signed_in_browser(service, browsers, "town-1")
    status, page, _ = await town.get("/console/study/new")
    assert status == 200 and f'<option value="{TOWN}" selected>' in page and f'<option value="{HONGQI}">' in page
    assert HEKOU not in page  # only the organizations in scope are offered
    csrf = await csrf_of(town)
    typed = {"org": HEKOU, "title": "", "summary": "  第一行\n  第二行", "starts": "2026-12-10", "ends": "2026-12-01",
             "minutes": "半小时", "link": "www.12371.cn", "doc": "", "q1": "党员每年学习多少学时？", "o1": "32个学时",
             "a1": "1"}
    status, page, _ = await town.post("/console/study/new", **typed)  # no CSRF token
    assert status == 403
    status, page, _ = await town.post("/console/study/new", csrf=csrf, **typed)
    assert status == 400, page

    def error(field: str) -> str:
        match = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', page)
        return html.unescape(match.group(1)) if match else ""

    assert error("org") == f"“{HEKOU}”不在您管理的范围内。请从“{TOWN}”写起"
    assert error("title") == "没有填"
    assert error("minutes").startswith("要写 1 到 600 之间的整数")
    assert error("ends") == "早于开始日期 2026-12-10"
    assert error("link") == "要以 https:// 或 http:// 开头"
    assert error("o1").startswith("要有 2 到 6 个选项")
    assert error("summary") == "" and error("starts") == ""
    assert 'id="minutes" name="minutes" value="半小时" aria-invalid="true"' in page
    assert ">  第一行\n  第二行</textarea>" in page and 'value="党员每年学习多少学时？"' in page
    assert f'<option value="{HEKOU}" selected>' in page  # what was chosen stays chosen, even refused
    async with service.sessions() as session:
        count = (await session.execute(select(func.count()).select_from(StudyItem))).scalar_one()

    good = typed | {"org": HONGQI, "title": "讲讲村里的新变化", "ends": "2026-12-20", "minutes": "20",
                    "link": "https://www.12371.cn/", "o1": "32个学时\n16个学时"}
    status, _, response = await town.post("/console/study/new", csrf=csrf, **good)
    assert status == 303 and re.fullmatch(r"/console/study/items/\d+\?added=1", location(response))
    status, page, _ = await town.get(location(response))
    assert "已添加。" in page and "讲讲村里的新变化" in page and "  第一行\n  第二行" not in page  # trimmed ends
    item = (await rows(service, select(StudyItem).where(StudyItem.title == "讲讲村里的新变化")))[0]
    assert (item.summary, item.org_path, item.source) == ("第一行\n  第二行", HONGQI, "由周晓燕（城关镇党委）添加")
    assert await audits(service, "change") == [f"添加学习内容“讲讲村里的新变化”（{HONGQI}，2026-12-10 至 2026-12-20）"]
    # Again: the same item is found, nothing added, nothing audited.
    status, _, response = await town.post("/console/study/new", csrf=csrf, **good)
    assert status == 303 and location(response).endswith("?exists=1")
    async with service.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(StudyItem))).scalar_one() == count + 1
    assert len(await audits(service, "change")) == 1

    # A secretary is offered their branch only, and cannot publish for the township.
    secretary = await signed_in_browser(service, browsers, "hq-sec")
    status, page, _ = await secretary.get("/console/study/new")
    assert f'<option value="{HONGQI}" selected>' in page and f'<option value="{TOWN}"' not in page
    status, page, _ = await secretary.post("/console/study/new", csrf=await csrf_of(secretary), **good | {"org": TOWN})
    assert status == 400 and "不在您管理的范围内" in page


# ---------------------------------------------------------------- a plan by upload


def plan_file(lines: list[list]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["标题", "内容摘要", "开始日期", "结束日期", "预计分钟", "发布组织", "题目1", "选项1", "答案1"])
    for line in lines:
        sheet.append(line)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def upload(browser, name: str, body: bytes, csrf: str | None):
    form = aiohttp.FormData(quote_fields=False)
    if csrf is not None:
        form.add_field("csrf", csrf)
    form.add_field("file", body, filename=name, content_type="application/octet-stream")
    async with browser.http.post(browser.base + "/console/study/import", data=form, allow_redirects=False) as response:
        return response.status, await response.text(), response


def hidden(page: str, name: str) -> str:
    return html.unescape(re.search(r'name="' + name + r'" value="([^"]*)"', page).group(1))


async def test_a_plan_upload_is_reported_before_anything_is_written(make_service, browsers, tmp_path):
    service, ids, items = await study_county(make_service, tmp_path)
    town = await signed_in_browser(service, browsers, "town-1")
    csrf = await csrf_of(town)
    body = plan_file([
        ["学党章", "第一章 党员", date(2026, 12, 1), date(2026, 12, 14), 20, "", "党员有几项义务？", "八项／六项", 1],
        ["村里的事", "四议两公开", "2026-12-01", "2026-12-14", 10, HONGQI, "", "", ""],
        ["河口镇的事", "不归城关镇管", "2026-12-01", "2026-12-14", 10, HEKOU, "", "", ""],
        ["", "没有标题", "2026-12-01", "2026-12-14", 10, "", "", "", ""]])
    status, _, _ = await upload(town, "冬季计划.xlsx", body, None)
    assert status == 403
    status, _, response = await upload(town, "冬季计划.xlsx", body, csrf)
    assert status == 303 and location(response).startswith("/console/study/import?file=")
    status, page, _ = await town.get(location(response))
    assert status == 200 and "还没有导入任何内容" in page
    text = text_of(main_of(page))
    assert f"第 4 行 发布组织 “{HEKOU}”不在您管理的范围内" in text and "第 5 行 标题 没有填" in text
    assert "第 2 行 学党章 示范县委/城关镇党委 2026-12-01 至 2026-12-14 20 分钟 1 道" in text
    assert "只导入没有问题的 2 行" in page and "确认导入</button>" not in page
    assert_no_ranking(main_of(page))
    assert await rows(service, select(StudyItem).where(StudyItem.title == "学党章")) == []

    token, fingerprint = hidden(page, "file"), hidden(page, "plan")
    status, _, _ = await town.post("/console/study/import/confirm", file=token, plan=fingerprint, rows="valid")
    assert status == 403  # no CSRF token
    status, page, _ = await town.post("/console/study/import/confirm", csrf=csrf, file=token, plan=fingerprint)
    assert status == 409  # not every row is right, and only the good ones were not asked for
    status, _, response = await town.post("/console/study/import/confirm", csrf=csrf, file=token, plan=fingerprint,
                                          rows="valid")
    assert status == 303 and location(response).startswith("/console/study/import?done=")
    status, page, _ = await town.get(location(response))
    assert "新增 2 项" in page and "第 5 行 标题：没有填" in page
    added = await rows(service, select(StudyItem).where(StudyItem.title.in_(["学党章", "村里的事"])).order_by(StudyItem.id))
    assert [(item.title, item.org_path) for item in added] == [("学党章", TOWN), ("村里的事", HONGQI)]
    assert added[0].source == "由周晓燕（城关镇党委）从《冬季计划.xlsx》导入"
    assert await audits(service, "import") == ["导入学习计划《冬季计划.xlsx》：4 行，新增 2 项，已有 0 项，2 处问题所在的行没有导入"]

    # The same file again: both there already, nothing to import.
    status, _, response = await upload(town, "冬季计划.xlsx", body, csrf)
    status, page, _ = await town.get(location(response))
    assert "已经有了</dt><dd>2 项" in page and "只导入没有问题的" not in page and "确认导入</button>" not in page


# ---------------------------------------------------------------- 送学上门


async def test_a_branch_marks_and_unmarks_a_member_brought_study_at_home(make_service, browsers, tmp_path):
    service, ids, items = await study_county(make_service, tmp_path)
    secretary = await signed_in_browser(service, browsers, "hq-sec")
    status, page, _ = await secretary.get("/console/study/at-home")
    assert status == 200, page
    names = re.findall(r'<tr id="m\d+" data-member="([^"]+)">', page)
    assert names == sorted(names) and set(names) == {"李建国", "孙红", "张卫东", "王秀英", "刘小梅", "陈志强", "赵德明",
                                                     html.escape(FORMULA_NAME)}
    wang = await member_id(service, "王秀英", HONGQI)
    csrf = await csrf_of(secretary)
    status, _, _ = await secretary.post(f"/console/study/at-home/{wang}", on="1")
    assert status == 403
    status, _, response = await secretary.post(f"/console/study/at-home/{wang}", csrf=csrf, on="1")
    assert status == 303 and location(response) == f"/console/study/at-home?branch={ids['hongqi']}&saved=on#m{wang}"
    status, page, _ = await secretary.get(location(response).split("#")[0])
    assert "已标记为送学上门" in page and "送学上门 1 人" in page
    assert re.search(rf'<tr id="m{wang}" data-member="王秀英">.*?<span class="state bound">送学上门</span>', page, re.S)
    async with service.sessions() as session:
        assert (await session.get(StudyProfile, wang)).at_home is True
    # The weekly push's audience leaves the member out now.
    async with service.sessions() as session:
        item = await session.get(StudyItem, items["hongqi"])
        assert wang not in set((await session.execute(store.audience(item))).scalars())
    status, _, _ = await secretary.post(f"/console/study/at-home/{wang}", csrf=csrf, on="0")
    async with service.sessions() as session:
        assert (await session.get(StudyProfile, wang)).at_home is False
    assert await audits(service, "change") == ["标记送学上门：王秀英（红旗村党支部）", "取消送学上门：王秀英（红旗村党支部）"]

    # Out of scope: another branch of the township for the secretary, another township for its 组织员.
    status, _, _ = await secretary.get(f"/console/study/at-home?branch={ids['dongfeng']}")
    assert status == 404
    zhou = await member_id(service, "周海", DONGFENG)
    status, _, _ = await secretary.post(f"/console/study/at-home/{zhou}", csrf=csrf, on="1")
    assert status == 404
    town = await signed_in_browser(service, browsers, "town-1")
    status, page, _ = await town.get("/console/study/at-home")
    assert status == 200 and "请先选一个支部" in page and "东风村党支部" in page and "青山村党支部" not in page
    async with service.sessions() as session:
        qingshan = (await session.execute(select(Organization.id).where(Organization.path == QINGSHAN))).scalar_one()
    status, _, _ = await town.get(f"/console/study/at-home?branch={qingshan}")
    assert status == 404
    status, _, _ = await town.post(f"/console/study/at-home/{await member_id(service, '马青山', QINGSHAN)}",
                                   csrf=await csrf_of(town), on="1")
    assert status == 404
    assert len(await audits(service, "change")) == 2


# ---------------------------------------------------------------- the year's hours


async def test_the_years_hours_download_in_roster_order_every_cell_text(make_service, browsers, tmp_path):
    service, ids, items = await study_county(make_service, tmp_path)
    town = await signed_in_browser(service, browsers, "town-1")
    async with town.http.get(town.base + "/console/study/hours.xlsx?year=2026", allow_redirects=False) as response:
        assert response.status == 200
        assert "filename*=UTF-8''" in response.headers["Content-Disposition"]
        body = await response.read()
    book = load_workbook(io.BytesIO(body))
    values = [[cell.value for cell in row] for row in book.active.iter_rows()]
    assert values[0][0] == "城关镇党委 党员学习学时（2026年，按名册顺序）"
    header = ["姓名", "支部", "学完学习内容（项）", "学习内容学时", "参加党课（次）", "党课学时", "参加主题党日（次）",
              "主题党日学时", "合计学时", "一年要求学时"]
    assert values[2] == header
    lines = [dict(zip(header, row)) for row in values[3:]]
    # Roster order: the township's own staff, then 东风村, then 红旗村 (the tree's order), each by name.
    assert [(line["支部"], line["姓名"]) for line in lines] == (
        [("城关镇党委", "周晓燕")] + [("东风村党支部", name) for name in sorted(["周海", "吴芳", "郑玉兰"])]
        + [("红旗村党支部", name) for name in sorted(["李建国", "孙红", "张卫东", "王秀英", "刘小梅", "陈志强", "赵德明",
                                                     FORMULA_NAME])])
    totals = [float(line["合计学时"]) for line in lines]
    assert totals != sorted(totals, reverse=True)  # not by hours
    # Cell by cell for three members: the same figures 我的学习 gives each of them.
    settings = service.config(StudySettings)
    checked = {name: await member_id(service, name, under)
               for name, under in (("王秀英", HONGQI), (FORMULA_NAME, HONGQI), ("周海", DONGFENG))}
    async with service.sessions() as session:
        for name, checked_id in checked.items():
            member = await session.get(Member, checked_id)
            hours = await study_service.hours_of(session, member, today=date(2026, 11, 24), settings=settings)
            line = next(line for line in lines if line["姓名"] == name)
            assert line["学完学习内容（项）"] == str(hours.item_count)
            assert line["学习内容学时"] == study_service.figure(hours.item_hours)
            assert line["参加党课（次）"] == str(hours.meetings.get("党课", (0, 0))[0])
            assert line["主题党日学时"] == study_service.figure(hours.meetings.get("主题党日", (0, 0.0))[1])
            assert line["合计学时"] == study_service.figure(hours.total)
            assert line["一年要求学时"] == study_service.figure(hours.required)
    wang = next(line for line in lines if line["姓名"] == "王秀英")
    assert (wang["学完学习内容（项）"], wang["学习内容学时"], wang["参加主题党日（次）"], wang["合计学时"]) == ("2", "0.7", "4", "10.7")
    for row in book.active.iter_rows(min_row=3):
        assert all(cell.data_type == "s" for cell in row if cell.value is not None)
    formula = next(cell for cell in book.active["A"] if cell.value == FORMULA_NAME)
    assert formula.data_type == "s" and formula.quotePrefix
    assert_no_ranking("\n".join(str(cell) for row in values for cell in row if cell is not None))

    async with town.http.get(town.base + "/console/study/hours.csv?year=2026") as response:
        text = (await response.read()).decode("utf-8-sig")
    assert text.splitlines()[0] == ",".join(header) and f"'{FORMULA_NAME},红旗村党支部" in text
    assert await audits(service, "export") == ["导出学习学时（xlsx，12 行）：2026年，按名册顺序",
                                               "导出学习学时（csv，12 行）：2026年，按名册顺序"]
    status, _, _ = await town.get("/console/study/hours.xlsx?year=1999")
    assert status == 404
    # A secretary's download: their branch only.
    secretary = await signed_in_browser(service, browsers, "hq-sec")
    async with secretary.http.get(secretary.base + "/console/study/hours.csv?year=2026") as response:
        text = (await response.read()).decode("utf-8-sig")
    assert "东风村党支部" not in text and len(text.splitlines()) == 9
