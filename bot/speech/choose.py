"""The recognizer the settings name (ZHIBU_SPEECH_ENGINE), or None when voice is not to be recognized."""

from __future__ import annotations

import aiohttp

from bot.clock import Clock
from bot.config import Settings
from bot.speech.cloud import MANDARIN, RECOGNIZE_URL, BaiduRecognizer
from bot.speech.funasr import FunAsrRecognizer
from bot.speech.openai_compatible import OpenAiCompatibleRecognizer
from bot.speech.recognizer import Recognizer


def recognizer_from_settings(settings: Settings, http: aiohttp.ClientSession,
                             clock: Clock | None = None) -> Recognizer | None:
    """The configured engine's client, sharing http (the service's session). Settings has already refused an
    engine without its address or keys, so this only builds."""
    engine, url = settings.speech_engine, settings.speech_url.strip()
    if engine == "funasr":
        return FunAsrRecognizer(http, url, timeout=settings.speech_timeout, verify_tls=settings.speech_verify_tls)
    if engine == "openai":
        return OpenAiCompatibleRecognizer(http, url, path=settings.speech_path, model=settings.speech_model,
                                          api_key=settings.speech_api_key, timeout=settings.speech_timeout)
    if engine == "baidu":
        return BaiduRecognizer(http, settings.speech_api_key, settings.speech_secret_key,
                               timeout=settings.speech_timeout,
                               dev_pid=int(settings.speech_model) if settings.speech_model else MANDARIN,
                               recognize_url=url or RECOGNIZE_URL, clock=clock)
    return None
