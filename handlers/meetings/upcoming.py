"""开会时间: a member asks when the next meeting is, in whatever words they use.

Members ask it as they would ask a neighbour, typed or by voice: 下次开会啥时候, 开会是哪天, 最近有会吗.
The command words (开会时间 …) go through Command like any other; the everyday questions through
MeetingQuestion, a whole-message pattern. Whole-message, so that a longer policy question that happens to
contain 开会 (开会迟到多少分钟算迟到) still reaches the policy answers, and 开会 alone stays the
secretary's command to call one.
"""

from __future__ import annotations

import re
import unicodedata

from bot.dispatch import MEMBER_BOUND, Click, Context, Filter, typed_text
from handlers.meetings.common import (
    UPCOMING_ITEM,
    UPCOMING_LEAVE,
    UPCOMING_MANY,
    UPCOMING_MORE,
    UPCOMING_NONE,
    UPCOMING_ONE,
    UPCOMING_OPEN,
    _when,
    _window,
    router,
)
from storage import meetings as store
from storage.models import BRANCH_LEADERS, MeetingKind, Member, Organization, Role

MAX_LISTED = 5

_ASK = r"(?:请问|我想问一?下|我想问问|想问一?下|问一?下|问问)?"
_WHO = r"(?:我们|咱们|俺们|我|咱|俺)?(?:村里?|党?支部|党?小组)?的?"
_NEXT = r"(?:下一?次|下一?回|下一场|最近一次|最近|近期|这一?次|这回|本次|这个?月|本月|下个?月|这周|本周|下周)"
_WHEN = r"(?:啥时候|什么时候|啥时间|什么时间|几时|哪一?天|几月几号|几号|几点|啥日子|哪个日子)"
_MEETING = r"(?:开会|会议|会)"
_ASKED = re.compile("|".join([
    # 下次开会啥时候 · 开会是哪天 · 会议定在几号 · 下次会议什么时候开
    rf"{_ASK}{_WHO}{_NEXT}?的?{_MEETING}(?:是|在|定在|定的|安排在)?{_WHEN}(?:开|召开|开始)?",
    # 什么时候开会 · 下次哪天有会 · 最近几号开会
    rf"{_ASK}{_WHO}{_NEXT}?(?:是|要|得)?{_WHEN}(?:开会|有会|开会议|召开会议)",
    # 最近有会吗 · 下周开会吗 · 这个月有没有会 · 开会吗
    rf"{_ASK}{_WHO}{_NEXT}?(?:有没有|要不要|开不开|有)(?:会议?|开会)(?:要开)?",
    rf"{_ASK}{_WHO}{_NEXT}?(?:有|要|还)?(?:会议?|开会)(?:吗|没有|没|不)",
    rf"{_ASK}{_WHO}{_NEXT}?(?:有|开)(?:啥|什么|哪些)会议?",
    # 下次开会 · 最近的会议 (a time word makes it a question; 开会 alone is the secretary's command)
    rf"{_ASK}{_WHO}{_NEXT}的?{_MEETING}",
    # 开会时间 · 下次会议的时间是啥 · 会议安排
    rf"{_ASK}{_WHO}{_NEXT}?的?{_MEETING}的?(?:时间|日期|日子|安排)(?:是|在)?(?:啥|什么|哪天|几号)?",
]))
# Words people end a spoken question with; they carry no meaning here.
_TRAILING = re.compile(r"[啊呀呢哪嘛吧哇哦啦嘞咧呐捏]+$")


class MeetingQuestion(Filter):
    """A whole message asking when the next meeting is, punctuation and trailing particles aside."""

    def __call__(self, message, ctx):
        text = typed_text(message)
        if text is None or "会" not in text:
            return None  # every question this filter knows names 会 (开会, 会议, 有会): most texts are no such question
        # Voice recognition punctuates (下次开会，是什么时候？); people type spaces. Neither matters here.
        bare = "".join(char for char in text if not unicodedata.category(char).startswith(("P", "Z", "S")))
        return _ASKED.fullmatch(_TRAILING.sub("", bare)) is not None


@router.when(MEMBER_BOUND)
async def meetings_for_the_newly_bound(ctx: Context, member: Member) -> str | None:
    """A member who just bound hears of the meetings ahead, which they were not told of unbound."""
    listing = await next_meetings(ctx, member)
    return None if listing == UPCOMING_NONE else listing


@router.text("开会时间", "会议时间", "开会安排", "会议安排", bound=True, usage="开会时间",
             summary="看近期要开的会（时间、地点、议题）")
@router.on(MeetingQuestion(), bound=True)
@router.on(Click("MEETINGS"), bound=True)
async def next_meetings(ctx: Context, member: Member) -> str:
    """The meetings ahead a member is expected at (a secretary: all the branch's), soonest first. One
    whose check-in is open still counts: someone asking at 15:05 needs to hear it is on now."""
    leader = Role(member.role) in BRANCH_LEADERS
    _, after = _window(ctx.settings)
    ahead = [meeting for meeting in await store.upcoming_meetings(ctx.driver, member.org_id, ctx.now - after)
             if leader or store.expects(meeting, member)]
    if not ahead:
        return UPCOMING_NONE
    before, _ = _window(ctx.settings)
    items = []
    for meeting in ahead[:MAX_LISTED]:
        group = ""
        if meeting.kind == MeetingKind.GROUP.value and meeting.group_id is not None:
            found = await ctx.session.get(Organization, meeting.group_id)
            group = f"（{found.name}）" if found else ""
        is_open = meeting.starts_at - before <= ctx.now
        items.append(UPCOMING_ITEM.format(kind=meeting.kind, group=group, place=meeting.place, topic=meeting.topic,
                                          when=_when(ctx.settings, meeting.starts_at, ctx.now),
                                          open=UPCOMING_OPEN if is_open else ""))
    if len(items) == 1:
        blocks = [UPCOMING_ONE + items[0]]
    else:
        # A blank line between meetings: each reads as its own notice on a phone.
        blocks = [UPCOMING_MANY.format(count=len(ahead)) + "\n1. " + items[0]]
        blocks += [f"{n}. {item}" for n, item in enumerate(items[1:], start=2)]
        if len(ahead) > MAX_LISTED:
            blocks.append(UPCOMING_MORE.format(count=len(ahead) - MAX_LISTED))
    # Leave is asked before the start, for a meeting one is expected at.
    for meeting in ahead:
        if meeting.starts_at > ctx.now and store.expects(meeting, member):
            blocks.append(UPCOMING_LEAVE)
            break
    return "\n\n".join(blocks)
