"""The study console in Debian's Chromium, once at a desktop's size and once at a phone's (the `screen` fixture):
a township's 组织员 reads the plan with its counts, adds an item (a mistake first, shown beside its field with
what was typed kept), marks a member 送学上门 and downloads the year's hours, which open in a spreadsheet with
every name as text. Nothing is loaded from elsewhere, nothing scrolls sideways, and no page ranks anyone.

The county and its items are test_study_console.py's (study_county)."""

from __future__ import annotations

from openpyxl import load_workbook
from playwright.async_api import expect
from sqlalchemy import select

from storage.models import StudyItem, StudyProfile
from test_console_browser import sign_in
from test_console_browser_flows import click, fits_the_width, main_text
from test_console_data import HONGQI
from test_console_pages import FORMULA_NAME
from test_study_console import assert_no_ranking, member_id, study_county


async def test_a_township_keeps_the_study_plan_in_the_console(make_service, screen, tmp_path):
    service, ids, items = await study_county(make_service, tmp_path)
    await sign_in(screen, service, "town-1", "/console/study")
    page = screen.page
    shown = await main_text(screen)
    assert "城关镇冬季学习" in shown and "已学 3 人 / 共 12 人" in shown and "河口镇的学习" not in shown, shown
    assert_no_ranking(shown)
    assert await fits_the_width(screen)
    await screen.shot("plan", docs="console-study")

    # The township's item, branch by branch.
    await click(screen, "城关镇冬季学习")
    rows = page.locator("tr[data-branch]")
    await expect(rows).to_have_count(3)
    assert await rows.nth(1).get_attribute("data-branch") == "东风村党支部"
    await screen.shot("item")

    # Add an item: minutes in words first.
    await click(screen, "添加学习内容")
    await page.locator("#org").select_option(HONGQI)
    await page.locator("#title").fill("讲讲村里的新变化")
    await page.locator("#summary").fill("村里修了路、建了文化广场。\n支部书记讲讲这一年的变化。")
    await page.locator("#starts").fill("2026-12-01")
    await page.locator("#ends").fill("2026-12-14")
    await page.locator("#minutes").fill("半小时")
    await page.locator("#q1").fill("村里今年修了什么？")
    await page.locator("#o1").fill("路\n桥")
    await page.locator("#a1").fill("1")
    await click(screen, "添加", role="button")
    error = page.locator("#minutes-error")
    await expect(error).to_contain_text("要写 1 到 600 之间的整数")
    await expect(page.locator("#title")).to_have_value("讲讲村里的新变化")
    await expect(page.locator("#summary")).to_have_value("村里修了路、建了文化广场。\n支部书记讲讲这一年的变化。")
    await expect(page.locator("#o1")).to_have_value("路\n桥")
    assert await fits_the_width(screen)
    await screen.shot("add-mistake", docs="console-study-add")
    await page.locator("#minutes").fill("20")
    await click(screen, "添加", role="button")
    assert "已添加。" in await main_text(screen) and "已学 0 人 / 共 8 人" in await main_text(screen)
    await screen.shot("added")
    async with service.sessions() as session:
        item = (await session.execute(select(StudyItem).where(StudyItem.title == "讲讲村里的新变化"))).scalar_one()
    assert (item.org_path, item.minutes, item.summary) == (HONGQI, 20, "村里修了路、建了文化广场。\n支部书记讲讲这一年的变化。")

    # 送学上门: choose 红旗村, mark 赵德明.
    await click(screen, "送学上门")
    await page.locator("select[name=branch]").select_option(label="红旗村党支部")
    await click(screen, "查看", role="button")
    await click(screen, "标记送学上门：赵德明", role="button")
    assert "已标记为送学上门" in await main_text(screen)
    await expect(page.locator('tr[data-member="赵德明"]')).to_contain_text("取消送学上门")
    assert await fits_the_width(screen)
    await screen.shot("at-home")
    async with service.sessions() as session:
        assert (await session.get(StudyProfile, await member_id(service, "赵德明", HONGQI))).at_home is True

    # The year's hours, downloaded and opened.
    await click(screen, "学习计划")
    async with page.expect_download() as info:
        await page.get_by_role("button", name="下载 Excel").click()
    saved = await info.value
    path = tmp_path / saved.suggested_filename
    await saved.save_as(path)
    assert saved.suggested_filename.startswith("学习学时-城关镇党委-") and path.suffix == ".xlsx"
    sheet = load_workbook(path).active
    names = [row[0].value for row in sheet.iter_rows(min_row=4)]
    assert names[0] == "周晓燕" and FORMULA_NAME in names
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    assert screen.outside(service.url) == []
