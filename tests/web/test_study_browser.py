"""The study item page in Debian's Chromium, at a phone's size and a desktop's: the member opens the weekly push's
template message, reads the item, taps 已学 (once is enough; the page says when it was recorded), answers the
check questions and sees the right answers — nothing scored. Another member's link to an item of another
branch is a 404."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from playwright.async_api import expect
from sqlalchemy import select

from bot.web.links import Subject
from bot.web.pages import LINKS
from handlers.study import jobs
from handlers.study.settings import StudySettings
from harness import hongqi_branch
from storage.models import Member, StudyDone, StudyItem

ITEMS = """
[[item]]
id = "tiaoli"
title = "党员每年学习多少学时"
summary = "按条例，党员每年集中学习培训一般不少于32个学时。年老体弱的党员，支部送学上门。"
minutes = 45
starts = 2026-11-23
ends = 2026-12-06
source = "中国共产党党员教育管理工作条例"
doc = "xuexi"

[[item.questions]]
question = "党员每年集中学习培训一般不少于多少学时？"
options = ["16个学时", "32个学时"]
answer = 2

[[item.questions]]
question = "年老体弱的党员，支部怎么安排学习？"
options = ["送学上门", "必须到村部"]
answer = 1

[[item]]
id = "dongfeng"
title = "东风村自己的学习"
summary = "只发给东风村党支部。"
minutes = 20
starts = 2026-11-23
ends = 2026-12-13
source = "中国共产党章程"
org = "示范县委/城关镇党委/东风村党支部"
"""


async def study_service(make_service, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "items.toml").write_text(ITEMS, encoding="utf-8")
    service = await make_service(study_dir=str(folder), wechat_templates={"default": "STUDY-TEMPLATE"})
    people = await hongqi_branch(service)
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc)
    service.clock.set(monday)
    await jobs.sweep(service.job_context(StudySettings))
    await service.deliver()
    return service, people


def pushed_link(service, openid: str) -> str:
    links = [body["url"] for body in service.emulator.api.templates(openid) if body["data"]["title"]["value"] == "本周学习"]
    assert len(links) == 1, service.emulator.api.templates(openid)
    return links[0]


async def test_the_member_reads_the_item_marks_it_done_and_sees_the_answers(make_service, tmp_path, phone, desktop):
    service, people = await study_service(make_service, tmp_path)
    link = pushed_link(service, people["王秀英"])

    assert (await phone.open(link)).status == 200
    main = phone.page.locator("main")
    shown = await main.inner_text()
    assert "党员每年学习多少学时" in shown and "45 分钟" in shown and "12月6日前学完就好" in shown, shown
    assert "正确答案" not in shown
    assert await phone.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await phone.shot("item", docs="study-item")

    await phone.page.get_by_role("button", name="已学").click()
    await expect(main.locator(".status.done")).to_contain_text("已学（")
    await expect(phone.page.get_by_role("button", name="已学")).to_have_count(0)
    # The check questions: one right, one wrong; both right answers are shown, no score.
    await phone.page.get_by_label("2 32个学时").check()
    await phone.page.get_by_label("2 必须到村部").check()
    await phone.page.get_by_role("button", name="看答案").click()
    answered = await main.inner_text()
    assert "正确答案：2 32个学时" in answered and "正确答案：1 送学上门" in answered, answered
    # No score of any kind: no "答对 1 题", no points, no percentage.
    assert not re.search(r"得分|积分|\d+\s*分(?!钟)|答对\s*\d|[%％]", answered), answered
    await phone.shot("answered", docs="study-answered")

    # The desktop shows the same item as done; the record is one row.
    assert (await desktop.open(link)).status == 200
    assert "已学（" in await desktop.page.locator("main").inner_text()
    assert await desktop.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await desktop.shot("done")
    async with service.sessions() as session:
        done = list((await session.execute(select(StudyDone))).scalars())
        wang = (await session.execute(select(Member.id).where(Member.name == "王秀英"))).scalar_one()
        dongfeng = (await session.execute(select(StudyItem.id).where(StudyItem.title == "东风村自己的学习"))).scalar_one()
    assert [row.member_id for row in done] == [wang]

    # A link signed for 王秀英 that names Dongfeng's own item: the page does not exist for her.
    token = service.app[LINKS].token(Subject(f"study:{dongfeng}", member_id=wang, openid=people["王秀英"]))
    assert (await phone.open(f"{service.url.rstrip('/')}/m/{token}")).status == 404
    assert phone.outside(service.url) == [] and desktop.outside(service.url) == []
