"""What a branch's secretary and deputy keep for study in chat: 学习情况 (who has not yet done the current items,
to help them — never a ranking), 送学上门 (the members the branch brings study to: list, mark, unmark) and,
once a month, the list of those members with the items to bring.

Everything is the leader's own branch only. Members are listed in roster order (name), never by hours or by
what they did; there are counts per item, never a figure per person.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.dispatch import Command, Context, MemberRole, Refusal, SkipHandler
from bot.members import member_named
from bot.outbox import Outgoing, enqueue
from bot.summary import Summary
from handlers.study import service
from handlers.study.common import router
from handlers.study.settings import StudySettings
from storage import study as store
from storage.members import bound_leaders
from storage.models import BRANCH_LEADERS, Member, Organization, OrgType, StudyItem

log = logging.getLogger(__name__)

LEADERS = BRANCH_LEADERS
router.reminds("每月的送学上门名单", roles=LEADERS)

NOT_A_BRANCH = "学习情况按党支部看，您所在的组织不是党支部。"
NO_ITEMS = "现在没有正在学的内容。"
SUMMARY_HEAD = "{branch}学习情况（只发给您，帮着提醒用）："
ITEM_LINE = "“{title}”（{ends}前）：已学 {done} 人。"
NOT_YET = "还没学的：{names}"
ALL_DONE = "要学的人都学过了。"
AT_HOME_LINE = "送学上门的 {count} 人（不推送、不催）：{names}。回复 送学上门 看要带去的内容。"
UNBOUND_LINE = "没绑定微信的 {count} 人（收不到推送，方便时当面说一声）：{names}"
SUMMARY_TAIL = "提醒时说一句“有空看看就行”就好；回复 学习 可以先看看内容。"
AT_HOME_NONE = ("本支部还没有送学上门的党员。\n年纪大、身体不好、生病的党员，可以回复：送学上门 姓名\n"
                "标上之后不再给他推送和催学，每月初把名单和要带去的内容发给书记。")
AT_HOME_HEAD = "本支部送学上门的党员（{count} 人）：{names}"
BRING_HEAD = "这个月可以带去的学习内容："
BRING_LINE = "· {title}（约 {minutes} 分钟，{ends}前）：{summary}"
BRING_NONE = "这个月还没有学习内容。"
AT_HOME_TAIL = "加人：送学上门 姓名；去掉：取消送学上门 姓名"
MARKED = "已把{name}标为送学上门：不再给{name}推送学习内容和提醒，每月初的送学名单里会有{name}。"
ALREADY_MARKED = "{name}已经是送学上门了。"
UNMARKED = "已取消{name}的送学上门，以后每周的学习内容照常发给{name}（{name}自己关了提醒的除外）。"
NOT_MARKED = "{name}不是送学上门的党员，不用取消。"
ASK_UNMARK = "请回复：取消送学上门 姓名"
MONTHLY = "【送学上门】{month}月\n{people}\n{bring}\n方便时上门一起学；学完可在 学习情况 里看。"

NAMES_SHOWN = 30
# The monthly 送学上门 list goes on the 1st, or on a later day of the month's first week if the service was down.
AT_HOME_LIST_DAYS = 7
# "送学上门是什么" and the like are questions for the policy answers, not a name.
QUESTION = re.compile(r"[吗么呢嘛？?]|什么|啥|怎|咋|如何|哪|多少|几|是否|能不能|可以|有没有|规定|条例|政策")


def names_text(people: list[Member]) -> str:
    names = [person.name for person in people[:NAMES_SHOWN]]
    more = f"……共 {len(people)} 人" if len(people) > NAMES_SHOWN else ""
    return "、".join(names) + more


async def _branch(session: AsyncSession, member: Member) -> Organization:
    branch = await session.get(Organization, member.org_id)
    if branch is None or branch.org_type != OrgType.BRANCH.value:
        raise Refusal(NOT_A_BRANCH)
    return branch


def summary_text(branch: Organization, items: list[StudyItem], states: list[store.MemberStudyState]) -> str:
    """The leader's summary: per item, how many did it and who has not yet (roster order); 送学上门 and unbound
    members apart, since they get no pushes."""
    pushed = [state for state in states if state.bound and not state.at_home]
    lines = [SUMMARY_HEAD.format(branch=branch.name)]
    for item in items:
        done = sum(item.id in state.done for state in states)
        lines.append(ITEM_LINE.format(title=item.title, ends=service.day_text(item.ends_on), done=done))
        missing = [state.member for state in pushed if item.id not in state.done]
        lines.append(NOT_YET.format(names=names_text(missing)) if missing else ALL_DONE)
    at_home = [state.member for state in states if state.at_home]
    if at_home:
        lines.append(AT_HOME_LINE.format(count=len(at_home), names=names_text(at_home)))
    unbound = [state.member for state in states if not state.bound and not state.at_home]
    if unbound:
        lines.append(UNBOUND_LINE.format(count=len(unbound), names=names_text(unbound)))
    lines.append(SUMMARY_TAIL)
    return "\n".join(lines)


@router.text("学习情况", "学习统计", roles=LEADERS, usage="学习情况", summary="看本支部谁还没学这段时间的内容，好帮着提醒")
async def branch_summary(ctx: Context, member: Member) -> str:
    branch = await _branch(ctx.session, member)
    items = await store.current_items(ctx.session, branch.path, ctx.today)
    if not items:
        return NO_ITEMS
    states = await store.branch_states(ctx.session, branch.id, [item.id for item in items])
    return summary_text(branch, items, states)


def month_bounds(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return first, last


async def bring_text(session: AsyncSession, branch: Organization, today: date) -> str:
    """The items of this month reaching the branch, to bring to the 送学上门 members."""
    first, last = month_bounds(today)
    items = [item for item in await store.items_between(session, branch.path, first, last) if item.ends_on >= today]
    if not items:
        return BRING_NONE
    return "\n".join([BRING_HEAD] + [BRING_LINE.format(title=item.title, minutes=item.minutes,
                                                       ends=service.day_text(item.ends_on), summary=item.summary)
                                     for item in items])


def _at_home(states: list[store.MemberStudyState]) -> list[Member]:
    return [state.member for state in states if state.at_home]


# Only leaders' messages match (MemberRole), so a member's "送学上门是什么意思" goes on to the policy answers.
@router.on(Command("送学上门", "送学上门名单", takes_args=True) & MemberRole(*LEADERS), roles=LEADERS,
           usage="送学上门", summary="看、加送学上门的党员（送学上门 姓名），每月初收到名单")
async def at_home(ctx: Context, member: Member, written_args: str) -> str:
    if written_args and QUESTION.search(written_args):
        raise SkipHandler
    branch = await _branch(ctx.session, member)
    if not written_args:
        people = _at_home(await store.branch_states(ctx.session, branch.id, []))
        if not people:
            return AT_HOME_NONE
        return "\n".join([AT_HOME_HEAD.format(count=len(people), names=names_text(people)),
                          await bring_text(ctx.session, branch, ctx.today), AT_HOME_TAIL])
    return await _mark(ctx, member, branch, written_args, at_home=True)


@router.text("取消送学上门", "不用送学上门", takes_args=True, roles=LEADERS)
async def not_at_home(ctx: Context, member: Member, written_args: str) -> str:
    if not written_args:
        return ASK_UNMARK
    return await _mark(ctx, member, await _branch(ctx.session, member), written_args, at_home=False)


async def _mark(ctx: Context, member: Member, branch: Organization, written: str, *, at_home: bool) -> str:
    """Mark (or unmark) the branch member the leader named as 送学上门; saying so when nothing changes."""
    person = await member_named(ctx.session, branch.id, written)
    profile = await store.profile_of(ctx.session, person.id)
    if (profile is not None and profile.at_home) == at_home:
        return (ALREADY_MARKED if at_home else NOT_MARKED).format(name=person.name)
    await store.set_profile(ctx.session, person.id, ctx.now, at_home=at_home)
    log.info("member %s %s 送学上门 (by %s)", person.id, "marked" if at_home else "no longer", member.id)
    return (MARKED if at_home else UNMARKED).format(name=person.name)


async def send_at_home_lists(session: AsyncSession, *, now: datetime, settings: StudySettings) -> int:
    """Once a month, from the push time on its first day: each branch's bound secretaries and deputies get the
    list of their 送学上门 members with the month's items. A service that was down on the 1st sends it on its
    first sweep within the month's first week; later, the list waits for the next month (a secretary who marks
    someone mid-month has just seen it with 送学上门). The outbox key "study:at-home:<month>:<leader>" keeps it
    to one a month whatever the sweeps do."""
    today = now.astimezone(settings.zone).date()
    if today.day > AT_HOME_LIST_DAYS or not service.at_or_after_push_time(now, settings):
        return 0
    month = today.strftime("%Y-%m")
    messages = []
    for branch_id in await store.branches_with_at_home(session):
        branch = await session.get(Organization, branch_id)
        people = _at_home(await store.branch_states(session, branch_id, []))
        if branch is None or not people:
            continue
        text = MONTHLY.format(month=today.month, people=AT_HOME_HEAD.format(count=len(people), names=names_text(people)),
                              bring=await bring_text(session, branch, today))
        for leader in await bound_leaders(session, branch):
            messages.append(Outgoing(
                key=f"study:at-home:{month}:{leader.id}", kind=service.MESSAGE_KIND, member_id=leader.id, text=text,
                reminder=True, summary=Summary(title="送学上门名单", content="、".join(person.name for person in people),
                                               time=f"{today.month}月")))
    return await enqueue(session, messages, now=now, settings=settings) if messages else 0
