"""The meetings feature in the chat: 开会, 签到, 代签, 请假, attendance, the record and photos.

Calling a meeting is a short dialog; the meeting and every notice about it (called now, the day before,
an hour before) commit together, as outbox rows with ref "meeting:<id>". Moving or cancelling a meeting
withdraws the rows not yet sent and writes new ones, under new keys, so an old reminder never goes out.

Check-in replaces the paper sign-in sheet of a real meeting, nothing more (domain.md, the 2026 rule):
there are no points, no rankings and no reminders about absence; absence is handled by 请假, and a
member without a phone is signed in by the secretary (代签).

QR codes: a meeting's parametric QR code carries the scene string "meeting:<id>". A scan, or a first
follow through the code, checks the member in. 会议二维码 asks the platform for the code after the
handler's commit (ctx.after_commit: handlers never call the platform inside a transaction) and sends
the secretary its image address through the outbox.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.dispatch import (
    UNSUPPORTED,
    AnyText,
    Choice,
    Click,
    Context,
    Dialog,
    EventType,
    JobContext,
    MemberRole,
    MessageKind,
    Router,
    Scene,
)
from bot.messages import Kind, Message
from bot.outbox import Outgoing, enqueue
from bot.when import WhenError, parse_when
from storage import audiences
from storage import meetings as store
from storage import outbox as outbox_store
from storage.models import (
    BRANCH_LEADERS,
    Attendance,
    CheckInMethod,
    LeaveRequest,
    LeaveStatus,
    Meeting,
    MeetingKind,
    MeetingPhoto,
    MeetingStatus,
    Member,
    Organization,
)

log = logging.getLogger(__name__)
router = Router("meetings")

KINDS = list(MeetingKind)
WEEKDAYS = "一二三四五六日"
MAX_TOPIC = 200
MAX_PLACE = 100
MAX_REASON = 200
MAX_RECORD_FIELD = 4000
SKIP_WORDS = ("跳过", "无", "没有")
KIND_OF_MESSAGE = "meeting"

CALL, CHECKIN, LEAVE, MOVE, CANCEL, RECORD = ("meeting_call", "meeting_checkin", "meeting_leave", "meeting_move",
                                              "meeting_cancel", "meeting_record")

# -- texts: calling
ASK_KIND = ("开什么会？回复数字：\n" + "\n".join(f"{n} {kind.value}" for n, kind in enumerate(KINDS, start=1))
            + "\n回复 取消 可退出。")
ASK_GROUP = "哪个党小组开会？回复数字：\n{options}"
NO_GROUPS = "本支部还没有党小组，请选别的会议。\n"
ASK_TIME = "什么时候开？例如：明天下午3点、11月28日 14:30、周五 9:00。"
IN_THE_PAST = "{when} 已经过去了，请回复一个以后的时间。\n"
ASK_PLACE = ("在哪里开？请回复地点，如“村委会会议室”。\n"
             "也可以在会场发送位置（点 + → 位置），党员到场后发送位置就能签到。")
ASK_TOPIC = "会议议题是什么？请用一两句话说明。"
LOCATION_SET = "已记下会场位置，党员到场后发送位置即可签到。\n"
TOO_LONG = "太长了（最多 {limit} 字），请精简后重新回复。"
PREVIEW = ("请核对：\n{kind}{group}\n时间：{when}\n地点：{place}{located}\n议题：{topic}\n应到 {count} 人。\n"
           "回复 1 确认并通知参会党员；回复 取消 放弃。")
CALLED = ("会议已召集，已通知 {count} 人。\n签到码：{code}（开会时念给大家，回复 签到 {code} 即可签到；"
          "也可以点菜单 签到{located}）。\n没带手机的党员，回复 代签 姓名 帮他签到。\n"
          "要改时间回复 改时间，要取消回复 取消会议。")
NOBODY_EXPECTED = "这次会议没有应到的党员（{kind}），请重新选择会议类型。\n" + ASK_KIND

# -- texts: notices to attendees
NOTICE_CALLED = ("【会议通知】{org}召开{kind}\n时间：{when}\n地点：{place}\n议题：{topic}\n"
                 "到会后点菜单 签到，或回复 签到 加会上公布的签到码。不能参加请回复 请假 原因。")
NOTICE_DAY = "【会议提醒】明天 {time} 在{place}召开{kind}：{topic}。\n不能参加请回复 请假 原因。"
NOTICE_HOUR = "【会议提醒】{time} 在{place}召开{kind}，还有 1 小时。\n到会后点菜单 签到 即可。"
NOTICE_MOVED = ("【会议改时间】{kind}“{topic}”改到 {when}，地点：{place}。\n"
                "不能参加请回复 请假 原因。")
NOTICE_CANCELLED = "【会议取消】原定 {when} 召开的{kind}“{topic}”取消了，不用参加。"

# -- texts: check-in
CHECKED_IN = "签到成功！{kind}“{topic}”，签到时间 {time}。"
CHECKED_IN_LATE = "签到成功（迟到）。{kind}“{topic}”，签到时间 {time}。"
ALREADY = "您已于 {time} 签到。"
WRONG_CODE = "签到码不对，请核对会上公布的 6 位数字，再回复 签到 加签到码。"
NOT_YOURS = "这不是您所在支部的会议，不能签到。"
WAS_CANCELLED = "这次会议已取消，不用签到。"
TOO_EARLY = "还没到签到时间，{opens} 起可以签到。"
TOO_LATE = "这次会议的签到已在 {closed} 结束。如果您参加了会议，请联系书记代签。"
NONE_OPEN = "现在没有可以签到的会议。"
NEXT_MEETING = "\n下一次会议：{when}，{kind}。开会前 {minutes} 分钟起可以签到。"
PICK_MEETING = "现在有 {count} 个会议可以签到，回复数字选择：\n{options}"
PICK_AGAIN = "请回复列表里的数字。\n{options}"
FAR_AWAY = ("您离会场约 {distance}，不在签到范围（{radius} 米）内。\n"
            "到了会场再发送位置，或回复 签到 加会上公布的签到码。")
NO_PLACE_LOCATION = "这次会议没有设置会场位置，请回复 签到 加会上公布的签到码，或点菜单 签到。"
BIND_FIRST = "欢迎关注支部助手！请先绑定党员身份：回复 绑定，按提示回复姓名和绑定码。绑定后再扫一次会议二维码即可签到。"

# -- texts: 代签
ASK_PROXY_NAME = "请回复要代签的党员姓名，例如：代签 张三（多人用空格隔开）。"
NO_OPEN_FOR_PROXY = "现在没有正在签到的本支部会议（开会前 {before} 分钟到开始后 {after} 分钟可以代签）。"
PROXY_DONE = "已为 {name} 代签（{time}{late}）。"
PROXY_ALREADY = "{name} 已于 {time} 签到。"
PROXY_UNKNOWN = "本支部没有叫 {name} 的党员，请核对姓名。"

# -- texts: leave
ASK_REASON = "请回复请假原因，例如：请假 外出务工。"
NO_UPCOMING = "近期没有需要您参加的会议，不用请假。"
LEAVE_SENT = "已向书记请假（{meeting}），原因：{reason}。书记回复后会告诉您。"
LEAVE_EXISTS = "您已为{meeting}请过假（{status}）。"
LEAVE_TO_LEADER = "{name} 请假：{reason}。\n会议：{meeting}\n回复 同意 或 不同意。"
LEAVE_AUTO = "已记下您的请假（{meeting}），原因：{reason}。"
LEAVE_STATUS = {LeaveStatus.PENDING.value: "等待书记回复", LeaveStatus.APPROVED.value: "已同意",
                LeaveStatus.DECLINED.value: "未同意"}
NO_PENDING_LEAVE = "目前没有待处理的请假。"
NO_PENDING_LEAVE_OF = "没有 {name} 待处理的请假。"
DECIDED = "已{verb} {name} 的请假（{meeting}），会告诉本人。"
MORE_PENDING = "\n还有 {count} 条请假待处理：{next}。回复 同意 或 不同意 继续。"
TOLD_APPROVED = "书记已同意您的请假（{meeting}）。"
TOLD_DECLINED = "书记没有同意您的请假（{meeting}），请尽量参加；确有困难请直接联系书记。"

# -- texts: after the meeting
NO_STARTED = "本支部还没有已经开始的会议。"
REPORT_HEAD = "{kind}“{topic}”\n{when}，{place}\n应到 {expected} 人，实到 {present} 人，请假 {leave} 人，缺席 {absent} 人。"
RECORD_INTRO = "为{meeting}填写会议记录，共 5 项，每项回复一条消息；回复 跳过 可跳过该项。\n"
RECORD_STEPS = [
    ("host", "1/5 主持人是谁？"),
    ("recorder", "2/5 记录人是谁？"),
    ("minutes", "3/5 会议议题和发言情况（可以多说几句，也可以用语音）："),
    ("resolutions", "4/5 会议决议（没有请回复 跳过）："),
    ("votes", "5/5 表决情况，例如：同意 30，反对 0，弃权 1（没有表决请回复 跳过）："),
]
RECORD_SAVED = "会议记录已保存（{meeting}）。\n{summary}\n开会照片可以直接发给我，会附在这次会议上。"
PHOTO_SAVED = "照片已附到{meeting}，这次会议共 {count} 张照片。"

# -- texts: moving and cancelling
NO_UPCOMING_BRANCH = "本支部没有还未开始的会议。"
PICK_UPCOMING = "哪个会议？回复数字：\n{options}"
ASK_NEW_TIME = "{meeting}改到什么时候？" + ASK_TIME[len("什么时候开？"):]
SAME_TIME = "新时间和原来一样，请回复一个不同的时间。"
MOVED = "已改到 {when}，已通知 {count} 人。"
ASK_CANCEL = "确定取消{meeting}吗？回复 1 确定取消；回复 取消 保留会议。"
CANCELLED_DONE = "会议已取消，已通知 {count} 人。"


# ---------------------------------------------------------------- small helpers


def _local(ctx_or_settings, moment: datetime) -> datetime:
    settings = getattr(ctx_or_settings, "settings", ctx_or_settings)
    return moment.astimezone(settings.zone)


def _when(settings, moment: datetime) -> str:
    """"11月26日（周四）15:00" in local time."""
    local = _local(settings, moment)
    return f"{local.month}月{local.day}日（周{WEEKDAYS[local.weekday()]}）{local:%H:%M}"


def _clock(settings, moment: datetime, now: datetime | None = None) -> str:
    """"14:02", with the date in front when it is not today."""
    local = _local(settings, moment)
    if now is not None and _local(settings, now).date() != local.date():
        return f"{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local:%H:%M}"


def _label(settings, meeting: Meeting) -> str:
    """How a meeting is named in replies: "11月26日（周四）15:00 支部党员大会"."""
    return f"{_when(settings, meeting.starts_at)} {meeting.kind}"


def _numbered(settings, meetings: list[Meeting]) -> str:
    return "\n".join(f"{n} {_label(settings, meeting)}：{meeting.topic}" for n, meeting in enumerate(meetings, start=1))


def _window(settings) -> tuple[timedelta, timedelta]:
    return (timedelta(minutes=settings.checkin_window_before_minutes),
            timedelta(minutes=settings.checkin_window_after_minutes))


def _ref(meeting_id: int) -> str:
    return f"meeting:{meeting_id}"


def _is_late(settings, meeting: Meeting, now: datetime) -> bool:
    return now > meeting.starts_at + timedelta(minutes=settings.late_after_minutes)


async def _branch(session: AsyncSession, member: Member) -> Organization:
    return await session.get(Organization, member.org_id)


# ---------------------------------------------------------------- notices to attendees


def _template(settings, meeting: Meeting, title: str) -> dict[str, str]:
    return {"title": title, "content": f"{meeting.kind}：{meeting.topic}", "time": _when(settings, meeting.starts_at),
            "place": meeting.place, "remark": "不能参加请回复 请假 原因"}


def _fields(settings, meeting: Meeting, org: Organization) -> dict[str, str]:
    return dict(org=org.name, kind=meeting.kind, topic=meeting.topic, place=meeting.place,
                when=_when(settings, meeting.starts_at), time=_clock(settings, meeting.starts_at))


def _reminders(ctx: Context, meeting: Meeting, org: Organization, member_ids: list[int], version: str) -> list[Outgoing]:
    """The day-before and hour-before reminders still ahead. version keeps a moved meeting's new
    reminders apart from the withdrawn ones (idempotency keys are never reused)."""
    settings, now = ctx.settings, ctx.now
    fields = _fields(settings, meeting, org)
    items = []
    for what, before, text in (("day", timedelta(days=1), NOTICE_DAY), ("hour", timedelta(hours=1), NOTICE_HOUR)):
        at = meeting.starts_at - before
        if at <= now:
            continue
        for member_id in member_ids:
            items.append(Outgoing(key=f"{_ref(meeting.id)}:{member_id}:{what}{version}", kind=KIND_OF_MESSAGE,
                                  text=text.format(**fields), member_id=member_id, ref=_ref(meeting.id),
                                  template=_template(settings, meeting, "会议提醒"), not_before=at))
    return items


def _tell(ctx: Context, meeting: Meeting, member_ids: list[int], what: str, text: str, title: str) -> None:
    for member_id in member_ids:
        ctx.enqueue(Outgoing(key=f"{_ref(meeting.id)}:{member_id}:{what}", kind=KIND_OF_MESSAGE, text=text,
                             member_id=member_id, ref=_ref(meeting.id),
                             template=_template(ctx.settings, meeting, title)))


# ---------------------------------------------------------------- 开会: calling a meeting


@router.text("开会", "召集会议", "发起会议", roles=BRANCH_LEADERS, usage="开会", summary="召集会议并通知参会党员")
async def call_meeting(dialog: Dialog) -> str:
    dialog.start(CALL, "kind")
    return ASK_KIND


async def _kind_chosen(ctx: Context, dialog: Dialog, member: Member, kind: MeetingKind) -> str:
    if kind is MeetingKind.GROUP:
        groups = await audiences.groups_of(ctx.session, await _branch(ctx.session, member))
        if not groups:
            return NO_GROUPS + ASK_KIND
        dialog.goto("group", kind=kind.value, groups=[[group.id, group.name] for group in groups])
        return ASK_GROUP.format(options="\n".join(f"{n} {group.name}" for n, group in enumerate(groups, start=1)))
    dialog.goto("time", kind=kind.value, group_id=None, group_name="")
    return ASK_TIME


@router.on(Choice(), dialog=CALL, step="kind")
async def call_kind_number(ctx: Context, dialog: Dialog, member: Member, choice: int) -> str:
    if not 1 <= choice <= len(KINDS):
        return ASK_KIND
    return await _kind_chosen(ctx, dialog, member, KINDS[choice - 1])


@router.on(AnyText(), dialog=CALL, step="kind")
async def call_kind_name(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    for kind in KINDS:
        if text in (kind.value, kind.value.removeprefix("支部")):
            return await _kind_chosen(ctx, dialog, member, kind)
    return ASK_KIND


@router.on(Choice(), dialog=CALL, step="group")
async def call_group(dialog: Dialog, choice: int) -> str:
    groups = dialog.data["groups"]
    if not 1 <= choice <= len(groups):
        return ASK_GROUP.format(options="\n".join(f"{n} {name}" for n, (_, name) in enumerate(groups, start=1)))
    group_id, group_name = groups[choice - 1]
    dialog.goto("time", group_id=group_id, group_name=group_name)
    return ASK_TIME


def _read_time(ctx: Context, text: str) -> datetime | str:
    """The moment a phrase means, or the reply asking again (with the reason)."""
    try:
        moment = parse_when(text, now=ctx.now, zone=ctx.settings.zone)
    except WhenError as error:
        return f"{error}\n{ASK_TIME}"
    if moment <= ctx.now:
        return IN_THE_PAST.format(when=_when(ctx.settings, moment)) + ASK_TIME
    return moment


@router.on(AnyText(), dialog=CALL, step="time")
async def call_time(ctx: Context, dialog: Dialog, text: str) -> str:
    moment = _read_time(ctx, text)
    if isinstance(moment, str):
        return moment
    dialog.goto("place", starts_at=moment.isoformat())
    return ASK_PLACE


def _location_of(message: Message) -> tuple[float, float, str] | None:
    if message.kind == Kind.LOCATION and message.location is not None:
        return message.location.latitude, message.location.longitude, message.location.label.strip()
    return None


@router.on(AnyText() | MessageKind(Kind.LOCATION), dialog=CALL, step="place")
async def call_place(ctx: Context, dialog: Dialog, message: Message, text: str | None = None) -> str:
    located = _location_of(message)
    if located is not None:
        latitude, longitude, label = located
        dialog.goto("topic" if label else "place", latitude=latitude, longitude=longitude,
                    place=label[:MAX_PLACE] if label else None)
        return LOCATION_SET + (ASK_TOPIC if label else "请再回复地点名称，如“村委会会议室”。")
    if not text:
        return ASK_PLACE
    if len(text) > MAX_PLACE:
        return TOO_LONG.format(limit=MAX_PLACE)
    dialog.goto("topic", place=text)
    return ASK_TOPIC


@router.on(AnyText() | MessageKind(Kind.LOCATION), dialog=CALL, step="topic")
async def call_topic(ctx: Context, dialog: Dialog, member: Member, message: Message, text: str | None = None) -> str:
    located = _location_of(message)
    if located is not None:
        # The secretary named the place, then shared where it is: keep the name, take the position.
        dialog.goto("topic", latitude=located[0], longitude=located[1])
        return LOCATION_SET + ASK_TOPIC
    if not text:
        return ASK_TOPIC
    if len(text) > MAX_TOPIC:
        return TOO_LONG.format(limit=MAX_TOPIC)
    dialog.goto("confirm", topic=text)
    meeting = _draft(ctx, dialog, member)
    count = await audiences.count(ctx.session, store.expected_member_ids(meeting))
    if count == 0:
        dialog.goto("kind")
        return NOBODY_EXPECTED.format(kind=meeting.kind)
    data = dialog.data
    return PREVIEW.format(kind=meeting.kind, group=f"（{data['group_name']}）" if data.get("group_name") else "",
                          when=_when(ctx.settings, meeting.starts_at), place=meeting.place,
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
    meeting = _draft(ctx, dialog, member)
    if meeting.starts_at <= ctx.now:  # the secretary took long enough for the time to pass
        dialog.goto("time")
        return IN_THE_PAST.format(when=_when(ctx.settings, meeting.starts_at)) + ASK_TIME
    await store.add_meeting(session, meeting)
    org = await _branch(session, member)
    attendees = await store.expected_ids(session, meeting)
    fields = _fields(ctx.settings, meeting, org)
    # The caller knows already; everyone else hears now, and everyone (caller included) is reminded.
    _tell(ctx, meeting, [i for i in attendees if i != member.id], "called", NOTICE_CALLED.format(**fields), "会议通知")
    for item in _reminders(ctx, meeting, org, attendees, version=""):
        ctx.enqueue(item)
    dialog.finish()
    return CALLED.format(count=len(attendees), code=meeting.checkin_code,
                         located="，或在会场发送位置" if meeting.latitude is not None else "")


# ---------------------------------------------------------------- 签到情况: the attendance report
# Registered before 签到: "签到情况" would otherwise read as 签到 with the code "情况".


@router.text("出勤", "签到情况", "出勤情况", roles=BRANCH_LEADERS, usage="签到情况", summary="查看最近一次会议的出勤")
async def attendance_report(ctx: Context, member: Member) -> str:
    meeting = await store.latest_started(ctx.session, member.org_id, ctx.now)
    if meeting is None:
        return NO_STARTED
    return await describe_attendance(ctx.session, meeting, ctx.settings)


async def describe_attendance(session: AsyncSession, meeting: Meeting, settings) -> str:
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

    lines = [REPORT_HEAD.format(kind=meeting.kind, topic=meeting.topic, when=_when(settings, meeting.starts_at),
                                place=meeting.place, expected=sheet.expected, present=len(sheet.present),
                                leave=len(sheet.on_leave), absent=len(sheet.absent))]
    if sheet.present:
        lines.append("实到：" + "、".join(present_line(person, attendance) for person, attendance in sheet.present))
    if sheet.on_leave:
        lines.append("请假：" + "、".join(f"{person.name}（{request.reason}）" for person, request in sheet.on_leave))
    if sheet.absent:
        lines.append("缺席：" + "、".join(person.name for person in sheet.absent))
    if sheet.guests:
        lines.append("列席：" + "、".join(present_line(person, attendance) for person, attendance in sheet.guests))
    return "\n".join(lines)


# ---------------------------------------------------------------- 签到: checking in


async def _check_in(ctx: Context, member: Member, meeting: Meeting | None, method: CheckInMethod) -> str:
    """Check a member in to one meeting, or say why not."""
    settings, now, session = ctx.settings, ctx.now, ctx.session
    if meeting is None:
        return WRONG_CODE
    # Members of the branch may sit in on a meeting they are not expected at (the sheet lists them as
    # guests); another branch's meeting is refused.
    if meeting.org_id != member.org_id:
        return NOT_YOURS
    if meeting.status == MeetingStatus.CANCELLED.value:
        return WAS_CANCELLED
    existing = await store.attendance_of(session, meeting.id, member.id)
    if existing is not None:
        return ALREADY.format(time=_clock(settings, existing.checked_in_at, now))
    before, after = _window(settings)
    if now < meeting.starts_at - before:
        return TOO_EARLY.format(opens=_clock(settings, meeting.starts_at - before, now))
    if now > meeting.starts_at + after:
        return TOO_LATE.format(closed=_clock(settings, meeting.starts_at + after, now))
    attendance, created = await store.record_check_in(session, meeting, member.id, now=now, method=method.value,
                                                      late=_is_late(settings, meeting, now))
    if not created:
        return ALREADY.format(time=_clock(settings, attendance.checked_in_at, now))
    text = CHECKED_IN_LATE if attendance.late else CHECKED_IN
    return text.format(kind=meeting.kind, topic=meeting.topic, time=_clock(settings, now))


async def _open_for(ctx: Context, member: Member) -> list[Meeting]:
    """Meetings of the member's branch that they are expected at and whose check-in window is open."""
    before, after = _window(ctx.settings)
    found = await store.branch_meetings_between(ctx.session, member.org_id, ctx.now - after, ctx.now + before)
    return [meeting for meeting in found if await store.is_expected(ctx.session, meeting, member.id)]


async def _none_open(ctx: Context, member: Member) -> str:
    upcoming = [meeting for meeting in await store.upcoming_meetings(ctx.session, member.org_id, ctx.now)
                if await store.is_expected(ctx.session, meeting, member.id)]
    if not upcoming:
        return NONE_OPEN
    return NONE_OPEN + NEXT_MEETING.format(when=_when(ctx.settings, upcoming[0].starts_at), kind=upcoming[0].kind,
                                           minutes=ctx.settings.checkin_window_before_minutes)


@router.text("签到", takes_args=True, bound=True, usage="签到 签到码", summary="开会时签到（也可点菜单 签到）")
async def check_in_typed(ctx: Context, dialog: Dialog, member: Member, args: str) -> str:
    code = args.replace(" ", "")
    if code:
        if not re.fullmatch(r"\d{6}", code):
            return WRONG_CODE
        return await _check_in(ctx, member, await store.meeting_by_code(ctx.session, code), CheckInMethod.CODE)
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
    signed = {meeting.id for meeting in open_now if await store.attendance_of(ctx.session, meeting.id, member.id)}
    if len(signed) == len(open_now):
        return await _check_in(ctx, member, open_now[-1], CheckInMethod.MENU)
    open_now = [meeting for meeting in open_now if meeting.id not in signed]
    if len(open_now) == 1:
        return await _check_in(ctx, member, open_now[0], CheckInMethod.MENU)
    dialog.start(CHECKIN, "pick", ids=[meeting.id for meeting in open_now])
    return PICK_MEETING.format(count=len(open_now), options=_numbered(ctx.settings, open_now))


async def _picked(ctx: Context, dialog: Dialog, choice: int) -> Meeting | str:
    ids = dialog.data["ids"]
    if not 1 <= choice <= len(ids):
        meetings = [await ctx.session.get(Meeting, meeting_id) for meeting_id in ids]
        return PICK_AGAIN.format(options=_numbered(ctx.settings, meetings))
    return await ctx.session.get(Meeting, ids[choice - 1])


@router.on(Choice(), dialog=CHECKIN, step="pick")
async def check_in_pick(ctx: Context, dialog: Dialog, member: Member, choice: int) -> str:
    meeting = await _picked(ctx, dialog, choice)
    if isinstance(meeting, str):
        return meeting
    dialog.finish()
    return await _check_in(ctx, member, meeting, CheckInMethod.MENU)


@router.on((EventType("scan") | EventType("subscribe")) & Scene("meeting:"))
async def check_in_scanned(ctx: Context, member: Member | None, scene: str) -> str:
    if member is None:
        return BIND_FIRST
    meeting = await ctx.session.get(Meeting, int(scene)) if scene.isdigit() else None
    return await _check_in(ctx, member, meeting, CheckInMethod.QR)


@router.on(MessageKind(Kind.LOCATION) & MemberRole())
async def check_in_located(ctx: Context, member: Member, message: Message) -> str:
    open_now = await _open_for(ctx, member)
    if not open_now:
        # A location with no meeting on is not a check-in: the answer any location gets.
        return UNSUPPORTED
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


@router.text("代签", takes_args=True, roles=BRANCH_LEADERS, usage="代签 姓名", summary="为没带手机的党员签到")
async def proxy_check_in(ctx: Context, member: Member, args: str) -> str:
    names = [name for name in re.split(r"[\s,，、;；]+", args) if name]
    if not names:
        return ASK_PROXY_NAME
    before, after = _window(ctx.settings)
    open_now = await store.branch_meetings_between(ctx.session, member.org_id, ctx.now - after, ctx.now + before)
    if not open_now:
        return NO_OPEN_FOR_PROXY.format(before=ctx.settings.checkin_window_before_minutes,
                                        after=ctx.settings.checkin_window_after_minutes)
    # With two meetings open at once, the one nearest its start is the one in the room.
    meeting = min(open_now, key=lambda m: abs((m.starts_at - ctx.now).total_seconds()))
    lines = []
    for name in names:
        found = await store.members_named(ctx.session, member.org_id, name)
        if not found:
            lines.append(PROXY_UNKNOWN.format(name=name))
            continue
        attendance, created = await store.record_check_in(
            ctx.session, meeting, found[0].id, now=ctx.now, method=CheckInMethod.PROXY.value,
            late=_is_late(ctx.settings, meeting, ctx.now), proxy_by=member.id)
        when = _clock(ctx.settings, attendance.checked_in_at, ctx.now)
        if created:
            lines.append(PROXY_DONE.format(name=name, time=when, late="，迟到" if attendance.late else ""))
        else:
            lines.append(PROXY_ALREADY.format(name=name, time=when))
    return f"{_label(ctx.settings, meeting)}：\n" + "\n".join(lines)


# ---------------------------------------------------------------- 请假: leave


@router.text("请假", takes_args=True, bound=True, usage="请假 原因", summary="不能参加会议时向书记请假")
async def ask_leave(ctx: Context, dialog: Dialog, member: Member, args: str) -> str:
    reason = args.strip()
    if not reason:
        dialog.start(LEAVE, "reason")
        return ASK_REASON
    return await _leave_for(ctx, dialog, member, reason)


@router.on(AnyText(), dialog=LEAVE, step="reason")
async def leave_reason(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    dialog.finish()
    return await _leave_for(ctx, dialog, member, text)


async def _leave_for(ctx: Context, dialog: Dialog, member: Member, reason: str) -> str:
    if len(reason) > MAX_REASON:
        return TOO_LONG.format(limit=MAX_REASON)
    upcoming = [meeting for meeting in await store.upcoming_meetings(ctx.session, member.org_id, ctx.now)
                if await store.is_expected(ctx.session, meeting, member.id)]
    if not upcoming:
        return NO_UPCOMING
    if len(upcoming) == 1:
        return await _request_leave(ctx, member, upcoming[0], reason)
    dialog.start(LEAVE, "pick", ids=[meeting.id for meeting in upcoming], reason=reason)
    return PICK_UPCOMING.format(options=_numbered(ctx.settings, upcoming))


@router.on(Choice(), dialog=LEAVE, step="pick")
async def leave_pick(ctx: Context, dialog: Dialog, member: Member, choice: int) -> str:
    meeting = await _picked(ctx, dialog, choice)
    if isinstance(meeting, str):
        return meeting
    reason = dialog.data["reason"]
    dialog.finish()
    return await _request_leave(ctx, member, meeting, reason)


async def _request_leave(ctx: Context, member: Member, meeting: Meeting, reason: str) -> str:
    session, label = ctx.session, _label(ctx.settings, meeting)
    if meeting.starts_at <= ctx.now:
        return NO_UPCOMING
    existing = await store.leave_of(session, meeting.id, member.id)
    if existing is not None:
        return LEAVE_EXISTS.format(meeting=label, status=LEAVE_STATUS.get(existing.status, existing.status))
    request = LeaveRequest(meeting_id=meeting.id, member_id=member.id, reason=reason, requested_at=ctx.now)
    session.add(request)
    await session.flush()
    leaders = [i for i in await store.leader_ids(session, member.org_id, BRANCH_LEADERS) if i != member.id]
    if not leaders:
        # The secretary asking for leave has nobody to ask: the request stands as given.
        request.status, request.decided_at, request.decided_by = LeaveStatus.APPROVED.value, ctx.now, member.id
        return LEAVE_AUTO.format(meeting=label, reason=reason)
    text = LEAVE_TO_LEADER.format(name=member.name, reason=reason, meeting=label)
    for leader_id in leaders:
        ctx.enqueue(Outgoing(key=f"leave:{request.id}:{leader_id}", kind="leave", text=text, member_id=leader_id,
                             ref=_ref(meeting.id),
                             template={"title": "请假申请", "content": f"{member.name}：{reason}",
                                       "time": _when(ctx.settings, meeting.starts_at), "remark": "回复 同意 或 不同意"}))
    return LEAVE_SENT.format(meeting=label, reason=reason)


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
    request, asker, meeting = pending[0]
    request.status = (LeaveStatus.APPROVED if approved else LeaveStatus.DECLINED).value
    request.decided_at, request.decided_by = ctx.now, member.id
    label = _label(settings, meeting)
    ctx.enqueue(Outgoing(key=f"leave:{request.id}:decided", kind="leave",
                         text=(TOLD_APPROVED if approved else TOLD_DECLINED).format(meeting=label),
                         member_id=asker.id, ref=_ref(meeting.id),
                         template={"title": "请假结果", "content": "已同意" if approved else "未同意",
                                   "time": _when(settings, meeting.starts_at)}))
    reply = DECIDED.format(verb="同意" if approved else "不同意", name=asker.name, meeting=label)
    rest = await store.pending_leaves(session, member.org_id, started_after=started_after)
    rest = [entry for entry in rest if entry[0].id != request.id]
    if rest:
        following = rest[0]
        reply += MORE_PENDING.format(count=len(rest), next=f"{following[1].name}（{following[0].reason}）")
    return reply


# ---------------------------------------------------------------- after the meeting: attendance, record, photos


@router.text("会议记录", "填写会议记录", roles=BRANCH_LEADERS, usage="会议记录", summary="填写最近一次会议的记录")
async def start_record(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await store.latest_started(ctx.session, member.org_id, ctx.now)
    if meeting is None:
        return NO_STARTED
    dialog.start(RECORD, RECORD_STEPS[0][0], meeting_id=meeting.id)
    return RECORD_INTRO.format(meeting=_label(ctx.settings, meeting)) + RECORD_STEPS[0][1]


def _record_step(field_name: str):
    index = [name for name, _ in RECORD_STEPS].index(field_name)

    async def take(ctx: Context, dialog: Dialog, text: str) -> str:
        limit = 50 if field_name in ("host", "recorder") else 200 if field_name == "votes" else MAX_RECORD_FIELD
        value = None if text in SKIP_WORDS else text
        if value is not None and len(value) > limit:
            return TOO_LONG.format(limit=limit)
        dialog.goto(field_name, **{f"value_{field_name}": value})
        if index + 1 < len(RECORD_STEPS):
            next_name, question = RECORD_STEPS[index + 1]
            dialog.goto(next_name)
            return question
        return await _save_record(ctx, dialog)

    take.__name__ = f"record_{field_name}"
    return take


for _name, _ in RECORD_STEPS:
    router.on(AnyText(), dialog=RECORD, step=_name)(_record_step(_name))


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
    return RECORD_SAVED.format(meeting=_label(ctx.settings, meeting), summary="\n".join(summary))


@router.on(MessageKind(Kind.IMAGE) & MemberRole(*BRANCH_LEADERS))
async def meeting_photo(ctx: Context, member: Member, message: Message) -> str:
    meeting = await store.latest_started(ctx.session, member.org_id, ctx.now)
    window = timedelta(hours=ctx.settings.meeting_photo_hours)
    if meeting is None or ctx.now - meeting.starts_at > window or not message.media_id:
        # Not meeting evidence: the same answer any image gets.
        return UNSUPPORTED
    ctx.session.add(MeetingPhoto(meeting_id=meeting.id, media_id=message.media_id[:200],
                                 pic_url=(message.url or message.extra.get("pic_url", ""))[:500],
                                 added_by=member.id, added_at=ctx.now))
    await ctx.session.flush()
    return PHOTO_SAVED.format(meeting=_label(ctx.settings, meeting),
                              count=await store.photos_of(ctx.session, meeting.id))


# ---------------------------------------------------------------- moving and cancelling


async def _pick_upcoming(ctx: Context, dialog: Dialog, member: Member, name: str, then: str) -> Meeting | str:
    upcoming = await store.upcoming_meetings(ctx.session, member.org_id, ctx.now)
    if not upcoming:
        return NO_UPCOMING_BRANCH
    if len(upcoming) == 1:
        dialog.start(name, then, meeting_id=upcoming[0].id)
        return upcoming[0]
    dialog.start(name, "pick", ids=[meeting.id for meeting in upcoming], then=then)
    return PICK_UPCOMING.format(options=_numbered(ctx.settings, upcoming))


@router.text("改时间", "会议改时间", roles=BRANCH_LEADERS, usage="改时间", summary="修改还没开的会议的时间")
async def move_meeting(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _pick_upcoming(ctx, dialog, member, MOVE, "time")
    return meeting if isinstance(meeting, str) else ASK_NEW_TIME.format(meeting=_label(ctx.settings, meeting))


@router.text("取消会议", roles=BRANCH_LEADERS, usage="取消会议", summary="取消还没开的会议")
async def cancel_meeting(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _pick_upcoming(ctx, dialog, member, CANCEL, "confirm")
    return meeting if isinstance(meeting, str) else ASK_CANCEL.format(meeting=_label(ctx.settings, meeting))


@router.on(Choice(), dialog=MOVE, step="pick")
@router.on(Choice(), dialog=CANCEL, step="pick")
async def pick_upcoming(ctx: Context, dialog: Dialog, choice: int) -> str:
    meeting = await _picked(ctx, dialog, choice)
    if isinstance(meeting, str):
        return meeting
    dialog.goto(dialog.data["then"], meeting_id=meeting.id)
    label = _label(ctx.settings, meeting)
    return ASK_NEW_TIME.format(meeting=label) if dialog.name == MOVE else ASK_CANCEL.format(meeting=label)


async def _still_upcoming(ctx: Context, dialog: Dialog, member: Member) -> Meeting | None:
    meeting = await ctx.session.get(Meeting, dialog.data["meeting_id"])
    if (meeting is None or meeting.org_id != member.org_id or meeting.status != MeetingStatus.SCHEDULED.value
            or meeting.starts_at <= ctx.now):
        return None
    return meeting


@router.on(AnyText(), dialog=MOVE, step="time")
async def move_time(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    meeting = await _still_upcoming(ctx, dialog, member)
    if meeting is None:
        dialog.finish()
        return NO_UPCOMING_BRANCH
    moment = _read_time(ctx, text)
    if isinstance(moment, str):
        return moment
    if moment == meeting.starts_at:
        return SAME_TIME
    old_when = _when(ctx.settings, meeting.starts_at)
    await outbox_store.withdraw_pending(ctx.session, _ref(meeting.id), reason=f"会议已改时间（原定 {old_when}）")
    meeting.starts_at, meeting.updated_at = moment, ctx.now
    org = await _branch(ctx.session, member)
    attendees = await store.expected_ids(ctx.session, meeting)
    # A fresh version for every move: keys of withdrawn rows are never reused.
    version = f"@{int(ctx.now.timestamp() * 1_000_000):x}"
    fields = _fields(ctx.settings, meeting, org)
    _tell(ctx, meeting, [i for i in attendees if i != member.id], f"moved{version}", NOTICE_MOVED.format(**fields),
          "会议改时间")
    for item in _reminders(ctx, meeting, org, attendees, version=version):
        ctx.enqueue(item)
    dialog.finish()
    return MOVED.format(when=_when(ctx.settings, moment), count=len(attendees))


@router.on(Choice(1), dialog=CANCEL, step="confirm")
async def cancel_confirm(ctx: Context, dialog: Dialog, member: Member) -> str:
    meeting = await _still_upcoming(ctx, dialog, member)
    dialog.finish()
    if meeting is None:
        return NO_UPCOMING_BRANCH
    await outbox_store.withdraw_pending(ctx.session, _ref(meeting.id), reason="会议已取消")
    meeting.status, meeting.updated_at = MeetingStatus.CANCELLED.value, ctx.now
    attendees = await store.expected_ids(ctx.session, meeting)
    told = [i for i in attendees if i != member.id]
    _tell(ctx, meeting, told, "cancelled",
          NOTICE_CANCELLED.format(when=_when(ctx.settings, meeting.starts_at), kind=meeting.kind, topic=meeting.topic),
          "会议取消")
    return CANCELLED_DONE.format(count=len(told))


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
    meetings = await store.upcoming_meetings(ctx.session, member.org_id, ctx.now - after)
    if not meetings:
        return NO_MEETING_FOR_QR
    meeting = meetings[0]
    label, code, meeting_id, secretary = _label(ctx.settings, meeting), meeting.checkin_code, meeting.id, member.id
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
