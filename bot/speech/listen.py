"""Hearing a voice message: its audio fetched from WeChat, made PCM, and given to the configured recognizer.

The dispatcher asks before the message's transaction opens (recognition takes a second or more, and a
transaction holds the database). What was heard becomes the message's text, and the message then goes
through the dispatcher exactly as if it had been typed: commands, dialogs, questions. What could not be
heard is said so, never guessed at and never met with silence (the dispatcher's replies for it are here).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from bot.messages import Message
from bot.speech.audio import ConversionFailed, to_pcm
from bot.speech.recognizer import RecognitionFailed, Recognizer

log = logging.getLogger(__name__)

# message.extra["voice"] after listening, when no text came of it.
NOT_HEARD = "not_heard"  # the engine heard nothing, or too unsure a guess
CANNOT_HEAR = "cannot_hear"  # no engine, or the audio or the engine failed

LISTENING = "正在听，请稍等…"
NOT_HEARD_REPLY = "没听清，请再说一遍，或者打字。"
CANNOT_HEAR_REPLY = "语音暂时听不懂，请打字或点下面的菜单。"
CANNOT_HEAR_AGAIN = "语音暂时听不懂，请打字。"
_CHINESE = re.compile(r"[\u4e00-\u9fff]")
# Engines take this many hot words at most: past that, more words only dilute the bias.
MAX_HOTWORDS = 100


def menu_hint(menu: dict) -> str:
    """The account's menu as lines a member can follow ("签到：点下面的“签到”"), for the reply to a voice
    message that could not be heard."""
    lines = []
    for button in menu.get("button", []):
        subs = button.get("sub_button") or []
        if subs:
            names = "、".join(sub["name"] for sub in subs if sub.get("name"))
            lines.append(f"点“{button['name']}”：{names}")
        elif button.get("name"):
            lines.append(f"点“{button['name']}”")
    return "\n".join(lines)


def dictionary_terms(path: Path) -> list[str]:
    """The domain terms of a jieba user dictionary (content/dictionary.txt): the first word of each line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]


def hotwords_from(words: Iterable[str]) -> tuple[str, ...]:
    """Distinct Chinese words of two characters or more, in the order given, at most MAX_HOTWORDS."""
    kept = dict.fromkeys(word.strip() for word in words if len(word.strip()) >= 2 and _CHINESE.search(word))
    return tuple(kept)[:MAX_HOTWORDS]


class Listener:
    def __init__(self, *, recognizer: Recognizer | None, fetch: Callable[[str], Awaitable[bytes]],
                 hotwords: Sequence[str] = (), min_confidence: float = 0.5) -> None:
        self.recognizer = recognizer
        self._fetch = fetch
        self.hotwords = tuple(hotwords)
        self.min_confidence = min_confidence

    @property
    def can_hear(self) -> bool:
        return self.recognizer is not None

    async def hear(self, message: Message) -> Message:
        """The voice message with what was said as its text, or with extra["voice"] saying why there is none."""
        if self.recognizer is None:
            return _without_text(message, CANNOT_HEAR)
        started = time.monotonic()
        try:
            audio = await self._fetch(message.media_id)
            pcm = await to_pcm(audio, message.extra.get("format", "amr"))
            heard = await self.recognizer.recognize(pcm, hotwords=self.hotwords)
        except (ConversionFailed, RecognitionFailed) as error:
            log.warning("voice message %s not recognized: %s", message.dedup_key, error)
            return _without_text(message, CANNOT_HEAR)
        except Exception as error:  # fetching: WeChat's errors, the network
            log.warning("voice message %s: its audio could not be fetched: %s", message.dedup_key, error)
            return _without_text(message, CANNOT_HEAR)
        seconds = time.monotonic() - started
        if not heard.text or (heard.confidence is not None and heard.confidence < self.min_confidence):
            log.info("voice message %s: %s heard nothing sure enough (%.1f s, confidence %s)",
                     message.dedup_key, self.recognizer.name, seconds, heard.confidence)
            return _without_text(message, NOT_HEARD)
        log.info("voice message %s heard by %s in %.1f s (%d characters)", message.dedup_key,
                 self.recognizer.name, seconds, len(heard.text))
        return replace(message, text=heard.text, extra={**message.extra, "voice": "heard"})


def _without_text(message: Message, why: str) -> Message:
    return replace(message, text="", extra={**message.extra, "voice": why})
