"""Real messages and events from public WeChat projects' test suites (../shared/wechat-corpus): every
well-formed one is accepted in plaintext and in safe mode, and every real ciphertext with its own key."""

from __future__ import annotations

import csv
import itertools
import re
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
import xmltodict
from sqlalchemy import func, select

from bot.wechat.signing import new_nonce, signature
from storage.models import InboundMessage

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "wechat-corpus"
if not CORPUS.is_dir():  # CI lays shared/ beside the checkout; a developer's checkout may sit elsewhere
    CORPUS = Path("/work/shared/wechat-corpus")


def _table(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as file:
        return list(csv.DictReader(file, delimiter="\t"))


SAMPLES = _table(CORPUS / "SOURCES.tsv")
WELL_FORMED = [row["file"] for row in SAMPLES if row["kind"] == "well-formed"]
CIPHERTEXTS = _table(CORPUS / "crypto" / "KEYS.tsv")
_fresh_ids = itertools.count(7_300_000_000_000_000_000)


def fresh(body: str, timestamp: int) -> str:
    """The sample as if sent now: a new MsgId (where it has one) and CreateTime."""
    body = re.sub(r"<MsgId>\s*\d+\s*</MsgId>", lambda _: f"<MsgId>{next(_fresh_ids)}</MsgId>", body)
    return re.sub(r"<CreateTime>\s*\d+\s*</CreateTime>", f"<CreateTime>{timestamp}</CreateTime>", body)


async def post(service, query: dict, body: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{service.url}/wechat?{urlencode(query)}", data=body.encode("utf-8")) as response:
            return response.status, await response.text()


def test_the_corpus_is_there():
    assert len(WELL_FORMED) >= 140 and len(CIPHERTEXTS) == 12


@pytest.mark.parametrize("safe", [False, True], ids=["plaintext", "safe"])
async def test_every_well_formed_sample_is_accepted(make_service, safe):
    service = await make_service(safe=safe)
    refused = {}
    for name in WELL_FORMED:
        service.clock.advance(seconds=1)  # events have no id: the same event at the same second is a retry
        body = fresh((CORPUS / name).read_text(encoding="utf-8"), service.clock.timestamp())
        query, signed_body = service.emulator.sign(body)
        status, text = await post(service, query, signed_body)
        if status != 200:
            refused[name] = (status, text)
        else:
            # What WeChat reads back: "success", or a reply it can show (decrypted in safe mode).
            assert text == "success" or service.emulator.read_reply(status, text) not in (None, ""), name
    assert refused == {}
    await service.dispatcher.drain()
    async with service.sessions() as session:
        recorded = (await session.execute(select(func.count()).select_from(InboundMessage))).scalar()
    assert recorded == len(WELL_FORMED)


async def test_samples_that_are_not_messages_get_a_4xx_never_a_5xx(service):
    for row in SAMPLES:
        if row["kind"] == "well-formed":
            continue
        body = (CORPUS / row["file"]).read_text(encoding="utf-8")
        query, signed_body = service.emulator.sign(body)
        status, _ = await post(service, query, signed_body)
        assert 400 <= status < 500, row["file"]


@pytest.mark.parametrize("sample", CIPHERTEXTS, ids=[row["file"] for row in CIPHERTEXTS])
async def test_real_ciphertexts_with_their_keys(make_service, sample):
    """Each encrypted body as its project's test has it, posted to a service holding that project's key."""
    service = await make_service(wechat_app_id=sample["app_id"], wechat_token=sample["token"] or "token",
                                 wechat_aes_key=sample["aes_key"])
    body = (CORPUS / "crypto" / sample["file"]).read_text(encoding="utf-8")
    encrypted = xmltodict.parse(body)["xml"]["Encrypt"]
    timestamp, nonce = str(service.clock.timestamp()), new_nonce()
    token = service.settings.wechat_token
    query = {"timestamp": timestamp, "nonce": nonce, "encrypt_type": "aes",
             "signature": signature(token, timestamp, nonce),
             "msg_signature": signature(token, timestamp, nonce, encrypted)}
    status, text = await post(service, query, body)
    if sample["expect"] == "handled":
        assert status == 200, (status, text)
        await service.dispatcher.drain()
        async with service.sessions() as session:
            users = (await session.execute(select(InboundMessage.openid))).scalars().all()
        assert users == [sample["plaintext_from"]]
    else:
        assert status < 500, (status, text)


EDGES = ["<xml><A> x </A><B/><C></C><D>  </D></xml>", "<xml><A k='v'>t</A></xml>", "<xml><A><B>1</B><B>2</B></A></xml>",
         "<xml><A>x<B>1</B> y </A></xml>", "<xml><A><![CDATA[ hi ]]></A></xml>", "<xml><A>a&amp;b&#x4e2d;</A></xml>",
         "<?xml version='1.0' encoding='utf-8'?><xml>\n<A>中文</A><!-- note --><B><C k='1'/></B></xml>"]


@pytest.mark.parametrize("name", [*WELL_FORMED, *EDGES])
def test_the_xml_reader_reads_what_xmltodict_reads(name):
    # bot/wechat/xml.py builds with ElementTree (in C) the dict xmltodict gives, which the code was written against.
    from bot.wechat.xml import read_xml

    body = (CORPUS / name).read_text(encoding="utf-8") if name in WELL_FORMED else name
    assert read_xml(body) == dict(xmltodict.parse(body, disable_entities=True)["xml"])
