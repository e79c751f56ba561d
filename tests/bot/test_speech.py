"""bot/speech: each engine's client against a local fake speaking that engine's protocol exactly."""

from __future__ import annotations

import base64
import datetime
import io
import json
import random
import socket
import ssl
import time
import wave

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from bot.clock import ManualClock
from bot.config import Settings
from bot.speech.choose import recognizer_from_settings
from bot.speech.cloud import BaiduRecognizer
from bot.speech.funasr import FunAsrRecognizer
from bot.speech.openai_compatible import OpenAiCompatibleRecognizer
from bot.speech.recognizer import Heard, RecognitionFailed, wav_bytes
from speech_fakes import API_KEY, SECRET_KEY, FakeBaidu, FakeFunAsr, FakeTranscriptions

# 1.3 s of 16 kHz s16le noise: more than two of the 600 ms frames the FunASR client sends, so the fake has to
# put frames back together. Noise, not silence, so a lost or reordered byte shows.
PCM = bytes(random.Random(7).randrange(256) for _ in range(41600))
HOTWORDS = ("签到", "请假", "王秀英")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def closed_port() -> int:
    """A port nothing listens on (bound, then let go), for "the engine is down"."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- FunASR


@pytest.fixture
async def funasr(aiohttp_server):
    fakes = []

    async def start(fake: FakeFunAsr) -> str:
        app = web.Application()
        app.router.add_get("/", fake.handle)
        server = await aiohttp_server(app)
        fakes.append(fake)
        return f"ws://{server.host}:{server.port}/"

    yield start
    for fake in fakes:
        fake.release.set()


async def test_funasr_sends_the_offline_protocol_and_reads_the_result(funasr, http):
    fake = FakeFunAsr("签到")
    recognizer = FunAsrRecognizer(http, await funasr(fake), timeout=5)

    heard = await recognizer.recognize(PCM, hotwords=HOTWORDS)

    assert heard == Heard("签到", None)
    start = fake.starts[0]
    assert start["mode"] == "offline" and start["wav_format"] == "pcm" and start["is_speaking"] is True
    assert start["audio_fs"] == 16000 and start["itn"] is True and isinstance(start["wav_name"], str)
    # hotwords is a string holding a JSON object of word → weight, as the protocol document shows.
    assert isinstance(start["hotwords"], str)
    assert json.loads(start["hotwords"]) == {"签到": 20, "请假": 20, "王秀英": 20}
    assert fake.ends == [{"is_speaking": False}]
    assert fake.audio == [PCM]
    assert len(fake.frames) == 3 and max(fake.frames) == 19200  # 600 ms frames


async def test_funasr_without_hotwords_sends_an_empty_string(funasr, http):
    fake = FakeFunAsr("我要请假")
    heard = await FunAsrRecognizer(http, await funasr(fake), timeout=5).recognize(PCM)
    assert heard.text == "我要请假"
    assert fake.starts[0]["hotwords"] == ""


async def test_funasr_heard_nothing_and_sensevoice_tags(funasr, http):
    # The C++ server's answer to audio with no speech: text "" (websocket-server.cpp, "Sent empty msg").
    assert await FunAsrRecognizer(http, await funasr(FakeFunAsr("")), timeout=5).recognize(PCM) == Heard("", None)
    # SenseVoiceSmall prefixes language, emotion and event tags (SDK_advanced_guide_offline_zh.md).
    tagged = FakeFunAsr("<|zh|><|NEUTRAL|><|Speech|> 开会时间")
    assert (await FunAsrRecognizer(http, await funasr(tagged), timeout=5).recognize(PCM)).text == "开会时间"


async def test_funasr_down_or_hanging_fails_clearly(funasr, http):
    url = f"ws://127.0.0.1:{closed_port()}/"
    with pytest.raises(RecognitionFailed, match="FunASR at .* could not be reached"):
        await FunAsrRecognizer(http, url, timeout=5).recognize(PCM)

    hanging = FakeFunAsr(answer=False)
    started = time.monotonic()
    with pytest.raises(RecognitionFailed, match=r"did not answer within 0.3 s"):
        await FunAsrRecognizer(http, await funasr(hanging), timeout=0.3).recognize(PCM)
    assert time.monotonic() - started < 2
    assert hanging.audio == [PCM]  # it got everything and then said nothing


def self_signed_context(folder) -> ssl.SSLContext:
    """A server TLS context with a certificate nobody vouches for, like the one in FunASR's image."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (folder / "server.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "server.crt", folder / "server.key")
    return context


async def test_funasr_over_wss_with_a_self_signed_certificate(http, tmp_path):
    fake = FakeFunAsr("签到")
    app = web.Application()
    app.router.add_get("/", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = closed_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=self_signed_context(tmp_path)).start()
    try:
        url = f"wss://127.0.0.1:{port}/"
        with pytest.raises(RecognitionFailed, match="not trusted.*ZHIBU_SPEECH_VERIFY_TLS=false"):
            await FunAsrRecognizer(http, url, timeout=5).recognize(PCM)
        assert await FunAsrRecognizer(http, url, timeout=5, verify_tls=False).recognize(PCM) == Heard("签到", None)
        assert fake.audio == [PCM]
    finally:
        await runner.cleanup()


async def test_funasr_refuses_an_http_address(http):
    with pytest.raises(ValueError, match="ws://"):
        FunAsrRecognizer(http, "http://127.0.0.1:10095")


# ---------------------------------------------------------------- OpenAI-compatible


@pytest.fixture
async def transcriptions(aiohttp_server):
    fakes = []

    async def start(fake: FakeTranscriptions, path: str = "/v1/audio/transcriptions") -> str:
        app = web.Application()
        app.router.add_post(path, fake.handle)
        server = await aiohttp_server(app)
        fakes.append(fake)
        return str(server.make_url("/")).rstrip("/")

    yield start
    for fake in fakes:
        fake.release.set()


async def test_openai_compatible_sends_a_wav_form_and_reads_the_text(transcriptions, http):
    fake = FakeTranscriptions("签到")
    recognizer = OpenAiCompatibleRecognizer(http, await transcriptions(fake), model="whisper-1",
                                            api_key="sk-test", timeout=5)

    assert await recognizer.recognize(PCM, hotwords=HOTWORDS) == Heard("签到", None)

    sent = fake.requests[0]
    assert sent["content_type"] == "multipart/form-data"
    assert sent["authorization"] == "Bearer sk-test"
    assert sent["filename"].endswith(".wav") and sent["file_type"] == "audio/wav"
    with wave.open(io.BytesIO(sent["wav"])) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert wav.readframes(wav.getnframes()) == PCM
    assert sent["model"] == "whisper-1" and sent["language"] == "zh" and sent["response_format"] == "json"
    assert all(word in sent["prompt"] for word in HOTWORDS)


async def test_openai_compatible_on_whisper_cpp_path_without_key_or_model(transcriptions, http):
    # whisper.cpp's server answers on /inference by default; its text often starts with a space.
    fake = FakeTranscriptions(" 开会时间\n")
    base = await transcriptions(fake, "/inference")
    recognizer = OpenAiCompatibleRecognizer(http, base + "/", path="inference", timeout=5)
    assert await recognizer.recognize(PCM) == Heard("开会时间", None)
    sent = fake.requests[0]
    assert sent["authorization"] is None and sent["model"] is None and sent["prompt"] is None


async def test_openai_compatible_empty_error_down_and_hanging(transcriptions, http):
    assert await OpenAiCompatibleRecognizer(http, await transcriptions(FakeTranscriptions("")),
                                            timeout=5).recognize(PCM) == Heard("", None)

    refused = OpenAiCompatibleRecognizer(http, await transcriptions(FakeTranscriptions(status=404)), timeout=5)
    with pytest.raises(RecognitionFailed, match="HTTP 404: The model `whisper-9` does not exist"):
        await refused.recognize(PCM)

    with pytest.raises(RecognitionFailed, match="could not be reached"):
        await OpenAiCompatibleRecognizer(http, f"http://127.0.0.1:{closed_port()}", timeout=5).recognize(PCM)

    hanging = OpenAiCompatibleRecognizer(http, await transcriptions(FakeTranscriptions(hang=True)), timeout=0.3)
    with pytest.raises(RecognitionFailed, match="did not answer within 0.3 s"):
        await hanging.recognize(PCM)


# ---------------------------------------------------------------- Baidu


@pytest.fixture
async def baidu(aiohttp_server):
    fake = FakeBaidu()
    app = web.Application()
    app.router.add_post("/oauth/2.0/token", fake.token)
    app.router.add_post("/server_api", fake.server_api)
    server = await aiohttp_server(app)
    base = str(server.make_url("/")).rstrip("/")
    fake.token_url, fake.recognize_url = base + "/oauth/2.0/token", base + "/server_api"
    yield fake
    fake.release.set()


def baidu_recognizer(http, fake: FakeBaidu, **options) -> BaiduRecognizer:
    options = {"timeout": 5, **options}
    return BaiduRecognizer(http, options.pop("api_key", API_KEY), options.pop("secret_key", SECRET_KEY),
                           token_url=fake.token_url, recognize_url=fake.recognize_url, **options)


async def test_baidu_fetches_a_token_and_sends_the_documented_json(baidu, http):
    assert await baidu_recognizer(http, baidu).recognize(PCM, hotwords=HOTWORDS) == Heard("签到", None)

    sent = baidu.requests[0]
    assert sent["content_type"] == "application/json"
    assert base64.b64decode(sent["speech"]) == PCM and sent["len"] == len(PCM)
    assert (sent["format"], sent["rate"], sent["channel"], sent["dev_pid"]) == ("pcm", 16000, 1, 1537)
    assert sent["token"] == baidu.tokens_issued[0] and sent["cuid"]


async def test_baidu_keeps_its_token_until_shortly_before_it_expires(baidu, http):
    clock = ManualClock()
    recognizer = baidu_recognizer(http, baidu, clock=clock)
    await recognizer.recognize(PCM)
    clock.advance(days=28)
    await recognizer.recognize(PCM)
    assert len(baidu.tokens_issued) == 1
    clock.advance(days=1, hours=1)  # a day before the 30 days are up
    await recognizer.recognize(PCM)
    assert len(baidu.tokens_issued) == 2
    assert [sent["token"] for sent in baidu.requests] == [baidu.tokens_issued[0]] * 2 + [baidu.tokens_issued[1]]


async def test_baidu_error_codes(baidu, http):
    recognizer = baidu_recognizer(http, baidu)
    # 3301: the audio holds no clear speech, which is hearing nothing, not a failure.
    baidu.answers = [{"err_no": 3301, "err_msg": "speech quality error."}]
    assert await recognizer.recognize(PCM) == Heard("", None)
    baidu.answers = [{"err_no": 3305, "err_msg": "the user's daily request quota exceeded."}]
    with pytest.raises(RecognitionFailed, match="error 3305 .*daily quota"):
        await recognizer.recognize(PCM)
    # A successful answer whose result is empty is heard nothing too.
    baidu.answers = [{"err_no": 0, "err_msg": "success.", "result": [""]}]
    assert await recognizer.recognize(PCM) == Heard("", None)


async def test_baidu_takes_a_new_token_when_the_cached_one_is_refused(baidu, http):
    recognizer = baidu_recognizer(http, baidu)
    await recognizer.recognize(PCM)
    baidu.tokens_issued[0] = "revoked"  # Baidu no longer knows the token it gave
    assert (await recognizer.recognize(PCM)).text == "签到"
    assert len(baidu.tokens_issued) == 2


async def test_baidu_wrong_keys_down_and_hanging(baidu, http):
    with pytest.raises(RecognitionFailed, match="refused the API Key and Secret Key.*Client authentication failed"):
        await baidu_recognizer(http, baidu, secret_key="wrong").recognize(PCM)
    assert baidu.requests == []  # no audio left without a token

    down = BaiduRecognizer(http, API_KEY, SECRET_KEY, timeout=5, token_url=f"http://127.0.0.1:{closed_port()}/t")
    with pytest.raises(RecognitionFailed, match="Baidu speech could not be reached"):
        await down.recognize(PCM)

    baidu.hang = True
    with pytest.raises(RecognitionFailed, match="did not answer within 0.3 s"):
        await baidu_recognizer(http, baidu, timeout=0.3).recognize(PCM)


# ---------------------------------------------------------------- the WAV wrapper and the settings


def test_wav_bytes_wraps_the_pcm_as_it_is():
    with wave.open(io.BytesIO(wav_bytes(PCM, 8000))) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.readframes(wav.getnframes()) == PCM


def settings(**fields) -> Settings:
    return Settings(_env_file=None, **fields)


@pytest.mark.parametrize("fields, names", [
    ({"speech_engine": "funasr"}, "ZHIBU_SPEECH_URL"),
    ({"speech_engine": "funasr", "speech_url": "http://127.0.0.1:10095"}, "ZHIBU_SPEECH_URL"),
    ({"speech_engine": "openai"}, "ZHIBU_SPEECH_URL"),
    ({"speech_engine": "baidu", "speech_api_key": "key"}, "ZHIBU_SPEECH_SECRET_KEY"),
    ({"speech_engine": "baidu", "speech_api_key": "key", "speech_secret_key": "secret", "speech_model": "普通话"},
     "dev_pid"),
])
def test_an_engine_without_what_it_needs_stops_the_start(fields, names):
    with pytest.raises(ValidationError, match=names):
        settings(**fields)


async def test_the_settings_choose_the_engine(http):
    assert recognizer_from_settings(settings(), http) is None
    funasr = recognizer_from_settings(settings(speech_engine="funasr", speech_url="wss://10.0.0.5:10095",
                                               speech_verify_tls=False, speech_timeout=4), http)
    assert isinstance(funasr, FunAsrRecognizer) and funasr.verify_tls is False and funasr.timeout == 4
    openai = recognizer_from_settings(settings(speech_engine="openai", speech_url="http://127.0.0.1:8178",
                                               speech_path="/inference"), http)
    assert isinstance(openai, OpenAiCompatibleRecognizer) and openai.url == "http://127.0.0.1:8178/inference"
    baidu = recognizer_from_settings(settings(speech_engine="baidu", speech_api_key="k", speech_secret_key="s"), http)
    assert isinstance(baidu, BaiduRecognizer) and baidu.dev_pid == 1537
    assert baidu.recognize_url == "https://vop.baidu.com/server_api"
