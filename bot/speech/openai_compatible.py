"""Any server speaking OpenAI's transcription API: POST {base}{path} with a multipart form, {"text": ...} back.

The form, from OpenAI's API reference (createTranscription): file (the audio as a file with its extension;
wav is one of the formats), model, language (ISO-639-1, "zh"), prompt, response_format ("json" answers
{"text": "..."}), optionally `Authorization: Bearer <key>`. The prompt is the documented way to bias
whisper-style models towards words they would otherwise mishear, so the hot words go there.

Servers offering it: OpenAI itself; vLLM (`vllm serve <whisper model>`, /v1/audio/transcriptions); whisper.cpp's
whisper-server, whose endpoint is /inference unless started with `--inference-path /v1/audio/transcriptions`
(examples/server/server.cpp reads the same file, language, prompt and response_format fields, ignores model,
and answers {"text": ...} or {"error": "..."}). So the path is configurable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import aiohttp

from bot.speech.recognizer import Heard, RecognitionFailed, wav_bytes

DEFAULT_PATH = "/v1/audio/transcriptions"


class OpenAiCompatibleRecognizer:
    name = "openai"

    def __init__(self, http: aiohttp.ClientSession, base_url: str, *, path: str = DEFAULT_PATH, model: str = "",
                 api_key: str = "", language: str = "zh", timeout: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"a transcription server's address starts with http:// or https://, not {base_url!r}")
        self.http = http
        self.url = base_url.rstrip("/") + "/" + path.lstrip("/")
        self.model = model
        self.api_key = api_key
        # whisper.cpp's server assumes English unless told otherwise; sending the language also spares
        # whisper's detection, which mistakes a short phrase for another language.
        self.language = language
        self.timeout = timeout

    async def recognize(self, pcm: bytes, *, sample_rate: int = 16000, hotwords: Sequence[str] = ()) -> Heard:
        form = aiohttp.FormData()
        form.add_field("file", wav_bytes(pcm, sample_rate), filename="voice.wav", content_type="audio/wav")
        # OpenAI requires a model; whisper.cpp ignores it and vLLM uses the one it serves when none is named.
        if self.model:
            form.add_field("model", self.model)
        if self.language:
            form.add_field("language", self.language)
        if hotwords:
            # Chinese punctuation between the words: the prompt is read as preceding text, and text in
            # simplified Chinese also keeps whisper from answering in traditional characters.
            form.add_field("prompt", "，".join(hotwords))
        form.add_field("response_format", "json")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            async with asyncio.timeout(self.timeout):
                async with self.http.post(self.url, data=form, headers=headers) as response:
                    body = await response.read()
                    status = response.status
        except TimeoutError:
            raise RecognitionFailed(f"transcription server at {self.url} did not answer within "
                                    f"{self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as error:
            raise RecognitionFailed(f"transcription server at {self.url} could not be reached: {error}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200:
            raise RecognitionFailed(f"transcription server at {self.url} answered HTTP {status}: "
                                    f"{_error_text(answer, body)}")
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise RecognitionFailed(f"transcription server at {self.url} answered without a text: {body[:200]!r}")
        return Heard(answer["text"].strip(), None)


def _error_text(answer: object, body: bytes) -> str:
    """The reason in an error body: OpenAI's and vLLM's {"error": {"message": ...}}, whisper.cpp's
    {"error": "..."}, or the body's start."""
    if isinstance(answer, dict):
        error = answer.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if answer.get("message"):  # vLLM's older ErrorResponse: {"object": "error", "message": ...}
            return str(answer["message"])
    return body[:200].decode("utf-8", "replace")
