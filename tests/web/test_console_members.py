"""The membership feature's console pages (handlers/membership/console.py) over HTTP, signed in by a scan
through the emulator, on SQLite and PostgreSQL: the roster with binding codes, new codes, exports, and the
roster import by upload (the report before anything is written, then 确认导入).

    示范县委
    ├── 城关镇党委 (组织员 周晓燕)
    │   ├── 红旗村党支部  书记 李建国 and 王秀英 (bound); 赵德明 (a code), 孙红 (an expired code), "=cmd"
    │   └── 东风村党支部  周海 (a code)
    └── 河口镇党委 (组织员 何明)
        └── 青山村党支部  马青山 (a code)

The Q&A feature is left out of these services: loading its index is the slowest start there is, and nothing
here asks it anything.
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import aiohttp
from cryptography.fernet import Fernet
from sqlalchemy import func, select, update

from bot.app import feature_routers
from handlers.membership import MembershipSettings
from handlers.membership.console import UPLOAD_DIR
from harness import DONGFENG, HONGQI, TOWN
from storage.models import AuditEntry, Member, Organization, Role
from test_console_auth import browsers, csrf_of, location, rows, sign_in_by_scan  # noqa: F401  (browsers: a fixture)

HEKOU = "示范县委/河口镇党委"
QINGSHAN = f"{HEKOU}/青山村党支部"
FORMULA = "=cmd"
ROSTER_HEADER = ["序号", "姓名", "手机号", "所属组织", "职务", "入党日期"]


async def members_service(make_service, tmp_path):
    service = await make_service(console_key=Fernet.generate_key().decode(), data_dir=tmp_path / "data",
                                 routers=[router for router in feature_routers() if router.name != "qa"])
    await service.bind("hq-sec", "李建国", org_path=HONGQI, role=Role.SECRETARY, phone="13800000001")
    await service.bind("hq-1", "王秀英", org_path=HONGQI + "/第一党小组", phone="13800000002")
    await service.bind("town-1", "周晓燕", org_path=TOWN, role=Role.STAFF, phone="13800000007")
    await service.bind("hekou-1", "何明", org_path=HEKOU, role=Role.STAFF, phone="13700000001")
    for name, path in (("赵德明", HONGQI + "/第一党小组"), ("孙红", HONGQI), (FORMULA, HONGQI), ("周海", DONGFENG),
                       ("马青山", QINGSHAN)):
        await service.add_member(name, path)
    async with service.sessions() as session, session.begin():
        await session.execute(update(Member).where(Member.name == "孙红")
                              .values(binding_code_expires_at=service.clock.now() - timedelta(days=1)))
        ids = dict((await session.execute(select(Organization.path, Organization.id))).all())
    return service, ids


async def signed_in(service, browsers, openid: str):
    browser = browsers(service)
    await sign_in_by_scan(service, browser, openid)
    return browser


async def member(service, name: str) -> Member:
    async with service.sessions() as session:
        return (await session.execute(select(Member).where(Member.name == name))).scalar_one()


async def count_members(service) -> int:
    async with service.sessions() as session:
        return (await session.execute(select(func.count()).select_from(Member))).scalar_one()


async def audits(service, action: str) -> list[str]:
    return [entry.detail for entry in await rows(service, select(AuditEntry).where(AuditEntry.action == action)
                                                 .order_by(AuditEntry.id))]


def row_of(page: str, name: str) -> str:
    match = re.search(r'<tr id="m\d+" data-member="\d+">\s*<td>' + re.escape(html.escape(name)) + r"</td>(.*?)</tr>",
                      page, re.S)
    assert match, page
    return match.group(1)


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


async def download(browser, path: str) -> tuple[int, bytes]:
    async with browser.http.get(browser.base + path, allow_redirects=False) as response:
        return response.status, await response.read()


async def upload(browser, name: str, body: bytes, csrf: str | None) -> tuple[int, str, aiohttp.ClientResponse]:
    # Unquoted, as browsers send a file's name (aiohttp's client would percent-encode it).
    form = aiohttp.FormData(quote_fields=False)
    if csrf is not None:
        form.add_field("csrf", csrf)
    form.add_field("file", body, filename=name, content_type="application/octet-stream")
    async with browser.http.post(browser.base + "/console/members/import", data=form,
                                 allow_redirects=False) as response:
        return response.status, await response.text(), response


def roster_csv(lines: list[list[str]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(ROSTER_HEADER)
    for number, line in enumerate(lines, start=1):
        writer.writerow([number, *line])
    return text.getvalue().encode("utf-8-sig")


def roster_xlsx(lines: list[list[str]]) -> bytes:
    from openpyxl import Workbook

    from bot.tables import keep_text

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["红旗村党员花名册"])  # a title above the header, as rosters have
    for values in [ROSTER_HEADER, *[[number, *line] for number, line in enumerate(lines, start=1)]]:
        sheet.append(values)
        keep_text(sheet[sheet.max_row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def hidden(page: str, name: str) -> str:
    return html.unescape(re.search(r'name="' + name + r'" value="([^"]*)"', page).group(1))


# ---------------------------------------------------------------- the list


async def test_each_viewer_sees_their_scope_codes_only_for_unbound_members_and_exports_it(make_service, browsers, tmp_path):
    service, ids = await members_service(make_service, tmp_path)
    town = await signed_in(service, browsers, "town-1")

    status, page, _ = await town.get("/console/")
    assert status == 200 and 'href="/console/members"' in page
    status, page, _ = await town.get("/console/members")
    assert status == 200, page
    for name in ("李建国", "王秀英", "赵德明", "孙红", FORMULA, "周海"):
        assert f"<td>{html.escape(name)}</td>" in page, name
    assert "马青山" not in page and "青山村" not in page and "何明" not in page
    # Tree order: 红旗村 before 东风村? No: the tree's order is by name, 东风村 first, then 红旗村.
    assert page.index("<td>周海</td>") < page.index("<td>李建国</td>")

    zhao, wang, sun = await member(service, "赵德明"), await member(service, "王秀英"), await member(service, "孙红")
    assert text_of(row_of(page, "赵德明")).startswith("红旗村党支部 第一党小组 党员 未绑定 " + zhao.binding_code)
    assert f'<span class="code">{zhao.binding_code}</span>' in row_of(page, "赵德明")
    local = service.settings.local(zhao.binding_code_expires_at)
    assert f"{local:%Y年%-m月%-d日}" in row_of(page, "赵德明") and "前有效" in row_of(page, "赵德明")
    # Bound: no code, no button. Expired: said so, the old code not shown, a button for a new one.
    assert 'class="code"' not in row_of(page, "王秀英") and "已绑定" in row_of(page, "王秀英")
    assert "<form" not in row_of(page, "王秀英")
    assert wang.binding_code is None
    assert "绑定码已过期" in row_of(page, "孙红") and sun.binding_code not in row_of(page, "孙红")
    assert "发新绑定码" in row_of(page, "孙红")
    assert "共 7 人，其中已绑定 3 人" in page

    # Filters: binding state, name, branch.
    status, page, _ = await town.get("/console/members?state=expired")
    assert status == 200 and "<td>孙红</td>" in page and "<td>赵德明</td>" not in page and "共 1 人" in page
    status, page, _ = await town.get("/console/members?state=unbound")
    assert "共 4 人" in page and "<td>王秀英</td>" not in page and "<td>孙红</td>" in page
    status, page, _ = await town.get("/console/members?state=bound")
    assert "共 3 人" in page and "<td>王秀英</td>" in page
    status, page, _ = await town.get("/console/members?name=%E8%B5%B5")  # 赵
    assert "共 1 人" in page and "<td>赵德明</td>" in page
    status, page, _ = await town.get(f"/console/members?branch={ids[DONGFENG]}")
    assert status == 200 and "共 1 人" in page and "<td>周海</td>" in page

    # Another township's branch, by URL: 404, in the list and its exports.
    for path in (f"/console/members?branch={ids[QINGSHAN]}", f"/console/members.csv?branch={ids[QINGSHAN]}",
                 f"/console/members.xlsx?branch={ids[HEKOU]}", "/console/members?branch=99999"):
        status, body = await download(town, path)
        assert status == 404, path
        assert "马青山".encode() not in body
    hekou = await signed_in(service, browsers, "hekou-1")
    status, page, _ = await hekou.get("/console/members")
    assert "<td>马青山</td>" in page and "红旗村" not in page and "共 2 人" in page
    status, _, _ = await hekou.get(f"/console/members?branch={ids[HONGQI]}")
    assert status == 404

    # A secretary sees the branch only: no branch filter, another branch is 404.
    secretary = await signed_in(service, browsers, "hq-sec")
    status, page, _ = await secretary.get("/console/members")
    assert status == 200 and "<td>周海</td>" not in page and "共 5 人" in page and 'name="branch"' not in page
    status, _, _ = await secretary.get(f"/console/members?branch={ids[DONGFENG]}")
    assert status == 404
    assert not await audits(service, "export")

    # Exports: exactly what the filters show, every cell text.
    expires = f"{service.settings.local(zhao.binding_code_expires_at):%Y-%m-%d %H:%M}"

    status, body = await download(town, f"/console/members.csv?branch={ids[HONGQI]}&state=unbound")
    assert status == 200 and body.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert table[0] == ["姓名", "组织", "党小组", "职务", "绑定状态", "绑定码", "绑定码有效期至"]
    by_name = {line[0]: line for line in table[1:]}
    # "=cmd" gets OWASP's apostrophe in the CSV: a spreadsheet shows it, runs nothing.
    assert set(by_name) == {"赵德明", "孙红", "'" + FORMULA}
    assert by_name["赵德明"] == ["赵德明", "红旗村党支部", "第一党小组", "党员", "未绑定", zhao.binding_code, expires]
    assert by_name["孙红"][4:] == ["未绑定，绑定码已过期", "", ""]

    status, body = await download(town, f"/console/members.xlsx?branch={ids[HONGQI]}")
    assert status == 200
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(body)).active
    values = [[cell.value for cell in line] for line in sheet.iter_rows()]
    assert values[0][0] == "城关镇党委 党员名册（红旗村党支部）"
    assert values[2] == ["姓名", "组织", "党小组", "职务", "绑定状态", "绑定码", "绑定码有效期至"]
    names = [line[0] for line in values[3:]]
    assert sorted(names) == sorted(["李建国", "王秀英", "赵德明", "孙红", FORMULA])
    formula_cell = next(line[0] for line in sheet.iter_rows(min_row=4) if line[0].value == FORMULA)
    assert formula_cell.data_type == "s"
    assert not any(cell.data_type == "f" for line in sheet.iter_rows() for cell in line)
    assert next(line for line in values if line[0] == "王秀英")[4:] == ["已绑定", None, None]

    assert await audits(service, "export") == ["导出党员名册（csv，3 行）：红旗村党支部，未绑定",
                                               "导出党员名册（xlsx，5 行）：红旗村党支部"]


async def test_a_new_code_takes_the_form_token_and_is_audited(make_service, browsers, tmp_path):
    service, ids = await members_service(make_service, tmp_path)
    secretary = await signed_in(service, browsers, "hq-sec")
    sun = await member(service, "孙红")
    back = "/console/members?state=expired"

    status, _, _ = await secretary.post(f"/console/members/{sun.id}/code", back=back)
    assert status == 403
    assert (await member(service, "孙红")).binding_code == sun.binding_code

    csrf = await csrf_of(secretary)
    status, _, response = await secretary.post(f"/console/members/{sun.id}/code", csrf=csrf, back=back)
    assert status == 303 and location(response) == f"{back}#m{sun.id}"
    fresh = await member(service, "孙红")
    days = service.config(MembershipSettings).binding_code_days
    assert fresh.binding_code != sun.binding_code
    assert fresh.binding_code_expires_at == service.clock.now() + timedelta(days=days)
    status, page, _ = await secretary.get("/console/members?name=%E5%AD%99%E7%BA%A2")  # 孙红
    assert f'<span class="code">{fresh.binding_code}</span>' in row_of(page, "孙红")
    assert "换一个绑定码" in row_of(page, "孙红")
    assert await audits(service, "change") == [f"给孙红（{HONGQI}）发了新绑定码，{days} 天内有效"]
    # The code binds in chat.
    reply = await service.say("sun-1", f"绑定 孙红 {fresh.binding_code}")
    assert reply is not None and "绑定成功" in reply, reply

    # Bound now: a replayed form issues nothing; another branch's member is 404; a made-up address, a redirect
    # elsewhere, are not followed.
    status, _, response = await secretary.post(f"/console/members/{sun.id}/code", csrf=csrf, back="//evil.example/")
    assert status == 303 and location(response) == f"/console/members#m{sun.id}"
    assert (await member(service, "孙红")).binding_code is None
    zhou = await member(service, "周海")
    for member_id in (zhou.id, 999999):
        status, _, _ = await secretary.post(f"/console/members/{member_id}/code", csrf=csrf)
        assert status == 404
    assert (await member(service, "周海")).binding_code == zhou.binding_code
    assert len(await audits(service, "change")) == 1


# ---------------------------------------------------------------- the import


async def test_the_import_reports_every_row_before_writing_and_writes_on_confirmation(
        make_service, browsers, tmp_path):
    service, ids = await members_service(make_service, tmp_path)
    town = await signed_in(service, browsers, "town-1")
    csrf = await csrf_of(town)
    before = await count_members(service)
    roster = roster_xlsx([
        ["王秀英", "13800000002", HONGQI + "/第一党小组", "组织委员", "1975-07-01"],  # row 3: changes
        ["陈  明", "13800000011", HONGQI + "/第二党小组", "", "1990-07-01"],  # row 4: new, a new group
        ["吴  芳", "1380000", DONGFENG, "", ""],  # row 5: the phone is wrong
        ["马青山", "13900000001", QINGSHAN, "", ""],  # row 6: another township's
        ["@HYPERLINK", "", DONGFENG, "", ""],  # row 7: new, kept as written
        ["李建国", "13800000001", HONGQI, "书记", "1990-07-01"],  # row 8: unchanged
    ])

    # Without the form token: 403, nothing kept.
    status, _, _ = await upload(town, "花名册.xlsx", roster, None)
    assert status == 403
    assert not (tmp_path / "data" / UPLOAD_DIR).exists()

    status, _, response = await upload(town, "城关镇花名册.xlsx", roster, csrf)
    assert status == 303, _
    preview_path = location(response)
    assert preview_path.startswith("/console/members/import?file=")
    status, page, _ = await town.get(preview_path)
    assert status == 200, page
    assert "还没有导入任何内容" in text_of(page) and "《城关镇花名册.xlsx》" in page
    problems = text_of(re.search(r'<table class="records problems">(.*?)</table>', page, re.S).group(1))
    assert "第 5 行 手机号 “1380000”不是 11 位手机号（应以 1 开头）" in problems
    assert f"第 6 行 所属组织 “{QINGSHAN}”不在您管理的范围内，这一行不能导入。所属组织请从“{TOWN}”写起" in problems
    created = text_of(re.search(r'<table class="records created">(.*?)</table>', page, re.S).group(1))
    assert f"第 4 行 陈明 {HONGQI}/第二党小组 党员 13800000011" in created
    assert f"第 7 行 @HYPERLINK {DONGFENG} 党员" in created
    updated = text_of(re.search(r'<table class="records updated">(.*?)</table>', page, re.S).group(1))
    assert f"第 3 行 王秀英 {HONGQI}/第一党小组 职务：党员 → 委员；入党日期：1990-07-01 → 1975-07-01" in updated
    assert "第 8 行" not in updated and "第 8 行" not in created
    assert f"{HONGQI}/第二党小组" in page  # a new organization, listed
    # Errors: no plain 确认导入, only the deliberate choice of the valid rows.
    assert ">确认导入<" not in page and "只导入没有问题的 4 行" in page
    assert await count_members(service) == before and not await audits(service, "import")

    # Another login (even the same person's) does not find the upload.
    other = await signed_in(service, browsers, "town-1")
    status, other_page, _ = await other.get(preview_path)
    assert status == 200 and "这个上传已经过期或已经导入" in other_page and "陈明" not in other_page

    token, plan = hidden(page, "file"), hidden(page, "plan")
    # 确认导入 without the form token: 403 and nothing written.
    status, _, _ = await town.post("/console/members/import/confirm", file=token, plan=plan, rows="valid")
    assert status == 403
    assert await count_members(service) == before
    # Without choosing the valid rows, a file with problems imports nothing.
    status, page, _ = await town.post("/console/members/import/confirm", csrf=csrf, file=token, plan=plan)
    assert status == 409 and await count_members(service) == before

    # The roster changes after the preview: the confirmation shows the new report instead of writing.
    async with service.sessions() as session, session.begin():
        await session.execute(update(Member).where(Member.name == "王秀英").values(role=Role.COMMITTEE_MEMBER.value))
    status, page, _ = await town.post("/console/members/import/confirm", csrf=csrf, file=token, plan=plan,
                                      rows="valid")
    assert status == 409 and "有了变化" in page and "入党日期：1990-07-01 → 1975-07-01" in page
    assert "职务：党员" not in page
    assert await count_members(service) == before and not await audits(service, "import")

    status, _, response = await town.post("/console/members/import/confirm", csrf=csrf, file=token,
                                          plan=hidden(page, "plan"), rows="valid")
    assert status == 303, _
    status, done, _ = await town.get(location(response))
    assert status == 200
    assert "已导入《城关镇花名册.xlsx》：共 6 行，新增 2 人，更新 1 人，无变化 1 人" in text_of(done)
    assert "第 5 行 手机号" in done and "第 6 行 所属组织" in done
    assert await count_members(service) == before + 2
    chen = await member(service, "陈明")
    assert chen.binding_code and chen.phone == "13800000011"
    assert (await member(service, "@HYPERLINK")).org_id == ids[DONGFENG]
    assert (await member(service, "王秀英")).join_date.isoformat() == "1975-07-01"
    assert await audits(service, "import") == [
        "导入花名册《城关镇花名册.xlsx》：6 行，新增 2 人，更新 1 人，无变化 1 人，2 处问题所在的行没有导入"]
    # The file is gone; confirming again writes nothing.
    assert [path.suffix for path in (tmp_path / "data" / UPLOAD_DIR).iterdir()] == [".json"]
    status, page, _ = await town.post("/console/members/import/confirm", csrf=csrf, file=token, plan=plan,
                                      rows="valid")
    assert status == 404 and "已经过期或已经导入" in page
    assert len(await audits(service, "import")) == 1


async def test_a_secretary_imports_a_clean_csv_and_oversized_files_are_refused(make_service, browsers, tmp_path):
    service, ids = await members_service(make_service, tmp_path)
    secretary = await signed_in(service, browsers, "hq-sec")
    csrf = await csrf_of(secretary)
    before = await count_members(service)

    status, _, response = await upload(secretary, "new.csv", roster_csv([
        [FORMULA + "乙", "", HONGQI, "", ""], ["刘  洋", "13800000021", HONGQI + "/第一党小组", "", ""]]), csrf)
    assert status == 303
    status, page, _ = await secretary.get(location(response))
    assert ">确认导入<" in page and "只导入没有问题" not in page and "有问题的行" not in page
    status, _, response = await secretary.post("/console/members/import/confirm", csrf=csrf,
                                               file=hidden(page, "file"), plan=hidden(page, "plan"))
    assert status == 303
    assert await count_members(service) == before + 2
    assert (await member(service, FORMULA + "乙")).org_id == ids[HONGQI]
    status, page, _ = await secretary.get("/console/members?name=cmd%E4%B9%99")
    assert "<td>=cmd乙</td>" in page

    # Larger than 5 MB: the console's page says so, nothing is kept.
    status, page, _ = await upload(secretary, "big.xlsx", b"0" * (5 * 1024 * 1024 + 70 * 1024), csrf)
    assert status == 413 and "文件太大" in page and "5 MB" in page
    status, page, _ = await upload(secretary, "big.xlsx", b"0" * (5 * 1024 * 1024 + 10), csrf)
    assert status == 413 and "文件超过了 5 MB" in page
    # Old Excel files and files that are not what their names say: a sentence, nothing kept.
    status, page, _ = await upload(secretary, "old.xls", b"\xd0\xcf\x11\xe0", csrf)
    assert status == 400 and "另存为" in page
    status, _, response = await upload(secretary, "fake.xlsx", b"not a workbook", csrf)
    status, page, _ = await secretary.get(location(response))
    assert "打不开这个 Excel 文件" in page and ">确认导入<" not in page
    # A row for the township above the branch is outside a secretary's scope.
    status, _, response = await upload(secretary, "town.csv", roster_csv([["钱多", "", TOWN, "组织员", ""]]), csrf)
    status, page, _ = await secretary.get(location(response))
    assert f"“{TOWN}”不在您管理的范围内" in page and "只导入没有问题" not in page
    # An upload not confirmed within two hours is forgotten.
    status, _, response = await upload(secretary, "late.csv", roster_csv([["郑重", "", HONGQI, "", ""]]), csrf)
    status, page, _ = await secretary.get(location(response))
    token, plan = hidden(page, "file"), hidden(page, "plan")
    service.clock.advance(hours=2, minutes=1)
    status, page, _ = await secretary.get(location(response))
    assert "这个上传已经过期" in page and "郑重" not in page
    status, page, _ = await secretary.post("/console/members/import/confirm", csrf=csrf, file=token, plan=plan)
    assert status == 404 and "这个上传已经过期" in page
    assert await count_members(service) == before + 2
    assert len(await audits(service, "import")) == 1
