"""Membership: following, binding a WeChat account to a member record (and a new code for a member who
changed WeChat account), 我的, 帮助, turning reminders off and on, and the roster import.

The chat side lives here; reading roster files is in roster.py.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from pydantic import Field

from bot.config import Settings
from bot.dialogs import Steps
from bot.dispatch import MEMBER_BOUND, AnyCommand, AnyText, Context, Dialog, EventType, Regex, Router, Scene
from bot.outbox import MUTED, Outgoing
from bot.summary import Summary
from storage import identities, orgs
from storage.members import binding_code_expired, issue_binding_code, member_by_binding_code, namesakes
from storage.models import BRANCH_LEADERS, Member, WeChatIdentity
from storage.outbox import withdraw_reminders



class MembershipSettings(Settings):
    bind_max_failures: int = 5
    bind_lockout_minutes: int = 60
    # Across the whole account: this many failed binding attempts within the window (from any followers) pause
    # binding for everyone until a window has passed since the last one. 30 in 10 minutes leaves room for a few
    # branches binding at once after a meeting, each member mistyping now and then, and holds a guesser with any
    # number of followers to 30 tries per 10 minutes (at most 4,320 a day against 900,000 possible codes).
    bind_account_max_failures: int = Field(default=30, ge=1)
    bind_account_window_minutes: int = Field(default=10, ge=1)
    # Days a binding code binds after it is issued; 新绑定码 and `zhibu import members` give fresh ones.
    binding_code_days: int = Field(default=30, ge=1)


# Its console pages (console.py: the roster, binding codes, the import by upload) render templates/.
router = Router("membership", settings=MembershipSettings, templates=Path(__file__).parent / "templates")
log = logging.getLogger(__name__)

WELCOME = ("欢迎关注支部助手！\n"
           "党员请直接回复您的姓名和绑定码，例如：王秀英 123456（绑定码向支部书记要）。\n"
           "回复 帮助 查看可以做什么。")
WELCOME_BACK = "{name}，欢迎回来！回复 帮助 查看可以做什么。"
ASK_NAME = "请回复您的姓名和绑定码，例如：王秀英 123456（姓名和党员名册上一致，绑定码向支部书记要）。\n回复 取消 可退出。"
ASK_CODE = "请回复 6 位绑定码（向支部书记要）。\n回复 取消 可退出。"
BAD_CODE_FORMAT = "绑定码是 6 位数字，请重新回复。\n回复 取消 可退出。"
ALREADY_BOUND = "您已绑定为 {name}（{org}）。如需更换，请联系支部书记。"
LOCKED = "尝试次数太多，请 {minutes} 分钟后再试，或直接联系支部书记。"
MISMATCH = "姓名或绑定码不对，还可以再试 {left} 次。绑定码由支部书记提供。"
PAUSED = "为了安全，绑定暂停了：最近输错绑定码的太多。请 {minutes} 分钟后再试，或直接联系支部书记。"
EXPIRED = ("这个绑定码已过期。请向支部书记要一个新的（书记在公众号回复 新绑定码 {name} 就能拿到），"
           "再回复 绑定 {name} 新绑定码。")
MOVED_AWAY = ("您这个微信原来绑定的党员身份（{name}）现在已绑定到另一个微信号，这个微信不再绑定。\n"
              "如果不是您本人换的微信，请马上联系支部书记。")
BOUND = "绑定成功！{name}，您好。\n您属于：{org}\n回复 帮助 查看可以做什么。"
CODE = re.compile(r"\d{6}")
BIND_DIALOG = Steps("bind", welcome="刚关注：姓名和绑定码（或别的命令）", name="姓名（可连同绑定码）",
                    code="6 位绑定码")
ASK_REISSUE_NAME = "请在后面写上党员的姓名，例如：新绑定码 王秀英"
REISSUE_UNKNOWN = "本支部的名册里没有“{name}”。请核对姓名；不在名册里的，请乡镇组织员先导入名册。"
REISSUE_WHICH = ("本支部有 {count} 位党员叫{name}，请在姓名后加上手机号的后四位，例如：新绑定码 {name} {example}")
REISSUED = ("{name}的新绑定码：{code}\n"
            "请当面或打电话告诉本人：在新微信里关注公众号，回复 绑定 {name} {code}。\n"
            "绑定后原来的微信自动解除；这个码 {days} 天内有效，用一次就失效，之前给的码作废。")
REMINDERS_OFF = ("好的，提醒已关闭：{kinds}都不再发给您{withdrawn}。\n"
                 "会议通知、支部的通知照常收到。想再打开，回复 打开提醒。")
REMINDERS_ALREADY_OFF = "您的提醒已经是关闭的。想打开，回复 打开提醒。"
REMINDERS_ON = "好的，提醒已打开：以后开会前和通知没看时会提醒您。想关掉，回复 关闭提醒。"
REMINDERS_ALREADY_ON = "您的提醒是打开的。不想收，回复 关闭提醒。"


def _parse_bind_args(args: str) -> tuple[str, str]:
    """("张三", "123456") from "张三 123456" or "张三123456"; missing parts come back empty."""
    code_match = CODE.search(args)
    code = code_match.group() if code_match else ""
    name = (args[: code_match.start()] + args[code_match.end():] if code_match else args).strip()
    return name, code


async def _org_path(ctx: Context, member: Member) -> str:
    return await orgs.path_of(ctx.driver, member.org_id) or "（未知组织）"


def _minutes_until(moment: datetime, now: datetime) -> int:
    # Rounded up: "请 0 分钟后再试" would read as "now", which it is not.
    return max(1, math.ceil((moment - now).total_seconds() / 60))


def _lock_minutes_left(identity: WeChatIdentity, now: datetime) -> int | None:
    if identity.bind_locked_until and identity.bind_locked_until > now:
        return _minutes_until(identity.bind_locked_until, now)
    return None


async def _not_now(ctx: Context) -> str | None:
    """Why this follower may not try a code now (their own lockout, or binding paused for the whole account),
    or None when they may. A refused attempt is not evaluated, so it cannot be a guess."""
    locked = _lock_minutes_left(ctx.identity, ctx.now)
    if locked:
        return LOCKED.format(minutes=locked)
    settings = ctx.settings
    reopens = await identities.binding_paused_until(
        ctx.session, now=ctx.now, limit=settings.bind_account_max_failures,
        window=timedelta(minutes=settings.bind_account_window_minutes))
    if reopens is not None:
        # Debug only: while paused, guesses arrive by the hundred; the warning was logged when it paused.
        log.debug("binding paused: refused an attempt from %s", ctx.identity.openid)
        return PAUSED.format(minutes=_minutes_until(reopens, ctx.now))
    return None


async def _failed_attempt(ctx: Context) -> tuple[str, bool]:
    """Count a wrong name or code against the follower and the whole account; the reply, and whether the
    follower is now locked out."""
    identity, now, settings = ctx.identity, ctx.now, ctx.settings
    window = settings.bind_account_window_minutes
    failures = await identities.record_binding_failure(ctx.session, identity.openid, now=now,
                                                       window=timedelta(minutes=window))
    # Exactly one attempt reaches the limit (failures are recorded one at a time), so this logs once per pause.
    if failures == settings.bind_account_max_failures:
        log.warning("binding paused for all followers: %d failed attempts within %d minutes (the last from %s)",
                    failures, window, identity.openid)
    identity.failed_bind_attempts += 1
    left = settings.bind_max_failures - identity.failed_bind_attempts
    if left <= 0:
        identity.failed_bind_attempts = 0
        identity.bind_locked_until = now + timedelta(minutes=settings.bind_lockout_minutes)
        log.info("binding: %s locked out for %d minutes", identity.openid, settings.bind_lockout_minutes)
        return LOCKED.format(minutes=settings.bind_lockout_minutes), True
    log.info("binding: name and code from %s do not match (%d tries left)", identity.openid, left)
    return MISMATCH.format(left=left), False


async def _try_bind(ctx: Context, name: str, code: str) -> tuple[str, bool]:
    """Bind the follower if name and code belong together (call only when _not_now allows); the reply, and
    whether binding is over (bound, locked out, or a new code is needed) rather than worth another try."""
    identity, now = ctx.identity, ctx.now
    member = await member_by_binding_code(ctx.session, code)
    if member is None or member.name != name:
        return await _failed_attempt(ctx)
    if binding_code_expired(member.binding_code_expires_at, now):
        # Said only to someone who has both the name and the code, so it tells a guesser nothing. Not a
        # failure: the member retrying their old slip of paper should not lock anyone out.
        log.info("binding: %s gave member %s's expired code", identity.openid, member.id)
        return EXPIRED.format(name=member.name), True
    # A member who changed phones binds again with a reissued code; the old account lets go and is told, so
    # that a member whose code was misused hears of it on the phone they still have.
    previous = await identities.by_member(ctx.session, member.id)
    if previous is not None and previous.openid != identity.openid:
        previous.member_id = None
        await ctx.session.flush()
        ctx.enqueue(Outgoing(key=f"rebound:{ctx.message.dedup_key}", kind="binding", openid=previous.openid,
                             text=MOVED_AWAY.format(name=member.name), ref=f"member:{member.id}",
                             summary=Summary(title="绑定变更提醒", content=f"{member.name}已绑定到另一个微信号")))
        log.info("binding: member %s moved from %s to %s", member.id, previous.openid, identity.openid)
    identity.member_id, identity.bound_at = member.id, now
    identity.failed_bind_attempts, identity.bind_locked_until = 0, None
    member.binding_code, member.binding_code_expires_at = None, None
    ctx.member = member
    reply = BOUND.format(name=member.name, org=await _org_path(ctx, member))
    # Other features catch the new member up (notices sent before, meetings ahead) in this transaction.
    return "\n\n".join([reply, *await ctx.announce(MEMBER_BOUND, member=member)]), True


@router.text("绑定", "绑定身份", takes_args=True, usage="绑定 姓名 绑定码", summary="把微信和党员身份绑定",
             unbound_only=True)
@router.click("BIND")
async def bind(ctx: Context, dialog: Dialog, member: Member | None, args: str = "") -> str:
    if member is not None:
        return ALREADY_BOUND.format(name=member.name, org=await _org_path(ctx, member))
    refused = await _not_now(ctx)
    if refused:
        return refused
    name, code = _parse_bind_args(args)
    if name and code:
        reply, _ = await _try_bind(ctx, name, code)
        return reply
    if name:
        dialog.start(BIND_DIALOG, "code", name=name)
        return ASK_CODE
    dialog.start(BIND_DIALOG, "name")
    return ASK_NAME


@router.on(AnyText(), dialog=BIND_DIALOG, step="name")
async def bind_name(ctx: Context, dialog: Dialog, text: str) -> str:
    name, code = _parse_bind_args(text)
    if not name:
        return ASK_NAME
    dialog.goto("code", name=name[:20])
    if code:  # the name and the code in one reply: nothing left to ask
        return await _attempt_in_dialog(ctx, dialog, code)
    return ASK_CODE


@router.on(AnyText(), dialog=BIND_DIALOG, step="code")
async def bind_code(ctx: Context, dialog: Dialog, text: str) -> str:
    code = CODE.fullmatch(text.replace(" ", ""))
    if not code:
        return BAD_CODE_FORMAT
    return await _attempt_in_dialog(ctx, dialog, code.group())


async def _attempt_in_dialog(ctx: Context, dialog: Dialog, code: str) -> str:
    """Try the dialog's name with code; the dialog ends unless another try makes sense."""
    refused = await _not_now(ctx)
    if refused:
        dialog.finish()
        return refused
    reply, over = await _try_bind(ctx, dialog.data["name"], code)
    if over:
        dialog.finish()
    return reply


def describe_member(member: Member, org_path: str) -> str:
    lines = [f"姓名：{member.name}", f"组织：{org_path}", f"职务：{member.role}", f"类别：{member.category}"]
    if member.join_date:
        joined = member.join_date
        lines.append(f"入党日期：{joined.year}年{joined.month}月{joined.day}日")
    if member.away_from_home:
        lines.append("流动党员：是")
    lines.append("提醒：已关闭（回复 打开提醒 可打开）" if member.reminders_muted else "提醒：打开")
    return "\n".join(lines)


@router.text("我的", "我的信息", "个人信息", bound=True, usage="我的", summary="查看我的党员信息")
@router.click("ME", bound=True)
async def show_me(ctx: Context, member: Member) -> str:
    return describe_member(member, await _org_path(ctx, member)) + "\n信息有误请联系支部书记。"


@router.text("新绑定码", "重发绑定码", "补发绑定码", takes_args=True, roles=BRANCH_LEADERS, usage="新绑定码 姓名",
             summary="给换了微信或忘了绑定码的党员一个新绑定码")
async def reissue_binding_code(ctx: Context, member: Member, args: str) -> str:
    # The only way for a member on a new WeChat account to bind again: the secretary, who knows the person,
    # hands out a fresh code. Only for the secretary's own branch (namesakes are looked up in it).
    words = args.split()
    if not words:
        return ASK_REISSUE_NAME
    name, phone_end = words[0], "".join(words[1:])
    found = await namesakes(ctx.session, member.org_id, name)
    if phone_end:
        found = [person for person in found if person.phone and person.phone.endswith(phone_end)]
    if not found:
        return REISSUE_UNKNOWN.format(name=args.strip())
    if len(found) > 1:
        example = next((person.phone[-4:] for person in found if person.phone), "1234")
        return REISSUE_WHICH.format(count=len(found), name=name, example=example)
    target = found[0]
    days = ctx.settings.binding_code_days
    code = await issue_binding_code(ctx.session, target, now=ctx.now, days=days)
    log.info("member %s got a new binding code from %s", target.id, member.id)
    return REISSUED.format(name=target.name, code=code, days=days)


@router.text("关闭提醒", "退订提醒", "不要提醒", bound=True, usage="关闭提醒", summary="不再收开会前和通知的提醒")
async def reminders_off(ctx: Context, session: AsyncSession, member: Member) -> str:
    # Reminders are helpers, never obligations (国办函〔2026〕12号): one word turns them off, including the
    # ones already queued for a meeting next week.
    if member.reminders_muted:
        return REMINDERS_ALREADY_OFF
    member.reminders_muted = True
    withdrawn = await withdraw_reminders(session, member.id, reason=MUTED)
    # The kinds as the features that send them declare them (Router.reminds), in feature order.
    kinds = ctx.reminder_kinds()
    listed = "、".join(kinds[:-1]) + "和" + kinds[-1] if len(kinds) > 1 else "".join(kinds) or "各种提醒"
    return REMINDERS_OFF.format(kinds=listed, withdrawn=f"（已取消 {withdrawn} 条待发的提醒）" if withdrawn else "")


@router.text("打开提醒", "订阅提醒", bound=True, usage="打开提醒", summary="重新收开会前和通知的提醒")
async def reminders_on(member: Member) -> str:
    if not member.reminders_muted:
        return REMINDERS_ALREADY_ON
    member.reminders_muted = False
    return REMINDERS_ON


@router.text("帮助", "菜单", "help", "?", usage="帮助", summary="查看可以做什么")
@router.click("HELP")
async def show_help(ctx: Context, member: Member | None) -> str:
    lines = [f"{member.name}，您可以回复：" if member else "您可以回复："]
    # In a fixed order, not the features': a secretary's list is long enough to be split into two messages, and
    # where it splits must not depend on how the features happen to be listed.
    for command in sorted(ctx.commands(), key=lambda command: command.usage):
        lines.append(f"· {command.usage}　{command.summary}")
    if member is None:
        lines.append("绑定党员身份后可以使用更多功能。")
    lines.append("随时回复 取消 可退出正在进行的操作。")
    return "\n".join(lines)


# A follow through a meeting's QR code ("meeting:<id>") is not ours: meetings checks the member in, or asks a
# newcomer to bind first (handlers/meetings/checkin.py). Excluded here, so that it does not depend on which
# feature is listed first; a follow through any other code (a poster's) is welcomed like a plain one.
MEETING_CODE = Scene("meeting:")
# And a follow through the console's sign-in code is a sign-in (handlers/console).
LOGIN_CODE = Scene("login:")


@router.on(EventType("subscribe") & ~MEETING_CODE & ~LOGIN_CODE)
async def welcome(dialog: Dialog, member: Member | None) -> str:
    if member is not None:
        return WELCOME_BACK.format(name=member.name)
    # The welcome asks for name and code: the reply "王秀英 123456" binds. Anything else (a question, a
    # greeting) goes on to the other handlers and ends this dialog.
    dialog.start(BIND_DIALOG, "welcome")
    return WELCOME


@router.on(Regex(r".{1,20}?\s*[0-9]{6}") & ~AnyCommand(), dialog=BIND_DIALOG, step="welcome")
async def bind_after_welcome(ctx: Context, dialog: Dialog, match) -> str:
    name, code = _parse_bind_args(match.group(0))
    if not name:
        dialog.goto("name")
        return ASK_NAME
    dialog.goto("code", name=name[:20])
    return await _attempt_in_dialog(ctx, dialog, code)


@router.event("unsubscribe")
async def farewell(identity: WeChatIdentity, now: datetime) -> None:
    # The record stays: a member who follows again is still bound and keeps their history.
    identity.subscribed, identity.unsubscribed_at = False, now


from handlers.membership import console  # noqa: E402,F401  (registers the console pages on the router)
