"""The console overview's meeting figures, read month by month and kept while nothing they rest on changed.

A county's year is some 20,000 held meetings and 340,000 check-ins: counting who of them was expected
takes the better part of a second on SQLite, and a page asks for a year's worth twice (the rules grid of
the period and the charts' last twelve months). Almost all of it lies in months that have ended, and
those change only by an edit. So the held meetings with their sign-in counts are read one local month at
a time and kept, per database (engine) and scope; every read first fetches a fingerprint of everything
they rest on, in one statement, and only the months whose fingerprint moved are counted again.

What a month's figures rest on, and how a change shows in the fingerprint:

- the meetings that start in the month (whatever their branch): how many, their ids, and per meeting its
  start, branch, group, kind and whether it was cancelled, as sums weighted by the meeting's id (a change
  to any one meeting always moves them);
- the approved leave of those meetings: how many, and their ids (twice, differently weighted);
- the check-ins. In this application a check-in is only ever added (never changed: a (meeting, member)
  pair signs once), so the fingerprint holds the table's count and highest id. When they moved, the rows
  above the highest id seen name the months they went to; when the count moved by anything else (a row
  deleted), every kept month is counted again;
- the members (branch, group, role) and the organization tree (parent, type, path): a change to any of
  them (a roster import) drops everything kept for the database, since it changes who was expected and
  who came as a guest, and which branches the scope holds.

The fingerprint is read before the figures: a write that lands in between leaves figures newer than their
fingerprint, never older, and the next read counts them again. Figures read inside a transaction that
later rolls back carry that transaction's fingerprint, which the database then no longer shows.

What is kept is immutable (tuples, frozen dataclasses) and shared between requests; derived figures
(a month's attendance per branch, a period's cells) are kept beside it in `memo` dicts by overview.py.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import BigInteger, bindparam, case, func, literal_column, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from storage.meetings import HeldMeeting, Roster, held_meetings_under, roster_under
from storage.models import (
    Attendance,
    LeaveRequest,
    LeaveStatus,
    Meeting,
    MeetingKind,
    MeetingStatus,
    Member,
    Organization,
    OrgType,
    Role,
)

MAX_SCOPES = 64  # per database: a county's staff see one scope each, a few hundred at most
MAX_MONTHS = 48  # per scope
MAX_MEMO = 256  # derived figures per scope
# Check-ins added since a month was last verified beyond which it is counted again rather than checked
# row by row (a month kept for weeks while thousands were added elsewhere).
CATCH_UP_LIMIT = 5000
_PRIME = 65521  # weights stay small, so that sums fit in 64 bits on PostgreSQL


def _integer_sql(name: str, *, postgresql: str, sqlite: str) -> type[FunctionElement]:
    """A one-argument SQL function returning a 64-bit integer, written per engine ("{}" is the argument)."""
    function = type(name, (FunctionElement,), {"type": BigInteger(), "inherit_cache": True})
    for dialect, text in ((None, postgresql), ("sqlite", sqlite)):
        def compile_it(element, compiler, text=text, **kw):
            return text.format(compiler.process(element.clauses, **kw))
        compiles(function, *([dialect] if dialect else []))(compile_it)
    return function


# A stored time (naive UTC on both engines) in whole minutes, as a number only this engine need agree with
# itself on.
_minutes = _integer_sql("_minutes", postgresql="CAST(extract(epoch FROM {}) / 60 AS BIGINT)",
                        sqlite="CAST(julianday({}) * 1440 AS INTEGER)")
# A 64-bit integer: CAST on PostgreSQL (whose 32-bit products would overflow), nothing on SQLite (whose
# integers are 64-bit already, and where a CAST per row costs).
_big = _integer_sql("_big", postgresql="CAST({} AS BIGINT)", sqlite="{}")


def _weight(column):
    return _big(column) % _PRIME + 1


def _code(column, values: Sequence[str]):
    """1, 2, … for the values that matter, 0 for any other."""
    return case({value: index + 1 for index, value in enumerate(values)}, value=column, else_=0)


def _bucket(column, bounds: Sequence[datetime]):
    """Which of the months [bounds[i], bounds[i + 1]) the time falls in; NULL outside them all."""
    return case((column < bounds[0], null()), *[(column < bounds[index + 1], index) for index in range(len(bounds) - 1)],
                else_=null())


_T = literal_column  # constant columns written into the statement (no parameters in a UNION for PostgreSQL)


def _fingerprint(months: int, *, leave_grouped: bool):
    """One statement over the months [b0, b1), [b1, b2), … (bound parameters): a row per month with its
    meetings ('m') and its approved leave ('l'), and one row each for the members ('p'), the organizations
    ('o') and the check-ins ('a'); seven columns each. A select per month rather than one grouped by month:
    each reads its range of ix_meeting_month_figures (which holds every column it needs) and needs neither
    a CASE per row nor a sort. Except, with leave_grouped, the leave: PostgreSQL hashes the whole leave
    table for each month's join, so there it is one select grouped by month."""
    weight = _weight(Meeting.id)
    meeting_numbers = (
        func.count(), func.sum(Meeting.id), func.sum(weight * (_minutes(Meeting.starts_at) % 16777213)),
        func.sum(weight * (_big(Meeting.org_id) * 8
                           + _code(Meeting.kind, [kind.value for kind in MeetingKind]))),
        func.sum(weight * (_big(func.coalesce(Meeting.group_id, 0)) * 2
                           + case((Meeting.status == MeetingStatus.CANCELLED.value, 1), else_=0))))
    leave_weight = _weight(LeaveRequest.id)
    leave_numbers = (func.count(), func.sum(LeaveRequest.id),
                     func.sum(leave_weight * (_big(LeaveRequest.id) % 65519 + 1)), _T("0"), _T("0"))
    bounds = [bindparam(f"b{index}", type_=Meeting.starts_at.type) for index in range(months + 1)]
    parts = []
    for index in range(months):
        in_month = (Meeting.starts_at >= bounds[index], Meeting.starts_at < bounds[index + 1])
        parts.append(select(_T("'m'"), _T(str(index)), *meeting_numbers).where(*in_month))
        if not leave_grouped:
            parts.append(select(_T("'l'"), _T(str(index)), *leave_numbers)
                         .join(Meeting, Meeting.id == LeaveRequest.meeting_id)
                         .where(*in_month, LeaveRequest.status == LeaveStatus.APPROVED.value))
    if leave_grouped:
        # Grouped by a column of a subquery: PostgreSQL would not match a GROUP BY expression holding
        # bound parameters to the same expression in the select list.
        leave = (select(_bucket(Meeting.starts_at, bounds).label("month"), LeaveRequest.id.label("id"),
                        (leave_weight * (_big(LeaveRequest.id) % 65519 + 1)).label("a"))
                 .join(Meeting, Meeting.id == LeaveRequest.meeting_id)
                 .where(Meeting.starts_at >= bounds[0], Meeting.starts_at < bounds[-1],
                        LeaveRequest.status == LeaveStatus.APPROVED.value).subquery())
        parts.append(select(_T("'l'"), leave.c.month, func.count(), func.sum(leave.c.id), func.sum(leave.c.a),
                            _T("0"), _T("0")).group_by(leave.c.month))
    member_weight = _weight(Member.id)
    org_weight = _weight(Organization.id)
    return union_all(
        *parts,
        select(_T("'p'"), null(), func.count(), func.sum(Member.id),
               func.sum(member_weight * (_big(Member.org_id) * 4
                                         + _code(Member.role, [Role.SECRETARY.value, Role.DEPUTY_SECRETARY.value,
                                                               Role.COMMITTEE_MEMBER.value]))),
               func.sum(member_weight * _big(func.coalesce(Member.group_id, 0))), _T("0")),
        select(_T("'o'"), null(), func.count(), func.sum(Organization.id),
               func.sum(org_weight * (_big(func.coalesce(Organization.parent_id, 0)) * 4
                                      + _code(Organization.org_type, [OrgType.BRANCH.value, OrgType.GROUP.value]))),
               func.sum(org_weight * func.length(Organization.tree_path)), _T("0")),
        # Each a statement of its own inside: SQLite counts a table's rows without reading them then.
        select(_T("'a'"), null(), select(func.count()).select_from(Attendance).scalar_subquery(),
               select(func.max(Attendance.id)).scalar_subquery(), _T("0"), _T("0"), _T("0")),
    )


def _number(value) -> int:
    return int(value or 0)  # PostgreSQL sums come back as Decimal, an empty table's max as None


@dataclass(frozen=True)
class Fingerprint:
    world: tuple  # members and organizations
    checkins: tuple[int, int]  # (count, highest id)
    months: tuple[tuple, ...]  # per month: (meetings, approved leave)


# (months, grouped leave) → the statement: built once, then compiled once (per engine) by SQLAlchemy.
_statements: dict[tuple[int, bool], object] = {}


async def fingerprint(session: AsyncSession, bounds: Sequence[datetime]) -> Fingerprint:
    key = (len(bounds) - 1, session.sync_session.get_bind().dialect.name != "sqlite")
    statement = _statements.get(key)
    if statement is None:
        statement = _statements[key] = _fingerprint(key[0], leave_grouped=key[1])
    meetings: dict[int, tuple] = {}
    leave: dict[int, tuple] = {}
    world: dict[str, tuple] = {}
    checkins = (0, 0)
    rows = await session.execute(statement, {f"b{index}": bound for index, bound in enumerate(bounds)})
    for tag, month, *numbers in rows.all():
        numbers = tuple(_number(value) for value in numbers)
        if tag == "m":
            meetings[int(month)] = numbers
        elif tag == "l" and month is not None:
            leave[int(month)] = numbers[:3]
        elif tag == "a":
            checkins = numbers[:2]
        elif tag in ("p", "o"):
            world[tag] = numbers[:4]
    return Fingerprint((world.get("p"), world.get("o")), checkins,
                       tuple((meetings.get(index), leave.get(index)) for index in range(len(bounds) - 1)))


@dataclass(eq=False)
class Month:
    """A local month's held meetings in a scope, with their sign-in counts (storage.meetings.HeldMeeting)."""

    start: date
    stamp: tuple  # its part of the fingerprint
    seen: tuple[int, int]  # the check-ins' (count, highest id) when last verified
    held: tuple[HeldMeeting, ...]  # oldest first
    memo: dict = field(default_factory=dict)  # figures derived from it (overview.py), valid as long as it is


@dataclass(eq=False)
class _Scope:
    world: tuple
    roster: Roster | None = None
    months: OrderedDict = field(default_factory=OrderedDict)  # month start → Month
    memo: OrderedDict = field(default_factory=OrderedDict)


@dataclass(frozen=True, eq=False)
class Facts:
    """What a read gives: the scope's roster and the months asked for, in order, and the scope's memo (for
    figures derived from several months: validate them by the identity of the Month objects they used)."""

    roster: Roster
    months: tuple[Month, ...]
    memo: OrderedDict

    def recall(self, key):
        """What was remembered under key (None if nothing), kept longest now that it was asked for."""
        value = self.memo.get(key)
        if value is not None:
            self.memo.move_to_end(key)
        return value

    def remember(self, key, value) -> None:
        self.memo[key] = value
        self.memo.move_to_end(key)
        while len(self.memo) > MAX_MEMO:
            self.memo.popitem(last=False)


class _Store:
    """The kept months of one database, per scope."""

    def __init__(self) -> None:
        self.scopes: OrderedDict[tuple, _Scope] = OrderedDict()

    def scope(self, key: tuple, world: tuple) -> _Scope:
        kept = self.scopes.get(key)
        if kept is None or kept.world != world:
            kept = self.scopes[key] = _Scope(world)
        self.scopes.move_to_end(key)
        while len(self.scopes) > MAX_SCOPES:
            self.scopes.popitem(last=False)
        return kept


_stores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Engine → _Store


def _store(session: AsyncSession) -> _Store:
    engine = session.sync_session.get_bind()
    store = _stores.get(engine)
    if store is None:
        store = _stores[engine] = _Store()
    return store


def forget(session: AsyncSession | None = None) -> None:
    """Drop what is kept (for one session's database, or every one): the next read counts everything."""
    if session is None:
        _stores.clear()
    else:
        _stores.pop(session.sync_session.get_bind(), None)


class _Added(NamedTuple):
    id: int
    month: int | None  # the month of its meeting among the bounds read, None when outside them all
    starts_at: datetime  # its meeting's
    tree_path: str  # its meeting's branch's


async def _added_since(session: AsyncSession, lowest: int, bounds: Sequence[datetime]) -> list[_Added]:
    """The check-ins with an id above lowest, by id."""
    rows = await session.execute(
        select(Attendance.id, _bucket(Meeting.starts_at, bounds), Meeting.starts_at, Organization.tree_path)
        .join(Meeting, Meeting.id == Attendance.meeting_id).join(Organization, Organization.id == Meeting.org_id)
        .where(Attendance.id > lowest).order_by(Attendance.id))
    return [_Added(*row) for row in rows]


async def read_months(session: AsyncSession, scope: Organization, starts: Sequence[date], bounds: Sequence[datetime],
                      zone_key: str) -> Facts:
    """The held meetings of the branches under scope in the given consecutive local months (starts[i] is
    the month [bounds[i], bounds[i + 1])), from what is kept where it still holds, counted where not."""
    stamp = await fingerprint(session, bounds)
    kept = _store(session).scope((scope.id, scope.tree_path, zone_key), stamp.world)
    months: list[Month | None] = [kept.months.get(start) for start in starts]
    for index, month in enumerate(months):
        if month is not None and month.stamp != stamp.months[index]:
            months[index] = None
    for index, (start, end) in (await _verify_checkins(session, scope, months, stamp.checkins, bounds)).items():
        # Check-ins added to meetings of this scope that start within a day of each other (a meeting under
        # way, or a few at once): those meetings counted again, the rest of the month kept.
        month = months[index]
        times = [meeting.starts_at for meeting in month.held]
        fresh = await held_meetings_under(session, scope, start, end, with_counts=True)
        months[index] = Month(month.start, month.stamp, stamp.checkins,
                              month.held[:bisect_left(times, start)] + tuple(fresh)
                              + month.held[bisect_left(times, end):])

    missing = [index for index, month in enumerate(months) if month is None]
    if missing:
        first, last = missing[0], missing[-1]
        held = await held_meetings_under(session, scope, bounds[first], bounds[last + 1], with_counts=True)
        times = [meeting.starts_at for meeting in held]  # oldest first
        for index in range(first, last + 1):
            rows = held[bisect_left(times, bounds[index]):bisect_left(times, bounds[index + 1])]
            months[index] = Month(starts[index], stamp.months[index], stamp.checkins, tuple(rows))
    for start, month in zip(starts, months):
        kept.months[start] = month
        kept.months.move_to_end(start)
    while len(kept.months) > MAX_MONTHS:
        kept.months.popitem(last=False)
    if kept.roster is None:
        kept.roster = await roster_under(session, scope)
    return Facts(kept.roster, tuple(months), kept.memo)


async def _verify_checkins(session: AsyncSession, scope: Organization, months: list[Month | None],
                           now: tuple[int, int], bounds: Sequence[datetime]) -> dict[int, tuple[datetime, datetime]]:
    """Check the kept months against the check-ins added since each was verified: a month none was added
    to in this scope stays (and is verified now); one they were added to within a day gives the span of
    their meetings' starts to count again, [start, end); any other (more added, a row deleted) is dropped
    (set to None)."""
    count = now[0]
    stale = [index for index, month in enumerate(months) if month is not None and month.seen != now]
    patches: dict[int, tuple[datetime, datetime]] = {}
    if not stale:
        return patches
    checkable = [index for index in stale if 0 <= count - months[index].seen[0] <= CATCH_UP_LIMIT]
    for index in set(stale) - set(checkable):
        months[index] = None
    if not checkable:
        return patches
    added = await _added_since(session, min(months[index].seen[1] for index in checkable), bounds)
    ids = [row.id for row in added]
    for index in checkable:
        month = months[index]
        since = added[bisect_right(ids, month.seen[1]):]
        if count - month.seen[0] != len(since):
            # The count moved by more than the rows above the highest id seen: a row deleted, or one
            # committed late under a lower id.
            months[index] = None
            continue
        times = sorted(row.starts_at for row in since
                       if row.month == index and row.tree_path.startswith(scope.tree_path))
        if not times:
            month.seen = now
        elif times[-1] - times[0] <= timedelta(days=1):
            patches[index] = (times[0], times[-1] + timedelta(microseconds=1))
        else:
            months[index] = None
    return patches
