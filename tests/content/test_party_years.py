"""党龄, the 50-year medal and 转正 worked out from the date a member gives (issue 17, item 3): from 转正 when they
say 转正, from a year after 入党 when they say 入党 (and the answer says it assumed so), a missing month said to
be counted by the year, a date already passed told as passed. Questions without a date go to the search."""

from __future__ import annotations

from datetime import date

import pytest

from content.party_years import compute

TODAY = date(2026, 12, 6)


@pytest.mark.parametrize("question, entry, states", [
    ("我76年转正的 党龄多少年了", "join-party-age", ["到今年党龄是50年", "按年份算"]),
    ("我是一九八零年七月入党的 党龄多少年", "join-party-age", ["1981年7月转正", "党龄是45年"]),
    ("我1990年入党 今年党龄多少", "join-party-age", ["1991年转正", "党龄是35年"]),
    ("俺爹1975年入的党 能拿50年纪念章不", "member-50-years-medal", ["1976年转正", "已经够50年了", "不用自己申请"]),
    ("俺爷爷1977年3月转正 今年能领光荣在党五十年纪念章吗", "member-50-years-medal", ["党龄是49年", "还差1年", "2027年满50年"]),
    ("我今年3月入党的 什么时候能转正", "join-probation", ["2027年3月满", "支部党员大会讨论", "最长一年"]),
    ("我去年7月成了预备党员 啥时候转正", "join-probation", ["2026年7月已经满了", "问问支部书记"]),
    # The date is when the member joined; 转正 came a year later, not on that date (the answer said 23 years).
    ("俺是二零零三年五月支部大会通过的预备党员 第二年按时转正 到今年党龄多少年", "join-party-age",
     ["2004年5月转正", "党龄是22年"]),
    ("转正是2004年5月 我党龄多少年", "join-party-age", ["党龄是22年"]),
    # 转正 already came ("转正的") and the question asks when the medal comes: the date is the 转正 date, not
    # a 预备 date whose 转正 is still to come (the answer said "1978年成为预备党员").
    ("俺老头子是七八年转正的 他啥时候才能领那个五十年的纪念章", "member-50-years-medal", ["党龄是48年", "2028年满50年"]),
])
def test_worked_out_from_the_date_given(question, entry, states):
    computed = compute(question, TODAY)
    assert computed is not None and computed.entry_ids[0] == entry, computed
    for fact in states:
        assert fact in computed.text, (fact, computed.text)


@pytest.mark.parametrize("question, states, never", [
    # A birth date instead of an age: the month (or year) the asker turns 18 and may apply (党章 art. 1).
    ("我外孙女2010年8月出生的 她哪一年可以写入党申请", ["2028年8月满18岁", "现在还不能递"], ["已经年满"]),
    ("俺侄子是08年生的 现在能不能申请入党", ["2008年出生", "今年满18岁", "过了18岁生日"], ["现在还不能递"]),
    ("我1998年生的 可以申请入党吗", ["已经年满18岁", "可以递交入党申请书"], ["还不能"]),
    ("儿子2008年11月生人 够不够年龄申请入党", ["已经年满18岁"], ["还不能"]),
    # A day with the month: in the month one turns 18, the day decides (TODAY is 6 December 2026).
    ("外甥是2008年12月19号出生的 能不能写入党申请书", ["2026年12月19日满18岁", "现在还不能递"], ["已经年满"]),
    ("二〇〇八年十二月三日生的 可以交申请书了吗", ["2008年12月3日出生", "已经年满18岁"], ["还不能"]),
    ("我2008年3月5日出生 能入党吗", ["2008年3月出生", "已经年满18岁"], ["还不能"]),
    # A birthday said as 生日, and 能交不 after the 申请书.
    ("俺娃是零八年十二月二十号的生日 下礼拜想把申请书交上去 能交不", ["2026年12月20日满18岁", "现在还不能递"], ["已经年满"]),
])
def test_a_birth_date_tells_when_one_may_apply(question, states, never):
    computed = compute(question, TODAY)
    assert computed is not None and computed.entry_ids == ("join-who-can-apply",), computed
    assert computed.article == "第一条" and "年满18岁" in computed.text
    for fact in states:
        assert fact in computed.text, (fact, computed.text)
    for wrong in never:
        assert wrong not in computed.text, (wrong, computed.text)


@pytest.mark.parametrize("question", ["党龄怎么算", "今年党龄多少", "2019年入党 党费交多少", "1976年 我们村修了路",
                                      "预备党员怎么转正",
                                      # a birth date, but the question is about something else
                                      "我1995年生的 入党申请书要手写吗", "2003年出生 入党积极分子要写思想汇报吗",
                                      "俺是1958年生人 申请低保可以吗"])
def test_no_date_or_no_such_question_goes_to_the_search(question):
    assert compute(question, TODAY) is None


async def test_through_the_webhook_with_the_service_clock(make_service):
    service = await make_service()
    reply = await service.say("u1", "俺爹1975年入的党 今年能拿光荣在党50年纪念章不")
    assert "已经够50年了" in reply and reply.splitlines()[-1] == "来源：《“光荣在党50年”纪念章颁发管理办法》"
