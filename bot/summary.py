"""What a pushed message is about, in a few short fields, for the channels that show a card rather than
the full text.

A feature says what its message is about (Summary); it never names a channel's fields. The outbox turns a
Summary into the WeChat template's data (bot.outbox.template_json), and another channel could read the
same fields its own way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """The gist of one message. Every field is optional; the ones left None are not shown.

    Values are written as people read them; the channel shortens them to what it can show (WeChat
    template fields: one line, at most 20 characters).
    """

    title: str | None = None  # "红旗村党支部通知", "会议提醒"
    content: str | None = None  # the gist: "支部党员大会：学习新条例"
    time: str | None = None  # when, as people read it: "明天 09:00"
    place: str | None = None
    sender: str | None = None  # who the message is from, a person's name
    note: str | None = None  # what to do about it: "回复 收到 确认"
    link: str | None = None  # a page with the whole message (not yet carried by the outbox)
