"""Reading a meeting time the way people type or dictate it: "明天下午3点", "11月28日 14:30", "周五 9:00".

`parse_when` only reads the phrase; whether a time in the past is acceptable is the caller's decision.

The rules, in local time (the `zone` given, Asia/Shanghai in practice):
- A time is required. A date alone ("大后天", "这周六", "11月28日") is refused with a request for the time.
- Without a date, a clock time means today when that moment is still ahead, else tomorrow.
- An hour from 1 to 6 without 上午/下午/晚上… is read as afternoon ("3点" → 15:00): meetings are not
  held at three in the morning, and people say "3点" for 15:00. 7–12 are read as written (7点 → 07:00,
  12点 → noon); 13–23 and "15:30" are 24-hour times. 凌晨/早上 keep small hours as they are.
- 下午/晚上/傍晚 add 12 hours to 1–11 ("晚上7点" → 19:00); 中午 means 11:00–13:59 ("中午1点" → 13:00).
  "晚上12点" is refused as ambiguous (midnight of which day?); say "0点" with the next day instead.
- A month and day without a year ("11月1日") is this year's, unless that date is already before today,
  then it is next year's (typed on 11月24日 it means 1 November of next year); never further ahead, so
  "2月29日" with no leap day this year or next is refused. `read_when` says when next year's was taken,
  so that the caller can ask: someone typing a date just past may have meant it. A day of the month alone
  ("28号") is this month's, or next month's once it is past.
- A bare weekday ("周五", "星期五", "礼拜五"; 日/天 is Sunday) is the nearest such day from today on,
  today included while the time is still ahead; otherwise the one after. "这周五"/"本周五" is the
  Friday of the current Monday-to-Sunday week even if it is past (the caller decides), "下周三" the
  Wednesday of next week, "下下周三" the week after.
- Chinese numerals (九点, 十点半, 十二点一刻, 十一月二十八日) and full-width digits are understood.
- Anything left over that is not filler ("的", "在", "开会"…), or two dates or two times, is refused.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

EXAMPLES = "例如：明天下午3点、11月28日 14:30、周五 9:00、下周三晚上7点"


class WhenError(ValueError):
    """A phrase that is not a meeting time we can read without guessing; the message is for the user."""


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
_WEEKDAY_WORDS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "日": 7, "天": 7}

# Periods of the day: (name, the shift applied to an hour given on a 12-hour dial).
_PERIODS = {
    "凌晨": "dawn", "早上": "morning", "早晨": "morning", "清晨": "morning", "上午": "morning",
    "中午": "noon", "午后": "afternoon", "下午": "afternoon", "傍晚": "evening", "晚上": "evening",
    "晚间": "evening", "夜里": "evening", "夜间": "evening",
}
_RELATIVE = {
    "大后天": (3, None), "后天": (2, None), "明天": (1, None), "明日": (1, None), "明儿": (1, None),
    "今天": (0, None), "今日": (0, None), "今儿": (0, None),
    "明早": (1, "morning"), "明晚": (1, "evening"), "今早": (0, "morning"), "今晚": (0, "evening"),
}

_TOKENS = [
    ("ymd", re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?")),
    ("md", re.compile(r"(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?")),
    ("md", re.compile(r"(\d{1,2})[-/](\d{1,2})(?![\d:])")),
    ("relative", re.compile("|".join(sorted(_RELATIVE, key=len, reverse=True)))),
    ("weekday", re.compile(r"(下下个?|下个?|这个?|本)?(?:周|星期|礼拜)([1-7])")),
    ("period", re.compile("|".join(_PERIODS))),
    ("clock", re.compile(r"(\d{1,2}):(\d{2})(?::\d{2})?")),
    ("hour", re.compile(r"(\d{1,2})\s*[点时]钟?(?:(半)|(\d)刻|(\d{1,2})分?|整)?")),
    ("day", re.compile(r"(\d{1,2})\s*[日号]")),
    ("filler", re.compile(r"[\s,，、的在于]+|开会|召开|开始|举行|左右|准时")),
]


def _cn_number(run: str) -> str:
    """A run of Chinese numerals as Arabic digits: 十二 → 12, 二十八 → 28, 二〇二六 → 2026."""
    if "十" not in run:
        return "".join(str(_CN_DIGITS[char]) for char in run)
    tens, _, ones = run.partition("十")
    if len(tens) > 1 or len(ones) > 1 or "十" in ones:
        raise WhenError(f"没看懂数字“{run}”。{EXAMPLES}")
    return str((_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0))


def _normalize(text: str) -> str:
    # NFKC folds full-width digits and the full-width colon; weekday characters become digits before
    # the numeral pass so that 周一 does not read as "week, number one".
    folded = unicodedata.normalize("NFKC", text).strip().rstrip("。.!！?？~～")
    folded = re.sub(r"(周|星期|礼拜)([一二三四五六日天])", lambda m: m[1] + str(_WEEKDAY_WORDS[m[2]]), folded)
    return re.sub(r"[零〇一二两三四五六七八九十]+", lambda m: _cn_number(m[0]), folded)


@dataclass
class _Parts:
    date_kind: str | None = None
    date_value: tuple = ()
    period: str | None = None
    hour: int | None = None
    minute: int = 0


def _scan(text: str) -> _Parts:
    parts = _Parts()
    position = 0
    while position < len(text):
        for kind, pattern in _TOKENS:
            match = pattern.match(text, position)
            if match and match.end() > position:
                break
        else:
            raise WhenError(f"没看懂“{text[position:]}”这部分时间。{EXAMPLES}")
        position = match.end()
        if kind == "filler":
            continue
        if kind in ("ymd", "md", "day", "weekday", "relative"):
            if parts.date_kind is not None:
                raise WhenError(f"时间里有两个日期，请只说一个。{EXAMPLES}")
            parts.date_kind = kind
            if kind == "relative":
                days, period = _RELATIVE[match[0]]
                parts.date_value = (days,)
                if period:
                    parts.period = period
            elif kind == "weekday":
                parts.date_value = (match[1] or "", int(match[2]))
            else:
                parts.date_value = tuple(int(group) for group in match.groups())
        elif kind == "period":
            period = _PERIODS[match[0]]
            if parts.period is not None and parts.period != period:
                raise WhenError(f"“{match[0]}”和前面的时段对不上，请再说一遍。{EXAMPLES}")
            parts.period = period
        else:
            if parts.hour is not None:
                raise WhenError(f"时间里有两个钟点，请只说一个。{EXAMPLES}")
            parts.hour = int(match[1])
            if kind == "clock":
                parts.minute = int(match[2])
            elif match[2]:
                parts.minute = 30
            elif match[3]:
                quarters = int(match[3])
                if quarters not in (1, 2, 3):
                    raise WhenError(f"没看懂“{match[0]}”。{EXAMPLES}")
                parts.minute = 15 * quarters
            elif match[4]:
                parts.minute = int(match[4])
    return parts


def _hour_of_day(hour: int, period: str | None, phrase: str) -> int:
    if hour > 23:
        raise WhenError(f"没有 {hour} 点，请用 0 到 23 点。{EXAMPLES}")
    if period is None:
        # See the module docstring: a bare 1–6 o'clock is an afternoon meeting.
        return hour + 12 if 1 <= hour <= 6 else hour
    if period == "dawn":
        if hour > 6:
            raise WhenError(f"凌晨{hour}点对不上，请再说一遍。{EXAMPLES}")
        return hour
    if period == "morning":
        if hour > 12:
            raise WhenError(f"上午没有{hour}点，请再说一遍。{EXAMPLES}")
        return hour
    if period == "noon":
        if hour in (11, 12, 13):
            return hour
        if hour in (1, 2):
            return hour + 12
        raise WhenError(f"中午{hour}点对不上，请说上午或下午。{EXAMPLES}")
    # afternoon / evening
    if hour == 12 and period == "evening":
        raise WhenError(f"“晚上12点”是哪一天的 0 点不好确定，请写成第二天 0 点，或 23:59。{EXAMPLES}")
    if hour == 12:
        return 12
    if hour == 0:
        raise WhenError(f"没看懂“{phrase}”的钟点。{EXAMPLES}")
    return hour + 12 if hour < 12 else hour


def _safe_date(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise WhenError(f"没有 {year}年{month}月{day}日 这一天，请检查日期。{EXAMPLES}") from None


@dataclass(frozen=True)
class When:
    """A phrase read: the moment (aware, UTC), and whether its year is a guess the user should confirm:
    a month and day with no year that had already passed this year, so next year's was taken
    ("11月28日" typed on 6 December)."""

    moment: datetime
    next_year_guessed: bool = False


def parse_when(text: str, *, now: datetime, zone: ZoneInfo) -> datetime:
    """The moment a phrase names, as an aware UTC datetime; WhenError (with a Chinese message) if unclear."""
    return read_when(text, now=now, zone=zone).moment


def read_when(text: str, *, now: datetime, zone: ZoneInfo) -> When:
    """parse_when, telling also whether the year was guessed (see When)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    phrase = (text or "").strip()
    if not phrase:
        raise WhenError(f"请告诉我会议时间，{EXAMPLES}")
    parts = _scan(_normalize(phrase))
    if parts.hour is None:
        if parts.date_kind is not None or parts.period is not None:
            raise WhenError(f"请把几点也告诉我，{EXAMPLES}")
        raise WhenError(f"没看懂“{phrase}”。{EXAMPLES}")
    if parts.minute > 59:
        raise WhenError(f"没有 {parts.minute} 分，请再说一遍。{EXAMPLES}")
    clock = time(_hour_of_day(parts.hour, parts.period, phrase), parts.minute)
    local_now = now.astimezone(zone)
    today = local_now.date()

    def at(day: date) -> datetime:
        return datetime.combine(day, clock, tzinfo=zone)

    kind, value = parts.date_kind, parts.date_value
    # Only a month and day rolled into next year is a guess: "明天" on 31 December or "3号" late in
    # December land in January the way anyone would read them.
    guessed = False
    if kind is None:
        day = today if at(today) > local_now else today + timedelta(days=1)
    elif kind == "relative":
        day = today + timedelta(days=value[0])
    elif kind == "ymd":
        day = _safe_date(*value)
    elif kind == "md":
        month, day_of_month = value
        if not 1 <= month <= 12:
            raise WhenError(f"没有 {month} 月，请检查日期。{EXAMPLES}")
        try:
            day = date(today.year, month, day_of_month)
        except ValueError:  # 29 February in a common year: next year's, if that one has it
            day = None
        if day is None or day < today:
            day = _safe_date(today.year + 1, month, day_of_month)
            guessed = True
    elif kind == "day":
        (day_of_month,) = value
        day = _safe_date(today.year, today.month, day_of_month) if day_of_month <= 31 else None
        if day is None:
            raise WhenError(f"没有 {day_of_month} 号，请检查日期。{EXAMPLES}")
        if day < today:
            following = date(today.year + (today.month == 12), today.month % 12 + 1, 1)
            day = _safe_date(following.year, following.month, day_of_month)
    else:  # weekday
        qualifier, weekday = value
        monday = today - timedelta(days=today.weekday())
        if qualifier.startswith("下下"):
            day = monday + timedelta(days=14 + weekday - 1)
        elif qualifier.startswith("下"):
            day = monday + timedelta(days=7 + weekday - 1)
        elif qualifier:  # 这 / 本
            day = monday + timedelta(days=weekday - 1)
        else:
            day = today + timedelta(days=(weekday - 1 - today.weekday()) % 7)
            if at(day) <= local_now:
                day += timedelta(days=7)
    return When(at(day).astimezone(timezone.utc), guessed)
