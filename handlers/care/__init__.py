"""Care (五必访): every occasion a member should be visited for — a festival, illness, disaster or accident,
a death in the family, hardship — becomes a case with a visitor and a deadline, is visited and recorded, and
is seen by the township, without nagging anyone more than once a day.

settings.py holds the occasions, deadlines and festivals (all settings); festivals.py the lunar calendar
and who a campaign visits; service.py every rule (opening, joining, choosing the visitor, recording a visit,
privacy, the overdue sweep), over storage/care.py's queries; jobs.py the sweep. The chat side, the case page
and the console pages sit over service.py.
"""

from handlers.care import jobs, manage, report, visit  # noqa: F401  (register handlers, jobs and pages)
from handlers.care import console, page  # noqa: F401  (the case's member page, the console pages)
from handlers.care.common import router

__all__ = ["router"]
