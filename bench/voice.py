"""What understanding a voice message itself adds to a reply: fetching the audio from WeChat, converting AMR to
PCM, and the engine's own time, against the same message typed, in one run.

The service runs in this process with the emulator (the fake WeChat) and a fake OpenAI-compatible engine that
answers after a fixed delay, so the table separates what zhibu adds from what the engine takes. The voice is
real: espeak-ng's Mandarin saying 我的, encoded as AMR-NB by SoX (Debian packages espeak-ng, sox, ffmpeg).

    python bench/voice.py [--messages 40] [--delays 0,0.3,1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

from bot.app import build_app  # noqa: E402
from bot.clock import Clock  # noqa: E402
from bot.config import DemoDefaults, Settings  # noqa: E402
from bot.speech.audio import to_pcm  # noqa: E402
from bot.wechat.emulator import Emulator  # noqa: E402
from storage.db import create_engine, session_factory, upgrade_schema_async  # noqa: E402
from storage.members import MemberFields, upsert_member  # noqa: E402
from storage.models import WeChatIdentity  # noqa: E402


def spoken(text: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        wav, amr = Path(folder) / "said.wav", Path(folder) / "said.amr"
        subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(wav), text], check=True, capture_output=True)
        subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-t", "amr-nb", "-C", "7", str(amr)],
                       check=True, capture_output=True)
        return amr.read_bytes()


def engine_app(delay: float) -> web.Application:
    async def transcribe(request: web.Request) -> web.Response:
        await request.post()
        await asyncio.sleep(delay)
        return web.json_response({"text": "我的"})

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/v1/audio/transcriptions", transcribe)
    return app


async def seed(url: str, members: int) -> None:
    await upgrade_schema_async(url)
    engine = create_engine(url)
    async with session_factory(engine)() as session, session.begin():
        now = Clock().now()
        for index in range(members):
            member, _ = await upsert_member(session, MemberFields(name=f"党员{index:03d}",
                                                                  org_path="基准县委/基准镇党委/基准村党支部"), now=now)
            session.add(WeChatIdentity(openid=f"voice-{index}", member_id=member.id, first_seen_at=now, bound_at=now))
    await engine.dispose()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


async def run(delay: float, messages: int, audio: bytes, folder: Path) -> dict:
    url = f"sqlite+aiosqlite:///{folder}/voice-{delay}.db"
    await seed(url, messages)
    engine = TestServer(engine_app(delay))
    await engine.start_server()
    emulator = Emulator(app_id=DemoDefaults.app_id, app_secret=DemoDefaults.app_secret, token=DemoDefaults.token,
                        reply_timeout=30)
    api = TestServer(emulator.web_app())
    await api.start_server()
    settings = Settings(_env_file=None, database_url=url, data_dir=folder / f"data-{delay}",
                        wechat_app_id=DemoDefaults.app_id, wechat_app_secret=DemoDefaults.app_secret,
                        wechat_token=DemoDefaults.token, wechat_api_base=str(api.make_url("")).rstrip("/"),
                        outbox_enabled=False, reply_budget=20, speech_engine="openai",
                        speech_url=str(engine.make_url("")).rstrip("/"))
    server = TestServer(build_app(settings, env_file=None))
    await server.start_server()
    emulator.webhook_url = str(server.make_url("/wechat"))
    typed, voiced = [], []
    try:
        for index in range(messages):
            openid = f"voice-{index}"
            started = time.perf_counter()
            reply = (await emulator.text(openid, "我的")).reply
            typed.append(time.perf_counter() - started)
            started = time.perf_counter()
            heard = (await emulator.voice_audio(openid, audio)).reply
            voiced.append(time.perf_counter() - started)
            assert reply and heard and reply.startswith("姓名：") and heard.startswith("姓名："), (reply, heard)
    finally:
        await server.close()
        await api.close()
        await engine.close()
        await emulator.close()
    return {"typed": typed, "voiced": voiced}


async def main(messages: int, delays: list[float]) -> None:
    logging.basicConfig(level=logging.ERROR)
    audio = spoken("我的")
    convert = []
    for _ in range(20):
        started = time.perf_counter()
        await to_pcm(audio, "amr")
        convert.append(time.perf_counter() - started)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for delay in delays:
            rows.append((delay, await run(delay, messages, audio, Path(folder))))
    print(f"\nA voice message against the same message typed, {messages} of each per engine delay "
          f"(AMR of {len(audio)} bytes; the reply is 我的)\n")
    print(f"Converting the AMR to 16 kHz PCM alone (SoX): p50 {percentile(convert, 0.5):.1f} ms, "
          f"p95 {percentile(convert, 0.95):.1f} ms\n")
    print("| engine delay | typed p50 / p95 ms | voice p50 / p95 ms | added by zhibu p50 (voice − typed − delay) |")
    print("|---|---|---|---|")
    for delay, result in rows:
        added = statistics.median(result["voiced"]) - statistics.median(result["typed"]) - delay
        print(f"| {delay * 1000:.0f} ms | {percentile(result['typed'], 0.5):.1f} / {percentile(result['typed'], 0.95):.1f}"
              f" | {percentile(result['voiced'], 0.5):.1f} / {percentile(result['voiced'], 0.95):.1f}"
              f" | {added * 1000:.1f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--delays", default="0,0.3,1.0", help="the fake engine's delays in seconds, comma-separated")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, [float(value) for value in arguments.delays.split(",")]))
