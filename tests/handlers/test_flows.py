"""Every flow in docs/flows.md walked through the webhook, counting what the person sends and taps.

The page's tables carry a flow id (编号) and a step count (步数). Each id here has a walk: the person does
exactly what the page says, every message and event they send is counted where the emulator sends it, and a
tap that only opens a submenu (it sends nothing) is counted too. A walk fails when it takes more steps than
the page says, or when the flow did not really complete (the reply, or what is stored, says so). Member-side
flows (unbound followers u-, members m-, committee members c-) must also be documented at 3 steps or fewer;
the few known to be over are listed in KNOWN_OVER_GOAL and in the page's last section, and must really be
over (a flow shortened since fails until both lists drop it).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from harness import DONGFENG, HONGQI, TOWN, hongqi_branch
from storage.models import CheckInMethod, LeaveRequest, Meeting, Member, Role, WeChatIdentity
from test_meetings import HALL, NEARBY, at, attendance_rows, call, latest_meeting

PAGE = Path(__file__).resolve().parents[2] / "docs" / "flows.md"
GOAL = 3
MEMBER_SIDE = ("u-", "m-", "c-")
OVER_GOAL_HEADING = "## 超过 3 步的地方"

# Member flows documented above the goal, and why. Each is also in the page's last section; remove it from
# both once the flow is within 3 steps (the test then insists on it).
KNOWN_OVER_GOAL = {
    "m-bind-menu": "绑定身份 is behind the 我的 submenu; the welcome's own path takes 2",
}

# Flows the page documents that do not work today (the page says so in the row). Each walk is a strict expected
# failure: once the flow works it passes, and the test fails until the entry and the page's note are removed.
BROKEN: dict[str, str] = {}

NEW_MEMBER = "孙桂兰"  # on the roster, not yet bound
NEW_OPENID = "new-follower"


# ---------------------------------------------------------------- the page


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def documented_flows(text: str) -> dict[str, int]:
    """Flow id → documented steps, from every table whose header has 编号, 发什么 / 点什么 and 步数."""
    flows: dict[str, int] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells if {"编号", "发什么 / 点什么", "步数"} <= set(cells) else []
            continue
        if not header or set(line) <= set("|-: "):
            continue
        assert len(cells) == len(header), f"a row of {len(cells)} cells under a header of {len(header)}: {line}"
        flow = re.fullmatch(r"`([a-z]+-[a-z0-9-]+)`", cells[header.index("编号")])
        if flow is None:
            continue  # a row about something not supported, or not done in the chat
        steps = re.match(r"\d+", cells[header.index("步数")])
        assert steps, f"{flow.group(1)}: the step count must start with a number"
        assert flow.group(1) not in flows, f"{flow.group(1)} is documented twice"
        flows[flow.group(1)] = int(steps.group())
    return flows


def over_goal_section(text: str) -> set[str]:
    """The flow ids listed in the page's section on flows over the goal."""
    section = text.split(OVER_GOAL_HEADING, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z]+-[a-z0-9-]+)` \|", section, flags=re.MULTILINE))


PAGE_TEXT = PAGE.read_text(encoding="utf-8")
DOCUMENTED = documented_flows(PAGE_TEXT)


# ---------------------------------------------------------------- counting steps


class Walk:
    """One person going through a flow. Sends are counted in the emulator's send (every message and event
    for this openid, whatever helper sent it); a tap that only opens a submenu is counted by tap()."""

    def __init__(self, service, openid: str) -> None:
        self.service, self.openid = service, openid
        self.sent = 0
        self.menu_opens = 0
        self.steps: int | None = None
        emulator = service.emulator
        original = emulator.send

        async def counting_send(user: str, fields: dict):
            if user == openid and self.steps is None:
                self.sent += 1
            return await original(user, fields)

        emulator.send = counting_send  # the instance attribute shadows the method until done()
        self._restore = lambda: emulator.__dict__.pop("send", None)

    def done(self) -> int:
        """The flow is complete: freeze the count (what the test checks afterwards is not counted)."""
        self.steps = self.sent + self.menu_opens
        self._restore()
        return self.steps

    async def say(self, text: str) -> str | None:
        return (await self.service.emulator.text(self.openid, text)).reply

    async def voice(self, recognition: str) -> str | None:
        return (await self.service.emulator.voice(self.openid, recognition)).reply

    async def tap(self, key: str) -> str | None:
        """A tap on the account's menu; a button inside a submenu takes a tap to open the submenu first."""
        depth = _menu_depth(self.service.settings.menu(), key)
        assert depth, f"no menu button has the key {key}"
        self.menu_opens += depth - 1
        return (await self.service.emulator.click(self.openid, key)).reply

    async def follow(self, scene: str | None = None) -> str | None:
        return (await self.service.emulator.subscribe(self.openid, scene)).reply

    async def scan(self, scene: str) -> str | None:
        return (await self.service.emulator.scan(self.openid, scene)).reply

    async def location(self, latitude: float, longitude: float, label: str = "") -> str | None:
        return (await self.service.emulator.location(self.openid, latitude, longitude, label)).reply

    async def image(self) -> str | None:
        return (await self.service.emulator.image(self.openid)).reply


def _menu_depth(menu: dict, key: str) -> int:
    for button in menu["button"]:
        if button.get("key") == key:
            return 1
        if any(sub.get("key") == key for sub in button.get("sub_button", [])):
            return 2
    return 0


WalkFn = Callable[[object, dict[str, str]], Awaitable[Walk]]
WALKS: dict[str, WalkFn] = {}


def walk(flow: str):
    def register(function: WalkFn) -> WalkFn:
        assert flow not in WALKS
        WALKS[flow] = function
        return function
    return register


# ---------------------------------------------------------------- set-up helpers (not counted)


async def notify(service, sender: str, text: str = "本周六上午9点村委会大扫除，请党员参加。") -> None:
    replies = [await service.say(sender, said) for said in ("发通知", text, "1", "1")]
    assert replies[-1].startswith("通知已发出"), replies
    await service.deliver()


async def meeting_on_now(service, people) -> Meeting:
    """The branch meeting tomorrow at 15:00, with the clock at 14:50 that day (check-in open)."""
    _, meeting = await call(service, people["李建国"])
    at(service, 11, 25, 14, 50)
    return meeting


async def member_row(service, name: str) -> Member:
    async with service.sessions() as session:
        return (await session.execute(select(Member).where(Member.name == name))).scalar_one()


async def bound_to(service, openid: str) -> int | None:
    async with service.sessions() as session:
        identity = await session.get(WeChatIdentity, openid)
        return identity.member_id if identity else None


async def new_roster_member(service) -> str:
    """Someone on the roster who has never bound; returns their binding code."""
    _, code = await service.add_member(NEW_MEMBER, HONGQI + "/第一党小组", phone="13800000009")
    return code


async def method_of(service, meeting_id: int, name: str) -> str:
    member = await member_row(service, name)
    rows = [row for row in await attendance_rows(service, meeting_id) if row.member_id == member.id]
    assert len(rows) == 1, rows
    return rows[0].method


# ---------------------------------------------------------------- unbound followers


@walk("u-follow")
async def _(service, people):
    w = Walk(service, NEW_OPENID)
    reply = await w.follow()
    w.done()
    assert reply.startswith("欢迎关注支部助手！") and "直接回复您的姓名和绑定码" in reply
    return w


@walk("u-help")
async def _(service, people):
    w = Walk(service, NEW_OPENID)
    reply = await w.say("帮助")
    w.done()
    assert "绑定 姓名 绑定码" in reply and "绑定党员身份后可以使用更多功能" in reply
    return w


@walk("u-ask")
async def _(service, people):
    w = Walk(service, NEW_OPENID)
    reply = await w.say("党费交多少")
    w.done()
    assert reply.splitlines()[-1].startswith("来源：《") and "转给" not in reply
    return w


@walk("u-greeting")
async def _(service, people):
    w = Walk(service, NEW_OPENID)
    reply = await w.say("你好")
    w.done()
    assert reply.startswith("您好！您现在可以") and "回复 绑定" in reply
    return w


@walk("u-member-only")
async def _(service, people):
    w = Walk(service, NEW_OPENID)
    reply = await w.say("签到")
    w.done()
    assert reply == "这项功能需要先绑定党员身份。回复 绑定 开始。"
    return w


# ---------------------------------------------------------------- members: binding


async def _before_binding(service, people) -> str:
    """A meeting ahead and a notice sent while the newcomer was unbound; returns their code."""
    code = await new_roster_member(service)
    await call(service, people["李建国"])
    await notify(service, people["李建国"], "请大家本月底前交党费。")
    return code


async def _bound_and_caught_up(service, reply: str) -> None:
    assert reply.startswith(f"绑定成功！{NEW_MEMBER}，您好。"), reply
    assert "1 条通知，马上发给您" in reply and "下次会议：支部党员大会" in reply
    assert await bound_to(service, NEW_OPENID) == (await member_row(service, NEW_MEMBER)).id
    await service.deliver()
    assert any("请大家本月底前交党费" in text for text in service.pushed(NEW_OPENID))


@walk("m-bind-welcome")
async def _(service, people):
    code = await _before_binding(service, people)
    w = Walk(service, NEW_OPENID)
    assert "直接回复您的姓名和绑定码" in await w.follow()
    reply = await w.say(f"{NEW_MEMBER} {code}")
    w.done()
    await _bound_and_caught_up(service, reply)
    return w


@walk("m-bind-one")
async def _(service, people):
    code = await _before_binding(service, people)
    w = Walk(service, NEW_OPENID)
    await w.follow()
    reply = await w.say(f"绑定 {NEW_MEMBER} {code}")
    w.done()
    await _bound_and_caught_up(service, reply)
    return w


@walk("m-bind-name-first")
async def _(service, people):
    code = await _before_binding(service, people)
    w = Walk(service, NEW_OPENID)
    await w.follow()
    assert (await w.say(f"绑定 {NEW_MEMBER}")).startswith("请回复 6 位绑定码")
    reply = await w.say(code)
    w.done()
    await _bound_and_caught_up(service, reply)
    return w


@walk("m-bind-steps")
async def _(service, people):
    code = await _before_binding(service, people)
    w = Walk(service, NEW_OPENID)
    await w.follow()
    assert (await w.say("绑定")).startswith("请回复您的姓名和绑定码")
    reply = await w.say(f"{NEW_MEMBER} {code}")
    w.done()
    await _bound_and_caught_up(service, reply)
    return w


@walk("m-bind-menu")
async def _(service, people):
    code = await _before_binding(service, people)
    w = Walk(service, NEW_OPENID)
    await w.follow()
    assert (await w.tap("BIND")).startswith("请回复您的姓名和绑定码")
    reply = await w.say(f"{NEW_MEMBER} {code}")
    w.done()
    await _bound_and_caught_up(service, reply)
    return w


# ---------------------------------------------------------------- members: 我的, 帮助


@walk("m-me")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.say("我的")
    w.done()
    assert "姓名：王秀英" in reply and "提醒：打开" in reply
    return w


@walk("m-me-menu")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.tap("ME")
    w.done()
    assert "姓名：王秀英" in reply
    return w


@walk("m-help")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.say("帮助")
    w.done()
    assert reply.startswith("王秀英，您可以回复：") and "请假 原因" in reply
    return w


@walk("m-help-menu")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.tap("HELP")
    w.done()
    assert reply.startswith("王秀英，您可以回复：")
    return w


# ---------------------------------------------------------------- members and secretaries: study


def _in_the_first_study_period(service) -> None:
    """The shipped content/study items: the first one runs 4–17 January 2027."""
    service.clock.set(datetime(2027, 1, 5, 2, 0, tzinfo=timezone.utc))


@walk("m-study")
async def _(service, people):
    _in_the_first_study_period(service)
    w = Walk(service, people["王秀英"])
    reply = await w.voice("学习")
    w.done()
    assert reply.startswith("【学习】") and "学完回复 已学" in reply
    return w


@walk("m-study-menu")
async def _(service, people):
    _in_the_first_study_period(service)
    w = Walk(service, people["王秀英"])
    reply = await w.tap("STUDY")
    w.done()
    assert reply.startswith("【学习】")
    return w


@walk("m-study-done")
async def _(service, people):
    _in_the_first_study_period(service)
    w = Walk(service, people["王秀英"])
    reply = await w.say("已学")
    w.done()
    assert reply.startswith("已记下：学完")
    return w


@walk("m-study-mine")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.say("我的学习")
    w.done()
    assert "一年的要求是 32 学时" in reply
    return w


@walk("m-study-off")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.say("关闭学习提醒")
    w.done()
    assert reply.startswith("好的，每周的学习内容不再推送给您。")
    return w


@walk("s-study")
async def _(service, people):
    _in_the_first_study_period(service)
    w = Walk(service, people["李建国"])
    reply = await w.say("学习情况")
    w.done()
    assert "还没学的：" in reply and "赵德明" in reply
    return w


@walk("s-at-home")
async def _(service, people):
    w = Walk(service, people["李建国"])
    reply = await w.say("送学上门 赵德明")
    w.done()
    assert reply.startswith("已把赵德明标为送学上门")
    return w


# ---------------------------------------------------------------- members: policy questions


@walk("m-ask-typed")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.say("我在家种地 党费一个月交多少")
    w.done()
    assert "农民党员" in reply and reply.splitlines()[-1].startswith("来源：《")
    return w


@walk("m-ask-voice")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.voice("我在家种地，党费一个月交多少？")
    w.done()
    assert "农民党员" in reply and reply.splitlines()[-1].startswith("来源：《")
    return w


@walk("m-ask-choice")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    choices = await w.say("党费的事")
    assert choices.startswith("您是不是想问：\n1 ")
    number = next(line.split()[0] for line in choices.splitlines() if "交多少" in line)
    reply = await w.say(number)
    w.done()
    assert "农民党员" in reply and reply.splitlines()[-1].startswith("来源：《")
    return w


async def _forwarded(service, people, reply: str, question: str) -> None:
    assert reply == "已把您的问题转给书记李建国，书记看到后会联系您。"
    await service.deliver()
    pushed = service.pushed(people["李建国"])[-1]
    assert pushed.startswith("【党员提问】王秀英") and question in pushed


@walk("m-ask-forward")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    assert "回复 1 把问题转给支部书记" in await w.say("村里修路的钱怎么分")
    reply = await w.say("1")
    w.done()
    await _forwarded(service, people, reply, "村里修路的钱怎么分")
    return w


@walk("m-ask-choice-forward")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    choices = await w.say("党费的事")
    last = re.search(r"回复 (\d) 把问题转给支部书记", choices).group(1)
    reply = await w.say(last)
    w.done()
    await _forwarded(service, people, reply, "党费的事")
    return w


# ---------------------------------------------------------------- members: notices


async def _acknowledged(service, people, reply: str) -> None:
    assert reply.startswith("已确认收到：“本周六上午9点村委会大扫除")
    report = await service.say(people["李建国"], "通知情况")
    assert "已回复收到 1。" in report and "王秀英" not in report.split("还没回复收到：")[1]


@walk("m-ack")
async def _(service, people):
    await notify(service, people["李建国"])
    assert "看过后请回复 收到" in service.pushed(people["王秀英"])[-1]
    w = Walk(service, people["王秀英"])
    reply = await w.say("收到")
    w.done()
    await _acknowledged(service, people, reply)
    return w


@walk("m-ack-menu")
async def _(service, people):
    await notify(service, people["李建国"])
    w = Walk(service, people["王秀英"])
    reply = await w.tap("ACK")
    w.done()
    await _acknowledged(service, people, reply)
    return w


# ---------------------------------------------------------------- members: 签到


def _checked_in(reply: str) -> None:
    assert reply == "签到成功！支部党员大会“学习党的二十届四中全会精神”，签到时间 14:50。", reply


@walk("m-checkin-code")
async def _(service, people):
    meeting = await meeting_on_now(service, people)
    w = Walk(service, people["王秀英"])
    reply = await w.say(f"签到 {meeting.checkin_code}")
    w.done()
    _checked_in(reply)
    assert await method_of(service, meeting.id, "王秀英") == CheckInMethod.CODE.value
    return w


@walk("m-checkin-word")
async def _(service, people):
    meeting = await meeting_on_now(service, people)
    w = Walk(service, people["王秀英"])
    reply = await w.voice("签到。")
    w.done()
    _checked_in(reply)
    assert await method_of(service, meeting.id, "王秀英") == CheckInMethod.MENU.value
    return w


@walk("m-checkin-tap")
async def _(service, people):
    meeting = await meeting_on_now(service, people)
    w = Walk(service, people["王秀英"])
    reply = await w.tap("CHECKIN")
    w.done()
    _checked_in(reply)
    assert await method_of(service, meeting.id, "王秀英") == CheckInMethod.MENU.value
    return w


@walk("m-checkin-pick")
async def _(service, people):
    await call(service, people["李建国"], when="明天下午3点")
    await call(service, people["李建国"], kind="5", when="11月25日 15:30", topic="清理村道垃圾")
    at(service, 11, 25, 15, 5)
    w = Walk(service, people["王秀英"])
    assert (await w.tap("CHECKIN")).startswith("现在有 2 个会议可以签到")
    reply = await w.say("2")
    w.done()
    assert reply.startswith("签到成功！主题党日“清理村道垃圾”")
    theme_day = await latest_meeting(service)
    assert await method_of(service, theme_day.id, "王秀英") == CheckInMethod.MENU.value
    return w


@walk("m-checkin-scan")
async def _(service, people):
    meeting = await meeting_on_now(service, people)
    w = Walk(service, people["王秀英"])
    reply = await w.scan(f"meeting:{meeting.id}")
    w.done()
    _checked_in(reply)
    assert await method_of(service, meeting.id, "王秀英") == CheckInMethod.QR.value
    return w


@walk("m-checkin-location")
async def _(service, people):
    _, meeting = await call(service, people["李建国"], place=(*HALL, "村委会"))
    at(service, 11, 25, 14, 50)
    w = Walk(service, people["王秀英"])
    reply = await w.location(*NEARBY)
    w.done()
    _checked_in(reply)
    assert await method_of(service, meeting.id, "王秀英") == CheckInMethod.LOCATION.value
    return w


async def _scanned_in_as_newcomer(service, meeting: Meeting, reply: str) -> None:
    _checked_in(reply)
    assert await method_of(service, meeting.id, NEW_MEMBER) == CheckInMethod.QR.value


@walk("m-checkin-qr-new")
async def _(service, people):
    code = await new_roster_member(service)
    meeting = await meeting_on_now(service, people)
    scene = f"meeting:{meeting.id}"
    w = Walk(service, NEW_OPENID)
    assert (await w.follow(scene)).startswith("欢迎关注支部助手！请先绑定党员身份")
    bound = await w.say(f"绑定 {NEW_MEMBER} {code}")
    assert bound.startswith("绑定成功") and "（现在可以签到）" in bound
    reply = await w.scan(scene)
    w.done()
    await _scanned_in_as_newcomer(service, meeting, reply)
    return w


# ---------------------------------------------------------------- members: 请假


async def _asked_leave(service, people, reply: str, reason: str, meeting: str = "支部党员大会") -> None:
    assert reply.startswith("已向书记请假（") and meeting in reply and reply.endswith(f"原因：{reason}")
    async with service.sessions() as session:
        (request,) = (await session.execute(select(LeaveRequest))).scalars()
    assert request.reason == reason and request.status == "pending"
    await service.deliver()
    assert service.pushed(people["李建国"])[-1].startswith(f"王秀英 请假：{reason}")


@walk("m-leave")
async def _(service, people):
    await call(service, people["李建国"])
    w = Walk(service, people["王秀英"])
    reply = await w.say("请假 家里有事")
    w.done()
    await _asked_leave(service, people, reply, "家里有事")
    return w


@walk("m-leave-ask")
async def _(service, people):
    await call(service, people["李建国"])
    w = Walk(service, people["王秀英"])
    assert (await w.say("请假")).startswith("请回复请假原因")
    reply = await w.say("去县城看病")
    w.done()
    await _asked_leave(service, people, reply, "去县城看病")
    return w


@walk("m-leave-pick")
async def _(service, people):
    await call(service, people["李建国"])
    await call(service, people["李建国"], kind="5", when="周五 9:00", topic="清理村道垃圾")
    w = Walk(service, people["王秀英"])
    assert (await w.say("请假 外出务工")).startswith("哪个会议？回复数字")
    reply = await w.say("2")
    w.done()
    await _asked_leave(service, people, reply, "外出务工", meeting="主题党日")
    return w


# ---------------------------------------------------------------- members: 开会时间


def _next_meeting(reply: str) -> None:
    assert reply.startswith("下次会议：支部党员大会\n时间：11月25日（周三）15:00") and "请假 原因" in reply, reply


@walk("m-meeting-time")
async def _(service, people):
    await call(service, people["李建国"])
    w = Walk(service, people["王秀英"])
    reply = await w.say("开会时间")
    w.done()
    _next_meeting(reply)
    return w


@walk("m-meeting-time-voice")
async def _(service, people):
    await call(service, people["李建国"])
    w = Walk(service, people["王秀英"])
    reply = await w.voice("下次开会是什么时候？")
    w.done()
    _next_meeting(reply)
    return w


@walk("m-meeting-time-menu")
async def _(service, people):
    await call(service, people["李建国"])
    w = Walk(service, people["王秀英"])
    reply = await w.tap("MEETINGS")
    w.done()
    _next_meeting(reply)
    return w


# ---------------------------------------------------------------- members: reminders, small talk


@walk("m-reminders-off")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.say("关闭提醒")
    w.done()
    assert reply.startswith("好的，提醒已关闭")
    assert (await member_row(service, "王秀英")).reminders_muted
    return w


@walk("m-reminders-on")
async def _(service, people):
    await service.say(people["王秀英"], "关闭提醒")
    w = Walk(service, people["王秀英"])
    reply = await w.say("打开提醒")
    w.done()
    assert reply.startswith("好的，提醒已打开")
    assert not (await member_row(service, "王秀英")).reminders_muted
    return w


@walk("m-greeting")
async def _(service, people):
    await notify(service, people["李建国"])
    w = Walk(service, people["王秀英"])
    reply = await w.say("你好")
    w.done()
    assert reply.startswith("王秀英，您好！您现在可以：\n· 回复 收到 —— 确认通知“本周六上午9点村委会大扫")
    return w


@walk("m-thanks")
async def _(service, people):
    w = Walk(service, people["王秀英"])
    reply = await w.say("谢谢")
    w.done()
    assert reply == "不客气！有事随时发消息。"
    return w


# ---------------------------------------------------------------- committee members


@walk("c-meeting-time")
async def _(service, people):
    await call(service, people["李建国"], kind="2", when="周五 9:00", topic="研究冬季慰问")
    w = Walk(service, people["张卫东"])
    reply = await w.say("开会时间")
    w.done()
    assert reply.startswith("下次会议：支委会\n时间：11月27日（周五）09:00")
    return w


# ---------------------------------------------------------------- secretaries


async def _meeting_called(service, people, reply: str, kind: str = "支部党员大会") -> Meeting:
    assert reply.startswith("会议已召集") and re.search(r"签到码：\d{6}", reply), reply
    meeting = await latest_meeting(service)
    assert meeting.kind == kind
    await service.deliver()
    return meeting


@walk("s-call")
async def _(service, people):
    w = Walk(service, people["李建国"])
    for said in ("开会", "1", "明天下午3点", "村委会会议室", "学习党的二十届四中全会精神"):
        await w.say(said)
    reply = await w.say("1")
    w.done()
    await _meeting_called(service, people, reply)
    assert service.pushed(people["王秀英"])[-1].startswith("【会议通知】红旗村党支部召开支部党员大会")
    return w


@walk("s-call-group")
async def _(service, people):
    w = Walk(service, people["李建国"])
    for said in ("开会", "3", "2", "下周三晚上7点", "刘家院子", "学党章 第三章"):
        await w.say(said)
    reply = await w.say("1")
    w.done()
    meeting = await _meeting_called(service, people, reply, kind="党小组会")
    assert meeting.group_id is not None
    assert service.pushed(people["陈志强"])[-1].startswith("【会议通知】红旗村党支部召开党小组会")
    assert service.pushed(people["王秀英"]) == []
    return w


@walk("s-call-location")
async def _(service, people):
    w = Walk(service, people["李建国"])
    for said in ("开会", "1", "明天下午3点"):
        await w.say(said)
    assert (await w.location(*HALL, "村委会")).startswith("已记下会场位置")
    await w.say("学习党的二十届四中全会精神")
    reply = await w.say("1")
    w.done()
    meeting = await _meeting_called(service, people, reply)
    assert meeting.place == "村委会" and meeting.latitude is not None
    return w


async def _delivered_now(service, openid: str) -> list[str]:
    """What the outbox pushes to openid now. Rows due at the same moment go out in no set order (the outbox
    sorts by due time alone), so a test looks among them rather than at the last one."""
    before = len(service.pushed(openid))
    await service.deliver()
    return service.pushed(openid)[before:]


async def _moved(service, people, reply: str, meeting_id: int) -> None:
    assert reply.startswith("已改到 11月27日（周五）09:00")
    async with service.sessions() as session:
        meeting = await session.get(Meeting, meeting_id)
    assert meeting.starts_at.astimezone(service.settings.zone).strftime("%m-%d %H:%M") == "11-27 09:00"
    assert any(text.startswith("【会议改时间】") for text in await _delivered_now(service, people["王秀英"]))


@walk("s-move")
async def _(service, people):
    _, meeting = await call(service, people["李建国"])
    w = Walk(service, people["李建国"])
    await w.say("改时间")
    assert "回复 1 确定改时间" in await w.say("周五 9:00")
    reply = await w.say("1")
    w.done()
    await _moved(service, people, reply, meeting.id)
    return w


@walk("s-move-pick")
async def _(service, people):
    _, meeting = await call(service, people["李建国"])
    await call(service, people["李建国"], kind="5", when="下周三晚上7点", topic="清理村道垃圾")
    w = Walk(service, people["李建国"])
    assert (await w.say("改时间")).startswith("哪个会议？回复数字")
    await w.say("1")
    await w.say("周五 9:00")
    reply = await w.say("1")
    w.done()
    await _moved(service, people, reply, meeting.id)
    return w


async def _cancelled(service, people, reply: str, meeting_id: int) -> None:
    assert reply.startswith("会议已取消")
    async with service.sessions() as session:
        assert (await session.get(Meeting, meeting_id)).status == "cancelled"
    assert any(text.startswith("【会议取消】") for text in await _delivered_now(service, people["王秀英"]))


@walk("s-cancel")
async def _(service, people):
    _, meeting = await call(service, people["李建国"])
    w = Walk(service, people["李建国"])
    assert "回复 1 确定取消会议" in await w.say("取消会议")
    reply = await w.say("1")
    w.done()
    await _cancelled(service, people, reply, meeting.id)
    return w


@walk("s-cancel-pick")
async def _(service, people):
    _, meeting = await call(service, people["李建国"])
    await call(service, people["李建国"], kind="5", when="下周三晚上7点", topic="清理村道垃圾")
    w = Walk(service, people["李建国"])
    await w.say("取消会议")
    await w.say("1")
    reply = await w.say("1")
    w.done()
    await _cancelled(service, people, reply, meeting.id)
    return w


@walk("s-qr")
async def _(service, people):
    await call(service, people["李建国"])
    w = Walk(service, people["李建国"])
    reply = await w.say("会议二维码")
    w.done()
    assert reply.startswith("正在为 11月25日（周三）15:00 支部党员大会 生成签到二维码")
    await service.deliver()
    assert service.pushed(people["李建国"])[-1].startswith("【会议签到二维码】")
    return w


@walk("s-proxy")
async def _(service, people):
    meeting = await meeting_on_now(service, people)
    w = Walk(service, people["李建国"])
    reply = await w.say("代签 赵德明 王秀英")
    w.done()
    assert "已为 赵德明 代签（14:50）" in reply and "已为 王秀英 代签（14:50）" in reply
    assert await method_of(service, meeting.id, "赵德明") == CheckInMethod.PROXY.value
    return w


async def _leave_asked(service, people, *names: str) -> None:
    await call(service, people["李建国"])
    for name in names:
        assert (await service.say(people[name], "请假 家里有事")).startswith("已向书记请假")


async def _decided(service, people, reply: str, name: str, status: str) -> None:
    verb = "同意" if status == "approved" else "不同意"
    assert reply.startswith(f"已{verb} {name} 的请假")
    member = await member_row(service, name)
    async with service.sessions() as session:
        request = (await session.execute(select(LeaveRequest).where(LeaveRequest.member_id == member.id))).scalar_one()
    assert request.status == status
    told = await _delivered_now(service, people[name])  # the meeting's notice too: it was due at the same moment
    assert any(text.startswith("书记已同意" if status == "approved" else "书记没有同意") for text in told), told


@walk("s-approve")
async def _(service, people):
    await _leave_asked(service, people, "王秀英")
    w = Walk(service, people["李建国"])
    reply = await w.say("同意")
    w.done()
    await _decided(service, people, reply, "王秀英", "approved")
    return w


@walk("s-approve-named")
async def _(service, people):
    await _leave_asked(service, people, "刘小梅", "王秀英")
    w = Walk(service, people["李建国"])
    reply = await w.say("同意 王秀英")
    w.done()
    await _decided(service, people, reply, "王秀英", "approved")
    return w


@walk("s-decline")
async def _(service, people):
    await _leave_asked(service, people, "王秀英")
    w = Walk(service, people["李建国"])
    reply = await w.say("不同意")
    w.done()
    await _decided(service, people, reply, "王秀英", "declined")
    return w


@walk("s-attendance")
async def _(service, people):
    meeting = await meeting_on_now(service, people)
    await service.say(people["王秀英"], f"签到 {meeting.checkin_code}")
    w = Walk(service, people["李建国"])
    reply = await w.say("签到情况")
    w.done()
    assert "应到 6 人，已签到 1 人" in reply and "已签到：王秀英 14:50" in reply
    return w


@walk("s-record")
async def _(service, people):
    meeting = await meeting_on_now(service, people)
    w = Walk(service, people["李建国"])
    assert "1/5 主持人是谁？" in await w.say("会议记录")
    for said in ("李建国", "张卫东", "学习了全会精神，大家发言踊跃"):
        await w.say(said)
    assert "5/5 表决情况" in await w.say("跳过")
    reply = await w.say("跳过")
    w.done()
    assert reply.startswith("会议记录已保存")
    async with service.sessions() as session:
        saved = await session.get(Meeting, meeting.id)
    assert (saved.host, saved.recorder, saved.resolutions) == ("李建国", "张卫东", None)
    return w


@walk("s-photo")
async def _(service, people):
    await meeting_on_now(service, people)
    at(service, 11, 25, 16, 30)
    w = Walk(service, people["李建国"])
    reply = await w.image()
    w.done()
    assert reply == "照片已附到11月25日（周三）15:00 支部党员大会，这次会议共 1 张照片。"
    return w


async def _notice_sent(service, people, reply: str, count: int, reached: str, missed: str | None = None) -> None:
    assert reply.startswith(f"通知已发出，共 {count} 人。")
    await service.deliver()
    assert service.pushed(reached)[-1].startswith("【")
    if missed:
        assert service.pushed(missed) == []


@walk("s-notice")
async def _(service, people):
    w = Walk(service, people["李建国"])
    for said in ("发通知", "本周六上午9点村委会大扫除，请党员参加。", "1"):
        await w.say(said)
    reply = await w.say("1")
    w.done()
    await _notice_sent(service, people, reply, 5, people["王秀英"])
    return w


@walk("s-notice-group")
async def _(service, people):
    w = Walk(service, people["李建国"])
    for said in ("发通知", "第二党小组本周五学习。", "3", "2"):
        await w.say(said)
    reply = await w.say("1")
    w.done()
    await _notice_sent(service, people, reply, 2, people["陈志强"], missed=people["王秀英"])
    return w


@walk("s-notice-named")
async def _(service, people):
    w = Walk(service, people["李建国"])
    for said in ("发通知", "请到村委会领慰问品。", "6", "王秀英 刘小梅"):
        await w.say(said)
    reply = await w.say("1")
    w.done()
    await _notice_sent(service, people, reply, 2, people["刘小梅"], missed=people["陈志强"])
    return w


@walk("s-notice-report")
async def _(service, people):
    await notify(service, people["李建国"])
    w = Walk(service, people["李建国"])
    reply = await w.say("通知情况")
    w.done()
    assert "共 5 人：已送达 4" in reply and "未绑定微信（发出后 7 天内绑定的会补收这条通知）：赵德明" in reply
    return w


@walk("s-reissue")
async def _(service, people):
    w = Walk(service, people["李建国"])
    reply = await w.say("新绑定码 王秀英")
    w.done()
    code = re.search(r"王秀英的新绑定码：(\d{6})", reply).group(1)
    assert (await service.say("new-phone", f"绑定 王秀英 {code}")).startswith("绑定成功！王秀英")
    return w


@walk("s-compliance")
async def _(service, people):
    w = Walk(service, people["李建国"])
    reply = await w.say("会议达标")
    w.done()
    assert reply.startswith("【会议情况】红旗村党支部，截至11月24日：") and "支部党员大会（2026年第4季度" in reply
    return w


# ---------------------------------------------------------------- organization staff


async def _township(service) -> str:
    await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    await service.bind("staff", "周晓燕", org_path=TOWN, role=Role.STAFF, phone="13700000001")
    return "staff"


@walk("t-notice")
async def _(service, people):
    staff = await _township(service)
    w = Walk(service, staff)
    for said in ("发通知", "请各支部本周五前报送党费收缴情况。", "1"):
        await w.say(said)
    reply = await w.say("1")
    w.done()
    await _notice_sent(service, people, reply, 7, "df-1")
    assert "党费收缴" in service.pushed(people["王秀英"])[-1]
    return w


@walk("t-notice-report")
async def _(service, people):
    staff = await _township(service)
    await notify(service, staff, "请各支部本周五前报送党费收缴情况。")
    await service.say(people["王秀英"], "收到")
    w = Walk(service, staff)
    reply = await w.say("通知情况")
    w.done()
    assert "红旗村党支部：6 人，送达 5，收到 1" in reply and "东风村党支部：1 人，送达 1，收到 0" in reply
    return w


# ---------------------------------------------------------------- the tests


def test_the_page_and_the_walks_name_the_same_flows():
    assert sorted(set(DOCUMENTED) - set(WALKS)) == [], "documented flows without a walk here"
    assert sorted(set(WALKS) - set(DOCUMENTED)) == [], "walks of flows the page does not list"


def test_the_page_lists_exactly_the_member_flows_over_the_goal():
    over = {flow for flow, steps in DOCUMENTED.items() if flow.startswith(MEMBER_SIDE) and steps > GOAL}
    assert over == set(KNOWN_OVER_GOAL)
    assert over_goal_section(PAGE_TEXT) == over


@pytest.mark.parametrize("flow", [
    pytest.param(flow, marks=pytest.mark.xfail(strict=True, reason=BROKEN[flow])) if flow in BROKEN else flow
    for flow in sorted(DOCUMENTED)])
async def test_flow_takes_no_more_steps_than_documented(service, flow):
    people = await hongqi_branch(service)
    w = await WALKS[flow](service, people)
    assert w.steps is not None, f"{flow}: the walk never said the flow was done"
    documented = DOCUMENTED[flow]
    assert w.steps <= documented, f"{flow} took {w.steps} steps; docs/flows.md says {documented}"
    if not flow.startswith(MEMBER_SIDE):
        return
    if flow in KNOWN_OVER_GOAL:
        assert w.steps > GOAL, (f"{flow} now takes {w.steps} steps: update docs/flows.md and remove it from "
                                "KNOWN_OVER_GOAL and the page's last section")
        return  # over the goal, as the page's last section says (test_the_page_lists_exactly_the_member_flows_over_the_goal)
    assert documented <= GOAL, f"{flow}: documented at {documented} steps, over the goal of {GOAL}"
