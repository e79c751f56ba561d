"""The meetings feature's settings (ZHIBU_* variables, like the core's)."""

from __future__ import annotations

from pydantic import Field, field_validator

from bot.config import Settings


class MeetingSettings(Settings):
    # Meeting check-in is open from this many minutes before the start to this many after.
    checkin_window_before_minutes: int = Field(default=30, ge=0)
    checkin_window_after_minutes: int = Field(default=60, ge=0)
    # A check-in this many minutes after the start is marked late on the sign-in sheet.
    late_after_minutes: int = Field(default=10, ge=0)
    # A secretary's photo this many hours after a meeting started is attached to it as evidence.
    meeting_photo_hours: float = Field(default=6.0, gt=0)
    # 党课 a branch should hold per year. The 条例 asks for at least one; once a quarter (4) is a common
    # local rule, so it is a setting. It must divide 12 (1, 2, 3, 4, 6 or 12) so periods are whole months.
    lecture_per_year: int = Field(default=4, ge=1, le=12)
    # Days before a month, quarter or year ends when secretaries hear which required meetings are missing.
    compliance_reminder_days: int = Field(default=7, ge=1, le=27)

    @field_validator("lecture_per_year")
    @classmethod
    def _whole_months(cls, value: int) -> int:
        if 12 % value:
            raise ValueError("ZHIBU_LECTURE_PER_YEAR must divide 12 (1, 2, 3, 4, 6 or 12)")
        return value
