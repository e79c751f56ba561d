"""Local servers that speak the speech engines' protocols exactly (FunASR's WebSocket server, the
OpenAI-compatible transcriptions API, Baidu's short speech API), for the clients' tests and the voice flow's."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

API_KEY, SECRET_KEY = "Va5yQRHl-test-key", "0rDSjzQ2-test-secret"


class FakeFunAsr:
    """funasr-wss-server (funasr-runtime-sdk-cpu) in offline mode.

    Shapes from github.com/modelscope/FunASR: runtime/docs/websocket_protocol.md ("Offline File Transcription")
    and runtime/websocket/bin/websocket-server.cpp: the first text frame carries mode, wav_name, wav_format,
    audio_fs, is_speaking true, hotwords (a JSON object as a string), itn; binary frames carry the audio; the
    text frame {"is_speaking": false} makes the server decode and send one
    {"text", "mode": "offline", "is_final": false, "wav_name"} (is_final is false even then), after which it
    keeps the connection open.
    """

    def __init__(self, text: str = "签到", *, answer: bool = True) -> None:
        self.text = text
        self.answer = answer
        self.starts: list[dict] = []
        self.ends: list[dict] = []
        self.audio: list[bytes] = []
        self.frames: list[int] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        audio = bytearray()
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                if not self.starts:
                    continue  # the server ignores audio before the first JSON frame
                audio += message.data
                self.frames.append(len(message.data))
            elif message.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                if not self.starts:
                    self.starts.append(frame)
                    continue
                self.ends.append(frame)
                if frame.get("is_speaking") is False:
                    break
        self.audio.append(bytes(audio))
        if not self.answer:
            await self.release.wait()  # a server that hangs
            return ws
        await ws.send_str(json.dumps({"text": self.text, "mode": "offline", "is_final": False,
                                      "wav_name": self.starts[-1].get("wav_name", "wav-default-id")},
                                     ensure_ascii=False))
        async for _ in ws:  # open until the client closes, as the real server is
            pass
        return ws


class FakeTranscriptions:
    """POST /v1/audio/transcriptions as OpenAI's API reference (createTranscription) and vLLM define it, and as
    whisper.cpp's examples/server/server.cpp reads it: a multipart form with file, model, language, prompt,
    response_format; response_format=json answers {"text": "..."}; errors are {"error": {"message": ...}}
    (OpenAI, vLLM) or {"error": "..."} (whisper.cpp)."""

    def __init__(self, text: str = "签到", *, hang: bool = False, status: int = 200) -> None:
        self.text = text
        self.hang = hang
        self.status = status
        self.requests: list[dict] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        self.requests.append({
            "authorization": request.headers.get("Authorization"),
            "content_type": request.content_type,
            "filename": upload.filename,
            "file_type": upload.content_type,
            "wav": upload.file.read(),
            **{name: form.get(name) for name in ("model", "language", "prompt", "response_format")},
        })
        if self.hang:
            await self.release.wait()
        if self.status != 200:
            return web.json_response({"error": {"message": "The model `whisper-9` does not exist.",
                                                "type": "invalid_request_error"}}, status=self.status)
        return web.json_response({"text": self.text})


class FakeBaidu:
    """Baidu AI Cloud's token service and 短语音识别标准版.

    Token (https://ai.baidu.com/ai-doc/SPEECH/Pk38y8m7k): POST /oauth/2.0/token?grant_type=client_credentials
    &client_id=&client_secret= → {"access_token", "expires_in": 2592000, ...}; wrong keys →
    {"error": "invalid_client", "error_description": "unknown client id"}.
    Recognition (https://ai.baidu.com/ai-doc/SPEECH/Jlbxdezuf): POST /server_api, JSON {format, rate, channel,
    cuid, token, dev_pid, speech (base64), len (bytes before base64)} → {"err_no": 0, "err_msg": "success.",
    "corpus_no", "sn", "result": [...]} (https://ai.baidu.com/ai-doc/SPEECH/pk38lxi60); errors
    {"err_no", "err_msg", "sn"} with the codes of https://cloud.baidu.com/doc/SPEECH/s/lk38lxosv.
    """

    def __init__(self) -> None:
        self.tokens_issued: list[str] = []
        self.requests: list[dict] = []
        self.answers: list[dict] = []  # what the next recognitions answer, in order; then success
        self.text = "签到"
        self.hang = False
        self.release = asyncio.Event()

    async def token(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("grant_type") != "client_credentials" or query.get("client_id") != API_KEY:
            return web.json_response({"error": "invalid_client", "error_description": "unknown client id"},
                                     status=401)
        if query.get("client_secret") != SECRET_KEY:
            return web.json_response({"error": "invalid_client",
                                      "error_description": "Client authentication failed"}, status=401)
        token = f"24.{len(self.tokens_issued)}.2592000.1485516651.282335-8574074"
        self.tokens_issued.append(token)
        return web.json_response({"refresh_token": "25.refresh", "expires_in": 2592000, "scope": "public",
                                  "session_key": "9mzd", "access_token": token, "session_secret": "dfac"})

    async def server_api(self, request: web.Request) -> web.Response:
        sn = "481D633F-73BA-726F-49EF-8659ACCC2F3D"
        body = await request.json()
        self.requests.append({"content_type": request.content_type, **body})
        if self.hang:
            await self.release.wait()
        if body.get("token") not in self.tokens_issued:
            return web.json_response({"err_no": 3302, "err_msg": "authentication failed.", "sn": sn})
        if self.answers:
            return web.json_response({**self.answers.pop(0), "sn": sn})
        return web.json_response({"err_no": 0, "err_msg": "success.", "corpus_no": "15984125203285346378",
                                  "sn": sn, "result": [self.text]})
