"""The study feature's settings (ZHIBU_* variables, like the core's)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from bot.config import Settings


class StudySettings(Settings):
    # One 学时 is this many minutes of an item's estimated time.
    study_minutes_per_hour: int = Field(default=45, ge=1, le=120)
    # The yearly requirement: 32 学时 for every member (《中国共产党党员教育管理工作条例》, 2019, art. 20).
    study_hours_member: float = Field(default=32, ge=0, le=500)
    # Secretaries, deputies and committee members: the higher figure comes from the national party-member
    # education and training plan (全国党员教育培训工作规划; 56 学时 in the 2019–2023 plan), not from the 条例.
    # A 2024–2028 plan succeeded it: confirm the figure locally before relying on it.
    study_hours_leader: float = Field(default=56, ge=0, le=500)
    # Hours an attended meeting of each kind adds (from its check-ins).
    study_meeting_hours: dict[str, float] = Field(default_factory=lambda: {"党课": 2.0, "主题党日": 2.0})
    # The weekly push: weekday (1 = Monday … 7 = Sunday) and local time.
    study_push_weekday: int = Field(default=1, ge=1, le=7)
    study_push_time: str = "08:00"
    # One gentle chaser this many days before an item's period ends, to those who have not done it.
    study_chaser_days: int = Field(default=3, ge=1, le=30)
    # The folder of study item files (default content/study).
    study_dir: Path | None = None

    @field_validator("study_push_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hours, _, minutes = value.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("ZHIBU_STUDY_PUSH_TIME must be HH:MM")
        return value
