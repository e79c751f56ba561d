"""Periodic jobs: APScheduler 3 with a persistent job store, run by one process at a time.

Features declare jobs next to their handlers (`@router.job("report", minutes=5)`); this module turns
those declarations into APScheduler jobs, keeps them in a job store that survives restarts, and makes
sure only one process runs them.

What is stored. A stored job never holds the feature's function: it names the module-level trampoline
`bot.scheduler:run_registered_job` with the job's name as its only argument. The trampoline finds the
job in the registry of the scheduler that runs it, so nothing unpicklable is stored, and a job renamed
or removed from the code is simply removed from the store at the next start. At start every declared
job is written again (`replace_existing`); when its schedule did not change, its stored trigger and
next run time are kept, so a run that fell due while the service was down is still seen as due.

Missed runs. Jobs coalesce (a backlog of missed runs becomes one run), allow one instance at a time,
and have a misfire grace (`ZHIBU_JOB_MISFIRE_GRACE`, seconds): after downtime a job runs once,
immediately, if its latest missed time is no older than the grace; older than that, it waits for its
next time.

Where the job store lives, and why not in the SQLite file itself. APScheduler 3's job stores are
synchronous and run on the event loop thread. On PostgreSQL that is harmless: only the scheduler
touches `apscheduler_jobs` (created by migration 0002), so its short statements never wait for a lock
our own async transactions hold (and a `lock_timeout` bounds the odd wait on a migration). It needs a
synchronous driver, so `postgresql+asyncpg://` becomes `postgresql+psycopg://` for the store.
On SQLite a store in the main file would deadlock the process: the process's one async connection
takes the write lock with BEGIN IMMEDIATE and keeps it across awaits (a handler awaiting inside its
transaction); if the store then writes (it does after every run), SQLite's busy handler sleeps *on
the event loop thread*, so the transaction that holds the lock can never reach its COMMIT; after the
busy timeout (30 s) the store write fails and APScheduler's loop stops rescheduling. So on SQLite the
job store is a separate file next to the database (`zhibu.db` → `zhibu-scheduler.db`), written only by
the one process that holds the scheduler lock. Nothing else ever takes that file's write lock, so a
store call never waits and never blocks the loop. The price: on SQLite the jobs' schedule is not in the
same file as the data (the empty `apscheduler_jobs` table there stays unused); losing the side file
only loses next run times, which are rebuilt from the declarations.

One runner. When several processes serve, one runs the scheduler: on PostgreSQL the one holding a
session-level advisory lock on a dedicated connection (if that process dies its connection closes and
the lock frees); on SQLite, the one holding an exclusive `flock` on a lock file next to the database
(the kernel frees it when the process dies). The lock is tied to the database, not to ZHIBU_DATA_DIR,
because processes sharing a database must compete for the same lock. The others try again every
`ZHIBU_SCHEDULER_RETRY_INTERVAL` seconds and take over when they win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from bot.clock import Clock
from bot.config import Configs
from bot.dispatch import JobContext, JobSpec, Router
from bot.leader import leader_lock
from bot.text import display_width
from storage.db import database_busy, short_error, sqlite_file

log = logging.getLogger(__name__)

# What every stored job calls; see the module docstring.
JOB_FUNC = "bot.scheduler:run_registered_job"
JOB_TABLE = "apscheduler_jobs"
# A run that fails because the database is busy (SQLite locked by an import for longer than a transaction
# waits) is tried again after these pauses (seconds) instead of waiting for the job's next time, which for
# a daily job would be tomorrow. Jobs are safe to repeat: what they send has an idempotency key.
JOB_BUSY_RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0, 60.0)


class SchedulerConfigError(ValueError):
    """A job declaration or schedule override that cannot run; the service refuses to start."""


class UnknownJobError(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"no job is named {name!r}; declared jobs: {', '.join(self.known) or '(none)'}")


# ---------------------------------------------------------------- declared jobs and their schedules


def registered_jobs(routers: Iterable[Router]) -> list[JobSpec]:
    """Every job the features declare, in router order; a name declared twice is refused."""
    jobs: list[JobSpec] = []
    seen: set[str] = set()
    for router in routers:
        for spec in router.jobs:
            if spec.name in seen:
                raise SchedulerConfigError(f"job {spec.name!r} is declared twice")
            seen.add(spec.name)
            jobs.append(spec)
    return jobs


def find_job(jobs: Iterable[JobSpec], name: str) -> JobSpec:
    jobs = list(jobs)
    for spec in jobs:
        if spec.name == name:
            return spec
    raise UnknownJobError(name, (spec.name for spec in jobs))


@dataclass(frozen=True)
class PlannedJob:
    """A declared job with the schedule it will actually run on (the declaration or its override)."""

    spec: JobSpec
    trigger: BaseTrigger
    trigger_args: dict
    overridden: bool

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def schedule(self) -> str:
        # APScheduler's own short form, the one its log lines use: "interval[0:05:00]", "cron[hour='8']".
        return str(self.trigger)


def _trigger_classes() -> dict[str, Any]:
    # The same plugin table APScheduler resolves trigger aliases ("interval", "cron", ...) from.
    return {point.name: point for point in entry_points(group="apscheduler.triggers")}


def make_trigger(trigger: str, trigger_args: dict, zone) -> BaseTrigger:
    points = _trigger_classes()
    if trigger not in points:
        raise SchedulerConfigError(f"unknown trigger {trigger!r}; use one of {', '.join(sorted(points))}")
    arguments = {"timezone": zone, **trigger_args}
    try:
        return points[trigger].load()(**arguments)
    except (TypeError, ValueError) as error:
        raise SchedulerConfigError(f"{trigger} {trigger_args}: {error}") from error


def plan_jobs(jobs: Iterable[JobSpec], settings) -> list[PlannedJob]:
    """Each job with its effective trigger; overrides come from settings.job_schedules.

    An override replaces the declared schedule whole ({"minutes": 10} does not keep a declared
    "hours": 1); its "trigger" key defaults to the declared trigger type.
    """
    jobs = list(jobs)
    overrides: dict[str, dict] = dict(settings.job_schedules)
    declared = {spec.name for spec in jobs}
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise SchedulerConfigError(
            f"ZHIBU_JOB_SCHEDULES names {', '.join(map(repr, unknown))}, which no feature declares; "
            f"declared jobs: {', '.join(sorted(declared)) or '(none)'}")
    planned = []
    for spec in jobs:
        override = overrides.get(spec.name)
        if override is None:
            trigger_name, trigger_args = spec.trigger, dict(spec.trigger_args)
        else:
            trigger_args = dict(override)
            trigger_name = trigger_args.pop("trigger", spec.trigger)
        try:
            trigger = make_trigger(trigger_name, trigger_args, settings.zone)
        except SchedulerConfigError as error:
            source = "ZHIBU_JOB_SCHEDULES" if override is not None else "its declaration"
            raise SchedulerConfigError(f"job {spec.name!r}: the schedule from {source} is invalid: {error}") from error
        planned.append(PlannedJob(spec, trigger, trigger_args, override is not None))
    return planned


def _same_schedule(stored: BaseTrigger, planned: PlannedJob) -> bool:
    """Whether a stored trigger fires on the planned schedule.

    An interval trigger built without a start date starts "now", so two builds of the same schedule
    differ only in start_date; that difference does not count unless the schedule names a start date.
    """
    if type(stored) is not type(planned.trigger):
        return False
    old, new = dict(stored.__getstate__()), dict(planned.trigger.__getstate__())
    if "start_date" not in planned.trigger_args:
        old.pop("start_date", None)
        new.pop("start_date", None)
    return old == new


# ---------------------------------------------------------------- running a job


class _Registry:
    """The jobs one scheduler may run, with the context each call gets."""

    def __init__(self, jobs: Iterable[JobSpec], context: JobContext) -> None:
        self.jobs = {spec.name: spec for spec in jobs}
        self.context = context
        self.running: set[asyncio.Task] = set()

    async def run(self, name: str) -> None:
        spec = self.jobs.get(name)
        if spec is None:
            # Start-up removes stored jobs nobody declares, so this one reached the store some other way.
            log.error("scheduled job %s is not declared by any feature; skipped", name)
            return
        task = asyncio.current_task()
        self.running.add(task)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            for delay in (*JOB_BUSY_RETRY_DELAYS, None):
                try:
                    await spec.func(self.context.for_feature(spec.settings_type))
                    break
                except Exception as error:
                    if delay is None or not database_busy(error):
                        raise
                    log.warning("scheduled job %s: the database is busy (%s); trying again in %.0f s",
                                name, short_error(error), delay)
                    await asyncio.sleep(delay)
        except Exception:
            # Logged here, once, with the job's name; the scheduler carries on and runs it at its next time.
            log.exception("scheduled job %s failed after %.2f s", name, loop.time() - started)
        finally:
            self.running.discard(task)


# Set while the executor creates a job's task, so the task (which copies the context) knows whose
# registry to use. A context variable rather than a module global lets two schedulers share a process.
_current_registry: ContextVar[_Registry | None] = ContextVar("zhibu_job_registry", default=None)


async def run_registered_job(name: str) -> None:
    """What every stored job calls: run the job of that name from the running scheduler's registry."""
    registry = _current_registry.get()
    if registry is None:
        raise RuntimeError(f"job {name!r} was started outside a zhibu JobScheduler")
    await registry.run(name)


class _RegistryExecutor(AsyncIOExecutor):
    """APScheduler's asyncio executor, with the scheduler's registry visible to the tasks it creates."""

    def __init__(self, registry: _Registry) -> None:
        super().__init__()
        self._registry = registry

    def _do_submit_job(self, job, run_times):
        token = _current_registry.set(self._registry)
        try:
            super()._do_submit_job(job, run_times)
        finally:
            _current_registry.reset(token)


async def run_job_now(name: str, *, jobs: Iterable[JobSpec], context: JobContext) -> None:
    """Run one job immediately in this process (`zhibu jobs run`); its errors reach the caller."""
    spec = find_job(jobs, name)
    await spec.func(context.for_feature(spec.settings_type))


# ---------------------------------------------------------------- where the job store lives


def job_store_url(database_url: str) -> str | None:
    """The synchronous SQLAlchemy URL of the job store, or None when jobs live only in memory
    (an in-memory SQLite database has nothing to persist to)."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_file(database_url)
        return f"sqlite:///{path.with_name(path.stem + '-scheduler.db')}" if path else None
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise SchedulerConfigError(f"no job store for {backend} databases; use SQLite or PostgreSQL")


def _job_store_engine(store_url: str) -> sa.Engine:
    if make_url(store_url).get_backend_name() == "sqlite":
        Path(make_url(store_url).database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(store_url, connect_args={"timeout": 5})

        @sa.event.listens_for(engine, "connect")
        def _configure(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # WAL: `zhibu jobs list` reading the file never holds up the scheduler's writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    # Statements run on the event loop thread: never let one wait long for a lock or a dead server.
    return sa.create_engine(store_url, pool_size=2, max_overflow=0, pool_pre_ping=True,
                            connect_args={"connect_timeout": 5,
                                          "options": "-c lock_timeout=5000 -c statement_timeout=15000"})


def _job_store(database_url: str) -> BaseJobStore:
    store_url = job_store_url(database_url)
    if store_url is None:
        return MemoryJobStore()
    return SQLAlchemyJobStore(engine=_job_store_engine(store_url), tablename=JOB_TABLE)


def _read_next_run_times(store_url: str) -> dict[str, float | None]:
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database)
        if not path.exists():  # no scheduler has run yet; don't create the file just to list
            return {}
        engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    else:
        engine = sa.create_engine(store_url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(JOB_TABLE):
                return {}
            rows = connection.execute(sa.text(f"SELECT id, next_run_time FROM {JOB_TABLE}"))
            return {row.id: row.next_run_time for row in rows}
    finally:
        engine.dispose()


async def stored_next_run_times(settings) -> dict[str, datetime | None]:
    """Each stored job's next run time in the configured zone (None: paused), for `zhibu jobs list`."""
    store_url = job_store_url(settings.effective_database_url)
    if store_url is None:
        return {}
    stamps = await asyncio.to_thread(_read_next_run_times, store_url)
    return {name: datetime.fromtimestamp(stamp, settings.zone) if stamp is not None else None
            for name, stamp in stamps.items()}


def format_job_table(planned: list[PlannedJob], next_runs: dict[str, datetime | None]) -> str:
    """The jobs as an aligned table for `zhibu jobs list`; next run times as stored by the scheduler."""
    if not planned:
        return "没有声明任何定时任务。"
    header = ("任务", "时间表", "下次运行", "说明")
    rows = []
    for plan in planned:
        if plan.name not in next_runs:
            upcoming = "未排期（调度器尚未运行）"
        elif next_runs[plan.name] is None:
            upcoming = "已暂停"
        else:
            upcoming = next_runs[plan.name].strftime("%Y-%m-%d %H:%M:%S")
        schedule = plan.schedule + ("（配置覆盖）" if plan.overridden else "")
        rows.append((plan.name, schedule, upcoming, plan.spec.description))
    widths = [max(display_width(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    lines.append(f"共 {len(planned)} 个任务")
    return "\n".join(lines)


# ---------------------------------------------------------------- the scheduler


class JobScheduler:
    """Leader election plus, while this process leads, an AsyncIOScheduler running the declared jobs."""

    def __init__(self, *, settings, sessions: async_sessionmaker[AsyncSession], clock: Clock,
                 jobs: Iterable[JobSpec], retry_interval: float | None = None, stop_grace: float = 10.0,
                 configs: Configs | None = None, provided: dict[str, Any] | None = None) -> None:
        self.settings = settings
        # Planned now so that a bad override stops the service at start, in every process.
        self.planned = plan_jobs(jobs, settings)
        self.retry_interval = settings.scheduler_retry_interval if retry_interval is None else retry_interval
        self.stop_grace = stop_grace
        context = JobContext(sessions, clock, settings, configs=configs or Configs(settings),
                             provided=provided if provided is not None else {})
        self._registry = _Registry((plan.spec for plan in self.planned), context)
        self._lock = leader_lock(settings.effective_database_url)
        self._campaign: asyncio.Task | None = None
        self.scheduler: AsyncIOScheduler | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the jobs now."""
        return self.scheduler is not None

    async def start(self) -> None:
        """Begin competing for the lock; the first attempt happens at once."""
        if self._campaign is None:
            self._campaign = asyncio.create_task(self._campaign_forever(), name="zhibu-scheduler-leader")

    async def stop(self) -> None:
        """Stop the jobs (giving running ones stop_grace seconds), then let another process lead."""
        if self._campaign is not None:
            self._campaign.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._campaign
            self._campaign = None
        await self._step_down()

    async def _campaign_forever(self) -> None:
        waiting_logged = failing = False
        while True:
            try:
                if self.scheduler is None:
                    if await self._lock.acquire():
                        await self._lead()
                        waiting_logged = False
                    elif not waiting_logged:
                        log.info("another process runs the scheduler; this one takes over if it stops")
                        waiting_logged = True
                elif not await self._lock.holds():
                    log.error("lost the scheduler lock; stopping jobs here so that another process can run them")
                    await self._step_down()
                else:
                    # A store error inside APScheduler's processing (it only retries failed reads)
                    # would leave no wake-up scheduled; a periodic wake-up makes that self-healing.
                    self.scheduler.wakeup()
                failing = False
            except Exception as error:
                # The traceback once; while the database stays unreachable, one line per attempt.
                log.error("scheduler leadership step failed (%s); trying again in %.1f s", short_error(error),
                          self.retry_interval, exc_info=not failing and not database_busy(error))
                failing = True
                with contextlib.suppress(Exception):
                    await self._step_down()
            await asyncio.sleep(self.retry_interval)

    async def _lead(self) -> None:
        scheduler = AsyncIOScheduler(
            timezone=self.settings.zone,
            jobstores={"default": _job_store(self.settings.effective_database_url)},
            executors={"default": _RegistryExecutor(self._registry)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": self.settings.job_misfire_grace},
        )
        # Paused: the stored jobs are reconciled with the declarations before anything runs.
        scheduler.start(paused=True)
        self.scheduler = scheduler
        self._reconcile(scheduler)
        scheduler.resume()
        log.info("this process runs the scheduler (%d job(s))", len(self.planned))

    def _reconcile(self, scheduler: AsyncIOScheduler) -> None:
        stored = {job.id: job for job in scheduler.get_jobs()}
        planned = {plan.name: plan for plan in self.planned}
        for job_id in sorted(stored.keys() - planned.keys()):
            scheduler.remove_job(job_id)
            log.info("removed stored job %s: no feature declares it any more", job_id)
        for plan in self.planned:
            previous = stored.get(plan.name)
            trigger, keep = plan.trigger, {}
            if previous is not None and _same_schedule(previous.trigger, plan):
                # Same schedule: keep its phase and its next run time, which may be overdue.
                trigger, keep = previous.trigger, {"next_run_time": previous.next_run_time}
            elif previous is not None:
                log.info("job %s has a new schedule: %s (was %s)", plan.name, plan.trigger, previous.trigger)
            scheduler.add_job(JOB_FUNC, trigger=trigger, args=[plan.name], id=plan.name, name=plan.name,
                              replace_existing=True, **keep)

    async def _step_down(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.pause()
            if self._registry.running:
                await asyncio.wait(set(self._registry.running), timeout=self.stop_grace)
            # AsyncIOScheduler.shutdown only queues the work on the loop (and cancels jobs still
            # running); wait for it, so the store is closed before another process may lead.
            scheduler.shutdown(wait=False)
            while scheduler.running:
                await asyncio.sleep(0)
        await self._lock.release()


# ---------------------------------------------------------------- for the composition root


SCHEDULER = web.AppKey("scheduler", JobScheduler)


class SchedulerContext:
    """An aiohttp cleanup_ctx: leader election and the scheduler start with the app and stop with it.

    `scheduler` is the JobScheduler (for `is_leader`). Append it after the engine's own cleanup
    context, so that jobs stop before the engine they use is disposed.
    """

    def __init__(self, scheduler: JobScheduler | None) -> None:
        self.scheduler = scheduler

    async def __call__(self, app: web.Application) -> AsyncIterator[None]:
        if self.scheduler is None:
            yield
            return
        await self.scheduler.start()
        try:
            yield
        finally:
            await self.scheduler.stop()


def scheduler_context(*, settings, sessions: async_sessionmaker[AsyncSession], clock: Clock,
                      routers: Iterable[Router], configs: Configs | None = None,
                      provided: dict[str, Any] | None = None) -> SchedulerContext:
    """The scheduler for app.cleanup_ctx. Raises SchedulerConfigError now for a bad job or override.

    With ZHIBU_SCHEDULER_ENABLED=false the process never runs jobs (configuration is still checked).
    """
    jobs = registered_jobs(routers)
    scheduler = JobScheduler(settings=settings, sessions=sessions, clock=clock, jobs=jobs, configs=configs,
                             provided=provided)
    return SchedulerContext(scheduler if settings.scheduler_enabled else None)
