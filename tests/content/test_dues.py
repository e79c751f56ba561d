"""Dues computed for the asker (issue 17, item 3): the income as people say it (digits, Chinese numerals,
五千多, 三千来块, 七八千, 一年六万), the bracket it falls in, the monthly figure, an estimate marked as one, a
figure on a bracket's edge given both ways — and nothing computed for questions that only mention dues
(back payment, after a death, several people at once). Then the same through the webhook."""

from __future__ import annotations

import pytest

from content.amounts import amounts
from content.dues import compute


@pytest.mark.parametrize("said, low, high", [
    ("4500", 4500, 4500), ("4,500元", 4500, 4500), ("4千5", 4500, 4500), ("1.2万", 12000, 12000),
    ("四千五", 4500, 4500), ("一万二", 12000, 12000), ("两千八", 2800, 2800), ("三千零五十", 3050, 3050),
    ("七八千", 7000, 8000), ("三四千", 3000, 4000), ("五千多", 5000, 6000), ("一万零五百", 10500, 10500),
    # Two figures before 万 are a range too, not the second figure said exactly.
    ("五六万", 50000, 60000), ("七八万", 70000, 80000), ("千把块", 1000, 1000),
])
def test_amounts_as_people_say_them(said, low, high):
    found = amounts(f"一个月{said}")
    assert [(amount.low, amount.high) for amount in found] == [(low, high)]


@pytest.mark.parametrize("text", ["党费百分之一还是零点五", "交1.5%对吗", "2019年入党", "3会1课", "一个月交六十", "去了3次",
                                  "养了两百多头猪", "三十来个人", "承包了几百亩地",
                                  # A unit with no figure is part of a word: 老百姓 once paid dues on 100 元.
                                  "俺们老百姓也想知道", "千万别自己停交", "万一交不上咋办"])
def test_percentages_years_counts_and_small_figures_are_no_income(text):
    assert amounts(text) == []


# (question, situation, what the answer must state, what it must not)
CASES = [
    ("到手工资四千五 党费百分之一还是零点五", "wage", ["3000元以上到5000元", "交1%", "每月交45元"], ["1.5%"]),
    ("月工资刚好五千 党费算1%还是1.5%", "wage", ["交1%", "每月交50元"], ["交1.5%"]),
    # The audit's case: 五千多 is above 5,000, so 1.5%, not 1%.
    ("喂 那个我想问一哈 就是我一个月五千多块钱 这个党费交好多", "wage", ["交1.5%", "75元多一点", "估算"], ["交1%"]),
    ("工资一万二党费交百分之二吗", "wage", ["10000元以上", "交2%", "每月交240元"], []),
    ("工资三千整交零点五还是一", "wage", ["3000元及以下", "交0.5%", "每月交15元"], []),
    ("一个月挣七八千工资 党费交几个点", "wage", ["交1.5%", "105元到120元", "估算"], []),
    ("四千块钱工资 党费是整个四千按一个点算 还是分段算", "wage", ["整笔工资", "每月交40元"], []),
    ("退休金六千 党费一个月六十对不对", "retiree", ["5000元以上", "交1%", "每月交60元"], []),
    ("俺爹从煤矿退下来 每月退休金四千三 党费一个月交多少", "retiree", ["交0.5%", "每月交21.5元"], []),
    ("退休金五千多 党费多少", "retiree", ["交1%", "估算"], ["交0.5%"]),
    ("开小卖部一个月挣三千来块 党费交多少", "self", ["上一季度平均每月的纯收入", "不超过3000元交0.5%", "超过3000元交1%"], []),
    ("跑运输的 一年挣六万 党费咋交", "self", ["平均每月约5000元", "交1%", "估算"], []),
    # A large farm is self-employed: last quarter's average monthly net income on the wage brackets (art. 4),
    # with a figure or without one; the head count of the herd is no income.
    ("俺养了三百来只羊 上季度平均每月纯挣八千 党费交多少", "self", ["上一季度平均每月的纯收入", "交1.5%", "每月交120元"], []),
    ("俺开了个养鸡场 养了两千只鸡 党费按啥算", "self", ["上一季度平均每月的纯收入", "3000元及以下交0.5%", "10000元以上交2%"],
     ["0.2元"]),
    ("种地的党费交多少", "farmer", ["0.2元到1元", "支部"], ["本省", "省里"]),
    ("失业了没收入 党员df咋算", "low", ["0.2元"], []),
    # What the asker says they do not have is not their situation: a farmer with no pension, not a retiree.
    ("嗯 我爸是党员 莫得退休金 就在家种地 他党费一个月交好多", "farmer", ["0.2元到1元"], ["退休金（养老金）算"]),
    ("俺不是退休的 厂里上班 到手四千五 党费交多少", "wage", ["交1%", "每月交45元"], []),
    # A figure for a quarter (or half a year, or some counted months) is divided into months: the self-employed
    # pay on last quarter's average monthly net income (art. 4); taken as a month's, 27,000 would pay 540 元.
    ("跑货运的 上个季度刨去油钱净落两万七 党费每月该交多少", "self",
     ["一个季度两万七", "平均每月约9000元", "交1.5%", "每月约交135元", "估算"], ["交2%", "540元"]),
    ("俺包工程 半年下来挣了四万二 党费一个月交几个钱", "self", ["半年四万二", "平均每月约7000元", "每月约交105元"], []),
    # (按多少交 asks the amount: it holds 少交, paying less, which is another question's word.)
    ("我们两口子开了间早餐店 这四个月一共赚了两万 党费按多少交", "self", ["4个月两万", "平均每月约5000元", "交1%"],
     ["交2%"]),
    ("厂里一季度发了一万五工资 党费交多少", "wage", ["平均每月约5000元", "每月约交50元"], ["交2%"]),
    ("跑运输一年挣七八万 党费交多少", "self", ["一年七八万", "交1.5%", "估算"], []),
    # 开了家 / 开了间 / 开了个: a shop of one's own, whichever measure word.
    ("我开了家小超市 一个月纯挣六千 党费怎么交", "self", ["上一季度平均每月的纯收入", "交1.5%", "每月交90元"], []),
    # A few mu of land and a few animals are a farmer's own, not a business (规模种养 is): 种了五亩地 is farming,
    # 养了两头牛 is no 养殖 business; a herd of dozens still is.
    ("俺就种着五亩地 养了两头牛 党费一个月交几毛", "farmer", ["0.2元到1元"], ["上一季度"]),
    ("家里种了三亩田 党员党费交多少", "farmer", ["0.2元到1元"], ["上一季度"]),
    ("养了几十头牛 党费咋算", "self", ["上一季度平均每月的纯收入"], ["0.2元到1元"]),
    # So is a field of fifty mu or more: its monthly net income was once worked out as a wage.
    ("种了八十亩玉米 一个月平均纯挣六千 党费交多少", "self", ["上一季度平均每月的纯收入", "交1.5%", "每月交90元"], []),
    ("家里种了二十亩地 党费交多少", "farmer", ["0.2元到1元"], ["上一季度"]),
    ("退休金四千 党费一个季度交一回 交多少", "retiree", ["交0.5%", "每月交20元"], []),
    # A sum borrowed or spent beside the wage is no income: the wage is worked out, not the loan.
    ("去年盖房借了十万 现在打工一个月四千 党费交多少", "wage", ["交1%", "每月交40元"], ["十万"]),
    # A fisherman with his own boat, or one who says he earns no wage, pays on net income as the self-employed do
    # (art. 4), not as a wage earner.
    ("俺在海边打鱼 船是自家的 上季度平均每月纯收入三千八 党费交多少", "self", ["上一季度平均每月的纯收入", "交1%", "每月交38元"],
     ["税后工资"]),
    ("我不拿工资 自己做点茶叶买卖 一个月挣四千 党费咋算", "self", ["上一季度平均每月的纯收入", "每月交40元"], ["税后工资"]),
    # A quarter's takings net of costs, said well after the quarter is named, are still the quarter's: taken as a
    # month's, 九千 once paid 135 元 instead of 15.
    ("上个季度 三个月下来卖果子扣掉化肥钱人工 净挣九千 我不拿工资 党费一个月交多少", "self",
     ["一个季度九千", "平均每月约3000元", "交0.5%", "每月约交15元"], ["135元", "交1.5%"]),
]


@pytest.mark.parametrize("question, situation, states, never", CASES, ids=[case[0][:12] for case in CASES])
def test_the_answer_states_the_bracket_and_the_figure(question, situation, states, never):
    dues = compute(question)
    assert dues is not None and dues.situation == situation, dues
    for fact in states:
        assert fact in dues.text, (fact, dues.text)
    for wrong in never:
        assert wrong not in dues.text, (wrong, dues.text)


@pytest.mark.parametrize("question, kinds, never", [
    # A family's dues: each kind named gets its own rule, in the order named, and no other kind's.
    ("俺家仨党员 一个种地 一个领养老金 一个在厂里上班 党费是不是各算各的", ["0.2元到1元", "退休金（养老金）", "税后工资"],
     ["学生", "上一季度"]),
    ("俺屋头三个党员 俺在厂里拿工资 老头子退休了 闺女在上大学 这党费都是咋个交法", ["税后工资", "退休金（养老金）", "学生"],
     ["0.2元到1元，具体数"]),
    ("拿工资的和在家种地的 党费标准一样吗", ["税后工资", "0.2元到1元"], ["退休金"]),
    ("我在家种地 俺闺女在省城念大学 我们娘俩一个月党费加起来要交好多", ["0.2元到1元", "学生"], ["税后工资"]),
])
def test_several_kinds_of_member_get_each_kinds_rule(question, kinds, never):
    dues = compute(question)
    assert dues is not None and dues.situation == "several" and dues.entry_ids == ("dues-standard-overview",), dues
    positions = [dues.text.find(kind) for kind in kinds]
    assert -1 not in positions and positions == sorted(positions), (kinds, dues.text)
    for wrong in never:
        assert wrong not in dues.text, (wrong, dues.text)


@pytest.mark.parametrize("question", [
    # One member's story naming two kinds: the search answers (打零工 and 种地 are one farmer's, not a family's).
    "咱是农民党员平时打点零工没固定工资这党费一个月交多少合适",
    "我在厂里下岗了 现在没有工作 党费还要交吗",
    "党费交多少",  # no income, no situation: the general table
    "俺老头是党员 走了 他欠的党费要补吗",  # after a death: never a computed figure
    "出去打工三年没交党费 回来要补交多少",  # back payment
    "工资三千 退休金四千 党费交多少",  # two figures
    "党费交上去都用在哪了",
    "一个月工资五千 够不够生活",  # no dues question
    "跑车好几个月才挣了三万 党费交多少",  # months nobody counted: no monthly figure to work out
    "我开了家饭馆 忙得顾不上开会 请假行不行 党费我按时交",  # a situation and dues said in passing
    "老伴看病花了四五万 这个党费交多少",  # a sum spent is no income: once worked out as a wage of 四五万
    "给儿子娶媳妇花了二十来万 党费咋算",
    # Asking leave to pay a quarter at once is dues-advance's question, whatever wage is named; saying one pays
    # quarterly still asks the amount (below).
    "出去打工 工资四千 党费一个季度交一回中不中",
    # A disaster and the help after it: care's question. The value of what was lost is no income (it once came
    # back as 2,000 元 a month of dues).
    "发大水把俺家的鱼塘冲了 好几万的鱼都没了 俺是党员 党费能补助点不",
    "仓库着火烧了三万多的货 党费还按原来的交吗 能不能帮帮",
    "一场冰雹 十几万的大棚全毁了 党员遭了灾 党费这块有说法没",
    # A figure with no situation, not said as earnings: perhaps no income at all.
    "家里存了五万 党费交多少",
])
def test_nothing_is_computed_for_what_only_mentions_dues(question):
    assert compute(question) is None


async def test_a_dictated_dues_question_through_the_webhook(make_service):
    service = await make_service()
    reply = await service.say("u1", "喂 那个我想问一哈 就是我一个月到手五千多块钱 这个党费交好多")
    assert "交1.5%" in reply and "估算" in reply
    # The worked-out figure cites the article of the entry it stands for (wages: dues-salary-rates).
    assert reply.splitlines()[-1] == "来源：《关于中国共产党党费收缴、使用和管理的规定》第二条"
    voice = await service.emulator.voice("u1", "退休金四千三党费一个月交多少")
    assert "每月交21.5元" in voice.reply


def test_a_family_with_one_income_said_gets_that_figure_worked_out():
    # The income said is the one wage earner's (8,000 a month: 1.5%, 120 元), beside the farmers' rule.
    dues = compute("我跟老婆子在家种地 儿媳妇在镇小学教书 税后一个月八千 俺们三个都是党员 她一个月党费交好多 俺们两个种地的又交好多")
    assert dues is not None and dues.situation == "several" and dues.entry_ids[0] == "dues-salary-rates", dues
    assert "0.2元到1元" in dues.text and "交1.5%，每月交120元" in dues.text, dues.text
