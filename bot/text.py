"""Fitting reply text into a channel's size limits, and reading what people type."""

from __future__ import annotations

import re
import unicodedata

TRIMMED_NOTE = "……（内容较长，已省略后面部分）"


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, max_bytes: int) -> tuple[str, str]:
    """Split text into a head of at most max_bytes (preferring a line break) and the rest."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text, ""
    head = encoded[:max_bytes].decode("utf-8", errors="ignore")
    newline = head.rfind("\n")
    if newline > len(head) // 2:
        head = head[: newline + 1]
    return head.rstrip("\n"), text[len(head):].lstrip("\n")


def fit_bytes(text: str, max_bytes: int) -> str:
    """The beginning of text that fits in max_bytes of UTF-8 (ending at a line break when one is near)."""
    return _cut(text, max_bytes)[0]


def split_text(text: str, max_bytes: int, max_parts: int, trimmed_note: str = TRIMMED_NOTE) -> list[str]:
    """Split text into at most max_parts pieces of at most max_bytes each, trimming what is left."""
    return split_reply(text, max_bytes, max_parts, trimmed_note)[0]


def split_reply(text: str, max_bytes: int, max_parts: int,
                trimmed_note: str = TRIMMED_NOTE) -> tuple[list[str], bool]:
    """split_text, and whether something was trimmed (the last part then ends with trimmed_note)."""
    parts: list[str] = []
    rest = text
    while rest and len(parts) < max_parts:
        head, rest = _cut(rest, max_bytes)
        parts.append(head)
    if rest:
        note_bytes = utf8_len(trimmed_note)
        head, _ = _cut(parts[-1], max_bytes - note_bytes)
        parts[-1] = head + trimmed_note
    return parts, bool(rest)


def excerpt(text: str, limit: int = 20) -> str:
    """The start of a text as written, on one line, for quoting it in a reply, a report or a template
    field: line breaks become a space, every other character is kept."""
    flat = re.sub(r"\s*[\r\n]+\s*", " ", text.strip())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def normalize_input(text: str) -> str:
    """What a person typed, with full-width letters, digits and spaces folded and ends trimmed."""
    folded = unicodedata.normalize("NFKC", text)
    return " ".join(folded.split()).strip().rstrip("。.!！?？~～")


def display_width(text: str) -> int:
    """Terminal columns text takes: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)
