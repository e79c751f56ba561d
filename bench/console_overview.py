"""The staff console's overview: how long a county's page of branches and its two charts take to build.

Builds a county of 300 branches (15 townships) and 12,000 members with a year of meetings (every
required kind, about one in twenty skipped), their check-ins by every method, leave, and a notice a
month from the county and from each township, in a temporary SQLite file (or the PostgreSQL database
given, which is wiped first). Then times what the overview page does (`overview_page_data`: the period's
grid, attendance and notices, the twelve months' attendance and the four quarters' required meetings;
then the two SVG charts and the page's HTML from its template, as `overview_page` renders them) for every
period the page offers, each run in a fresh session as a page has, and prints the median of several runs and the SQL statements one run executes
(a `before_cursor_execute` listener), in three states:

- kept: the figures of months that have not changed are kept between renders (handlers/meetings/
  overview_cache.py): what a page costs while nobody writes;
- after a check-in: one new check-in in the current month before each run (committed in another
  session): what a page costs on a day with meetings;
- from nothing: the kept figures dropped before each run, so everything is counted (the first page after
  a start, or after a roster change): the baseline the others are compared with.

The console's other functions are timed too, and a bare `SELECT count(*) FROM attendance` as a measure
of the machine.

    python bench/console_overview.py [--branches 300] [--members 12000] [--runs 7] [--database-url URL]

Today is fixed at 2026-11-24, so "this quarter" holds two thirds of a quarter's meetings; last quarter is
complete.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy import event  # noqa: E402

ZONE = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 11, 24)
FIRST_MONTH = date(2025, 12, 1)
TOWNSHIPS = 15
GROUPS = 3
COMMITTEE_MEMBERS = 3  # besides the secretary and the deputy
SKIP = 0.05  # share of required meetings a branch does not hold
PRESENT = 0.85
METHODS = ["code"] * 4 + ["qr"] * 3 + ["menu"] * 2 + ["location", "proxy"]


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZONE).astimezone(timezone.utc)


def months_from(first: date, count: int) -> list[date]:
    return [date(first.year + (first.month - 1 + index) // 12, (first.month - 1 + index) % 12 + 1, 1)
            for index in range(count)]


async def build_county(url: str, branches: int, members: int) -> dict:
    """Every row written in bulk with explicit ids; returns the county's and the first township's ids."""
    from storage.db import create_engine, is_sqlite, session_factory
    from storage.models import (Attendance, LeaveRequest, Meeting, MeetingKind, Member, Notice, Organization,
                                OutboxMessage)

    rng = random.Random(14)
    now = datetime.now(timezone.utc)
    orgs: list[dict] = []

    def add_org(name: str, org_type: str, parent: dict | None) -> dict:
        org = {"id": len(orgs) + 1, "parent_id": parent["id"] if parent else None, "name": name, "org_type": org_type,
               "path": f"{parent['path']}/{name}" if parent else name}
        org["tree_path"] = f"{parent['tree_path'] if parent else '/'}{org['id']}/"
        orgs.append(org)
        return org

    county = add_org("示范县委", "党委", None)
    towns = [add_org(f"第{t + 1}镇党委", "党委", county) for t in range(TOWNSHIPS)]
    branch_orgs = [add_org(f"第{b + 1}村党支部", "党支部", towns[b * TOWNSHIPS // branches]) for b in range(branches)]
    groups = {branch["id"]: [add_org(f"第{g + 1}党小组", "党小组", branch) for g in range(GROUPS)]
              for branch in branch_orgs}

    # Members: per branch a secretary, a deputy, committee members, then ordinary members; all but the
    # secretary in one of the groups.
    member_rows: list[dict] = []
    roster: dict[int, list[dict]] = {}
    for index in range(members):
        branch = branch_orgs[index * branches // members]
        people = roster.setdefault(branch["id"], [])
        position = len(people)
        role = "书记" if position == 0 else "副书记" if position == 1 else "委员" if position < 2 + COMMITTEE_MEMBERS else "党员"
        group = None if position == 0 else groups[branch["id"]][position % GROUPS]["id"]
        row = {"id": index + 1, "org_id": branch["id"], "group_id": group, "name": f"党员{index + 1}", "phone": "",
               "role": role, "category": "正式党员", "hardship": False, "away_from_home": False,
               "reminders_muted": False, "created_at": now, "updated_at": now}
        member_rows.append(row)
        people.append(row)

    meetings: list[dict] = []
    attendance: list[dict] = []
    leaves: list[dict] = []

    def hold(branch: dict, kind: str, day: date, expected: list[dict], group_id: int | None = None) -> None:
        if rng.random() < SKIP:
            return
        secretary = roster[branch["id"]][0]
        starts = at(day, 9 + rng.randrange(0, 10))
        meeting_id = len(meetings) + 1
        meetings.append({"id": meeting_id, "org_id": branch["id"], "group_id": group_id, "kind": kind, "topic": "学习",
                         "place": "村委会", "radius_m": 300, "starts_at": starts, "status": "scheduled",
                         "called_by": secretary["id"], "checkin_code": f"{100000 + meeting_id}", "created_at": starts,
                         "updated_at": starts})
        for person in expected:
            if rng.random() < PRESENT:
                method = rng.choice(METHODS)
                minutes = rng.randrange(-20, 25)
                attendance.append({"id": len(attendance) + 1, "meeting_id": meeting_id, "member_id": person["id"],
                                   "checked_in_at": starts + timedelta(minutes=minutes), "method": method,
                                   "late": minutes > 10, "proxy_by": secretary["id"] if method == "proxy" else None})
            elif rng.random() < 0.4:
                leaves.append({"id": len(leaves) + 1, "meeting_id": meeting_id, "member_id": person["id"],
                               "reason": "外出务工", "status": "approved", "requested_at": starts - timedelta(days=1),
                               "decided_at": starts - timedelta(hours=12), "decided_by": secretary["id"]})

    all_months = [month for month in months_from(FIRST_MONTH, 12) if month <= TODAY]
    for branch in branch_orgs:
        people = roster[branch["id"]]
        committee = [person for person in people if person["role"] in ("书记", "副书记", "委员")]
        for month in all_months:
            last = month.replace(day=20) if (month.year, month.month) != (TODAY.year, TODAY.month) else TODAY
            hold(branch, MeetingKind.THEME_DAY.value, month.replace(day=1), people)
            hold(branch, MeetingKind.COMMITTEE.value, month.replace(day=min(5, last.day)), committee)
            for group in groups[branch["id"]]:
                hold(branch, MeetingKind.GROUP.value, month.replace(day=min(8, last.day)),
                     [person for person in people if person["group_id"] == group["id"]], group["id"])
            if month.month in (2, 5, 8, 11):
                hold(branch, MeetingKind.GENERAL.value, month.replace(day=min(15, last.day)), people)
                hold(branch, MeetingKind.LECTURE.value, month.replace(day=min(18, last.day)), people)
        hold(branch, MeetingKind.LIFE.value, date(2026, 1, 20), people)
        hold(branch, MeetingKind.REVIEW.value, date(2026, 1, 21), people)

    # A notice a month from the county to everyone, and from each township to its members; a few failed,
    # most acknowledged.
    notices: list[dict] = []
    outbox: list[dict] = []
    by_town: dict[int, list[dict]] = {}
    branch_town = {branch["id"]: branch["parent_id"] for branch in branch_orgs}
    for row in member_rows:
        by_town.setdefault(branch_town[row["org_id"]], []).append(row)

    def send(org: dict, audience: list[dict], day: date) -> None:
        created = at(day, 10)
        notice_id = len(notices) + 1
        notices.append({"id": notice_id, "sender_id": 1, "org_id": org["id"], "audience": "全体党员",
                        "text": "请按时参加主题党日。", "urgent": False, "recipients": len(audience),
                        "created_at": created, "report_due_at": created + timedelta(days=1)})
        for person in audience:
            failed = rng.random() < 0.03
            outbox.append({"id": len(outbox) + 1, "idempotency_key": f"notice:{notice_id}:{person['id']}",
                           "kind": "notice", "ref": f"notice:{notice_id}", "member_id": person["id"],
                           "openid": None, "text": "请按时参加主题党日。", "urgent": False, "reminder": False,
                           "status": "failed" if failed else "sent", "attempts": 1, "due_at": created,
                           "created_at": created, "sent_at": None if failed else created,
                           "acknowledged_at": None if failed or rng.random() < 0.3 else created + timedelta(hours=3),
                           "error": "用户已取消关注" if failed else None})

    for month in all_months:
        send(county, member_rows, month.replace(day=3))
        for town in towns:
            send(town, by_town.get(town["id"], []), month.replace(day=10))

    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        for model, rows in ((Organization, orgs), (Member, member_rows), (Meeting, meetings), (Attendance, attendance),
                            (LeaveRequest, leaves), (Notice, notices), (OutboxMessage, outbox)):
            for start in range(0, len(rows), 5000):
                await session.execute(sa.insert(model.__table__), rows[start:start + 5000])
        if not is_sqlite(url):
            for table in ("organization", "member", "meeting", "attendance", "leave_request", "notice", "outbox"):
                await session.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                              f"(SELECT max(id) FROM {table}))"))
    if not is_sqlite(url):
        # PostgreSQL's autovacuum would soon gather statistics and mark the new pages all-visible (what
        # index-only scans need); a SQLite file never has statistics unless someone runs ANALYZE, so none
        # are made for it here either.
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(sa.text("VACUUM ANALYZE"))
    await engine.dispose()
    return {"county": county["id"], "township": towns[0]["id"], "orgs": len(orgs), "members": len(member_rows),
            "meetings": len(meetings), "attendance": len(attendance), "leaves": len(leaves), "notices": len(notices),
            "outbox": len(outbox)}


class StatementCounter:
    def __init__(self, engine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args) -> None:
        self.count += 1


@dataclass(frozen=True)
class Measured:
    wall: float  # median seconds
    cpu: float  # median seconds of the process's CPU (both threads: aiosqlite runs SQLite in its own)
    statements: int  # in one run

    def text(self) -> str:
        return f"{self.wall * 1000:.0f} ms (CPU {self.cpu * 1000:.0f}), {self.statements}"


async def measure(sessions, counter: StatementCounter, work, runs: int, before=None) -> Measured:
    """Median wall and CPU time of `runs` runs (after one warm-up), each in a fresh session, and the
    statements one run executes; `before` (untimed) runs before each. On a machine other work shares,
    the wall time grows with its load while the CPU time stays near what the work costs. Each case starts
    after a full garbage collection, so that none pays for the garbage the one before it left."""
    gc.collect()
    async with sessions() as session:
        await work(session)
    times, cpu = [], []
    statements = 0
    for _ in range(runs):
        if before is not None:
            await before()
        async with sessions() as session:
            counted = counter.count
            began, began_cpu = time.perf_counter(), time.process_time()
            await work(session)
            times.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
            statements = counter.count - counted
    return Measured(statistics.median(times), statistics.median(cpu), statements)


def overview_template():
    """console_overview.html as the console's Jinja2 set-up loads it (bot/web/pages.py), rendered for a
    county 组织员 with what a StaffView would give it: render(scope, data, period) → the page's HTML."""
    import jinja2

    from handlers.meetings.console import ROW_TEMPLATE, overview_context

    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(ROOT / folder))
                                  for folder in ("bot/web/templates", "handlers/meetings/templates")])
    environment = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    page, row = environment.get_template("console_overview.html"), environment.get_template(ROW_TEMPLATE)

    def render(scope, data, period: str) -> str:
        view = SimpleNamespace(nav=[("概况", "/console/overview")], request=SimpleNamespace(path="/console/overview"),
                               member=SimpleNamespace(name="周晓燕"), role_label="组织员", scope=scope, csrf_token="-")
        return page.render(view=view, **overview_context(data, period, TODAY, row))
    return render


async def check_ins_to_add(sessions) -> list[tuple[int, int, datetime]]:
    """(meeting, member, start) pairs of this month's 主题党日 with a branch member who has not signed: one
    is signed before each run of the "after a check-in" case."""
    from storage.models import Attendance, Meeting, MeetingKind, Member

    month_start = at(TODAY.replace(day=1), 0)
    async with sessions() as session:
        meetings = (await session.execute(
            sa.select(Meeting.id, Meeting.org_id, Meeting.starts_at)
            .where(Meeting.kind == MeetingKind.THEME_DAY.value, Meeting.starts_at >= month_start)
            .order_by(Meeting.id))).all()
        signed = set((await session.execute(
            sa.select(Attendance.meeting_id, Attendance.member_id)
            .where(Attendance.meeting_id.in_([row[0] for row in meetings])))).all())
        members: dict[int, list[int]] = {}
        for member_id, org_id in (await session.execute(sa.select(Member.id, Member.org_id))).all():
            members.setdefault(org_id, []).append(member_id)
    return [(meeting_id, member_id, starts) for meeting_id, org_id, starts in meetings
            for member_id in members.get(org_id, []) if (meeting_id, member_id) not in signed]


async def run(args) -> None:
    from handlers.meetings import overview_cache
    from handlers.meetings.overview import checkin_log, meeting_detail, meetings_in_scope, overview_page_data
    from handlers.meetings.settings import MeetingSettings
    from storage.db import create_engine, is_sqlite, reset_postgres_schema, session_factory, upgrade_schema_async
    from storage.models import Attendance, Organization

    settings = MeetingSettings(_env_file=None)
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'county.db'}"
        engine_name = "SQLite" if is_sqlite(url) else "PostgreSQL"
        if not is_sqlite(url):
            await reset_postgres_schema(url)
        await upgrade_schema_async(url)
        began = time.perf_counter()
        built = await build_county(url, args.branches, args.members)
        print(f"Built in {time.perf_counter() - began:.1f} s on {engine_name}: "
              f"{args.branches} branches, {built['members']:,} members, {built['meetings']:,} meetings, "
              f"{built['attendance']:,} check-ins, {built['leaves']:,} leave requests, {built['notices']:,} notices "
              f"to {built['outbox']:,} recipients. Today is {TODAY}; {args.runs} runs each, median.\n", flush=True)

        engine = create_engine(url)
        sessions = session_factory(engine)
        counter = StatementCounter(engine)
        try:
            async with sessions() as session:
                county = await session.get(Organization, built["county"])
                township = await session.get(Organization, built["township"])
                rows, _ = await meetings_in_scope(session, county, limit=1)
                some_meeting = rows[0].id
                session.expunge_all()
            to_add = await check_ins_to_add(sessions)

            template = overview_template()

            def page(scope, period, day=None):
                """What overview_page (handlers/meetings/console.py) does: the figures, the charts, the HTML."""
                async def work(session):
                    data = await overview_page_data(session, scope, period=period, today=TODAY, settings=settings,
                                                    day=day)
                    return template(scope, data, period)
                return work

            def from_nothing(work):
                async def fresh(session):
                    overview_cache.forget()
                    return await work(session)
                return fresh

            async def sign_one() -> None:
                meeting_id, member_id, starts = to_add.pop()
                async with sessions() as session, session.begin():
                    session.add(Attendance(meeting_id=meeting_id, member_id=member_id, method="code",
                                           checked_in_at=starts))

            async def count_attendance(session):
                return (await session.execute(sa.text("SELECT count(*) FROM attendance"))).scalar_one()

            periods = [
                ("this month", "month", None), ("last month", "month", date(2026, 10, 1)),
                ("this quarter", "quarter", None), ("last quarter (complete)", "quarter", date(2026, 8, 1)),
                ("this year", "year", None), ("last year", "year", date(2025, 6, 1)),
            ]
            pages = [(f"county, {label}", page(county, period, day)) for label, period, day in periods]
            pages.append(("township, this quarter", page(township, "quarter")))
            others = [
                ("meeting_detail (one meeting)", lambda s: meeting_detail(s, some_meeting, county)),
                ("meetings_in_scope, county, page 1", lambda s: meetings_in_scope(s, county, limit=50)),
                ("checkin_log, county, page 1", lambda s: checkin_log(s, county, limit=50)),
                ("checkin_log, county, name search", lambda s: checkin_log(s, county, name_query="党员1234")),
                ("checkin_log, township, page 1", lambda s: checkin_log(s, township, limit=50)),
            ]
            baseline = "baseline: SELECT count(*) FROM attendance"
            results = {baseline: await measure(sessions, counter, count_attendance, args.runs)}
            print(f"  {baseline}: {results[baseline].text()}", flush=True)
            for name, work in pages:
                results[name, "nothing"] = await measure(sessions, counter, from_nothing(work), args.runs)
                results[name, "kept"] = await measure(sessions, counter, work, args.runs)
                if name.endswith(("this month", "this quarter", "this year")):
                    results[name, "check-in"] = await measure(sessions, counter, work, args.runs, before=sign_one)
                print(f"  {name}: " + "; ".join(f"{state} {results[name, state].text()}"
                                                for state in ("kept", "check-in", "nothing")
                                                if (name, state) in results), flush=True)
            for name, work in others:
                results[name] = await measure(sessions, counter, work, args.runs)
                print(f"  {name}: {results[name].text()}", flush=True)
        finally:
            await engine.dispose()

    count = results[baseline]
    print(f"\n{engine_name}, {built['members']:,} members. The overview page's figures and charts: median ms of "
          f"{args.runs} runs (CPU ms), SQL statements:\n")
    print("| page | kept | after a check-in | from nothing (baseline) | kept ÷ from nothing | kept × count(*) |")
    print("|---|---|---|---|---|---|")
    for name, _ in pages:
        kept, nothing = results[name, "kept"], results[name, "nothing"]
        signed = results.get((name, "check-in"))
        print(f"| {name} | {kept.text()} | {signed.text() if signed else ''} | {nothing.text()} | "
              f"{kept.wall / nothing.wall:.0%} | {kept.wall / count.wall:.0f} |")
    print("\n| other | ms (CPU) | SQL statements | × count(*) |")
    print("|---|---|---|---|")
    for name in [baseline] + [name for name, _ in others]:
        found = results[name]
        print(f"| {name} | {found.wall * 1000:.1f} ({found.cpu * 1000:.1f}) | {found.statements} | "
              f"{found.wall / count.wall:.1f} |")
    slowest = max(results[name, state].wall for name, _ in pages for state in ("kept", "check-in")
                  if (name, state) in results)
    first = max(results[name, "nothing"].wall for name, _ in pages)
    print(f"\nEvery period under 300 ms with figures kept (also after a check-in): "
          f"{'met' if slowest < 0.3 else 'NOT met'} (slowest {slowest * 1000:.0f} ms); from nothing (a first "
          f"render): {'met' if first < 0.3 else 'NOT met'} (slowest {first * 1000:.0f} ms).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--branches", type=int, default=300)
    parser.add_argument("--members", type=int, default=12_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file; PostgreSQL is wiped")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
