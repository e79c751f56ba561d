"""What a pushed message is about, in a few short fields, for the channels that show a card rather than
the full text.

A feature says what its message is about (Summary); it never names a channel's fields. The outbox turns a
Summary into the WeChat template's data (bot.outbox.template_json), and another channel could read the
same fields its own way. Each field is a short pointer (WeChat shows at most 20 characters on one line);
the whole message is one tap away on its page.
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
    # No "what to do" line: since 2023 a template has no remark, and the message's page (its link, made by
    # the outbox from the row's ref) says it with the whole text.
