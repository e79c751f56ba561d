"""Questions as members really say them (issue 17, items 4 and 5), on the shipped content: fillers around a
dictated question, figures written into terms (3会1课), several questions in one message (the first answered,
the rest offered), near misses that stay declined, and a party question the content does not cover told so
plainly and offered to the secretary — not called "not understood". Then the replies through the webhook."""

from __future__ import annotations

import pytest

from content.search import ANSWERED, OUT_OF_SCOPE, holder_for, split_questions, without_fillers


@pytest.fixture(scope="module")
def index():
    return holder_for(None).index


def test_fillers_are_dropped_but_never_the_whole_question():
    assert without_fillers("喂 那个我想问一哈 就是这个三会一课是个啥子东西嘛") == "这个三会一课是个啥子东西嘛"
    assert without_fillers("你好") == "你好"


def test_a_message_with_two_questions_splits_where_the_second_begins():
    assert split_questions("我想问两个事 一个是党费咋交 还有就是开会请假找谁") == ["我想问两个事 一个是党费咋交", "开会请假找谁"]
    assert split_questions("党员还有啥义务") == ["党员还有啥义务"]


@pytest.mark.parametrize("question, entry", [
    ("喂 那个我想问一哈 就是这个三会一课是个啥子东西嘛", "meeting-sanhui-yike-what"),
    ("3会1课都有哪些会", "meeting-sanhui-yike-what"),
    ("那个 嗯 我在外地打工 那个组织生活咋参加呢 就是回不去", "member-floating-life"),
])
def test_dictated_questions_find_their_entry(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


def test_the_first_question_is_answered_and_the_second_offered(index):
    result = index.search("开会签到怎么签 另外党费在哪交")
    assert result.status == ANSWERED and result.entry_id == "bot-checkin"
    assert [(other.id, other.question) for other in result.others] == [("dues-how-pay", "党费在哪交")]


@pytest.mark.parametrize("question", ["支部书记一个月工资多少", "党员能优先评低保不", "帮我写个请假条给厂里",
                                      "党员的孩子考公务员政审看啥", "村里的路灯坏了找谁修", "你帮我交个电费 跟交党费一样",
                                      "党员看病能多报销点不", "主题党日那天会不会下雨", "共产党是哪一年成立的",
                                      "你直接给我写一篇年终总结", "村两委干部退了以后有没有退休补贴"])
def test_near_misses_stay_declined_and_are_not_called_ours(index, question):
    result = index.search(question)
    assert result.status == OUT_OF_SCOPE and not result.in_domain, result


@pytest.mark.parametrize("question", ["征地补偿款怎么分要走四议两公开吗", "入党志愿书能让别人代写吗",
                                      "我舅舅犯过事会影响我入党政审吗", "今天下雨支委只来了两个 这个支委会还能开不",
                                      "我在外地上班让媳妇帮我交党费可以吧"])
def test_words_a_near_miss_is_made_of_do_not_decline_a_real_question(index, question):
    assert index.search(question).status != OUT_OF_SCOPE, question


def test_a_party_question_the_content_does_not_cover_is_marked_as_ours(index):
    result = index.search("支部的公章丢了咋补办")
    assert result.status == OUT_OF_SCOPE and result.in_domain


async def test_the_replies_through_the_webhook(make_service):
    service = await make_service()
    await service.bind("m1", "王秀英")
    two = await service.say("m1", "开会签到怎么签 另外党费在哪交")
    assert two.endswith("您还问了“党费在哪交”，回复 1 看这一条。")
    second = await service.say("m1", "1")
    assert "党费" in second and second.splitlines()[-1].startswith("来源：")
    # A part whose answer is worked out keeps its figure when picked.
    await service.say("m1", "开会签到怎么签 另外我一个月到手四千五 党费交多少")
    assert "每月交45元" in await service.say("m1", "1")
    unknown = await service.say("m1", "支部的公章丢了咋补办")
    assert unknown == "这个问题我还没有准确的答案，不想说错了误导您。\n需要的话，回复 1 把问题转给支部书记。"
    assert "没有听懂" not in unknown
    declined = await service.say("m1", "支部书记一个月工资多少")
    assert declined.startswith("没有听懂“支部书记一个月工资多少”")
    # Someone who has not bound is pointed to the secretary, with nothing to forward through.
    assert await service.say("stranger", "支部的公章丢了咋补办") == "这个问题我还没有准确的答案，不想说错了误导您。可以问问支部书记。"
