"""What a township 组织员 does in the console, in Debian's Chromium, each test once at a desktop's size and once
at a phone's (the `screen` fixture): download the month's attendance and open the file, fail to reach another
township's meeting or notice by editing the address, have a form without its token refused, sign out; read the
notices and try a question on the content page.

The county is test_console_pages' (county_service): 城关镇's 组织员 周晓燕 (town-1) looks after 红旗村 and
东风村; 青山村 belongs to 河口镇. Today is 2026-11-24. In November 红旗村 held a 主题党日 where a member called
"=1+1" signed in by code and 王秀英 was signed in by the secretary 李建国.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from openpyxl import load_workbook
from sqlalchemy import select

from storage.models import AuditEntry, ConsoleLogin, Member, Organization, OutboxStatus
from test_console_browser import sign_in
from test_console_pages import FORMULA_NAME, county_service
from test_console_data import HONGQI, QINGSHAN, local, notice  # tests/handlers: on the path test_console_pages gives

TOPIC = "学习二十届四中全会精神"
QUESTION = "农民党员党费交多少"
NOT_FOUND = "没有这个页面，或者它不在您可以查看的范围里。"


async def rows(service, query) -> list:
    async with service.sessions() as session:
        return list((await session.execute(query)).scalars())


async def exports(service) -> list[str]:
    return [entry.detail for entry in await rows(service, select(AuditEntry).where(AuditEntry.action == "export")
                                                 .order_by(AuditEntry.id))]


async def click(screen, name: str, *, role: str = "link"):
    """Click what the page shows as name and wait for the page it leads to; that page's response."""
    async with screen.page.expect_navigation() as navigation:
        await screen.page.get_by_role(role, name=name).first.click()
    return await navigation.value


async def main_text(screen) -> str:
    return await screen.page.locator("main").inner_text()


async def fits_the_width(screen) -> bool:
    """Nothing makes the page scroll sideways (a wide table scrolls inside its own box)."""
    return await screen.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def download(screen, link_name: str, folder: Path):
    """Click the link named link_name, save the file under the name the browser offers (in folder), and open it
    as a spreadsheet program would; the workbook and that name."""
    async with screen.page.expect_download() as info:
        await screen.page.get_by_role("link", name=link_name).click()
    saved = await info.value
    assert await saved.failure() is None
    path = folder / saved.suggested_filename
    await saved.save_as(path)
    return load_workbook(path), saved.suggested_filename


def values_of(workbook) -> list[list]:
    return [[cell.value for cell in row] for row in workbook.active.iter_rows()]


def formulas_in(workbook) -> list[str]:
    return [cell.coordinate for row in workbook.active.iter_rows() for cell in row if cell.data_type == "f"]


async def notices(service) -> dict[str, int]:
    """A notice from 红旗村's secretary to four members (王秀英 answered 收到, 陈志强 got it, 刘小梅's copy failed,
    赵德明's is still waiting), and one in 河口镇's 青山村; their ids by branch."""
    async with service.sessions() as session, session.begin():
        def member(name: str, under: str):
            return (select(Member).join(Organization, Organization.id == Member.org_id)
                    .where(Member.name == name, Organization.path.startswith(under)))

        people = {name: (await session.execute(member(name, HONGQI))).scalar_one()
                  for name in ("李建国", "王秀英", "陈志强", "刘小梅", "赵德明")}
        hongqi = await notice(session, people["李建国"], HONGQI, local(11, 20, 10), [
            (people["王秀英"], OutboxStatus.SENT.value, True), (people["陈志强"], OutboxStatus.SENT.value, False),
            (people["刘小梅"], OutboxStatus.FAILED.value, False), (people["赵德明"], OutboxStatus.PENDING.value, False)])
        qingshan_secretary = (await session.execute(member("马青山", QINGSHAN))).scalar_one()
        qingshan = await notice(session, qingshan_secretary, QINGSHAN, local(11, 21, 10),
                                [(qingshan_secretary, OutboxStatus.SENT.value, True)])
        return {"hongqi": hongqi.id, "qingshan": qingshan.id}


# ---------------------------------------------------------------- the month's attendance, downloaded


async def test_the_township_downloads_the_months_attendance_and_reads_the_file(make_service, screen, tmp_path):
    service, ids = await county_service(make_service)
    await sign_in(screen, service, "town-1", "/console/")
    page = screen.page

    # The check-in log, filtered to November.
    await click(screen, "签到记录")
    await page.locator("input[name=from]").fill("2026-11-01")
    await page.locator("input[name=to]").fill("2026-11-30")
    await click(screen, "查找", role="button")
    assert "共 2 条签到" in await main_text(screen)
    assert await fits_the_width(screen)
    await screen.shot("checkins")

    workbook, name = await download(screen, "Excel", tmp_path)
    assert name.startswith("签到记录-城关镇党委-2026-11-24") and name.endswith(".xlsx"), name
    values = values_of(workbook)
    header = ["姓名", "支部", "会议类型", "会议主题", "会议时间", "签到时间", "方式", "迟到", "代签人"]
    lines = {row[0]: dict(zip(header, row)) for row in values[values.index(header) + 1:]}
    assert set(lines) == {FORMULA_NAME, "王秀英"}, values
    assert lines["王秀英"]["方式"] == "代签" and lines["王秀英"]["代签人"] == "李建国"
    assert lines[FORMULA_NAME]["方式"] == "签到码" and not lines[FORMULA_NAME]["代签人"]
    for line in lines.values():
        assert (line["支部"], line["会议类型"], line["会议主题"]) == ("红旗村党支部", "主题党日", TOPIC)
        assert line["会议时间"] == "2026-11-02 09:00"
    assert formulas_in(workbook) == []  # "=1+1" stays a name, not a sum

    # The meeting itself, and its sign-in sheet laid out like the paper one.
    await click(screen, f"主题党日：{TOPIC}")
    assert "由李建国代签" in await main_text(screen)
    workbook, name = await download(screen, "下载签到表（Excel，和纸质签到表一样的格式）", tmp_path)
    assert name == "签到表-红旗村党支部-主题党日-2026-11-02.xlsx", name
    values = values_of(workbook)
    assert values[0][0] == "红旗村党支部 主题党日 签到表"
    header = ["序号", "姓名", "签到时间", "方式", "备注"]
    signed = {row[1]: dict(zip(header, row)) for row in values[values.index(header) + 1:] if row[1]}
    assert signed["王秀英"]["方式"] == "代签" and signed["王秀英"]["签到时间"] == "09:03"
    assert "由李建国代签" in signed["王秀英"]["备注"]
    assert signed[FORMULA_NAME]["方式"] == "签到码" and signed[FORMULA_NAME]["签到时间"] == "09:00"
    # Everyone else on 红旗村's roster is on the sheet, marked absent.
    assert signed["李建国"]["备注"] == "缺席" and not signed["李建国"]["签到时间"]
    assert formulas_in(workbook) == []

    written = await exports(service)
    assert len(written) == 2 and "签到记录" in written[0] and "2026-11-01" in written[0] and "签到表" in written[1]
    assert screen.outside(service.url) == []


# ---------------------------------------------------------------- another township's addresses


async def test_another_townships_meeting_and_notice_are_not_found_by_editing_the_address(make_service, screen):
    service, ids = await county_service(make_service)
    notice_ids = await notices(service)
    await sign_in(screen, service, "town-1", f"/console/meetings/{ids['november']}")
    base = service.url.rstrip("/")
    assert TOPIC in await main_text(screen)

    async def edited(address: str) -> str:
        response = await screen.open(base + address)
        assert response.status == 404, address
        assert await screen.page.locator("h1").inner_text() == "没有找到", address
        content = await screen.page.content()
        for word in ("青山", "河口", "马青山"):
            assert word not in content, (address, word)
        return await main_text(screen)

    # The meeting's address with 青山村's meeting's number in it: not found, in the same words as a number no
    # meeting has, so the page does not say that it exists.
    shown = await edited(screen.page.url.removeprefix(base).replace(str(ids["november"]), str(ids["qingshan"])))
    assert NOT_FOUND in shown
    await screen.shot("other-townships-meeting")
    assert await edited("/console/meetings/999999") == shown
    assert await edited(f"/console/meetings/{ids['qingshan']}/attendance.xlsx") == shown
    assert await edited(f"/console/meetings?branch={ids['qingshan']}") == shown

    # The same with a notice: this township's opens, 青山村's does not, nor its download.
    assert (await screen.open(base + f"/console/notices/{notice_ids['hongqi']}")).status == 200
    assert "赵德明" in await main_text(screen)
    assert await edited(f"/console/notices/{notice_ids['qingshan']}") == shown
    assert await edited("/console/notices/999999") == shown
    assert await edited(f"/console/notices/{notice_ids['qingshan']}.xlsx") == shown
    await screen.shot("other-townships-notice")
    # Nothing was exported, and the pages that do open still work.
    assert await exports(service) == []
    assert (await screen.open(base + f"/console/meetings/{ids['general']}")).status == 200
    assert screen.outside(service.url) == []


# ---------------------------------------------------------------- forms without their token; signing out


async def test_a_form_without_its_token_is_refused_and_signing_out_ends_the_session(make_service, screen):
    service, ids = await county_service(make_service)
    await sign_in(screen, service, "town-1")
    page, base = screen.page, service.url.rstrip("/")
    sign_out = page.locator('form[action="/console/logout"]')
    token = await sign_out.locator("input[name=csrf]").input_value()

    # The 退出登录 form with its hidden token taken out of the page: refused, and nothing changes.
    await sign_out.locator("input[name=csrf]").evaluate("field => field.remove()")
    response = await click(screen, "退出登录", role="button")
    assert response.status == 403
    assert await page.locator("h1").inner_text() == "表单已失效"
    await screen.shot("without-token")
    # Replayed with a token that is not this login's: refused the same way.
    for form in ({}, {"csrf": token[:-2] + ("xx" if not token.endswith("xx") else "yy")}):
        replayed = await page.request.post(base + "/console/logout", form=form, max_redirects=0)
        assert replayed.status == 403 and "表单已经失效" in await replayed.text()
    # Still signed in: the overview opens, the login is not over, no sign-out was recorded.
    assert (await screen.open(base + "/console/overview")).status == 200
    assert page.url == base + "/console/overview" and "2026年第4季度" in await main_text(screen)
    assert [login.ended_at for login in await rows(service, select(ConsoleLogin))] == [None]
    assert not await rows(service, select(AuditEntry).where(AuditEntry.action == "sign_out"))

    # 退出登录, as it is meant to be used: back to the sign-in page.
    await click(screen, "退出登录", role="button")
    assert page.url == base + "/console/login"
    assert "/扫码 login:" in await main_text(screen)
    await screen.shot("signed-out")
    [login] = await rows(service, select(ConsoleLogin))
    assert login.ended_reason == "sign_out"
    # The overview, a meeting and the browser's back button all lead to the sign-in page now.
    for address in ("/console/overview", f"/console/meetings/{ids['november']}"):
        await screen.open(base + address)
        assert page.url == base + "/console/login", address
        assert TOPIC not in await page.content() and "红旗村" not in await page.content()
    await page.go_back()
    assert page.url == base + "/console/login"
    # The sign-out form replayed with the token it carried: it signs nothing out and in nothing.
    replayed = await page.request.post(base + "/console/logout", form={"csrf": token}, max_redirects=0)
    assert replayed.status == 303 and replayed.headers["location"] == "/console/login"
    assert [login.ended_reason for login in await rows(service, select(ConsoleLogin))] == ["sign_out"]
    await screen.open(base + "/console/overview")
    assert page.url == base + "/console/login"


# ---------------------------------------------------------------- notices and the content page


async def test_the_township_reads_its_notices_and_tries_a_question(make_service, screen):
    service, ids = await county_service(make_service)
    notice_ids = await notices(service)
    await sign_in(screen, service, "town-1", "/console/")
    page = screen.page

    await click(screen, "通知")
    # Newest first: 红旗村's notice, then the township's own two; 河口镇's and 青山村's are another township's.
    listed = page.locator("tr[data-notice]")
    assert [await row.locator("td").nth(1).inner_text() for row in await listed.all()] == [
        "红旗村党支部", "城关镇党委", "城关镇党委"]
    assert await listed.first.get_attribute("data-notice") == str(notice_ids["hongqi"])
    line = [cell.strip() for cell in await page.locator(f'tr[data-notice="{notice_ids["hongqi"]}"] td').all_inner_texts()]
    assert line[0] == "2026年11月20日（周五）10:00"
    assert line[1:4] == ["红旗村党支部", "李建国", "全体党员"]
    assert line[4] == "请于月底前报送学习情况。"
    # 人数 送达 待发送 未送达 未绑定 收到
    assert line[5:] == ["4", "2", "1", "1", "0", "1"]
    assert await fits_the_width(screen)
    await screen.shot("notices")

    # One notice: each recipient, delivered, failed with the reason, waiting; who answered 收到, when.
    await click(screen, "请于月底前报送学习情况。")
    text = await main_text(screen)
    assert "共 4 人：送达 2，待发送 1，未送达 1，未绑定 0，已回复收到 1" in text

    async def recipient(name: str) -> list[str]:
        row = page.locator("tbody tr").filter(has=page.get_by_role("cell", name=name, exact=True))
        return [cell.strip() for cell in await row.locator("td").all_inner_texts()]

    answered = local(11, 20, 10) + timedelta(hours=2)
    assert await recipient("王秀英") == ["王秀英", "红旗村党支部", "送达", f"2026年11月20日（周五）{answered:%H:%M}"]
    assert await recipient("陈志强") == ["陈志强", "红旗村党支部", "送达", "—"]
    assert await recipient("刘小梅") == ["刘小梅", "红旗村党支部", "未送达（用户已取消关注）", "—"]
    assert await recipient("赵德明") == ["赵德明", "红旗村党支部", "待发送", "—"]
    assert await fits_the_width(screen)
    await screen.shot("notice", docs="console-notice")

    # The content page: the FAQ, a search in it, and a question tried as a member would ask it in chat.
    await click(screen, "问答内容")
    entries = page.locator("tr[data-entry]")
    everything = await entries.count()
    assert everything > 1
    await page.get_by_label("查找").fill("党费交多少")
    await click(screen, "查找", role="button")
    found = await entries.all_inner_texts()
    # Fewer entries: the one on 党费 among them, one on something else gone.
    assert len(found) < everything and any(entry.startswith("党费交多少钱？") for entry in found), found
    assert not any(entry.startswith("支部助手能做什么？") for entry in found), found
    await page.get_by_label("党员会怎么问").fill(QUESTION)
    await click(screen, "看看怎么回答", role="button")
    expected = await service.say("stranger-1", QUESTION)
    assert expected and "党费" in expected
    shown = await page.locator(".try-reply").inner_text()
    assert shown.split() == expected.split(), (shown, expected)
    assert QUESTION in await main_text(screen)
    assert await fits_the_width(screen)
    await screen.shot("content", docs="console-content")
    assert screen.outside(service.url) == []
