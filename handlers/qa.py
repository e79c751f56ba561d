"""Policy Q&A: any text no other feature takes is a question, answered from the curated content.

Its text fallback (Router.text_fallback) runs only when no other handler took the text and the dispatcher
has not answered it itself (取消, a timed-out dialog, a bare number). `问 …` forces a question. The search (content/search.py) either answers
(with the source on the last line), offers up to three "您是不是想问" choices (reply a number), or
declines kindly and offers to pass the question to the branch secretaries through the outbox.
A long document passage is shown in parts: "回复 更多" continues.

Only a question's first QUESTION_MAX_CHARS characters are searched (content/search.py says why); a reply
to a longer text says so. The search runs in a worker thread: a few milliseconds for a question, it would
otherwise add its whole time to every other member's reply waiting on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from aiohttp import web
from pydantic import Field

from bot.config import Settings
from bot.dialogs import Steps
from bot.dispatch import Choice, Command, Context, Dialog, Router, Runtime
from bot.outbox import Outgoing
from bot.summary import Summary
from bot.text import excerpt, utf8_len
from content.search import (
    ANSWERED,
    UNSURE,
    Answer,
    IndexHolder,
    clip_question,
    holder_for,
    source_line,
)
from storage.members import bound_leaders
from storage.models import Member, Organization

log = logging.getLogger(__name__)


class QaSettings(Settings):
    # Seconds between looks at the content files' modification times (a change reloads the index); 0: never.
    content_poll_seconds: float = Field(default=5.0, ge=0)


# Its console page (at the end of this module) renders qa_templates/console_content.html.
router = Router("qa", settings=QaSettings, templates=Path(__file__).parent / "qa_templates")

DIALOG = Steps("qa", choose="您是不是想问：选一个（数字），或转给书记", forward="回复 1 把问题转给书记",
               more="长答案：回复 更多 继续")
REPLY_MAX_BYTES = 2048
# Searches run in this many worker threads. They are pure Python and take turns with the event loop for the
# interpreter lock: a few threads keep one slow search from holding up the next question, and no more, so that
# the loop always gets its turn.
SEARCH_THREADS = 2

ASK_HOW = "请在“问”后面写上问题，比如：问 农民党员党费交多少。也可以直接发问题。"
SUGGEST = "您是不是想问：\n{options}\n回复数字查看答案。"
SUGGEST_FORWARD = "都不是的话，回复 {other} 把问题转给支部书记。"
PICK_A_NUMBER = "请回复 1 到 {last} 之间的数字。"
DECLINE = ("没有听懂“{text}”，这个问题我暂时回答不了。我能回答党费、三会一课、发展党员、关怀帮扶等党务问题，"
           "回复 帮助 查看可以做什么。")
OFFER_FORWARD = "\n需要的话，回复 1 把问题转给支部书记。"
# A party question the content does not cover: said plainly, not guessed at, and not called "not understood".
UNKNOWN = "这个问题我还没有准确的答案，不想说错了误导您。"
UNKNOWN_ASK_SECRETARY = "可以问问支部书记。"
# The other questions of a message that asked several.
OTHERS_ONE = "您还问了“{question}”，回复 1 看这一条。"
OTHERS_MANY = "您还问了：\n{options}\n回复数字看答案。"
# Words that make a text a question; a text without any, and short, is not offered to the secretary.
_QUESTION = re.compile(r"[?？吗呢么嘛]|怎|什么|啥|咋|哪|谁|几|多少|多久|为何|为什么|能不能|可不可以|是不是|有没有|要不要|"
                       r"如何|是否|请问|想问|问一下|能否|可否")
QUESTION_MIN_CHARS = 8
MORE_HINT = "……\n回复 更多 继续阅读"
NOTHING_MORE = "没有需要继续显示的内容了。有问题可以直接发给我。"
FORWARD_NEEDS_BINDING = "转给书记需要先绑定党员身份：回复 绑定 开始。"
NO_SECRETARY = "本支部的书记还没有绑定支部助手，暂时转不过去，请当面或电话问一下书记。"
FORWARDED = "已把您的问题转给{names}，书记看到后会联系您。"
TO_SECRETARY = "【党员提问】{name}（{org}）问：\n“{question}”\n支部助手没能回答，请您抽空回复一下。"
UNAVAILABLE = "问答内容暂时不可用，请稍后再试，或直接问支部书记。"
# A text longer than QUESTION_MAX_CHARS: only its beginning was read, and the reply says so first.
CUT_NOTE = "您的消息很长，我只看了前面{read}个字，下面是按这部分找到的："
CUT_DECLINE = "您的消息很长，我只看了前面{read}个字，没有找到能回答的问题。请用一两句话问我，比如：农民党员党费交多少？"
OFFER_FORWARD_CUT = "\n需要的话，回复 1 把这段话的开头转给支部书记。"


# ---------------------------------------------------------------- the content, provided as `answers`


@router.lifespan
async def content_index(runtime: Runtime):
    """Load the content before serving (a ContentError refuses the start) and provide it to handlers as
    `answers`; then reload it whenever its files change (polling their modification times) and on
    `zhibu content reload`. A reload that fails keeps the last good index. The index is read from
    ZHIBU_CACHE_DIR when the content and code are those it was built from, else built in a child process
    (content/search.py's IndexHolder). The server starts listening only after this (aiohttp runs every
    start-up hook before it binds the port), so /healthz never answers a process without its index."""
    settings: QaSettings = runtime.settings
    # One holder per folder per process: a second app in the same process (the tests) reuses a loaded index.
    holder = holder_for(settings.content_dir, cache_dir=settings.effective_cache_dir)
    if holder.changed() or holder.last_error is not None or not holder.loaded:
        await _in_loader_thread(holder.load)
    runtime.provide("answers", holder)
    runtime.on_reload("content", lambda: _in_loader_thread(holder.reload))
    watcher = None
    if settings.content_poll_seconds > 0:
        watcher = asyncio.create_task(_watch_content(holder, settings.content_poll_seconds))
    yield
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


_loader: ThreadPoolExecutor | None = None


def _in_loader_thread(work):
    """Run a load or reload of the index in the one thread kept for them. glibc gives each thread a heap
    of its own for large allocations: with every version of the index read in the same thread, the next
    version reuses the room the last one freed, where a new thread each time would leave a heap behind."""
    global _loader
    if _loader is None:  # created on the event loop's thread only
        _loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-index")
    return asyncio.get_running_loop().run_in_executor(_loader, work)


async def _watch_content(holder: IndexHolder, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            if holder.changed():
                log.info("content files changed; reloading")
                await _in_loader_thread(holder.reload)
        except Exception:
            log.exception("content watch failed; will look again")


# ---------------------------------------------------------------- reply texts


def _cut(text: str, start: int, max_bytes: int) -> int:
    """Where a part of text starting at start ends, within max_bytes, preferably after a line or sentence."""
    end, used = start, 0
    while end < len(text):
        size = utf8_len(text[end])
        if used + size > max_bytes:
            break
        used += size
        end += 1
    if end >= len(text):
        return len(text)
    for marks in ("\n", "。！？；", "，、"):
        best = max(text.rfind(mark, start, end) for mark in marks)
        if best > start + (end - start) // 2:
            return best + 1
    return end


def answer_text(answer: Answer, offset: int = 0, max_bytes: int = REPLY_MAX_BYTES) -> tuple[str, int | None]:
    """The chat reply for an answer, and where the next part starts (None: nothing more).

    The source is always the last line; a passage longer than one reply ends its part with 回复 更多.
    """
    source = source_line(answer.source_name, answer.article, answer.local)
    if answer.kind != "passage":
        return f"{answer.answer}\n{source}", None
    heading = f"【{answer.title}】" + ("（续）" if offset else "")
    room = max_bytes - utf8_len(heading) - utf8_len(source) - utf8_len(MORE_HINT) - 8
    end = _cut(answer.answer, offset, room)
    part = answer.answer[offset:end].strip()
    if end < len(answer.answer):
        return f"{heading}\n{part}\n{MORE_HINT}\n{source}", end
    return f"{heading}\n{part}\n{source}", None


def _others_text(answer: Answer) -> str:
    if len(answer.others) == 1:
        return OTHERS_ONE.format(question=excerpt(answer.others[0].question))
    options = "\n".join(f"{number} {other.question}" for number, other in enumerate(answer.others, start=1))
    return OTHERS_MANY.format(options=options)


def _show(dialog: Dialog, answer: Answer, offset: int = 0, note: str = "") -> str:
    """The reply for an answer (after note, on lines of its own, when there is one); sets up 更多, or the
    choice among the message's other questions (a long answer's 更多 comes first)."""
    others = _others_text(answer) if answer.others else ""
    room = REPLY_MAX_BYTES - (utf8_len(note) + 1 if note else 0) - (utf8_len(others) + 2 if others else 0)
    text, following = answer_text(answer, offset, room)
    if following is not None:
        dialog.start(DIALOG, "more", id=answer.entry_id, offset=following)
        others = ""
    elif others:
        # The parts themselves too: a part whose answer was worked out (a dues figure) is searched again.
        dialog.start(DIALOG, "choose", ids=[other.id for other in answer.others], question=answer.question,
                     parts=[other.question for other in answer.others])
    else:
        dialog.finish()
    text = f"{text}\n\n{others}" if others else text
    return f"{note}\n{text}" if note else text


_executor: ThreadPoolExecutor | None = None


def _search_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:  # created on the event loop's thread only
        _executor = ThreadPoolExecutor(max_workers=SEARCH_THREADS, thread_name_prefix="qa-search")
    return _executor


def _search_now(holder: IndexHolder, question: str, today: date | None) -> Answer:
    # The index is taken once, in the thread: a reload meanwhile swaps the holder's index for a new object and
    # leaves this one whole, so the search reads one version of the content from start to end.
    return holder.index.search(question, today=today)


async def search(answers: IndexHolder, question: str, today: date | None = None) -> Answer:
    """The search for (the first QUESTION_MAX_CHARS characters of) a question, off the event loop; today (the
    member's local date) for answers worked out from a date they give (党龄)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_search_executor(), _search_now, answers, clip_question(question), today)


def looks_like_question(text: str) -> bool:
    """Whether an unanswered text is worth a secretary's time: it asks something, or says enough."""
    return bool(_QUESTION.search(text)) or len(text) >= QUESTION_MIN_CHARS


async def prepare_search(text: str, today: date, provided: dict) -> tuple[str, date, Answer] | None:
    """The search for a text that will probably reach any_text, run before the message's transaction opens
    (Router.text_fallback's prepare), so that no question holds the database while it is searched."""
    answers = provided.get("answers")
    if answers is None or not answers.loaded:
        return None
    read = clip_question(text)
    return read, today, await search(answers, read, today)


async def reply_for(answers: IndexHolder, question: str, dialog: Dialog, member: Member | None,
                    today: date | None = None, prepared: tuple[str, date, Answer] | None = None) -> str:
    """Search (unless prepared has the answer for this question already), answer, and set up the dialog
    for what the member may reply next. Forwarding to the secretary is offered only to a bound member, and
    only for what looks like a real question."""
    read = clip_question(question)
    cut = len(read) < len(question)
    if prepared is not None and prepared[:2] == (read, today):
        result = prepared[2]
    else:
        result = await search(answers, read, today)
    # What the secretary gets if the member forwards it: the part that was read, marked as a beginning.
    question = read + "……" if cut else read
    note = CUT_NOTE.format(read=len(read)) if cut else ""
    if result.status == ANSWERED:
        return _show(dialog, result, note=note)
    if result.status == UNSURE and result.suggestions:
        ids = [suggestion.id for suggestion in result.suggestions]
        dialog.start(DIALOG, "choose", ids=ids, question=question)
        options = "\n".join(f"{number} {s.question}" for number, s in enumerate(result.suggestions, start=1))
        text = SUGGEST.format(options=options)
        if member is not None:
            text = text[:-1] + "；" + SUGGEST_FORWARD.format(other=len(ids) + 1)
        return f"{note}\n{text}" if note else text
    if cut:
        text, offer = CUT_DECLINE.format(read=len(read)), OFFER_FORWARD_CUT
    elif result.in_domain:
        # Ours, but not covered: always worth the secretary's time.
        if member is None:
            return UNKNOWN + UNKNOWN_ASK_SECRETARY
        dialog.start(DIALOG, "forward", question=question)
        return UNKNOWN + OFFER_FORWARD
    else:
        text, offer = DECLINE.format(text=excerpt(read)), OFFER_FORWARD
    if member is None or not (cut or looks_like_question(read)):
        return text
    dialog.start(DIALOG, "forward", question=question)
    return text + offer


# ---------------------------------------------------------------- handlers


@router.on(Choice(), dialog=DIALOG, step="choose")
async def choose(ctx: Context, dialog: Dialog, member: Member | None, choice: int, answers: IndexHolder) -> str:
    ids = dialog.data["ids"]
    if choice == len(ids) + 1 and member is not None:
        question = dialog.data["question"]
        dialog.finish()
        return await _forward(ctx, member, question)
    if not 1 <= choice <= len(ids):
        return PICK_A_NUMBER.format(last=len(ids) + (member is not None))
    answer = None
    if dialog.data.get("parts"):
        again = await search(answers, dialog.data["parts"][choice - 1], ctx.today)
        answer = again if again.status == ANSWERED and again.entry_id == ids[choice - 1] else None
    answer = answer or answers.index.answer_of(ids[choice - 1], question=dialog.data["question"])
    if answer is None:  # the content was reloaded without it in between
        dialog.finish()
        return UNAVAILABLE
    return _show(dialog, answer)


@router.on(Choice(1), dialog=DIALOG, step="forward")
async def forward(ctx: Context, dialog: Dialog, member: Member | None) -> str:
    question = dialog.data["question"]
    dialog.finish()
    return await _forward(ctx, member, question)


@router.on(Command("更多", "继续", "下一页"), dialog=DIALOG, step="more")
async def more(dialog: Dialog, answers: IndexHolder) -> str:
    answer = answers.index.answer_of(dialog.data["id"])
    if answer is None:
        dialog.finish()
        return UNAVAILABLE
    return _show(dialog, answer, int(dialog.data["offset"]))


async def _forward(ctx: Context, member: Member | None, question: str) -> str:
    if member is None:
        return FORWARD_NEEDS_BINDING
    org = await ctx.session.get(Organization, member.org_id)
    leaders = [leader for leader in await bound_leaders(ctx.session, org) if leader.id != member.id]
    if not leaders:
        return NO_SECRETARY
    text = TO_SECRETARY.format(name=member.name, org=org.name, question=question)
    for leader in leaders:
        ctx.enqueue(Outgoing(key=f"qa:{ctx.message.dedup_key}:{leader.id}", kind="question", text=text,
                             member_id=leader.id, ref=f"member:{member.id}",
                             summary=Summary(title="党员提问", content=excerpt(question), sender=member.name)))
    return FORWARDED.format(names="、".join(f"{leader.role}{leader.name}" for leader in leaders))


@router.text("问", "提问", "请问", takes_args=True, usage="问 问题", summary="问党务政策（也可以直接发问题）")
async def ask(ctx: Context, dialog: Dialog, member: Member | None, args: str, answers: IndexHolder) -> str:
    if not args:
        return ASK_HOW
    return await reply_for(answers, args, dialog, member, ctx.today)


@router.text_fallback(prepare=prepare_search)
async def any_text(ctx: Context, dialog: Dialog, member: Member | None, text: str, answers: IndexHolder,
                   prepared: tuple[str, date, Answer] | None = None) -> str:
    """Text nothing else took: a question (the dispatcher has answered 取消, a timed-out dialog, a number)."""
    if text in ("更多", "继续", "下一页"):
        return NOTHING_MORE
    return await reply_for(answers, text, dialog, member, ctx.today, prepared)


# ---------------------------------------------------------------- the console's content page (issue 14, item 3)
#
# /console/content, for everyone signed in to the console: the FAQ entries (question, source, tags) with a
# search over them, and 试一试, a question answered exactly as chat answers it to someone who has not bound
# (reply_for with a throwaway dialog and no member: nothing is saved, nothing is forwarded).

from bot.keys import PROVIDED  # noqa: E402
from bot.web.console import StaffView, add_nav, staff_page  # noqa: E402

CONTENT_PAGE = "/console/content"
TRY_MAX_CHARS = 500

add_nav("问答内容", CONTENT_PAGE)


def _matches(entry, words: list[str]) -> bool:
    text = " ".join([entry.question, *entry.phrasings, entry.source, entry.article, *entry.tags, entry.id]).lower()
    return all(word in text for word in words)


@router.web.get(CONTENT_PAGE)
@staff_page
async def content_page(view: StaffView) -> web.Response:
    answers: IndexHolder = view.request.app[PROVIDED]["answers"]
    query = " ".join(view.request.query.get("q", "").split())[:50]
    words = query.lower().split()
    entries = [entry for entry in answers.index.faq if _matches(entry, words)]
    question = view.request.query.get("ask", "").strip()[:TRY_MAX_CHARS]
    reply = await reply_for(answers, question, Dialog(), None) if question else None
    return view.render("console_content.html", entries=entries, total=len(answers.index.faq), query=query,
                       question=question, reply=reply, last_error=answers.last_error)
