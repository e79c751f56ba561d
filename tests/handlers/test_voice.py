"""Voice as WeChat sends it in 2026: the audio as temporary media, an empty Recognition. The service fetches
the audio, converts it and hands it to the configured engine, then handles what was heard exactly as typed
text (签到, 请假, a policy question); with no engine, or an engine that fails or hears nothing, the member is
told so, with the menu, never met with silence.

The audio is real: Chinese speech from espeak-ng, encoded as AMR-NB (what WeChat delivers) by SoX. The engines
are local fakes speaking each protocol exactly (tests/speech_fakes.py); each checks that the audio it received
is the speech, 16 kHz mono PCM of the right length, not silence or noise."""

from __future__ import annotations

import array
import asyncio
import base64
import functools
import io
import json
import math
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot.wechat.chat import parse_command
from bot.speech.recognizer import Heard
from bot.speech.listen import CANNOT_HEAR_AGAIN, CANNOT_HEAR_REPLY, LISTENING, NOT_HEARD_REPLY
from harness import hongqi_branch
from speech_fakes import API_KEY, SECRET_KEY, FakeBaidu, FakeFunAsr, FakeTranscriptions
from storage.models import InboundMessage
from test_meetings import at, call

TOOLS = ("espeak-ng", "sox", "ffmpeg")
pytestmark = pytest.mark.skipif(any(shutil.which(tool) is None for tool in TOOLS),
                                reason="needs espeak-ng, sox and ffmpeg (Debian packages; .ci/run installs them)")

MENU_LINES = "点“我的”：我的信息、绑定身份、收到通知、开会时间、上报情况\n点“签到”\n点“学习·帮助”：本周学习、我的学时、使用帮助"


@functools.lru_cache(maxsize=None)
def spoken(text: str) -> tuple[bytes, float]:
    """text said by espeak-ng's Mandarin voice, as an AMR-NB file (12.2 kbit/s), and how long it lasts (s)."""
    with tempfile.TemporaryDirectory() as folder:
        wav, amr = Path(folder) / "said.wav", Path(folder) / "said.amr"
        subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(wav), text], check=True, capture_output=True)
        subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-t", "amr-nb", "-C", "7", str(amr)],
                       check=True, capture_output=True)
        with wave.open(str(wav)) as reader:
            seconds = reader.getnframes() / reader.getframerate()
        return amr.read_bytes(), seconds


def assert_is_the_speech(pcm: bytes, seconds: float) -> None:
    """What the engine got is the converted speech: 16 kHz s16le mono, as long as what was said (AMR frames
    are 20 ms), and loud enough to be speech, not the silence a broken conversion gives."""
    assert abs(len(pcm) / 32000 - seconds) < 0.1, (len(pcm) / 32000, seconds)
    samples = array.array("h", pcm)
    assert math.sqrt(sum(sample * sample for sample in samples) / len(samples)) > 300


def wav_pcm(data: bytes) -> bytes:
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        return reader.readframes(reader.getnframes())


class Engine:
    """One fake engine behind a running service: what it will hear next, and the audio it got."""

    def __init__(self, kind: str, fake, url: str) -> None:
        self.kind, self.fake, self.url = kind, fake, url

    def hears(self, text: str) -> None:
        self.fake.text = text

    def audio(self) -> list[bytes]:
        if self.kind == "funasr":
            return self.fake.audio
        if self.kind == "openai":
            return [wav_pcm(request["wav"]) for request in self.fake.requests]
        return [base64.b64decode(request["speech"]) for request in self.fake.requests]


@pytest.fixture
async def engine_service(make_service, aiohttp_server):
    """make(kind, **settings) → (service, Engine): the service configured for that engine, as an operator
    would (ZHIBU_SPEECH_ENGINE, ZHIBU_SPEECH_URL…), the engine a local fake."""
    async def make(kind: str, **settings):
        app = web.Application()
        if kind == "funasr":
            fake = FakeFunAsr()
            app.router.add_get("/", fake.handle)
        elif kind == "openai":
            fake = FakeTranscriptions()
            app.router.add_post("/v1/audio/transcriptions", fake.handle)
        else:
            fake = FakeBaidu()
            app.router.add_post("/oauth/2.0/token", fake.token)
            app.router.add_post("/server_api", fake.server_api)
        server = await aiohttp_server(app)
        base = str(server.make_url("/")).rstrip("/")
        if kind == "funasr":
            engine = dict(speech_engine="funasr", speech_url=f"ws://{server.host}:{server.port}/")
        elif kind == "openai":
            engine = dict(speech_engine="openai", speech_url=base)
        else:
            engine = dict(speech_engine="baidu", speech_url=base + "/server_api", speech_api_key=API_KEY,
                          speech_secret_key=SECRET_KEY)
        service = await make_service(**engine, **settings)
        if kind == "baidu":  # Baidu's token service has a fixed address; the fake's stands in for it
            service.dispatcher.listener.recognizer.token_url = base + "/oauth/2.0/token"
        return service, Engine(kind, fake, base)
    return make


async def say(service, openid: str, text: str) -> str | None:
    audio, _ = spoken(text)
    return (await service.emulator.voice_audio(openid, audio)).reply


@pytest.mark.parametrize("kind", ["funasr", "openai", "baidu"])
async def test_check_in_leave_and_a_question_said_aloud_through_each_engine(engine_service, kind):
    service, engine = await engine_service(kind)
    people = await hongqi_branch(service)
    _, meeting = await call(service, people["李建国"])

    # 请假 before the meeting, said by 刘小梅: the secretary is asked, as if she had typed it.
    engine.hears("请假 在外地打工")
    reply = await say(service, people["刘小梅"], "请假 在外地打工")
    assert reply.startswith("已向书记请假（11月25日（周三）15:00 支部党员大会）") and "原因：在外地打工" in reply

    # 签到 with the code, said by 王秀英 at the meeting.
    at(service, 11, 25, 14, 42)
    engine.hears(f"签到 {meeting.checkin_code}")
    assert await say(service, people["王秀英"], f"签到 {meeting.checkin_code}") == \
        "签到成功！支部党员大会“学习党的二十届四中全会精神”，签到时间 14:42。"

    # A policy question with the engine's sound-alike slip (三会一颗): answered from the content.
    engine.hears("三会一颗是啥")
    answer = await say(service, people["陈志强"], "三会一课是啥")
    assert "党员大会" in answer and "支委会" in answer and "党课" in answer

    # Each engine got the speech itself, converted: one recording per message, in order.
    received = engine.audio()
    assert len(received) == 3
    for pcm, said in zip(received, ["请假 在外地打工", f"签到 {meeting.checkin_code}", "三会一课是啥"]):
        assert_is_the_speech(pcm, spoken(said)[1])
    # The audio was fetched from WeChat once per message.
    assert service.emulator.api.media_fetches == 3


async def test_the_domain_dictionary_and_the_commands_go_to_the_engine_as_hot_words(engine_service):
    service, engine = await engine_service("funasr")
    await service.bind("m1", "王秀英")
    engine.hears("帮助")
    assert "您可以回复" in await say(service, "m1", "帮助")
    hotwords = json.loads(engine.fake.starts[0]["hotwords"])
    assert {"签到", "请假", "三会一课", "主题党日"} <= set(hotwords)


async def test_without_an_engine_the_member_is_told_to_type_with_the_menu_once_per_conversation(service):
    await service.bind("m1", "王秀英")
    audio, _ = spoken("签到")
    first = (await service.emulator.voice_audio("m1", audio)).reply
    assert first == f"{CANNOT_HEAR_REPLY}\n{MENU_LINES}"
    # Again within the conversation: a short line, never silence.
    assert (await service.emulator.voice_audio("m1", audio)).reply == CANNOT_HEAR_AGAIN
    # Typing works as always.
    assert (await service.say("m1", "我的")).startswith("姓名：王秀英")
    # A new conversation later: the menu again.
    service.clock.advance(hours=2)
    assert (await service.emulator.voice_audio("m1", audio)).reply == first
    # Nothing was fetched: with no engine there is nothing to give the audio to.
    assert service.emulator.api.media_fetches == 0
    # WeChat's own recognition, where an account still gets it, is used as before.
    assert (await service.emulator.voice("m1", "我的")).reply.startswith("姓名：王秀英")


async def test_an_engine_that_hears_nothing_asks_again_and_one_that_fails_says_voice_cannot_be_understood(
        engine_service):
    service, engine = await engine_service("openai")
    await service.bind("m1", "王秀英")
    engine.hears("")
    assert await say(service, "m1", "签到") == NOT_HEARD_REPLY
    # An engine answering an error: told to type, with the menu.
    engine.fake.status = 500
    assert await say(service, "m1", "签到") == f"{CANNOT_HEAR_REPLY}\n{MENU_LINES}"
    engine.fake.status = 200
    # A voice message whose audio WeChat no longer has (over 3 days, or an unknown MediaId).
    service.emulator.api.media.clear()
    engine.hears("签到")
    gone = await service.emulator.send("m1", {"MsgType": "voice", "MediaId": "gone", "Format": "amr",
                                              "Recognition": ""})
    assert gone.reply == CANNOT_HEAR_AGAIN  # the same conversation: the menu was given a moment ago


async def test_an_engine_slower_than_the_reply_budget_says_it_is_listening_then_pushes_the_answer_once(
        engine_service):
    service, engine = await engine_service("openai")
    await service.bind("m1", "王秀英")
    # The short budget only from here: binding on a busy machine may outlast half a second, and its reply would
    # be pushed, which is not what this test is about.
    service.dispatcher.settings = service.dispatcher.settings.model_copy(update={"reply_budget": 0.5})
    engine.hears("我的")
    engine.fake.hang = True
    audio, _ = spoken("我的")
    sending = asyncio.create_task(service.emulator.voice_audio("m1", audio))
    delivery = await sending
    assert delivery.reply == LISTENING and delivery.attempts == 1
    engine.fake.release.set()
    await service.dispatcher.drain()
    await service.deliver()
    (pushed,) = service.pushed("m1")
    assert pushed.startswith("姓名：王秀英")
    async with service.sessions() as session:
        voices = select(func.count()).select_from(InboundMessage).where(InboundMessage.kind == "voice")
        assert (await session.execute(voices)).scalar() == 1


async def test_the_terminal_chat_sends_a_recording_as_wechat_does_now(engine_service, tmp_path):
    """`zhibu chat`'s /语音 @file: the recording uploaded to the emulator, the message without Recognition."""
    service, engine = await engine_service("openai")
    await service.bind("m1", "王秀英")
    audio, seconds = spoken("我的")
    (tmp_path / "我的.amr").write_bytes(audio)
    command = parse_command(f"/语音 @{tmp_path / '我的.amr'}")
    assert command["Recognition"] == "" and command["Format"] == "amr"
    assert parse_command("/语音 @/no/such/file.amr").startswith("读不了录音文件")
    engine.hears("我的")
    async with aiohttp.ClientSession() as http, \
            http.post(f"{service.settings.wechat_api_base}/emulator/send", json={"openid": "m1", **command}) as sent:
        assert (await sent.json())["reply"].startswith("姓名：王秀英")
    (pcm,) = engine.audio()
    assert_is_the_speech(pcm, seconds)


async def test_a_guess_the_engine_is_unsure_of_is_not_acted_on(engine_service):
    """An engine that reports how sure it is (none of the three here does): below ZHIBU_SPEECH_MIN_CONFIDENCE the
    member is asked again instead of being checked in, or answered, on a guess."""
    class Unsure:
        name = "unsure"

        async def recognize(self, pcm, *, sample_rate=16000, hotwords=()):
            return Heard("我的", 0.3)

    service, _ = await engine_service("openai", speech_min_confidence=0.5)
    await service.bind("m1", "王秀英")
    service.dispatcher.listener.recognizer = Unsure()
    assert await say(service, "m1", "我的") == NOT_HEARD_REPLY
    service.dispatcher.listener.min_confidence = 0.2
    assert (await say(service, "m1", "我的")).startswith("姓名：王秀英")
