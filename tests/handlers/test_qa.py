"""Q&A in the chat: unmatched text is a question; answers carry their source; choices, 更多, and the secretary."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from bot.cli import main
from content.loader import DEFAULT_ROOT
from content.search import QUESTION_MAX_CHARS, holder_for
from harness import SQLITE_ONLY
from storage.models import Role

FAQ = '''
[[faq]]
id = "dues-farmer"
question = "农民党员交多少党费？"
phrasings = ["种地的党员党费怎么交", "农村党员党费标准", "务农党员每月交多少党费"]
answer = "农民党员每月交纳党费0.2元至1元；规定只给了这个范围，具体数额由支部按本地做法确定。"
source = "关于中国共产党党费收缴、使用和管理的规定"
article = "第六条"
tags = ["党费"]
local = false

[[faq]]
id = "dues-missing"
question = "不交党费会怎么样？"
phrasings = ["半年没交党费有事吗", "长期不缴纳党费怎么处理", "忘了交党费要紧吗"]
answer = "没有正当理由连续六个月不交纳党费，就被认为是自行脱党。"
source = "中国共产党章程"
article = "第九条"
tags = ["党费"]
local = false

[[faq]]
id = "visit-five"
question = "五必访是哪五种情况？"
phrasings = ["什么时候要上门看望党员", "五必访指什么", "哪些情况要走访慰问"]
answer = "重大节日、生病住院、遭遇灾害或意外、家中有人病逝、生活工作有困难时，支部上门走访。"
source = "农村基层党建工作常见做法"
tags = ["关怀"]
local = true
'''

LONG_SECTION = "。".join(f"第{n}点：主题党日要提前通知党员，按时开展学习、议事和志愿服务活动" for n in range(1, 60))
DOC = f'''+++
id = "zhuti-dangri"
title = "主题党日"
source = "中国共产党支部工作条例（试行）"
tags = ["主题党日"]
+++
## 主题党日怎么安排
{LONG_SECTION}。
'''


def write_content(root: Path) -> Path:
    (root / "faq").mkdir(parents=True)
    (root / "docs").mkdir()
    shutil.copy(DEFAULT_ROOT / "sources.toml", root / "sources.toml")
    (root / "faq" / "sample.toml").write_text(FAQ, encoding="utf-8")
    (root / "docs" / "zhuti-dangri.md").write_text(DOC, encoding="utf-8")
    (root / "synonyms.toml").write_text('[synonyms]\n缴纳党费 = ["交党费", "缴党费"]\n', encoding="utf-8")
    return root


@pytest.fixture
def content_dir(tmp_path) -> Path:
    """The sample content in a folder of the test's own, for a test that changes it."""
    return write_content(tmp_path / "content")


@pytest.fixture(scope="session")
def shared_content_dir(tmp_path_factory) -> Path:
    """The sample content for the tests that only read it: one folder per test process, so its index is
    built once (an index is built for a folder, and a build takes seconds)."""
    return write_content(tmp_path_factory.mktemp("qa") / "content")


@pytest.fixture
async def qa_service(make_service, shared_content_dir):
    return await make_service(content_dir=shared_content_dir)


async def test_any_unmatched_text_is_a_question_with_its_source_last(qa_service):
    reply = await qa_service.say("u1", "农村党员党费交多少")
    assert reply.startswith("农民党员每月交纳党费0.2元至1元")
    assert reply.splitlines()[-1] == "来源：《关于中国共产党党费收缴、使用和管理的规定》第六条"
    reply = await qa_service.say("u1", "问 五必访指什么")
    assert reply.splitlines()[-1].startswith("来源：《农村基层党建工作常见做法》（这是各地常见做法")
    assert (await qa_service.say("u1", "问")).startswith("请在“问”后面写上问题")
    # Other features' commands still win.
    assert (await qa_service.say("u1", "帮助")).startswith("您可以回复")


async def test_voice_questions_use_the_recognized_text(qa_service):
    delivery = await qa_service.emulator.send("u1", {"MsgType": "voice", "MediaId": "m", "Format": "amr",
                                                     "Recognition": "半年没交党费有事吗"})
    assert delivery.reply.endswith("来源：《中国共产党章程》第九条")


async def test_unsure_offers_numbered_choices(qa_service, monkeypatch):
    import content.search as search

    original = search.QaIndex.search

    def strict(self, question, **options):
        return original(self, question, answer_threshold=1.01, suggest_threshold=0.0)

    monkeypatch.setattr(search.QaIndex, "search", strict)
    reply = await qa_service.say("u1", "党费")
    assert reply.startswith("您是不是想问：\n1 ")
    lines = reply.splitlines()
    choices = [line for line in lines if line[:1].isdigit()]
    assert 1 <= len(choices) <= 3
    number = next(n for n, line in enumerate(choices, start=1) if "不交党费" in line)
    assert (await qa_service.say("u1", str(number))).endswith("来源：《中国共产党章程》第九条")
    # The choice was used up: a number now means nothing.
    assert (await qa_service.say("u1", str(number))).startswith("没有听懂")


async def test_long_passages_continue_with_more(qa_service):
    reply = await qa_service.say("u1", "主题党日怎么安排")
    assert reply.startswith("【主题党日·主题党日怎么安排】")
    assert len(reply.encode()) <= 2048
    assert "回复 更多 继续阅读" in reply and reply.splitlines()[-1] == "来源：《中国共产党支部工作条例（试行）》"
    parts = [reply]
    while "回复 更多" in parts[-1]:
        parts.append(await qa_service.say("u1", "更多"))
        assert len(parts[-1].encode()) <= 2048 and parts[-1].endswith("来源：《中国共产党支部工作条例（试行）》")
    assert len(parts) >= 2 and "第59点" in parts[-1]
    assert (await qa_service.say("u1", "更多")).startswith("没有需要继续显示的内容")


async def test_out_of_scope_offers_the_secretary(qa_service):
    await qa_service.add_member("李书记", role=Role.SECRETARY)
    secretary = await qa_service.bind("sec", "李书记2", role=Role.SECRETARY)
    member = await qa_service.bind("m1", "王大妈")
    reply = await qa_service.say("m1", "今天天气怎么样")
    assert "暂时回答不了" in reply and "回复 帮助" in reply and "回复 1 把问题转给支部书记" in reply
    assert await qa_service.say("m1", "1") == "已把您的问题转给书记李书记2，书记看到后会联系您。"
    await qa_service.deliver()
    (pushed,) = qa_service.pushed("sec")
    assert "王大妈" in pushed and "今天天气怎么样" in pushed
    assert secretary and member


def _spy_on_searches(monkeypatch, hold: dict | None = None) -> list[tuple[int, str]]:
    """Records (characters read, thread name) for every search; hold maps a question to an Event it waits for."""
    import content.search as search

    original = search.QaIndex.search
    seen: list[tuple[int, str]] = []

    def spy(self, question, **options):
        seen.append((len(question), threading.current_thread().name))
        if hold and question in hold:
            hold[question][0].set()
            hold[question][1].wait(10)
        return original(self, question, **options)

    monkeypatch.setattr(search.QaIndex, "search", spy)
    return seen


async def test_a_very_long_text_is_answered_from_its_beginning_and_says_so(qa_service, monkeypatch):
    seen = _spy_on_searches(monkeypatch)
    # A question, then a long story (or a pasted notice): 10,000 characters.
    story = "我是种地的农民，年纪大了眼睛不好。"
    text = "农村党员党费交多少？" + story * (10_000 // len(story))
    reply = await qa_service.say("u1", text)
    lines = reply.splitlines()
    assert lines[0].startswith("您的消息很长，我只看了前面") and lines[0].endswith("下面是按这部分找到的：")
    read = int(lines[0].removeprefix("您的消息很长，我只看了前面").split("个字")[0])
    assert 0 < read <= QUESTION_MAX_CHARS
    # A farmer asking about dues: the figure worked out for a farmer (content.dues), citing the entry's rule.
    assert lines[1].startswith("在家务农的农民党员每月交0.2元到1元")
    assert lines[-1] == "来源：《关于中国共产党党费收缴、使用和管理的规定》第六条"
    # The search read the beginning only, in its worker thread, never on the event loop.
    assert seen and all(length <= QUESTION_MAX_CHARS and thread.startswith("qa-search") for length, thread in seen)
    # A question of ordinary length gets no note.
    assert (await qa_service.say("u1", "农村党员党费交多少")).startswith("农民党员每月交纳党费")


async def test_a_very_long_voice_message_gets_a_polite_reply_and_can_go_to_the_secretary(qa_service, monkeypatch):
    seen = _spy_on_searches(monkeypatch)
    await qa_service.bind("sec", "李书记", role=Role.SECRETARY)
    await qa_service.bind("m1", "王大妈")
    chatter = "今天赶集买了两斤鸡蛋回来路上碰见老张聊了半天"
    recognition = (chatter * (10_000 // len(chatter) + 1))[:10_000]
    delivery = await qa_service.emulator.voice("m1", recognition)
    assert delivery.reply.startswith(f"您的消息很长，我只看了前面{QUESTION_MAX_CHARS}个字，没有找到能回答的问题。")
    assert "请用一两句话问我" in delivery.reply and "回复 1 把这段话的开头转给支部书记" in delivery.reply
    assert all(length <= QUESTION_MAX_CHARS for length, _ in seen)
    assert (await qa_service.say("m1", "1")).startswith("已把您的问题转给书记李书记")
    await qa_service.deliver()
    (pushed,) = qa_service.pushed("sec")
    # The secretary gets the part that was read, marked as the beginning of something longer.
    assert recognition[:QUESTION_MAX_CHARS] + "……" in pushed and recognition[:QUESTION_MAX_CHARS + 1] not in pushed


@SQLITE_ONLY
async def test_a_search_in_its_thread_neither_holds_up_others_nor_minds_a_reload(make_service, content_dir,
                                                                                   monkeypatch):
    # Budgets long enough for a reload on a busy machine: the reply under test is the passive one.
    qa_service = await make_service(content_dir=content_dir, reply_budget=60, reply_timeout=60)
    started, release = threading.Event(), threading.Event()
    _spy_on_searches(monkeypatch, hold={"农村党员党费交多少": (started, release)})
    pending = asyncio.create_task(qa_service.say("u1", "农村党员党费交多少"))
    try:
        assert await asyncio.to_thread(started.wait, 10)
        # While that search waits in its thread, another member is answered...
        assert (await qa_service.say("u2", "五必访指什么")).startswith("重大节日、生病住院")
        # ...and the content is reloaded with a new answer.
        (content_dir / "faq" / "sample.toml").write_text(
            FAQ.replace("农民党员每月交纳党费0.2元至1元", "（新）农民党员每月交纳党费0.2元至1元"), encoding="utf-8")
        assert await asyncio.to_thread(holder_for(content_dir).reload)
    finally:
        release.set()
    # The search under way finishes on the index it started with; the next one reads the new content.
    assert (await pending).startswith("农民党员每月交纳党费0.2元至1元")
    assert (await qa_service.say("u3", "农村党员党费交多少")).startswith("（新）农民党员每月交纳党费")


async def test_a_question_is_searched_before_its_transaction_opens(make_service, shared_content_dir, monkeypatch):
    """A transaction holds SQLite's one write lock (and a pooled connection): a question must not keep it
    while it is searched, or every other member's message waits for the search."""
    qa_service = await make_service(content_dir=shared_content_dir, reply_budget=60, reply_timeout=60)
    started, release = threading.Event(), threading.Event()
    seen = _spy_on_searches(monkeypatch, hold={"农村党员党费交多少": (started, release)})
    pending = asyncio.create_task(qa_service.say("u1", "农村党员党费交多少"))
    try:
        assert await asyncio.to_thread(started.wait, 10)

        async def write() -> None:
            async with qa_service.sessions() as session, session.begin():
                await session.execute(sa.text("UPDATE wechat_identity SET subscribed = subscribed"))

        # While the search waits in its thread, a writer gets the database at once.
        await asyncio.wait_for(write(), 5)
    finally:
        release.set()
    assert (await pending).startswith("农民党员每月交纳党费0.2元至1元")
    # The handler answered from the search done beforehand: the question was searched once.
    assert len(seen) == 1
    # A command is not searched at all.
    await qa_service.bind("m1", "王秀英")
    assert (await qa_service.say("m1", "我的")).startswith("姓名：王秀英")
    assert len(seen) == 1


async def test_forwarding_is_offered_only_to_members_and_only_for_questions(qa_service, monkeypatch):
    # An unbound follower has no branch secretary to forward to: no offer, and 1 is no forward.
    declined = await qa_service.say("u9", "明天会下雨吗")
    assert declined.startswith("没有听懂“明天会下雨吗”") and "转给支部书记" not in declined
    assert "转给" not in await qa_service.say("u9", "1")
    # A member is offered it for a question, not for a word that asks nothing.
    await qa_service.bind("m1", "王秀英")
    assert "回复 1 把问题转给支部书记" in await qa_service.say("m1", "明天会下雨吗")
    assert "转给支部书记" not in await qa_service.say("m1", "拖拉机")

    import content.search as search

    original = search.QaIndex.search
    monkeypatch.setattr(search.QaIndex, "search", lambda self, question, **options: original(
        self, question, answer_threshold=1.01, suggest_threshold=0.0))
    suggested = await qa_service.say("u9", "党费")
    assert suggested.startswith("您是不是想问") and "转给支部书记" not in suggested
    last = len([line for line in suggested.splitlines() if line[:1].isdigit()])
    assert (await qa_service.say("u9", str(last + 1))) == f"请回复 1 到 {last} 之间的数字。"
    assert "转给支部书记" in await qa_service.say("m1", "党费")


async def test_non_text_still_gets_the_unsupported_reply(qa_service):
    assert (await qa_service.emulator.image("u1")).reply.startswith("暂时不能处理这类消息")


async def test_invalid_content_refuses_to_start(make_service, tmp_path):
    root = tmp_path / "bad"
    (root / "faq").mkdir(parents=True)
    shutil.copy(DEFAULT_ROOT / "sources.toml", root / "sources.toml")
    (root / "faq" / "x.toml").write_text('[[faq]]\nid = "x"\n', encoding="utf-8")
    with pytest.raises(Exception, match="content problem"):
        await make_service(content_dir=root)


@SQLITE_ONLY
async def test_the_server_reloads_changed_content(make_service, content_dir):
    service = await make_service(content_dir=content_dir, content_poll_seconds=0.05)
    assert "还没有准确的答案" in await service.say("u1", "村集体经济收入怎么公开")
    (content_dir / "faq" / "village.toml").write_text(FAQ.replace("dues-farmer", "village-income").replace(
        "农民党员交多少党费？", "村集体经济收入怎么公开？").replace("dues-missing", "x-1").replace("visit-five", "x-2")
        .replace('"种地的党员党费怎么交", "农村党员党费标准", "务农党员每月交多少党费"', '"集体收入公开吗", "村里的账怎么公开", "村集体的钱公示吗"'),
        encoding="utf-8")
    os.utime(content_dir / "faq" / "village.toml")
    holder = holder_for(content_dir)
    for _ in range(600):
        await asyncio.sleep(0.05)
        if holder.last_error is not None or holder.index.faq_by_id.get("village-income"):
            break
    # The new file duplicates the old entries' phrasings: the reload fails and the old index stays.
    assert holder_for(content_dir).last_error is not None
    (content_dir / "faq" / "sample.toml").unlink()
    # The new index is built in a child process (imports included): on a loaded two-core machine, seconds.
    for _ in range(600):
        await asyncio.sleep(0.05)
        if holder_for(content_dir).index.faq_by_id.get("village-income"):
            break
    assert holder_for(content_dir).index.faq_by_id.get("village-income") is not None
    assert (await service.say("u1", "村集体经济收入怎么公开")).startswith("农民党员每月交纳党费")  # the new entry's text


def test_ask_command_json_and_stdin(content_dir):
    env = {"ZHIBU_CONTENT_DIR": str(content_dir)}
    result = CliRunner().invoke(main, ["ask", "农村党员党费交多少", "--json"], env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output.strip().splitlines()[-1])
    assert answer["status"] == "answered" and answer["id"] == "dues-farmer"
    assert answer["source"] == "《关于中国共产党党费收缴、使用和管理的规定》第六条" and answer["suggestions"] == []
    result = CliRunner().invoke(main, ["ask", "-", "--json"], env=env, input="五必访指什么\n\n今天天气怎么样\n")
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [line["status"] for line in lines] == ["answered", "out_of_scope"]
    assert {"status", "answer", "source", "confidence", "suggestions"} <= set(lines[0])
    result = CliRunner().invoke(main, ["ask", "五必访指什么"], env=env)
    assert "来源：《农村基层党建工作常见做法》" in result.output


def test_content_reload_signals_the_server(content_dir, tmp_path):
    env = {"ZHIBU_CONTENT_DIR": str(content_dir), "ZHIBU_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(main, ["content", "reload"], env=env)
    assert result.exit_code == 1 and "没有找到正在运行的服务" in result.output
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "zhibu.pid").write_text(f"{os.getpid()}\n")
    received = []
    previous = signal.signal(signal.SIGHUP, lambda number, frame: received.append(number))
    try:
        result = CliRunner().invoke(main, ["content", "reload"], env=env)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert result.exit_code == 0 and received == [signal.SIGHUP], result.output
