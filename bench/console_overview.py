"""The staff console's overview: how long a county's page of branches takes to build.

Builds a county of 300 branches (15 townships) and 12,000 members with a year of meetings (every
required kind, about one in twenty skipped), their check-ins by every method, leave, and a notice a
month from the county and from each township, in a temporary SQLite file (or the PostgreSQL database
given, which is wiped first). Then times `branch_overview` for the county (a quarter and a year) and
for one township, each in a fresh session as a page would, and prints the median of several runs, the
SQL statements one run executes (a `before_cursor_execute` listener), and the ratio to two baselines
measured in the same run: a bare `SELECT count(*) FROM attendance`, and the naive way (the
`check_compliance_for` loop over every branch, which gives the compliance cells only). The console's
other functions are timed too.

    python bench/console_overview.py [--branches 300] [--members 12000] [--runs 9] [--database-url URL]

Today is fixed at 2026-11-24, so "this quarter" holds two thirds of a quarter's meetings; the last quarter
is timed too, complete.
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
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
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
            # PostgreSQL's autovacuum would gather statistics soon; a SQLite file never has any unless
            # someone runs ANALYZE, so none are made for it here either.
            await session.execute(sa.text("ANALYZE"))
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


async def measure(sessions, counter: StatementCounter, work, runs: int) -> tuple[float, int]:
    """Median seconds of `runs` runs (after one warm-up), each in a fresh session, and the statements one
    run executes."""
    async with sessions() as session:
        await work(session)
    times = []
    statements = 0
    for _ in range(runs):
        async with sessions() as session:
            before = counter.count
            began = time.perf_counter()
            await work(session)
            times.append(time.perf_counter() - began)
            statements = counter.count - before
    return statistics.median(times), statements


async def run(args) -> None:
    from handlers.meetings.compliance import check_compliance_for
    from handlers.meetings.overview import (attendance_by_month, branch_overview, checkin_log, meeting_detail,
                                            meetings_in_scope, required_held_by_quarter)
    from handlers.meetings.settings import MeetingSettings
    from storage.db import create_engine, is_sqlite, reset_postgres_schema, session_factory, upgrade_schema_async
    from storage.models import Organization
    from storage.orgs import under

    settings = MeetingSettings(_env_file=None)
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'county.db'}"
        if not is_sqlite(url):
            await reset_postgres_schema(url)
        await upgrade_schema_async(url)
        began = time.perf_counter()
        built = await build_county(url, args.branches, args.members)
        print(f"Built in {time.perf_counter() - began:.1f} s on {'SQLite' if is_sqlite(url) else 'PostgreSQL'}: "
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
                # The naive loop gets model objects, as compliance.py's reminder job reads them.
                county_branches = list((await session.execute(
                    sa.select(Organization).where(under(county), Organization.org_type == "党支部")
                    .order_by(Organization.id))).scalars())
                rows, _ = await meetings_in_scope(session, county, limit=1)
                some_meeting = rows[0].id
                session.expunge_all()

            def overview(scope, period, day=None):
                return lambda session: branch_overview(session, scope, period=period, today=TODAY, settings=settings,
                                                       day=day)

            async def naive(session):
                for branch in county_branches:
                    await check_compliance_for(session, branch, year=2026, quarter=4, settings=settings)

            async def count_attendance(session):
                return (await session.execute(sa.text("SELECT count(*) FROM attendance"))).scalar_one()

            cases = [
                ("county overview, quarter", overview(county, "quarter")),
                ("county overview, last quarter (complete)", overview(county, "quarter", date(2026, 8, 1))),
                ("county overview, year", overview(county, "year")),
                ("county overview, month", overview(county, "month")),
                ("township overview, quarter", overview(township, "quarter")),
                ("meeting_detail (one meeting)", lambda s: meeting_detail(s, some_meeting, county)),
                ("meetings_in_scope, county, page 1", lambda s: meetings_in_scope(s, county, limit=50)),
                ("checkin_log, county, page 1", lambda s: checkin_log(s, county, limit=50)),
                ("checkin_log, county, name search", lambda s: checkin_log(s, county, name_query="党员1234")),
                ("checkin_log, township, page 1", lambda s: checkin_log(s, township, limit=50)),
                ("attendance_by_month, county, 12", lambda s: attendance_by_month(s, county, months=12, today=TODAY,
                                                                                 settings=settings)),
                ("required_held_by_quarter, county, 4",
                 lambda s: required_held_by_quarter(s, county, quarters=4, today=TODAY, settings=settings)),
            ]
            baselines = [
                ("baseline: SELECT count(*) FROM attendance", count_attendance),
                ("baseline: check_compliance_for loop, county, quarter", naive),
            ]
            results = {}
            for name, work in baselines + cases:
                runs = max(3, args.runs // 3) if "loop" in name else args.runs
                results[name] = await measure(sessions, counter, work, runs)
                print(f"  {name}: {results[name][0] * 1000:.1f} ms", flush=True)
            # A full garbage collection (every object the process holds, some 70 ms here) falls into about
            # every other overview: what it costs when the long-lived objects are frozen, as a service could
            # do once it has started.
            gc.collect()
            gc.freeze()
            try:
                frozen = "county overview, last quarter, after gc.freeze()"
                cases.append((frozen, overview(county, "quarter", date(2026, 8, 1))))
                results[frozen] = await measure(sessions, counter, cases[-1][1], args.runs)
                print(f"  {frozen}: {results[frozen][0] * 1000:.1f} ms", flush=True)
            finally:
                gc.unfreeze()
        finally:
            await engine.dispose()

    count_s = results[baselines[0][0]][0]
    naive_s = results[baselines[1][0]][0]
    print("\n| what | median ms | SQL statements | × count(*) | vs. the naive loop |")
    print("|---|---|---|---|---|")
    for name, _ in baselines + cases:
        seconds, statements = results[name]
        versus = f"{seconds / naive_s:.1%}" if "overview" in name else ""
        print(f"| {name} | {seconds * 1000:.1f} | {statements:,} | {seconds / count_s:.1f} | {versus} |")
    quarter_s = results["county overview, quarter"][0]
    last_s = results["county overview, last quarter (complete)"][0]
    print(f"\nCounty overview: this quarter so far {quarter_s * 1000:.0f} ms, the last (complete) quarter "
          f"{last_s * 1000:.0f} ms; goal well under 300 ms: {'met' if max(quarter_s, last_s) < 0.3 else 'NOT met'}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--branches", type=int, default=300)
    parser.add_argument("--members", type=int, default=12_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file; PostgreSQL is wiped")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
