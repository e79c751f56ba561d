"""Signed links to a member's pages: the link in a template message, opened without a password.

A token names who may open it (a bound member, or for a chat reply the follower's openid) and what it shows
(an outbox row's ref: "notice:12", "meeting:5", "reply:88"). It is signed with the server's link key
(itsdangerous, HMAC-SHA1 over the payload and the time it was signed) and honoured for `link_days`. Keys
rotate without breaking links in use: ZHIBU_LINK_KEYS lists them oldest first; the last one signs, every
one verifies, so a new key is appended and an old one dropped once its links have expired.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from bot.clock import Clock

log = logging.getLogger(__name__)

SALT = "zhibu.member-page"
KEY_FILE = "link-key"


@dataclass(frozen=True)
class Subject:
    """Who a link is for and what it shows."""

    ref: str  # "<kind>:<id>", the outbox row's ref
    member_id: int | None = None
    openid: str | None = None

    @property
    def kind(self) -> str:
        return self.ref.split(":", 1)[0]

    @property
    def thing_id(self) -> str:
        return self.ref.split(":", 1)[1] if ":" in self.ref else ""


class InvalidLink(Exception):
    """A token that was changed, has expired, or was signed with a key no longer configured."""


class Links:
    def __init__(self, keys: list[str], *, public_url: str, days: int, clock: Clock | None = None) -> None:
        if not keys:
            raise ValueError("signed links need at least one key")
        clock = clock or Clock()

        class ClockSigner(TimestampSigner):
            # The service's clock, not the system's: tests move time to see a link expire.
            def get_timestamp(self) -> int:
                return int(clock.now().timestamp())

        self._serializer = URLSafeTimedSerializer(keys, salt=SALT, signer=ClockSigner)
        self.public_url = public_url.rstrip("/")
        self.max_age = days * 86400

    def token(self, subject: Subject) -> str:
        payload: dict = {"r": subject.ref}
        if subject.member_id is not None:
            payload["m"] = subject.member_id
        if subject.openid is not None:
            payload["o"] = subject.openid
        return self._serializer.dumps(payload)

    def url(self, subject: Subject) -> str:
        return f"{self.public_url}/m/{self.token(subject)}"

    def read(self, token: str) -> Subject:
        try:
            payload = self._serializer.loads(token, max_age=self.max_age)
        except BadData as error:
            raise InvalidLink(type(error).__name__) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("r"), str):
            raise InvalidLink("payload")
        member_id, openid = payload.get("m"), payload.get("o")
        if (member_id is not None and not isinstance(member_id, int)) or \
                (openid is not None and not isinstance(openid, str)) or (member_id is None and openid is None):
            raise InvalidLink("payload")
        return Subject(ref=payload["r"], member_id=member_id, openid=openid)


def link_keys(configured: list[str], data_dir: Path) -> list[str]:
    """The configured keys, or else one kept in ZHIBU_DATA_DIR/link-key (made on first use): enough for one
    machine (every process there shares the folder); several machines must configure ZHIBU_LINK_KEYS."""
    if configured:
        return configured
    path = data_dir / KEY_FILE
    try:
        return [path.read_text(encoding="utf-8").strip()]
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    # Written whole to a file of its own, then linked in place: os.link fails if the key file exists, so two
    # processes starting together (serve --workers) keep whichever key came first, and neither ever reads
    # a key file that is still being written.
    draft = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    draft.write_text(key + "\n", encoding="utf-8")
    draft.chmod(0o600)
    try:
        os.link(draft, path)
        log.warning("no ZHIBU_LINK_KEYS: made a link key in %s (set ZHIBU_LINK_KEYS when several machines serve)",
                    path)
        return [key]
    except FileExistsError:
        return [path.read_text(encoding="utf-8").strip()]
    finally:
        draft.unlink()
