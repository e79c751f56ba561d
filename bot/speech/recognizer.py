"""What every speech engine offers: PCM in, what it heard out.

The audio is always raw signed 16-bit little-endian mono PCM (bot/speech/audio.py makes it from WeChat's AMR),
so each engine's client only wraps it the way its engine wants: binary WebSocket frames, a WAV file, base64.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Heard:
    text: str  # what the engine heard, as it returned it (stripped); "" when it heard nothing
    confidence: float | None  # 0..1 when the engine reports one, else None


class Recognizer(Protocol):
    name: str

    async def recognize(self, pcm: bytes, *, sample_rate: int = 16000, hotwords: Sequence[str] = ()) -> Heard:
        """What the engine heard in pcm (s16le mono at sample_rate). hotwords: words to bias it towards
        (commands, names), where the engine takes them. RecognitionFailed when the engine could not answer."""
        ...


class RecognitionFailed(Exception):
    """The engine could not be reached or answered an error; the message says which engine and why."""


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """pcm (s16le mono) as a RIFF/WAV file, for engines that take a file rather than raw samples."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(sample_rate)
        file.writeframes(pcm)
    return buffer.getvalue()
