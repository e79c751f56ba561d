"""Meetings: 三会一课, 主题党日, 组织生活会 and 民主评议 — calling them, checking in, leave, records,
the compliance check, and the sign-in sheet export.

chat.py holds the router and the chat side; compliance.py the required-meetings rules and their
reminder job; export.py the sign-in sheet files for `zhibu export attendance`.
"""

from handlers.meetings import compliance  # noqa: F401  (registers its job on the router)
from handlers.meetings.chat import router

__all__ = ["router"]
