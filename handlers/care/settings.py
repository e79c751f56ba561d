"""The care feature's settings (ZHIBU_* variables, like the core's).

The occasions are a setting because places differ: most keep 五必访, some add a sixth (六必访). Each occasion
has the hours a visit is due within; festival cases are due on the festival itself.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from bot.config import Settings


class Occasion(BaseModel):
    """One reason a visit is due, as members see it in the numbered list."""

    name: str = Field(min_length=1, max_length=20)
    # A visit is due this many hours after the case opens.
    due_hours: int = Field(ge=1, le=24 * 90)
    # Everyday words that name it in a report ("住院" → 生病住院); matched on the normalized text.
    words: list[str] = Field(default_factory=list)


class Festival(BaseModel):
    """A festival campaign: who is visited, and when it is (a lunar or a solar month and day)."""

    name: str = Field(min_length=1, max_length=10)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    lunar: bool = False
    # Who besides the hardship register and the branch's own festival list: "age70" (aged 70 and over),
    # "party50" (50 years or more in the party: the 光荣在党50年 medal) or "old_cadre" (老干部).
    also: list[str] = Field(default_factory=list)

    @field_validator("also")
    @classmethod
    def _known_groups(cls, value: list[str]) -> list[str]:
        unknown = set(value) - {"age70", "party50", "old_cadre"}
        if unknown:
            raise ValueError(f"unknown festival groups {sorted(unknown)}: use age70, party50 or old_cadre")
        return value


FESTIVAL_OCCASION = "节日慰问"

DEFAULT_OCCASIONS = [
    Occasion(name=FESTIVAL_OCCASION, due_hours=24 * 14, words=["节日", "过节", "慰问"]),
    Occasion(name="生病住院", due_hours=48, words=["住院", "生病", "病了", "开刀", "手术", "病重"]),
    Occasion(name="灾害事故", due_hours=24, words=["受灾", "着火", "失火", "火灾", "洪水", "房子塌", "倒塌", "车祸", "出事", "事故", "摔伤"]),
    Occasion(name="家中丧事", due_hours=24, words=["去世", "过世", "走了", "丧事", "病逝"]),
    Occasion(name="生活困难", due_hours=24 * 7, words=["困难", "生活难", "没钱", "揭不开锅", "失业", "没活干"]),
]

DEFAULT_FESTIVALS = [
    Festival(name="元旦", month=1, day=1),
    Festival(name="春节", month=1, day=1, lunar=True),
    Festival(name="七一", month=7, day=1, also=["party50", "old_cadre"]),
    Festival(name="中秋", month=8, day=15, lunar=True),
    Festival(name="重阳", month=9, day=9, lunar=True, also=["age70"]),
]


class CareSettings(Settings):
    # The occasions members pick from when they report (JSON list of {name, due_hours, words}).
    care_occasions: list[Occasion] = Field(default_factory=lambda: list(DEFAULT_OCCASIONS))
    # A second report of the same occasion for the same member within this many days joins the open case.
    care_join_days: int = Field(default=14, ge=0, le=365)
    # The festival campaigns (JSON list of {name, month, day, lunar, also}), and how many days ahead of the
    # festival their cases open.
    care_festivals: list[Festival] = Field(default_factory=lambda: list(DEFAULT_FESTIVALS))
    care_festival_lead_days: int = Field(default=10, ge=1, le=60)
    # A case past its deadline reminds its visitor once; this many hours after that it goes to the township.
    care_escalate_after_hours: int = Field(default=24, ge=1, le=24 * 14)
    # The secretaries' daily list of open and overdue cases goes out at this local time (only when not empty).
    care_digest_time: str = "08:30"
    # Photos a visitor sends within this many hours of recording a visit are attached to it.
    care_photo_hours: float = Field(default=6.0, gt=0)

    @field_validator("care_occasions")
    @classmethod
    def _one_festival_occasion(cls, value: list[Occasion]) -> list[Occasion]:
        names = [occasion.name for occasion in value]
        if len(set(names)) != len(names):
            raise ValueError("ZHIBU_CARE_OCCASIONS names must differ")
        if FESTIVAL_OCCASION not in names:
            raise ValueError(f"ZHIBU_CARE_OCCASIONS must keep {FESTIVAL_OCCASION} (festival campaigns open it)")
        return value

    @field_validator("care_digest_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hours, _, minutes = value.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("ZHIBU_CARE_DIGEST_TIME must be HH:MM")
        return value

    def occasion(self, name: str) -> Occasion | None:
        return next((occasion for occasion in self.care_occasions if occasion.name == name), None)
