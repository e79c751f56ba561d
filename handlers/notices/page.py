"""The notice's page: the whole notice as its sender wrote it, and a 收到 button that answers it.

A template message shows only the notice's first words; its link opens this page (bot/web/pages.py), signed
for one recipient. It is shown only to a member a message about the notice was addressed to (a recipient,
the sender who got its report). 收到 here acknowledges this notice, as 收到 in chat does the newest one:
the same column, so 通知情况 counts it at once.
"""

from __future__ import annotations

from aiohttp import web

from bot.web.pages import LinkGone, MemberPage
from handlers.notices import router
from storage.models import Member, Notice, Organization
from storage.notices import acknowledge, copy_of, notice_ref
from storage.outbox import addressed_to


async def _notice(page: MemberPage) -> Notice:
    """The notice the link names, if this member may see it."""
    if page.member is None or not page.subject.thing_id.isdigit():
        raise LinkGone("not a member's notice link")
    notice = await page.session.get(Notice, int(page.subject.thing_id))
    if notice is None:
        raise LinkGone("no such notice")
    if not await addressed_to(page.session, notice_ref(notice.id), page.member.id):
        raise LinkGone("not sent to this member")
    return notice


@router.page("notice")
async def notice_page(page: MemberPage) -> web.Response:
    notice = await _notice(page)
    if page.posted:
        if page.form.get("action") == "ack":
            # Only this member's own copy, and only if not yet acknowledged: a second tap changes nothing.
            await acknowledge(page.session, notice.id, page.member.id, page.now)
        return page.back()
    sender = await page.session.get(Member, notice.sender_id)
    org = await page.session.get(Organization, notice.org_id)
    return page.render("notice.html", notice=notice, org=org, sender=sender,
                       copy=await copy_of(page.session, notice.id, page.member.id),
                       is_sender=notice.sender_id == page.member.id)
