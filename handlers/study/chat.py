"""Study in chat: 学习 shows the current item, 已学 marks it done (then its check questions, answered by
number, each shown with the right answer — no score), 答题, 我的学习 (the member's own hours) and
关闭学习提醒 / 打开学习提醒. Voice works for each: the dispatcher reads recognized speech as text."""

from __future__ import annotations

from bot.dialogs import Picked, offer
from bot.dispatch import Context, Dialog
from handlers.study import service
from handlers.study.common import QUIZ, router
from storage import outbox
from storage import study as store
from storage.models import Member, StudyItem


def _question(dialog: Dialog, item: StudyItem, index: int, lead: str = "") -> str:
    questions = service.questions_of(item)
    entry = questions[index]
    head = f"第{index + 1}题（共{len(questions)}题，回复数字；回复 取消 跳过）：{entry['question']}\n{{options}}"
    # A number outside the options is asked the question again, without what came before it.
    return offer(dialog, "answer", lead + head, [(number, option) for number, option in enumerate(entry["options"], start=1)],
                 again=head, item_id=item.id, index=index)


def _quiz_or(dialog: Dialog, item: StudyItem, text: str) -> str:
    if not service.questions_of(item):
        return text
    dialog.start(QUIZ, "answer")
    return _question(dialog, item, 0, lead=text + "\n\n")


# Why a study push that had not gone out yet was stopped (shown in the outbox's records, never to the member).
SEEN_IN_CHAT = "不用再发：本人已在聊天里看过"
MUTED = "本人已关闭学习提醒"


@router.text("学习", bound=True, usage="学习", summary="看本周的学习内容")
@router.click("STUDY", bound=True)
async def show(ctx: Context, member: Member) -> str:
    items, done = await service.current_for(ctx.session, member, ctx.today)
    if not items:
        return service.NOTHING
    item = service.first_open(items, done)
    titles = ctx.provided.get("study_doc_titles", {})
    # Seen here: a push about these items still waiting (or queued) for this member has nothing left to say.
    await outbox.withdraw_for_member(ctx.session, member.id, [service.ref_of(shown) for shown in items],
                                     reason=SEEN_IN_CHAT)
    if item is None:
        return "这段时间的学习内容您都学过了，谢谢！\n" + "\n".join(f"· {done_item.title}" for done_item in items)
    text = service.item_text(item, titles)
    later = [other.title for other in items if other.id not in done and other.id != item.id]
    if later:
        text += "\n还有：" + "、".join(later)
    return text


@router.text("已学", "学完了", "学完", bound=True, usage="已学", summary="学完本周内容后记一下")
async def done(ctx: Context, member: Member, dialog: Dialog) -> str:
    items, finished = await service.current_for(ctx.session, member, ctx.today)
    if not items:
        return service.NOTHING
    item = service.first_open(items, finished)
    if item is None:
        last = items[-1]
        record = await store.done_of(ctx.session, last.id, member.id)
        when = service.day_text(ctx.local(record.done_at).date()) if record is not None else ""
        return service.ALREADY_DONE.format(when=when) + f"\n“{last.title}”不用再记了。"
    if not await service.mark_done(ctx.session, item, member, ctx.now):
        return service.ALREADY_DONE.format(when="之前")
    return _quiz_or(dialog, item, f"已记下：学完“{item.title}”，约 {item.minutes} 分钟。")


@router.text("答题", bound=True, usage="答题", summary="答本周学习内容的小题（不计分）")
async def quiz(ctx: Context, member: Member, dialog: Dialog) -> str:
    items, finished = await service.current_for(ctx.session, member, ctx.today)
    with_questions = [item for item in items if service.questions_of(item)]
    if not with_questions:
        return "现在的学习内容没有小题。"
    item = service.first_open(with_questions, finished) or with_questions[-1]
    return _quiz_or(dialog, item, f"“{item.title}”的小题：")


@router.on(Picked(), dialog=QUIZ, step="answer")
async def answered(ctx: Context, dialog: Dialog, picked: int) -> str:
    item = await ctx.session.get(StudyItem, dialog.data["item_id"])
    index = dialog.data["index"]
    questions = service.questions_of(item) if item is not None else []
    if index >= len(questions):
        dialog.finish()
        return "小题答完了。"
    entry = questions[index]
    right = entry["answer"]
    said = ("答对了。" if picked == right else "") + f"正确答案是 {right} {entry['options'][right - 1]}。"
    if index + 1 < len(questions):
        return _question(dialog, item, index + 1, lead=said + "\n")
    dialog.finish()
    return said + "\n小题答完了，谢谢！答题不计分，只是帮您回顾一下。"


@router.text("我的学习", "我的学时", bound=True, usage="我的学习", summary="看自己今年的学时")
@router.click("STUDY_MINE", bound=True)
async def mine(ctx: Context, member: Member) -> str:
    hours = await service.hours_of(ctx.session, member, today=ctx.today, settings=ctx.settings)
    return service.hours_text(hours)


@router.text("关闭学习提醒", bound=True, usage="关闭学习提醒", summary="不再收每周学习内容的提醒")
async def mute(ctx: Context, member: Member) -> str:
    await store.set_profile(ctx.session, member.id, ctx.now, muted=True)
    await outbox.withdraw_reminders(ctx.session, member.id, reason=MUTED, kind=service.MESSAGE_KIND)
    return "好的，每周的学习内容不再推送给您。想看时回复 学习；想恢复回复 打开学习提醒。"


@router.text("打开学习提醒", bound=True, usage="打开学习提醒", summary="恢复每周学习内容的提醒")
async def unmute(ctx: Context, member: Member) -> str:
    await store.set_profile(ctx.session, member.id, ctx.now, muted=False)
    return "好的，每周一会把学习内容发给您。"
