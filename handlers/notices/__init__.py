"""Notices: secretaries and organization staff broadcast, members answer 收到, senders see who got it.

发通知 is a short dialog: the text, the audience (by number), a preview with the head count, and one
reply to send. Recipients are outbox rows written in the same transaction as the notice, so a crash
can neither lose the notice nor send it twice. After a configurable time the sender gets one report
and those who have not answered get one gentle reminder — never more (no nagging, see domain.md).
A template message's link opens the notice's page (page.py): the whole text, and a 收到 button.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from pydantic import Field

from bot.config import Settings
from bot.dialogs import Picked, Steps, offer
from bot.dispatch import MEMBER_BOUND, WHAT_IS_WAITING, AnyText, Choice, Click, Context, Dialog, JobContext, MessageKind, Router
from bot.messages import Kind, Message
from bot.outbox import UNBOUND, Outgoing, enqueue, enqueue_members, quiet_until
from bot.summary import Summary
from bot.text import excerpt
from storage import audiences
from storage.outbox import deliver_to_new_binding
from storage.audiences import Audience
from storage.orgs import party_groups
from storage.models import BRANCH_LEADERS, STAFF_ROLES, Member, Notice, Organization, OrgType, Role
from storage.notices import (
    NOTICE_KIND,
    NoticeReport,
    acknowledge_latest,
    awaiting_acknowledgement,
    due_for_follow_up,
    latest_sent_by,
    notice_ref,
    report,
    unacknowledged_recipients,
)



class NoticeSettings(Settings):
    # Hours after a notice when its sender gets the report and non-responders one reminder.
    notice_follow_up_hours: float = 24.0
    # A member who binds late gets the notices of this many last days that could not reach them unbound.
    late_binding_days: int = Field(default=7, ge=0)


# Its member page (page.py) renders templates/notice.html.
router = Router("notices", settings=NoticeSettings, templates=Path(__file__).parent / "templates")
router.reminds("通知的催看提醒")

SENDERS = BRANCH_LEADERS | STAFF_ROLES
DIALOG = Steps("notice", text="通知内容（文字、语音或转发的文章）", audience="发给谁（数字）",
               group="哪个党小组（数字）", names="点名：党员姓名", confirm="预览后回复 1 发送、2 紧急发送")
MAX_TEXT = 1500  # leaves room for the heading and signature within one WeChat message
EXCERPT = 18

CAUGHT_UP = "您绑定前 {days} 天里支部发的 {count} 条通知，马上发给您。"
ASK_TEXT = "请发送通知内容（打字、语音或转发文章都可以）。\n回复 取消 可退出。"
TOO_LONG = f"通知太长了（最多 {MAX_TEXT} 字），请删减后重新发送。"
ASK_GROUP = "发给哪个党小组？回复数字：\n{options}"
NO_GROUPS = "本支部还没有党小组，请选别的范围。"
PICK_AGAIN = "请回复列表里的数字。"
ASK_NAMES = "请回复要通知的党员姓名，多个姓名用空格或逗号隔开。"
UNKNOWN_NAMES = "本支部没有：{names}。请重新回复姓名。"
EMPTY_AUDIENCE = "这个范围里没有党员，请重新选择。\n"
ASK_AUDIENCE = "发给谁？回复数字：\n{options}"
PREVIEW = ("将发给{audience}，共 {count} 人：\n——\n{text}\n——\n"
           "回复 1 发送；回复 2 作为紧急通知发送（夜间也立即送达）；回复 取消 放弃。")
SENT = "通知已发出，共 {count} 人。{night}\n回复 通知情况 可查看送达和收到情况。"
NIGHT_NOTE = "现在是夜间休息时间，通知将在早上 {end} 后送达。"
NOTHING_SENT = "您还没有发过通知。"
ACKNOWLEDGED = "已确认收到：“{excerpt}”。谢谢！"
NOTHING_TO_ACKNOWLEDGE = "目前没有需要确认的通知。"
NO_LONGER_SENDER = "您的职务或所在组织已经变了，现在不能再发这条通知，已取消。"
REMINDER = "温馨提醒：{org}的通知“{excerpt}”请抽空看一下，看过后回复 收到。"

# The audiences each kind of sender can choose, in menu order.
BRANCH_MENU = [Audience.ALL, Audience.COMMITTEE, Audience.GROUP, Audience.ELDERLY, Audience.AWAY, Audience.NAMED]
SUBTREE_MENU = [Audience.ALL, Audience.COMMITTEE, Audience.ELDERLY, Audience.AWAY]


def _menu(org: Organization) -> list[Audience]:
    return SUBTREE_MENU if org.org_type == OrgType.COMMITTEE else BRANCH_MENU


def _ask_audience(dialog: Dialog, org: Organization, before: str = "", **data) -> str:
    options = [(audience.value, f"{org.name}{audience.value}" if audience is Audience.ALL else audience.value)
               for audience in _menu(org)]
    return offer(dialog, "audience", before + ASK_AUDIENCE, options, **data)


def _notice_text(org: Organization, sender: Member, text: str) -> str:
    return f"【{org.name}通知】\n{text}\n——{sender.name}\n看过后请回复 收到。"


def _content_of(message: Message, written: str | None) -> str | None:
    """The notice as the sender wrote it (line breaks and punctuation kept), or a forwarded article."""
    if message.kind == Kind.LINK:
        return f"{message.text}\n{message.url}".strip()
    return written


async def _scope(session: AsyncSession, member: Member) -> Organization:
    """Where a sender may send: their own branch, or for staff their organization's whole subtree."""
    return await session.get(Organization, member.org_id)


@router.text("发通知", "发送通知", "通知大家", roles=SENDERS, usage="发通知", summary="给支部（或辖区）党员发通知")
async def start(dialog: Dialog, member: Member) -> str:
    # The organization the dialog was started for: the audience chosen later belongs to it.
    dialog.start(DIALOG, "text", org_id=member.org_id)
    return ASK_TEXT


@router.on(AnyText() | MessageKind(Kind.LINK), dialog=DIALOG, step="text")
async def take_text(ctx: Context, dialog: Dialog, message: Message, member: Member, written: str | None = None) -> str:
    content = _content_of(message, written)
    if not content:
        return ASK_TEXT
    if len(content) > MAX_TEXT:
        return TOO_LONG
    return _ask_audience(dialog, await _scope(ctx.session, member), text=content)


@router.on(Picked(), dialog=DIALOG, step="audience")
async def choose_audience(ctx: Context, dialog: Dialog, member: Member, picked: str) -> str:
    org = await _scope(ctx.session, member)
    audience = Audience(picked)
    if audience is Audience.GROUP:
        groups = await party_groups(ctx.session, org)
        if not groups:
            return _ask_audience(dialog, org, NO_GROUPS + "\n")
        return offer(dialog, "group", ASK_GROUP, [([group.id, group.name], group.name) for group in groups],
                     again=PICK_AGAIN, audience=audience.value)
    if audience is Audience.NAMED:
        dialog.goto("names", audience=audience.value)
        return ASK_NAMES
    dialog.goto("confirm", audience=audience.value)
    return await _preview(ctx, dialog, org)


@router.on(Picked(), dialog=DIALOG, step="group")
async def choose_group(ctx: Context, dialog: Dialog, member: Member, picked: list) -> str:
    group_id, group_name = picked
    dialog.goto("confirm", group_id=group_id, group_name=group_name)
    return await _preview(ctx, dialog, await _scope(ctx.session, member))


@router.on(AnyText(), dialog=DIALOG, step="names")
async def choose_names(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    org = await _scope(ctx.session, member)
    names = [name for name in re.split(r"[\s,，、;；]+", text) if name]
    found, unknown = await audiences.find_by_names(ctx.session, org, names)
    if unknown or not found:
        return UNKNOWN_NAMES.format(names="、".join(unknown or names))
    dialog.goto("confirm", named=[person.id for person in found], names=[person.name for person in found])
    return await _preview(ctx, dialog, org)


def _selection(dialog: Dialog, org: Organization, sender: Member, today) -> tuple[Select, str]:
    """The audience chosen in the dialog: its member-id query (the sender left out) and its name."""
    audience = Audience(dialog.data["audience"])
    query = audiences.member_ids(org, audience, today=today, group_id=dialog.data.get("group_id"),
                                 named=dialog.data.get("named")).where(Member.id != sender.id)
    if audience is Audience.ALL:
        label = f"{org.name}全体党员"
    elif audience is Audience.GROUP:
        label = dialog.data["group_name"]
    elif audience is Audience.NAMED:
        label = "、".join(dialog.data["names"])
    else:
        label = audience.value
    return query, label


async def _preview(ctx: Context, dialog: Dialog, org: Organization) -> str:
    query, label = _selection(dialog, org, ctx.member, ctx.today)
    count = await audiences.count(ctx.session, query)
    if count == 0:
        return _ask_audience(dialog, org, EMPTY_AUDIENCE)
    dialog.goto("confirm", label=label, count=count)
    return PREVIEW.format(audience=label, count=count, text=dialog.data["text"])


def _still_allowed(dialog: Dialog, member: Member) -> bool:
    """Only the start of the dialog checked the sender's role. The roster may have changed since (a
    secretary replaced, or moved to another branch): the notice goes out only if they may still send
    it, to the organization they chose its audience in."""
    return Role(member.role) in SENDERS and dialog.data.get("org_id", member.org_id) == member.org_id


@router.on(Choice(1, 2), dialog=DIALOG, step="confirm")
async def confirm(ctx: Context, dialog: Dialog, member: Member, choice: int) -> str:
    session, settings, now = ctx.session, ctx.settings, ctx.now
    if not _still_allowed(dialog, member):
        dialog.finish()
        return NO_LONGER_SENDER
    org = await _scope(session, member)
    query, _ = _selection(dialog, org, member, settings.local(now).date())
    urgent = choice == 2
    notice = Notice(sender_id=member.id, org_id=org.id, audience=dialog.data["label"][:200], text=dialog.data["text"],
                    urgent=urgent, created_at=now,
                    report_due_at=now + timedelta(hours=settings.notice_follow_up_hours))
    session.add(notice)
    await session.flush()
    notice.recipients = await enqueue_members(
        session, query, key_prefix=notice_ref(notice.id), kind=NOTICE_KIND,
        text=_notice_text(org, member, notice.text), ref=notice_ref(notice.id), urgent=urgent,
        summary=Summary(title=f"{org.name}通知", content=excerpt(notice.text, EXCERPT), sender=member.name),
        now=now, settings=settings)
    dialog.finish()
    held = not urgent and quiet_until(now, settings) is not None
    night = NIGHT_NOTE.format(end=settings.quiet_hours_end) if held else ""
    return SENT.format(count=notice.recipients, night=night)


@router.text("收到", "已收到", "收到了", "好的收到", bound=True, usage="收到", summary="确认收到最新的通知")
@router.on(Click("ACK"), bound=True)
async def acknowledge(ctx: Context, member: Member) -> str:
    notice = await acknowledge_latest(ctx.session, member.id, ctx.now)
    return ACKNOWLEDGED.format(excerpt=excerpt(notice.text, EXCERPT)) if notice else NOTHING_TO_ACKNOWLEDGE


@router.text("通知情况", "通知回执", roles=SENDERS, usage="通知情况", summary="查看最近一条通知的送达和收到情况")
async def show_report(ctx: Context, member: Member) -> str:
    notice = await latest_sent_by(ctx.session, member.id)
    if notice is None:
        return NOTHING_SENT
    return await describe_report(ctx.session, notice, ctx.settings)


async def describe_report(session: AsyncSession, notice: Notice, settings) -> str:
    org = await session.get(Organization, notice.org_id)
    by_branch = org.org_type == OrgType.COMMITTEE
    result = await report(session, notice, by_branch=by_branch)
    sent_at = settings.local(notice.created_at)
    lines = [f"通知“{excerpt(notice.text, EXCERPT)}”（{sent_at.month}月{sent_at.day}日 {sent_at:%H:%M} 发给{notice.audience}）",
             _totals_line(result)]
    lines += _detail_lines(result, settings.late_binding_days)
    return "\n".join(lines)


def _totals_line(result: NoticeReport) -> str:
    # Members who have not bound WeChat are counted apart: nothing is wrong with the delivery, and they
    # get the notice when they bind (within ZHIBU_LATE_BINDING_DAYS).
    unbound = result.failure_reasons.get(UNBOUND, 0)
    return (f"共 {result.total} 人：已送达 {result.sent}，待发送 {result.pending}，未送达 {result.failed - unbound}，"
            f"未绑定 {unbound}，已回复收到 {result.acknowledged}。")


def _detail_lines(result: NoticeReport, late_binding_days: int, branch_limit: int = 40) -> list[str]:
    if result.branches:
        lines = [f"{line.path.rsplit('/', 1)[-1]}：{line.total} 人，送达 {line.sent}，收到 {line.acknowledged}"
                 for line in result.branches[:branch_limit]]
        if len(result.branches) > branch_limit:
            lines.append(f"另有 {len(result.branches) - branch_limit} 个组织未列出。")
        return lines
    lines = []
    failed = [(name, reason) for name, reason in result.failed_names if reason != UNBOUND]
    unbound = [name for name, reason in result.failed_names if reason == UNBOUND]
    if failed:
        lines.append("未送达：" + "、".join(f"{name}（{reason}）" for name, reason in failed))
    if unbound:
        lines.append(f"未绑定微信（发出后 {late_binding_days} 天内绑定的会补收这条通知）：" + "、".join(unbound))
    if result.waiting_names:
        lines.append("还没回复收到：" + "、".join(result.waiting_names))
    return lines


@router.when(MEMBER_BOUND)
async def catch_up(ctx: Context, member: Member) -> str | None:
    """A member who binds late gets the notices of the last days that could not reach them unbound."""
    days = ctx.settings.late_binding_days
    caught_up = await deliver_to_new_binding(ctx.session, member.id, ctx.identity.openid, kinds=[NOTICE_KIND],
                                             unbound_reason=UNBOUND, since=ctx.now - timedelta(days=days),
                                             now=ctx.now)
    if not caught_up:
        return None
    ctx.outbox_touched = True
    return CAUGHT_UP.format(days=days, count=caught_up)


@router.job("follow_up", minutes=10, description="到时间后给发送人一份通知情况，并给未回复的党员一次温和提醒")
async def follow_up(job: JobContext) -> int:
    """Send each due notice's report to its sender and one reminder to those who have not answered."""
    now = job.clock.now()
    async with job.sessions() as session, session.begin():
        due = await due_for_follow_up(session, now)
        for notice in due:
            org = await session.get(Organization, notice.org_id)
            text = "【通知情况】\n" + await describe_report(session, notice, job.settings)
            await enqueue(session, [Outgoing(key=f"{notice_ref(notice.id)}:report", kind="report", text=text,
                                             member_id=notice.sender_id, ref=notice_ref(notice.id))],
                          now=now, settings=job.settings)
            await enqueue_members(
                session, unacknowledged_recipients(notice.id), key_prefix=f"{notice_ref(notice.id)}:remind",
                kind="reminder", text=REMINDER.format(org=org.name, excerpt=excerpt(notice.text, EXCERPT)),
                ref=notice_ref(notice.id), urgent=False,
                summary=Summary(title="温馨提醒", content=excerpt(notice.text, EXCERPT)),
                now=now, settings=job.settings, reminder=True)
            notice.reported_at = notice.reminded_at = now
    return len(due)


@router.when(WHAT_IS_WAITING)
async def notice_waiting(ctx: Context, member: Member) -> str | None:
    """The latest notice this member has not answered 收到 to (for a greeting)."""
    notice = await awaiting_acknowledgement(ctx.session, member.id)
    return f"回复 收到 —— 确认通知“{excerpt(notice.text, 12)}”" if notice is not None else None


from handlers.notices import page  # noqa: E402,F401  (registers the notice page on the router)
from handlers.notices import console  # noqa: E402,F401  (registers the console pages on the router)
