"""上报: a member tells the branch that someone should be visited, in a short dialog or in one everyday sentence.

`上报` asks whom it concerns (themselves, a member of their branch by name, or a villager who is not a
member), which occasion, a few words, and a photo or a voice message if they have one; the case then opens
(service.open_case) and the reply says who will visit and by when, or that the branch already knew. An
everyday sentence that clearly is a report ("王秀英住院了", "家里老人走了", "我家房子着火了") starts the same
dialog with what it says filled in and asks once: 要上报 王秀英 生病住院 吗？ A question ("党员住院了有什么补助")
is no report and goes on to the policy answers.

The helpers the other chat modules share (finding a member of the branch by name, namesakes told apart by
the phone's last four digits as 代签 and 新绑定码 do; a case's label) live here too.
"""

from __future__ import annotations

import logging
import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.dialogs import Picked, offer
from bot.dispatch import (AnyCommand, AnyText, Choice, Click, Context, Dialog, Filter, MessageKind, Refusal, SkipHandler,
                          typed_text)
from bot.members import MAX_NAME, member_named
from bot.messages import Kind, Message
from handlers.care import service
from handlers.care.common import LEADERS, REPORT, router
from handlers.care.settings import CareSettings
from storage.members import namesakes
from storage.models import CareCase, CareMedia, CareReport, CareSource, Member, Organization, OrgType, Role

log = logging.getLogger(__name__)

# -- texts
ASK_WHO = "要上报谁的情况？回复数字：\n{options}"
WHO_OPTIONS = [("self", "我自己（或我家里）"), ("member", "本支部的党员"), ("villager", "不是党员的村民")]
ASK_NAME = "请回复这位党员的姓名。"
ASK_VILLAGER = "请回复这位村民的姓名或称呼（例如：张大爷）。"
ASK_OCCASION = "是什么情况？回复数字：\n{options}"
ASK_DETAILS = "请简单说几句情况（例如在哪里住院、家里缺什么），打字或发语音都行。"
ASK_MEDIA = "有照片或语音的话，现在发过来；没有就回复 跳过。"
MEDIA_KEPT = "收到{what}。还有就接着发，发完了回复 好了。"
MEDIA_OR_DONE = "请发照片或语音；发完了（或没有）回复 好了。"
CONFIRM = "要上报 {subject} {occasion} 吗？回复 1 上报，回复 2 不用"
NOT_REPORTED = "好的，没有上报。"
UNKNOWN_NAME_VILLAGER = "如果他（她）不是党员，回复 3 按村民上报。"
NAME_TOO_LONG = "姓名太长了（最多 {limit} 字），请重新回复。"
DETAILS_TOO_LONG = "太长了（最多 {limit} 字），请说得简短些再发。"
NOT_IN_BRANCH = "上报是给党支部用的，您所在的组织不是党支部。村里的情况请让支部书记上报。"
OPENED = "已上报：{subject}（{occasion}）。\n支部安排 {visitor} 在 {deadline} 前上门看望。谢谢您！"
OPENED_SELF_VISITOR = "已记下：{subject}（{occasion}），由您走访，期限 {deadline}。\n看望后回复 走访 记下情况。"
OPENED_NO_VISITOR = "已上报：{subject}（{occasion}）。支部暂时没有书记，请当面告诉支委。"
JOINED = "这件事支部已经知道了，{visitor} 会在 {deadline} 前上门看望。您说的情况也记下了，谢谢您！"
JOINED_QUIET = "这件事支部已经知道了，会安排上门看望。您说的情况也记下了，谢谢您！"

SKIP_WORDS = frozenset({"跳过", "好了", "好", "好的", "没有", "没有了", "没了", "无", "完了", "发完了", "上报", "1"})
MEDIA_LIMIT = 9  # photos and voice messages one report keeps


def literal(text: str) -> str:
    """Text people wrote, safe inside a question that str.format fills (offer's {options})."""
    return text.replace("{", "{{").replace("}", "}}")


def subject_label(subject_name: str, member_id: int | None) -> str:
    """How a case's person is named in replies: a villager is marked as not a member."""
    return subject_name if member_id is not None else f"{subject_name}（村民，非党员）"


def case_label(case: CareCase, zone, now) -> str:
    """One case in a numbered list: whom, why, by when."""
    due = "已逾期" if case.deadline < now else f"期限 {service.local_text(case.deadline, zone)}"
    return f"{subject_label(case.subject_name, case.member_id)}（{case.occasion}）{due}"


async def branch_of(session: AsyncSession, member: Member) -> Organization | None:
    """The member's branch, or None for staff of a township or county (their org is no branch)."""
    org = await session.get(Organization, member.org_id)
    return org if org is not None and org.org_type == OrgType.BRANCH.value else None


# ---------------------------------------------------------------- the dialog


@router.text("上报", "上报情况", "报告情况", takes_args=True, bound=True, usage="上报",
             summary="告诉支部谁生病住院、受灾、家里有丧事或有困难，支部会上门看望")
@router.on(Click("CARE_REPORT"), bound=True)
async def start_report(ctx: Context, dialog: Dialog, member: Member, args: str = "", written_args: str = "") -> str:
    if await branch_of(ctx.session, member) is None:
        return NOT_IN_BRANCH
    # "上报 王秀英住院了": the sentence after the word, as if said alone; other words are the report's words.
    said = everyday_report(args, ctx.settings) if args else None
    if said is not None:
        return await _from_sentence(ctx, dialog, member, said, written_args)
    dialog.start(REPORT, "who")
    if written_args and len(written_args) <= service.MAX_DETAILS:
        dialog.data["details"] = written_args
    return offer(dialog, "who", ASK_WHO, WHO_OPTIONS)


async def _next(ctx: Context, dialog: Dialog) -> str:
    """Ask for what the report still lacks, in the dialog's order; an everyday sentence ends in one
    confirmation instead of the photo question."""
    data = dialog.data
    if "subject_name" not in data:
        return offer(dialog, "who", ASK_WHO, WHO_OPTIONS)
    if "occasion" not in data:
        occasions = [(occasion.name, occasion.name) for occasion in ctx.settings.care_occasions]
        return offer(dialog, "occasion", ASK_OCCASION, occasions)
    if "details" not in data:
        dialog.goto("details")
        return ASK_DETAILS
    if data.get("sentence"):
        question = CONFIRM.format(subject=literal(subject_label(data["subject_name"], data.get("subject_id"))),
                                  occasion=literal(data["occasion"]))
        return offer(dialog, "confirm", question, [("yes", "上报"), ("no", "不用")])
    dialog.goto("media")
    return ASK_MEDIA


@router.on(Picked(), dialog=REPORT, step="who")
async def report_who(ctx: Context, dialog: Dialog, member: Member, picked: str) -> str:
    if picked == "self":
        dialog.goto("who", subject_id=member.id, subject_name=member.name)
        return await _next(ctx, dialog)
    if picked == "member":
        dialog.goto("name")
        return ASK_NAME
    said = dialog.data.get("unknown_name")
    if said:  # "老刘住院了", and 老刘 is no member: a villager, by the name said
        dialog.goto("who", subject_id=None, subject_name=said)
        return await _next(ctx, dialog)
    dialog.goto("villager")
    return ASK_VILLAGER


SELF_WORDS = frozenset({"我", "我自己", "自己", "本人", "我家", "我家里", "家里"})


def occasion_named(text: str, settings: CareSettings) -> str | None:
    """The occasion a typed answer names instead of its number ("住院", "生病住院"); None if none or several."""
    named = {occasion.name for occasion in settings.care_occasions
             if text == occasion.name or any(word and word in text for word in occasion.words)}
    return named.pop() if len(named) == 1 else None


@router.on(AnyText() & ~AnyCommand(), dialog=REPORT, step="who")
async def report_who_typed(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    """A name or 自己 typed instead of a number."""
    if text in SELF_WORDS:
        dialog.goto("who", subject_id=member.id, subject_name=member.name)
        return await _next(ctx, dialog)
    people = await namesakes(ctx.session, member.org_id, text) if len(text) <= MAX_NAME else []
    if len(people) != 1:
        raise SkipHandler  # not an answer: the numbers are asked again, or it is another matter
    dialog.goto("who", subject_id=people[0].id, subject_name=people[0].name)
    return await _next(ctx, dialog)


@router.on(AnyText() & ~AnyCommand(), dialog=REPORT, step="occasion")
async def report_occasion_typed(ctx: Context, dialog: Dialog, text: str) -> str:
    """The occasion typed ("住院") instead of its number."""
    occasion = occasion_named(text, ctx.settings)
    if occasion is None:
        raise SkipHandler
    dialog.goto("occasion", occasion=occasion)
    return await _next(ctx, dialog)


@router.on(Choice(3), dialog=REPORT, step="name")
async def report_name_is_villager(ctx: Context, dialog: Dialog) -> str:
    """回复 3 after an unknown name: the person is a villager, by the name just given."""
    name = dialog.data.get("unknown_name")
    if not name:
        dialog.goto("villager")
        return ASK_VILLAGER
    dialog.goto("villager", subject_id=None, subject_name=name)
    return await _next(ctx, dialog)


@router.on(AnyText() & ~AnyCommand(), dialog=REPORT, step="name")
async def report_name(ctx: Context, dialog: Dialog, member: Member, written: str) -> str:
    try:
        subject = await member_named(ctx.session, member.org_id, written, unknown_hint=UNKNOWN_NAME_VILLAGER)
    except Refusal:
        name = written.strip()
        if len(name) <= MAX_NAME and not any(char.isdigit() for char in name):
            dialog.goto("name", unknown_name=name)
        raise
    dialog.goto("name", subject_id=subject.id, subject_name=subject.name)
    return await _next(ctx, dialog)


@router.on(AnyText() & ~AnyCommand(), dialog=REPORT, step="villager")
async def report_villager(ctx: Context, dialog: Dialog, written: str) -> str:
    name = written.strip()
    if len(name) > MAX_NAME:
        return NAME_TOO_LONG.format(limit=MAX_NAME)
    dialog.goto("villager", subject_id=None, subject_name=name)
    return await _next(ctx, dialog)


@router.on(Picked(), dialog=REPORT, step="occasion")
async def report_occasion(ctx: Context, dialog: Dialog, picked: str) -> str:
    dialog.goto("occasion", occasion=picked)
    return await _next(ctx, dialog)


def _keep_media(dialog: Dialog, message: Message) -> str:
    """Keep a photo's or a voice message's media id for the report; what to call it in the reply."""
    kept = list(dialog.data.get("media", []))
    if len(kept) < MEDIA_LIMIT and message.media_id:
        kept.append([message.kind.value, message.media_id[:200], (message.url or "")[:500]])
    dialog.data["media"] = kept
    dialog.changed = True
    return "照片" if message.kind == Kind.IMAGE else "语音"


# Registered before the text handlers of the same steps: a voice message is kept as media, its words as text.
@router.on(MessageKind(Kind.IMAGE, Kind.VOICE), dialog=REPORT, step="details")
async def report_details_media(ctx: Context, dialog: Dialog, message: Message) -> str:
    what = _keep_media(dialog, message)
    if message.kind == Kind.IMAGE:
        return f"收到{what}。{ASK_DETAILS}"
    words = message.text.strip()
    if len(words) > service.MAX_DETAILS:
        return DETAILS_TOO_LONG.format(limit=service.MAX_DETAILS)
    dialog.goto("details", details=words)
    return await _next(ctx, dialog)


@router.on(AnyText() & ~AnyCommand(), dialog=REPORT, step="details")
async def report_details(ctx: Context, dialog: Dialog, written: str) -> str:
    if len(written) > service.MAX_DETAILS:
        return DETAILS_TOO_LONG.format(limit=service.MAX_DETAILS)
    dialog.goto("details", details=written)
    return await _next(ctx, dialog)


@router.on(MessageKind(Kind.IMAGE, Kind.VOICE), dialog=REPORT, step="media")
async def report_media(ctx: Context, dialog: Dialog, member: Member, message: Message) -> str:
    if message.kind == Kind.VOICE and typed_text(message) in SKIP_WORDS:
        return await _open(ctx, dialog, member)  # "好了" said, not a voice note
    return MEDIA_KEPT.format(what=_keep_media(dialog, message))


@router.on(AnyText() & ~AnyCommand(), dialog=REPORT, step="media")
async def report_media_done(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    if text not in SKIP_WORDS:
        return MEDIA_OR_DONE
    return await _open(ctx, dialog, member)


YES_WORDS = frozenset({"是", "是的", "对", "对的", "要", "好", "好的", "确认", "上报吧", "报"})
NO_WORDS = frozenset({"不", "不用", "不用了", "不要", "不报", "不是", "否", "错了"})


@router.on(AnyText() & ~AnyCommand(), dialog=REPORT, step="confirm")
async def report_confirm_words(ctx: Context, dialog: Dialog, member: Member, text: str) -> str:
    """是 / 不用 instead of the numbers: answered the same."""
    if text in YES_WORDS:
        return await _open(ctx, dialog, member)
    if text in NO_WORDS:
        dialog.finish()
        return NOT_REPORTED
    raise SkipHandler  # something else: the numbers are asked again, or it is another matter


@router.on(Picked(), dialog=REPORT, step="confirm")
async def report_confirm(ctx: Context, dialog: Dialog, member: Member, picked: str) -> str:
    if picked == "no":
        dialog.finish()
        return NOT_REPORTED
    return await _open(ctx, dialog, member)


async def _open(ctx: Context, dialog: Dialog, member: Member) -> str:
    """Open the case (or join the open one) from what the dialog gathered."""
    session, settings, data = ctx.session, ctx.settings, dialog.data
    dialog.finish()
    branch = await branch_of(session, member)
    if branch is None:
        return NOT_IN_BRANCH
    subject = await session.get(Member, data["subject_id"]) if data.get("subject_id") else None
    if subject is not None and subject.org_id != branch.id:
        subject = None  # moved to another branch meanwhile: reported as written, like a villager
    source = CareSource.SECRETARY if Role(member.role) in LEADERS else CareSource.REPORT
    opened = await service.open_case(session, branch=branch, subject=subject, subject_name=data["subject_name"],
                                     occasion=data["occasion"], details=data.get("details", ""), reporter=member,
                                     source=source, now=ctx.now, settings=settings)
    case = opened.case
    await _attach(session, case, member, data.get("media", []), ctx.now)
    zone = settings.zone
    label = subject_label(case.subject_name, case.member_id)
    visitor = await session.get(Member, case.visitor_id) if case.visitor_id is not None else None
    if opened.joined:
        if case.hidden_from_reporter or visitor is None:
            return JOINED_QUIET
        return JOINED.format(visitor=visitor.name, deadline=service.local_text(case.deadline, zone))
    if visitor is None:
        return OPENED_NO_VISITOR.format(subject=label, occasion=case.occasion)
    deadline = service.local_text(case.deadline, zone)
    if visitor.id == member.id:
        return OPENED_SELF_VISITOR.format(subject=label, occasion=case.occasion, deadline=deadline)
    return OPENED.format(subject=label, occasion=case.occasion, visitor=visitor.name, deadline=deadline)


async def _attach(session: AsyncSession, case: CareCase, member: Member, media: list, now) -> None:
    """The photos and voice messages sent with the report, on the reporter's report of this case."""
    if not media:
        return
    report_id = (await session.execute(
        select(CareReport.id).where(CareReport.case_id == case.id, CareReport.reporter_id == member.id)
        .order_by(CareReport.id.desc()).limit(1))).scalar_one_or_none()
    for kind, media_id, pic_url in media:
        session.add(CareMedia(case_id=case.id, report_id=report_id, kind=kind, media_id=media_id, pic_url=pic_url,
                              added_by=member.id, added_at=now))
    log.info("care case %s: %d media with a report", case.id, len(media))


# ---------------------------------------------------------------- everyday sentences


# A question is no report, whatever else it says ("党员住院了有什么补助", "我住院了书记会来看我吗").
_QUESTION = re.compile(r"[吗么呢嘛吧]|什么|啥|怎|咋|如何|哪|多少|几|是否|能不能|可不可以|有没有|要不要|会不会|"
                       r"补助|补贴|政策|规定|标准|申请|可以|应该|需要|算不算|管不管")
# Said of oneself or one's own family: the member reporting is the one to visit.
_OWN = re.compile(r"(我|俺|咱)(自己|本人)?|(我|俺|咱)?(家|家里|家中|屋里|屋头|屋里头).*|(我|俺|咱).+")
# "走了" of oneself is a goodbye ("我先走了"); of one's family it is a death ("家里老人走了").
_FAMILY = re.compile("家|爸|妈|爹|娘|父|母|老伴|爱人|丈夫|老公|媳妇|妻|儿|女|孙|爷|奶|公|婆|哥|姐|弟|妹|老人")
# One's own family, said without 我: "老伴住院了".
_KIN = re.compile("老伴|爱人|孩子|儿子|闺女|女儿|爸|妈|爸爸|妈妈|爹|娘|老爹|老娘|父亲|母亲|公公|婆婆|爷爷|奶奶|老公|媳妇|丈夫|"
                  "妻子|孙子|孙女|家|家里|家中")
# Words between the person and what happened that say nothing about either.
_FILLER_END = re.compile(r"(昨天|今天|前天|昨晚|今早|今天早上|昨天晚上|刚才|刚刚|突然|又|也|已经|都|被|在|给)+$")
# Words that are no one in particular: "党员住院了" is a question in disguise, not a report.
_NOBODY = frozenset({"党员", "有党员", "村民", "群众", "有人", "人", "别人", "谁", "他", "她", "它", "他们", "她们",
                     "大家", "村里", "我们", "咱们", "俺们", "你", "您", "老人", "有个", "有个人", "一个人"})
MAX_SENTENCE = 20
MAX_SAID_NAME = 8


class Sentence:
    """What an everyday report says: about whom (as said), and the occasions its words name."""

    def __init__(self, said: str, own: bool, occasions: list[str]) -> None:
        self.said, self.own, self.occasions = said, own, occasions


def everyday_report(text: str, settings: CareSettings) -> Sentence | None:
    """A short sentence that clearly is a report: a name (or 我, 家里…) then an occasion's word then 了.
    None for anything else, questions above all."""
    bare = "".join(char for char in text if not unicodedata.category(char).startswith(("P", "Z", "S")))
    if not bare or len(bare) > MAX_SENTENCE or not bare.endswith(("了", "啦")) or _QUESTION.search(bare):
        return None
    # The longest word first wherever two start at the same place ("生病" before "病了" in "生病了").
    words = sorted({(word, occasion.name) for occasion in settings.care_occasions
                    for word in [occasion.name, *occasion.words] if word}, key=lambda pair: (-len(pair[0]), pair))
    found = [bare.find(word) for word, _ in words if word in bare]
    if not found:
        return None
    start = min(found)
    # From the first occasion word on: only occasion words, then the closing 了.
    position, named, said_words = start, [], []
    while position < len(bare) and bare[position:].strip("了啦"):
        word, name = next(((word, name) for word, name in words if bare.startswith(word, position)), (None, None))
        if word is None:
            return None
        said_words.append(word)
        if name not in named:
            named.append(name)
        position += len(word)
    said = _FILLER_END.sub("", bare[:start])
    if not said or len(said) > MAX_SAID_NAME or said in _NOBODY or not all(_is_han(char) for char in said):
        return None
    own = _OWN.fullmatch(said) is not None or _KIN.fullmatch(said) is not None
    if not own and len(said) < 2:
        return None  # "出车祸住院了": no one named
    if own and not _FAMILY.search(said) and all(word.endswith("了") for word in said_words):
        return None
    return Sentence(said, own, named)


def _is_han(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or char == "·"


class EverydayReport(Filter):
    """A bound member's short sentence that clearly reports someone to visit (see everyday_report)."""

    def __call__(self, message, ctx):
        text = typed_text(message)
        if text is None or ctx.member is None:
            return None
        said = everyday_report(text, ctx.config(CareSettings))
        return {"sentence": said} if said is not None else None


@router.on(EverydayReport())
async def report_sentence(ctx: Context, dialog: Dialog, member: Member, sentence: Sentence, written: str) -> str:
    if await branch_of(ctx.session, member) is None:
        return NOT_IN_BRANCH
    return await _from_sentence(ctx, dialog, member, sentence, written)


async def _from_sentence(ctx: Context, dialog: Dialog, member: Member, sentence: Sentence, written: str) -> str:
    """Start the report dialog with what the sentence says; ask only what it leaves open, then confirm."""
    dialog.start(REPORT, "who", details=written[:service.MAX_DETAILS], sentence=True)
    if len(sentence.occasions) == 1:
        dialog.data["occasion"] = sentence.occasions[0]
    if sentence.own:
        dialog.data.update(subject_id=member.id, subject_name=member.name)
        return await _next(ctx, dialog)
    people = await namesakes(ctx.session, member.org_id, sentence.said)
    if not people and len(sentence.said) == 2 and sentence.said[0] in "老小":
        people = await _by_surname(ctx.session, member.org_id, sentence.said[1])
    if len(people) == 1:
        dialog.data.update(subject_id=people[0].id, subject_name=people[0].name)
        return await _next(ctx, dialog)
    if people:
        # Namesakes (or several 王 for 老王): the name with the phone's last digits tells them apart.
        dialog.goto("name", unknown_name=sentence.said)
        example = next((person.phone[-4:] for person in people if person.phone), "1234")
        return f"本支部有 {len(people)} 位党员可能是“{sentence.said}”，请回复全名，同名的加手机尾号，例如：{people[0].name} {example}"
    # Nobody of that name in the branch: ask who it is, the name kept for 回复 3 (a villager).
    dialog.data["unknown_name"] = sentence.said
    return offer(dialog, "who", f"要上报“{literal(sentence.said)}”的情况。{ASK_WHO}", WHO_OPTIONS)


async def _by_surname(session: AsyncSession, branch_id: int, surname: str) -> list[Member]:
    return list((await session.execute(
        select(Member).where(Member.org_id == branch_id, Member.name.startswith(surname, autoescape=True))
        .order_by(Member.id))).scalars())
