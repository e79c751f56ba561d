"""Finding the branch member a leader's reply names ("王秀英", or "王秀英 1234" among namesakes).

Features that let a secretary name a member in chat (care's 改派 and 走访联系人, study's 送学上门) share it, so the
replies for an unknown name or namesakes read the same everywhere. Namesakes are never guessed between.
"""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from bot.dispatch import Refusal
from storage.members import namesakes
from storage.models import Member

UNKNOWN_NAME = "本支部党员里没有“{name}”，请核对后重新回复姓名。"
WHICH_NAMESAKE = "本支部有 {count} 位党员叫{name}，请在姓名后加手机尾号 4 位，例如：{name} {example}"
NO_PHONE_END = "本支部叫{name}的党员里，没有手机尾号是 {end} 的，请核对后重新回复。"
MAX_NAME = 20

_NAME_AND_END = re.compile(r"([^\s0-9]+)\s*([0-9]{4})?")


async def member_named(session: AsyncSession, branch_id: int, written: str, *, unknown_hint: str = "") -> Member:
    """The member of the branch a reply names; a Refusal that says what to reply otherwise."""
    match = _NAME_AND_END.fullmatch(written.strip())
    if match is None:
        raise Refusal(UNKNOWN_NAME.format(name=written.strip()[:MAX_NAME]) + unknown_hint)
    name, end = match.group(1), match.group(2) or ""
    people = await namesakes(session, branch_id, name)
    if not people:
        raise Refusal(UNKNOWN_NAME.format(name=name[:MAX_NAME]) + unknown_hint)
    chosen = [person for person in people if person.phone.endswith(end)] if end else people
    if not chosen:
        raise Refusal(NO_PHONE_END.format(name=name, end=end))
    if len(chosen) > 1:
        example = next((person.phone[-4:] for person in chosen if person.phone), "1234")
        raise Refusal(WHICH_NAMESAKE.format(count=len(chosen), name=name, example=example))
    return chosen[0]
