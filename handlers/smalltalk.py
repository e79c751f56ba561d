"""Greetings, thanks and nods: what people send first and most, answered like a person would.

A greeting (你好, 在吗) gets a short greeting and the two or three things the person can do right now,
pending things first (a meeting open for check-in, a notice to answer, leave requests to decide). Thanks
get a short 不客气; a nod (好的, 嗯, 👍, a sticker) gets nothing, as a nod would. None of them is taken for a
question, so none is offered to the branch secretary: they are handled before Q&A's text fallback.
"""

from __future__ import annotations

import re
import unicodedata

from bot.dispatch import WHAT_IS_WAITING, Context, Filter, Router, typed_text
from bot.text import normalize_input
from storage.models import BRANCH_LEADERS, STAFF_ROLES, Member, Role

router = Router("smalltalk")

GREETINGS = frozenset({
    "你好", "您好", "你好啊", "您好啊", "你好呀", "您好呀", "在吗", "在么", "在不在", "在嘛", "有人吗", "有人在吗",
    "早", "早上好", "早安", "上午好", "中午好", "下午好", "晚上好", "哈喽", "哈罗", "嗨", "hello", "hi", "喂",
    "书记好", "大家好", "小助手", "支部助手", "助手",
})
THANKS = frozenset({"谢谢", "谢谢你", "谢谢您", "多谢", "感谢", "谢了", "谢啦", "辛苦了", "辛苦", "麻烦了",
                    "谢谢书记", "感谢感谢", "谢谢谢谢", "多谢了", "thanks", "thank you"})
NODS = frozenset({"好", "好的", "好滴", "好嘞", "好吧", "嗯", "嗯嗯", "恩", "恩恩", "哦", "噢", "哦哦", "喔",
                  "知道了", "晓得了", "明白", "明白了", "了解", "行", "行的", "可以", "ok", "okay", "中", "要得"})
# What WeChat puts in a text message for a sticker it cannot pass on, and its built-in emoticons
# ("[强]", "[抱拳]", "/::)"), which arrive as text.
STICKER_TEXTS = frozenset(normalize_input(text) for text in ("【收到不支持的消息类型，暂无法显示】",
                                                          "[收到了一个表情，请在手机上查看]"))
_EMOTICONS = re.compile(r"(\[[\u4e00-\u9fffA-Za-z]{1,4}\]|/:[^\s/]{1,8})+")
_SEPARATORS = re.compile(r"[\s,，、.。!！~～…]+")

HELLO = "{name}您好！您现在可以：\n{options}"
YOU_ARE_WELCOME = "不客气！有事随时发消息。"
NEXT_MEETING_HINT = "回复 开会时间 —— 看最近的会议"


def _emoji_only(text: str) -> bool:
    """Only pictographs, their joiners and skin tones: 👍, 🙏🙏🙏, ❤️."""
    return all(unicodedata.category(char) in ("So", "Sk", "Mn", "Cf") or char in "\ufe0f\u200d" for char in text)


def kind_of(text: str) -> str | None:
    """"greeting", "thanks", "nod", or None for anything else."""
    if text in STICKER_TEXTS or _EMOTICONS.fullmatch(text) or _emoji_only(text):
        return "nod"
    words = _segment(text.lower())
    if not words:
        return None
    if all(word in GREETINGS for word in words):
        return "greeting"
    if all(word in THANKS or word in NODS for word in words):
        return "thanks" if any(word in THANKS for word in words) else "nod"
    return None


_VOCABULARY = GREETINGS | THANKS | NODS
_LONGEST = max(len(word) for word in _VOCABULARY)


def _segment(text: str) -> list[str] | None:
    """The text as a run of small-talk words ("好的谢谢" → 好的, 谢谢), or None when it is not one.
    Only short texts qualify: anything longer says something of its own."""
    if len(text) > 20:
        return None
    words: list[str] = []
    for piece in _SEPARATORS.split(text):
        start = 0
        while start < len(piece):
            end = next((end for end in range(min(len(piece), start + _LONGEST), start, -1)
                        if piece[start:end] in _VOCABULARY), None)
            if end is None:
                return None
            words.append(piece[start:end])
            start = end
    return words


class SmallTalk(Filter):
    def __call__(self, message, ctx):
        text = typed_text(message)
        kind = kind_of(text) if text else None
        return {"kind": kind} if kind else None


async def _pending(ctx: Context, member: Member) -> list[str]:
    """What is waiting for this member now, as the features that hold it tell (a meeting open for check-in,
    leave requests to decide, a notice to answer)."""
    return [line for said in await ctx.announce(WHAT_IS_WAITING, member=member) for line in said.splitlines()]


def _usual(member: Member | None) -> list[str]:
    """The everyday things this person can do, by role."""
    if member is None:
        return ["回复 绑定 —— 绑定党员身份（绑定码向支部书记要）", "直接问党务问题，比如：党费怎么交"]
    role = Role(member.role)
    if role in BRANCH_LEADERS:
        return ["回复 开会 —— 召集会议", "回复 发通知 —— 给党员发通知", "回复 帮助 —— 看全部功能"]
    if role in STAFF_ROLES:
        return ["回复 发通知 —— 给党员发通知", "直接问党务问题，比如：党费怎么交", "回复 帮助 —— 看全部功能"]
    return [NEXT_MEETING_HINT, "直接问党务问题，比如：党费怎么交", "回复 我的 —— 看我的信息"]


@router.on(SmallTalk())
async def small_talk(ctx: Context, member: Member | None, kind: str) -> str | None:
    if kind == "nod":
        return None
    if kind == "thanks":
        return YOU_ARE_WELCOME
    pending = await _pending(ctx, member) if member is not None else []
    options = (pending + [line for line in _usual(member) if line not in pending])[:3]
    name = f"{member.name}，" if member is not None else ""
    return HELLO.format(name=name, options="\n".join(f"· {line}" for line in options))
