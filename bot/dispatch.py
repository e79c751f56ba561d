"""Routing messages to feature handlers, exactly once, within the reply budget.

A feature builds a Router and registers handlers with filters:

    router = Router("membership")

    @router.text("我的", bound=True, usage="我的", summary="查看我的党员信息")
    async def show_me(member): ...

The Dispatcher records every message before handling it (the inbound log's unique key makes exactly one
copy the owner), runs the first matching handler inside one database transaction together with the
dialog state and the stored reply, and answers within the reply budget: a handler that takes longer
keeps running, the platform gets an empty answer, and the reply is pushed when it is ready.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from datetime import date, datetime, timedelta, timezone
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Configs, Settings, SettingsT
from bot.group_commit import GroupCommit
from bot.messages import Kind, Message
from bot.speech.listen import (CANNOT_HEAR, CANNOT_HEAR_AGAIN, CANNOT_HEAR_REPLY, LISTENING, NOT_HEARD, NOT_HEARD_REPLY,
                               menu_hint)
from bot.speech.listen import Listener as VoiceListener
from bot.outbox import Outgoing, hand_over_waiting
from bot.outbox import enqueue as enqueue_outgoing
from bot.text import TRIMMED_NOTE, normalize_input, split_reply, utf8_len
from storage import dialogs, identities, inbound, signed_requests
from storage.db import READ_ONLY, database_busy, engine_of, short_error
from storage.driver import Driver, driver_transaction
from storage.models import InboundMessage, InboundStatus, Member, Role, WeChatIdentity
from storage.signed_requests import Replayed, Seen
from storage.transaction import MessageTransaction

log = logging.getLogger(__name__)

SORRY = "抱歉，系统出了点问题，这条消息没有处理成功。请稍后再试，或联系支部书记。"
NOT_UNDERSTOOD = "没有听懂“{text}”。回复 帮助 查看可以做什么。"
UNSUPPORTED = "暂时不能处理这类消息。回复 帮助 查看可以做什么。"
# A message's CreateTime is trusted to shorten its reply budget only this close to our clock (seconds).
CLOCK_SLACK = 5.0
TRUSTED_CREATION_AGE = 60.0
# How long WeChat waits for a passive reply before it sends the message again (three tries in all).
WECHAT_WAIT = 5.0
NEED_BINDING = "这项功能需要先绑定党员身份。回复 绑定 开始。"
WRONG_ROLE = "这项功能只有{roles}可以使用。"
CANCELLED = "已取消。"
NOTHING_TO_CANCEL = "当前没有进行中的操作。"
DIALOG_EXPIRED = "上一步操作因长时间未回复已结束，请重新开始。"
CANCEL_WORDS = ("取消", "退出", "算了")
# The member page kind of a reply too long for chat ("reply:<inbound message id>").
REPLY_PAGE = "reply"
# A dialog's data may hold, under this key, what to answer when the user cancels it.
CANCEL_TEXT = "cancel_text"
# And under this one, the options of the numbered question its step asked (bot/dialogs.py, offer).
CHOICES = "choices"
# And under this one (true), that its end by time is silent: a step that only waits for something optional
# (photos after a visit) must not greet the next message with "上一步操作因长时间未回复已结束".
QUIET_END = "quiet_end"

# Things that happen in one feature that others may want to act on, in the same transaction.
# MEMBER_BOUND (member=Member): a follower just bound to this member (the late binder's catch-up).
MEMBER_BOUND = "member_bound"
# WHAT_IS_WAITING (member=Member): what this member could do now, one line each ("回复 签到 —— …"), the most
# urgent first; a greeting lists them.
WHAT_IS_WAITING = "what_is_waiting"



# ---------------------------------------------------------------- filters


class Refusal(Exception):
    """Ends a handler with this reply: a refusal, or a question back ("which meeting?"), raised from
    wherever it is found instead of travelling up as a `Thing | str` return. What the handler changed
    before raising (its dialog, its writes) stands, as with any reply."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class SkipHandler(Exception):
    """Raised by a handler that matched a message but finds it is not its own (a photo sent when no
    meeting is on may be a care visit's): the next matching handler, else the fallback, gets it. Raise it
    before writing or replying anything."""


class Filter:
    """A test on a message. Returns False/None (no match), True, or a dict of values for the handler.

    `kinds`: the kinds of message it can match at all (None: it may match any); the router never asks a
    handler about a message of another kind."""

    kinds: frozenset[Kind] | None = None

    def __call__(self, message: Message, ctx: "Context") -> bool | dict | None:
        raise NotImplementedError

    def __and__(self, other: "Filter") -> "Filter":
        return _All(self, other)

    def __or__(self, other: "Filter") -> "Filter":
        return _Any(self, other)

    def __invert__(self) -> "Filter":
        return _Not(self)


def _both(left: frozenset[Kind] | None, right: frozenset[Kind] | None) -> frozenset[Kind] | None:
    """The kinds two filters that must both match can match."""
    return right if left is None else left if right is None else left & right


@dataclass(frozen=True)
class _All(Filter):
    left: Filter
    right: Filter

    @property
    def kinds(self) -> frozenset[Kind] | None:
        return _both(self.left.kinds, self.right.kinds)

    def __call__(self, message, ctx):
        first = self.left(message, ctx)
        if not first:
            return None
        second = self.right(message, ctx)
        if not second:
            return None
        values = {**(first if isinstance(first, dict) else {}), **(second if isinstance(second, dict) else {})}
        return values or True


@dataclass(frozen=True)
class _Any(Filter):
    left: Filter
    right: Filter

    @property
    def kinds(self) -> frozenset[Kind] | None:
        left, right = self.left.kinds, self.right.kinds
        return None if left is None or right is None else left | right

    def __call__(self, message, ctx):
        return self.left(message, ctx) or self.right(message, ctx)


@dataclass(frozen=True)
class _Not(Filter):
    inner: Filter

    def __call__(self, message, ctx):
        return not self.inner(message, ctx)


# The kinds of message that carry text (typed_text).
TEXT_KINDS = frozenset({Kind.TEXT, Kind.VOICE})


def typed_text(message: Message) -> str | None:
    """What the user typed or said (voice recognition), normalized for matching; None for other messages."""
    if message.kind in TEXT_KINDS and message.text:
        return _normalized(message.text)
    return None


@functools.lru_cache(maxsize=64)
def _normalized(text: str) -> str:
    # Every filter asks for the normalized text; a long message is folded once, not once per handler.
    return normalize_input(text)


def written_text(message: Message) -> str | None:
    """What the user typed or said exactly as written, blank lines around it aside: what a feature
    stores, sends and exports. None for other messages."""
    if message.kind in (Kind.TEXT, Kind.VOICE) and message.text.strip():
        return message.text.strip()
    return None


def _written_after(written: str, word: str) -> str:
    """The part of written text after the command word it starts with (matched in normalized form)."""
    for end in range(1, len(written) + 1):
        head = normalize_input(written[:end])
        if head == word:
            return written[end:].strip()
        if len(head) > len(word):
            break
    return written.strip()


class Command(Filter):
    """A command word with its Chinese aliases. With takes_args, the rest of the text is `args`
    (normalized, for reading names and numbers) and `written_args` (as written, for storing):
    "绑定 张三 123456" and "签到123456" both match (people often leave out the space). `command` is the
    word matched: when several commands match ("签到情况" is also 签到 + "情况"), the longest wins,
    whatever order the features were listed in."""

    kinds = TEXT_KINDS

    def __init__(self, *words: str, takes_args: bool = False) -> None:
        self.words = tuple(normalize_input(word) for word in words)
        self._word_set = frozenset(self.words)
        self.takes_args = takes_args

    def may_match(self, text: str | None, starts: frozenset[str]) -> bool:
        """Whether this command can match the (normalized) text, given the command words that take arguments the
        text starts with: the router's quick test, so that most handlers are never asked."""
        if text is None:
            return False
        return text in self._word_set or (self.takes_args and not self._word_set.isdisjoint(starts))

    def __call__(self, message, ctx):
        text = typed_text(message)
        if text is None:
            return None
        for word in self.words:
            if text == word:
                return {"args": "", "written_args": "", "command": word}
            if self.takes_args and text.startswith(word):
                return {"args": text[len(word):].strip(), "command": word,
                        "written_args": _written_after(written_text(message) or "", word)}
        return None


class Regex(Filter):
    kinds = TEXT_KINDS

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __call__(self, message, ctx):
        text = typed_text(message)
        match = self.pattern.fullmatch(text) if text is not None else None
        return {"match": match} if match else None


class AnyCommand(Filter):
    """The text is one of the registered commands, with or without its arguments ("签到 123456"): for a
    dialog step that reads free text but should let a command through."""

    kinds = TEXT_KINDS

    def __call__(self, message, ctx):
        return any(isinstance(check, Command) and check(message, ctx)
                   for handler in ctx.catalog if handler.dialog is None for check in handler.filters)


class Choice(Filter):
    """A numeric answer to a numbered question ("回复 1 确认，回复 2 取消")."""

    kinds = TEXT_KINDS

    def __init__(self, *choices: int) -> None:
        self.choices = frozenset(choices)

    def __call__(self, message, ctx):
        text = typed_text(message)
        # ASCII digits only: "፩" or "²" pass str.isdigit() but not int().
        if text and text.isascii() and text.isdigit() and len(text) <= 9 and \
                (not self.choices or int(text) in self.choices):
            return {"choice": int(text)}
        return None


class AnyText(Filter):
    """Any typed or spoken text: `text` normalized for reading answers, `written` as written for storing."""

    kinds = TEXT_KINDS

    def __call__(self, message, ctx):
        text = typed_text(message)
        return {"text": text, "written": written_text(message)} if text else None


class Click(Filter):
    """A tap on a custom-menu button with one of these keys."""

    kinds = frozenset({Kind.EVENT})

    def __init__(self, *keys: str) -> None:
        self.keys = frozenset(keys)

    def __call__(self, message, ctx):
        return message.kind == Kind.EVENT and message.event == "click" and message.event_key in self.keys


class EventType(Filter):
    kinds = frozenset({Kind.EVENT})

    def __init__(self, *events: str) -> None:
        self.events = frozenset(events)

    def __call__(self, message, ctx):
        return message.kind == Kind.EVENT and message.event in self.events


class Scene(Filter):
    """A parametric QR code whose scene starts with prefix (a SCAN, or a follow through the code)."""

    kinds = frozenset({Kind.EVENT})

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, message, ctx):
        if message.kind == Kind.EVENT and message.scene.startswith(self.prefix):
            return {"scene": message.scene[len(self.prefix):]}
        return None


class MemberRole(Filter):
    """The sender is a bound member with one of these roles (none given: any role). Unlike a handler's
    roles=, a mismatch is no refusal: the message goes on to the other handlers."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(role.value for role in roles)

    def __call__(self, message, ctx):
        return ctx.member is not None and (not self.roles or ctx.member.role in self.roles)


class MessageKind(Filter):
    def __init__(self, *kinds: Kind) -> None:
        self.kinds = frozenset(kinds)

    def __call__(self, message, ctx):
        return message.kind in self.kinds


# ---------------------------------------------------------------- dialogs and context


@dataclass
class Dialog:
    """The user's place in a multi-step dialog. Changes are saved with the handler's transaction."""

    name: str | None = None
    step: str | None = None
    data: dict = field(default_factory=dict)
    changed: bool = False
    # A dialog that timed out before this message; the fallback tells the user.
    expired: bool = False

    @property
    def active(self) -> bool:
        return self.name is not None

    # Positional-only: a dialog's own data may well hold a "name" or a "step".
    def start(self, name: str, step: str, /, **data: Any) -> None:
        _check_step(name, step)
        self.name, self.step, self.data, self.changed = name, step, dict(data), True

    def goto(self, step: str, /, **data: Any) -> None:
        self.step = step
        # A numbered question belongs to the step that asked it.
        self.data.pop(CHOICES, None)
        self.data.update(data)
        self.changed = True

    def finish(self) -> None:
        self.name, self.step, self.data, self.changed = None, None, {}, True

    def snapshot(self) -> tuple:
        return self.name, self.step, dict(self.data), self.changed

    def restore(self, snapshot: tuple) -> None:
        self.name, self.step, data, self.changed = snapshot
        self.data = dict(data)


def _check_step(dialog: str | None, step: str | None) -> None:
    """A dialog declared with its steps (bot.dialogs.Steps) refuses a step it does not have."""
    check = getattr(dialog, "check", None)
    if check is not None:
        check(step)


# A text fallback's work done before the message's transaction: (text, today, what features provide) → result.
Prepare = Callable[[str, date, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class CommandHelp:
    usage: str
    summary: str
    # Listed only to followers who have not bound yet (绑定 means nothing to a bound member).
    unbound_only: bool = False


class Context:
    """What a handler may use: the member, a database session, the clock, and ways to answer."""

    def __init__(self, *, message: Message, transaction: MessageTransaction, clock: Clock, identity: WeChatIdentity,
                 member: Member | None, dialog: Dialog, catalog: list["Handler"], settings: Any,
                 received_at: datetime | None = None,
                 listeners: dict[str, list["Listener"]] | None = None,
                 configs: Configs | None = None, provided: dict[str, Any] | None = None,
                 reminder_kinds: list[ReminderKind] | None = None) -> None:
        self.message = message
        self.received_at = received_at or clock.now()
        self._transaction = transaction
        # Statements straight on the driver, in the message's transaction (storage.driver).
        self.driver: Driver = transaction.driver
        self.clock = clock
        self.identity = identity
        self.member = member
        self.dialog = dialog
        # The settings of the feature whose handler is running (a subclass of the core Settings).
        self.settings = settings
        self.configs = configs or Configs(settings)
        # What features provide to handlers by name (the Q&A index…), set by their start-up hooks.
        self.provided = provided if provided is not None else {}
        self._catalog = catalog
        self._listeners = listeners or {}
        self._reminder_kinds = reminder_kinds or []
        self.replies: list[str] = []
        self.outgoing: list[Outgoing] = []
        # Set by a handler that made outbox rows due by other means than enqueue (wakes the outbox).
        self.outbox_touched = False
        # Work left for after the commit, with the settings of the feature that left it.
        self.deferred: list[tuple[Any, Callable[[JobContext], Awaitable[Any]]]] = []
        # What the text fallback prepared before the transaction (Router.text_fallback's prepare), if it ran.
        self.prepared: Any = None

    @property
    def session(self) -> AsyncSession:
        """The message's ORM session, in its transaction: opened the first time a handler asks for it."""
        return self._transaction.session

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def config(self, kind: type[SettingsT]) -> SettingsT:
        """Another feature's settings, by their class (a feature's own come as ctx.settings)."""
        return self.configs.of(kind)

    def local(self, moment: datetime) -> datetime:
        """moment in the configured zone (ZHIBU_TIMEZONE)."""
        return self.settings.local(moment)

    @property
    def today(self) -> date:
        """Today's date where the members are."""
        return self.local(self.now).date()

    @property
    def sent_at(self) -> datetime:
        """When the user sent this message: the platform's CreateTime, bounded by when we received it
        (never later, and never earlier than the signed-timestamp window allows). A check-in's time is
        this, not when a delayed handler got to it: nobody is late because the server was busy."""
        received = self.received_at
        if self.message.created_at <= 0:
            return received
        try:
            created = datetime.fromtimestamp(self.message.created_at, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return received
        earliest = received - timedelta(seconds=getattr(self.settings, "timestamp_window", 300))
        return min(received, max(created, earliest))

    def reply(self, text: str) -> None:
        self.replies.append(text)

    def after_commit(self, work: Callable[[JobContext], Awaitable[Any]]) -> None:
        """Run work in the background once this message's changes are committed: for calls to the
        platform (never made inside a transaction). It is not retried; it should enqueue its result."""
        self.deferred.append((self.settings, work))

    async def announce(self, event: str, **facts: Any) -> list[str]:
        """Tell every feature listening for event (see Router.when); what they add to the reply, in
        router order. Their writes go into this message's transaction."""
        said = []
        for listener in self._listeners.get(event, []):
            own = self.settings
            self.settings = self.configs.of(listener.settings_type)
            try:
                text = await listener.callback(self, **facts)
            finally:
                self.settings = own
            if text:
                said.append(text)
        return said

    def enqueue(self, item: Outgoing) -> None:
        """Queue a message for the outbox; it is written in this message's transaction and commits with it."""
        self.outgoing.append(item)

    @property
    def catalog(self) -> list["Handler"]:
        """Every registered handler, in the order they are tried."""
        return self._catalog

    def reminder_kinds(self) -> list[str]:
        """The kinds of reminder this member can get, as features declared them (Router.reminds)."""
        return [kind.label for kind in self._reminder_kinds if kind.reaches(self.member)]

    def commands(self) -> list[CommandHelp]:
        """The documented commands this user may run, in registration order."""
        seen: list[CommandHelp] = []
        for handler in self._catalog:
            entry = handler.help
            if entry is None or entry in seen or not handler.permits(self.member):
                continue
            if entry.unbound_only and self.member is not None:
                continue
            seen.append(entry)
        return seen


# ---------------------------------------------------------------- routers and handlers


@dataclass(frozen=True)
class ReminderKind:
    """A kind of reminder a feature sends (Outgoing(reminder=True)), as 关闭提醒's reply names it; roles:
    only members with one of these roles get it (None: everyone)."""

    label: str
    roles: frozenset[Role] | None = None

    def reaches(self, member: Member | None) -> bool:
        return self.roles is None or (member is not None and Role(member.role) in self.roles)


@dataclass(frozen=True)
class Listener:
    """A feature's reaction to an announced event (Router.when), run with that feature's settings."""

    callback: Callable[..., Awaitable[str | None]]
    settings_type: type[Settings] | None


# Names a handler may ask for; each maps to how the Context provides it.
_INJECTABLE: dict[str, Callable[[Context], Any]] = {
    "ctx": lambda ctx: ctx,
    "message": lambda ctx: ctx.message,
    "written": lambda ctx: written_text(ctx.message),
    "session": lambda ctx: ctx.session,
    "clock": lambda ctx: ctx.clock,
    "now": lambda ctx: ctx.now,
    "member": lambda ctx: ctx.member,
    "identity": lambda ctx: ctx.identity,
    "dialog": lambda ctx: ctx.dialog,
    "settings": lambda ctx: ctx.settings,
}


def _provide(ctx: Context, name: str) -> Any:
    """An argument a handler names: from the context, else from what features provide."""
    if name in _INJECTABLE:
        return _INJECTABLE[name](ctx)
    return ctx.provided[name]


@dataclass
class Handler:
    callback: Callable[..., Awaitable[Any]]
    filters: tuple[Filter, ...]
    roles: frozenset[Role] | None
    bound: bool
    dialog: str | None
    step: str | None
    help: CommandHelp | None
    # The settings class of the feature that registered it (None: the core Settings).
    settings_type: type[Settings] | None = None
    # The parameters the callback names, and whether each has a default.
    wants: tuple[tuple[str, bool], ...] = ()
    # Its first filter when that is a command word: the router asks it only about texts that command can match.
    leading: Command | None = None
    # The kinds of message its filters can match together (None: any).
    kinds: frozenset[Kind] | None = None

    def __post_init__(self) -> None:
        parameters = inspect.signature(self.callback).parameters.values()
        self.wants = tuple((p.name, p.default is not inspect.Parameter.empty) for p in parameters)
        self.leading = self.filters[0] if self.filters and isinstance(self.filters[0], Command) else None
        self.kinds = functools.reduce(_both, (check.kinds for check in self.filters), None)

    def may_match(self, kind: Kind, text: str | None, starts: frozenset[str]) -> bool:
        """The router's quick test: whether match() can say yes to a message of this kind and text (starts: the
        command words taking arguments that the text starts with)."""
        return (self.kinds is None or kind in self.kinds) and (self.leading is None
                                                               or self.leading.may_match(text, starts))

    def match(self, message: Message, ctx: Context) -> dict | None:
        if self.dialog is not None and (ctx.dialog.name != self.dialog or (self.step and ctx.dialog.step != self.step)):
            return None
        values: dict = {}
        for check in self.filters:
            result = check(message, ctx)
            if not result:
                return None
            if isinstance(result, dict):
                values.update(result)
        return values

    def permits(self, member: Member | None) -> bool:
        if (self.bound or self.roles) and member is None:
            return False
        return self.roles is None or Role(member.role) in self.roles

    async def run(self, ctx: Context, values: dict) -> Any:
        ctx.settings = ctx.configs.of(self.settings_type)
        arguments = {}
        for name, optional in self.wants:
            if name in values:
                arguments[name] = values[name]
            elif name in _INJECTABLE or name in ctx.provided:
                arguments[name] = _provide(ctx, name)
            elif not optional:
                raise TypeError(f"{self.callback.__qualname__} asks for {name!r}, which no filter or context gives")
        return await self.callback(**arguments)


class Channel(Protocol):
    """What a feature may ask of the messaging platform itself, outside any transaction."""

    async def qr_code_url(self, scene: str, expire_seconds: int) -> str:
        """The image address of a temporary parametric QR code whose scans arrive with this scene."""


@dataclass(frozen=True)
class JobContext:
    """What a scheduled job, or work a handler left for after its commit, may use."""

    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    # The job's own feature's settings (a subclass of the core Settings).
    settings: Any
    channel: Channel | None = None
    configs: Configs | None = None
    provided: dict[str, Any] = field(default_factory=dict)

    def config(self, kind: type[SettingsT]) -> SettingsT:
        """A feature's settings by their class."""
        return (self.configs or Configs(self.settings)).of(kind)

    def for_feature(self, kind: type[Settings] | None) -> "JobContext":
        """This context with the settings of the feature whose job or work runs in it."""
        if self.configs is None:
            return self
        return replace(self, settings=self.configs.of(kind))


@dataclass(frozen=True)
class JobSpec:
    """A periodic job a feature declares next to its handlers; bot/scheduler.py runs it."""

    name: str  # "<feature>.<job>", also the key for overriding its schedule in configuration
    func: Callable[[JobContext], Awaitable[Any]]
    trigger: str  # an APScheduler trigger: "interval" or "cron"
    trigger_args: dict
    description: str
    settings_type: type[Settings] | None = None


@dataclass
class Runtime:
    """What a feature's start-up hook (Router.lifespan) gets: its settings, the database, the clock, and
    `provide` to hand handlers, jobs and pages something by name (the Q&A index as `answers`)."""

    settings: Any
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    provided: dict[str, Any]
    # What `zhibu content reload` (SIGHUP to `zhibu serve`) runs: (what it reloads, how).
    reloaders: list[tuple[str, Callable[[], Awaitable[Any]]]] = field(default_factory=list)

    def on_reload(self, what: str, reload: Callable[[], Awaitable[Any]]) -> None:
        """Run reload when the operator asks the running service to reload what it read from files."""
        self.reloaders.append((what, reload))

    def provide(self, name: str, value: Any) -> None:
        if name in _INJECTABLE:
            raise ValueError(f"{name!r} is a context argument; a feature cannot provide it")
        if name in self.provided:
            raise ValueError(f"{name!r} is provided twice")
        self.provided[name] = value


class Router:
    """Everything one feature adds to the service: its chat handlers (tried in the order registered, a
    longer command before a shorter one), the jobs it schedules, its web pages (`router.web`, an aiohttp
    RouteTableDef), its settings class, start-up hooks, and what it announces or listens for.

    `settings`: a subclass of bot.config.Settings with the feature's own fields; its handlers, jobs and hooks
    get an instance as `settings`.
    """

    def __init__(self, name: str, *, settings: type[Settings] | None = None, templates: Path | None = None) -> None:
        self.name = name
        self.settings = settings
        # The folder of this feature's page templates (Jinja2), beside its code.
        self.templates = templates
        # Member pages by the kind of thing they show ("notice" for ref "notice:12"): handler, settings class.
        self.pages: dict[str, tuple[Callable[..., Awaitable[Any]], type[Settings] | None]] = {}
        self.handlers: list[Handler] = []
        self.jobs: list[JobSpec] = []
        self.listeners: dict[str, list[Listener]] = {}
        self.fallback: Handler | None = None
        self.prepare_fallback: Prepare | None = None
        self.web = web.RouteTableDef()
        self.hooks: list[Callable[[Runtime], AsyncIterator[None]]] = []
        self.reminder_kinds: list[ReminderKind] = []

    def page(self, kind: str):
        """The member page for things of this kind (outbox rows with ref "<kind>:<id>"): a template message
        about one links to it, signed for its recipient. `async def f(page: MemberPage) -> web.Response`;
        it serves the GET and the form's POST (bot/web/pages.py)."""
        def register(handler):
            self.pages[kind] = (handler, self.settings)
            return handler
        return register

    def reminds(self, label: str, *, roles: Iterable[Role] | None = None) -> None:
        """Declare a kind of reminder this feature sends, so that 关闭提醒 can say what stops."""
        self.reminder_kinds.append(ReminderKind(label, frozenset(roles) if roles is not None else None))

    def lifespan(self, hook: Callable[[Runtime], AsyncIterator[None]]):
        """Register an async generator over a Runtime: what comes before its `yield` runs at start-up,
        before any message or request is served (an exception stops the start); what comes after, at
        shutdown. Hooks start in router order and stop in reverse."""
        self.hooks.append(hook)
        return hook

    def text_fallback(self, *, prepare: Prepare | None = None):
        """The one handler for text nothing else took (Q&A). The dispatcher has already answered what is
        no question: 取消 with nothing to cancel, a dialog that timed out, a bare number. It gets `text`
        and `written`, like AnyText.

        prepare: `async def f(text, today, provided)` doing the handler's slow work (a search) before the
        message's transaction opens, for a text that will probably reach the fallback (no command, no dialog
        open); its result reaches the handler as `prepared` (None when it did not run). A transaction holds
        SQLite's one write lock, so nothing slow should run inside one."""
        def register(callback):
            self.fallback = Handler(callback=callback, filters=(AnyText(),), roles=None, bound=False, dialog=None,
                                    step=None, help=None, settings_type=self.settings)
            self.prepare_fallback = prepare
            return callback
        return register

    def when(self, event: str):
        """Act on something another feature announces (ctx.announce): @router.when(MEMBER_BOUND) over
        `async def f(ctx, member) -> str | None`; a text returned is added to that feature's reply."""
        def register(listener):
            self.listeners.setdefault(event, []).append(Listener(listener, self.settings))
            return listener
        return register

    def job(self, name: str, *, trigger: str = "interval", description: str = "", **trigger_args):
        """Declare a periodic job: @router.job("report", minutes=5) or trigger="cron", hour=8."""
        def register(func):
            self.jobs.append(JobSpec(f"{self.name}.{name}", func, trigger, trigger_args, description, self.settings))
            return func
        return register

    def on(self, *filters: Filter, roles: Iterable[Role] | None = None, bound: bool = False,
           dialog: str | None = None, step: str | None = None, usage: str | None = None,
           summary: str | None = None, unbound_only: bool = False):
        _check_step(dialog, step)

        def register(callback):
            self.handlers.append(Handler(
                callback=callback, filters=filters, roles=frozenset(roles) if roles is not None else None,
                bound=bound, dialog=dialog, step=step,
                help=CommandHelp(usage, summary or "", unbound_only) if usage else None,
                settings_type=self.settings,
            ))
            return callback
        return register

    def text(self, *words: str, takes_args: bool = False, **options):
        return self.on(Command(*words, takes_args=takes_args), **options)

    def click(self, *keys: str, **options):
        return self.on(Click(*keys), **options)

    def event(self, *events: str, **options):
        return self.on(EventType(*events), **options)


# ---------------------------------------------------------------- the dispatcher


async def settled_within(future: asyncio.Future, seconds: float) -> bool:
    """Wait up to seconds for future, never cancelling it (other copies of the message wait for it too, and the
    handling goes on when a request is cancelled); whether it is done. One timer and one callback: wait_for over
    shield, which does the same, costs two more futures and three more callbacks on every message."""
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    timer = loop.call_later(seconds, wake)
    future.add_done_callback(wake)
    try:
        await woken
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
    return future.done()


@dataclass
class _InFlight:
    """A message this process is handling (or waiting on), shared by every copy that arrives."""

    future: asyncio.Future
    # Done once the message is recorded (claimed here, or found claimed by another handling): from then on a
    # crash cannot lose it, and only then may WeChat be told `success`.
    recorded: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    late: bool = False
    # The passive reply when the budget runs out first (None: "success", nothing shown); the real reply
    # is pushed either way.
    interim: str | None = None
    # Copies of the message whose request is still waiting for the passive reply.
    waiting: int = 0
    # When (the loop's clock) the budget of the copy that may wait longest runs out.
    deadline: float = 0.0

    @property
    def passive(self) -> bool:
        """Whether a passive reply reaches someone: the budget has not run out and a copy still waits (WeChat
        hung up on every copy so far; a retry that comes before the reply is ready takes it).

        The clock is read as well as `late`: under load the loop runs a timer late, and a reply ready after
        the budget but before the timer fired would go out passively when WeChat may have hung up already."""
        return not self.late and self.waiting > 0 and asyncio.get_running_loop().time() < self.deadline
    # When the webhook received the message (for a recovered orphan: when it was first recorded).
    received_at: datetime | None = None


# One request's write as it comes in: the message to claim (None: a copy of a message already in flight here) and,
# in plaintext mode, the request's signed query to admit.
Intake = tuple[dict | None, Seen | None]


async def intake_rows(sessions: async_sessionmaker[AsyncSession], items: list[Intake]) -> list[inbound.Claim | bool]:
    """Admit a batch of requests' signed queries and claim their messages in one transaction: for each item, False
    if its query was seen before with another body (its message is not claimed), True for an admitted copy with
    nothing to claim, else its message's Claim."""
    signed = [seen for _, seen in items if seen is not None]
    async with driver_transaction(engine_of(sessions)) as driver:
        verdicts = iter(await signed_requests.admit_on(driver, signed) if signed else ())
        admitted = [seen is None or next(verdicts) for _, seen in items]
        rows = [row for (row, _), ok in zip(items, admitted) if ok and row is not None]
        claims = await inbound.claim_on(driver, rows)
    claims = await inbound.with_existing(sessions, rows, claims)
    return [claims[row["dedup_key"]] if ok and row is not None else ok for (row, _), ok in zip(items, admitted)]


def _role_names(roles: frozenset[Role]) -> str:
    return "、".join(role.value for role in Role if role in roles)


# Handlings that wait at the pool for a connection besides those holding one (Dispatcher.handling_slots): enough
# to keep the loop busy while one waits, few enough that the pool's queue is a few milliseconds long.
HANDLINGS_QUEUED = 32

# How many distinct texts' routes a dispatcher keeps (_candidates); past it, it starts again. Only texts this short
# are kept: commands and the answers to them come again and again, a question seldom does, and a message may be tens of
# thousands of characters long (4,096 of those would be a lot of memory to keep for nothing). A few hundred KB at most.
ROUTES_KEPT = 4096
ROUTE_TEXT_KEPT = 40


class Dispatcher:
    def __init__(self, routers: Iterable[Router], *, sessions: async_sessionmaker[AsyncSession], clock: Clock,
                 settings: Any, reply_max_bytes: int = 2048, max_parts: int = 5, configs: Configs | None = None,
                 provided: dict[str, Any] | None = None,
                 intake: async_sessionmaker[AsyncSession] | None = None) -> None:
        self.routers = list(routers)
        self.sessions = sessions
        # Where messages are claimed and copies look up their stored answer (and the webhook records signed
        # requests): on PostgreSQL a pool of its own (bot.app), so that in a peak the claim of a new message never
        # queues behind the handling of earlier ones for a connection. Handling waits; claiming must not, or
        # WeChat's five seconds pass with the message not even recorded, and its retries pile onto the queue.
        self.intake = intake or sessions
        self.clock = clock
        self.settings = settings
        self.configs = configs or Configs(settings)
        self.provided = provided if provided is not None else {}
        self.reply_max_bytes = reply_max_bytes
        self.max_parts = max_parts
        # Called after a handler's enqueued messages committed (the outbox's wake-up).
        self.on_enqueued: Callable[[], None] | None = None
        # The platform, for work handlers leave for after their commit; set by the composition root.
        self.channel: Channel | None = None
        # (ref, member id, openid) → a signed page address; set by the composition root when pages are served.
        self.link_for: Callable[[str, int | None, str | None], str | None] | None = None
        self.handlers = [handler for router in self.routers for handler in router.handlers]
        self._free_handlers = [handler for handler in self.handlers if handler.dialog is None]
        self.reminder_kinds = [kind for router in self.routers for kind in router.reminder_kinds]
        self.listeners: dict[str, list[Listener]] = {}
        for router in self.routers:
            for event, listeners in router.listeners.items():
                self.listeners.setdefault(event, []).extend(listeners)
        fallbacks = [router.fallback for router in self.routers if router.fallback is not None]
        if len(fallbacks) > 1:
            raise ValueError("only one feature may take the text nothing else matched")
        self.text_fallback = fallbacks[0] if fallbacks else None
        self._prepare_fallback = next((router.prepare_fallback for router in self.routers
                                       if router.fallback is not None), None)
        commands = [check for handler in self.handlers if handler.dialog is None
                    for check in handler.filters if isinstance(check, Command)]
        # Typing one of these in the middle of a dialog starts that command instead of answering.
        self._command_words = frozenset(word for check in commands for word in check.words)
        # The words that may start a command's text with more after them ("签到123456").
        self._command_prefixes = frozenset(word for check in commands if check.takes_args for word in check.words)
        self._longest_prefix = max(map(len, self._command_prefixes), default=0)
        # The routing index: every word, in dialogs too, that a handler's leading command takes arguments after.
        self._leading_prefixes = frozenset(word for handler in self.handlers if handler.leading is not None
                                           and handler.leading.takes_args for word in handler.leading.words)
        self._longest_leading = max(map(len, self._leading_prefixes), default=0)
        # Hears voice messages that come without text (bot.speech); set by the composition root.
        self.listener: VoiceListener | None = None
        # Who has a dialog open, as this process last saw: a hint for what to prepare, never for what to run.
        self._in_dialog: set[str] = set()
        self._in_flight: dict[str, _InFlight] = {}
        # (dialog, kind, text) → the handlers that may take it and its longest command word (_candidates).
        self._routes: dict[tuple[str | None, Kind, str | None], tuple[list[Handler], int]] = {}
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._background: set[asyncio.Task] = set()
        # Handlings that may wait for a database connection at once: the pool's connections and HANDLINGS_QUEUED
        # more. In a peak the rest queue here, in order and for as long as it takes (their messages are recorded),
        # not at the pool, whose timeout would fail them (抱歉 after a minute's wait) and where the outbox's
        # batches, the jobs and the console would queue behind all of them: the replies of late messages are
        # pushed meanwhile. Not just the pool's size: one handling at a time on SQLite left the loop nothing to do
        # while it waited for the connection, the group commits got smaller and a message cost twice the CPU
        # (我的 through the webhook under wrk: 1,223 against 633 µs).
        pool = engine_of(sessions).pool
        self.handling_slots = asyncio.Semaphore((pool.size() if hasattr(pool, "size") else 1) + HANDLINGS_QUEUED)
        # Requests' signed queries and their messages' claims, a batch to a transaction (bot.group_commit).
        self._intake: GroupCommit[Intake, inbound.Claim | bool] = GroupCommit(
            functools.partial(intake_rows, self.intake), name="inbound claims")

    @property
    def command_words(self) -> frozenset[str]:
        """Every command word outside dialogs, normalized (签到, 请假, 帮助…)."""
        return self._command_words

    # -- entry point

    async def feed(self, message: Message, *, arrived: float | None = None, signed: Seen | None = None) -> str | None:
        """Handle a message once, however many copies arrive; the passive reply, or None for none.

        Copies that arrive together share one handling and get the same answer. A copy that arrives
        after the message was handled gets the stored answer without running anything again.

        arrived: when the request reached the server (the loop's clock). The reply budget counts from then,
        not from now: under load a request waits before it gets here, and WeChat's five seconds run from
        when it sent the request. A passive reply after WeChat hung up reaches no one.

        signed: the request's signed query (plaintext mode, storage.signed_requests), admitted in the
        transaction that claims the message, or before a copy joins the handling of its message. A query seen
        before with another body raises Replayed: nothing of that request is recorded or handled.
        """
        key = message.dedup_key
        loop = asyncio.get_running_loop()
        entry = self._in_flight.get(key)
        first = entry is None
        if first:
            entry = self._in_flight[key] = _InFlight(loop.create_future(), received_at=self.clock.now())
            self._spawn(self._process(message, entry, signed))
        elif signed is not None and not await self._intake.submit((None, signed)):
            raise Replayed(key)
        budget = min(self.settings.reply_budget - (loop.time() - arrived if arrived is not None else 0.0),
                     self._budget_by_creation(message))
        entry.waiting += 1
        entry.deadline = max(entry.deadline, loop.time() + budget)
        try:
            if budget <= 0 or not await settled_within(entry.future, budget):
                raise TimeoutError
            return entry.future.result()
        except TimeoutError:
            if not entry.recorded.done():
                # Not even recorded yet (a peak: the claim waits for the database). `success` now would tell WeChat
                # the message is safe while a crash would still lose it, so this copy waits for the record instead;
                # past WeChat's five seconds it hangs up (the wait is cancelled with the request) and its next try
                # finds the message recorded.
                log.warning("%s not recorded within the reply budget; WeChat is not answered until it is", key)
                await asyncio.shield(entry.recorded)
            if entry.future.done() and not entry.future.cancelled() and entry.future.exception() is None:
                # Decided just as the timer ran (a busy loop runs both in one turn): a reply decided passive is
                # not pushed, so it must be this copy's answer, or no one would see it.
                return entry.future.result()
            # The handler keeps going; whoever finishes it pushes the reply instead.
            entry.late = True
            log.info("reply budget exceeded for %s; the reply will be pushed", key)
            return entry.interim
        except Replayed:
            if first:
                raise
            # The copy that began the handling was refused, and this one was admitted: it is handled on its own.
            return await self.feed(message, arrived=arrived)
        finally:
            # A copy whose request WeChat hung up on is cancelled by the server and waits no more: if no copy
            # waits when the reply is ready, it is pushed (see _InFlight.passive).
            entry.waiting -= 1

    def _budget_by_creation(self, message: Message) -> float:
        """What is left of the budget in WeChat's current try, counted from the message's CreateTime, when that
        time is plausible.

        Under load a request also waits before the server reads it (in the kernel's queue, behind a busy
        loop), which the arrival time cannot see; WeChat sends a message right after it was written, so
        CreateTime bounds that wait. It is in whole seconds, hence the half second more; a CreateTime far
        from our clock (a wrong clock, a replayed test body) is not trusted and leaves the budget as it is.
        WeChat sends the message again, with the same CreateTime, each time WECHAT_WAIT seconds pass without an
        answer: a request 5.3 s after it is the second try with its own five seconds, not the first one late.
        Counted from CreateTime alone, every such retry was told `success` at once, and a member whose answer
        was lost on the way back never saw the stored one (183 of 10,000 in bench/burst.py)."""
        elapsed = self.clock.now().timestamp() - message.created_at
        if not -CLOCK_SLACK <= elapsed <= TRUSTED_CREATION_AGE:
            return self.settings.reply_budget
        into_try = elapsed % WECHAT_WAIT if elapsed > 0 else elapsed
        return self.settings.reply_budget + 0.5 - into_try

    async def drain(self) -> None:
        """Wait for handlers still running in the background (shutdown and tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _process(self, message: Message, entry: _InFlight, signed: Seen | None) -> None:
        key = message.dedup_key
        try:
            claimed_at = self.clock.now()
            claim = await self._intake.submit((inbound.claim_row(
                dedup_key=key, openid=message.user_id, kind=message.kind.value, payload=message.to_payload(),
                now=claimed_at), signed))
            if claim is False:
                refused = Replayed(key)
                for waited in (entry.recorded, entry.future):
                    waited.set_exception(refused)
                    waited.exception()  # marked retrieved: no copy may be left to read it
                return
            entry.recorded.set_result(True)
            if claim.claimed:
                passive = await self._handle_and_deliver(claim.message_id, claimed_at, message, entry)
            else:
                passive = await self._answer_of(claim.existing)
            entry.future.set_result(passive)
        except Exception as error:  # the database is unreachable: the webhook asks the user to send again
            log.exception("could not process %s", key)
            for waited in (entry.recorded, entry.future):
                if not waited.done():
                    waited.set_exception(error)
                    waited.exception()  # mark retrieved: feed() may have stopped waiting already
        finally:
            self._in_flight.pop(key, None)

    async def _handle_and_deliver(self, message_id: int, claimed_at: datetime, message: Message,
                                  entry: _InFlight) -> str | None:
        parts, pushed_first = await self._handle(message_id, claimed_at, message, entry)
        if pushed_first or not parts:
            # Already pushed: a retry that came in the meantime must not show it a second time.
            return None
        # Read once, synchronously with feed()'s timeout, so exactly one of passive or push happens: a copy that
        # arrives while the push below commits gets "success", not the reply again.
        if entry.passive:
            return parts[0]
        # Every copy hung up (or the budget ran out) while the handler's transaction was committing: push the
        # first part too.
        async with self.sessions() as session, session.begin():
            await inbound.set_reply_mode(session, message_id, "push")
            await enqueue_outgoing(session, self._reply_parts(message_id, message, parts[:1]),
                                   now=self.clock.now(), settings=self.settings)
        self._wake_outbox()
        return None

    def _reply_parts(self, message_id: int, message: Message, parts: list[str], first: int = 0) -> list[Outgoing]:
        """Reply parts that go through the outbox. They are due a second apart so that they arrive in
        order (the outbox sends concurrently), and urgent: an answer is never held for the morning."""
        now = self.clock.now()
        return [Outgoing(key=f"reply:{message_id}:{index}", kind="reply", text=part, openid=message.user_id,
                         urgent=True, not_before=now + timedelta(seconds=index))
                for index, part in enumerate(parts, start=first)]

    def _run_deferred(self, works: list[tuple[Any, Callable[[JobContext], Awaitable[Any]]]]) -> None:
        async def run(settings, work) -> None:
            context = JobContext(sessions=self.sessions, clock=self.clock, settings=settings, channel=self.channel,
                                 configs=self.configs, provided=self.provided)
            try:
                await work(context)
            except Exception:
                log.exception("work left for after a commit failed")

        for settings, work in works:
            self._spawn(run(settings, work))

    def _wake_outbox(self) -> None:
        if self.on_enqueued is not None:
            self.on_enqueued()

    async def _answer_of(self, existing: InboundMessage) -> str | None:
        """The answer for a copy of a message that another worker claimed."""
        loop = asyncio.get_running_loop()
        poll, deadline = 0.02, loop.time() + self.settings.claim_lease
        while existing.status == InboundStatus.PROCESSING.value and loop.time() < deadline:
            await asyncio.sleep(poll)
            poll = min(poll * 2, 0.5)
            async with self.intake() as session:
                existing = await inbound.get(session, existing.id)
        if existing.status == InboundStatus.PROCESSING.value or existing.reply_mode == "push":
            return None
        parts = inbound.stored_replies(existing)
        return parts[0] if parts else None

    # -- handling

    def _user_lock(self, openid: str) -> asyncio.Lock:
        lock = self._user_locks.get(openid)
        if lock is None:
            lock = self._user_locks[openid] = asyncio.Lock()
        return lock

    async def _handle(self, message_id: int, claimed_at: datetime, message: Message,
                      entry: _InFlight) -> tuple[list[str], bool]:
        """Run the handler; its changes, the dialog state, the stored reply and the reply parts that
        are not passive (through the outbox) commit together. Returns the reply parts and whether the
        first one was pushed (the budget had already run out).

        A busy database (no pooled connection free in time, SQLite's lock held too long) is no fault of the
        message: the claim stands and the transaction rolled back, so the handling is simply run again, for up
        to a claim's lease, rather than telling the member 抱歉 and losing a check-in under load."""
        async with self._user_lock(message.user_id):
            if message.kind == Kind.VOICE and not message.text:
                message = await self._hear(message, entry)
            prepared = await self._prepare(message)
            try:
                async with self.handling_slots:
                    parts, late, enqueued = await self._handle_until_done(message_id, claimed_at, message, entry,
                                                                          prepared)
            except inbound.ClaimLost:
                # Nothing of this handling committed; the handling that took the message over answers.
                log.warning("%s was taken over after its claim ran out; this handling is dropped", message.dedup_key)
                return [], False
        if enqueued:
            self._wake_outbox()
        return parts, late

    async def _handle_until_done(self, message_id: int, claimed_at: datetime, message: Message, entry: _InFlight,
                                 prepared: Any) -> tuple[list[str], bool, bool]:
        """Handle the message, again while the database is busy (up to a claim's lease); a handler that fails
        otherwise finishes it as failed. Raises ClaimLost when the message was taken over meanwhile."""
        loop = asyncio.get_running_loop()
        give_up_at, pause = loop.time() + self.settings.claim_lease, 0.05
        while True:
            try:
                return await self._handle_once(message_id, claimed_at, message, entry, prepared)
            except inbound.ClaimLost:
                raise
            except Exception as error:
                if database_busy(error) and loop.time() < give_up_at:
                    log.warning("database busy handling %s (%s); handling it again", message.dedup_key,
                                short_error(error))
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 1.0)
                    continue
                log.exception("handler failed for %s (%s)", message.dedup_key, message.kind)
                return await self._record_failure(message_id, claimed_at, message, entry, error)

    async def _handle_once(self, message_id: int, claimed_at: datetime, message: Message, entry: _InFlight,
                           prepared: Any) -> tuple[list[str], bool, bool]:
        """One try at handling in one transaction: the reply parts, whether they were pushed, and whether
        anything went to the outbox."""
        # A message's reads and writes are a few indexed rows: on SQLite they run on the loop, on the driver, and
        # the ORM session opens only for a handler that asks for it (storage.transaction).
        async with MessageTransaction(self.sessions) as transaction:
            ctx, waiting = await self._context(transaction, message, entry.received_at)
            ctx.prepared = prepared
            await self._route(ctx)
            await self._save_dialog(ctx)
            # Messages waiting for this member's next message go with this reply (or, with none, back to the
            # outbox), committed with it: a retry gets the stored reply, lines included. Skipped when none waited
            # as the transaction began and the handler wrote nothing that could have made one wait.
            reply = "\n\n".join(ctx.replies)
            if waiting or transaction.session_opened or ctx.outbox_touched:
                reply, released = await hand_over_waiting(ctx.driver, message.user_id, reply, now=self.clock.now(),
                                                          opens_window=message.opens_window)
                ctx.outbox_touched |= released
            parts, full = self._fit(reply, message_id, message.user_id) if reply else ([], None)
            late = not entry.passive
            enqueued = await self._record(transaction, message, message_id, claimed_at, parts, late, ctx.outgoing,
                                          InboundStatus.DONE, full_reply=full) or ctx.outbox_touched
        self._run_deferred(ctx.deferred)
        return parts, late, enqueued

    async def _record_failure(self, message_id: int, claimed_at: datetime, message: Message, entry: _InFlight,
                              error: Exception) -> tuple[list[str], bool, bool]:
        """The handler raised and its transaction rolled back: the message is finished as failed, with the apology
        that retries get too."""
        async with MessageTransaction(self.sessions) as transaction:
            parts, late = [SORRY], not entry.passive
            enqueued = await self._record(transaction, message, message_id, claimed_at, parts, late, [],
                                          InboundStatus.FAILED, error=f"{type(error).__name__}: {error}")
        return parts, late, enqueued

    async def _hear(self, message: Message, entry: _InFlight) -> Message:
        """A voice message with no text (WeChat no longer recognizes speech): what the listener heard, before
        the transaction opens. If the budget runs out meanwhile, the member sees 正在听 and the answer is pushed."""
        if self.listener is None or not self.listener.can_hear:
            return replace(message, extra={**message.extra, "voice": CANNOT_HEAR})
        entry.interim = LISTENING
        return await self.listener.hear(message)

    async def _prepare(self, message: Message) -> Any:
        """The text fallback's slow work, done before the transaction, for text that will likely reach it."""
        text = typed_text(message)
        if (self._prepare_fallback is None or text is None or text.isdigit() or text in CANCEL_WORDS
                or message.user_id in self._in_dialog or self._longest_command(text)):
            return None
        try:
            return await self._prepare_fallback(text, self.settings.local(self.clock.now()).date(), self.provided)
        except Exception:
            log.exception("preparing the answer for %s failed; the handler does the work itself", message.dedup_key)
            return None

    async def _record(self, transaction: MessageTransaction, message: Message, message_id: int, claimed_at: datetime,
                      parts: list[str], late: bool, outgoing: list[Outgoing], status: InboundStatus,
                      error: str | None = None, full_reply: str | None = None) -> bool:
        """The outcome of a message, written in its transaction: the stored reply, and through the outbox
        whatever is not answered passively (every part once the budget ran out, else the parts after the
        first) together with what the handler enqueued. Returns whether anything went to the outbox."""
        pushed = self._reply_parts(message_id, message, parts, first=0) if late else \
            self._reply_parts(message_id, message, parts[1:], first=1)
        if outgoing or pushed:
            await enqueue_outgoing(transaction.session, [*outgoing, *pushed], now=self.clock.now(),
                                   settings=self.settings)
        await inbound.finish(transaction.driver, message_id, claimed_at=claimed_at, status=status, replies=parts,
                             now=self.clock.now(), error=error, reply_mode="push" if late else None,
                             full_reply=full_reply)
        return bool(outgoing or pushed)

    async def _context(self, transaction: MessageTransaction, message: Message,
                       received_at: datetime | None) -> tuple[Context, bool]:
        """The handler's context, and whether outbox rows waited for the sender's next message."""
        now = self.clock.now()
        sender = await identities.touch(transaction, message.user_id, now=now, opens_window=message.opens_window,
                                        subscribed=message.event != "unsubscribe")
        identity, member, state = sender.identity, sender.member, sender.dialog
        dialog = Dialog()
        self._in_dialog.discard(message.user_id)
        if state is not None:
            if state.expires_at > now:
                dialog = Dialog(name=state.name, step=state.step, data=json.loads(state.data))
                self._in_dialog.add(message.user_id)
            else:
                dialog = Dialog(expired=not json.loads(state.data).get(QUIET_END), changed=True)
        return Context(message=message, transaction=transaction, clock=self.clock, identity=identity, member=member,
                       dialog=dialog, catalog=self.handlers, settings=self.settings, received_at=received_at,
                       listeners=self.listeners, configs=self.configs, provided=self.provided,
                       reminder_kinds=self.reminder_kinds), sender.waiting

    async def _route(self, ctx: Context) -> None:
        message = ctx.message
        text = typed_text(message)
        if ctx.dialog.active and text in CANCEL_WORDS:
            # A dialog may say what 取消 means in it ("好，会议照常举行" when cancelling a meeting is called off).
            said = ctx.dialog.data.get(CANCEL_TEXT) or CANCELLED
            ctx.dialog.finish()
            ctx.reply(said)
            return
        if ctx.dialog.active and text in self._command_words:
            ctx.dialog.finish()
        candidates, longest = self._candidates(ctx.dialog.name if ctx.dialog.active else None, message.kind, text)
        for handler in candidates:
            values = handler.match(message, ctx)
            if values is None:
                continue
            if handler.dialog is None and "command" in values and len(values["command"]) < longest:
                continue  # a longer command matches too: "签到情况" is not 签到 with "情况"
            if not handler.permits(ctx.member):
                ctx.reply(NEED_BINDING if ctx.member is None else WRONG_ROLE.format(roles=_role_names(handler.roles)))
                return
            before = ctx.dialog.snapshot()
            if ctx.dialog.active and handler.dialog is None:
                # The user turned to something else; a stale dialog would misread their next answer.
                ctx.dialog.finish()
            try:
                result = await handler.run(ctx, values)
            except Refusal as refusal:
                result = refusal.text
            except SkipHandler:
                # Not this handler's after all (a photo with no meeting on): the next one that matches gets it.
                ctx.dialog.restore(before)
                continue
            if isinstance(result, str):
                ctx.reply(result)
            elif isinstance(result, list):
                for text in result:
                    ctx.reply(text)
            return
        await self._fallback(ctx)

    def _candidates(self, dialog: str | None, kind: Kind, text: str | None) -> tuple[list[Handler], int]:
        """The handlers that may take a message of this kind and text, in order, and the longest command word the
        text is or starts with. A user in a dialog is answering it: that dialog's handlers come first; other dialogs'
        never match and are not asked. Most handlers begin with a command word and are asked only when the text is
        it or starts with it (a Q&A question would otherwise be put to every one of them before the fallback gets
        it); menu taps and other events are never put to handlers of text. Kept for the texts that come often (我的,
        签到, a menu tap's event): the same list every time."""
        key = (dialog, kind, text)
        found = self._routes.get(key)
        if found is None:
            ordered = self._free_handlers if dialog is None else \
                [h for h in self.handlers if h.dialog == dialog] + self._free_handlers
            starts = frozenset(text[:end] for end in range(1, min(len(text), self._longest_leading) + 1)
                               if text[:end] in self._leading_prefixes) if text is not None else frozenset()
            found = ([handler for handler in ordered if handler.may_match(kind, text, starts)],
                     self._longest_command(text))
            if text is None or len(text) <= ROUTE_TEXT_KEPT:
                if len(self._routes) >= ROUTES_KEPT:
                    self._routes.clear()
                self._routes[key] = found
        return found

    def _longest_command(self, text: str | None) -> int:
        """The length of the longest command word this (normalized) text is or starts with (for a command that takes
        words after it), among commands outside dialogs: what Command matches, without asking each one."""
        if text is None:
            return 0
        longest = len(text) if text in self._command_words else 0
        for end in range(min(len(text) - 1, self._longest_prefix), longest, -1):
            if text[:end] in self._command_prefixes:
                return end
        return longest

    async def _fallback(self, ctx: Context) -> None:
        """What nothing took: the answers for what is no question, else the text fallback (Q&A)."""
        message = ctx.message
        text = typed_text(message)
        if text is not None:
            if text in CANCEL_WORDS:
                ctx.reply(NOTHING_TO_CANCEL)
            elif ctx.dialog.expired:
                ctx.reply(DIALOG_EXPIRED)
            elif CHOICES in ctx.dialog.data and Choice()(message, ctx):
                # A number outside the options of the question this step asked: ask again.
                ctx.reply(ctx.dialog.data[CHOICES]["again"])
            elif self.text_fallback is not None and not text.isdigit():
                # A bare number answers a numbered question; with none open there is nothing to look up.
                if ctx.dialog.active:
                    ctx.dialog.finish()
                result = await self.text_fallback.run(ctx, {"text": text, "written": written_text(message),
                                                            "prepared": ctx.prepared})
                if result:
                    ctx.reply(result)
            else:
                ctx.reply(NOT_UNDERSTOOD.format(text=text[:20]))
        elif message.kind == Kind.VOICE:
            ctx.reply(self._unheard_reply(ctx))
        elif message.kind != Kind.EVENT:
            # Events the user did not type (menu views, reported locations, job reports) get no answer.
            ctx.reply(UNSUPPORTED)

    def _unheard_reply(self, ctx: Context) -> str:
        """A voice message nothing took and no text came of: say so, never stay silent. With no engine (or
        one that failed) the member gets the menu once per conversation, and a short line after that."""
        if ctx.message.extra.get("voice") == NOT_HEARD:
            return NOT_HEARD_REPLY
        identity, now = ctx.identity, ctx.now
        conversation = timedelta(minutes=self.settings.dialog_timeout_minutes)
        if identity.voice_hint_at is not None and now - identity.voice_hint_at < conversation:
            return CANNOT_HEAR_AGAIN
        identity.voice_hint_at = now
        hint = menu_hint(self.settings.menu())
        return f"{CANNOT_HEAR_REPLY}\n{hint}" if hint else CANNOT_HEAR_REPLY

    async def _save_dialog(self, ctx: Context) -> None:
        dialog, openid = ctx.dialog, ctx.message.user_id
        if not dialog.changed:
            return
        if dialog.active:
            expires = self.clock.now() + timedelta(minutes=self.settings.dialog_timeout_minutes)
            await dialogs.save(ctx.session, openid, name=dialog.name, step=dialog.step, data=dialog.data,
                               expires_at=expires)
            self._in_dialog.add(openid)
        else:
            await dialogs.clear(ctx.session, openid)
            self._in_dialog.discard(openid)

    def _fit(self, text: str, message_id: int, openid: str) -> tuple[list[str], str | None]:
        """The reply in chat-sized parts, and the whole text when it did not fit: its last part then ends
        with a link to a page showing all of it (when pages are served)."""
        if utf8_len(text) <= self.reply_max_bytes:
            return [text], None  # most replies: one part, and no link to sign
        link = self.link_for(f"{REPLY_PAGE}:{message_id}", None, openid) if self.link_for is not None else None
        note = f"……\n全文：{link}" if link else TRIMMED_NOTE
        parts, trimmed = split_reply(text, self.reply_max_bytes, self.max_parts, note)
        return parts, (text if trimmed else None)

    # -- recovery

    async def recover_orphans(self) -> int:
        """Handle messages whose process died after claiming them; their replies are pushed."""
        cutoff = self.clock.now() - timedelta(seconds=self.settings.claim_lease)
        async with self.sessions() as session:
            # Only a read: on SQLite it must not wait behind an import for the write lock.
            await session.connection(execution_options=READ_ONLY)
            orphans = await inbound.orphaned(session, claimed_before=cutoff)
        recovered = 0
        for orphan in orphans:
            if orphan.dedup_key in self._in_flight:
                continue  # not an orphan: queued for handling here, behind a peak's backlog
            taken_at = self.clock.now()
            async with self.sessions() as session, session.begin():
                won = await inbound.take_over(session, orphan, taken_at)
            if not won:
                continue
            message = Message.from_payload(json.loads(orphan.payload))
            entry = _InFlight(asyncio.get_running_loop().create_future(), late=True, received_at=orphan.received_at)
            entry.recorded.set_result(True)
            await self._handle_and_deliver(orphan.id, taken_at, message, entry)
            recovered += 1
            log.info("recovered orphaned message %s", orphan.dedup_key)
        return recovered
