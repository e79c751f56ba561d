"""WeChat's XML: untrusted bodies in, Messages out; reply text in, passive-reply XML out.

We parse once with the standard library's expat-backed ElementTree, after refusing any DTD or entity
declaration, and read the fields from a validated dict rather than through wechatpy.parse_message, which would
parse the body a second time and accept duplicate or nested tags silently. The dict is the one xmltodict
gives for the same body (text stripped, an empty element None, nested elements and attributes as dicts;
tests/wechat/test_corpus.py compares the two on every real sample): ElementTree builds it in C, about
7 µs for a message against xmltodict's 21 µs of Python callbacks, on every message the webhook reads.
Replies are one template with every field made safe for CDATA (wechatpy's TextReply, used before, neither escapes
"]]>" nor drops what XML forbids, and built the reply through its field classes: 8 µs of every message, now 2).
"""

from __future__ import annotations

import math
import re
from xml.etree import ElementTree

from bot.messages import Kind, Location, Message

_FORBIDDEN_MARKUP = re.compile(r"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_DECLARED_ENCODING = re.compile(r"^\s*<\?xml[^>]*\bencoding\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)
# Characters XML 1.0 forbids; a reply containing one would make WeChat reject the whole reply.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MESSAGE_KINDS = {kind.value for kind in Kind} - {Kind.EVENT.value, Kind.UNKNOWN.value}
# WeChat's MsgId is a 64-bit number (at most 20 digits); CreateTime is unix seconds. ASCII digits only:
# str.isdigit() also accepts "²" and "١", which int() then refuses.
_MSG_ID = re.compile(r"[0-9]{1,20}")
_UNIX_TIME = re.compile(r"[0-9]{1,12}")


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
        element = ElementTree.fromstring(body)
    except ElementTree.ParseError as error:
        raise BadMessage(f"malformed XML: {error}") from error
    if element.tag != "xml":
        raise BadMessage("root element is not <xml>")
    if element.attrib:
        raise BadMessage("attributes on <xml>")
    root = _as_dict(element)
    if not isinstance(root, dict):
        raise BadMessage("root element is not <xml>")  # <xml/> or <xml>text</xml>: no fields at all
    for name, value in root.items():
        # A field given twice could be read one way here and another way by whoever reads it next.
        if isinstance(value, list):
            raise BadMessage(f"duplicate <{name}>")
    # Nested elements (subscription-message lists, publish results, device info…) are left as they are:
    # WeChat adds event types over time, and refusing one makes WeChat retry and then drop it.
    return root


def _as_dict(element: ElementTree.Element) -> dict | str | None:
    """An element as xmltodict reads it: a leaf's text stripped (None when blank); else a dict of its
    attributes (@name), its children (a list for a name repeated) and its own text (#text)."""
    text = (element.text or "").strip() or None
    if not len(element) and not element.attrib:
        return text
    fields: dict = {f"@{name}": value for name, value in element.attrib.items()}
    for child in element:
        value = _as_dict(child)
        if child.tag not in fields:
            fields[child.tag] = value
        elif isinstance(fields[child.tag], list):
            fields[child.tag].append(value)
        else:
            fields[child.tag] = [fields[child.tag], value]
    mixed = "".join([element.text or "", *(child.tail or "" for child in element)]).strip()
    if mixed:
        fields["#text"] = mixed
    return fields


def _text(fields: dict, name: str) -> str:
    """A field we read, as text ("" when absent). A field we read holding elements is refused: it is
    not a message WeChat sends, and reading it some other way would guess."""
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value or ""
    raise BadMessage(f"unexpected structure in <{name}>")


def _float(value, name: str) -> float:
    """A finite number ("inf", "nan" and "1e400" are numbers to float() but to nothing else)."""
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise BadMessage(f"{name} is not a number") from error
    if not math.isfinite(number):
        raise BadMessage(f"{name} is not a finite number")
    return number


def _scale(value) -> int | None:
    """The map zoom level of a shared location; only informative, so nonsense is dropped, not refused."""
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 3 else None


def parse(body: str) -> Message:
    """A Message from a plaintext WeChat body; BadMessage when it is not one."""
    fields = read_xml(body)
    user = _text(fields, "FromUserName").strip()
    msg_type = _text(fields, "MsgType").strip().lower()
    if not user or not msg_type:
        raise BadMessage("missing FromUserName or MsgType")
    if len(user) > 64:
        raise BadMessage("FromUserName too long")
    created_text = _text(fields, "CreateTime").strip()
    if created_text and not _UNIX_TIME.fullmatch(created_text):
        raise BadMessage("CreateTime is not a time")
    created = int(created_text or 0)
    common = dict(user_id=user, created_at=created, account_id=_text(fields, "ToUserName"), raw_type=msg_type)

    if msg_type == "event":
        return _event(fields, common)
    msg_id = (_text(fields, "MsgId") or _text(fields, "MsgID")).strip()
    if not msg_id:
        raise BadMessage("message without MsgId")
    if not _MSG_ID.fullmatch(msg_id):
        # The message's identity: one that does not fit the inbound log would break exactly-once.
        raise BadMessage("MsgId is not a number of at most 20 digits")
    if msg_type not in _MESSAGE_KINDS:
        return Message(kind=Kind.UNKNOWN, msg_id=msg_id, **common)
    kind = Kind(msg_type)
    if kind == Kind.TEXT:
        return Message(kind=kind, msg_id=msg_id, text=_text(fields, "Content"), **common)
    if kind == Kind.VOICE:
        # Format (amr or speex) tells the converter what the audio is, when the text must come from it.
        return Message(kind=kind, msg_id=msg_id, text=_text(fields, "Recognition").strip(),
                       media_id=_text(fields, "MediaId"), extra={"format": _text(fields, "Format")[:16]}, **common)
    if kind == Kind.LOCATION:
        location = Location(latitude=_float(fields.get("Location_X"), "Location_X"),
                            longitude=_float(fields.get("Location_Y"), "Location_Y"),
                            scale=_scale(fields.get("Scale")), label=_text(fields, "Label"))
        if not (-90 <= location.latitude <= 90 and -180 <= location.longitude <= 180):
            raise BadMessage("location out of range")
        return Message(kind=kind, msg_id=msg_id, location=location, **common)
    if kind == Kind.LINK:
        return Message(kind=kind, msg_id=msg_id, text=_text(fields, "Title"), url=_text(fields, "Url"),
                       extra={"description": _text(fields, "Description")}, **common)
    # image, video, shortvideo: the media is fetched on demand by the feature that needs it.
    return Message(kind=kind, msg_id=msg_id, media_id=_text(fields, "MediaId"), url=_text(fields, "PicUrl"),
                   **common)


def _event(fields: dict, common: dict) -> Message:
    event = _text(fields, "Event").strip().lower()
    if not event:
        raise BadMessage("event without Event")
    key = _text(fields, "EventKey")
    if event == "subscribe":
        scene = key[len("qrscene_"):] if key.startswith("qrscene_") else ""
        return Message(kind=Kind.EVENT, event=event, event_key=key, scene=scene, **common)
    if event == "scan":
        return Message(kind=Kind.EVENT, event=event, event_key=key, scene=key, **common)
    if event == "location":
        location = Location(latitude=_float(fields.get("Latitude"), "Latitude"),
                            longitude=_float(fields.get("Longitude"), "Longitude"))
        if not (-90 <= location.latitude <= 90 and -180 <= location.longitude <= 180):
            raise BadMessage("location out of range")
        return Message(kind=Kind.EVENT, event=event, location=location,
                       extra={"precision": _text(fields, "Precision")}, **common)
    if event == "view":
        return Message(kind=Kind.EVENT, event=event, event_key=key, url=key, **common)
    extra = {name: fields[name] for name in ("Status", "MsgID", "TotalCount", "SentCount", "ErrorCount")
             if isinstance(fields.get(name), str)}
    return Message(kind=Kind.EVENT, event=event, event_key=key, extra=extra, **common)


def cdata_safe(text: str) -> str:
    """Text that survives inside <![CDATA[...]]>: no "]]>" terminator, no XML-illegal characters."""
    return _XML_ILLEGAL.sub("", text).replace("]]>", "]]]]><![CDATA[>")


_TEXT_REPLY = ("<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{source}]]></FromUserName>"
               "<CreateTime>{time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
               "<Content><![CDATA[{content}]]></Content></xml>")


def render_text_reply(*, to_user: str, from_account: str, text: str, timestamp: int) -> str:
    """The passive text reply: every field in CDATA made safe, the time a plain integer."""
    return _TEXT_REPLY.format(to=cdata_safe(to_user), source=cdata_safe(from_account), content=cdata_safe(text),
                              time=int(timestamp))
