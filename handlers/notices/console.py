"""The notices feature's staff console pages (issue 14, item 3): what was sent within the viewer's scope, and
what became of it, one recipient a line.

- /console/notices: the notices sent to an organization in scope (that organization or below it), newest
  first, paginated, each with its sender, time, audience, an excerpt and its recipients counted as 通知情况
  counts them (送达, 待发送, 未送达, 未绑定, 收到): one grouped query for the page, not one per notice.
- /console/notices/{id}: the text as written and every recipient: name, branch, status in words (送达,
  待发送, 未送达 with the outbox's reason, 未绑定) and when they answered 收到. A notice outside the scope
  answers 404, like one that does not exist.
- /console/notices/{id}.csv and .xlsx: exactly that table (the meetings feature's writer: no cell is a
  formula, CSV carries a BOM), written to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import aliased

from bot.outbox import UNBOUND
from bot.text import excerpt
from bot.web.console import StaffView, add_nav, staff_page
from bot.web.exports import send_table
from handlers.notices import router
from storage.models import Member, Notice, Organization, OutboxMessage, OutboxStatus
from storage.notices import NOTICE_KIND, notice_ref
from storage.orgs import under

NOTICES_PAGE = "/console/notices"
PAGE_SIZE = 30
EXCERPT = 40

add_nav("通知", NOTICES_PAGE)

DELIVERED, PENDING, FAILED, NOT_BOUND = "送达", "待发送", "未送达", "未绑定"
RECIPIENT_HEADER = ["姓名", "支部", "状态", "原因", "收到时间"]


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


@dataclass
class NoticeLine:
    id: int
    org_name: str
    sender: str
    audience: str
    text: str
    urgent: bool
    created_at: datetime
    recipients: int = 0
    delivered: int = 0
    pending: int = 0
    failed: int = 0  # not delivered, the unbound left out
    not_bound: int = 0
    acknowledged: int = 0

    @property
    def excerpt(self) -> str:
        return excerpt(self.text, EXCERPT)


@dataclass
class RecipientLine:
    name: str
    branch: str
    status: str  # in words
    reason: str
    acknowledged_at: datetime | None


def _status(status: str, error: str | None) -> tuple[str, str]:
    if status == OutboxStatus.SENT.value:
        return DELIVERED, ""
    if status == OutboxStatus.FAILED.value:
        if error == UNBOUND:
            return NOT_BOUND, ""
        return FAILED, error or "原因不明"
    return PENDING, ""


def _in_scope(view: StaffView):
    return Notice.org_id.in_(select(Organization.id).where(under(view.scope)))


async def notices_in_scope(view: StaffView, *, limit: int, offset: int) -> tuple[list[NoticeLine], int]:
    """A page of the notices sent within the viewer's scope, newest first, counted; and how many there are."""
    session = view.session
    total = (await session.execute(select(func.count()).select_from(Notice).where(_in_scope(view)))).scalar_one()
    sender = aliased(Member)
    rows = await session.execute(
        select(Notice.id, Organization.name, sender.name, Notice.audience, Notice.text, Notice.urgent,
               Notice.created_at)
        .join(Organization, Organization.id == Notice.org_id)
        .outerjoin(sender, sender.id == Notice.sender_id)
        .where(_in_scope(view)).order_by(Notice.created_at.desc(), Notice.id.desc()).limit(limit).offset(offset))
    lines = {row[0]: NoticeLine(row[0], row[1], row[2] or "—", *row[3:]) for row in rows}
    if lines:
        status, error = OutboxMessage.status, OutboxMessage.error
        failed = status == OutboxStatus.FAILED.value
        counts = await session.execute(
            select(OutboxMessage.ref, func.count(),
                   func.count(case((status == OutboxStatus.SENT.value, 1))),
                   func.count(case((and_(status != OutboxStatus.SENT.value, ~failed), 1))),
                   func.count(case((and_(failed, func.coalesce(error, "") != UNBOUND), 1))),
                   func.count(case((and_(failed, error == UNBOUND), 1))),
                   func.count(OutboxMessage.acknowledged_at))
            .where(OutboxMessage.kind == NOTICE_KIND,
                   OutboxMessage.ref.in_([notice_ref(notice_id) for notice_id in lines]))
            .group_by(OutboxMessage.ref))
        for ref, recipients, delivered, pending, not_delivered, not_bound, acknowledged in counts:
            line = lines[int(ref.split(":")[1])]
            line.recipients, line.delivered, line.pending = recipients, delivered, pending
            line.failed, line.not_bound, line.acknowledged = not_delivered, not_bound, acknowledged
    return list(lines.values()), total


async def _notice(view: StaffView) -> tuple[Notice, Organization, str]:
    """The notice the address names, its organization and its sender's name; 404 unless in scope."""
    notice_id = _int(view.request.match_info.get("notice_id"))
    notice = await view.session.get(Notice, notice_id) if notice_id is not None else None
    if notice is None:
        raise web.HTTPNotFound()
    org = view.require(await view.session.get(Organization, notice.org_id))
    sender = await view.session.get(Member, notice.sender_id)
    return notice, org, sender.name if sender is not None else "—"


async def recipients_of(view: StaffView, notice: Notice) -> list[RecipientLine]:
    """Every recipient of the notice, by branch (tree order) and then as the roster lists them."""
    rows = await view.session.execute(
        select(Member.name, Organization.name, OutboxMessage.status, OutboxMessage.error,
               OutboxMessage.acknowledged_at)
        .select_from(OutboxMessage)
        .outerjoin(Member, Member.id == OutboxMessage.member_id)
        .outerjoin(Organization, Organization.id == Member.org_id)
        .where(OutboxMessage.ref == notice_ref(notice.id), OutboxMessage.kind == NOTICE_KIND)
        .order_by(Organization.path, Member.id, OutboxMessage.id))
    lines = []
    for name, branch, status, error, acknowledged_at in rows:
        words, reason = _status(status, error)
        lines.append(RecipientLine(name or "—", branch or "—", words, reason, acknowledged_at))
    return lines


def _paging(total: int, page: int) -> dict:
    last = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    return {"page": min(page, last), "last": last, "total": total}


@router.web.get(NOTICES_PAGE)
@staff_page
async def notices_page(view: StaffView) -> web.Response:
    page = max(1, min(_int(view.request.query.get("page")) or 1, 100_000))
    rows, total = await notices_in_scope(view, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    paging = _paging(total, page)
    return view.render("console_notices.html", rows=rows, paging=paging,
                       page_query=lambda number: "?" + urlencode({"page": number}) if number > 1 else "")


@router.web.get(NOTICES_PAGE + "/{notice_id:\\d+}")
@staff_page
async def notice_page(view: StaffView) -> web.Response:
    notice, org, sender = await _notice(view)
    recipients = await recipients_of(view, notice)
    counts = {word: sum(1 for line in recipients if line.status == word)
              for word in (DELIVERED, PENDING, FAILED, NOT_BOUND)}
    acknowledged = sum(1 for line in recipients if line.acknowledged_at is not None)
    return view.render("console_notices_detail.html", notice=notice, org=org, sender=sender, recipients=recipients,
                       counts=counts, acknowledged=acknowledged)


def _recipient_line(view: StaffView, line: RecipientLine) -> list:
    return [line.name, line.branch, line.status, line.reason,
            f"{view.local(line.acknowledged_at):%Y-%m-%d %H:%M}" if line.acknowledged_at else ""]


async def _export(view: StaffView, extension: str) -> web.Response:
    notice, org, sender = await _notice(view)
    lines = [_recipient_line(view, line) for line in await recipients_of(view, notice)]
    sent = f"{view.local(notice.created_at):%Y-%m-%d %H:%M}"
    about = f"{org.name} {sent} {sender}发给{notice.audience}：{excerpt(notice.text, 20)}（通知 {notice.id}）"
    return await send_table(view, "通知回执", extension, f"{org.name}通知回执", RECIPIENT_HEADER, lines, about)


@router.web.get(NOTICES_PAGE + "/{notice_id:\\d+}.{extension:(csv|xlsx)}")
@staff_page
async def notice_export(view: StaffView) -> web.Response:
    return await _export(view, view.request.match_info["extension"])
