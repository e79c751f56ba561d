"""Party dues computed for the asker: a dues question that states an income or a situation ("到手四千五",
"退休金六千", "种地的", "开小卖部一个月挣三千来块") gets the bracket and the monthly amount (4,500 × 1% = 45 元),
not the whole table to work out alone.

The figures are those of 《关于中国共产党党费收缴、使用和管理的规定》(2008): monthly, on income after tax —
wages 0.5% up to 3,000 yuan, 1% above 3,000 up to 5,000, 1.5% above 5,000 up to 10,000, 2% above 10,000;
retirement pay 0.5% up to 5,000, 1% above; farmers 0.2–1 yuan a month (the rules give only the range);
students, the unemployed and those on 低保 0.2 yuan; members without a wage (shops, transport, delivery, large
farms) on the wage brackets, from last quarter's average monthly net income (art. 4). The whole income falls in
one bracket: 4,500 pays 1% of 4,500, not a sum of slices.

Nothing is computed when the question is about something else that mentions dues (back payment, after a death,
how the money is used), when it names several people's situations, or when it gives neither an income nor a
situation with a fixed figure: the search answers those. A figure said loosely (五千多, 三千来块, 七八千) is
computed as an estimate and says so; one that could fall in either of two brackets gives both. A figure said
for a year, a quarter or a counted number of months is divided into months (an estimate too); one for months
nobody counted (几个月) is not computed. Without a figure, a situation is worked out only when the question asks
what to pay. A few mu of land or a few animals (种几亩地, 养几只鸡) are a farmer's own, not a large farm: only a
herd said in tens or more, a field of fifty mu or more, or land taken in from others (流转) is self-employment.
This module imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from content.amounts import Amount, amounts
from content.computed import Computed

SOURCE = "关于中国共产党党费收缴、使用和管理的规定"

WAGE_BRACKETS = ((3000, 0.005), (5000, 0.01), (10000, 0.015), (float("inf"), 0.02))
RETIREE_BRACKETS = ((5000, 0.005), (float("inf"), 0.01))

_DUES = re.compile(r"党费|党废|当费|档费|挡费|党fei|(?<![a-z])df(?![a-z])|(党员|入了党).{0,12}交(多少|几|好多)|"
                   r"交(零点|0\.|百分之|几个点)")
# Questions about dues that are not "how much for this income": the search answers them.
_ELSEWHERE = re.compile(r"补交|补缴|补齐|补上|欠|去世|走了|过世|死了|不在了|用途|用在|用到|花在|管理|特殊党费|(?<!多)少交|不交|没交|"
                        r"收据|网上|手机上|微信上|线上|多交|退还|免交|减交|谁收|交给谁|哪里交|在哪交|"
                        # A disaster and the help after it (台风把网箱刮没了…党费能补助吗): care's question, not an income.
                        r"受灾|遭灾|遭了灾|灾害|台风|冰雹|洪水|水灾|火灾|地震|失火|补助")
# Asking leave to pay several months at once (一个季度交一回 中不中, 能提前交吗): dues-advance's question, whatever wage
# is named. Saying one pays quarterly (一个季度交一回 交多少) asks the amount; asking whether dues are monthly or
# quarterly (一个月交一回还是一个季度交一回) is dues-monthly's.
SEVERAL_MONTHS_AT_ONCE = re.compile(r"(季度|几个月)[^，。,；;]{0,3}交一(回|次)[^，。,；;]{0,4}(中不中|行不行|行吗|可以吗|可不可以|"
                                    r"成不成|行不)|(能不能|可不可以|可以|能)[^，。,；;]{0,6}(季度|几个月)[^，。,；;]{0,3}"
                                    r"交一(回|次)|预交|提前交")
# Whether a probationary member pays yet ("预备党员…乡里还没批…党费现在就得交吗"): dues-probationary's question,
# whatever wage is named.
_PROBATION_STARTS = re.compile(r"预备[^。]{0,40}(现在就|就得|就要|要不要|用不用|开始|从啥时候|从什么时候|从哪个?月|哪个月)"
                               r"[^。，,]{0,4}交")
# A few (几, 两三, 十来): a few hens or a few mu of land are a farmer's own, not a business (养几只鸡, 种几亩地);
# 几十头猪 and 几百亩 are not a few.
_FEW = r"(?:几|一两|两三|三五|三四|四五|十来|十几|[一两二三四五六七八九十]|[0-9](?![0-9]))"
_SITUATIONS = {
    "retiree": re.compile(r"退休|养老金|离休|退下来|退了"),
    "self": re.compile(r"打鱼|捕鱼|出海|渔民|渔船|跑船|自己的船|船是自己|零工|打短工|临时工|有活就干|没活|做小工|小工|"
                       r"干杂活|小卖部|开(?:了)?(?:一?[个家间])?[^，。,；;\s]{0,3}?(?:店|超市|饭店|饭馆|餐馆|厂|公司|商店|门市)|"
                       r"做(?:生意|买卖)|个体|跑运输|跑车|拉货|货车|货运|"
                       r"外卖|跑滴滴|网约车|养殖|大户|承包|摆摊|包工|种植户|合作社|自己干|没(?:有)?固定工资|"
                       # Fifty mu or more, or land taken in from others (流转): a farm run as a business; a family's
                       # own fields are a few mu to a few tens.
                       r"流转|(?:[0-9]*[5-9][0-9]|[0-9]{3,}|几百|[五六七八九]十|[一二两三四五六七八九]?百|千)(?:多|来)?亩|"
                       r"养(?!(?:了|着)?" + _FEW + r"[只头个窝条]?(?:猪|牛|羊|鸡|鸭|鹅|鱼|兔))(?:了)?"
                       r"[^，。,；;\s]{0,6}(?:猪|牛|羊|鸡|鸭|鹅|鱼|虾|蟹|蜂|兔)"),
    "wage": re.compile(r"(?<!退休)工资|到手|月薪|薪水|税后|上班|打工|厂里|单位|公司上|教书|当(?:老师|工人|保安|收银)|"
                       r"拿.{0,3}(?:块|元|千|万)"),
    "farmer": re.compile(r"种地|种田|务农|农民|种庄稼|在家种|庄稼人|种粮|种果|种菜|"
                         r"种(?:了|着)?(?:点|" + _FEW + r"|[一二两三四]十|[1-4][0-9])(?:多|来)?亩"),
    "low": re.compile(r"学生|上学|读书|念书|上大学|念大学|读大学|研究生|读研|失业|下岗|低保|救济|抚恤|没工作|没收入|莫得收入|"
                      r"一分钱收入"),
}
# A question without a figure is worked out only when it asks what to pay or how it is reckoned.
_ASKS_AMOUNT = re.compile(r"多少|几毛|几块|几个点|啥标准|什么标准|标准|比例|百分之|哪一档|档|怎么算|咋算|咋个算|如何算|怎样算|"
                          r"按啥|按什么|按哪|按多少|怎么交|咋交|咋个交|怎么个交|交法|如何交|交好多|好多钱|一样吗|一样不|还是|对不对|对吗|够不够|"
                          r"要交吗|要交不|要不要交|交不交|用不用交|还交吗|还要交|得交吗|也要交|也交吗")
LEADS = {
    "wage": "有工资的按每月税后工资算，整笔工资按所在那一档的比例交",
    "retiree": "退休的按每月实际领到的退休金（养老金）算",
    "self": "开店、跑运输这类没有固定工资的，按上一季度平均每月的纯收入（挣的减去本钱），套用工资那几档算",
}
# The span a figure is said for, named just before it (at most SPAN_GAP characters before, in the same clause):
# the last one named counts, so "上季度平均每月纯挣八千" is a month's and "上个季度刨去本钱净挣两万七" a quarter's. A
# year's or a quarter's figure is divided into months (the self-employed pay on last quarter's average monthly
# net income, art. 4); a span of months nobody can count ("几个月挣了两万") gives no monthly figure at all.
SPAN_GAP = 8
_SPAN = re.compile(r".*(一年到头|年收入|年薪|全年|一年|每年|季度|一季|半年|仨月|俩月|几个月|个把月|"
                   r"(?<![0-9])[0-9]+个月|(?<![一二两三四五六七八九十])[一二两三四五六七八九十]+个月|每个?月|月薪|月收入|月工资)"
                   rf"[^，。,；;]{{0,{SPAN_GAP}}}$")
_MONTHS_SAID = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10,
                "十一": 11, "十二": 12}
# Spans that name their months outright.
_SPAN_MONTHS = {"一年到头": 12, "年收入": 12, "年薪": 12, "全年": 12, "一年": 12, "每年": 12, "季度": 3, "一季": 3,
                "半年": 6, "仨月": 3, "俩月": 2}
_SPAN_LABELS = {12: "一年", 6: "半年", 3: "一个季度"}
# A business's takings net of its costs, said some way after the span ("上个季度三个月卖茶叶刨掉本钱人工 净挣九千"): the
# figure is still the span's, however far from it, unless a month is named in between.
_NET_OF_COSTS = re.compile(r"(?:刨|除|扣|减|去)(?:掉|去|除)?[^，。,；;\s]{0,2}(?:本钱|成本|开销|花销|人工)|净挣|纯挣|净赚|纯赚|"
                           r"纯收入|净收入|纯利|利润")
_SPAN_BEFORE_COSTS = re.compile(r".*(季度|一季|半年|全年|一年到头|(?<![一二两三四五六七八九十0-9])[两二三四五六七八九十]+个月|"
                                r"(?<![0-9])[2-9]个月)([^，。,；;]{0,24})$")


def months_of(before: str) -> int | None:
    """How many months the figure after `before` is said for: 1 unless a span names more; None when it cannot be
    counted."""
    match = _SPAN.search(before)
    if match is None:
        match = _SPAN_BEFORE_COSTS.search(before)
        if match is None or "月" in match.group(2) or not _NET_OF_COSTS.search(match.group(2)):
            return 1
    span = match.group(1)
    if span in _SPAN_MONTHS:
        return _SPAN_MONTHS[span]
    if span.endswith("个月") and span not in ("几个月", "个把月", "每个月"):
        figure = span[:-2]
        return int(figure) if figure.isdigit() else _MONTHS_SAID.get(figure)
    return 1 if span.startswith(("每", "月")) else None


# The entry a computed answer stands for, by the asker's situation: the first of these the content has.
ENTRIES = {
    "wage": ("dues-salary-rates", "dues-standard-overview"),
    "retiree": ("dues-retiree", "dues-standard-overview"),
    "self": ("dues-self-employed", "dues-irregular-income", "dues-salary-rates", "dues-standard-overview"),
    "farmer": ("dues-farmer", "dues-standard-overview"),
    "low": ("dues-low-income", "dues-standard-overview"),
}


@dataclass(frozen=True)
class Dues(Computed):
    situation: str = ""  # "wage", "retiree", "self", "farmer", "low" or "several"
    estimate: bool = False


def _dues(situation: str, text: str, estimate: bool) -> Dues:
    return Dues(entry_ids=ENTRIES[situation], text=text, source=SOURCE, situation=situation, estimate=estimate)


def _money(value: float) -> str:
    rounded = round(value, 2)
    return f"{int(rounded)}元" if rounded == int(rounded) else f"{rounded:.2f}".rstrip("0") + "元"


def _percent(rate: float) -> str:
    return f"{rate * 100:g}%"


def _bracket(value: float, brackets) -> tuple[int, float, float]:
    """(index, rate, lower bound) of the bracket holding value (upper bounds included)."""
    lower = 0.0
    for index, (upper, rate) in enumerate(brackets):
        if value <= upper:
            return index, rate, lower
        lower = upper
    raise AssertionError("the last bracket has no upper bound")


def _range_words(lower: float, upper: float) -> str:
    if lower == 0:
        return f"{upper:g}元及以下"
    if upper == float("inf"):
        return f"{lower:g}元以上"
    return f"{lower:g}元以上到{upper:g}元"


def _income_words(amount: Amount, months: int, low: float, high: float) -> str:
    if months > 1:
        label = _SPAN_LABELS.get(months, f"{months}个月")
        per_month = f"{round(low):g}元" if round(low) == round(high) else f"{round(low):g}元到{round(high):g}元"
        return f"{label}{amount.said}，平均每月约{per_month}"
    if amount.exact:
        return f"每月{amount.low:g}元"
    said = amount.said
    return f"每月{said}" + ("" if said.endswith(("元", "块", "块钱")) else "元")


def _computed(amount: Amount, brackets, *, months: int = 1) -> tuple[str, bool]:
    """The bracket and monthly amount for an income (as said for that many months), on these brackets."""
    low, high = amount.low / months, amount.high / months
    if months > 1 and amount.exact:
        low = high = round(low)  # a figure for a longer span is an estimate anyway: whole yuan read better
    estimate = months > 1 or not amount.exact
    # "五千多": above 5,000, never 5,000 itself.
    first = _bracket(low + 0.01 if amount.manner == "more" else low, brackets)
    last = _bracket(high - 0.01 if amount.manner == "more" else high, brackets)
    said = _income_words(amount, months, low, high)
    if first[0] == last[0]:
        index, rate, lower = first
        upper = brackets[index][0]
        if amount.exact:
            figure = f"每月{'约' if months > 1 else ''}交{_money(low * rate)}（{low:g}×{_percent(rate)}）"
        elif amount.manner == "more":
            figure = f"每月{_money(low * rate)}多一点（按实际收入×{_percent(rate)}算）"
        else:
            figure = f"每月约{_money(low * rate)}到{_money(min(high, upper) * rate)}（按实际收入×{_percent(rate)}算）"
        return f"{said}，在{_range_words(lower, upper)}这一档，交{_percent(rate)}，{figure}。", estimate
    # Either side of a bracket's edge: both, with the edge named.
    edge = brackets[first[0]][0]
    below_rate, above_rate = first[1], brackets[first[0] + 1][1]
    return (f"{said}，正好在两档的交界：不超过{edge:g}元交{_percent(below_rate)}（{edge:g}元交{_money(edge * below_rate)}）；"
            f"超过{edge:g}元交{_percent(above_rate)}（比如{edge * 1.1:g}元交{_money(edge * 1.1 * above_rate)}）。"
            "按准确的数来定。"), True


# A sum spent, owed or lost is no income ("老伴看病花了四五万 党费实在交不起"): said just before the figure.
_SPENT = re.compile(r"(花了|花掉|花费|用了|用掉|欠了?|借了?|贷了?|赔了?|亏了?|垫了?|医药费|住院费|看病|治病|手术|彩礼|盖房)"
                    r"[^，。,；;\s]{0,3}$")

# A figure followed by what it was worth or what was lost ("几十万的鱼苗全没了", "两万块的化肥"): no income.
_LOST_AFTER = re.compile(r"^(?:多|来)?(?:块钱?|元)?(?:的(?!工资|收入|退休金|养老金|月薪|年薪|样子|样|话|光景|左右|水平)[\u4e00-\u9fff]|"
                         r"[^，。,；;\s]{0,6}(?:没了|损失|冲走|冲没|刮走|刮没|打烂|淹了|烧了|打水漂))")
# A figure said as earnings ("一个月挣四千五", "到手三千"): with no situation named, only such a figure is taken for a wage.
_EARNED = re.compile(r"(?:挣|赚|收入|工资|到手|拿|领|发|薪|每个?月|一个月|月入|一月|进账)[^，。,；;\s]{0,6}$")
# "不是拿工资的", with an income and no other situation named: one who earns without a wage (art. 4), not a wage.
_NO_WAGE = re.compile(r"不(?:是)?拿工资|不领工资|没(?:有|得)?(?:固定)?工资")

# "莫得退休金 就在家种地": a situation said to be absent is not the asker's (the farmer here, not a retiree).
_DENIED = re.compile(r"(?:没有|没得|莫得|没|无|不是|不拿|不领|冇)[^，。,；;\s]{0,2}$")


# Several people's dues, or kinds set side by side: two kinds named in one person's story (在厂里下岗了, 农民打零工,
# 在学校当老师) are one member's, which the search answers.
_SIDE_BY_SIDE = re.compile(r"一样|区别|不同|差别|分别|各(?:交|算|按|自|是)|都(?:是|要|咋|怎么|按)|(?:几|两|三|四|五|仨|俩)个党员|"
                           r"一个[^，。,；;]{1,12}一个|加起来|娘俩|爷俩|父子俩|母女俩|两口子|老两口|"
                           r"(?:我们|俺们|咱们)(?:俩|仨|两个|三个|几个)")
_COMPARED = re.compile(r"各算各|各交各|一样")
# Each kind's rule in a line, for a question naming several kinds ("俺在厂里拿工资 老头子退休了 闺女在上大学").
RULES = {
    "wage": "拿工资的按每月税后工资：3000元及以下交0.5%，3000元以上到5000元交1%，5000元以上到10000元交1.5%，"
            "10000元以上交2%",
    "retiree": "退休的按每月领到的退休金（养老金）：5000元及以下交0.5%，5000元以上交1%",
    "self": "开店、跑运输、规模种养这类没有固定工资的，按上一季度平均每月的纯收入套用工资那几档",
    "farmer": "在家种地的农民党员每月0.2元到1元，具体数由支部按本地做法定",
    "low": "学生、下岗失业、领低保或靠救济、抚恤生活的每月0.2元",
}


def _several(found: list[str], text: str, incomes: list) -> Dues:
    """Several kinds of member in one question (a family's, or one person's two incomes): each kind's rule, and
    the figure worked out when one income is said and only one kind named is paid by income."""
    lines = "；".join(RULES[name] for name in found)
    paid_by_income = [name for name in found if name in ("wage", "retiree", "self")]
    worked = ""
    months = months_of(_before(text, incomes[0])) if len(incomes) == 1 else None
    if len(paid_by_income) == 1 and months is not None:
        body, estimate = _computed(incomes[0], RETIREE_BRACKETS if paid_by_income[0] == "retiree" else WAGE_BRACKETS,
                                   months=months)
        worked = f"说了收入的那一位：{body}" + ("这是按您说的数估算的，以实际收入为准。" if estimate else "")
    ids = ENTRIES[paid_by_income[0]] if worked else ("dues-standard-overview",)
    return Dues(entry_ids=ids, source=SOURCE, situation="several", text=(
        f"各人按各人的情况交：{lines}。{worked}一个人有几种收入、拿不准按哪种算的，跟支部书记商量；想算出每人每月交多少，"
        "把各人的收入分开发给我。"))


def _before(text: str, amount: Amount) -> str:
    """What the text says before the amount (where a span such as 一年 or 上季度 is named)."""
    at = text.find(amount.said.lower())
    return text[:at] if at >= 0 else ""


def _after(text: str, amount: Amount) -> str:
    """What the text says after the amount."""
    at = text.find(amount.said.lower())
    return text[at + len(amount.said):] if at >= 0 else ""


def situation_of(text: str) -> list[str]:
    """The kinds of member the text names (not those it denies: 莫得退休金), in the order it first names them."""
    named = {}
    for name, pattern in _SITUATIONS.items():
        starts = [found.start() for found in pattern.finditer(text) if not _DENIED.search(text[:found.start()])]
        if starts:
            named[name] = starts[0]
    return sorted(named, key=named.get)


def compute(question: str) -> Dues | None:
    """The computed answer to a dues question that states an income or a situation; None otherwise."""
    text = unicodedata.normalize("NFKC", question).lower()
    if not _DUES.search(text) or _ELSEWHERE.search(text) or _PROBATION_STARTS.search(text) \
            or SEVERAL_MONTHS_AT_ONCE.search(text):
        return None
    found = situation_of(text)
    # A shop owner "挣" money is self-employed even if the sentence says 一个月拿: the first match that is not
    # a wage word wins over wage words.
    if "self" in found and "wage" in found:
        found.remove("wage")
    # Three kinds are several people's (a family's); two are one retiree's pension said with a wage word
    # (一个月拿三千 退休金) unless the question sets kinds side by side.
    several = len(found) > 2
    if "retiree" in found and "wage" in found and re.search(r"退休金|养老金", text) and not several:
        found.remove("wage")
    incomes = list({(amount.low, amount.high): amount for amount in amounts(text)
                    if not _SPENT.search(_before(text, amount))
                    and not _LOST_AFTER.search(_after(text, amount))}.values())  # 四千…整个四千: one
    if (several or (len(found) > 1 and _SIDE_BY_SIDE.search(text))) \
            and (incomes or _ASKS_AMOUNT.search(text) or _COMPARED.search(text)):
        return _several(found, text, incomes)
    if len(found) > 1 or len(incomes) > 1:
        return None  # one member's story naming two kinds, or several figures: the search's answer fits better
    if not found and incomes and not _EARNED.search(_before(text, incomes[0])):
        return None  # a figure with no situation and not said as earnings: perhaps no income at all
    situation = found[0] if found else (("self" if _NO_WAGE.search(text) else "wage") if incomes else None)
    if situation is None:
        return None
    if not incomes and not _ASKS_AMOUNT.search(text):
        return None  # a situation and dues said in passing ("开了家饭馆 顾不上开会 党费按时交"): not this question
    if situation == "low":
        return _dues("low", "学生、下岗失业、领低保或靠救济、抚恤生活的党员，每月交0.2元。", False)
    if situation == "farmer" and not incomes:
        return _dues("farmer", "在家务农的农民党员每月交0.2元到1元。规定只给了这个范围，具体交多少由支部按本地的做法定，"
                              "问支部书记就知道。", False)
    if situation == "self" and not incomes:
        # No figure, but the situation fixes the rule: the brackets and what they apply to.
        return _dues("self", f"{LEADS['self']}：3000元及以下交0.5%，3000元以上到5000元交1%，5000元以上到10000元交1.5%，"
                             "10000元以上交2%。比如上季度平均每月净挣2000元，每月交10元。收入算不清、拿不准算哪一类，"
                             "跟支部书记商量。", False)
    if not incomes:
        return None  # wages and pensions need the figure
    amount = incomes[0]
    months = months_of(_before(text, amount))
    if months is None:
        return None  # a figure for months nobody counted: the search's general answer fits better
    if situation == "farmer":
        body, _ = _computed(amount, WAGE_BRACKETS, months=months)
        return _dues("farmer", "在家种地的农民党员，规定是每月0.2元到1元，具体数由支部按本地做法定。如果收入主要是打工工资"
                              f"或做生意挣的，就按收入那一档交：{body}拿不准算哪一种，问支部书记。", True)
    body, estimate = _computed(amount, RETIREE_BRACKETS if situation == "retiree" else WAGE_BRACKETS, months=months)
    text = f"{LEADS[situation]}。{body}"
    if estimate:
        text += "这是按您说的数估算的，以实际收入为准。"
    return _dues(situation, text, estimate)
