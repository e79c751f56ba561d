"""parse_when: the meeting-time phrases secretaries type or dictate."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.when import WhenError, parse_when, read_when

ZONE = ZoneInfo("Asia/Shanghai")
# Tuesday 24 November 2026, 10:00 in Shanghai.
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=ZONE)


def local(text: str, now: datetime = NOW) -> datetime:
    moment = parse_when(text, now=now, zone=ZONE)
    assert moment.tzinfo is timezone.utc
    return moment.astimezone(ZONE).replace(tzinfo=None)


def at(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute)


@pytest.mark.parametrize("text, expected", [
    ("明天下午3点", at(11, 25, 15)),
    ("明天下午三点半", at(11, 25, 15, 30)),
    ("明天 下午 3:30", at(11, 25, 15, 30)),
    ("后天上午9点", at(11, 26, 9)),
    ("大后天上午9点", at(11, 27, 9)),
    ("今天晚上7点", at(11, 24, 19)),
    ("今晚7点", at(11, 24, 19)),
    ("明早8点半", at(11, 25, 8, 30)),
    ("明天中午12点", at(11, 25, 12)),
    ("明天中午1点", at(11, 25, 13)),
    ("明天早上7点", at(11, 25, 7)),
    ("明天凌晨5点", at(11, 25, 5)),
    ("明天下午12点", at(11, 25, 12)),
    ("明天下午15点", at(11, 25, 15)),
    ("11月28日 14:30", at(11, 28, 14, 30)),
    ("11月28号下午2点", at(11, 28, 14)),
    ("十一月二十八日下午两点", at(11, 28, 14)),
    ("11 月 28 日 14:30", at(11, 28, 14, 30)),
    ("2026年12月1日 9:00", at(12, 1, 9)),
    ("2027年1月5日上午9点", at(1, 5, 9, year=2027)),
    ("二〇二七年一月五日上午九点", at(1, 5, 9, year=2027)),
    ("2026-12-01 09:00", at(12, 1, 9)),
    ("2026/12/1 9:00", at(12, 1, 9)),
    ("12-01 09:00", at(12, 1, 9)),
    ("12/1 9:00", at(12, 1, 9)),
    ("28号 下午2点", at(11, 28, 14)),
    ("九点", at(11, 25, 9)),  # 09:00 has passed today → tomorrow
    ("十点半", at(11, 24, 10, 30)),
    ("十二点一刻", at(11, 24, 12, 15)),
    ("2点三刻", at(11, 24, 14, 45)),
    ("14点30分", at(11, 24, 14, 30)),
    ("14时30分", at(11, 24, 14, 30)),
    ("9点钟", at(11, 25, 9)),
    ("下午3点整", at(11, 24, 15)),
    ("明天下午3点开会", at(11, 25, 15)),
    ("明天的下午3点", at(11, 25, 15)),
    ("明天下午3点。", at(11, 25, 15)),
    ("明天下午３点", at(11, 25, 15)),  # full-width digit
    ("１１月２８日　１４：３０", at(11, 28, 14, 30)),  # full-width digits, space and colon
])
def test_phrases(text, expected):
    assert local(text) == expected


@pytest.mark.parametrize("text, expected", [
    # A bare clock time: today while it is ahead (now is 10:00), else tomorrow.
    ("15:30", at(11, 24, 15, 30)),
    ("3点", at(11, 24, 15)),  # 1–6 without a period of the day is the afternoon
    ("6点", at(11, 24, 18)),
    ("7点", at(11, 25, 7)),  # 7–12 as written; 07:00 has passed
    ("10:00", at(11, 25, 10)),  # exactly now is not ahead
    ("10:01", at(11, 24, 10, 1)),
    ("0:30", at(11, 25, 0, 30)),
])
def test_time_without_date(text, expected):
    assert local(text) == expected


@pytest.mark.parametrize("text, expected", [
    # Tuesday 24 November: the nearest Friday is the 27th; "周二" today is still ahead at 15:00.
    ("周五 9:00", at(11, 27, 9)),
    ("星期五上午九点", at(11, 27, 9)),
    ("礼拜五下午3点", at(11, 27, 15)),
    ("周二下午3点", at(11, 24, 15)),
    ("周二上午9点", at(12, 1, 9)),  # today's 09:00 has passed → next Tuesday
    ("周一 9:00", at(11, 30, 9)),
    ("周日上午9点", at(11, 29, 9)),
    ("星期天上午9点", at(11, 29, 9)),
    ("星期日上午9点", at(11, 29, 9)),
    ("礼拜天上午9点", at(11, 29, 9)),
    ("周7 9:00", at(11, 29, 9)),
    ("下周三晚上7点", at(12, 2, 19)),
    ("下个星期一上午9点", at(11, 30, 9)),
    ("下下周三 9:00", at(12, 9, 9)),
    ("这周六上午9点", at(11, 28, 9)),
    ("本周一上午9点", at(11, 23, 9)),  # this week's Monday is past: the caller decides
])
def test_weekdays(text, expected):
    assert local(text) == expected


def test_month_day_before_today_means_next_year():
    assert local("11月1日 9:00") == at(11, 1, 9, year=2027)
    assert local("11月24日 9:00") == at(11, 24, 9)  # today stays today, even if the hour has passed
    assert local("1月5日 9:00") == at(1, 5, 9, year=2027)


DEC_6 = datetime(2026, 12, 6, 10, 0, tzinfo=ZONE)
NEW_YEARS_EVE = datetime(2026, 12, 31, 20, 0, tzinfo=ZONE)


@pytest.mark.parametrize("text, now, expected, guessed", [
    # A month and day already past this year is next year's, and says so: the caller asks.
    ("11月28日 14:30", DEC_6, at(11, 28, 14, 30, year=2027), True),
    ("1月5日 9:00", NOW, at(1, 5, 9, year=2027), True),
    ("2月29日 9:00", datetime(2027, 11, 1, 8, 0, tzinfo=ZONE), at(2, 29, 9, year=2028), True),
    # Still ahead this year, or the year said: nothing guessed.
    ("12月9日 14:30", DEC_6, at(12, 9, 14, 30), False),
    ("11月24日 9:00", NOW, at(11, 24, 9), False),
    ("2027年11月28日 14:30", DEC_6, at(11, 28, 14, 30, year=2027), False),
    # Into January the way anyone reads it: tomorrow, a day of next month, next week.
    ("明天上午9点", NEW_YEARS_EVE, at(1, 1, 9, year=2027), False),
    ("3号 9:00", datetime(2026, 12, 20, 8, 0, tzinfo=ZONE), at(1, 3, 9, year=2027), False),
    ("下周一 9:00", NEW_YEARS_EVE, at(1, 4, 9, year=2027), False),
])
def test_read_when_tells_when_next_year_was_guessed(text, now, expected, guessed):
    read = read_when(text, now=now, zone=ZONE)
    assert read.moment.astimezone(ZONE).replace(tzinfo=None) == expected
    assert read.next_year_guessed is guessed


def test_explicit_past_date_is_returned_as_is():
    assert local("2025年11月1日 9:00") == at(11, 1, 9, year=2025)


def test_year_rollover_for_relative_days_and_weekdays():
    new_years_eve = datetime(2026, 12, 31, 20, 0, tzinfo=ZONE)  # a Thursday
    assert local("明天上午9点", new_years_eve) == at(1, 1, 9, year=2027)
    assert local("后天上午9点", new_years_eve) == at(1, 2, 9, year=2027)
    assert local("下周一 9:00", new_years_eve) == at(1, 4, 9, year=2027)
    assert local("9点", new_years_eve) == at(1, 1, 9, year=2027)
    assert local("1月2日 9:00", new_years_eve) == at(1, 2, 9, year=2027)


def test_month_rollover_for_day_of_month():
    assert local("3号 9:00") == at(12, 3, 9)
    end_of_january = datetime(2027, 1, 31, 8, 0, tzinfo=ZONE)
    assert local("明天上午9点", end_of_january) == at(2, 1, 9, year=2027)
    with pytest.raises(WhenError):
        local("30号 9:00", end_of_january)  # there is no 30 February


def test_leap_day():
    # Never more than a year ahead: from November 2026 neither 2026 nor 2027 has a 29 February.
    with pytest.raises(WhenError):
        local("2月29日 9:00")
    assert local("2月29日 9:00", datetime(2027, 11, 1, 8, 0, tzinfo=ZONE)) == at(2, 29, 9, year=2028)
    assert local("2月29日 9:00", datetime(2028, 2, 1, 8, 0, tzinfo=ZONE)) == at(2, 29, 9, year=2028)
    with pytest.raises(WhenError):
        local("2月29日 9:00", datetime(2028, 3, 1, 8, 0, tzinfo=ZONE))  # past this year, and 2029 has none


def test_result_is_utc():
    moment = parse_when("明天下午3点", now=NOW, zone=ZONE)
    assert moment == datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)


def test_now_in_utc_is_read_in_the_zone():
    # 23:30 UTC on the 24th is 07:30 on the 25th in Shanghai: "明天" is the 26th.
    now = datetime(2026, 11, 24, 23, 30, tzinfo=timezone.utc)
    assert local("明天上午9点", now) == at(11, 26, 9)


@pytest.mark.parametrize("text", ["大后天", "这周六", "明天", "11月28日", "明天下午", "今晚", "周五"])
def test_date_without_time_asks_for_the_time(text):
    with pytest.raises(WhenError, match="几点"):
        local(text)


@pytest.mark.parametrize("text", [
    "", "   ", "下次再说", "明天下午3点或4点", "明天后天3点", "明天下午3点 15:00", "25点", "晚上12点",
    "上午15点", "凌晨9点", "13月1日 9:00", "2月30日 9:00", "11月31日 9:00", "下午3点61分", "明天晚上下午3点",
    "中午5点", "2026-02-30 9:00", "3点5刻", "明天 abc 3点",
])
def test_unclear_phrases_are_refused(text):
    with pytest.raises(WhenError) as raised:
        local(text)
    assert "例如" in str(raised.value)


def test_when_error_is_a_value_error():
    assert issubclass(WhenError, ValueError)


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_when("明天下午3点", now=datetime(2026, 11, 24, 10), zone=ZONE)
