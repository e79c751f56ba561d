"""The study item's page: the item as published, a big 已学 button (a second tap changes nothing), and the
check questions, whose right answers are shown once the member answers — nothing is scored or stored.

A template message about an item (the weekly push, the chaser) links here, signed for its recipient. Only a
member the item reaches (their branch or an organization above it published it) sees it.
"""

from __future__ import annotations

from aiohttp import web

from bot.keys import PROVIDED
from bot.web.pages import LinkGone, MemberPage
from handlers.study import service
from handlers.study.common import router
from storage import study as store
from storage.models import StudyItem


@router.page("study")
async def study_page(page: MemberPage) -> web.Response:
    if page.member is None or not page.subject.thing_id.isdigit():
        raise LinkGone("not a member's study link")
    item = await page.session.get(StudyItem, int(page.subject.thing_id))
    if item is None or not await service.may_see(page.session, item, page.member):
        raise LinkGone("no such item for this member")
    questions = service.questions_of(item)
    answers: dict[int, int] = {}
    if page.posted:
        action = page.form.get("action")
        if action == "done":
            await service.mark_done(page.session, item, page.member, page.now)
            return page.back()
        if action == "answer":
            for index in range(len(questions)):
                value = page.form.get(f"q{index}", "")
                if value.isdigit():
                    answers[index] = int(value)
    record = await store.done_of(page.session, item.id, page.member.id)
    titles = page.request.app[PROVIDED].get("study_doc_titles", {})
    return page.render("study.html", item=item, record=record, questions=questions, answers=answers,
                       answered=bool(answers), doc_title=titles.get(item.doc, ""),
                       ends=service.day_text(item.ends_on))

