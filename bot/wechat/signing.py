"""WeChat's request signatures and message encryption, shared by the webhook and the emulator.

wechatpy's own checks compare signatures with `!=`; ours compare in constant time. The AES work
itself is wechatpy's (PrpCrypto).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import xmltodict
from wechatpy.crypto import PrpCrypto
from wechatpy.crypto import WeChatCrypto as _WeChatCrypto


def signature(*parts: str) -> str:
    """sha1 over the parts sorted and joined, as WeChat signs (token, timestamp, nonce[, ciphertext])."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_matches(expected_parts: tuple[str, ...], given: str) -> bool:
    return hmac.compare_digest(signature(*expected_parts).encode(), (given or "").encode())


def new_nonce() -> str:
    return secrets.token_hex(8)


class MessageCipher:
    """Encrypts and decrypts message bodies in safe mode with the account's EncodingAESKey."""

    def __init__(self, token: str, aes_key: str, app_id: str) -> None:
        self.token = token
        self.app_id = app_id
        self._crypto = _WeChatCrypto(token, aes_key, app_id)

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext XML; raises ValueError on anything malformed or meant for another app."""
        try:
            return PrpCrypto(self._crypto.key).decrypt(ciphertext, self.app_id)
        except Exception as error:  # wechatpy raises a mix of types for bad padding, ids and bytes
            raise ValueError(f"cannot decrypt: {type(error).__name__}") from error

    def encrypt(self, xml: str, *, timestamp: str, nonce: str) -> str:
        """The encrypted envelope XML, signed with msg_signature."""
        return self._crypto.encrypt_message(xml, nonce, timestamp)

    def envelope_parts(self, envelope_xml: str) -> dict:
        """Encrypt, MsgSignature, TimeStamp and Nonce from an encrypted envelope (for the emulator)."""
        return dict(xmltodict.parse(envelope_xml)["xml"])
