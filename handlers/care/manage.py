"""What branch leaders keep in chat: 改派 (another visitor), 走访情况 (the festival campaigns' progress and the open
cases), the hardship register (困难党员, 移出困难党员), a member's designated visitor (走访联系人); and what a member
concerned may ask: 不让上报人看 (reporters no longer see the cases about them).

Everything is the leader's own branch only: another branch's cases are never listed or named. Lists are in
deadline or roster order, never a ranking of anyone.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.dialogs import Picked, offer
from bot.dispatch import AnyCommand, AnyText, Command, Context, Dialog, MemberRole, Refusal, SkipHandler, typed_text
from handlers.care import service
from handlers.care.common import LEADERS, REASSIGN, router
from bot.members import member_named
from handlers.care.report import branch_of, case_label, subject_label
from storage import care as store
from storage.identities import by_member
from storage.models import CareCase, CareProfile, CareStatus, Member

log = logging.getLogger(__name__)

# -- texts
NO_OPEN = "本支部现在没有未完成的走访。"
PICK_REASSIGN = "改派哪一件？回复数字：\n{options}"
ASK_NEW_VISITOR = "{subject}（{occasion}）现在由 {visitor} 走访。\n改派给谁？请回复本支部党员的姓名。"
SAME_VISITOR = "现在就是 {name} 在走访，没有改。"
REASSIGNED = "已改派：{subject}（{occasion}）改由 {name} 走访，期限不变（{deadline}）。{told}"
TOLD = "已通知{name}。"
NOT_REACHED = "{name}没绑定微信，收不到通知，请当面告诉。"
CASE_GONE = "这件事已经走访过，或不是本支部的了。回复 改派 重新看看。"
STATUS_HEAD = "{branch}走访情况："
STATUS_CAMPAIGN = "· {label}：已走访 {visited}，未走访 {open}{overdue}"
STATUS_OPEN = "还没走访的 {count} 件（最急的在前）："
STATUS_CASE = "· {label}，走访人 {visitor}"
STATUS_TAIL = "回复 改派 可以换走访人。"
REGISTER_EMPTY = "本支部困难党员台账里还没有人。\n登记：困难党员 姓名 困难程度 原因\n例如：困难党员 王秀英 一般困难 老伴常年卧床，看病花销大"
REGISTER_HEAD = "本支部困难党员台账（{count} 人）："
REGISTER_LINE = "· {name}{details}"
REGISTER_TAIL = "登记或修改：困难党员 姓名 困难程度 原因\n移出：移出困难党员 姓名"
REGISTERED = "已登记到困难党员台账：{name}{details}。\n节日走访会把{name}算上。回复 困难党员 查看台账。"
ALREADY_OFF = "{name}不在困难党员台账上。"
REMOVED = "已把{name}移出困难党员台账，以前的走访记录都还在。"
ASK_REMOVE = "请回复：移出困难党员 姓名"
ASK_CONTACT = "请回复：走访联系人 党员姓名 联系人姓名\n例如：走访联系人 王秀英 张卫东（以后王秀英的走访由张卫东去）"
CONTACT_IS = "{name}的走访联系人是 {contact}。要换人请回复：走访联系人 {name} 联系人姓名"
CONTACT_NONE = "{name}还没有走访联系人，有事由书记去。设置请回复：走访联系人 {name} 联系人姓名"
CONTACT_SET = "好的，以后{name}的走访由 {contact} 负责。已经在办的走访不变，需要的话回复 改派。"
CONTACT_CLEARED = "好的，{name}不再设走访联系人，以后由书记走访。"
CONTACT_SELF = "走访联系人不能是本人，请换一位党员。"
HIDDEN = "好的，关于您的 {count} 件走访，上报的人不会再看到详情。以后再有人上报您的情况，需要的话再回复一次。"
HIDDEN_NONE = "现在没有关于您的走访记录。以后有人上报您的情况，想不让上报的人看，再回复 不让上报人看。"
TOO_LONG = "{what}太长了（最多 {limit} 字），请精简后重新发送。"

CLEAR_WORDS = frozenset({"无", "没有", "取消", "不要", "不设", "书记"})
# Words after 困难党员 that ask for the register itself, not a member's entry.
LIST_WORDS = frozenset({"", "台账", "台帐", "名单", "名册", "花名册", "登记", "情况", "列表"})
# A question about hardship ("困难党员有什么补助") is the policy answers', even from a secretary.
QUESTION = re.compile(r"[吗么呢嘛？?]|什么|啥|怎|咋|如何|哪|多少|几|是否|能不能|可以|有没有|补助|补贴|帮扶|政策|标准|申请|认定|条件")
MAX_LEVEL = 20
MAX_REASON = 500


# ---------------------------------------------------------------- 改派


@router.text("改派", "改派走访", "换走访人", roles=LEADERS, usage="改派", summary="把一件走访换给别的党员去")
async def start_reassign(ctx: Context, dialog: Dialog, member: Member) -> str:
    cases = await store.open_cases_of_branch(ctx.session, member.org_id)
    if not cases:
        return NO_OPEN
    names = await _visitor_names(ctx.session, cases)
    options = [(case.id, f"{case_label(case, ctx.settings.zone, ctx.now)}，走访人 {names.get(case.visitor_id, '未定')}")
               for case in cases[:15]]
    dialog.start(REASSIGN, "pick")
    return offer(dialog, "pick", PICK_REASSIGN, options)


async def _visitor_names(session: AsyncSession, cases: list[CareCase]) -> dict[int, str]:
    ids = {case.visitor_id for case in cases if case.visitor_id is not None}
    if not ids:
        return {}
    return dict((await session.execute(select(Member.id, Member.name).where(Member.id.in_(ids)))).all())


async def _branch_case(session: AsyncSession, case_id, member: Member) -> CareCase:
    """An open case of the leader's own branch; a Refusal for anything else."""
    case = await session.get(CareCase, case_id)
    if case is None or case.org_id != member.org_id or case.status != CareStatus.OPEN.value:
        raise Refusal(CASE_GONE)
    return case


@router.on(Picked(), dialog=REASSIGN, step="pick")
async def reassign_pick(ctx: Context, dialog: Dialog, member: Member, picked: int) -> str:
    case = await _branch_case(ctx.session, picked, member)
    visitor = (await _visitor_names(ctx.session, [case])).get(case.visitor_id, "（未定）")
    dialog.goto("name", case_id=case.id)
    return ASK_NEW_VISITOR.format(subject=subject_label(case.subject_name, case.member_id), occasion=case.occasion,
                                  visitor=visitor)


@router.on(AnyText() & ~AnyCommand(), dialog=REASSIGN, step="name")
async def reassign_to(ctx: Context, dialog: Dialog, member: Member, written: str) -> str:
    session = ctx.session
    new_visitor = await member_named(session, member.org_id, written)
    case = await _branch_case(session, dialog.data["case_id"], member)
    dialog.finish()
    if case.visitor_id == new_visitor.id:
        return SAME_VISITOR.format(name=new_visitor.name)
    await service.reassign(session, case, new_visitor, now=ctx.now, settings=ctx.settings)
    identity = await by_member(session, new_visitor.id)
    reached = identity is not None and identity.subscribed
    told = "" if new_visitor.id == member.id else \
        TOLD.format(name=new_visitor.name) if reached else NOT_REACHED.format(name=new_visitor.name)
    return REASSIGNED.format(subject=subject_label(case.subject_name, case.member_id), occasion=case.occasion,
                             name=new_visitor.name, deadline=service.local_text(case.deadline, ctx.settings.zone),
                             told=told)


# ---------------------------------------------------------------- 走访情况


def _campaign_label(key: str) -> str:
    name, _, year = key.partition(":")
    return f"{year}年{name}" if year else name


@router.text("走访情况", "走访进度", "五必访情况", roles=LEADERS, usage="走访情况", summary="看节日走访的进度和还没走访的")
async def care_status(ctx: Context, member: Member) -> str:
    session, settings, now = ctx.session, ctx.settings, ctx.now
    branch = await branch_of(session, member)
    if branch is None:
        return NO_OPEN
    lines = [STATUS_HEAD.format(branch=branch.name)]
    for progress in (await store.campaign_progress(session, [branch.id], now))[:3]:
        lines.append(STATUS_CAMPAIGN.format(label=_campaign_label(progress.campaign), visited=progress.visited,
                                            open=progress.open,
                                            overdue=f"（已过节 {progress.overdue}）" if progress.overdue else ""))
    cases = await store.open_cases_of_branch(session, branch.id)
    if not cases:
        lines.append(NO_OPEN)
        return "\n".join(lines)
    names = await _visitor_names(session, cases)
    lines.append(STATUS_OPEN.format(count=len(cases)))
    lines += [STATUS_CASE.format(label=case_label(case, settings.zone, now), visitor=names.get(case.visitor_id, "未定"))
              for case in cases[:20]]
    if len(cases) > 20:
        lines.append(f"……共 {len(cases)} 件")
    lines.append(STATUS_TAIL)
    return "\n".join(lines)


# ---------------------------------------------------------------- the hardship register (困难党员台账)


async def _profile(session: AsyncSession, member: Member, leader: Member, now) -> CareProfile:
    profile = await store.profile_of(session, member.id)
    if profile is None:
        profile = CareProfile(member_id=member.id, updated_at=now)
        session.add(profile)
    profile.updated_by, profile.updated_at = leader.id, now
    return profile


def _entry(profile: CareProfile | None) -> str:
    if profile is None:
        return ""
    parts = [part for part in (profile.hardship_level, profile.hardship_reason) if part]
    if profile.hardship_since is not None:
        parts.append(f"{profile.hardship_since.year}年{profile.hardship_since.month}月起")
    return "：" + "，".join(parts) if parts else ""


_NAME_FIRST = re.compile(r"(\S+?)\s*([0-9]{4})?(?:\s+(.*))?", re.S)


# Only leaders' messages match (MemberRole), so a member's "困难党员有什么补助" goes on to the policy answers.
@router.on(Command("困难党员", "困难党员台账", takes_args=True) & MemberRole(*LEADERS), roles=LEADERS,
           usage="困难党员", summary="查看、登记困难党员台账（困难党员 姓名 困难程度 原因）")
async def hardship_register(ctx: Context, member: Member, args: str, written_args: str, command: str) -> str:
    session = ctx.session
    if args in LIST_WORDS:
        return await _register_list(session, member)
    match = _NAME_FIRST.fullmatch(written_args.strip())
    name_part = f"{match.group(1)} {match.group(2) or ''}".strip()
    rest = (match.group(3) or "").strip()
    try:
        person = await member_named(session, member.org_id, name_part)
    except Refusal:
        # No member of that name: "困难党员补助", "困难党员台账怎么建" are questions for the policy answers. An
        # entry is typed with a space after the word ("困难党员 王小二 一般"): then the name is wrong.
        if QUESTION.search(args) or not (typed_text(ctx.message) or "").startswith(f"{command} "):
            raise SkipHandler from None
        raise
    level, _, reason = rest.partition(" ") if rest else ("", "", "")
    level, reason = level.strip(), reason.strip()
    if len(level) > MAX_LEVEL:
        return TOO_LONG.format(what="困难程度", limit=MAX_LEVEL)
    if len(reason) > MAX_REASON:
        return TOO_LONG.format(what="原因", limit=MAX_REASON)
    profile = await _profile(session, person, member, ctx.now)
    if not person.hardship or profile.hardship_since is None:
        profile.hardship_since = ctx.today
    person.hardship = True
    person.updated_at = ctx.now
    if level:
        profile.hardship_level = level
    if reason:
        profile.hardship_reason = reason
    log.info("member %s on the hardship register (by %s)", person.id, member.id)
    return REGISTERED.format(name=person.name, details=_entry(profile))


async def _register_list(session: AsyncSession, member: Member) -> str:
    rows = (await session.execute(
        select(Member, CareProfile).outerjoin(CareProfile, CareProfile.member_id == Member.id)
        .where(Member.org_id == member.org_id, Member.hardship.is_(True)).order_by(Member.id))).all()
    if not rows:
        return REGISTER_EMPTY
    lines = [REGISTER_HEAD.format(count=len(rows))]
    lines += [REGISTER_LINE.format(name=person.name, details=_entry(profile)) for person, profile in rows]
    lines.append(REGISTER_TAIL)
    return "\n".join(lines)


@router.text("移出困难党员", "取消困难党员", takes_args=True, roles=LEADERS)
async def hardship_remove(ctx: Context, member: Member, written_args: str) -> str:
    if not written_args:
        return ASK_REMOVE
    person = await member_named(ctx.session, member.org_id, written_args)
    if not person.hardship:
        return ALREADY_OFF.format(name=person.name)
    person.hardship = False
    person.updated_at = ctx.now
    profile = await store.profile_of(ctx.session, person.id)
    if profile is not None:
        profile.updated_by, profile.updated_at = member.id, ctx.now
    log.info("member %s off the hardship register (by %s)", person.id, member.id)
    return REMOVED.format(name=person.name)


# ---------------------------------------------------------------- 走访联系人


@router.text("走访联系人", takes_args=True, roles=LEADERS, usage="走访联系人",
             summary="指定谁去走访某位党员（走访联系人 党员姓名 联系人姓名）")
async def set_contact(ctx: Context, member: Member, written_args: str) -> str:
    words = written_args.split()
    # A name may carry the phone's last four digits ("王秀英 1234"): they stay with the name before them.
    names: list[str] = []
    for word in words:
        if re.fullmatch(r"[0-9]{4}", word) and names:
            names[-1] += f" {word}"
        else:
            names.append(word)
    if not names or len(names) > 2:
        return ASK_CONTACT
    session = ctx.session
    person = await member_named(session, member.org_id, names[0])
    profile = await store.profile_of(session, person.id)
    if len(names) == 1:
        contact = await session.get(Member, profile.contact_id) if profile and profile.contact_id else None
        return CONTACT_IS.format(name=person.name, contact=contact.name) if contact else \
            CONTACT_NONE.format(name=person.name)
    if names[1] in CLEAR_WORDS:
        if profile is not None:
            profile = await _profile(session, person, member, ctx.now)
            profile.contact_id = None
        return CONTACT_CLEARED.format(name=person.name)
    contact = await member_named(session, member.org_id, names[1])
    if contact.id == person.id:
        return CONTACT_SELF
    profile = await _profile(session, person, member, ctx.now)
    profile.contact_id = contact.id
    log.info("member %s: care contact set (by %s)", person.id, member.id)
    return CONTACT_SET.format(name=person.name, contact=contact.name)


# ---------------------------------------------------------------- 不让上报人看


@router.text("不让上报人看", "不让上报的人看", "别让上报人看", "不给上报人看", bound=True, usage="不让上报人看",
             summary="关于您的走访，不让上报的人看到详情")
async def hide_from_reporters(ctx: Context, member: Member) -> str:
    # Every case about them, open or closed: a reporter could otherwise still open a closed one's page.
    result = await ctx.session.execute(
        update(CareCase).where(CareCase.member_id == member.id).values(hidden_from_reporter=True)
        .execution_options(synchronize_session=False))
    if not result.rowcount:
        return HIDDEN_NONE
    log.info("member %s hid %d care cases from their reporters", member.id, result.rowcount)
    return HIDDEN.format(count=result.rowcount)
