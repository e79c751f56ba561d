"""The meeting's page: what a meeting notice or reminder links to (bot/web/pages.py), signed for one member.

It shows the meeting (kind, time with the weekday, place with a map link when the place was sent as a
location, topic as written) and where this member stands: signed in, on leave and what the secretary said,
or nothing yet. Before the meeting starts an expected member can ask leave here; it is the chat's 请假 rule
(leave.request_leave), so the secretary is told the same way. The check-in code is never on the page: it is
read out at the meeting. A branch secretary also sees who asked leave (their 请假申请 links here).

Shown only to a member expected at the meeting or one a message about it was addressed to.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from aiohttp import web

from bot.outbox import enqueue
from bot.web.pages import LinkGone, MemberPage
from handlers.meetings.common import MAX_REASON, _ref, router
from handlers.meetings.leave import request_leave
from storage import meetings as store
from storage.models import BRANCH_LEADERS, LeaveStatus, Meeting, MeetingStatus, Organization, Role
from storage.outbox import addressed_to

# -- where this member stands: (status box style, words), and what to do next
CANCELLED = ("error", "已取消")
CANCELLED_NEXT = "这次会议取消了，不用参加。"
CHECKED_IN = ("done", "已签到（{time}）")
CHECKED_IN_NEXT = "谢谢您参加。"
LEAVE_SHOWN = {
    LeaveStatus.PENDING.value: (("wait", "已请假，等书记回复"), "书记回复后，公众号会告诉您。"),
    LeaveStatus.APPROVED.value: (("done", "请假已同意"), "这次会议您不用参加。"),
    LeaveStatus.DECLINED.value: (("error", "请假未同意"), "请尽量参加；确有困难，请直接联系书记。"),
}
COME = "请按时参加。到了会场，点菜单 签到，或回复 签到 加会上公布的签到码。"
STARTED = "会议已经开始。到了会场，点菜单 签到，或回复 签到 加会上公布的签到码。"
ENDED = "这次会议已经结束。有问题请问支部书记。"
NOT_EXPECTED = "这次会议不用您参加。有问题请问支部书记。"

# -- the leave form
REASON_EMPTY = "请先写上请假原因，再点“请假”。"
REASON_TOO_LONG = "请假原因太长了：最多 {limit} 字，现在是 {count} 字。请删短一些，再点“请假”。"
NO_LEAVE_STARTED = "会议已经开始，不能在这里请假了。有事请直接联系书记。"
NO_LEAVE_CANCELLED = "这次会议已经取消，不用请假。"
NO_LEAVE_CHECKED_IN = "您已经签到了，不用请假。"
NO_LEAVE_NOT_EXPECTED = "这次会议不用您参加，不用请假。"

# -- for the branch's secretary: who asked leave
LEADER_SEES = {LeaveStatus.PENDING.value: "等您回复", LeaveStatus.APPROVED.value: "已同意",
               LeaveStatus.DECLINED.value: "未同意"}
LEADER_NEXT = "回到公众号回复 同意 或 不同意（有几个人等着时，后面写上姓名，例如：同意 {name}）。"

MAP = "https://uri.amap.com/marker?position={longitude},{latitude}&name={name}"


async def _meeting(page: MemberPage) -> tuple[Meeting, bool]:
    """The meeting the link names and whether this member is expected at it, if they may see it."""
    if page.member is None or not page.subject.thing_id.isdigit():
        raise LinkGone("not a member's meeting link")
    meeting = await page.session.get(Meeting, int(page.subject.thing_id))
    if meeting is None:
        raise LinkGone("no such meeting")
    expected = store.expects(meeting, page.member)
    if not expected and not await addressed_to(page.session, _ref(meeting.id), page.member.id):
        raise LinkGone("neither expected nor told")
    return meeting, expected


@router.page("meeting")
async def meeting_page(page: MemberPage) -> web.Response:
    meeting, expected = await _meeting(page)
    if not page.posted:
        return await _show(page, meeting, expected)
    if page.form.get("action") != "leave":
        return page.back()
    return await _ask_leave(page, meeting, expected)


async def _ask_leave(page: MemberPage, meeting: Meeting, expected: bool) -> web.Response:
    """The leave form: what chat 请假 does, or the page again with what stands in the way."""
    refused = None
    if meeting.status == MeetingStatus.CANCELLED.value:
        refused = NO_LEAVE_CANCELLED
    elif meeting.starts_at <= page.now:
        refused = NO_LEAVE_STARTED
    elif not expected:
        refused = NO_LEAVE_NOT_EXPECTED
    elif await store.attendance_of(page.session, meeting.id, page.member.id) is not None:
        refused = NO_LEAVE_CHECKED_IN
    if refused:
        return await _show(page, meeting, expected, error=refused, status=409)
    if await store.leave_of(page.session, meeting.id, page.member.id) is not None:
        return page.back()  # asked already (a second tap): the page shows the request
    typed = page.form.get("reason", "")
    reason = typed.strip()
    if not reason or len(reason) > MAX_REASON:
        error = REASON_TOO_LONG.format(limit=MAX_REASON, count=len(reason)) if reason else REASON_EMPTY
        return await _show(page, meeting, expected, error=error, reason=typed, status=400)
    asked = await request_leave(page.session, page.settings, page.member, meeting, reason, asked_at=page.now,
                                now=page.now)
    await enqueue(page.session, asked.messages, now=page.now, settings=page.settings)
    return page.back()


async def _show(page: MemberPage, meeting: Meeting, expected: bool, *, error: str | None = None, reason: str = "",
                status: int = 200) -> web.Response:
    session, member, now = page.session, page.member, page.now
    org = await session.get(Organization, meeting.org_id)
    group = await session.get(Organization, meeting.group_id) if meeting.group_id else None
    attendance = await store.attendance_of(session, meeting.id, member.id)
    leave = await store.leave_of(session, meeting.id, member.id)
    started = meeting.starts_at <= now
    ended = now > meeting.starts_at + timedelta(minutes=page.settings.checkin_window_after_minutes)

    standing, next_step = None, None
    if meeting.status == MeetingStatus.CANCELLED.value:
        standing, next_step = CANCELLED, CANCELLED_NEXT
    elif attendance is not None:
        standing = (CHECKED_IN[0], CHECKED_IN[1].format(time=page.when(attendance.checked_in_at)))
        next_step = CHECKED_IN_NEXT
    elif leave is not None:
        standing, next_step = LEAVE_SHOWN.get(leave.status, (("wait", leave.status), None))
    elif not expected:
        next_step = NOT_EXPECTED
    else:
        next_step = ENDED if ended else STARTED if started else COME
    can_ask_leave = (meeting.status != MeetingStatus.CANCELLED.value and not started and expected
                     and attendance is None and leave is None)

    # A branch secretary sees the meeting's leave requests (their 请假申请 messages link here).
    leaves, leader_next = [], None
    if Role(member.role) in BRANCH_LEADERS and member.org_id == meeting.org_id:
        leaves = [(asker.name, request.reason, LEADER_SEES.get(request.status, request.status))
                  for request, asker in await store.leaves_of_meeting(session, meeting.id)]
        waiting = [name for name, _, said in leaves if said == LEADER_SEES[LeaveStatus.PENDING.value]]
        if waiting and not ended and meeting.status != MeetingStatus.CANCELLED.value:
            leader_next = LEADER_NEXT.format(name=waiting[0])

    map_url = None
    if meeting.latitude is not None and meeting.longitude is not None:
        map_url = MAP.format(longitude=meeting.longitude, latitude=meeting.latitude, name=quote(meeting.place))
    return page.render(
        "meeting.html", status=status, meeting=meeting, org=org, group=group, map_url=map_url,
        cancelled=meeting.status == MeetingStatus.CANCELLED.value, standing=standing, next_step=next_step,
        own_reason=leave.reason if leave is not None else None, can_ask_leave=can_ask_leave,
        error=error, reason=reason, max_reason=MAX_REASON, leaves=leaves, leader_next=leader_next)
