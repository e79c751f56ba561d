"""走访: the visitor records a visit: which case (or a visit nobody reported), when, who went, what was said and
given, the amount and its fund; the case closes, and photos sent afterwards are attached to the visit.

Photos and meetings. A branch leader's photo can be a meeting's evidence (handlers/meetings/records.py takes
it within meeting_photo_hours of a meeting's start) or a visit's. Which one takes it must not depend on the
order features are listed in, so the rule is:
- Right after a visit is recorded, its dialog waits for photos, and a dialog's own handlers are tried
  first: the photos go to the visit, unless a meeting of the branch started after the visit was recorded
  (the more recent of the two wins).
- Later, outside the dialog, a photo within a meeting's window is the meeting's (care steps aside exactly
  when meetings would take it, asking meetings' own rule, which meetings provides by name as
  meeting_taking_photos), else it goes to the sender's visit recorded within care_photo_hours.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.dialogs import Picked, offer
from bot.dispatch import (CANCEL_TEXT, QUIET_END, AnyCommand, AnyText, Context, Dialog, MemberRole, MessageKind,
                          Refusal, SkipHandler)
from bot.members import member_named
from bot.messages import Kind, Message
from bot.when import WhenError, parse_when
from handlers.care import service
from handlers.care.common import LEADERS, VISIT, router
from handlers.care.report import branch_of, case_label, occasion_named, subject_label
from storage import care as store
from storage.meetings import latest_started
from storage.models import COMMITTEE_ROLES, CareCase, CareMedia, CareProfile, CareStatus, CareVisit, Member, Role

log = logging.getLogger(__name__)

# -- texts
PICK_CASE = "您要走访的有 {count} 件（最急的在前）。走访过哪一件？回复数字：\n{options}"
PICK_NONE_OPEN = "现在没有等您走访的情况。\n{options}"
WITHOUT_CASE = "记一次没有上报的走访"
MORE_CASES = "（只列出最急的 {shown} 件，记完再回复 走访 看其余的）\n"
CASE_GONE = "这件事已经记过走访，或已改派给别人了。回复 走访 重新看看。"
CASE_REPORTED = "上报的情况：{details}"
ASK_SUBJECT = "看望的是谁？请回复本支部党员的姓名。\n看望的是不是党员的村民，请回复：村民 姓名（例如：村民 张大爷）"
ASK_OCCASION = "是因为什么去看望？回复数字：\n{options}"
ASK_WHEN = "{subject}（{occasion}）\n哪天去看望的？例如：今天、昨天、11月3日"
ASK_VISITORS = "哪些人去的？例如：李建国、张卫东（回复 我 就是您自己）"
ASK_NOTES = "看望时说了些什么、家里情况怎样？简单记几句（打字或语音都行）。"
ASK_GIVEN = "送了什么？例如：米面油、慰问品。没有就回复 跳过。"
ASK_AMOUNT = "送了多少钱？例如：500元。没有就回复 跳过。"
ASK_FUND = "这笔钱是从哪里出的？例如：党费、上级慰问金、村集体。不清楚就回复 跳过。"
WHEN_UNREAD = "没看懂“{text}”。请回复哪天去的，例如：今天、昨天、前天、11月3日、上周五。"
WHEN_FUTURE = "{day}还没到，走访时间不能晚于现在。请回复哪天去的，例如：今天、昨天。"
TOO_LONG = "太长了（最多 {limit} 字），请精简后重新回复。"
VILLAGER_EMPTY = "请在“村民”后面写上姓名或称呼，例如：村民 张大爷"
NOT_YOURS = "这件事的走访人不是您，只有走访人或书记可以记。"
RECORDED = ("已记下走访：{subject}（{occasion}）\n时间：{day}\n走访人：{visitors}\n说了：{notes}{given}{amount}\n"
            "{closing}有照片的话，现在直接发过来，{hours} 小时内发的照片都会附在这次走访上。")
RECORDED_CLOSED = "这件事已办结，谢谢您！"
PHOTO_KEPT = "照片已附到 {subject}（{occasion}）的走访记录，这次走访共 {count} 张照片。"
PHOTOS_DONE = "走访已记下，不再等照片。"

SKIP_WORDS = frozenset({"跳过", "无", "没有", "没", "没送", "不填", "不清楚", "0", "0元"})
SELF_WORDS = frozenset({"我", "我自己", "本人", "自己"})
LIMITS = {"visitors": 200, "notes": service.MAX_VISIT_FIELD, "given": 200, "amount": 50, "fund": 100}
MAX_LISTED = 15


def may_record(case: CareCase, member: Member) -> bool:
    """Only the case's visitor, or a leader of its branch, records its visit."""
    return case.visitor_id == member.id or (Role(member.role) in LEADERS and member.org_id == case.org_id)


async def _may_visit_unreported(session: AsyncSession, member: Member) -> bool:
    """The branch committee, and anyone a member has as their designated contact, record visits nobody reported."""
    if Role(member.role) in COMMITTEE_ROLES:
        return True
    return (await session.execute(
        select(func.count()).select_from(CareProfile).where(CareProfile.contact_id == member.id))).scalar_one() > 0


async def cases_to_visit(session: AsyncSession, member: Member) -> list[CareCase]:
    """The open cases this member may record, the most pressing first: a leader's are the whole branch's."""
    if Role(member.role) in LEADERS:
        branch_cases = await store.open_cases_of_branch(session, member.org_id)
        own = await store.open_cases_for_visitor(session, member.id)
        seen = {case.id for case in branch_cases}
        return sorted(branch_cases + [case for case in own if case.id not in seen], key=lambda c: (c.deadline, c.id))
    return await store.open_cases_for_visitor(session, member.id)


@router.text("走访", "记录走访", "走访记录", bound=True, usage="走访", summary="看望过谁，记下走访情况（可附照片）")
async def start_visit(ctx: Context, dialog: Dialog, member: Member) -> str:
    session, settings, now = ctx.session, ctx.settings, ctx.now
    cases = await cases_to_visit(session, member)
    unreported = await _may_visit_unreported(session, member) and await branch_of(session, member) is not None
    if not cases and not unreported:
        raise SkipHandler  # nothing for them to record: 走访 is a question about visits (Q&A answers it)
    visitor_names = await _names(session, {case.visitor_id for case in cases if case.visitor_id not in (None, member.id)})
    options = []
    for case in cases[:MAX_LISTED]:
        label = case_label(case, settings.zone, now)
        if case.visitor_id != member.id:
            label += f"，走访人 {visitor_names.get(case.visitor_id, '未定')}"
        options.append((case.id, label))
    if unreported:
        options.append(("none", WITHOUT_CASE))
    dialog.start(VISIT, "pick")
    if not cases:
        return offer(dialog, "pick", PICK_NONE_OPEN, options)
    more = MORE_CASES.format(shown=MAX_LISTED) if len(cases) > MAX_LISTED else ""
    return offer(dialog, "pick", more + PICK_CASE.format(count=len(cases), options="{options}"), options)


async def _names(session: AsyncSession, ids: set) -> dict[int, str]:
    if not ids:
        return {}
    return dict((await session.execute(select(Member.id, Member.name).where(Member.id.in_(ids)))).all())


@router.on(Picked(), dialog=VISIT, step="pick")
async def visit_pick(ctx: Context, dialog: Dialog, member: Member, picked) -> str:
    session = ctx.session
    if picked == "none":
        dialog.goto("subject")
        return ASK_SUBJECT
    case = await session.get(CareCase, picked)
    if case is None or case.status != CareStatus.OPEN.value or not may_record(case, member):
        dialog.finish()
        return CASE_GONE
    dialog.goto("when", case_id=case.id, subject=subject_label(case.subject_name, case.member_id),
                occasion=case.occasion)
    lines = []
    # What reporters wrote is shown only to those who may read the whole case (the visitor, the committee).
    if await service.access_to(session, case, member) is service.Access.FULL:
        lines = [CASE_REPORTED.format(details=report.details) for report in await store.reports_of(session, case.id)
                 if report.details][:3]
    return "\n".join([*lines, ASK_WHEN.format(subject=dialog.data["subject"], occasion=case.occasion)])


@router.on(AnyText() & ~AnyCommand(), dialog=VISIT, step="subject")
async def visit_subject(ctx: Context, dialog: Dialog, member: Member, written: str) -> str:
    villager = re.fullmatch(r"村民\s*(.*)", written.strip(), re.S)
    if villager is not None:
        name = villager.group(1).strip()
        if not name:
            return VILLAGER_EMPTY
        if len(name) > service.MAX_SUBJECT:
            return TOO_LONG.format(limit=service.MAX_SUBJECT)
        dialog.goto("subject", subject_id=None, subject_name=name, subject=subject_label(name, None))
    else:
        person = await member_named(ctx.session, member.org_id, written,
                                    unknown_hint="看望的是村民的话，回复：村民 姓名")
        dialog.goto("subject", subject_id=person.id, subject_name=person.name, subject=person.name)
    occasions = [(occasion.name, occasion.name) for occasion in ctx.settings.care_occasions]
    return offer(dialog, "occasion", ASK_OCCASION, occasions)


@router.on(Picked(), dialog=VISIT, step="occasion")
async def visit_occasion(dialog: Dialog, picked: str) -> str:
    dialog.goto("when", occasion=picked)
    return ASK_WHEN.format(subject=dialog.data["subject"], occasion=picked)


@router.on(AnyText() & ~AnyCommand(), dialog=VISIT, step="occasion")
async def visit_occasion_typed(ctx: Context, dialog: Dialog, text: str) -> str:
    """The occasion typed ("住院") instead of its number."""
    occasion = occasion_named(text, ctx.settings)
    if occasion is None:
        raise SkipHandler
    return await visit_occasion(dialog, occasion)


# ---------------------------------------------------------------- the day of the visit

_DAYS_AGO = {"今天": 0, "今日": 0, "今儿": 0, "今早": 0, "今晚": 0, "今天上午": 0, "今天下午": 0,
             "昨天": 1, "昨日": 1, "昨儿": 1, "昨晚": 1, "前天": 2, "前日": 2, "大前天": 3,
             "明天": -1, "明早": -1, "明晚": -1, "后天": -2}  # ahead: refused as not yet come
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6,
             "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}
_DAY_WORD = re.compile("|".join(sorted(_DAYS_AGO, key=len, reverse=True)))
_YMD = re.compile(r"(\d{4})\s*[年./-]\s*(\d{1,2})\s*[月./-]\s*(\d{1,2})\s*[日号]?")
_MD = re.compile(r"(\d{1,2})\s*(?:月|\.|/|-)\s*(\d{1,2})\s*[日号]?")
_D = re.compile(r"(\d{1,2})\s*[日号]")
_AGO = re.compile(r"(\d{1,2})\s*天(?:以)?前")
_WEEKDAY = re.compile(r"(上上|上个?)?(?:周|星期|礼拜)([一二三四五六日天1-7])")
_TRAILING = re.compile(r"(去的|去了|看的|看望的|走访的|的|去)$")


def _day_of(phrase: str, today: date) -> tuple[date, str]:
    """The day a phrase names, looking back (a visit is made, not planned), and what is left of the phrase."""
    match = _DAY_WORD.match(phrase)
    if match:
        return today - timedelta(days=_DAYS_AGO[match[0]]), phrase[match.end():]
    match = _AGO.match(phrase)
    if match:
        return today - timedelta(days=int(match[1])), phrase[match.end():]
    match = _YMD.match(phrase)
    if match:
        return date(int(match[1]), int(match[2]), int(match[3])), phrase[match.end():]
    match = _MD.match(phrase)
    if match:
        month, day = int(match[1]), int(match[2])
        found = date(today.year, month, day)
        # A day a few weeks ahead is a slip (refused as not yet come); further ahead, last year's ("12月28日" in January).
        if found - today > timedelta(days=31):
            found = date(today.year - 1, month, day)
        return found, phrase[match.end():]
    match = _D.match(phrase)
    if match:
        found = date(today.year, today.month, int(match[1]))
        if found > today:
            previous = today.replace(day=1) - timedelta(days=1)
            found = date(previous.year, previous.month, int(match[1]))
        return found, phrase[match.end():]
    match = _WEEKDAY.match(phrase)
    if match:
        back = (today.weekday() - _WEEKDAYS[match[2]]) % 7
        if match[1]:
            monday = today - timedelta(days=today.weekday()) - timedelta(days=7 * (2 if match[1] == "上上" else 1))
            return monday + timedelta(days=_WEEKDAYS[match[2]]), phrase[match.end():]
        return today - timedelta(days=back), phrase[match.end():]
    raise ValueError(phrase)


def read_visit_time(text: str, *, now: datetime, zone) -> datetime:
    """When a visit was made, from "今天", "昨天下午", "11月3日", "上周五 10点"; a Refusal when it is unclear or
    still ahead. A day alone is taken at noon (or now, for today before noon)."""
    phrase = _TRAILING.sub("", re.sub(r"\s+", "", text))
    today = now.astimezone(zone).date()
    try:
        day, rest = _day_of(phrase, today)
    except ValueError:
        raise Refusal(WHEN_UNREAD.format(text=text[:20])) from None
    clock = time(12, 0)
    rest = rest.strip("的，,")
    if rest:
        try:
            clock = parse_when(rest, now=now, zone=zone).astimezone(zone).time()
        except WhenError:
            if rest not in ("上午", "下午", "中午", "晚上", "早上"):
                raise Refusal(WHEN_UNREAD.format(text=text[:20])) from None
    moment = datetime.combine(day, clock, tzinfo=zone)
    if day > today or (moment > now and rest):
        raise Refusal(WHEN_FUTURE.format(day=f"{day.month}月{day.day}日" if day > today else "这个时间"))
    return min(moment, now).astimezone(timezone.utc)


@router.on(AnyText() & ~AnyCommand(), dialog=VISIT, step="when")
async def visit_when(ctx: Context, dialog: Dialog, text: str) -> str:
    moment = read_visit_time(text, now=ctx.sent_at, zone=ctx.settings.zone)
    dialog.goto("visitors", visited_at=moment.isoformat())
    return ASK_VISITORS


# ---------------------------------------------------------------- who went, what was said and given

NEXT_FIELD = {"visitors": ("notes", ASK_NOTES), "notes": ("given", ASK_GIVEN), "given": ("amount", ASK_AMOUNT),
              "amount": ("fund", ASK_FUND)}


@router.on(AnyText() & ~AnyCommand(), dialog=VISIT)
async def visit_field(ctx: Context, dialog: Dialog, member: Member, text: str, written: str) -> str:
    """Keep the answer to the current question as written, then ask the next; after the last, record."""
    field_name = dialog.step
    if field_name not in LIMITS:
        raise SkipHandler  # the steps with their own handlers (a photo step's text is no answer)
    skippable = field_name in ("given", "amount", "fund")
    value = "" if skippable and text in SKIP_WORDS else written
    if field_name == "visitors" and text in SELF_WORDS:
        value = member.name
    if len(value) > LIMITS[field_name]:
        return TOO_LONG.format(limit=LIMITS[field_name])
    dialog.goto(field_name, **{f"value_{field_name}": value})
    following = NEXT_FIELD.get(field_name)
    if following is None or (field_name == "amount" and not value):
        return await _record(ctx, dialog, member)
    dialog.goto(following[0])
    return following[1]


async def _record(ctx: Context, dialog: Dialog, member: Member) -> str:
    session, settings, data = ctx.session, ctx.settings, dict(dialog.data)
    dialog.finish()
    fields = service.VisitFields(
        visited_at=datetime.fromisoformat(data["visited_at"]), visitors=data["value_visitors"],
        notes=data["value_notes"], given=data.get("value_given", ""), amount=data.get("value_amount", ""),
        fund=data.get("value_fund", ""))
    if data.get("case_id") is not None:
        case = await session.get(CareCase, data["case_id"])
        if case is None or case.status != CareStatus.OPEN.value:
            return CASE_GONE
        if not may_record(case, member):
            return NOT_YOURS
        visit = await service.record_visit(session, case, fields, by=member, now=ctx.now, settings=settings)
    else:
        branch = await branch_of(session, member)
        if branch is None:
            return CASE_GONE
        subject = await session.get(Member, data["subject_id"]) if data.get("subject_id") else None
        visit = await service.visit_without_case(session, branch=branch, subject=subject,
                                                 subject_name=data["subject_name"], occasion=data["occasion"],
                                                 fields=fields, by=member, now=ctx.now, settings=settings)
        case = await session.get(CareCase, visit.case_id)
    # The dialog stays open for the photos that follow (see the module's docstring).
    dialog.start(VISIT, "photos", visit_id=visit.id, **{CANCEL_TEXT: PHOTOS_DONE, QUIET_END: True})
    day = fields.visited_at.astimezone(settings.zone)
    given = f"\n送了：{fields.given}" if fields.given else ""
    amount = f"\n金额：{fields.amount}" + (f"（{fields.fund}）" if fields.fund else "") if fields.amount else ""
    hours = settings.care_photo_hours
    return RECORDED.format(subject=subject_label(case.subject_name, case.member_id), occasion=case.occasion,
                           day=f"{day.month}月{day.day}日", visitors=fields.visitors, notes=fields.notes,
                           given=given, amount=amount, closing=RECORDED_CLOSED,
                           hours=int(hours) if hours == int(hours) else hours)


# ---------------------------------------------------------------- photos after the visit


async def _attach_photo(ctx: Context, member: Member, message: Message, visit: CareVisit) -> str:
    case = await ctx.session.get(CareCase, visit.case_id)
    ctx.session.add(CareMedia(case_id=visit.case_id, visit_id=visit.id, kind="image", media_id=message.media_id[:200],
                              pic_url=(message.url or "")[:500], added_by=member.id, added_at=ctx.now))
    await ctx.session.flush()
    count = (await ctx.session.execute(
        select(func.count()).select_from(CareMedia).where(CareMedia.visit_id == visit.id))).scalar_one()
    log.info("care case %s: a photo for visit %s", visit.case_id, visit.id)
    return PHOTO_KEPT.format(subject=subject_label(case.subject_name, case.member_id), occasion=case.occasion,
                             count=count)


def _fresh(visit: CareVisit | None, ctx: Context) -> bool:
    return visit is not None and ctx.now - visit.recorded_at <= timedelta(hours=ctx.settings.care_photo_hours)


@router.on(MessageKind(Kind.IMAGE), dialog=VISIT, step="photos")
async def visit_photo_in_dialog(ctx: Context, member: Member, message: Message, dialog: Dialog) -> str:
    visit = await ctx.session.get(CareVisit, dialog.data.get("visit_id"))
    if not message.media_id or not _fresh(visit, ctx):
        raise SkipHandler
    if Role(member.role) in LEADERS:
        meeting = await latest_started(ctx.session, member.org_id, ctx.now)
        if meeting is not None and meeting.starts_at > visit.recorded_at:
            raise SkipHandler  # a meeting began since: the more recent context takes the photo
    return await _attach_photo(ctx, member, message, visit)


@router.on(MessageKind(Kind.IMAGE) & MemberRole())
async def visit_photo(ctx: Context, member: Member, message: Message, meeting_taking_photos=None) -> str:
    if not message.media_id:
        raise SkipHandler
    # Exactly when meetings takes a leader's photo as a meeting's evidence, it is not ours. Meetings provides its
    # rule by name (features never import one another); without the meetings feature every photo is a visit's.
    if Role(member.role) in LEADERS and meeting_taking_photos is not None \
            and await meeting_taking_photos(ctx, member.org_id) is not None:
        raise SkipHandler
    visit = (await ctx.session.execute(
        select(CareVisit).where(CareVisit.recorded_by == member.id)
        .order_by(CareVisit.recorded_at.desc(), CareVisit.id.desc()).limit(1))).scalar_one_or_none()
    if not _fresh(visit, ctx):
        raise SkipHandler
    return await _attach_photo(ctx, member, message, visit)
