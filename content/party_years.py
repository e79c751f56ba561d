"""党龄, the 光荣在党50年 medal and 转正 computed from the date a member gives: "我76年转正的 党龄多少年了",
"俺爹1975年入的党 能拿50年纪念章不", "我去年7月成了预备党员 啥时候转正"; and when someone may apply to join,
from the birth date given instead of an age: "闺女2010年5月出生 哪年能写入党申请".

The rules (党章 art. 7): a probationary period of one year; 党龄 counts from the day the member became a full
member (转正), not from joining as a probationary member. When a member gives the year they joined (入党),
转正 is normally a year later — the answer says it assumes so (the period can be extended by up to a year).
The medal goes to members whose 党龄 has reached 50 years, usually around 七一. One may apply to join at 18 (党章
art. 1): a birth date with a question about applying gets the month (or the year, when no month is given) the
asker turns 18; in that very month, a day given decides.

Only questions that give a year (1976, 76年, 一九七六年, 去年, 前年) and ask one of these are computed; anything
else goes to the search. This module imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from content.computed import Computed

DIGIT = {"零": "0", "〇": "0", "o": "0", "一": "1", "二": "2", "三": "3", "四": "4", "五": "5", "六": "6", "七": "7",
         "八": "8", "九": "9"}
_YEAR = re.compile(r"((?:19|20)?[0-9]{2}|(?:一九|二〇|二零)?[零〇一二三四五六七八九]{2})年(?:的)?(?:([0-9]{1,2}|[一二三四五六七八九十]{1,3})月)?")
_RELATIVE = {"今年": 0, "去年": 1, "前年": 2}
_RELATIVE_PATTERN = re.compile(r"(今年|去年|前年)(?:([0-9]{1,2}|[一二三四五六七八九十]{1,3})月)?")
_FULL = re.compile(r"转正|正式党员")
_JOINED = re.compile(r"入(?:的|了)?党|预备党员|成了预备|宣誓")
_ASKS_AGE = re.compile(r"党龄|几年党员|多少年(?:的)?党员|在党多少年|党员多少年")
_ASKS_MEDAL = re.compile(r"纪念章|50年|五十年")
# 转正 still to come: "七八年转正的 他啥时候能领纪念章" says when it came, and asks about something else.
_ASKS_CONVERSION = re.compile(r"(什么时候|啥时候|哪天|几时|多久|啥时|多长时间).{0,4}转正|"
                              r"转正(?![的了过])(?<!转了正).{0,6}(什么时候|啥时候|哪天|几时|多久)")
# A birth date ("2011年4月生的", "08年出生") and a question whether or when one may apply to join.
_BORN = re.compile(r"((?:19|20)?[0-9]{2}|(?:一九|二〇|二零)?[零〇一二三四五六七八九]{2})年(?:的)?"
                   r"(?:([0-9]{1,2}|[一二三四五六七八九十]{1,3})月份?(?:([0-9]{1,2}|[一二三四五六七八九十]{1,3})[号日])?)?"
                   r"份?(?:出生|生的|生人|的?生日|生(?![活病意产气日]))")
_WHEN_OR_WHETHER = (r"(?:啥时候|什么时候|几时|哪年|哪一年|何时|多会|多大|能不能|能否|可不可以|够不够|够岁数|够年龄|满没满|"
                    r"行不行|中不中|能不|可以)")
_APPLYING = r"(?:入党|申请书|[递交写打]申请)"
_ASKS_APPLY = re.compile(rf"{_WHEN_OR_WHETHER}[^，。,；;？?]{{0,8}}{_APPLYING}|"
                         rf"{_APPLYING}[^，。,；;？?]{{0,8}}{_WHEN_OR_WHETHER}|"
                         rf"(?:能|可以|够)[^，。,；;？?]{{0,6}}{_APPLYING}[^，。,；;？?]{{0,6}}(?:吗|不|么|没)|"
                         # 申请书交上去 能交不
                         rf"{_APPLYING}[^，。,；;？?]{{0,8}}(?:能|可以)[递交写打]?(?:吗|不|么|没)")
APPLY_AGE = 18
MONTHS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10, "十一": 11, "十二": 12}

CHARTER = "中国共产党章程"
MEDAL_SOURCE = "“光荣在党50年”纪念章颁发管理办法"


def _year(text: str, today: date) -> int | None:
    figures = "".join(DIGIT.get(char, char) for char in text)
    if len(figures) == 2:
        value = int(figures)
        # 76年 is 1976; 05年 is 2005 (a year still to come is no date anyone joined on).
        return 2000 + value if 2000 + value <= today.year else 1900 + value
    return int(figures)


def _month(text: str | None) -> int | None:
    if not text:
        return None
    value = int(text) if text.isdigit() else MONTHS.get(text)
    return value if value is not None and 1 <= value <= 12 else None


def _date_given(text: str, today: date) -> tuple[int, int | None, int] | None:
    """The year and month given, and where in text the date ends."""
    match = _YEAR.search(text)
    if match is None:
        # "今年党龄多少" names no date: only a relative year with something after it ("去年7月", "前年入党") does.
        relative = _RELATIVE_PATTERN.search(text)
        if relative is None:
            return None
        return today.year - _RELATIVE[relative.group(1)], _month(relative.group(2)), relative.end()
    year = _year(match.group(1), today)
    if year is None or not 1921 <= year <= today.year:
        return None
    return year, _month(match.group(2)), match.end()


def _date_is_full(text: str, date_end: int) -> bool | None:
    """Whether the date given is when the member became a full member (True) or joined as a probationary one
    (False), by the first of the two that the question names after the date ("2003年5月…预备党员，第二年转正" is
    the day they joined), else the last before it ("转正是2004年"); None when it names neither."""
    after, before = text[date_end:], text[:date_end]
    full, joined = _FULL.search(after), _JOINED.search(after)
    if full or joined:
        return bool(full) and (joined is None or full.start() < joined.start())
    last_full = max((found.start() for found in _FULL.finditer(before)), default=-1)
    last_joined = max((found.start() for found in _JOINED.finditer(before)), default=-1)
    return None if last_full == last_joined == -1 else last_full > last_joined


def _day(text: str | None) -> int | None:
    if not text:
        return None
    if text.isdigit():
        value = int(text)
    else:  # 二十, 二十一, 十五, 三十一, 九
        tens, _, units = text.rpartition("十")
        value = (MONTHS.get(tens, 1) if "十" in text else 0) * 10 + (MONTHS.get(units, 0) if units else 0)
        if "十" in text and tens and tens not in MONTHS:
            return None
    return value if 1 <= value <= 31 else None


def _full_years(since: tuple[int, int | None], today: date) -> tuple[int, bool]:
    """Whole years from since to today, and whether that is exact (the month was given)."""
    year, month = since
    if month is None:
        return today.year - year, False
    return today.year - year - (1 if today.month < month else 0), True


def _when(year: int, month: int | None) -> str:
    return f"{year}年{month}月" if month else f"{year}年"


def _age_to_apply(text: str, today: date) -> Computed | None:
    """When one born on the date given turns 18 and may apply to join; None unless the question gives a birth
    date and asks whether or when one may apply."""
    born = _BORN.search(text)
    if born is None or not _ASKS_APPLY.search(text):
        return None
    year = _year(born.group(1), today)
    month = _month(born.group(2))
    day = _day(born.group(3)) if month is not None else None
    if year is None or not 1900 <= year <= today.year:
        return None
    due_year = year + APPLY_AGE
    due = _when(due_year, month)
    if day is not None and (due_year, month) == (today.year, today.month):
        # Born this month eighteen years ago, on a day given: the birthday decides.
        born_on = f"{year}年{month}月{day}日"
        if today.day >= day:
            verdict = f"按您说的{born_on}出生，已经年满{APPLY_AGE}岁，年龄上够了，可以递交入党申请书。"
        else:
            verdict = (f"按您说的{born_on}出生，到{due_year}年{month}月{day}日满{APPLY_AGE}岁，满了就可以递交入党申请书，"
                       "现在还不能递。")
    elif (due_year, month or 12) < (today.year, today.month) and (month is not None or due_year < today.year):
        verdict = f"按您说的{_when(year, month)}出生，已经年满{APPLY_AGE}岁，年龄上够了，可以递交入党申请书。"
    elif due_year == today.year and month in (None, today.month):
        verdict = (f"按您说的{_when(year, month)}出生，{'这个月' if month else '今年'}满{APPLY_AGE}岁，"
                   f"过了{APPLY_AGE}岁生日就可以递交入党申请书。")
    else:
        verdict = f"按您说的{_when(year, month)}出生，到{due}满{APPLY_AGE}岁，满了就可以递交入党申请书，现在还不能递。"
    return Computed(("join-who-can-apply",), (
        f"申请入党要年满{APPLY_AGE}岁。{verdict}年龄之外，还要承认党的纲领和章程，愿意参加党的一个组织并在其中积极工作、"
        "执行党的决议、按期交纳党费。"), CHARTER, "第一条")


def compute(question: str, today: date) -> Computed | None:
    text = unicodedata.normalize("NFKC", question).lower()
    if not re.search(r"党龄|转正|纪念章|预备", text):
        applying = _age_to_apply(text, today)
        if applying is not None:
            return applying
    asks_conversion = bool(_ASKS_CONVERSION.search(text))
    asks_medal = bool(_ASKS_MEDAL.search(text)) and not asks_conversion
    asks_age = bool(_ASKS_AGE.search(text)) and not asks_conversion
    if not (asks_conversion or asks_medal or asks_age):
        return None
    given = _date_given(text, today)
    if given is None:
        return None
    year, month, date_end = given
    full = _date_is_full(text, date_end)
    if full is None:
        return None  # a year, but of what? The search answers the rule.
    full = full and not asks_conversion
    if asks_conversion:
        due = _when(year + 1, month)
        passed = (year + 1, month or 12) < (today.year, today.month)
        timing = (f"预备期在{due}已经满了；如果支部还没讨论您转正的事，问问支部书记。" if passed else
                  f"预备期到{due}满。满之前支部要开支部党员大会讨论，到时候支部书记会找您。")
        # When 转正 comes is the probation rule (党章 art. 7: a year from the 支部大会's vote): join-probation.
        return Computed(("join-probation", "join-conversion"), (
            f"预备期是一年。按您说的{_when(year, month)}成为预备党员，{timing}按期转正的，从预备期满那天起就是正式党员；"
            "需要继续考察的可以延长预备期，最长一年。"), CHARTER, "第七条")
    if full:
        since, assumed = (year, month), ""
    else:
        since = (year + 1, month)
        assumed = f"您说的是{_when(year, month)}入党（成为预备党员），按一年预备期按期转正算，是{_when(year + 1, month)}转正。"
    years, exact = _full_years(since, today)
    approx = "" if exact else "（没说月份，按年份算）"
    rule = "党龄从预备期满转为正式党员那天算起，预备期不算。"
    if asks_medal:
        if years >= 50:
            verdict = f"到今年党龄满{years}年{approx}，已经够50年了。"
        else:
            verdict = f"到今年党龄是{years}年{approx}，还差{50 - years}年，{since[0] + 50}年满50年。"
        return Computed(("member-50-years-medal", "join-party-age"), (
            f"{rule}{assumed}{verdict}“光荣在党50年”纪念章颁给健在的、党龄满50年的党员，一般七一前后集中颁发，不用自己申请；"
            "够了年头却没领到，请支部核实上报。"), MEDAL_SOURCE)
    return Computed(("join-party-age",), f"{rule}{assumed}到今年党龄是{years}年{approx}。如果预备期延长过，要往后推。",
                    CHARTER, "第七条")
