"""What the meetings chat modules share: the router, the texts, small helpers, notices to attendees.

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

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.dialogs import Steps, offer
from bot.dispatch import Context, Dialog, Router
from bot.outbox import Outgoing
from bot.summary import Summary
from handlers.meetings.settings import MeetingSettings
from storage.outbox import reach_of_members
from storage.models import LeaveStatus, Meeting, MeetingKind, Member, Organization

# Its member page (page.py) renders templates/meeting.html.
router = Router("meetings", settings=MeetingSettings, templates=Path(__file__).parent / "templates")
router.reminds("开会前一天、前一小时的提醒")

KINDS = list(MeetingKind)
WEEKDAYS = "一二三四五六日"
MAX_TOPIC = 200
MAX_PLACE = 100
MAX_REASON = 200
MAX_RECORD_FIELD = 4000
SKIP_WORDS = ("跳过", "无", "没有")
KIND_OF_MESSAGE = "meeting"

# The dialogs, each with its steps in the order a secretary or member meets them.
CALL = Steps("meeting_call", kind="开什么会（数字或名称）", group="党小组会：哪个小组（数字）",
             time="什么时候开", year="日期今年已过：是明年吗（1 是，或重说时间）", place="在哪里开（文字或位置）",
             topic="议题", confirm="核对后回复 1 召集")
CHECKIN = Steps("meeting_checkin", pick="同时开着几个会：签哪个（数字）")
LEAVE = Steps("meeting_leave", reason="请假原因", pick="请哪个会的假（数字）")
MOVE = Steps("meeting_move", pick="改哪个会（数字）", time="改到什么时候", confirm="回复 1 改、2 不改，或重说时间")
CANCEL = Steps("meeting_cancel", pick="取消哪个会（数字）", confirm="回复 1 取消会议、2 不取消")
RECORD = Steps("meeting_record", host="主持人", recorder="记录人", minutes="议题和发言", resolutions="决议（可跳过）",
               votes="表决情况（可跳过）")

# -- texts: calling
ASK_KIND = "开什么会？回复数字：\n{options}\n回复 取消 可退出。"
ASK_GROUP = "哪个党小组开会？回复数字：\n{options}"
NO_GROUPS = "本支部还没有党小组，请选别的会议。\n"
ASK_TIME = "什么时候开？例如：明天下午3点、11月28日 14:30、周五 9:00。"
IN_THE_PAST = "{when} 已经过去了，请回复一个以后的时间。\n"
# A month and day already past this year was read as next year's: asked, never assumed.
ASK_NEXT_YEAR = "{day}今年已经过去了。是明年 {when} 吗？\n回复 1 是；不是的话请重新回复时间。"
ASK_PLACE = ("在哪里开？请回复地点，如“村委会会议室”。\n"
             "也可以在会场发送位置（点 + → 位置），党员到场后发送位置就能签到。")
ASK_TOPIC = "会议议题是什么？请用一两句话说明。"
LOCATION_SET = "已记下会场位置，党员到场后发送位置即可签到。\n"
TOO_LONG = "太长了（最多 {limit} 字），请精简后重新回复。"
PREVIEW = ("请核对：\n{kind}{group}\n时间：{when}\n地点：{place}{located}\n议题：{topic}\n应到 {count} 人。\n"
           "回复 1 确认并通知参会党员；回复 取消 放弃。")
CALLED = ("会议已召集，{notified}。\n签到码：{code}（开会时念给大家，回复 签到 {code} 即可签到；"
          "也可以点菜单 签到{located}）。\n没带手机的党员，回复 代签 姓名 帮他签到。\n"
          "要改时间回复 改时间，要取消回复 取消会议。")
NOBODY_EXPECTED = "这次会议没有应到的党员（{kind}），请重新选择会议类型。\n"
NO_LONGER_LEADER = "您现在已不是本支部的书记或副书记，不能{what}，这次操作已取消。"

# -- texts: notices to attendees
# Here and in the leave texts, what a person wrote (a topic, a reason) stands at the end of a line or
# inside quotes: its own final punctuation is never doubled by ours.
NOTICE_CALLED = ("【会议通知】{org}召开{kind}\n时间：{when}\n地点：{place}\n议题：{topic}\n"
                 "到会后点菜单 签到，或回复 签到 加会上公布的签到码。不能参加请回复 请假 原因。")
NOTICE_DAY = "【会议提醒】明天 {time} 在{place}召开{kind}。\n议题：{topic}\n不能参加请回复 请假 原因。"
NOTICE_HOUR = "【会议提醒】{time} 在{place}召开{kind}，还有 1 小时。\n到会后点菜单 签到 即可。"
NOTICE_MOVED = ("【会议改时间】{kind}“{topic}”改到 {when}，地点：{place}。\n"
                "不能参加请回复 请假 原因。")
NOTICE_CANCELLED = "【会议取消】原定 {when} 召开的{kind}“{topic}”取消了，不用参加。"

# -- texts: check-in
CHECKED_IN = "签到成功！{kind}“{topic}”，签到时间 {time}。"
CHECKED_IN_LATE = "签到成功（迟到）。{kind}“{topic}”，签到时间 {time}。"
ALREADY = "您已于 {time} 签到。"
WRONG_CODE = "签到码不对，请核对会上公布的 6 位数字，再回复 签到 加签到码。"
UNKNOWN_QR = "这个二维码不是有效的会议签到码。请回复 签到 加会上公布的签到码，或点菜单 签到。"
NOT_YOURS = "这不是您所在支部的会议，不能签到。"
WAS_CANCELLED = "这次会议已取消，不用签到。"
TOO_EARLY = "还没到签到时间，{opens} 起可以签到。"
TOO_LATE = "这次会议的签到已在 {closed} 结束。如果您参加了会议，请当面告诉书记，由书记在会议记录里说明。"
NONE_OPEN = "现在没有可以签到的会议。"
NEXT_MEETING = "\n下一次会议：{when}，{kind}。开会前 {minutes} 分钟起可以签到。"
PICK_MEETING = "现在有 {count} 个会议可以签到，回复数字选择：\n{options}"
PICK_AGAIN = "请回复列表里的数字。\n{options}"
FAR_AWAY = ("您离会场约 {distance}，不在签到范围（{radius} 米）内。\n"
            "到了会场再发送位置，或回复 签到 加会上公布的签到码。")
NO_PLACE_LOCATION = "这次会议没有设置会场位置，请回复 签到 加会上公布的签到码，或点菜单 签到。"
BIND_FIRST = ("欢迎关注支部助手！请先绑定党员身份：回复 绑定 姓名 绑定码，例如 绑定 王秀英 123456"
              "（绑定码向支部书记要）。绑定后再扫一次会议二维码即可签到。")

# -- texts: 代签
ASK_PROXY_NAME = "请回复要代签的党员姓名，例如：代签 张三（多人用空格隔开）。"
NO_OPEN_FOR_PROXY = "现在没有正在签到的本支部会议（开会前 {before} 分钟到开始后 {after} 分钟可以代签）。"
PROXY_DONE = "已为 {name} 代签（{time}{late}）。"
PROXY_ALREADY = "{name} 已于 {time} 签到。"
PROXY_UNKNOWN = "本支部没有叫 {name} 的党员，请核对姓名。"
PROXY_WHICH = "本支部有 {count} 位党员叫{name}，请在姓名后加上手机号的后四位，例如：代签 {name} {example}"
PROXY_NO_PHONE_END = "本支部叫{name}的党员里，没有手机号后四位是 {end} 的，请核对。"

# -- texts: leave
ASK_REASON = "请回复请假原因，例如：请假 外出务工。"
NO_UPCOMING = "近期没有需要您参加的会议，不用请假。"
LEAVE_SENT = "已向书记请假（{meeting}），书记回复后会告诉您。\n原因：{reason}"
LEAVE_EXISTS = "您已为{meeting}请过假（{status}）。"
LEAVE_TO_LEADER = "{name} 请假：{reason}\n会议：{meeting}\n回复 同意 或 不同意。"
LEAVE_AUTO = "已记下您的请假（{meeting}）。\n原因：{reason}"
LEAVE_STATUS = {LeaveStatus.PENDING.value: "等待书记回复", LeaveStatus.APPROVED.value: "已同意",
                LeaveStatus.DECLINED.value: "未同意"}
NO_PENDING_LEAVE = "目前没有待处理的请假。"
NO_PENDING_LEAVE_OF = "没有 {name} 待处理的请假。"
DECIDED = "已{verb} {name} 的请假（{meeting}），会告诉本人。"
WHICH_LEAVE = "有 {count} 个请假等您回复：\n{lines}\n请在后面写上姓名，例如：{verb} 王秀英。"
MORE_PENDING = "\n还有 {count} 条请假待处理：{next}。回复 同意 或 不同意 继续。"
TOLD_APPROVED = "书记已同意您的请假（{meeting}）。"
TOLD_DECLINED = "书记没有同意您的请假（{meeting}），请尽量参加；确有困难请直接联系书记。"

# -- texts: 开会时间 (topic and place as written, each at the end of its line)
UPCOMING_NONE = "最近没有安排会议。"
UPCOMING_ONE = "下次会议："
UPCOMING_MANY = "近期有 {count} 个会议："
UPCOMING_ITEM = "{kind}{group}\n时间：{when}{open}\n地点：{place}\n议题：{topic}"
UPCOMING_OPEN = "（现在可以签到）"
UPCOMING_MORE = "还有 {count} 个会议，时间更晚。"
UPCOMING_LEAVE = "不能参加请回复 请假 原因。"

# -- texts: after the meeting
NO_STARTED = "本支部还没有开始签到的会议。"
REPORT_HEAD = ("{kind}“{topic}”\n{when}，{place}\n"
               "应到 {expected} 人，{came} {present} 人，请假 {leave} 人，{missing} {absent} 人。")
# While check-in is open nobody is absent yet: they have just not signed in.
REPORT_WORDS_CLOSED = ("实到", "缺席")
REPORT_WORDS_OPEN = ("已签到", "还没签到")
REPORT_STILL_OPEN = "签到 {closes} 截止。"
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
CONFIRM_MOVE = ("{question}请核对：{kind}“{topic}”\n原定：{old}\n改到：{new}\n"
                "回复 1 确定改时间并通知参会党员；回复 2 不改了。")
NEXT_YEAR_MOVE = "{day}今年已经过去了，是改到明年吗？\n"
MOVED = "已改到 {when}，{notified}。"
KEEP_TIME = "好的，会议时间不变。"
ASK_CANCEL = "确定取消{meeting}吗？回复 1 确定取消会议；回复 2 保留会议。"
KEEP_MEETING = "好的，会议照常举行。"
CANCELLED_DONE = "会议已取消，{notified}。"
NOTIFIED = "已通知 {count} 人"
NOT_REACHED = "（{names}没绑定微信或已取消关注，收不到，请当面告诉）"


# ---------------------------------------------------------------- small helpers


def _day(settings, moment: datetime, now: datetime) -> str:
    """"11月26日", or "2027年1月5日" when it is not in the current year: a January meeting called in
    December says which January."""
    local = settings.local(moment)
    year = f"{local.year}年" if local.year != settings.local(now).year else ""
    return f"{year}{local.month}月{local.day}日"


def _when(settings, moment: datetime, now: datetime) -> str:
    """"11月26日（周四）15:00" in local time, with the year when it is not the current one."""
    local = settings.local(moment)
    return f"{_day(settings, moment, now)}（周{WEEKDAYS[local.weekday()]}）{local:%H:%M}"


def _clock(settings, moment: datetime, now: datetime | None = None) -> str:
    """"14:02", with the date in front when it is not today (and the year when not this year's)."""
    local = settings.local(moment)
    if now is not None and settings.local(now).date() != local.date():
        return f"{_day(settings, moment, now)} {local:%H:%M}"
    return f"{local:%H:%M}"


def _label(settings, meeting: Meeting, now: datetime) -> str:
    """How a meeting is named in replies: "11月26日（周四）15:00 支部党员大会"."""
    return f"{_when(settings, meeting.starts_at, now)} {meeting.kind}"


def _offer_meetings(ctx: Context, dialog: Dialog, step: str, question: str, meetings: list[Meeting],
                    **data) -> str:
    """Ask which of these meetings (question has `{options}`); the step's Picked() handler gets its id."""
    options = [(meeting.id, f"{_label(ctx.settings, meeting, ctx.now)}：{meeting.topic}") for meeting in meetings]
    return offer(dialog, step, question, options, again=PICK_AGAIN, **data)


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


def _summary(settings, meeting: Meeting, title: str, now: datetime) -> Summary:
    return Summary(title=title, content=f"{meeting.kind}：{meeting.topic}",
                   time=_when(settings, meeting.starts_at, now), place=meeting.place)


def _fields(settings, meeting: Meeting, org: Organization, now: datetime) -> dict[str, str]:
    return dict(org=org.name, kind=meeting.kind, topic=meeting.topic, place=meeting.place,
                when=_when(settings, meeting.starts_at, now), time=_clock(settings, meeting.starts_at))


def _reminders(ctx: Context, meeting: Meeting, org: Organization, member_ids: list[int], version: str) -> list[Outgoing]:
    """The day-before and hour-before reminders still ahead. version keeps a moved meeting's new
    reminders apart from the withdrawn ones (idempotency keys are never reused)."""
    settings, now = ctx.settings, ctx.now
    fields = _fields(settings, meeting, org, now)
    items = []
    for what, before, text in (("day", timedelta(days=1), NOTICE_DAY), ("hour", timedelta(hours=1), NOTICE_HOUR)):
        at = meeting.starts_at - before
        if at <= now:
            continue
        for member_id in member_ids:
            items.append(Outgoing(key=f"{_ref(meeting.id)}:{member_id}:{what}{version}", kind=KIND_OF_MESSAGE,
                                  text=text.format(**fields), member_id=member_id, ref=_ref(meeting.id),
                                  summary=_summary(settings, meeting, "会议提醒", now), not_before=at, reminder=True))
    return items


async def _notified(ctx: Context, member_ids: list[int]) -> str:
    """"已通知 N 人", counting only those the message can reach, and naming the ones it cannot: a
    secretary told "已通知 7 人" when five phones will ring would not think to tell the other two."""
    reached = await reach_of_members(ctx.session, member_ids)
    count = sum(1 for member_id in member_ids if member_id in reached and reached[member_id].subscribed)
    text = NOTIFIED.format(count=count)
    missing = [member_id for member_id in member_ids if member_id not in reached or not reached[member_id].subscribed]
    if missing:
        names = [(await ctx.session.get(Member, member_id)).name for member_id in missing[:10]]
        text += NOT_REACHED.format(names="、".join(names) + (f"等 {len(missing)} 人" if len(missing) > 10 else ""))
    return text


def _tell(ctx: Context, meeting: Meeting, member_ids: list[int], what: str, text: str, title: str) -> None:
    for member_id in member_ids:
        ctx.enqueue(Outgoing(key=f"{_ref(meeting.id)}:{member_id}:{what}", kind=KIND_OF_MESSAGE, text=text,
                             member_id=member_id, ref=_ref(meeting.id),
                             summary=_summary(ctx.settings, meeting, title, ctx.now)))


