"""请假, and the secretary's 同意 / 不同意."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.dialogs import Picked
from bot.dispatch import WHAT_IS_WAITING, AnyText, Context, Dialog
from bot.outbox import Outgoing
from bot.summary import Summary
from handlers.meetings.common import (
    ASK_REASON,
    DECIDED,
    LEAVE,
    LEAVE_AUTO,
    LEAVE_EXISTS,
    LEAVE_SENT,
    LEAVE_STATUS,
    LEAVE_TO_LEADER,
    MAX_REASON,
    MORE_PENDING,
    NO_PENDING_LEAVE,
    NO_PENDING_LEAVE_OF,
    NO_UPCOMING,
    PICK_UPCOMING,
    TOLD_APPROVED,
    TOLD_DECLINED,
    WHICH_LEAVE,
    TOO_LONG,
    _label,
    _offer_meetings,
    _ref,
    _when,
    router,
)
from handlers.meetings.settings import MeetingSettings
from storage import meetings as store
from storage.members import leader_ids
from storage.models import BRANCH_LEADERS, LeaveStatus, Meeting, Member, Role


# ---------------------------------------------------------------- 请假: leave


@router.text("请假", takes_args=True, bound=True, usage="请假 原因", summary="不能参加会议时向书记请假")
async def ask_leave(ctx: Context, dialog: Dialog, member: Member, written_args: str) -> str:
    reason = written_args
    if not reason:
        dialog.start(LEAVE, "reason")
        return ASK_REASON
    return await _leave_for(ctx, dialog, member, reason)


@router.on(AnyText(), dialog=LEAVE, step="reason")
async def leave_reason(ctx: Context, dialog: Dialog, member: Member, written: str) -> str:
    dialog.finish()
    return await _leave_for(ctx, dialog, member, written)


async def _leave_for(ctx: Context, dialog: Dialog, member: Member, reason: str) -> str:
    if len(reason) > MAX_REASON:
        return TOO_LONG.format(limit=MAX_REASON)
    # Asked before the meeting began is in time, however late the server got to the message.
    upcoming = [meeting for meeting in await store.upcoming_meetings(ctx.driver, member.org_id, ctx.sent_at)
                if store.expects(meeting, member)]
    if not upcoming:
        return NO_UPCOMING
    if len(upcoming) == 1:
        return await _request_leave(ctx, member, upcoming[0], reason)
    dialog.start(LEAVE, "pick", reason=reason)
    return _offer_meetings(ctx, dialog, "pick", PICK_UPCOMING, upcoming)


@router.on(Picked(), dialog=LEAVE, step="pick")
async def leave_pick(ctx: Context, dialog: Dialog, member: Member, picked: int) -> str:
    meeting = await ctx.session.get(Meeting, picked)
    reason = dialog.data["reason"]
    dialog.finish()
    return await _request_leave(ctx, member, meeting, reason)


async def _request_leave(ctx: Context, member: Member, meeting: Meeting, reason: str) -> str:
    asked = await request_leave(ctx.session, ctx.settings, member, meeting, reason, asked_at=ctx.sent_at,
                                now=ctx.now)
    for message in asked.messages:
        ctx.enqueue(message)
    return asked.reply


@dataclass
class LeaveAsked:
    """What asking for leave did: the answer for the member, and the messages for the secretaries, to be
    written to the outbox in the caller's transaction (a handler's ctx.enqueue, a page's enqueue)."""

    reply: str
    messages: list[Outgoing] = field(default_factory=list)


async def request_leave(session: AsyncSession, settings: MeetingSettings, member: Member, meeting: Meeting,
                        reason: str, *, asked_at: datetime, now: datetime) -> LeaveAsked:
    """Ask leave of one meeting for a member: the one rule behind 请假 in chat and on the meeting page.

    asked_at is when the member asked (a chat message's send time, a page's now): asked before the meeting
    began is in time. The reason is taken as written; its length is the caller's to check (MAX_REASON).
    """
    label = _label(settings, meeting, now)
    if meeting.starts_at <= asked_at:
        return LeaveAsked(NO_UPCOMING)
    request, created = await store.add_leave(session, meeting.id, member.id, reason=reason, now=asked_at)
    if not created:
        # Asked before (or twice at once, a double tap): the first request stands, asked once.
        return LeaveAsked(LEAVE_EXISTS.format(meeting=label, status=LEAVE_STATUS.get(request.status, request.status)))
    leaders = [i for i in await leader_ids(session, member.org_id, BRANCH_LEADERS) if i != member.id]
    if not leaders:
        # The secretary asking for leave has nobody to ask: the request stands as given.
        request.status, request.decided_at, request.decided_by = LeaveStatus.APPROVED.value, now, member.id
        return LeaveAsked(LEAVE_AUTO.format(meeting=label, reason=reason))
    text = LEAVE_TO_LEADER.format(name=member.name, reason=reason, meeting=label)
    messages = [Outgoing(key=f"leave:{request.id}:{leader_id}", kind="leave", text=text, member_id=leader_id,
                         ref=_ref(meeting.id),
                         summary=Summary(title="请假申请", content=f"{member.name}：{reason}",
                                         time=_when(settings, meeting.starts_at, now)))
                for leader_id in leaders]
    return LeaveAsked(LEAVE_SENT.format(meeting=label, reason=reason), messages)


@router.text("同意", "批准", takes_args=True, roles=BRANCH_LEADERS, usage="同意 / 不同意", summary="回复党员的请假")
async def approve_leave(ctx: Context, member: Member, args: str) -> str:
    return await _decide(ctx, member, args.strip(), approved=True)


@router.text("不同意", "不批准", takes_args=True, roles=BRANCH_LEADERS)
async def decline_leave(ctx: Context, member: Member, args: str) -> str:
    return await _decide(ctx, member, args.strip(), approved=False)


async def _decide(ctx: Context, member: Member, name: str, *, approved: bool) -> str:
    session, settings = ctx.session, ctx.settings
    # A secretary may still answer a request while the meeting is on (check-in still open).
    started_after = ctx.now - timedelta(minutes=settings.checkin_window_after_minutes)
    pending = await store.pending_leaves(session, member.org_id, started_after=started_after, name=name or None)
    if not pending:
        return NO_PENDING_LEAVE_OF.format(name=name) if name else NO_PENDING_LEAVE
    if not name and len({asker.id for _, asker, _ in pending}) > 1:
        # A bare 同意 with several people waiting could answer someone other than the one just read.
        lines = "\n".join(f"· {asker.name}：{request.reason}（{_label(settings, meeting, ctx.now)}）"
                          for request, asker, meeting in pending[:10])
        return WHICH_LEAVE.format(count=len(pending), lines=lines, verb="同意" if approved else "不同意")
    request, asker, meeting = pending[0]
    request.status = (LeaveStatus.APPROVED if approved else LeaveStatus.DECLINED).value
    request.decided_at, request.decided_by = ctx.now, member.id
    label = _label(settings, meeting, ctx.now)
    ctx.enqueue(Outgoing(key=f"leave:{request.id}:decided", kind="leave",
                         text=(TOLD_APPROVED if approved else TOLD_DECLINED).format(meeting=label),
                         member_id=asker.id, ref=_ref(meeting.id),
                         summary=Summary(title="请假结果", content="已同意" if approved else "未同意",
                                         time=_when(settings, meeting.starts_at, ctx.now))))
    reply = DECIDED.format(verb="同意" if approved else "不同意", name=asker.name, meeting=label)
    rest = await store.pending_leaves(session, member.org_id, started_after=started_after)
    rest = [entry for entry in rest if entry[0].id != request.id]
    if rest:
        following = rest[0]
        reply += MORE_PENDING.format(count=len(rest), next=f"{following[1].name}（{following[0].reason}）")
    return reply


@router.when(WHAT_IS_WAITING)
async def leaves_waiting(ctx: Context, member: Member) -> str | None:
    """For a secretary: leave requests waiting for an answer (for a greeting)."""
    if Role(member.role) not in BRANCH_LEADERS:
        return None
    leaves = await store.pending_leaves(ctx.session, member.org_id, started_after=ctx.now)
    return f"回复 同意 或 不同意 —— {len(leaves)} 个请假等您回复" if leaves else None
