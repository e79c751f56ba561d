"""Study (issue 16) through the webhook with the clock moved on: 学习 / 已学 / the check questions by number and
by voice, a member's own hours from an item and from an attended 党课, the weekly push at Monday 08:00 local
(not before, not twice, not to muted members, not to 送学上门 members), the one chaser, the item page — and
no text of the feature that ranks anyone. Plus `zhibu content check` on a broken study file."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from aiohttp import ClientSession
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main
from bot.web.links import Subject
from bot.web.pages import LINKS
from handlers.study import jobs
from handlers.study.settings import StudySettings
from harness import hongqi_branch
from storage.models import Attendance, Meeting, Member, StudyDone, StudyItem, StudyProfile

SHANGHAI = ZoneInfo("Asia/Shanghai")

ITEMS = """
[[item]]
id = "tiaoli"
title = "党员每年学习多少学时"
summary = "按条例，党员每年集中学习培训一般不少于32个学时。"
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
id = "zhen"
title = "党费怎么交"
summary = "农民党员每月交0.2元到1元，具体数由支部定。"
minutes = 10
starts = 2026-11-30
ends = 2026-12-13
source = "关于中国共产党党费收缴、使用和管理的规定"
org = "示范县委/城关镇党委"

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

# Words and figures that would rank or score members: none may appear in anything this feature says.
RANKING = re.compile(r"名次|排名|排行|第\s*\d+\s*名|积分|得分|分数|\d+(\.\d+)?\s*[%％]|百分之")

SEEN: list[str] = []  # every reply and push of the feature in this test run (the ranking scan reads it)


@pytest.fixture(autouse=True)
def no_ranking():
    SEEN.clear()
    yield
    ranked = [text for text in SEEN if RANKING.search(text)]
    assert not ranked, ranked


@pytest.fixture
async def service(make_service, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "test.toml").write_text(ITEMS, encoding="utf-8")
    return await make_service(study_dir=str(folder), wechat_templates={"default": "STUDY-TEMPLATE"})


def at(service, month: int, day: int, hour: int, minute: int = 0) -> None:
    service.clock.set(datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(timezone.utc))


async def say(service, openid: str, text: str, *, voice: bool = False) -> str | None:
    delivery = await (service.emulator.voice(openid, text) if voice else service.emulator.text(openid, text))
    if delivery.reply:
        SEEN.append(delivery.reply)
    return delivery.reply


async def sweep(service) -> dict[str, int]:
    done = await jobs.sweep(service.job_context(StudySettings))
    await service.deliver()
    return done


def study_pushes(service, openid: str) -> list[str]:
    """What the member got from the feature: chat texts, and template messages as 【title】content (链接)."""
    texts = [text for text in service.pushed(openid) if "学习" in text[:8]]
    for body in service.emulator.api.templates(openid):
        fields = {name: value["value"] for name, value in body["data"].items()}
        if "学习" in fields.get("title", ""):
            texts.append(f"【{fields['title']}】{fields.get('content', '')}" + (" 链接" if body.get("url") else ""))
    SEEN.extend(texts)
    return texts


async def member_id(service, name: str) -> int:
    async with service.sessions() as session:
        return (await session.execute(select(Member.id).where(Member.name == name))).scalar_one()


async def test_study_done_and_the_questions_by_number_and_by_voice(service):
    people = await hongqi_branch(service)
    member = people["王秀英"]
    shown = await say(service, member, "学习")
    assert shown.startswith("【学习】党员每年学习多少学时\n按条例，党员每年集中学习培训一般不少于32个学时。\n约 45 分钟。")
    assert "相关资料：《党员学习：学时、冬春训和集体学习》" in shown
    assert shown.endswith("学完回复 已学，再答 2 道小题（答完告诉您正确答案，不计分）。")
    assert "东风村" not in shown  # another branch's item does not reach Hongqi

    asked = await say(service, member, "已学")
    assert asked == ("已记下：学完“党员每年学习多少学时”，约 45 分钟。\n\n"
                     "第1题（共2题，回复数字；回复 取消 跳过）：党员每年集中学习培训一般不少于多少学时？\n1 16个学时\n2 32个学时")
    assert await say(service, member, "3") == asked.split("\n\n", 1)[1]  # no such option: asked again
    second = await say(service, member, "1")
    assert second == ("正确答案是 2 32个学时。\n"
                      "第2题（共2题，回复数字；回复 取消 跳过）：年老体弱的党员，支部怎么安排学习？\n1 送学上门\n2 必须到村部")
    assert await say(service, member, "1", voice=True) == \
        "答对了。正确答案是 1 送学上门。\n小题答完了，谢谢！答题不计分，只是帮您回顾一下。"
    async with service.sessions() as session:
        rows = list((await session.execute(select(StudyDone))).scalars())
    assert [row.member_id for row in rows] == [await member_id(service, "王秀英")]

    # A second 已学 changes nothing; 学习 says everything current is done.
    assert (await say(service, member, "已学")).startswith("这一项您已经学过了（11月24日记下的）。")
    assert (await say(service, member, "学习")).startswith("这段时间的学习内容您都学过了")
    # 答题 again, by voice from the start.
    again = await say(service, people["张卫东"], "答题", voice=True)
    assert again.startswith("“党员每年学习多少学时”的小题：\n\n第1题")
    assert (await say(service, people["张卫东"], "2")).startswith("答对了。正确答案是 2 32个学时。")
    assert await say(service, people["张卫东"], "取消") == "已取消。"

    # Voice: 已学 spoken.
    assert (await say(service, people["刘小梅"], "已学", voice=True)).startswith("已记下：学完“党员每年学习多少学时”")
    async with service.sessions() as session:
        assert len(list((await session.execute(select(StudyDone))).scalars())) == 2


async def test_my_hours_add_up_from_an_item_and_an_attended_party_lecture(service):
    people = await hongqi_branch(service)
    member, secretary = people["王秀英"], people["李建国"]
    assert await say(service, member, "我的学习") == (
        "2026年您的学习记录（只有您自己看得到）：\n今年还没有记下学时。\n合计 0 学时；一年的要求是 32 学时。\n"
        "还差 32 学时，按自己的节奏来就好。\n支部集中学习、冬春训等没记在这里的，以支部的登记为准。")
    await say(service, member, "已学")
    await say(service, member, "取消")
    # A 党课 the member checked in to, and a 支委会 (which does not count).
    async with service.sessions() as session, session.begin():
        wang = await member_id(service, "王秀英")
        li = await member_id(service, "李建国")
        branch_id = (await session.get(Member, wang)).org_id
        for code, kind in (("100001", "党课"), ("100002", "支委会")):
            meeting = Meeting(org_id=branch_id, kind=kind, topic="学习条例", place="村部", starts_at=service.clock.now(),
                              called_by=li, checkin_code=code, created_at=service.clock.now(),
                              updated_at=service.clock.now())
            session.add(meeting)
            await session.flush()
            session.add(Attendance(meeting_id=meeting.id, member_id=wang, checked_in_at=service.clock.now(),
                                   method="code"))
    mine = await say(service, member, "我的学习")
    assert "学完的学习内容 1 项，约 1 学时\n参加党课 1 次，2 学时\n合计 3 学时；一年的要求是 32 学时。\n还差 29 学时" in mine
    assert "支委会" not in mine
    # A secretary's requirement is the higher figure; nobody else's figures appear.
    theirs = await say(service, secretary, "我的学习")
    assert "一年的要求是 56 学时" in theirs and "王秀英" not in theirs
    assert "今年还没有记下学时" in theirs


async def test_the_weekly_push_on_monday_at_eight_once_and_not_to_muted_or_at_home_members(service):
    people = await hongqi_branch(service)
    assert await say(service, people["张卫东"], "关闭学习提醒") == \
        "好的，每周的学习内容不再推送给您。想看时回复 学习；想恢复回复 打开学习提醒。"
    assert (await say(service, people["陈志强"], "关闭提醒")) is not None
    async with service.sessions() as session, session.begin():
        session.add(StudyProfile(member_id=await member_id(service, "刘小梅"), at_home=True,
                                 updated_at=service.clock.now()))

    at(service, 11, 29, 8, 0)  # Sunday
    assert (await sweep(service))["pushed"] == 0
    at(service, 11, 30, 7, 45)  # Monday, before 08:00
    assert (await sweep(service))["pushed"] == 0
    at(service, 11, 30, 8, 0)
    await sweep(service)
    # Both current items reach Hongqi (its own township published the second); a template message each.
    for name in ("王秀英", "李建国"):
        pushes = study_pushes(service, people[name])
        assert len(pushes) == 2 and set(pushes) == {"【本周学习】党员每年学习多少学时 链接", "【本周学习】党费怎么交 链接"}
    for nobody in ("张卫东", "陈志强", "刘小梅"):  # 关闭学习提醒, 关闭提醒, 送学上门
        assert study_pushes(service, people[nobody]) == [], nobody
    # The sweep runs every 15 minutes and again next Monday: nothing twice.
    at(service, 11, 30, 8, 15)
    assert (await sweep(service))["pushed"] == 0
    at(service, 12, 7, 8, 0)  # next Monday: both items were pushed already (and one has ended)
    assert (await sweep(service))["pushed"] == 0
    assert len(study_pushes(service, people["王秀英"])) == 2


async def test_the_chaser_goes_once_to_those_who_have_not_done_it(service):
    people = await hongqi_branch(service)
    await say(service, people["王秀英"], "已学")
    await say(service, people["王秀英"], "取消")
    async with service.sessions() as session, session.begin():
        session.add(StudyProfile(member_id=await member_id(service, "刘小梅"), at_home=True,
                                 updated_at=service.clock.now()))
    # 党员每年学习多少学时 ends on 6 December: the chaser goes from 3 December, 08:00.
    at(service, 12, 2, 9, 0)
    assert (await sweep(service))["chased"] == 0
    at(service, 12, 3, 8, 0)
    assert (await sweep(service))["chased"] == 3  # 李建国, 张卫东, 陈志强
    assert study_pushes(service, people["李建国"]) == ["【学习提醒】党员每年学习多少学时 链接"]
    assert study_pushes(service, people["王秀英"]) == []  # done it
    assert study_pushes(service, people["刘小梅"]) == []  # 送学上门
    at(service, 12, 5, 8, 0)
    assert (await sweep(service))["chased"] == 0  # never more than once
    assert len(study_pushes(service, people["李建国"])) == 1


async def test_the_item_page_marks_it_done_once_and_shows_the_answers(service):
    people = await hongqi_branch(service)
    at(service, 11, 30, 8, 0)
    await sweep(service)
    body = next(body for body in service.emulator.api.templates(people["王秀英"])
                if body["data"]["content"]["value"] == "党员每年学习多少学时")
    async with ClientSession() as client:
        async with client.get(body["url"]) as response:
            page = await response.text()
            assert response.status == 200 and "党员每年学习多少学时" in page and ">已学</button>" in page
            assert "正确答案" not in page
        for _ in range(2):  # the button twice: one record
            async with client.post(body["url"], data={"action": "done"}) as response:
                assert response.status == 200 and "已学（" in await response.text()
        async with client.post(body["url"], data={"action": "answer", "q0": "1", "q1": "1"}) as response:
            answered = await response.text()
            assert "正确答案：2 32个学时" in answered and "正确答案：1 送学上门" in answered
        # What the page shows (its <main>; the shared stylesheet's widths are no figures about anyone).
        SEEN.extend(re.search(r"<main>.*</main>", html, re.S).group(0) for html in (page, answered))
        # A link signed for a Hongqi member naming Dongfeng's own item shows nothing.
        async with service.sessions() as session:
            dongfeng = (await session.execute(select(StudyItem).where(StudyItem.title == "东风村自己的学习"))).scalar_one()
        token = service.app[LINKS].token(Subject(f"study:{dongfeng.id}", member_id=await member_id(service, "王秀英"),
                                                 openid=people["王秀英"]))
        async with client.get(f"{service.url.rstrip('/')}/m/{token}") as response:
            assert response.status == 404
    async with service.sessions() as session:
        rows = list((await session.execute(select(StudyDone))).scalars())
    assert len(rows) == 1
    # In chat, 已学 now marks the next current item (the page's one is done).
    assert (await say(service, people["王秀英"], "已学")) == "已记下：学完“党费怎么交”，约 10 分钟。"


def test_content_check_names_a_broken_study_file(tmp_path, monkeypatch):
    folder = tmp_path / "study"
    folder.mkdir()
    broken = ITEMS.replace("answer = 2\n\n[[item.questions]]", "answer = 5\n\n[[item.questions]]", 1)
    broken = broken.replace("ends = 2026-12-13\nsource = \"关于", "ends = 2026-11-01\nsource = \"关于", 1)
    broken = broken.replace('title = "东风村自己的学习"\n', "", 1)
    (folder / "bad.toml").write_text(broken, encoding="utf-8")
    result = CliRunner().invoke(main, ["content", "check"], env={"ZHIBU_STUDY_DIR": str(folder)})
    assert result.exit_code == 1, result.output
    assert "item 'tiaoli': question 1: answer 5 is not one of the options 1–2" in result.output
    assert "item 'zhen': the period ends (2026-11-01) before it starts (2026-11-30)" in result.output
    assert "item 'dongfeng': missing 'title'" in result.output
    assert "bad.toml:" in result.output
    good = CliRunner().invoke(main, ["content", "check"])
    assert good.exit_code == 0 and "项学习内容" in good.output


def test_the_ranking_scan_would_catch_a_ranking():
    # The autouse fixture above scans every reply, push and page of the feature in each test with this pattern.
    for ranked in ("您本月排名第3", "第1名：王秀英", "学习积分 120", "完成率 80%", "王秀英 75.5％"):
        assert RANKING.search(ranked), ranked
    for plain in ("合计 3 学时；一年的要求是 32 学时。", "约 45 分钟。", "党员每月交0.2元到1元"):
        assert not RANKING.search(plain), plain
