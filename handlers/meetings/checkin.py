"""签到 by code, QR code, location or menu tap, and 代签 for members without a phone.

Every check-in is judged at the moment the member sent it (ctx.sent_at), not when the handler got to
it: a busy server must not make anyone late, or close the window on them. Check-ins read and write on the
message's driver (ctx.driver; storage.meetings says why): the meetings they get are detached, for reading.
"""

from __future__ import annotations

import re

from bot.dialogs import Picked
from bot.dispatch import (
    WHAT_IS_WAITING,
    Click,
    Context,
    Dialog,
    EventType,
    MemberRole,
    MessageKind,
    Scene,
    SkipHandler,
)
from bot.messages import Kind, Message
from handlers.meetings.common import (
    ALREADY,
    ASK_PROXY_NAME,
    BIND_FIRST,
    CHECKED_IN,
    CHECKED_IN_LATE,
    CHECKIN,
    FAR_AWAY,
    NEXT_MEETING,
    NO_OPEN_FOR_PROXY,
    NO_PLACE_LOCATION,
    NONE_OPEN,
    NOT_YOURS,
    PICK_MEETING,
    PROXY_ALREADY,
    PROXY_DONE,
    PROXY_NO_PHONE_END,
    PROXY_UNKNOWN,
    PROXY_WHICH,
    TOO_EARLY,
    TOO_LATE,
    UNKNOWN_QR,
    WAS_CANCELLED,
    WRONG_CODE,
    _clock,
    _is_late,
    _label,
    _offer_meetings,
    _when,
    _window,
    router,
)
from storage import meetings as store
from storage.members import namesakes
from storage.models import BRANCH_LEADERS, CheckInMethod, Meeting, MeetingStatus, Member


# ---------------------------------------------------------------- 签到: checking in


async def _check_in(ctx: Context, member: Member, meeting: Meeting | None, method: CheckInMethod) -> str:
    """Check a member in to one meeting, or say why not."""
    settings, now, driver = ctx.settings, ctx.sent_at, ctx.driver
    if meeting is None:
        return WRONG_CODE
    # Members of the branch may sit in on a meeting they are not expected at (the sheet lists them as
    # guests); another branch's meeting is refused.
    if meeting.org_id != member.org_id:
        return NOT_YOURS
    if meeting.status == MeetingStatus.CANCELLED.value:
        return WAS_CANCELLED
    before, after = _window(settings)
    if not meeting.starts_at - before <= now <= meeting.starts_at + after:
        # Outside the window, one who signed in already hears so, not that it is closed.
        existing = await store.checked_in(driver, meeting.id, member.id)
        if existing is not None:
            return ALREADY.format(time=_clock(settings, existing.checked_in_at, now))
        if now < meeting.starts_at - before:
            return TOO_EARLY.format(opens=_clock(settings, meeting.starts_at - before, now))
        return TOO_LATE.format(closed=_clock(settings, meeting.starts_at + after, now))
    # Inside it the insert tells whether they had: a second 签到 finds the first one's row.
    attendance, created = await store.record_check_in(driver, meeting, member.id, now=now, method=method.value,
                                                      late=_is_late(settings, meeting, now))
    if not created:
        return ALREADY.format(time=_clock(settings, attendance.checked_in_at, now))
    text = CHECKED_IN_LATE if attendance.late else CHECKED_IN
    return text.format(kind=meeting.kind, topic=meeting.topic, time=_clock(settings, now))


async def _open_for(ctx: Context, member: Member) -> list[Meeting]:
    """Meetings of the member's branch that they are expected at and whose check-in window was open
    when they sent the message."""
    before, after = _window(ctx.settings)
    sent = ctx.sent_at
    found = await store.branch_meetings_between(ctx.driver, member.org_id, sent - after, sent + before)
    return [meeting for meeting in found if store.expects(meeting, member)]


async def _none_open(ctx: Context, member: Member) -> str:
    upcoming = [meeting for meeting in await store.upcoming_meetings(ctx.driver, member.org_id, ctx.sent_at)
                if store.expects(meeting, member)]
    if not upcoming:
        return NONE_OPEN
    return NONE_OPEN + NEXT_MEETING.format(when=_when(ctx.settings, upcoming[0].starts_at, ctx.now),
                                           kind=upcoming[0].kind, minutes=ctx.settings.checkin_window_before_minutes)


@router.text("签到", takes_args=True, bound=True, usage="签到 签到码", summary="开会时签到（也可点菜单 签到）")
async def check_in_typed(ctx: Context, dialog: Dialog, member: Member, args: str) -> str:
    # args is NFKC-folded: full-width digits arrive as ASCII. Other digits (superscripts that NFKC
    # leaves alone, other scripts) and any other length are simply not a code.
    code = args.replace(" ", "")
    if code:
        if not re.fullmatch(r"[0-9]{6}", code):
            return WRONG_CODE
        # Only the member's own branch is searched: another branch's code gets the very answer a wrong
        # code gets, so trying numbers tells nobody which codes exist.
        meeting = await store.branch_meeting_by_code(ctx.driver, member.org_id, code)
        return await _check_in(ctx, member, meeting, CheckInMethod.CODE)
    return await _check_in_open(ctx, dialog, member)


@router.on(Click("CHECKIN"), bound=True)
async def check_in_tapped(ctx: Context, dialog: Dialog, member: Member) -> str:
    return await _check_in_open(ctx, dialog, member)


async def _check_in_open(ctx: Context, dialog: Dialog, member: Member) -> str:
    """签到 without a code: fine when exactly one meeting of theirs is open; several are listed."""
    open_now = await _open_for(ctx, member)
    if not open_now:
        return await _none_open(ctx, member)
    # A meeting they already signed in to is no longer a choice: 签到 then means the other one.
    signed = {meeting.id for meeting in open_now if await store.checked_in(ctx.driver, meeting.id, member.id)}
    if len(signed) == len(open_now):
        return await _check_in(ctx, member, open_now[-1], CheckInMethod.MENU)
    open_now = [meeting for meeting in open_now if meeting.id not in signed]
    if len(open_now) == 1:
        return await _check_in(ctx, member, open_now[0], CheckInMethod.MENU)
    dialog.start(CHECKIN, "pick")
    return _offer_meetings(ctx, dialog, "pick", PICK_MEETING.format(count=len(open_now), options="{options}"), open_now)


@router.on(Picked(), dialog=CHECKIN, step="pick")
async def check_in_pick(ctx: Context, dialog: Dialog, member: Member, picked: int) -> str:
    meeting = await store.meeting_by_id(ctx.driver, picked)
    dialog.finish()
    return await _check_in(ctx, member, meeting, CheckInMethod.MENU)


@router.on((EventType("scan") | EventType("subscribe")) & Scene("meeting:"))
async def check_in_scanned(ctx: Context, member: Member | None, scene: str) -> str:
    if member is None:
        return BIND_FIRST
    # Our codes carry "meeting:<id>"; anything else (a forged or mangled scene, "²" which isdigit()
    # accepts and int() refuses, a number beyond the id column) is just not one of them.
    if not re.fullmatch(r"[0-9]{1,9}", scene):
        return UNKNOWN_QR
    meeting = await store.meeting_by_id(ctx.driver, int(scene))
    if meeting is None:
        return UNKNOWN_QR
    return await _check_in(ctx, member, meeting, CheckInMethod.QR)


@router.on(MessageKind(Kind.LOCATION) & MemberRole())
async def check_in_located(ctx: Context, member: Member, message: Message) -> str:
    open_now = await _open_for(ctx, member)
    if not open_now:
        raise SkipHandler  # a location with no meeting on is not a check-in
    placed = [meeting for meeting in open_now if meeting.latitude is not None and meeting.longitude is not None]
    if not placed:
        return NO_PLACE_LOCATION
    where = message.location
    nearest, distance = min(
        ((meeting, store.distance_m(where.latitude, where.longitude, meeting.latitude, meeting.longitude))
         for meeting in placed), key=lambda pair: pair[1])
    if distance > nearest.radius_m:
        shown = f"{distance / 1000:.1f} 公里" if distance >= 1000 else f"{int(distance)} 米"
        return FAR_AWAY.format(distance=shown, radius=nearest.radius_m)
    return await _check_in(ctx, member, nearest, CheckInMethod.LOCATION)


# ---------------------------------------------------------------- 代签: the non-phone path


def _proxy_targets(args: str) -> list[tuple[str, str]]:
    """(name, phone end) for each person in "赵德明 李明 1234 王秀英": four digits after a name (with or
    without a space) tell namesakes apart, as 新绑定码 does. Names never contain digits."""
    targets: list[tuple[str, str]] = []
    for word in re.split(r"[\s,，、;；]+", args):
        if not word:
            continue
        match = re.fullmatch(r"([^0-9]*)([0-9]{4})", word)
        if match and match.group(1):  # "李明1234"
            targets.append((match.group(1), match.group(2)))
        elif match and targets and not targets[-1][1]:  # "李明 1234"
            targets[-1] = (targets[-1][0], word)
        else:
            targets.append((word, ""))
    return targets


async def _proxy_one(ctx: Context, member: Member, meeting: Meeting, name: str, end: str) -> str:
    """Sign one person in for the secretary, or say why not. Namesakes are never guessed between."""
    people = await namesakes(ctx.session, member.org_id, name)
    if not people:
        return PROXY_UNKNOWN.format(name=name)
    chosen = [person for person in people if person.phone.endswith(end)] if end else people
    if not chosen:
        return PROXY_NO_PHONE_END.format(name=name, end=end)
    if len(chosen) > 1:
        example = next((person.phone[-4:] for person in chosen if person.phone), "1234")
        return PROXY_WHICH.format(count=len(chosen), name=name, example=example)
    sent = ctx.sent_at
    attendance, created = await store.record_check_in(
        ctx.driver, meeting, chosen[0].id, now=sent, method=CheckInMethod.PROXY.value,
        late=_is_late(ctx.settings, meeting, sent), proxy_by=member.id)
    shown = f"{name}（手机尾号 {end}）" if end else name
    when = _clock(ctx.settings, attendance.checked_in_at, sent)
    if created:
        return PROXY_DONE.format(name=shown, time=when, late="，迟到" if attendance.late else "")
    return PROXY_ALREADY.format(name=shown, time=when)


@router.text("代签", takes_args=True, roles=BRANCH_LEADERS, usage="代签 姓名", summary="为没带手机的党员签到")
async def proxy_check_in(ctx: Context, member: Member, args: str) -> str:
    targets = _proxy_targets(args)
    if not targets:
        return ASK_PROXY_NAME
    before, after = _window(ctx.settings)
    sent = ctx.sent_at
    open_now = await store.branch_meetings_between(ctx.driver, member.org_id, sent - after, sent + before)
    if not open_now:
        return NO_OPEN_FOR_PROXY.format(before=ctx.settings.checkin_window_before_minutes,
                                        after=ctx.settings.checkin_window_after_minutes)
    # With two meetings open at once, the one nearest its start is the one in the room.
    meeting = min(open_now, key=lambda m: abs((m.starts_at - sent).total_seconds()))
    lines = [await _proxy_one(ctx, member, meeting, name, end) for name, end in targets]
    return f"{_label(ctx.settings, meeting, ctx.now)}：\n" + "\n".join(lines)


@router.when(WHAT_IS_WAITING)
async def check_in_waiting(ctx: Context, member: Member) -> str | None:
    """A meeting of this member's open for check-in, which they have not signed in to (for a greeting)."""
    before, after = _window(ctx.settings)
    now = ctx.now
    for meeting in await store.branch_meetings_between(ctx.driver, member.org_id, now - after, now + before):
        if store.expects(meeting, member) and \
                await store.checked_in(ctx.driver, meeting.id, member.id) is None:
            return f"回复 签到 —— {meeting.kind}正在签到"
    return None
