"""When festivals fall, and who a festival campaign visits.

Lunar dates come from lunar_python (6tail's lunar calendar, maintained, with the official tables), never
from a table written here: 春节 2027 is 2027-02-06, 中秋 2026 is 2026-09-25.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from lunar_python import Lunar

from handlers.care.settings import Festival


@dataclass(frozen=True)
class Campaign:
    """One festival in one year: its cases share the key and are due on the day."""

    festival: Festival
    day: date

    @property
    def key(self) -> str:
        return f"{self.festival.name}:{self.day.year}"

    @property
    def label(self) -> str:
        return f"{self.day.year}年{self.festival.name}"


def festival_day(festival: Festival, year: int) -> date:
    """The solar date of a festival in a (solar) year. A lunar festival's lunar year is taken as the solar
    year it falls in: lunar 1/1 of lunar year Y is always in January or February of solar year Y."""
    if festival.lunar:
        solar = Lunar.fromYmd(year, festival.month, festival.day).getSolar()
        return date(solar.getYear(), solar.getMonth(), solar.getDay())
    return date(year, festival.month, festival.day)


def campaigns_opening(festivals: list[Festival], today: date, lead_days: int) -> list[Campaign]:
    """The campaigns whose window is open today: the festival is at most lead_days ahead and not yet past.
    A job that did not run for a few days still opens them (the window, not one day, decides)."""
    found = []
    for festival in festivals:
        for year in (today.year, today.year + 1):
            day = festival_day(festival, year)
            if today <= day <= today + timedelta(days=lead_days):
                found.append(Campaign(festival, day))
    return found


def age_on(birth: date | None, day: date) -> int | None:
    if birth is None:
        return None
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
