"""Study for the branch's leaders (issue 16), through the webhook with the clock moved on: the secretary's 学习情况
(who has not done the current items, in roster order, no figure per person), 送学上门 marked and unmarked in chat
(those members get no push and no chaser; a member's question about 送学上门 still reaches the policy answers),
the monthly 送学上门 list to the secretary (once a month), the study menu buttons, and `zhibu content reload`
reading the study files again (a broken edit keeps what was loaded)."""

from __future__ import annotations

from bot.app import RELOADERS
from harness import hongqi_branch
from test_study import ITEMS, SEEN, at, no_ranking, say, service, study_pushes, sweep  # noqa: F401 (fixtures)

HONGQI_NAMES = ["李建国", "张卫东", "王秀英", "刘小梅", "陈志强", "赵德明"]


def roster(*names: str) -> str:
    """Names as the roster lists them (by name), whatever order the test gives them in."""
    return "、".join(sorted(names))


async def test_the_secretarys_summary_lists_who_has_not_done_it_in_roster_order(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    at(service, 12, 1, 10, 0)  # both of Hongqi's items are current
    assert await say(service, secretary, "送学上门 刘小梅") == \
        "已把刘小梅标为送学上门：不再给刘小梅推送学习内容和提醒，每月初的送学名单里会有刘小梅。"
    assert await say(service, secretary, "送学上门 刘小梅") == "刘小梅已经是送学上门了。"
    await say(service, people["王秀英"], "已学")
    await say(service, people["王秀英"], "取消")
    await say(service, people["陈志强"], "已学")

    summary = await say(service, secretary, "学习情况")
    assert summary == "\n".join([
        "红旗村党支部学习情况（只发给您，帮着提醒用）：",
        "“党员每年学习多少学时”（12月6日前）：已学 2 人。",
        "还没学的：" + roster("李建国", "张卫东"),
        "“党费怎么交”（12月13日前）：已学 0 人。",
        "还没学的：" + roster("李建国", "张卫东", "王秀英", "陈志强"),
        "送学上门的 1 人（不推送、不催）：刘小梅。回复 送学上门 看要带去的内容。",
        "没绑定微信的 1 人（收不到推送，方便时当面说一声）：赵德明",
        "提醒时说一句“有空看看就行”就好；回复 学习 可以先看看内容。",
    ])
    # By voice, the same.
    assert await say(service, secretary, "学习情况", voice=True) == summary
    # Dongfeng's own item is no business of Hongqi's.
    assert "东风村" not in summary

    # A member asks for it: refused, and their question about 送学上门 goes to the policy answers.
    assert await say(service, people["王秀英"], "学习情况") == "这项功能只有书记、副书记可以使用。"
    asked = await say(service, people["王秀英"], "送学上门是什么意思")
    assert "这项功能只有" not in asked and "已把" not in asked
    # A name that is not the branch's.
    assert await say(service, secretary, "送学上门 孙悟空") == "本支部党员里没有“孙悟空”，请核对后重新回复姓名。"


async def test_at_home_members_get_no_push_until_unmarked_and_the_list_goes_monthly(service):
    people = await hongqi_branch(service)
    secretary = people["李建国"]
    assert (await say(service, secretary, "送学上门")).startswith("本支部还没有送学上门的党员。")
    await say(service, secretary, "送学上门 王秀英")
    await say(service, secretary, "送学上门 赵德明")
    listing = await say(service, secretary, "送学上门")
    assert listing.startswith(f"本支部送学上门的党员（2 人）：{roster('王秀英', '赵德明')}\n这个月可以带去的学习内容：\n"
                              "· 党员每年学习多少学时（约 45 分钟，12月6日前）：按条例，党员每年集中学习培训一般不少于32个学时。\n"
                              "· 党费怎么交（约 10 分钟，12月13日前）：")
    assert listing.endswith("加人：送学上门 姓名；去掉：取消送学上门 姓名")

    # Monday 30 November, 08:00: the weekly push skips the at-home members.
    at(service, 11, 30, 8, 0)
    assert (await sweep(service))["at_home_lists"] == 0  # the list is for the month's first week
    assert study_pushes(service, people["王秀英"]) == []
    assert len(study_pushes(service, people["张卫东"])) == 2

    # 1 December: the monthly list from the push time on, to the secretary only, once.
    at(service, 12, 1, 7, 45)
    assert (await sweep(service))["at_home_lists"] == 0
    at(service, 12, 1, 8, 0)
    assert (await sweep(service))["at_home_lists"] == 1
    sent = [body for body in service.emulator.api.templates(secretary)
            if body["data"]["title"]["value"] == "送学上门名单"]
    assert len(sent) == 1 and sent[0]["data"]["content"]["value"] == roster("王秀英", "赵德明")
    assert all(body["data"].get("title", {}).get("value") != "送学上门名单"
               for openid in people.values() if openid != secretary for body in service.emulator.api.templates(openid))
    at(service, 12, 20, 9, 0)
    assert (await sweep(service))["at_home_lists"] == 0

    # Unmarked: the next item's push reaches 王秀英 again (the items of December were pushed already).
    assert await say(service, secretary, "取消送学上门 王秀英") == \
        "已取消王秀英的送学上门，以后每周的学习内容照常发给王秀英（王秀英自己关了提醒的除外）。"
    assert await say(service, secretary, "取消送学上门 王秀英") == "王秀英不是送学上门的党员，不用取消。"
    at(service, 12, 3, 8, 0)
    await sweep(service)  # the chaser of the item ending 6 December: now to 王秀英 too
    assert study_pushes(service, people["王秀英"]) == ["【学习提醒】党员每年学习多少学时 链接"]
    # January: a new month, a new list (赵德明 is still at home).
    at(service, 1, 1, 8, 0)
    service.clock.set(service.clock.now().replace(year=2027))
    assert (await sweep(service))["at_home_lists"] == 1


async def test_the_menu_buttons_show_this_weeks_item_and_my_hours(service):
    people = await hongqi_branch(service)
    shown = await service.emulator.click(people["王秀英"], "STUDY")
    assert shown.reply.startswith("【学习】党员每年学习多少学时")
    mine = await service.emulator.click(people["王秀英"], "STUDY_MINE")
    assert mine.reply.startswith("2026年您的学习记录（只有您自己看得到）：")
    SEEN.extend([shown.reply, mine.reply])


async def test_content_reload_reads_the_study_files_again_and_a_broken_edit_keeps_them(service, tmp_path):
    people = await hongqi_branch(service)
    study_file = tmp_path / "study" / "test.toml"
    at(service, 12, 8, 10, 0)  # only 党费怎么交 is current for Hongqi
    assert (await say(service, people["王秀英"], "学习")).startswith("【学习】党费怎么交")

    async def reload() -> None:
        for what, reloader in service.app[RELOADERS]:
            if what == "study items":
                await reloader()

    study_file.write_text(ITEMS.replace('title = "党费怎么交"', 'title = "党费怎么交（修订）"'), encoding="utf-8")
    await reload()
    assert (await say(service, people["王秀英"], "学习")).startswith("【学习】党费怎么交（修订）")
    # A broken edit (an answer outside the options) is refused: the last good items stay.
    study_file.write_text(ITEMS.replace("answer = 2", "answer = 9", 1), encoding="utf-8")
    await reload()
    assert (await say(service, people["王秀英"], "学习")).startswith("【学习】党费怎么交（修订）")
