"""The delivery engine: every push to a member is an outbox row, and workers deliver the rows.

A feature writes rows (enqueue, enqueue_members) in the same transaction as the change that caused
them, so a message exists exactly when its cause does. The Outbox then:

- claims due rows in batches with a lease (SKIP LOCKED on PostgreSQL, so processes share the work),
- sends each one outside any transaction, through the customer-service channel while the member's
  48-hour window is open and under its 5-message count, otherwise as the template message configured
  for its kind,
- records the outcomes of a batch in one short transaction: sent, failed with WeChat's code and a
  readable reason, pending again with exponential backoff for transient errors, or waiting (below),
- keeps to a messages-per-second budget, holds everything back when the daily quota runs out, and
  keeps non-urgent messages for the end of the quiet hours.

A message that may wait (Outgoing.waits, e.g. the weekly study push) and finds no channel (the window
closed, no template for its kind) is no failure: it becomes WAITING, and the reply to the member's next
message carries its waits line (hand_over_waiting, called by the dispatcher), until its expires_at. A
passive reply may answer any message and costs none of the window's five messages, which sending the row
through the newly opened window would; so the row goes back to the outbox only when nothing replies.

Crash safety: the idempotency key makes enqueueing repeatable; a process that dies leaves its claimed
rows SENDING, and recover() returns them to PENDING once their lease has run out. Those few may have
reached WeChat already, so they may arrive twice; the engine counts and logs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.summary import Summary
from bot.text import TRIMMED_NOTE, fit_bytes, utf8_len
from bot.wechat.client import (
    CredentialsRejected,
    OutsideWindow,
    QuotaExceeded,
    TokenInvalid,
    TooManyMessages,
    WeChatClient,
    WeChatError,
)
from storage import outbox as store
from storage.db import RoundFailures, database_busy, short_error
from storage.driver import Driver
from storage.outbox import WINDOW_LENGTH, WINDOW_MESSAGES

log = logging.getLogger(__name__)

CUSTOM = "custom"
TEMPLATE = "template"
REPLY = "reply"  # a waiting row handed over in the reply to the member's next message

UNBOUND = "未绑定微信，无法送达"
UNFOLLOWED = "已取消关注公众号，无法送达"
MUTED = "本人已关闭提醒"
NO_CHANNEL = "48小时内未互动且未配置模板消息，无法推送"
GAVE_UP = "{reason}（已尝试 {attempts} 次，不再重试）"
UNEXPECTED = "发送时出现程序错误"

TEMPLATE_FIELD_MAX = 20
# WeChat's limit for one customer-service text message.
CUSTOM_TEXT_MAX_BYTES = 2048
RECORD_ATTEMPTS = 3
# While the database keeps failing (SQLite locked by an import, PostgreSQL restarting), the delivery loop
# waits this long after the first failed round, doubling up to the limit; it never gives up.
LOOP_BACKOFF_FIRST = 0.5
LOOP_BACKOFF_LIMIT = 5.0


@dataclass(frozen=True)
class Outgoing:
    """One message to one person, as a feature asks for it."""

    key: str  # idempotency key, unique per (message, recipient), e.g. "notice:12:345"
    kind: str  # "notice", "reminder", "report", "reply"…: picks the template
    text: str  # the full text, for the customer-service channel
    member_id: int | None = None
    openid: str | None = None  # None: the member's bound follower
    ref: str | None = None  # the feature record, e.g. "notice:12"
    urgent: bool = False  # goes out during quiet hours too
    # What the message is about, for the template channel (each field trimmed to 20 characters on one line);
    # None: the text's beginning.
    summary: Summary | None = None
    # Not before this moment (parts of one long reply are spaced so they arrive in order).
    not_before: datetime | None = None
    # A reminder rather than the message itself: a member who turned reminders off does not get it.
    reminder: bool = False
    # The message may wait: when no channel reaches the member now, this short line ends the reply to their
    # next message instead of the message failing (study: "您有一条本周学习内容，回复 学习 查看"); None: it fails.
    waits: str | None = None
    # After this a waiting message is no longer handed over (its matter is over); None: it waits as long as it takes.
    expires_at: datetime | None = None


# ---------------------------------------------------------------- rules that need no database


def template_field(value: str) -> str:
    """A value WeChat accepts in a template field: one line, at most 20 characters."""
    line = " ".join(str(value).split())
    if len(line) <= TEMPLATE_FIELD_MAX:
        return line
    return line[:TEMPLATE_FIELD_MAX - 1] + "…"


def template_json(summary: Summary | None, text: str) -> str:
    """The stored template data (outbox.template_data) for a summary: our field names, the ones
    settings.wechat_template_fields maps onto each template's own, and fields left None left out."""
    # Without a summary from the feature, the text's beginning is better than a blank template.
    if summary is None:
        fields = {"content": text}
    else:
        # The link to the whole message is no field: the outbox gives it as the template message's url.
        fields = {"title": summary.title, "content": summary.content, "time": summary.time,
                  "place": summary.place, "sender": summary.sender}
    return json.dumps({name: template_field(value) for name, value in fields.items() if value is not None},
                      ensure_ascii=False)


def quiet_until(now: datetime, settings: Any) -> datetime | None:
    """The end of the quiet hours now falls in (UTC), or None when now is not in quiet hours."""
    start, end = time.fromisoformat(settings.quiet_hours_start), time.fromisoformat(settings.quiet_hours_end)
    if start == end:
        return None
    zone = settings.zone
    local = now.astimezone(zone)
    moment = local.time().replace(tzinfo=None)
    if start < end:
        quiet = start <= moment < end
    else:  # across midnight, the usual case (21:00–07:00)
        quiet = moment >= start or moment < end
    if not quiet:
        return None
    day = local.date() if moment < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=zone).astimezone(now.tzinfo)


def due_time(moment: datetime, *, urgent: bool, settings: Any) -> datetime:
    """When a message meant for moment may go: urgent ones at once, others after any quiet hours."""
    if urgent:
        return moment
    return quiet_until(moment, settings) or moment


def template_for(kind: str, settings: Any) -> str | None:
    templates = settings.wechat_templates
    return templates.get(kind) or templates.get("default") or None


# ---------------------------------------------------------------- writing rows


async def enqueue(session: AsyncSession, items: Iterable[Outgoing], *, now: datetime, settings: Any) -> int:
    """Add the items as outbox rows in the caller's transaction; returns how many were new.

    An item whose key is already in the outbox adds nothing, so a retried job or handler cannot send
    twice. An item nobody can reach (no bound WeChat, unfollowed) is stored as failed with the reason.
    """
    added = 0
    iterator = iter(items)
    while chunk := list(islice(iterator, store.INSERT_CHUNK)):
        for item in chunk:
            if item.openid is None and item.member_id is None:
                raise ValueError(f"outbox item {item.key!r} names neither a member nor an openid")
        reach = await store.reach_of_members(session, [i.member_id for i in chunk if i.openid is None])
        gone = await store.unfollowed_openids(session, [i.openid for i in chunk if i.openid is not None])
        rows = []
        for item in chunk:
            openid, error = item.openid, None
            if openid is None:
                found = reach.get(item.member_id)
                if found is None:
                    error = UNBOUND
                else:
                    openid = found.openid
                    error = None if found.subscribed else UNFOLLOWED
                    if error is None and item.reminder and found.reminders_muted:
                        error = MUTED
            elif openid in gone:
                error = UNFOLLOWED
            rows.append({
                "idempotency_key": item.key, "kind": item.kind, "ref": item.ref, "member_id": item.member_id,
                "openid": openid, "text": item.text, "template_data": template_json(item.summary, item.text),
                "urgent": item.urgent, "reminder": item.reminder,
                "status": store.FAILED if error else store.PENDING, "attempts": 0,
                "due_at": due_time(max(now, item.not_before or now), urgent=item.urgent, settings=settings),
                "created_at": now, "error": error, "waits": item.waits, "expires_at": item.expires_at,
            })
        added += await store.insert_rows(session, rows)
    return added


async def enqueue_members(session: AsyncSession, member_ids: Select, *, key_prefix: str, kind: str, text: str,
                          ref: str | None, urgent: bool, summary: Summary | None, now: datetime,
                          settings: Any, reminder: bool = False, waits: str | None = None,
                          expires_at: datetime | None = None) -> int:
    """One row per member id the select yields (keys "<key_prefix>:<member id>"); returns how many were new.

    A single INSERT … SELECT, so a 70,000-member audience never passes through Python. waits and expires_at
    are Outgoing's.
    """
    return await store.insert_for_members(
        session, member_ids, key_prefix=key_prefix, kind=kind, text=text, ref=ref,
        template_data=template_json(summary, text), urgent=urgent,
        due_at=due_time(now, urgent=urgent, settings=settings), now=now,
        unbound_reason=UNBOUND, unfollowed_reason=UNFOLLOWED, reminder=reminder, muted_reason=MUTED,
        waits=waits, expires_at=expires_at)


async def hand_over_waiting(driver: Driver, openid: str, reply: str, *, now: datetime,
                            opens_window: bool) -> tuple[str, bool]:
    """The member behind openid just wrote and reply is the answer (empty: none): in the same transaction as
    that answer is stored, their waiting messages leave the waiting state. Returns the reply to give and
    whether rows went back to the outbox (wake it).

    With a reply, it carries them: their lines end it, on lines of their own, each line once however many
    rows carry it, and the rows are sent through REPLY. Stored with the reply, so a WeChat retry of the
    message gets the same answer and the lines neither repeat nor get lost. Without one (`success`), they
    go to the outbox, due now, if the message opened the window; otherwise they keep waiting.
    """
    if reply:
        lines = await store.hand_over_waiting(driver, openid, now=now, channel=REPLY)
        return "\n".join([reply, *dict.fromkeys(lines)]), False
    if opens_window:
        return reply, await store.release_waiting(driver, openid, now=now) > 0
    return reply, False


# ---------------------------------------------------------------- the engine


class RateLimiter:
    """A token bucket in real time, shared by every sender of a process.

    Each caller takes a token at once, running the bucket into debt if need be, and sleeps off its
    share of the debt: callers go out in order and evenly spaced.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp: float | None = None

    async def take(self) -> None:
        if self.rate <= 0:
            return
        now = asyncio.get_running_loop().time()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


@dataclass
class _Outcome:
    kind: str  # "sent", "failed", "retry", "release", "waiting"
    channel: str | None = None
    error_code: int | None = None
    error: str = ""
    used_window: bool = False
    window_closed: bool = False


@dataclass
class _Plan:
    row: store.Claimed
    channel: str | None
    template_id: str | None
    outcome: _Outcome | None = None  # decided without calling WeChat, or once the call returned
    batch: "_Batch | None" = None


class _Batch:
    """Rows claimed together; their outcomes are recorded together once the last one is known."""

    def __init__(self, plans: list[_Plan]) -> None:
        self.plans = plans
        self.to_send = [plan for plan in plans if plan.outcome is None]
        # One member's rows, in the order they were claimed (due time, then written), go out one after another:
        # a meeting's notice and the secretary's answer due at the same moment must not arrive the other way
        # round. Different members' rows go out side by side.
        chains: dict[str | None, list[_Plan]] = {}
        for plan in self.to_send:
            chains.setdefault(plan.row.openid, []).append(plan)
        self.chains = list(chains.values())
        self.waiting = len(self.to_send)
        self.done = asyncio.get_running_loop().create_future()
        # Whether this batch still counts against the batches being sent (see Outbox._claim_next).
        self.sending = True
        for plan in self.to_send:
            plan.batch = self
        if self.waiting == 0:
            self.done.set_result(None)

    def settle(self) -> None:
        self.waiting -= 1
        if self.waiting == 0 and not self.done.done():
            self.done.set_result(None)


@dataclass
class Counters:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    # Rows found SENDING after their process died: they go out again and may arrive twice.
    recovered: int = 0
    # Rows put back untouched because the daily quota ran out or the engine stopped.
    held: int = 0
    # Rows no channel reached that wait for the member's next message (not failed).
    waiting: int = 0
    by_channel: Counter = field(default_factory=Counter)


class Outbox:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], client: WeChatClient, clock: Clock,
                 settings: Any, link_for: Callable[[str | None, int | None, str | None], str | None] | None = None
                 ) -> None:
        self.sessions = sessions
        self.client = client
        self.clock = clock
        self.settings = settings
        # (ref, member id, openid) → the signed address of the page showing that row's whole message, if any.
        self.link_for = link_for
        self.counters = Counters()
        self._limiter = RateLimiter(settings.outbox_rate, settings.outbox_burst)
        # Senders shared by every batch, each making one API call at a time: a fixed pool costs less
        # per message than a task per row, and caps the calls in flight.
        self._queue: asyncio.Queue[list[_Plan]] = asyncio.Queue()  # one member's rows of a batch, in order
        self._senders: list[asyncio.Task] = []
        self._new_gates()
        # One claim at a time per process: run_until_idle must never see "nothing claimable" while the
        # background loop holds (SKIP LOCKED hides) rows it has claimed but not yet registered as a batch.
        self._claiming = asyncio.Lock()
        self._claim_size = self._safe_claim_size()
        self._batches: set[asyncio.Task] = set()
        # Customer-service messages this process is sending now, per openid: not yet in window_sent.
        self._reserved: Counter[str] = Counter()
        self._paused_until: datetime | None = None
        self._decoded: tuple[str, dict] | None = None
        self._wake = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self._stopping = False
        self._recover_now = False
        self._failures = RoundFailures(log, "outbox: the delivery loop", first=LOOP_BACKOFF_FIRST,
                                       limit=max(LOOP_BACKOFF_LIMIT, settings.outbox_poll_interval))
        self.in_flight = 0

    # Counters the bench and the logs read.

    @property
    def sent(self) -> int:
        return self.counters.sent

    @property
    def failed(self) -> int:
        return self.counters.failed

    @property
    def retried(self) -> int:
        return self.counters.retried

    @property
    def recovered(self) -> int:
        return self.counters.recovered

    @property
    def paused_until(self) -> datetime | None:
        return self._paused_until if self._paused() else None

    # -- lifecycle

    async def start(self) -> None:
        """Recover what a dead process left behind, then deliver in the background until stop().

        A database that cannot be written now (SQLite locked by an import) does not stop the start: the
        loop recovers as soon as it can.
        """
        self._stopping = False
        try:
            await self.recover()
        except Exception as error:
            log.warning("outbox: recovering rows left by a stopped process failed (%s); the delivery loop "
                        "will try again", short_error(error), exc_info=None if database_busy(error) else error)
            self._recover_now = True
        self._runner = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        """Stop claiming; sends already on the wire finish and are recorded, the rest go back to the queue."""
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            await self._runner
            self._runner = None
        await self._wait_for_batches()
        await self._stop_senders()
        self._stopping = False

    async def abort(self) -> None:
        """Stop at once without recording what is in flight, as a crash would (tests and benchmarks)."""
        tasks = [task for task in [self._runner, *self._batches, *self._senders] if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner, self._senders = None, []
        self._queue = asyncio.Queue()
        self._new_gates()

    def wake(self) -> None:
        """New rows were committed: look at the queue now instead of at the next poll."""
        self._wake.set()

    async def run_until_idle(self) -> None:
        """Deliver everything due now (retries that fall due meanwhile included), then return."""
        while True:
            if await self._claim_next():
                continue
            if self._batches:
                await self._wait_for_batches()
                continue
            return

    async def recover(self) -> int:
        """Rows left SENDING by a process that died (their lease ran out) go back to PENDING.

        Returns how many: each may have reached WeChat before the process died, so each may arrive twice.
        """
        async with self.sessions() as session, session.begin():
            count = await store.recover(session, now=self.clock.now())
        if count:
            self.counters.recovered += count
            log.warning("outbox: %d message(s) were in flight when a process stopped; sending them again, "
                        "so up to %d may arrive twice", count, count)
        return count

    # -- the loop

    async def _run(self) -> None:
        """Claim and deliver until stop(). A round that fails (the database locked or unreachable) is logged
        in one line and tried again after a short, growing pause; the loop itself never ends on an error."""
        loop = asyncio.get_running_loop()
        next_recovery = loop.time() + self.settings.outbox_recover_interval
        while not self._stopping:
            try:
                if self._recover_now or loop.time() >= next_recovery:
                    await self.recover()
                    self._recover_now = False
                    next_recovery = loop.time() + self.settings.outbox_recover_interval
                # Cleared before looking, so rows committed while we look still wake the next wait.
                self._wake.clear()
                claimed = await self._claim_next()
                self._failures.succeeded()
                if claimed:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.outbox_poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = self._failures.failed(error)
                if self._stopping:
                    break
                # stop() sets the wake event, and so does a commit that enqueued (the database works again).
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _wait_for_batches(self) -> None:
        while self._batches:
            await asyncio.gather(*list(self._batches), return_exceptions=True)

    def _start_senders(self) -> None:
        if not self._senders:
            self._senders = [asyncio.create_task(self._sender(), name=f"outbox-sender-{number}")
                             for number in range(max(1, self.settings.outbox_concurrency))]

    async def _stop_senders(self) -> None:
        senders, self._senders = self._senders, []
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

    async def _sender(self) -> None:
        while True:
            for plan in await self._queue.get():
                await self._send_plan(plan)
                plan.batch.settle()

    async def _send_plan(self, plan: _Plan) -> None:
        try:
            plan.outcome = await self._outcome_of(plan)
        except Exception as error:  # never lose the row, nor the sender
            if database_busy(error):
                # Nothing is wrong with the message (the token's row was locked, say): it goes back to
                # the queue untouched, as when sending is paused.
                log.warning("outbox: row %d held back: %s", plan.row.id, short_error(error))
                plan.outcome = _Outcome("release")
            else:
                log.exception("outbox: sending row %d failed unexpectedly", plan.row.id)
                plan.outcome = self._failure(plan.row, None, f"{UNEXPECTED}：{type(error).__name__}", True, False)

    def _new_gates(self) -> None:
        # A new batch is claimed as soon as one finishes sending, while the finished one is still being
        # recorded: waiting for the record would leave the senders idle. Batches not yet recorded are
        # bounded too, so a slow database cannot make claimed rows pile up in memory.
        in_flight = max(1, self.settings.outbox_batches_in_flight)
        self._sending = asyncio.Semaphore(in_flight)
        self._unrecorded = asyncio.Semaphore(2 * in_flight)

    def _safe_claim_size(self) -> int:
        """A batch must be sent well within its lease, even when the rate limit spaces the sends out."""
        size = max(1, self.settings.outbox_batch)
        rate = self.settings.outbox_rate
        if rate > 0:
            budget = rate * self.settings.outbox_lease / (4 * max(1, self.settings.outbox_batches_in_flight))
            size = max(1, min(size, int(budget)))
        return size

    async def _claim_next(self) -> bool:
        """Claim a batch and start delivering it; False when nothing is due (or sending is paused)."""
        if self._stopping or self._paused():
            return False
        await self._unrecorded.acquire()
        await self._sending.acquire()
        async with self._claiming:
            if self._stopping or self._paused():  # it may have changed while we waited for a gate
                self._sending.release()
                self._unrecorded.release()
                return False
            try:
                now = self.clock.now()
                async with self.sessions() as session, session.begin():
                    rows = await store.claim(
                        session, now=now, lease_until=now + timedelta(seconds=self.settings.outbox_lease),
                        limit=self._claim_size, urgent_only=quiet_until(now, self.settings) is not None)
            except BaseException:
                self._sending.release()
                self._unrecorded.release()
                raise
            if not rows:
                self._sending.release()
                self._unrecorded.release()
                return False
            self.in_flight += len(rows)
            self._start_senders()
            work = _Batch([self._plan(row, now) for row in rows])
            task = asyncio.create_task(self._deliver(work))
            self._batches.add(task)
            task.add_done_callback(lambda done: self._batch_done(done, work))
            return True

    def _sent_all(self, work: _Batch) -> None:
        if work.sending:
            work.sending = False
            self._sending.release()

    def _batch_done(self, task: asyncio.Task, work: _Batch) -> None:
        self._batches.discard(task)
        self._sent_all(work)
        self._unrecorded.release()
        for plan in work.plans:
            if plan.channel == CUSTOM and plan.row.openid:
                self._reserved[plan.row.openid] -= 1
                if self._reserved[plan.row.openid] <= 0:
                    del self._reserved[plan.row.openid]
        self.in_flight -= len(work.plans)
        if not task.cancelled() and task.exception() is not None:
            # Its rows stay SENDING; recover() picks them up when the lease runs out.
            log.error("outbox: a batch could not be recorded", exc_info=task.exception())

    # -- one batch

    async def _deliver(self, work: _Batch) -> None:
        for chain in work.chains:
            self._queue.put_nowait(chain)
        await work.done
        self._sent_all(work)
        await self._record(work.plans)

    def _plan(self, row: store.Claimed, now: datetime) -> _Plan:
        """Choose the channel before sending: the window's state as stored, plus what is in flight."""
        template_id = template_for(row.kind, self.settings)
        if row.openid is None:
            return _Plan(row, None, None, _Outcome("failed", error=UNBOUND))
        if row.subscribed is False:
            return _Plan(row, None, None, _Outcome("failed", error_code=43004, error=UNFOLLOWED))
        window_open = row.last_message_at is not None and now - row.last_message_at < WINDOW_LENGTH
        if window_open and row.window_sent + self._reserved[row.openid] < WINDOW_MESSAGES:
            self._reserved[row.openid] += 1
            return _Plan(row, CUSTOM, template_id)
        if template_id is not None:
            return _Plan(row, TEMPLATE, template_id)
        return _Plan(row, None, None, self._no_channel(row))

    async def _outcome_of(self, plan: _Plan) -> _Outcome:
        await self._limiter.take()
        if self._paused() or self._stopping:
            return _Outcome("release")
        return await self._send(plan)

    async def _send(self, plan: _Plan) -> _Outcome:
        row = plan.row
        window_closed = False
        try:
            if plan.channel == CUSTOM:
                try:
                    await self.client.send_text(row.openid, self._custom_text(row))
                    return _Outcome("sent", channel=CUSTOM, used_window=True)
                except (OutsideWindow, TooManyMessages) as refusal:
                    # The stored window was out of date (the member's window closed, or another sender
                    # used it up): the template channel is what WeChat allows now.
                    window_closed = True
                    if plan.template_id is None:
                        return self._no_channel(row, refusal)
                    await self._limiter.take()
            await self.client.send_template(row.openid, plan.template_id,
                                            self._template_fields(plan.template_id, self._template_data(row)),
                                            url=self._link(row))
            return _Outcome("sent", channel=TEMPLATE, window_closed=window_closed)
        except (QuotaExceeded, CredentialsRejected, TokenInvalid) as error:
            # Nothing about this member is wrong: every other message would meet the same refusal.
            self._pause(error)
            return _Outcome("release", window_closed=window_closed)
        except WeChatError as error:
            return self._failure(row, error.errcode, error.reason, error.transient, window_closed)

    def _link(self, row: store.Claimed) -> str | None:
        if self.link_for is None or row.ref is None:
            return None
        return self.link_for(row.ref, row.member_id, row.openid)

    def _custom_text(self, row: store.Claimed) -> str:
        """The text as a customer-service message: whole when it fits WeChat's limit, else cut, ending with
        its page's link (or a note that the rest was cut)."""
        if utf8_len(row.text) <= CUSTOM_TEXT_MAX_BYTES:
            return row.text
        link = self._link(row)
        tail = f"……\n全文：{link}" if link else TRIMMED_NOTE
        return fit_bytes(row.text, CUSTOM_TEXT_MAX_BYTES - utf8_len(tail)) + tail

    def _template_data(self, row: store.Claimed) -> dict[str, str]:
        # A broadcast's rows share one JSON text: decode it once, not once per recipient.
        if not row.template_data:
            return {"content": template_field(row.text)}
        cached = self._decoded
        if cached is None or cached[0] != row.template_data:
            cached = self._decoded = (row.template_data, json.loads(row.template_data))
        return cached[1]

    def _template_fields(self, template_id: str, data: dict[str, str]) -> dict[str, str]:
        """Our fields under the names the account's template uses (settings.wechat_template_fields)."""
        names = self.settings.wechat_template_fields.get(template_id)
        if not names:
            return data
        return {names[field]: value for field, value in data.items() if field in names}

    @staticmethod
    def _no_channel(row: store.Claimed, refusal: WeChatError | None = None) -> _Outcome:
        """Neither the window nor a template reaches the member: a message that may wait waits for their
        next message, any other fails. refusal: WeChat's answer to the customer-service message, if asked."""
        closed = refusal is not None
        if row.may_wait:
            return _Outcome("waiting", window_closed=closed)
        code = refusal.errcode if closed else None
        return _Outcome("failed", error_code=code, error=NO_CHANNEL, window_closed=closed)

    def _failure(self, row: store.Claimed, code: int | None, reason: str, transient: bool,
                 window_closed: bool) -> _Outcome:
        if not transient:
            return _Outcome("failed", error_code=code, error=reason, window_closed=window_closed)
        if row.attempts >= self.settings.outbox_max_attempts:
            return _Outcome("failed", error_code=code, error=GAVE_UP.format(reason=reason, attempts=row.attempts),
                            window_closed=window_closed)
        return _Outcome("retry", error_code=code, error=reason, window_closed=window_closed)

    def _retry_at(self, row: store.Claimed, now: datetime) -> datetime:
        delay = min(self.settings.outbox_backoff * 2 ** (row.attempts - 1), self.settings.outbox_backoff_max)
        return due_time(now + timedelta(seconds=delay), urgent=row.urgent, settings=self.settings)

    async def _record(self, plans: list[_Plan]) -> None:
        now = self.clock.now()
        sent, failed, retry, release, waiting = [], [], [], [], []
        window_used: Counter[str] = Counter()
        closed: set[str] = set()
        for plan in plans:
            row, outcome = plan.row, plan.outcome
            if outcome.kind == "sent":
                sent.append(store.Sent(row.id, outcome.channel))
            elif outcome.kind == "failed":
                failed.append(store.Failed(row.id, outcome.error_code, outcome.error))
            elif outcome.kind == "retry":
                retry.append(store.Retry(row.id, self._retry_at(row, now), outcome.error_code, outcome.error))
            elif outcome.kind == "waiting":
                waiting.append(row.id)
            else:
                release.append(row.id)
            if outcome.used_window:
                window_used[row.openid] += 1
            if outcome.window_closed:
                closed.add(row.openid)
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                async with self.sessions() as session, session.begin():
                    await store.record(session, now=now, sent=sent, failed=failed, retry=retry, release=release,
                                       waiting=waiting, window_used=window_used, windows_closed=closed)
                break
            except Exception as error:
                # Unrecorded rows would be recovered and sent again once their lease ran out: worth a wait.
                if attempt == RECORD_ATTEMPTS:
                    raise
                log.warning("outbox: recording a batch failed (attempt %d: %s); trying again", attempt,
                            short_error(error), exc_info=None if database_busy(error) else error)
                await asyncio.sleep(0.5 * 2 ** attempt)
        counters = self.counters
        counters.sent += len(sent)
        counters.failed += len(failed)
        counters.retried += len(retry)
        counters.held += len(release)
        counters.waiting += len(waiting)
        counters.by_channel.update(item.channel for item in sent)
        if failed or retry or waiting:
            log.info("outbox: batch of %d: %d sent, %d failed, %d to retry, %d held back, %d waiting for the "
                     "member's next message", len(plans), len(sent), len(failed), len(retry), len(release),
                     len(waiting))

    # -- pausing

    def _paused(self) -> bool:
        return self._paused_until is not None and self.clock.now() < self._paused_until

    def _pause(self, error: WeChatError) -> None:
        if self._paused():
            return
        self._paused_until = self.clock.now() + timedelta(seconds=self.settings.outbox_pause)
        log.warning("outbox: sending paused until %s: %s; messages stay queued",
                    self._paused_until.isoformat(timespec="seconds"), error)
