"""The study feature's rules: loading the content/study files, the current items for a member, 已学, the
check questions, a member's own hours, and the weekly push and the one chaser.

The chat handlers, the item page and the jobs call these. Every function works inside the caller's
transaction. Nothing here ranks, scores or compares members: a member only ever sees their own figures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox import enqueue_members
from bot.summary import Summary
from content.study_items import StudyEntry
from handlers.study.settings import StudySettings
from storage import outbox
from storage import study as store
from storage.db import one_at_a_time
from storage.models import COMMITTEE_ROLES, Member, Organization, StudyItem

log = logging.getLogger(__name__)

MESSAGE_KIND = "study"  # picks the template message for what this feature sends
# Why a push about an item that had not reached the member yet was stopped (the outbox's record only).
DONE_ALREADY = "不用再发：本人已学过"

ITEM = "【学习】{title}\n{summary}\n约 {minutes} 分钟。{extra}"
HOW_TO = "学完回复 已学。"
HOW_TO_QUIZ = "学完回复 已学，再答 {count} 道小题（答完告诉您正确答案，不计分）。"
ALREADY_DONE = "这一项您已经学过了（{when}记下的）。"
NOTHING = "现在没有要学的内容。支部有新的学习内容时会告诉您。"
PUSH = "【本周学习】{title}（约 {minutes} 分钟）\n{summary}\n回复 学习 查看，学完回复 已学。不想收到可回复 关闭学习提醒。"
CHASER = "【学习提醒】“{title}”在 {ends} 前学完就好（约 {minutes} 分钟）。回复 学习 查看，学完回复 已学。这件事只提醒这一次。"
# What the reply to a member's next message says when the push or the chaser could not reach them (outside
# the 48-hour window, no template): it waits for them until the item's period ends, never fails.
PUSH_WAITS = "您有一条本周学习内容，回复 学习 查看"
CHASER_WAITS = "“{title}”{ends}前学完就好，回复 学习 查看"


@dataclass(frozen=True)
class Hours:
    year: int
    item_count: int
    item_hours: float
    meetings: dict[str, tuple[int, float]]  # kind → (times attended, hours)
    required: float

    @property
    def total(self) -> float:
        return self.item_hours + sum(hours for _, hours in self.meetings.values())


def ref_of(item: StudyItem) -> str:
    """The outbox ref of the messages about an item (and of its member page's links)."""
    return f"study:{item.id}"


def questions_of(item: StudyItem) -> list[dict]:
    try:
        found = json.loads(item.questions or "[]")
    except ValueError:
        return []
    return found if isinstance(found, list) else []


def figure(value: float) -> str:
    """A number of 学时 as people write it: 2, 1.5 (one decimal at most)."""
    rounded = round(value, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"


def day_text(day: date) -> str:
    return f"{day.month}月{day.day}日"


async def sync_items(session: AsyncSession, entries: list[StudyEntry], now: datetime) -> int:
    """Keep the StudyItem rows of the files in step with them, by key (running twice changes nothing);
    returns how many rows were added or changed. An item removed from its file stays (members' 已学 refer to it).
    Processes starting together take turns: two inserting the same new item at once, one failed its start-up."""
    await one_at_a_time(session, "study_items")
    changed = 0
    for entry in entries:
        values = dict(org_path=entry.org, title=entry.title, summary=entry.summary, link=entry.link, doc=entry.doc,
                      minutes=entry.minutes, source=entry.source, starts_on=entry.starts, ends_on=entry.ends,
                      questions=json.dumps([{"question": q.question, "options": list(q.options), "answer": q.answer}
                                            for q in entry.questions], ensure_ascii=False))
        item = await store.item_by_key(session, entry.key)
        if item is None:
            session.add(StudyItem(key=entry.key, created_at=now, updated_at=now, **values))
            changed += 1
        elif any(getattr(item, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(item, name, value)
            item.updated_at = now
            changed += 1
    await session.flush()
    return changed


async def branch_path(session: AsyncSession, member: Member) -> str:
    branch = await session.get(Organization, member.org_id)
    return branch.path if branch is not None else ""


async def may_see(session: AsyncSession, item: StudyItem, member: Member) -> bool:
    path = await branch_path(session, member)
    return not item.org_path or path == item.org_path or path.startswith(item.org_path + "/")


async def current_for(session: AsyncSession, member: Member, today: date) -> tuple[list[StudyItem], set[int]]:
    """The member's current items and which of them they have done."""
    items = await store.current_items(session, await branch_path(session, member), today)
    return items, await store.done_item_ids(session, member.id, [item.id for item in items])


def first_open(items: list[StudyItem], done: set[int]) -> StudyItem | None:
    """The item 学习 shows and 已学 marks: the earliest not yet done; None when all are done."""
    return next((item for item in items if item.id not in done), None)


def item_text(item: StudyItem, doc_titles: dict[str, str]) -> str:
    extra = []
    if item.link:
        extra.append(f"原文：{item.link}")
    if item.doc:
        title = doc_titles.get(item.doc)
        extra.append(f"相关资料：《{title}》，有不明白的直接问我。" if title else "有不明白的直接问我。")
    count = len(questions_of(item))
    extra.append(HOW_TO_QUIZ.format(count=count) if count else HOW_TO)
    return ITEM.format(title=item.title, summary=item.summary, minutes=item.minutes, extra="\n".join(extra))


async def mark_done(session: AsyncSession, item: StudyItem, member: Member, now: datetime) -> bool:
    """Record 已学 once (False when it was already recorded); a push or chaser about the item that has not
    reached the member yet is stopped — "学完就好" after they have is no help."""
    if not await store.add_done(session, item.id, member.id, now):
        return False
    await outbox.withdraw_for_member(session, member.id, [ref_of(item)], reason=DONE_ALREADY)
    return True


def required_hours(member: Member, settings: StudySettings) -> float:
    leader = member.role in {role.value for role in COMMITTEE_ROLES}
    return settings.study_hours_leader if leader else settings.study_hours_member


def year_bounds(year: int, zone) -> tuple[datetime, datetime]:
    start = datetime.combine(date(year, 1, 1), time(0), tzinfo=zone).astimezone(timezone.utc)
    end = datetime.combine(date(year + 1, 1, 1), time(0), tzinfo=zone).astimezone(timezone.utc)
    return start, end


async def hours_of(session: AsyncSession, member: Member, *, today: date, settings: StudySettings) -> Hours:
    """This member's own hours this year: their completed items' minutes, and the meetings of the counted
    kinds they checked in to. Nobody else's figures are read."""
    start, end = year_bounds(today.year, settings.zone)
    minutes = await store.minutes_done(session, member.id, start, end)
    count = await store.done_count(session, member.id, start, end)
    kinds = settings.study_meeting_hours
    attended = await store.attended_by_kind(session, member.id, list(kinds), start, end)
    meetings = {kind: (attended[kind], attended[kind] * kinds[kind]) for kind in kinds if attended.get(kind)}
    return Hours(year=today.year, item_count=count, item_hours=minutes / settings.study_minutes_per_hour,
                 meetings=meetings, required=required_hours(member, settings))


def hours_text(hours: Hours) -> str:
    lines = [f"{hours.year}年您的学习记录（只有您自己看得到）："]
    if hours.item_count:
        lines.append(f"学完的学习内容 {hours.item_count} 项，约 {figure(hours.item_hours)} 学时")
    for kind, (times, value) in hours.meetings.items():
        lines.append(f"参加{kind} {times} 次，{figure(value)} 学时")
    if len(lines) == 1:
        lines.append("今年还没有记下学时。")
    lines.append(f"合计 {figure(hours.total)} 学时；一年的要求是 {figure(hours.required)} 学时。")
    if hours.total >= hours.required:
        lines.append("今年的学时已经够了。")
    else:
        lines.append(f"还差 {figure(hours.required - hours.total)} 学时，按自己的节奏来就好。")
    lines.append("支部集中学习、冬春训等没记在这里的，以支部的登记为准。")
    return "\n".join(lines)


def at_or_after_push_time(now: datetime, settings: StudySettings, *, weekday: int | None = None) -> bool:
    local = now.astimezone(settings.zone)
    hours, minutes = (int(part) for part in settings.study_push_time.split(":"))
    if weekday is not None and local.isoweekday() != weekday:
        return False
    return (local.hour, local.minute) >= (hours, minutes)


def period_end(item: StudyItem, settings: StudySettings) -> datetime:
    """The end of the item's last day, local time, in UTC: a push still waiting then is no longer given."""
    return datetime.combine(item.ends_on + timedelta(days=1), time(0), tzinfo=settings.zone).astimezone(timezone.utc)


async def push_weekly(session: AsyncSession, *, now: datetime, settings: StudySettings) -> int:
    """On the push day, from the push time: each current item once to each member it reaches (the outbox
    key "study:<item>:push:<member>" keeps it once), as a reminder (关闭提醒 stops it)."""
    if not at_or_after_push_time(now, settings, weekday=settings.study_push_weekday):
        return 0
    sent = 0
    for item in await store.all_current_items(session, now.astimezone(settings.zone).date()):
        text = PUSH.format(title=item.title, minutes=item.minutes, summary=item.summary)
        sent += await enqueue_members(
            session, store.audience(item), key_prefix=f"study:{item.id}:push", kind=MESSAGE_KIND, text=text,
            ref=ref_of(item), urgent=False, now=now, settings=settings, reminder=True,
            summary=Summary(title="本周学习", content=item.title, time=f"约{item.minutes}分钟"),
            waits=PUSH_WAITS, expires_at=period_end(item, settings))
    return sent


async def chase(session: AsyncSession, *, now: datetime, settings: StudySettings) -> int:
    """study_chaser_days before an item's period ends, from the push time: once to each member it reaches who
    has not done it (the key "study:<item>:chase:<member>" keeps it to one, ever)."""
    if not at_or_after_push_time(now, settings):
        return 0
    today = now.astimezone(settings.zone).date()
    sent = 0
    for item in await store.all_current_items(session, today):
        if today < item.ends_on - timedelta(days=settings.study_chaser_days):
            continue
        text = CHASER.format(title=item.title, ends=day_text(item.ends_on), minutes=item.minutes)
        sent += await enqueue_members(
            session, store.audience(item, not_done=True), key_prefix=f"study:{item.id}:chase", kind=MESSAGE_KIND,
            text=text, ref=ref_of(item), urgent=False, now=now, settings=settings, reminder=True,
            summary=Summary(title="学习提醒", content=item.title, time=f"{day_text(item.ends_on)}前"),
            waits=CHASER_WAITS.format(title=item.title, ends=day_text(item.ends_on)),
            expires_at=period_end(item, settings))
    return sent
