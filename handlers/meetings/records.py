"""After the meeting: 签到情况 (the attendance report), 会议记录, and photos."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.dispatch import AnyText, Context, Dialog, MemberRole, MessageKind, Runtime, SkipHandler
from bot.messages import Kind, Message
from handlers.meetings.common import (
    MAX_RECORD_FIELD,
    NO_STARTED,
    PHOTO_SAVED,
    RECORD,
    RECORD_INTRO,
    RECORD_SAVED,
    RECORD_STEPS,
    REPORT_HEAD,
    REPORT_STILL_OPEN,
    REPORT_WORDS_CLOSED,
    REPORT_WORDS_OPEN,
    SKIP_WORDS,
    TOO_LONG,
    _clock,
    _label,
    _when,
    _window,
    router,
)
from handlers.meetings.settings import MeetingSettings
from storage import meetings as store
from storage.models import BRANCH_LEADERS, Attendance, CheckInMethod, Meeting, MeetingPhoto, Member


# ---------------------------------------------------------------- 签到情况: the attendance report
# Registered before 签到: "签到情况" would otherwise read as 签到 with the code "情况".


@router.text("出勤", "签到情况", "出勤情况", roles=BRANCH_LEADERS, usage="签到情况", summary="查看最近一次会议的出勤")
async def attendance_report(ctx: Context, member: Member) -> str:
    meeting = await _latest_open(ctx, member)
    if meeting is None:
        return NO_STARTED
    return await describe_attendance(ctx.session, meeting, ctx.settings, ctx.now)


async def _latest_open(ctx: Context, member: Member) -> Meeting | None:
    """The branch's latest meeting whose check-in has opened: from then on people sign in, and the
    secretary wants to see who is in (and may start the record) before the start time."""
    before, _ = _window(ctx.settings)
    return await store.latest_started(ctx.session, member.org_id, ctx.now + before)


async def describe_attendance(session: AsyncSession, meeting: Meeting, settings, now: datetime) -> str:
    """The sign-in sheet as a message. Names are in roster order: never ranked (domain.md)."""
    sheet = await store.sign_in_sheet(session, meeting)
    proxies = {attendance.proxy_by for _, attendance in sheet.present + sheet.guests if attendance.proxy_by}
    proxy_names = {}
    for proxy_id in proxies:
        proxy = await session.get(Member, proxy_id)
        proxy_names[proxy_id] = proxy.name if proxy else "书记"

    def present_line(person: Member, attendance: Attendance) -> str:
        notes = []
        if attendance.late:
            notes.append("迟到")
        if attendance.method == CheckInMethod.PROXY.value:
            notes.append(f"{proxy_names.get(attendance.proxy_by, '书记')}代签")
        suffix = f"（{'，'.join(notes)}）" if notes else ""
        return f"{person.name} {_clock(settings, attendance.checked_in_at)}{suffix}"

    closes = meeting.starts_at + _window(settings)[1]
    came, missing = REPORT_WORDS_OPEN if now <= closes else REPORT_WORDS_CLOSED
    lines = [REPORT_HEAD.format(kind=meeting.kind, topic=meeting.topic, when=_when(settings, meeting.starts_at, now),
                                place=meeting.place, expected=sheet.expected, came=came, present=len(sheet.present),
                                leave=len(sheet.on_leave), missing=missing, absent=len(sheet.absent))]
    if sheet.present:
        lines.append(f"{came}：" + "、".join(present_line(person, attendance) for person, attendance in sheet.present))
    if sheet.on_leave:
        lines.append("请假：" + "、".join(f"{person.name}（{request.reason}）" for person, request in sheet.on_leave))
    if sheet.absent:
        lines.append(f"{missing}：" + "、".join(person.name for person in sheet.absent))
    if sheet.guests:
        lines.append("列席：" + "、".join(present_line(person, attendance) for person, attendance in sheet.guests))
    if now <= closes:
        lines.append(REPORT_STILL_OPEN.format(closes=_clock(settings, closes, now)))
    return "\n".join(lines)



# ---------------------------------------------------------------- after the meeting: attendance, record, photos


@router.text("会议记录", "填写会议记录", roles=BRANCH_LEADERS, usage="会议记录", summary="填写最近一次会议的记录")
async def start_record(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _latest_open(ctx, member)
    if meeting is None:
        return NO_STARTED
    dialog.start(RECORD, RECORD_STEPS[0][0], meeting_id=meeting.id)
    return RECORD_INTRO.format(meeting=_label(ctx.settings, meeting, ctx.now)) + RECORD_STEPS[0][1]


# The longest answer each field takes: names are short and a vote a line; the minutes and resolutions may be long.
RECORD_LIMITS = {"host": 50, "recorder": 50, "votes": 200}
RECORD_FIELDS = [name for name, _question in RECORD_STEPS]


# The record dialog's only handler, whatever its step: dialog.step is the field the user is answering.
@router.on(AnyText(), dialog=RECORD)
async def record_answer(ctx: Context, dialog: Dialog, text: str, written: str) -> str:
    """Keep the answer to the current question, then ask the next one; after the last, save the record."""
    field_name = dialog.step
    if field_name not in RECORD_FIELDS:
        raise SkipHandler  # a step this dialog never has: not an answer to it
    limit = RECORD_LIMITS.get(field_name, MAX_RECORD_FIELD)
    # The skip words are recognized however they are typed; anything else is kept as written.
    value = None if text in SKIP_WORDS else written
    if value is not None and len(value) > limit:
        return TOO_LONG.format(limit=limit)
    dialog.goto(field_name, **{f"value_{field_name}": value})
    following = RECORD_FIELDS.index(field_name) + 1
    if following < len(RECORD_STEPS):
        next_name, question = RECORD_STEPS[following]
        dialog.goto(next_name)
        return question
    return await _save_record(ctx, dialog)


async def _save_record(ctx: Context, dialog: Dialog) -> str:
    meeting = await ctx.session.get(Meeting, dialog.data["meeting_id"])
    data = dialog.data
    dialog.finish()
    if meeting is None:
        return NO_STARTED
    labels = {"host": "主持人", "recorder": "记录人", "minutes": "议题和发言", "resolutions": "决议", "votes": "表决"}
    summary = []
    for name, _question in RECORD_STEPS:
        value = data.get(f"value_{name}")
        setattr(meeting, name, value)
        shown = value if value is None or len(value) <= 30 else value[:30] + "…"
        summary.append(f"{labels[name]}：{shown if shown else '（未填）'}")
    meeting.record_added_at = meeting.updated_at = ctx.now
    return RECORD_SAVED.format(meeting=_label(ctx.settings, meeting, ctx.now), summary="\n".join(summary))


async def meeting_taking_photos(ctx: Context, org_id: int) -> Meeting | None:
    """The branch's meeting that a leader's photo sent now is evidence of: the latest one started at most
    meeting_photo_hours ago, else None. Care asks the same (handlers/care/visit.py, through ctx.provided: no
    feature imports another), so that a photo goes to a visit exactly when no meeting takes it."""
    meeting = await store.latest_started(ctx.session, org_id, ctx.now)
    window = timedelta(hours=ctx.config(MeetingSettings).meeting_photo_hours)
    return meeting if meeting is not None and ctx.now - meeting.starts_at <= window else None


@router.lifespan
async def share_the_photo_rule(runtime: Runtime):
    """Handed to handlers that name a parameter meeting_taking_photos (care's photo handler)."""
    runtime.provide("meeting_taking_photos", meeting_taking_photos)
    yield


@router.on(MessageKind(Kind.IMAGE) & MemberRole(*BRANCH_LEADERS))
async def meeting_photo(ctx: Context, member: Member, message: Message) -> str:
    meeting = await meeting_taking_photos(ctx, member.org_id) if message.media_id else None
    if meeting is None:
        raise SkipHandler  # not meeting evidence: whoever else takes photos, or the answer any image gets
    ctx.session.add(MeetingPhoto(meeting_id=meeting.id, media_id=message.media_id[:200],
                                 pic_url=(message.url or message.extra.get("pic_url", ""))[:500],
                                 added_by=member.id, added_at=ctx.now))
    await ctx.session.flush()
    return PHOTO_SAVED.format(meeting=_label(ctx.settings, meeting, ctx.now),
                              count=await store.photos_of(ctx.session, meeting.id))
