"""WeChat's XML: untrusted bodies in, Messages out; reply text in, passive-reply XML out.

We parse once with xmltodict (1.0.1+ refuses entities) and read the fields from the validated dict
rather than through wechatpy.parse_message, which would parse the body a second time and accept
duplicate or nested tags silently. Replies are rendered by wechatpy's TextReply after escaping,
because it does not escape "]]>" inside CDATA.
"""

from __future__ import annotations

import re

import xmltodict
from wechatpy.replies import TextReply

from bot.messages import Kind, Location, Message

_FORBIDDEN_MARKUP = re.compile(r"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_DECLARED_ENCODING = re.compile(r"^\s*<\?xml[^>]*\bencoding\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)
# Characters XML 1.0 forbids; a reply containing one would make WeChat reject the whole reply.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MESSAGE_KINDS = {kind.value for kind in Kind} - {Kind.EVENT.value, Kind.UNKNOWN.value}


class BadMessage(ValueError):
    """The body is not a message we can trust; the reason goes into the log line."""


def read_xml(body: str) -> dict:
    """The <xml> element as a flat dict of strings, refusing anything a real WeChat body never has."""
    if _FORBIDDEN_MARKUP.search(body):
        raise BadMessage("DTD or entity declaration")
    declared = _DECLARED_ENCODING.match(body)
    if declared and declared.group(1).lower().replace("-", "") != "utf8":
        # WeChat always sends UTF-8; a body declaring otherwise would be read wrongly.
        raise BadMessage(f"declared encoding {declared.group(1)!r} is not UTF-8")
    try:
        document = xmltodict.parse(body, disable_entities=True)
    except Exception as error:
        raise BadMessage(f"malformed XML: {error}") from error
    root = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise BadMessage("root element is not <xml>")
    for name, value in root.items():
        if isinstance(value, list):
            raise BadMessage(f"duplicate <{name}>")
        if name.startswith("@"):
            raise BadMessage("attributes on <xml>")
        if isinstance(value, dict) and name not in ("ScanCodeInfo", "SendPicsInfo", "SendLocationInfo",
                                                     "CopyrightCheckResult", "ArticleUrlResult"):
            raise BadMessage(f"unexpected structure in <{name}>")
    return root


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _float(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise BadMessage(f"{name} is not a number") from error


def parse(body: str) -> Message:
    """A Message from a plaintext WeChat body; BadMessage when it is not one."""
    fields = read_xml(body)
    user = _text(fields.get("FromUserName")).strip()
    msg_type = _text(fields.get("MsgType")).strip().lower()
    if not user or not msg_type:
        raise BadMessage("missing FromUserName or MsgType")
    if len(user) > 64:
        raise BadMessage("FromUserName too long")
    try:
        created = int(_text(fields.get("CreateTime")) or 0)
    except ValueError as error:
        raise BadMessage("CreateTime is not a number") from error
    msg_id = _text(fields.get("MsgId") or fields.get("MsgID")).strip()
    if msg_id and not msg_id.isdigit():
        raise BadMessage("MsgId is not a number")
    common = dict(user_id=user, created_at=created, account_id=_text(fields.get("ToUserName")), raw_type=msg_type)

    if msg_type == "event":
        return _event(fields, common)
    if not msg_id:
        raise BadMessage("message without MsgId")
    if msg_type not in _MESSAGE_KINDS:
        return Message(kind=Kind.UNKNOWN, msg_id=msg_id, **common)
    kind = Kind(msg_type)
    if kind == Kind.TEXT:
        return Message(kind=kind, msg_id=msg_id, text=_text(fields.get("Content")), **common)
    if kind == Kind.VOICE:
        return Message(kind=kind, msg_id=msg_id, text=_text(fields.get("Recognition")).strip(),
                       media_id=_text(fields.get("MediaId")), **common)
    if kind == Kind.LOCATION:
        location = Location(latitude=_float(fields.get("Location_X"), "Location_X"),
                            longitude=_float(fields.get("Location_Y"), "Location_Y"),
                            scale=int(_float(fields.get("Scale") or 0, "Scale")), label=_text(fields.get("Label")))
        if not (-90 <= location.latitude <= 90 and -180 <= location.longitude <= 180):
            raise BadMessage("location out of range")
        return Message(kind=kind, msg_id=msg_id, location=location, **common)
    if kind == Kind.LINK:
        return Message(kind=kind, msg_id=msg_id, text=_text(fields.get("Title")), url=_text(fields.get("Url")),
                       extra={"description": _text(fields.get("Description"))}, **common)
    # image, video, shortvideo: the media is fetched on demand by the feature that needs it.
    return Message(kind=kind, msg_id=msg_id, media_id=_text(fields.get("MediaId")), url=_text(fields.get("PicUrl")),
                   **common)


def _event(fields: dict, common: dict) -> Message:
    event = _text(fields.get("Event")).strip().lower()
    if not event:
        raise BadMessage("event without Event")
    key = _text(fields.get("EventKey"))
    if event == "subscribe":
        scene = key[len("qrscene_"):] if key.startswith("qrscene_") else ""
        return Message(kind=Kind.EVENT, event=event, event_key=key, scene=scene, **common)
    if event == "scan":
        return Message(kind=Kind.EVENT, event=event, event_key=key, scene=key, **common)
    if event == "location":
        location = Location(latitude=_float(fields.get("Latitude"), "Latitude"),
                            longitude=_float(fields.get("Longitude"), "Longitude"))
        return Message(kind=Kind.EVENT, event=event, location=location,
                       extra={"precision": _text(fields.get("Precision"))}, **common)
    if event == "view":
        return Message(kind=Kind.EVENT, event=event, event_key=key, url=key, **common)
    extra = {name: fields[name] for name in ("Status", "MsgID", "TotalCount", "SentCount", "ErrorCount")
             if isinstance(fields.get(name), str)}
    return Message(kind=Kind.EVENT, event=event, event_key=key, extra=extra, **common)


def cdata_safe(text: str) -> str:
    """Text that survives inside <![CDATA[...]]>: no "]]>" terminator, no XML-illegal characters."""
    return _XML_ILLEGAL.sub("", text).replace("]]>", "]]]]><![CDATA[>")


def render_text_reply(*, to_user: str, from_account: str, text: str, timestamp: int) -> str:
    return TextReply(target=cdata_safe(to_user), source=cdata_safe(from_account), content=cdata_safe(text),
                     time=timestamp).render()
