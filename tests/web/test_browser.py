"""Members' pages in a real browser (Debian's Chromium), against the whole service and the WeChat emulator.

A member whose 48-hour window has closed gets a template message; its link opens the page. These tests open
that link as the member would (a phone in WeChat's in-app browser; the notice also on a desktop), read what
the page shows, tap and fill what it offers, and check what the secretary then sees in the chat. Every page
checked is saved as a screenshot (tests/web/conftest.py).
"""

from __future__ import annotations

from playwright.async_api import expect
from sqlalchemy import select

from harness import hongqi_branch
from storage.models import LeaveRequest, OutboxMessage

INVALID_HEADING = "这个链接已经失效"
# Two lines, Chinese punctuation: the page must keep both.
NOTICE = "本周六上午9点，在村委会打扫卫生。\n请带上扫帚、簸箕；不要迟到！"
REASON = "家里老人住院，要去县医院陪护。"


# ---------------------------------------------------------------- getting a member a link


async def branch_outside_the_window(make_service):
    """The Hongqi branch two days after everyone bound: whatever is sent to members goes as a template
    message (with its page's link), since none of them has written in 48 hours."""
    service = await make_service(wechat_templates={"default": "TPL"})
    people = await hongqi_branch(service)
    service.clock.advance(hours=49)
    return service, people


def template_link(service, openid: str) -> str:
    """The link in the newest template message this member received."""
    templates = service.emulator.api.templates(openid)
    assert templates, f"{openid} received no template message"
    url = templates[-1].get("url")
    assert url and url.startswith(service.url.rstrip("/") + "/m/"), templates[-1]
    return url


async def send_notice(service, people, text: str = NOTICE) -> None:
    for said in ("发通知", text, "1"):
        await service.say(people["李建国"], said)
    sent = await service.say(people["李建国"], "1")
    assert sent.startswith("通知已发出"), sent
    await service.deliver()


async def call_meeting(service, people) -> None:
    secretary = people["李建国"]
    for said in ("开会", "1", "明天下午3点", "村委会", "学习新修订的条例"):
        await service.say(secretary, said)
    called = await service.say(secretary, "1")
    assert called.startswith("会议已召集"), called
    await service.deliver()


async def notice_copy(service, member_openid: str) -> OutboxMessage:
    """The member's copy of the newest notice (its acknowledged_at says when they answered 收到)."""
    async with service.sessions() as session:
        return (await session.execute(
            select(OutboxMessage).where(OutboxMessage.openid == member_openid, OutboxMessage.kind == "notice")
            .order_by(OutboxMessage.id.desc()).limit(1))).scalar_one()


def ack_button(screen):
    return screen.page.get_by_role("button", name="收到")


# ---------------------------------------------------------------- notices


async def test_a_member_reads_a_notice_from_its_template_and_taps_received(make_service, phone, desktop):
    service, people = await branch_outside_the_window(make_service)
    member, secretary = people["王秀英"], people["李建国"]
    await send_notice(service, people)
    link = template_link(service, member)

    response = await phone.open(link)
    assert response.status == 200
    main = phone.page.locator("main")
    assert NOTICE in await main.inner_text()  # both lines, as written
    await expect(ack_button(phone)).to_be_visible()
    await phone.shot("notice", docs="notice")

    # The same page on a desktop.
    assert (await desktop.open(link)).status == 200
    assert NOTICE in await desktop.page.locator("main").inner_text()
    assert await desktop.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await desktop.shot("notice")

    await ack_button(phone).click()
    await expect(main).to_contain_text("已确认收到")
    assert NOTICE in await main.inner_text()  # the text stays on the page
    await expect(ack_button(phone)).to_have_count(0)
    await phone.shot("acknowledged", docs="notice-acknowledged")
    assert (await notice_copy(service, member)).acknowledged_at is not None

    report = await service.say(secretary, "通知情况")
    assert "已送达 4，待发送 0，未送达 0，未绑定 1，已回复收到 1。" in report, report
    assert "王秀英" not in report.split("还没回复收到：")[1]
    # Nothing is left for the chat's 收到 to confirm.
    assert await service.say(member, "收到") == "目前没有需要确认的通知。"
    assert phone.outside(service.url) == [] and desktop.outside(service.url) == []


async def test_a_double_tap_on_received_acknowledges_once(make_service, phone):
    service, people = await branch_outside_the_window(make_service)
    member = people["王秀英"]
    await send_notice(service, people)
    link = template_link(service, member)

    await phone.open(link)
    await phone.shot("notice")
    await ack_button(phone).dblclick()
    await expect(phone.page.locator("main")).to_contain_text("已确认收到")
    await phone.shot("after-double-tap")
    first = (await notice_copy(service, member)).acknowledged_at
    assert first is not None

    # The same form posted again later (a reload that resends it, a second tap on a slow line): no change.
    service.clock.advance(minutes=5)
    again = await phone.page.context.request.post(link, form={"action": "ack"}, max_redirects=0)
    assert again.status == 303  # back to the page, which shows it acknowledged
    await phone.open(link)
    await expect(phone.page.locator("main")).to_contain_text("已确认收到")
    await phone.shot("posted-again")
    assert (await notice_copy(service, member)).acknowledged_at == first

    report = await service.say(people["李建国"], "通知情况")
    assert "已回复收到 1。" in report, report
    assert phone.outside(service.url) == []


# ---------------------------------------------------------------- meetings


async def test_a_member_asks_for_leave_on_the_meeting_page_and_the_secretary_is_told(make_service, phone, desktop):
    service, people = await branch_outside_the_window(make_service)
    member, secretary = people["王秀英"], people["李建国"]
    await call_meeting(service, people)
    link = template_link(service, member)

    assert (await phone.open(link)).status == 200
    main = phone.page.locator("main")
    shown = await main.inner_text()
    assert "支部党员大会" in shown and "村委会" in shown and "学习新修订的条例" in shown, shown
    assert "11月27日" in shown and "15:00" in shown, shown
    reason = phone.page.locator("textarea[name=reason]")
    await expect(reason).to_be_visible()
    await reason.fill(REASON)
    await phone.shot("meeting-leave-form", docs="meeting-leave")

    await phone.page.get_by_role("button", name="请假").click()
    await expect(main).to_contain_text(REASON)
    await expect(main).to_contain_text("已请假，等书记回复")
    await expect(phone.page.locator("textarea[name=reason]")).to_have_count(0)
    await phone.shot("leave-asked")

    # The same link on a desktop: the meeting, and the leave asked for, not a second form.
    assert (await desktop.open(link)).status == 200
    shown = await desktop.page.locator("main").inner_text()
    assert "学习新修订的条例" in shown and REASON in shown and "已请假，等书记回复" in shown, shown
    await expect(desktop.page.locator("textarea[name=reason]")).to_have_count(0)
    assert await desktop.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await desktop.shot("leave-asked")

    await service.deliver()
    told = [text for text in service.pushed(secretary) if "请假" in text]
    assert told and told[-1].startswith(f"王秀英 请假：{REASON}\n会议：") and "回复 同意 或 不同意" in told[-1], told
    async with service.sessions() as session:
        leaves = (await session.execute(select(LeaveRequest))).scalars().all()
    assert [(leave.reason, leave.status) for leave in leaves] == [(REASON, "pending")]
    assert phone.outside(service.url) == [] and desktop.outside(service.url) == []


async def test_an_empty_reason_shows_the_form_again_with_a_message(make_service, phone):
    service, people = await branch_outside_the_window(make_service)
    member, secretary = people["王秀英"], people["李建国"]
    await call_meeting(service, people)
    link = template_link(service, member)
    await phone.open(link)
    before = len(service.pushed(secretary))

    reason, main = phone.page.locator("textarea[name=reason]"), phone.page.locator("main")
    # Nothing typed: the browser itself asks for a reason (the field is required) and posts nothing.
    await phone.page.get_by_role("button", name="请假").click()
    assert await reason.evaluate("field => field.validity.valueMissing")
    await phone.shot("nothing-typed")
    # Spaces only pass the browser's check: the service shows the form again, saying what is missing.
    await reason.fill("   ")
    async with phone.page.expect_navigation() as navigation:
        await phone.page.get_by_role("button", name="请假").click()
    assert (await navigation.value).status == 400
    await expect(main.locator(".status.error")).to_have_text("请先写上请假原因，再点“请假”。")
    await expect(reason).to_be_visible()
    await expect(phone.page.get_by_role("button", name="请假")).to_be_visible()
    await phone.shot("empty-reason")

    await service.deliver()
    assert len(service.pushed(secretary)) == before
    async with service.sessions() as session:
        assert (await session.execute(select(LeaveRequest))).scalars().all() == []
    assert phone.outside(service.url) == []


# ---------------------------------------------------------------- links that no longer work


def tampered(link: str) -> str:
    """The link with one character of its signature changed."""
    head, _, signature = link.rpartition(".")
    middle = len(signature) // 2
    changed = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{changed}{signature[middle + 1:]}"


async def test_a_tampered_or_expired_link_shows_only_that_the_link_is_invalid(make_service, phone):
    service, people = await branch_outside_the_window(make_service)
    await send_notice(service, people)
    link = template_link(service, people["王秀英"])

    for step, url in (("tampered", tampered(link)), ("expired", link)):
        if step == "expired":
            service.clock.advance(days=61)
        response = await phone.open(url)
        assert response.status == 404, step
        assert await phone.page.locator("h1").inner_text() == INVALID_HEADING
        assert await phone.page.title() == "链接已失效 · 支部助手"
        content = await phone.page.content()
        assert "打扫卫生" not in content and "李建国" not in content and "红旗村" not in content, step
        await expect(ack_button(phone)).to_have_count(0)
        await phone.shot(step, docs="link-invalid" if step == "tampered" else None)
    assert phone.outside(service.url) == []


# ---------------------------------------------------------------- readable on a phone, self-contained


READABILITY = """() => {
  const main = document.querySelector("main");
  const sizes = [];
  for (const element of main.querySelectorAll("*")) {
    const own = [...element.childNodes].some(node => node.nodeType === Node.TEXT_NODE && node.textContent.trim());
    if (own) sizes.push([element.tagName + (element.className ? "." + element.className : ""),
                         parseFloat(getComputedStyle(element).fontSize)]);
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    body: parseFloat(getComputedStyle(document.body).fontSize),
    sizes,
  };
}"""


async def test_pages_are_readable_at_a_phones_size(make_service, phone):
    service, people = await branch_outside_the_window(make_service)
    # A long unbroken address must wrap, not widen the page.
    await send_notice(service, people, NOTICE + "\n详见 https://www.example.gov.cn/dangjian/2026/tongzhi/"
                      "cunweihui-weisheng-dasao-anpai-xiangxi-shuoming.html")
    notice = template_link(service, people["王秀英"])
    await call_meeting(service, people)
    meeting = template_link(service, people["王秀英"])

    for step, url in (("notice", notice), ("meeting", meeting)):
        await phone.open(url)
        assert await phone.page.evaluate("window.innerWidth") == 390
        measured = await phone.page.evaluate(READABILITY)
        assert measured["scrollWidth"] <= measured["innerWidth"], (step, measured)
        assert measured["body"] >= 16, (step, measured)
        assert measured["sizes"], step  # the page has text to measure
        small = [(tag, size) for tag, size in measured["sizes"] if size < 16]
        assert not small, (step, small)
        for button in await phone.page.get_by_role("button").all():
            box = await button.bounding_box()
            assert box["height"] >= 44, (step, await button.inner_text(), box)
        if step == "notice":
            box = await ack_button(phone).bounding_box()
            assert box["height"] >= 44, box
        await phone.shot(step)
    assert phone.outside(service.url) == []


async def test_no_request_leaves_the_service(make_service, phone, desktop):
    service, people = await branch_outside_the_window(make_service)
    await send_notice(service, people)
    notice = template_link(service, people["王秀英"])
    await call_meeting(service, people)
    meeting = template_link(service, people["王秀英"])

    for screen in (phone, desktop):
        await screen.open(notice)
        await screen.shot("notice")
        await screen.open(meeting)
        await screen.shot("meeting")
        await screen.open(tampered(notice))
        await screen.shot("invalid")
    # A tap posts back to the same address and comes back to it.
    await phone.open(notice)
    await ack_button(phone).click()
    await expect(phone.page.locator("main")).to_contain_text("已确认收到")
    await phone.shot("acknowledged")
    for screen in (phone, desktop):
        assert any(url.endswith("/static/zhibu.css") for url in screen.requests), screen.requests
        assert screen.outside(service.url) == [], screen.outside(service.url)
