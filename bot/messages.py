"""What a user sent, in a form no feature needs WeChat to understand."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum


class Kind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    SHORTVIDEO = "shortvideo"
    LOCATION = "location"
    LINK = "link"
    EVENT = "event"
    UNKNOWN = "unknown"


class Event(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    SCAN = "scan"  # a follower scanned a parametric QR code; a first follow by QR is SUBSCRIBE with a scene
    LOCATION = "location"  # the client reported its position (not a message the user typed)
    CLICK = "click"
    VIEW = "view"


# Events after which WeChat opens the customer-service window even though the user typed nothing.
WINDOW_OPENING_EVENTS = frozenset({Event.SUBSCRIBE, Event.SCAN, Event.CLICK})


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    scale: int | None = None
    label: str = ""


@dataclass(frozen=True)
class Message:
    user_id: str
    kind: Kind
    created_at: int  # unix seconds, as the platform stamped it
    msg_id: str = ""
    account_id: str = ""  # the official account the user wrote to (ToUserName)
    # Typed text, the speech recognition of a voice message, or a link's title.
    text: str = ""
    event: str = ""
    event_key: str = ""
    # The scene string of a parametric QR code (without WeChat's "qrscene_" prefix).
    scene: str = ""
    location: Location | None = None
    media_id: str = ""
    url: str = ""
    # The platform's own type name, kept for messages and events we do not know.
    raw_type: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        """Bounded by construction (the inbound log's column holds 200 characters; these are at most 89). Messages
        are unique by id and sender: a MsgId another sender reuses is never answered with someone else's stored
        reply. Events carry no id: their time, then a digest of sender, time, event and key (a menu tap's key can
        be a long URL).

        Led by what grows with time — the MsgId zero-padded to WeChat's 20 digits, an event's CreateTime to 12 — so
        that new claims land at the end of the log's unique index and a batch of them writes a page or two. Led by
        the sender, each claim went to a random page of it: with 60,000 messages logged, a batch of ten cost about
        440 µs of SQLite against 85 (a random page read, then written at the commit, per claim). Migration 0016
        rewrote the keys stored before, so that a retry after an upgrade still finds its message."""
        if self.msg_id:
            return f"msg:{self.msg_id:0>20}:{self.user_id}"
        parts = "\x1f".join((self.user_id, str(self.created_at), self.event or self.raw_type, self.event_key))
        return f"evt:{self.created_at:0>12}:" + hashlib.sha256(parts.encode("utf-8")).hexdigest()

    @property
    def opens_window(self) -> bool:
        if self.kind == Kind.EVENT:
            return self.event in WINDOW_OPENING_EVENTS
        return True

    def to_payload(self) -> dict:
        # Field by field rather than dataclasses.asdict, which deep-copies recursively: this runs for every
        # message, and only the location is a dataclass.
        payload = {name: getattr(self, name) for name in _FIELDS}
        payload["extra"] = dict(self.extra)
        if self.location is not None:
            payload["location"] = asdict(self.location)
        return payload

    @classmethod
    def from_payload(cls, payload: dict) -> "Message":
        data = dict(payload)
        data["kind"] = Kind(data["kind"])
        if data.get("location"):
            data["location"] = Location(**data["location"])
        return cls(**data)


_FIELDS = tuple(field.name for field in fields(Message))
