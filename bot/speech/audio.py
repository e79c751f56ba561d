"""A voice message's audio as the recognizers take it: 16 kHz mono signed 16-bit PCM.

WeChat delivers voice as AMR-NB (Format "amr") or Speex ("speex"). AMR goes through SoX, whose AMR support is
the 3GPP reference decoder (opencore-amr, Debian's libsox-fmt-base): phones encode silence as comfort-noise
frames, which FFmpeg's own AMR decoder does not implement and reports as corrupt. Everything else goes through
FFmpeg. Both are Debian packages the deployment installs (README, 语音); nothing is downloaded at run time.
The tools run as child processes with the audio on stdin and the PCM on stdout, so no file is written.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# WeChat's voice messages last at most 60 s; a minute of PCM is under 2 MB. Longer output is cut there.
MAX_SECONDS = 60
# A tool that takes longer than this on a minute of speech is stuck.
TOOL_TIMEOUT = 20.0


class ConversionFailed(Exception):
    """The audio could not be turned into PCM: the tool is missing, or the audio is not what it claims."""


def _command(audio_format: str) -> list[str]:
    raw = ["-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw", "-"]
    if audio_format.lower() in ("amr", "amr-nb", "amrnb"):
        return ["sox", "-t", "amr-nb", "-", *raw]
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-ac", "1", "-ar", str(SAMPLE_RATE),
            "-f", "s16le", "-t", str(MAX_SECONDS), "pipe:1"]


def tools_missing() -> list[str]:
    """The converters this machine lacks (checked at start-up, so the operator hears of it at once)."""
    return [tool for tool in ("sox", "ffmpeg") if shutil.which(tool) is None]


async def to_pcm(audio: bytes, audio_format: str) -> bytes:
    """The audio as 16 kHz mono s16le PCM; ConversionFailed when it cannot be read."""
    command = _command(audio_format)
    if shutil.which(command[0]) is None:
        raise ConversionFailed(f"{command[0]} is not installed (apt-get install sox libsox-fmt-base ffmpeg)")
    process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.PIPE,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        pcm, errors = await asyncio.wait_for(process.communicate(audio), TOOL_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise ConversionFailed(f"{command[0]} took longer than {TOOL_TIMEOUT:.0f} s") from None
    if process.returncode != 0 or not pcm:
        detail = errors.decode("utf-8", "replace").strip().splitlines()
        raise ConversionFailed(f"{command[0]} could not read the {audio_format or 'unnamed'} audio"
                               + (f": {detail[-1]}" if detail else ""))
    return pcm[:MAX_SECONDS * SAMPLE_RATE * 2]
