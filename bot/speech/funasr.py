"""FunASR's runtime WebSocket server (funasr-runtime-sdk-cpu's funasr-wss-server), in its offline mode.

The protocol, from FunASR's runtime/docs/websocket_protocol.md ("Offline File Transcription") and what the
server does in runtime/websocket/bin/websocket-server.cpp:
1. a JSON text frame: {"mode": "offline", "wav_name", "wav_format": "pcm", "audio_fs", "is_speaking": true,
   "hotwords": "<a JSON object as a string: {word: weight}>", "itn": true}. The C++ server reads wav_name,
   wav_format, audio_fs, itn and hotwords; it decodes nothing until this frame has come.
2. the PCM itself as binary frames (the server appends them all);
3. {"is_speaking": false}: the server decodes everything it got and sends ONE JSON text frame:
   {"mode": "offline", "wav_name", "text", "is_final": false, ...} (the C++ server says is_final false even
   here, so the first frame with "text" is the answer), and keeps the connection open for the next file.
"chunk_size" and "chunk_interval" matter only to streaming and to FunASR's Python demo server
(runtime/python/websocket/funasr_wss_server.py), which drops audio until they are set; they are sent with
funasr_wss_client.py's defaults so that server answers too. That demo server cuts audio at pauses and sends a
result per piece, of which this client keeps the first: the county runs the C++ server (the docker image).

TLS: the server starts with TLS on by default, using a self-signed certificate shipped in the image, and
run_server.sh's `--certfile 0` turns it off. On one machine or a county LAN the advice is plain ws:// with
`--certfile 0`; wss:// is verified unless verify_tls is False (ZHIBU_SPEECH_VERIFY_TLS=false), which is what the
image's own certificate needs. Verifying stays the default so a wrong address never silently sends members'
voices to whoever answers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence

import aiohttp

from bot.speech.recognizer import Heard, RecognitionFailed

# Hot-word weight FunASR's documents use in their examples ("阿里巴巴 20"; weights run 1 to 100).
DEFAULT_HOTWORD_WEIGHT = 20
# Audio goes in 600 ms frames, as funasr_wss_client.py sends an offline file (60 * 10 / 10 ms).
FRAME_SECONDS = 0.6
# SenseVoiceSmall models prefix their text with tags such as "<|zh|><|NEUTRAL|><|Speech|>" (the SDK guide
# says so); they are not words anyone said.
_SENSEVOICE_TAG = re.compile(r"<\|[^|<>]*\|>")


class FunAsrRecognizer:
    name = "funasr"

    def __init__(self, http: aiohttp.ClientSession, url: str, *, timeout: float = 10.0, verify_tls: bool = True,
                 hotword_weight: int = DEFAULT_HOTWORD_WEIGHT) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"a FunASR server's address starts with ws:// or wss://, not {url!r}")
        self.http = http
        self.url = url
        self.timeout = timeout
        self.verify_tls = verify_tls
        self.hotword_weight = hotword_weight

    async def recognize(self, pcm: bytes, *, sample_rate: int = 16000, hotwords: Sequence[str] = ()) -> Heard:
        start = {
            "mode": "offline",
            "wav_name": "voice",
            "wav_format": "pcm",
            "audio_fs": sample_rate,
            "is_speaking": True,
            # A string holding a JSON object: the C++ server parses it as FST hot words with weights, and also
            # hands the words to a contextual (nn hot-word) model. "" means none, as the reference client sends.
            "hotwords": json.dumps({word: self.hotword_weight for word in hotwords}, ensure_ascii=False)
            if hotwords else "",
            "itn": True,
            "chunk_size": [5, 10, 5],
            "chunk_interval": 10,
        }
        frame = max(2, int(sample_rate * FRAME_SECONDS) * 2)
        try:
            async with asyncio.timeout(self.timeout):
                async with self.http.ws_connect(self.url, ssl=self.verify_tls) as ws:
                    await ws.send_str(json.dumps(start, ensure_ascii=False))
                    for offset in range(0, len(pcm), frame):
                        await ws.send_bytes(pcm[offset:offset + frame])
                    await ws.send_str(json.dumps({"is_speaking": False}))
                    return await self._answer(ws)
        except TimeoutError:
            raise RecognitionFailed(f"FunASR at {self.url} did not answer within {self.timeout:g} s") from None
        except aiohttp.ClientConnectorCertificateError as error:
            raise RecognitionFailed(
                f"FunASR at {self.url}: its TLS certificate is not trusted ({error.certificate_error}); the image's "
                "own certificate is self-signed: use ws:// with run_server.sh --certfile 0, or set "
                "ZHIBU_SPEECH_VERIFY_TLS=false") from None
        except aiohttp.WSServerHandshakeError as error:
            raise RecognitionFailed(f"FunASR at {self.url} refused the WebSocket connection "
                                    f"(HTTP {error.status}); is that the funasr-wss-server port?") from None
        except (aiohttp.ClientError, OSError) as error:
            raise RecognitionFailed(f"FunASR at {self.url} could not be reached: {error}") from None

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse) -> Heard:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                try:
                    result = json.loads(message.data)
                except ValueError:
                    raise RecognitionFailed(f"FunASR at {self.url} answered something that is not JSON: "
                                            f"{message.data[:200]!r}") from None
                if isinstance(result, dict) and isinstance(result.get("text"), str):
                    return Heard(_SENSEVOICE_TAG.sub("", result["text"]).strip(), None)
                # Anything else (an acknowledgement without text) is not the result yet.
            elif message.type == aiohttp.WSMsgType.ERROR:
                raise RecognitionFailed(f"FunASR at {self.url}: the connection failed: {ws.exception()}")
        raise RecognitionFailed(f"FunASR at {self.url} closed the connection without a result "
                                f"(close code {ws.close_code})")
