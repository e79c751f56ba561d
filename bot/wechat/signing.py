"""WeChat's request signatures and message encryption.

Signatures are compared in constant time (wechatpy's own checks use `!=`).

Safe mode's encryption is WeChat's scheme done here over `cryptography`'s AES, not through wechatpy's PrpCrypto,
for three reasons: wechatpy fills the 16-byte block that leads every message (with a fixed IV, it is what keeps
two replies that begin alike from encrypting alike) from `random`, which is predictable, where this takes
`os.urandom`; its round trip cost 23 µs of every safe-mode message, this one about 7; and importing it brings
wechatpy's HTTP client and `requests` (a tenth of a second of every start). The scheme: the key is the base64 of
the 43-character EncodingAESKey, its first 16 bytes the IV; the plaintext is 16 random bytes, the message's
length (4 bytes, big-endian), the message and the app id, padded PKCS#7-style to a multiple of 32 bytes (not
AES's 16); AES-256-CBC; base64. The emulator (WeChat's side in tests and the demo) encrypts and decrypts with
wechatpy's implementation, so every safe-mode test is also a check of this one against it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# WeChat pads to a multiple of 32 bytes, whatever AES's block is.
PAD_BLOCK = 32
_RANDOM_BYTES = 16


def signature(*parts: str) -> str:
    """sha1 over the parts sorted and joined, as WeChat signs (token, timestamp, nonce[, ciphertext])."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_matches(expected_parts: tuple[str, ...], given: str) -> bool:
    return hmac.compare_digest(signature(*expected_parts).encode(), (given or "").encode())


def new_nonce() -> str:
    return secrets.token_hex(8)


class MessageCipher:
    """Encrypts and decrypts message bodies in safe mode with the account's EncodingAESKey (see the module)."""

    def __init__(self, token: str, aes_key: str, app_id: str) -> None:
        self.token = token
        self.app_id = app_id
        try:
            key = base64.b64decode(aes_key + "=", validate=True)
        except binascii.Error as error:
            raise ValueError("the EncodingAESKey is not 43 characters of base64") from error
        if len(key) != 32:
            raise ValueError("the EncodingAESKey is not 43 characters of base64")
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))
        self._app_id = app_id.encode("utf-8")

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext XML; raises ValueError on anything malformed or meant for another app."""
        try:
            raw = base64.b64decode(ciphertext, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("cannot decrypt: not base64") from error
        if not raw or len(raw) % 16:
            raise ValueError("cannot decrypt: not whole AES blocks")
        decryptor = self._cipher.decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        padding = padded[-1]
        if not 1 <= padding <= PAD_BLOCK or len(padded) < _RANDOM_BYTES + 4 + padding:
            raise ValueError("cannot decrypt: bad padding")
        content = padded[_RANDOM_BYTES:-padding]
        length = int.from_bytes(content[:4], "big")
        if 4 + length > len(content):
            raise ValueError("cannot decrypt: bad length")
        if content[4 + length:] != self._app_id:
            raise ValueError("cannot decrypt: meant for another app")
        try:
            return content[4:4 + length].decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError("cannot decrypt: not UTF-8") from error

    def encrypt(self, xml: str, *, timestamp: str, nonce: str) -> str:
        """The encrypted envelope XML, signed with msg_signature."""
        message = xml.encode("utf-8")
        plain = b"".join((os.urandom(_RANDOM_BYTES), len(message).to_bytes(4, "big"), message, self._app_id))
        padding = PAD_BLOCK - len(plain) % PAD_BLOCK
        encryptor = self._cipher.encryptor()
        encrypted = base64.b64encode(encryptor.update(plain + bytes([padding]) * padding) + encryptor.finalize())
        ciphertext = encrypted.decode("ascii")
        return (f"<xml><Encrypt><![CDATA[{ciphertext}]]></Encrypt>"
                f"<MsgSignature><![CDATA[{signature(self.token, timestamp, nonce, ciphertext)}]]></MsgSignature>"
                f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>")
