"""Baidu AI Cloud's short speech recognition (短语音识别标准版), for a county that prefers a cloud account.

Verified against Baidu's documents:
- token (鉴权认证, https://ai.baidu.com/ai-doc/SPEECH/Pk38y8m7k): POST https://aip.baidubce.com/oauth/2.0/token
  with grant_type=client_credentials, client_id=<API Key>, client_secret=<Secret Key> in the URL →
  {"access_token", "expires_in" (seconds, 30 days by default), ...}, or {"error": "invalid_client",
  "error_description": "unknown client id" | "Client authentication failed"}. A token is reused until shortly
  before it expires: Baidu calls asking for one per request a misuse.
- recognition (https://ai.baidu.com/ai-doc/SPEECH/Jlbxdezuf, JSON upload): POST https://vop.baidu.com/server_api,
  Content-Type application/json, {"format": "pcm", "rate": 16000, "channel": 1, "cuid", "token", "dev_pid": 1537,
  "speech": base64 of the audio, "len": the audio's length in bytes BEFORE base64}. dev_pid 1537 is Mandarin
  (普通话, 输入法模型, with punctuation, the default; 1737 English, 1637 Cantonese, 1837 Sichuanese).
- answer (返回说明, https://ai.baidu.com/ai-doc/SPEECH/pk38lxi60): {"err_no": 0, "err_msg": "success.",
  "corpus_no", "sn", "result": ["北京天气"]}; on error {"err_no", "err_msg", "sn"}.
- error codes (https://cloud.baidu.com/doc/SPEECH/s/lk38lxosv), kept in ERRORS below.
This API takes no hot words per request (custom vocabularies live in Baidu's console), so hotwords are unused.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import aiohttp

from bot.clock import Clock
from bot.speech.recognizer import Heard, RecognitionFailed

TOKEN_URL = "https://aip.baidubce.com/oauth/2.0/token"
RECOGNIZE_URL = "https://vop.baidu.com/server_api"
MANDARIN = 1537

# err_no → what it means (Baidu's 错误码 table, in English for the logs).
ERRORS = {
    3300: "the request's parameters are wrong",
    3301: "the audio is too poor or holds no clear speech",
    3302: "authentication failed: the token is invalid, or the account's concurrency or quota is used up",
    3303: "Baidu's back end is busy",
    3304: "too many requests at once for this account",
    3305: "the account's daily quota is used up",
    3307: "Baidu's back end failed to recognize the audio",
    3308: "the audio is longer than 60 s",
    3309: "Baidu could not convert the audio",
    3310: "the audio is too large",
    3311: "the sample rate is not one Baidu takes",
    3312: "the audio format is not one Baidu takes",
    3313: "Baidu timed out reading the request",
    3314: "the audio is too short",
    3315: "Baidu timed out processing the audio",
    3316: "Baidu could not convert the audio to PCM",
}
# Answers that mean nobody said anything recognizable, which is an answer ("heard nothing"), not a failure.
HEARD_NOTHING = {3301, 3314}
TOKEN_REJECTED = 3302


class BaiduRecognizer:
    name = "baidu"

    def __init__(self, http: aiohttp.ClientSession, api_key: str, secret_key: str, *, timeout: float = 10.0,
                 dev_pid: int = MANDARIN, cuid: str = "zhibu", token_url: str = TOKEN_URL,
                 recognize_url: str = RECOGNIZE_URL, clock: Clock | None = None) -> None:
        self.http = http
        self.api_key = api_key
        self.secret_key = secret_key
        self.timeout = timeout
        self.dev_pid = dev_pid
        # Baidu asks for an identifier of the calling device (60 characters at most) to trace problems; one
        # per service, never a member's id.
        self.cuid = cuid
        self.token_url = token_url
        self.recognize_url = recognize_url
        self.clock = clock or Clock()
        self._token: str | None = None
        self._token_expires: datetime | None = None
        self._token_lock = asyncio.Lock()

    async def recognize(self, pcm: bytes, *, sample_rate: int = 16000, hotwords: Sequence[str] = ()) -> Heard:
        try:
            async with asyncio.timeout(self.timeout):
                fresh = not self._token_valid()
                answer = await self._recognize(pcm, sample_rate, await self._access_token())
                if answer.get("err_no") == TOKEN_REJECTED and not fresh:
                    # A cached token Baidu no longer takes (revoked, keys changed): one more try with a new one.
                    self._token = None
                    answer = await self._recognize(pcm, sample_rate, await self._access_token())
        except TimeoutError:
            raise RecognitionFailed(f"Baidu speech did not answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as error:
            raise RecognitionFailed(f"Baidu speech could not be reached: {error}") from None
        code = answer.get("err_no")
        if code == 0:
            results = answer.get("result")  # one best candidate, as a list
            return Heard(str(results[0]).strip() if isinstance(results, list) and results else "", None)
        if code in HEARD_NOTHING:
            return Heard("", None)
        if code == TOKEN_REJECTED:
            self._token = None
        meaning = ERRORS.get(code, "an error Baidu's table does not list") if isinstance(code, int) else \
            "an answer without err_no"
        raise RecognitionFailed(f"Baidu speech answered error {code} ({meaning}): {answer.get('err_msg', '')} "
                                f"sn={answer.get('sn', '')}")

    async def _recognize(self, pcm: bytes, sample_rate: int, token: str) -> dict:
        request = {
            "format": "pcm",
            "rate": sample_rate,
            "channel": 1,
            "cuid": self.cuid,
            "token": token,
            "dev_pid": self.dev_pid,
            "speech": base64.b64encode(pcm).decode("ascii"),
            "len": len(pcm),
        }
        status, body, answer = await self._post(self.recognize_url, json=request)
        if not isinstance(answer, dict):
            raise RecognitionFailed(f"Baidu speech answered HTTP {status} without JSON: {body[:200]!r}")
        return answer

    async def _access_token(self) -> str:
        async with self._token_lock:
            if self._token_valid():
                return self._token  # type: ignore[return-value]
            # Baidu's documented form: the credentials in the URL of a POST. The URL is never logged here.
            params = {"grant_type": "client_credentials", "client_id": self.api_key,
                      "client_secret": self.secret_key}
            status, body, answer = await self._post(self.token_url, params=params)
            if isinstance(answer, dict) and answer.get("error"):
                raise RecognitionFailed(f"Baidu refused the API Key and Secret Key ({answer['error']}: "
                                        f"{answer.get('error_description', '')}); check ZHIBU_SPEECH_API_KEY and "
                                        "ZHIBU_SPEECH_SECRET_KEY")
            if not isinstance(answer, dict) or not answer.get("access_token"):
                raise RecognitionFailed(f"Baidu's token service answered HTTP {status} without a token: "
                                        f"{body[:200].decode('utf-8', 'replace')}")
            lifetime = float(answer.get("expires_in") or 0) or 30 * 86400.0
            # Renewed a day early (a tenth early for a short-lived one), so no request meets an expired token.
            self._token_expires = self.clock.now() + timedelta(seconds=lifetime - min(86400.0, lifetime / 10))
            self._token = str(answer["access_token"])
            return self._token

    async def _post(self, url: str, **request) -> tuple[int, bytes, object]:
        """POST; the HTTP status, the body, and the body read as JSON (None when it is not JSON)."""
        async with self.http.post(url, **request) as response:
            body = await response.read()
            status = response.status
        try:
            return status, body, json.loads(body)
        except ValueError:
            return status, body, None

    def _token_valid(self) -> bool:
        return self._token is not None and self._token_expires is not None and self.clock.now() < self._token_expires
