"""Safe mode's encryption (bot.wechat.signing.MessageCipher) against wechatpy's implementation of the same scheme:
what one encrypts the other decrypts, both ways, for short and long messages and every padding length; what is
malformed or meant for another app is refused with ValueError, never another error."""

from __future__ import annotations

import base64

import pytest
import xmltodict
from wechatpy.crypto import PrpCrypto, WeChatCrypto

from bot.wechat.signing import MessageCipher, signature

TOKEN, AES_KEY, APP_ID = "token-1", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx1234567890abcdef"
# Lengths around every multiple of 32 the padding can meet, and one far longer than any message.
MESSAGES = ["", "a", "签到", "<xml><Content><![CDATA[我的]]></Content></xml>",
            *("党" * count for count in range(1, 40)), "长" * 3000]


@pytest.fixture
def ours() -> MessageCipher:
    return MessageCipher(TOKEN, AES_KEY, APP_ID)


@pytest.fixture
def theirs() -> WeChatCrypto:
    return WeChatCrypto(TOKEN, AES_KEY, APP_ID)


def envelope_of(xml: str) -> dict:
    return xmltodict.parse(xml)["xml"]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda message: f"{len(message)} chars")
def test_what_one_encrypts_the_other_decrypts(ours, theirs, message):
    envelope = envelope_of(ours.encrypt(message, timestamp="1700000000", nonce="n1"))
    assert envelope["MsgSignature"] == signature(TOKEN, "1700000000", "n1", envelope["Encrypt"])
    assert envelope["TimeStamp"] == "1700000000" and envelope["Nonce"] == "n1"
    assert PrpCrypto(theirs.key).decrypt(envelope["Encrypt"], APP_ID) == message
    assert len(base64.b64decode(envelope["Encrypt"])) % 32 == 0  # WeChat's 32-byte padding
    assert ours.decrypt(envelope_of(theirs.encrypt_message(message, "n2", "1700000001"))["Encrypt"]) == message


def test_the_leading_block_is_random(ours):
    """With the IV fixed by the key, the random first block is what keeps equal messages from encrypting equally."""
    first, second = (envelope_of(ours.encrypt("我的", timestamp="1", nonce="n"))["Encrypt"] for _ in range(2))
    assert first != second
    assert ours.decrypt(first) == ours.decrypt(second) == "我的"


def test_a_message_for_another_app_or_key_is_refused(ours):
    other_app = MessageCipher(TOKEN, AES_KEY, "wx-someone-else")
    other_key = MessageCipher(TOKEN, "B" * 43, APP_ID)
    for other in (other_app, other_key):
        ciphertext = envelope_of(other.encrypt("帮助", timestamp="1", nonce="n"))["Encrypt"]
        with pytest.raises(ValueError):
            ours.decrypt(ciphertext)


@pytest.mark.parametrize("ciphertext", ["", "not base64!", "QUJD", base64.b64encode(b"x" * 15).decode(),
                                        base64.b64encode(b"\0" * 32).decode(), base64.b64encode(b"\xff" * 64).decode()])
def test_malformed_ciphertext_is_a_value_error(ours, ciphertext):
    with pytest.raises(ValueError):
        ours.decrypt(ciphertext)


def test_a_key_that_is_not_43_characters_of_base64_is_refused():
    for key in ("short", "!" * 43, "A" * 44):
        with pytest.raises(ValueError):
            MessageCipher(TOKEN, key, APP_ID)
