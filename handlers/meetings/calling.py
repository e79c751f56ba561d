"""开会: calling a meeting; 改时间 and 取消会议; 会议二维码."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.dialogs import Picked, offer
from bot.dispatch import CANCEL_TEXT, CHOICES, AnyText, Choice, Context, Dialog, JobContext, MessageKind, Refusal
from bot.messages import Kind, Message
from bot.outbox import Outgoing, enqueue
from bot.when import When, WhenError, read_when
from handlers.meetings.common import (
    ASK_CANCEL,
    ASK_GROUP,
    ASK_KIND,
    ASK_NEW_TIME,
    ASK_NEXT_YEAR,
    ASK_PLACE,
    ASK_TIME,
    ASK_TOPIC,
    CALL,
    CALLED,
    CANCEL,
    CANCELLED_DONE,
    CONFIRM_MOVE,
    IN_THE_PAST,
    KEEP_MEETING,
    KEEP_TIME,
    KINDS,
    LOCATION_SET,
    MAX_PLACE,
    MAX_TOPIC,
    MOVE,
    MOVED,
    NEXT_YEAR_MOVE,
    NO_GROUPS,
    NO_LONGER_LEADER,
    NO_UPCOMING_BRANCH,
    NOBODY_EXPECTED,
    NOTICE_CALLED,
    NOTICE_CANCELLED,
    NOTICE_MOVED,
    PICK_UPCOMING,
    PREVIEW,
    SAME_TIME,
    TOO_LONG,
    _branch,
    _day,
    _fields,
    _label,
    _notified,
    _offer_meetings,
    _ref,
    _reminders,
    _tell,
    _when,
    _window,
    router,
)
from storage import audiences, meetings as store, outbox as outbox_store
from storage.models import BRANCH_LEADERS, Meeting, MeetingKind, MeetingStatus, Member, Role
from storage.orgs import party_groups

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- 开会: calling a meeting


@router.text("开会", "召集会议", "发起会议", roles=BRANCH_LEADERS, usage="开会", summary="召集会议并通知参会党员")
async def call_meeting(dialog: Dialog, member: Member) -> str:
    # The branch the meeting is for: the group and attendees chosen later belong to it.
    dialog.start(CALL, "kind", org_id=member.org_id)
    return _ask_kind(dialog)


def _ask_kind(dialog: Dialog, before: str = "") -> str:
    return offer(dialog, "kind", before + ASK_KIND, [(kind.value, kind.value) for kind in KINDS])


def _still_leader(dialog: Dialog, member: Member) -> bool:
    """Only the first message of a dialog is checked against the sender's role. Before a meeting is
    called, moved or cancelled, check again: the roster may have changed in between (a secretary
    replaced, or moved to another branch)."""
    return Role(member.role) in BRANCH_LEADERS and dialog.data.get("org_id", member.org_id) == member.org_id


async def _kind_chosen(ctx: Context, dialog: Dialog, member: Member, kind: MeetingKind) -> str:
    if kind is MeetingKind.GROUP:
        groups = await party_groups(ctx.session, await _branch(ctx.session, member))
        if not groups:
            return _ask_kind(dialog, NO_GROUPS)
        return offer(dialog, "group", ASK_GROUP, [([group.id, group.name], group.name) for group in groups],
                     kind=kind.value)
    dialog.goto("time", kind=kind.value, group_id=None, group_name="")
    return ASK_TIME


@router.on(Picked(), dialog=CALL, step="kind")
async def call_kind_number(ctx: Context, dialog: Dialog, member: Member, picked: str) -> str:
    return await _kind_chosen(ctx, dialog, member, MeetingKind(picked))


@router.on(AnyText(), dialog=CALL, step="kind")
async def call_kind_name(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    for kind in KINDS:
        if text in (kind.value, kind.value.removeprefix("支部")):
            return await _kind_chosen(ctx, dialog, member, kind)
    return dialog.data[CHOICES]["again"]


@router.on(Picked(), dialog=CALL, step="group")
async def call_group(dialog: Dialog, picked: list) -> str:
    group_id, group_name = picked
    dialog.goto("time", group_id=group_id, group_name=group_name)
    return ASK_TIME


def _read_time(ctx: Context, text: str) -> When:
    """The time a phrase means; a Refusal asking again (with the reason) when it means none ahead."""
    try:
        read = read_when(text, now=ctx.now, zone=ctx.settings.zone)
    except WhenError as error:
        raise Refusal(f"{error}\n{ASK_TIME}") from None
    if read.moment <= ctx.now:
        raise Refusal(IN_THE_PAST.format(when=_when(ctx.settings, read.moment, ctx.now)) + ASK_TIME)
    return read


@router.on(AnyText(), dialog=CALL, step="time")
async def call_time(ctx: Context, dialog: Dialog, text: str) -> str:
    read = _read_time(ctx, text)
    if read.next_year_guessed:
        dialog.goto("year", starts_at=read.moment.isoformat())
        # The day as typed (no year), then the full time with the year.
        return ASK_NEXT_YEAR.format(day=_day(ctx.settings, read.moment, now=read.moment),
                                    when=_when(ctx.settings, read.moment, ctx.now))
    dialog.goto("place", starts_at=read.moment.isoformat())
    return ASK_PLACE


@router.on(Choice(1), dialog=CALL, step="year")
async def call_year_confirmed(dialog: Dialog) -> str:
    dialog.goto("place")
    return ASK_PLACE


@router.on(Choice(), dialog=CALL, step="year")
async def call_year_refused(dialog: Dialog) -> str:
    dialog.goto("time")
    return ASK_TIME


@router.on(AnyText(), dialog=CALL, step="year")
async def call_year_retold(ctx: Context, dialog: Dialog, text: str) -> str:
    # Not a yes: the secretary is saying the time again.
    return await call_time(ctx, dialog, text)


def _location_of(message: Message) -> tuple[float, float, str] | None:
    if message.kind == Kind.LOCATION and message.location is not None:
        return message.location.latitude, message.location.longitude, message.location.label.strip()
    return None


@router.on(AnyText() | MessageKind(Kind.LOCATION), dialog=CALL, step="place")
async def call_place(ctx: Context, dialog: Dialog, message: Message, written: str | None = None) -> str:
    located = _location_of(message)
    if located is not None:
        latitude, longitude, label = located
        dialog.goto("topic" if label else "place", latitude=latitude, longitude=longitude,
                    place=label[:MAX_PLACE] if label else None)
        return LOCATION_SET + (ASK_TOPIC if label else "请再回复地点名称，如“村委会会议室”。")
    if not written:
        return ASK_PLACE
    if len(written) > MAX_PLACE:
        return TOO_LONG.format(limit=MAX_PLACE)
    dialog.goto("topic", place=written)
    return ASK_TOPIC


@router.on(AnyText() | MessageKind(Kind.LOCATION), dialog=CALL, step="topic")
async def call_topic(ctx: Context, dialog: Dialog, member: Member, message: Message,
                     written: str | None = None) -> str:
    located = _location_of(message)
    if located is not None:
        # The secretary named the place, then shared where it is: keep the name, take the position.
        dialog.goto("topic", latitude=located[0], longitude=located[1])
        return LOCATION_SET + ASK_TOPIC
    if not written:
        return ASK_TOPIC
    if len(written) > MAX_TOPIC:
        return TOO_LONG.format(limit=MAX_TOPIC)
    dialog.goto("confirm", topic=written)
    meeting = _draft(ctx, dialog, member)
    count = await audiences.count(ctx.session, store.expected_member_ids(meeting))
    if count == 0:
        return _ask_kind(dialog, NOBODY_EXPECTED.format(kind=meeting.kind))
    data = dialog.data
    return PREVIEW.format(kind=meeting.kind, group=f"（{data['group_name']}）" if data.get("group_name") else "",
                          when=_when(ctx.settings, meeting.starts_at, ctx.now), place=meeting.place,
                          located="（已设会场位置）" if meeting.latitude is not None else "",
                          topic=meeting.topic, count=count)


def _draft(ctx: Context, dialog: Dialog, member: Member) -> Meeting:
    """The meeting the dialog describes, not yet added to the session."""
    data, now = dialog.data, ctx.now
    return Meeting(org_id=member.org_id, group_id=data.get("group_id"), kind=data["kind"], topic=data["topic"],
                   place=data["place"], latitude=data.get("latitude"), longitude=data.get("longitude"),
                   starts_at=datetime.fromisoformat(data["starts_at"]), called_by=member.id, checkin_code="",
                   created_at=now, updated_at=now)


@router.on(Choice(1), dialog=CALL, step="confirm")
async def call_confirm(ctx: Context, dialog: Dialog, member: Member) -> str:
    session = ctx.session
    if not _still_leader(dialog, member):
        dialog.finish()
        return NO_LONGER_LEADER.format(what="召集会议")
    meeting = _draft(ctx, dialog, member)
    if meeting.starts_at <= ctx.now:  # the secretary took long enough for the time to pass
        dialog.goto("time")
        return IN_THE_PAST.format(when=_when(ctx.settings, meeting.starts_at, ctx.now)) + ASK_TIME
    await store.add_meeting(session, meeting)
    org = await _branch(session, member)
    attendees = await store.expected_ids(session, meeting)
    fields = _fields(ctx.settings, meeting, org, ctx.now)
    # The caller knows already; everyone else hears now, and everyone (caller included) is reminded.
    _tell(ctx, meeting, [i for i in attendees if i != member.id], "called", NOTICE_CALLED.format(**fields), "会议通知")
    for item in _reminders(ctx, meeting, org, attendees, version=""):
        ctx.enqueue(item)
    dialog.finish()
    notified = await _notified(ctx, [i for i in attendees if i != member.id])
    return CALLED.format(notified=notified, code=meeting.checkin_code,
                         located="，或在会场发送位置" if meeting.latitude is not None else "")



# ---------------------------------------------------------------- moving and cancelling


async def _pick_upcoming(ctx: Context, dialog: Dialog, member: Member, name: str, then: str,
                         kept: str) -> Meeting:
    """Start the dialog on the branch's one upcoming meeting, or ask which (a Refusal). kept is what 取消
    typed in the dialog answers: the meeting stays as it was, and "已取消。" would read as if it had been
    cancelled."""
    upcoming = await store.upcoming_meetings(ctx.driver, member.org_id, ctx.now)
    if not upcoming:
        raise Refusal(NO_UPCOMING_BRANCH)
    if len(upcoming) == 1:
        dialog.start(name, then, meeting_id=upcoming[0].id, org_id=member.org_id, **{CANCEL_TEXT: kept})
        return upcoming[0]
    dialog.start(name, "pick", then=then, org_id=member.org_id, **{CANCEL_TEXT: kept})
    raise Refusal(_offer_meetings(ctx, dialog, "pick", PICK_UPCOMING, upcoming))


@router.text("改时间", "会议改时间", roles=BRANCH_LEADERS, usage="改时间", summary="修改还没开的会议的时间")
async def move_meeting(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _pick_upcoming(ctx, dialog, member, MOVE, "time", KEEP_TIME)
    return ASK_NEW_TIME.format(meeting=_label(ctx.settings, meeting, ctx.now))


@router.text("取消会议", roles=BRANCH_LEADERS, usage="取消会议", summary="取消还没开的会议")
async def cancel_meeting(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _pick_upcoming(ctx, dialog, member, CANCEL, "confirm", KEEP_MEETING)
    return ASK_CANCEL.format(meeting=_label(ctx.settings, meeting, ctx.now))


@router.on(Picked(), dialog=MOVE, step="pick")
@router.on(Picked(), dialog=CANCEL, step="pick")
async def pick_upcoming(ctx: Context, dialog: Dialog, picked: int) -> str:
    meeting = await ctx.session.get(Meeting, picked)
    dialog.goto(dialog.data["then"], meeting_id=meeting.id)
    label = _label(ctx.settings, meeting, ctx.now)
    return ASK_NEW_TIME.format(meeting=label) if dialog.name == MOVE else ASK_CANCEL.format(meeting=label)


async def _still_upcoming(ctx: Context, dialog: Dialog, member: Member) -> Meeting | None:
    meeting = await ctx.session.get(Meeting, dialog.data["meeting_id"])
    if (meeting is None or meeting.org_id != member.org_id or meeting.status != MeetingStatus.SCHEDULED.value
            or meeting.starts_at <= ctx.now):
        return None
    return meeting


async def _still_movable(ctx: Context, dialog: Dialog, member: Member) -> Meeting:
    """The meeting being moved; a Refusal that ends the dialog when the sender is no longer a leader or
    the meeting is gone or started."""
    if not _still_leader(dialog, member):
        dialog.finish()
        raise Refusal(NO_LONGER_LEADER.format(what="修改会议时间"))
    meeting = await _still_upcoming(ctx, dialog, member)
    if meeting is None:
        dialog.finish()
        raise Refusal(NO_UPCOMING_BRANCH)
    return meeting


@router.on(AnyText(), dialog=MOVE, step="time")
@router.on(AnyText() & ~Choice(), dialog=MOVE, step="confirm")  # at the confirm, a new time replaces the last
async def move_time(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    meeting = await _still_movable(ctx, dialog, member)
    dialog.goto("time")  # where a time that cannot be read leaves the secretary
    read = _read_time(ctx, text)
    if read.moment == meeting.starts_at:
        dialog.goto("time")
        return SAME_TIME
    # Applied only after a 1: the old and new time side by side, as 开会 shows its preview.
    dialog.goto("confirm", starts_at=read.moment.isoformat(), next_year=read.next_year_guessed)
    return _confirm_move(ctx, dialog, meeting)


def _confirm_move(ctx: Context, dialog: Dialog, meeting: Meeting) -> str:
    moment = datetime.fromisoformat(dialog.data["starts_at"])
    # The day as typed (no year) in the question; the times below carry the year when not this year's.
    question = NEXT_YEAR_MOVE.format(day=_day(ctx.settings, moment, now=moment)) if dialog.data["next_year"] else ""
    return CONFIRM_MOVE.format(question=question, kind=meeting.kind, topic=meeting.topic,
                               old=_when(ctx.settings, meeting.starts_at, ctx.now),
                               new=_when(ctx.settings, moment, ctx.now))


@router.on(Choice(1), dialog=MOVE, step="confirm")
async def move_confirm(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _still_movable(ctx, dialog, member)
    moment = datetime.fromisoformat(dialog.data["starts_at"])
    if moment <= ctx.now:  # the secretary took long enough for the new time to pass
        dialog.goto("time")
        return IN_THE_PAST.format(when=_when(ctx.settings, moment, ctx.now)) + ASK_TIME
    old_when = _when(ctx.settings, meeting.starts_at, ctx.now)
    await outbox_store.withdraw_pending(ctx.session, _ref(meeting.id), reason=f"会议已改时间（原定 {old_when}）")
    meeting.starts_at, meeting.updated_at = moment, ctx.now
    org = await _branch(ctx.session, member)
    attendees = await store.expected_ids(ctx.session, meeting)
    # A fresh version for every move: keys of withdrawn rows are never reused.
    version = f"@{int(ctx.now.timestamp() * 1_000_000):x}"
    fields = _fields(ctx.settings, meeting, org, ctx.now)
    _tell(ctx, meeting, [i for i in attendees if i != member.id], f"moved{version}", NOTICE_MOVED.format(**fields),
          "会议改时间")
    for item in _reminders(ctx, meeting, org, attendees, version=version):
        ctx.enqueue(item)
    dialog.finish()
    return MOVED.format(when=_when(ctx.settings, moment, ctx.now),
                        notified=await _notified(ctx, [i for i in attendees if i != member.id]))


@router.on(Choice(2), dialog=MOVE, step="confirm")
async def move_kept(dialog: Dialog) -> str:
    dialog.finish()
    return KEEP_TIME


@router.on(Choice(), dialog=MOVE, step="confirm")
async def move_confirm_again(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _still_movable(ctx, dialog, member)
    return _confirm_move(ctx, dialog, meeting)


@router.on(Choice(1), dialog=CANCEL, step="confirm")
async def cancel_confirm(ctx: Context, dialog: Dialog, member: Member) -> str:
    allowed = _still_leader(dialog, member)
    meeting = await _still_upcoming(ctx, dialog, member)
    dialog.finish()
    if not allowed:
        return NO_LONGER_LEADER.format(what="取消会议")
    if meeting is None:
        return NO_UPCOMING_BRANCH
    await outbox_store.withdraw_pending(ctx.session, _ref(meeting.id), reason="会议已取消")
    meeting.status, meeting.updated_at = MeetingStatus.CANCELLED.value, ctx.now
    attendees = await store.expected_ids(ctx.session, meeting)
    told = [i for i in attendees if i != member.id]
    _tell(ctx, meeting, told, "cancelled",
          NOTICE_CANCELLED.format(when=_when(ctx.settings, meeting.starts_at, ctx.now), kind=meeting.kind,
                                  topic=meeting.topic),
          "会议取消")
    return CANCELLED_DONE.format(notified=await _notified(ctx, told))


@router.on(Choice(2), dialog=CANCEL, step="confirm")
async def cancel_kept(dialog: Dialog) -> str:
    dialog.finish()
    return KEEP_MEETING


@router.on(Choice(), dialog=CANCEL, step="confirm")
async def cancel_confirm_again(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _still_upcoming(ctx, dialog, member)
    if meeting is None:
        dialog.finish()
        return NO_UPCOMING_BRANCH
    return ASK_CANCEL.format(meeting=_label(ctx.settings, meeting, ctx.now))



# ---------------------------------------------------------------- the meeting's QR code

QR_COMING = "正在为 {label} 生成签到二维码，稍后发给您。"
QR_READY = ("【会议签到二维码】{label}\n{url}\n打开链接保存图片，打印出来或在手机上出示，党员用微信扫一扫即可签到。"
            "没有二维码时也可以回复 签到 {code}。")
QR_FAILED = "签到二维码暂时没有生成成功，请稍后再发 会议二维码。党员也可以回复 签到 {code} 签到。"
NO_MEETING_FOR_QR = "本支部近期没有会议。先发 开会 召集会议。"


@router.text("会议二维码", "签到二维码", roles=BRANCH_LEADERS, usage="会议二维码", summary="获取下一次会议的签到二维码")
async def meeting_qr_code(ctx: Context, member: Member) -> str:
    before, after = _window(ctx.settings)
    # The meeting open now, else the next one: a code printed ahead of time is the common case.
    meetings = await store.upcoming_meetings(ctx.driver, member.org_id, ctx.now - after)
    if not meetings:
        return NO_MEETING_FOR_QR
    meeting = meetings[0]
    label, code = _label(ctx.settings, meeting, ctx.now), meeting.checkin_code
    meeting_id, secretary = meeting.id, member.id
    # Valid until the check-in window closes, plus a day of slack; WeChat caps it at 30 days.
    expire = int((meeting.starts_at + after - ctx.now).total_seconds()) + 86400

    async def make_and_send(job: JobContext) -> None:
        try:
            if job.channel is None:
                raise RuntimeError("no messaging platform configured")
            url = await job.channel.qr_code_url(f"meeting:{meeting_id}", expire)
            text = QR_READY.format(label=label, url=url, code=code)
        except Exception:
            log.exception("QR code for meeting %s failed", meeting_id)
            text = QR_FAILED.format(code=code)
        now = job.clock.now()
        async with job.sessions() as session, session.begin():
            await enqueue(session, [Outgoing(key=f"{_ref(meeting_id)}:qr:{now.timestamp()}", kind="reply", text=text,
                                             member_id=secretary, ref=_ref(meeting_id), urgent=True)],
                          now=now, settings=job.settings)

    ctx.after_commit(make_and_send)
    return QR_COMING.format(label=label)
