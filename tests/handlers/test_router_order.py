"""The order the features are listed in (bot.app.feature_routers) does not change what anyone is answered.

The same script (binding, 签到情况 next to 签到, calling a meeting and checking in by its QR code, a follow
through that code, a notice and 收到, a policy question, 帮助, a greeting) runs with the features in the
default order, reversed, and shuffled with fixed seeds; every reply and every message pushed must come out
the same (where a reply gathers what several features say, what they say: see _help_in_any_order). Each
run gets a fresh, empty database.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.app import ENGINE, feature_routers
from harness import DONGFENG, hongqi_branch
from storage.db import reset_postgres_schema, upgrade_schema_async
from test_meetings import at, call

NEWCOMER = "孙桂兰"  # on the roster, binds late: after a notice went out and with a meeting ahead
# Nothing in the background: no jobs, and the orphan recovery looks once, at start-up, so that a finished
# run's service never reaches into the next run's database.
QUIET = dict(scheduler_enabled=False, claim_lease=3600.0)


def _orders() -> dict[str, list[int]]:
    count = len(feature_routers())
    orders = {"reversed": list(reversed(range(count)))}
    for seed in (1, 2, 3):
        order = list(range(count))
        random.Random(seed).shuffle(order)
        orders[f"seed-{seed}"] = order
    return orders


ORDERS = _orders()


def test_the_orders_tried_differ_and_put_membership_before_meetings_at_least_once():
    # Membership first is the case the order once decided: its welcome took a follow through a meeting's QR code.
    default = [router.name for router in feature_routers()]
    tried = [[default[index] for index in order] for order in ORDERS.values()]
    assert default not in tried and len({tuple(names) for names in tried}) == len(tried)
    assert any(names.index("membership") < names.index("meetings") for names in tried)


def _masked(text: str | None) -> str | None:
    # Check-in and binding codes are random: six digits, whatever they are, read the same here.
    return None if text is None else re.sub(r"(?<!\d)\d{6}(?!\d)", "######", text)


# Two replies gather what every feature has to say, in the order the features are listed, and that order is
# chosen on purpose (bot/app.py): 帮助 lists the commands feature by feature, and the reply to a binding adds
# what other features tell the new member (bot.dispatch.Context.announce). For those, what is listed must be
# the same; the order of the features' parts is compared nowhere else.
def _help_in_any_order(reply: str) -> str:
    lines = reply.split("\n")
    commands = iter(sorted(line for line in lines if line.startswith("· ")))
    return "\n".join(next(commands) if line.startswith("· ") else line for line in lines)


def _additions_in_any_order(reply: str) -> str:
    own, *added = reply.split("\n\n")
    return "\n\n".join([own, *sorted(added)])


async def script(service) -> list[tuple[str, str | None]]:
    """What everyone sends, and what they are answered, in order; then what the outbox delivered to each."""
    seen: list[tuple[str, str | None]] = []
    people = await hongqi_branch(service)
    await service.bind("df-1", "孙大海", org_path=DONGFENG, phone="13900000001")
    people["孙大海"] = "df-1"
    people.update(newcomer="newcomer", 路人="passer-by", 扫码新人="qr-newcomer", 海报粉丝="poster-fan")
    secretary = people["李建国"]

    async def say(who: str, text: str, listing: Callable[[str], str] | None = None) -> None:
        reply = await service.say(people[who], text)
        seen.append((f"{who}：{text}", listing(reply) if listing and reply else reply))

    async def event(who: str, what: str, delivery) -> None:
        seen.append((f"{who}：[{what}]", (await delivery).reply))
        service.clock.advance(seconds=1)  # the next event from anyone is not a copy of this one

    # Followers not bound yet, and members before any meeting.
    await event("路人", "关注", service.emulator.subscribe(people["路人"]))
    await event("海报粉丝", "扫海报二维码关注", service.emulator.subscribe(people["海报粉丝"], "poster:1"))
    for who in ("路人", "王秀英", "李建国"):
        await say(who, "帮助", _help_in_any_order)
    for text in ("你好", "党费交多少", "签到", "取消"):
        await say("路人", text)
    for text in ("你好", "我在家种地 党费一个月交多少", "开会时间", "签到"):
        await say("王秀英", text)
    for text in ("签到情况", "会议记录", "谢谢"):
        await say("李建国", text)

    # Someone on the roster who has not bound yet: the meeting and the notice below cannot reach them.
    _, code = await service.add_member(NEWCOMER, "示范县委/城关镇党委/红旗村党支部/第一党小组", phone="13800000009")

    # The secretary calls a meeting for tomorrow 15:00.
    replies, meeting = await call(service, secretary)
    seen += [(f"李建国：开会（第 {step} 步）", reply) for step, reply in enumerate(replies, start=1)]
    for text in ("下次开会是什么时候", "签到", "请假"):
        await say("王秀英", text)
    await say("孙大海", "开会时间")

    # A notice, and 收到.
    for text in ("发通知", "本周六上午9点村委会大扫除，请党员参加。", "1", "1"):
        await say("李建国", text)
    await service.deliver()
    await say("王秀英", "收到")
    await say("李建国", "通知情况")

    # The newcomer binds late: the notice is caught up and the meeting ahead is told.
    await event("newcomer", "关注", service.emulator.subscribe(people["newcomer"]))
    await say("newcomer", f"{NEWCOMER} {code}", _additions_in_any_order)

    # Check-in is open: the QR code scanned, followed through, a code typed, the word alone.
    at(service, 11, 25, 14, 55)
    scene = f"meeting:{meeting.id}"
    await event("王秀英", "扫会议二维码", service.emulator.scan(people["王秀英"], scene))
    await event("刘小梅", "扫会议二维码关注", service.emulator.subscribe(people["刘小梅"], scene))
    await event("扫码新人", "扫会议二维码关注", service.emulator.subscribe(people["扫码新人"], scene))
    await event("孙大海", "扫会议二维码", service.emulator.scan(people["孙大海"], scene))
    await say("陈志强", f"签到 {meeting.checkin_code}")
    await say("张卫东", "签到")
    await say("李建国", "签到情况")
    await say("李建国", "签到")
    await say("王秀英", "签到情况")

    # After the meeting: the record and a photo.
    at(service, 11, 25, 16, 30)
    for text in ("会议记录", "李建国", "跳过", "传达全会精神，大家谈体会。", "冬季组织一次产业培训", "同意 5，反对 0，弃权 0"):
        await say("李建国", text)
    await event("李建国", "照片", service.emulator.image(secretary))
    await event("王秀英", "照片", service.emulator.image(people["王秀英"]))
    await say("王秀英", "谢谢")

    await service.deliver()
    for who, openid in people.items():
        seen += [(f"推送给{who}", text) for text in sorted(service.pushed(openid))]
    return [(_masked(step), _masked(reply)) for step, reply in seen]


async def fresh_database(service) -> None:
    """Stop the finished run from touching the database, then empty it for the next run."""
    await service.dispatcher.drain()
    await service.app[ENGINE].dispose()
    url = service.settings.database_url
    if make_url(url).get_backend_name() == "postgresql":
        await reset_postgres_schema(url)
    else:
        path = Path(make_url(url).database)
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
    await upgrade_schema_async(url)


# The default order's transcript, per engine: computed by the first order tried, compared by every order.
_EXPECTED: dict[str, list[tuple[str, str | None]]] = {}


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
async def test_every_reply_is_the_same_whatever_order_the_features_are_listed_in(make_service, database_url, order):
    routers = feature_routers()
    engine = make_url(database_url).get_backend_name()
    if engine not in _EXPECTED:
        baseline = await make_service(**QUIET)
        _EXPECTED[engine] = await script(baseline)
        assert len(_EXPECTED[engine]) > 60
        await fresh_database(baseline)

    shuffled = await make_service(routers=[routers[index] for index in order], **QUIET)
    assert await script(shuffled) == _EXPECTED[engine]
