"""Money amounts as members say them: 4500, 4,500, 4千5, 1.2万, 四千五, 一万二, 五千多, 两千来块, 七八千, 不到三千.

`amounts(text)` finds every amount of 100 yuan or more in a text, each as a range (low, high) with how it was
said: exact ("四千五"), a bit more than ("五千多", "五千出头"), about ("三千来块", "六千左右"), below ("不到三千")
or between two figures ("七八千", "三四千"). Percentages ("百分之一", "1.5%"), years ("2019年") and the
counts in "3会1课" are not amounts. This module imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
          "九": 9}
UNITS = {"十": 10, "百": 100, "千": 1000, "k": 1000, "万": 10000, "w": 10000}
SMALLEST = 100  # an income below this is no monthly income people mean; "六十" is a dues figure

_NUMERAL = "零〇一二两俩三四五六七八九十百千万"
# A run of figures and units: 4500, 4,500.5, 4千5, 1.2万, 四千五, 七八千.
_AMOUNT = re.compile(rf"(不到|不足|不够|将近|差不多|大概|大约|约)?((?:[0-9][0-9,]*(?:\.[0-9]+)?|[{_NUMERAL}])"
                     rf"(?:[0-9.]|[{_NUMERAL}]|k(?![a-z])|w(?![a-z]))*)"
                     r"(多|来|出头|左右|上下|朝上)?")
# What is never an amount: percentages, years and dates, counts of things.
_NOT_AMOUNTS = re.compile(rf"百分之[{_NUMERAL}点.0-9]+|[0-9.]+\s*[%％]|[0-9{_NUMERAL}]+(?:多|来|几)?\s*(?:年|岁|月份|号|日|个|次|人|天|周|"
                          rf"会|课|条|项|点钟|小时|分钟|亩|头|只|口)")

# After a unit said alone, what makes it an amount ("千把块", "万把块钱"): otherwise it is part of a word.
_ROUGHLY_ONE = re.compile(r"\s*(?:把|块|元)")


@dataclass(frozen=True)
class Amount:
    low: float
    high: float
    said: str  # the words as written
    manner: str  # "exact", "more" (五千多), "about" (三千来块), "below" (不到三千), "between" (七八千)

    @property
    def exact(self) -> bool:
        return self.manner == "exact"

    @property
    def middle(self) -> float:
        return (self.low + self.high) / 2


def _chinese(text: str) -> tuple[float, float, int] | None:
    """A Chinese numeral → (low, high, the magnitude of its last figure); 七八千 gives 7000–8000."""
    total, section, last_unit = 0, 0, 1
    digit: int | None = None
    pair: int | None = None  # 七八千: the first of two figures side by side
    zero = False  # 三千零五: after 零, a last figure counts as itself
    for index, char in enumerate(text):
        if char in "零〇":
            zero, digit = True, None
            continue
        if char in DIGITS:
            if digit is not None and pair is None:
                pair = digit
            digit = DIGITS[char]
            continue
        unit = UNITS.get(char)
        if unit is None:
            return None
        if unit == 10000:
            if pair is not None and digit is not None:
                # 五六万: two figures side by side before 万, 50,000–60,000 (not 60,000 said exactly).
                return total + (section + pair) * 10000, total + (section + digit) * 10000, 10000
            section = (section + (digit or 0)) or 1
            total += section * 10000
            section, digit, last_unit = 0, None, 10000
            continue
        section += (1 if digit is None else digit) * unit
        if pair is not None:
            low_section = section - digit * unit + pair * unit
            base = total
            rest = text[index + 1:]
            scale = 10000 if rest == "万" else 1
            return (base + low_section) * scale, (base + section) * scale, unit * scale
        digit, last_unit = None, unit
    if digit is not None:
        # 四千五 = 4500, 一万二 = 12000: a figure after a unit counts in the next unit down.
        implied = last_unit // 10 if last_unit >= 100 and total + section > 0 and not zero else 1
        section += digit * implied
        last_unit = implied
    value = total + section
    return (value, value, last_unit) if value else None


def _arabic(text: str) -> tuple[float, float, int] | None:
    """4500, 4,500, 4千5, 1.2万, 4k → (value, value, the magnitude of its last figure)."""
    match = re.fullmatch(r"([0-9][0-9,]*(?:\.[0-9]+)?)(?:([千k万w])([0-9])?)?", text)
    if match is None:
        return None
    number = float(match.group(1).replace(",", ""))
    unit = UNITS.get(match.group(2) or "", 1)
    value = number * unit
    last = unit
    if match.group(3):
        last = unit // 10
        value += int(match.group(3)) * last
    elif unit == 1:
        whole = match.group(1).replace(",", "").split(".")[0]
        last = 10 ** (len(whole) - len(whole.rstrip("0"))) if whole.strip("0") else 1
    return value, value, last


def figure(text: str) -> float | None:
    """One number said exactly, in figures or in Chinese numerals ("20", "二十", "三十二"); None for anything else
    (a range such as 七八千 included)."""
    parsed = _arabic(text) if text[:1].isdigit() else _chinese(text)
    if parsed is None or parsed[0] != parsed[1]:
        return None
    return parsed[0]


def amounts(text: str) -> list[Amount]:
    """Every amount of SMALLEST yuan or more in text, in the order written."""
    folded = unicodedata.normalize("NFKC", text).lower()
    folded = _NOT_AMOUNTS.sub(lambda match: " " * len(match.group()), folded)
    found = []
    for match in _AMOUNT.finditer(folded):
        before, figures, after = match.group(1), match.group(2), match.group(3)
        figures = figures.rstrip(".")
        if figures[0] in "百千万" and not _ROUGHLY_ONE.match(folded, match.end()):
            continue  # a unit with no figure before it is a word (老百姓, 千万别, 万一), unless said as 千把块 or 万把块钱
        parsed = _arabic(figures) if figures[0].isdigit() else _chinese(figures)
        if parsed is None:
            continue
        low, high, last = parsed
        if high < SMALLEST:
            continue
        manner = "between" if low < high else "exact"
        if before in ("不到", "不足", "不够", "将近"):
            low, manner = high * 0.8, "below"
        elif before or after in ("来", "左右", "上下"):
            low, high, manner = low * 0.9, high * 1.1, "about"
        elif after in ("多", "出头", "朝上"):
            high, manner = high + last, "more"
        found.append(Amount(low=low, high=high, said=text[match.start():match.end()].strip(), manner=manner))
    return found
