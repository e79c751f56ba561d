"""Study (issue 16): short study items on a schedule, marked done in one reply or one tap, the member's own
hours against their yearly requirement — and never a ranking, a score or anyone else's figures.

settings.py holds the figures (minutes per 学时, the yearly requirements, hours per meeting kind, the push
time); service.py every rule (loading the content/study files, the current items, 已学, hours, the weekly
push and the chaser) over storage/study.py's queries; chat.py the member's commands; leaders.py the secretary's
(学习情况, 送学上门, the monthly 送学上门 list); jobs.py the sweep; page.py the item's member page.
"""

from handlers.study import chat, console, jobs, leaders, page  # noqa: F401  (register handlers, jobs and pages)
from handlers.study.common import router

__all__ = ["router"]
