"""Meetings: 三会一课, 主题党日, 组织生活会 and 民主评议 — calling them, checking in, leave, records,
the compliance check, and the sign-in sheet export.

common.py holds the router and what the chat modules share; calling.py (开会, 改时间, 取消会议, 会议二维码),
upcoming.py (开会时间), records.py (签到情况, 会议记录, photos), checkin.py (签到, 代签) and leave.py (请假)
the chat side;
compliance.py the required-meetings rules and their reminder job; export.py the sign-in sheet files
for `zhibu export attendance`; page.py the meeting's page a template message links to (with 请假);
console.py the staff console's pages (overview, meetings, check-ins, their exports).

The modules are imported in this order because handlers are tried in registration order: 签到情况
must be registered before 签到, which would otherwise take it as "签到" with the argument "情况".
"""

from handlers.meetings import calling, upcoming, records, checkin, leave, compliance, page, console  # noqa: F401  (register handlers)
from handlers.meetings.common import router

__all__ = ["router"]
