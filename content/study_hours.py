"""Study hours still to do this year, worked out from the hours a member says they have: "今年学了二十个学时 还差几个",
"俺才记了18个学时 够不够".

The rule (中国共产党党员教育管理工作条例, art. 20): a member's concentrated study and training is generally at least
32 学时 a year. Secretaries and committee members have a higher figure from the national training plan, which the
county and township set; the answer says so rather than computing it. Hours are for the member to see their own
progress: the answer ranks no one. This module imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import re
import unicodedata

from content.amounts import figure
from content.computed import Computed

MEMBER_HOURS = 32
SOURCE = "中国共产党党员教育管理工作条例"
# 学识 is how speech recognition often writes 学时 ("登记学识").
_HOURS_SAID = re.compile(r"([0-9]{1,3}|[零〇一二两三四五六七八九十百]{1,4})\s*(?:个)?\s*(?:学时|学识)")
# Hours said for each month or each session ("每个月学两个学时"): the year's total is not what was said.
_PER_PERIOD = re.compile(r"(每|一)(个)?(月|周|星期|礼拜|回|次|季度)[^，。,；;]{0,8}$")
# What follows from falling short (会不会挨处分, 补不上咋办): study-hours-short's question, not a count.
_CONSEQUENCE = re.compile(r"处分|挨批|批评|后果|会怎样|会咋样|咋办|怎么办|要紧|有事没|有啥事")
# The hours of the training before joining (发展对象培训, 入党培训): join-training's question, not a member's year.
_JOINING = re.compile(r"发展对象|积极分子|入党前|入党(的)?培训")
_ASKS_LEFT = re.compile(r"还差|差几|差多少|够不够|够了没|够没够|够了吗|够数|还要学|还得学|还剩|剩多少|达标|达没达标|够了不")


def compute(question: str) -> Computed | None:
    text = unicodedata.normalize("NFKC", question).lower()
    said = _HOURS_SAID.search(text)
    if said is None or not _ASKS_LEFT.search(text) or _CONSEQUENCE.search(text) or _JOINING.search(text):
        return None
    if _PER_PERIOD.search(text[:said.start()]):
        return None  # a rate, not the year's hours: the entry's general answer, not a wrong sum
    hours = figure(said.group(1))
    if hours is None or hours != int(hours) or hours > 500:
        return None
    hours = int(hours)
    if hours >= MEMBER_HOURS:
        verdict = f"按您说的今年已经学了{hours}个学时，够了这个数。"
    else:
        verdict = f"按您说的今年已经学了{hours}个学时，还差{MEMBER_HOURS - hours}个。"
    return Computed(("study-hours-member",), (
        f"按《中国共产党党员教育管理工作条例》第二十条，党员每年集中学习培训一般不少于{MEMBER_HOURS}个学时。{verdict}支部书记、支委等班子成员要求更高，"
        "以县、乡镇的要求为准。学时是帮自己看进度的，不排名；年老体弱、行动不便的党员不作硬性要求，支部会送学上门。"),
        SOURCE, "第二十条")
