"""`zhibu content reload` against a real `zhibu serve` process, the way an operator uses it.

The operator edits the content folder, runs `zhibu content reload`, and members get the new answer
without a restart; a broken edit is refused and the server keeps answering from the last good content.
Everything runs as separate processes (init, serve, content reload) sharing only the environment, the
data folder (database and pid file) and the content folder.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import xmltodict

from bot.config import DemoDefaults
from bot.wechat.emulator import message_xml
from bot.wechat.signing import new_nonce, signature
from content.loader import DEFAULT_ROOT
from handlers.qa import UNKNOWN, UNKNOWN_ASK_SECRETARY

REPO = Path(__file__).resolve().parents[2]

# Nothing in the shipped content answers this (checked with `zhibu ask`: out_of_scope).
QUESTION = "村里的广场舞队怎么报名参加党建联谊"
# Only the new entry says this, so seeing it in a reply proves the reload reached the server.
NEW_ANSWER = "广场舞队参加党建联谊活动，由队长向村党支部报名，支部统一安排时间和节目。"
EXTRA_FAQ = f'''
[[faq]]
id = "village-guangchangwu-lianyi"
question = "{QUESTION}"
phrasings = ["广场舞队怎么报名党建联谊", "广场舞队能参加党建联谊吗", "党建联谊活动广场舞队在哪报名"]
answer = "{NEW_ANSWER}"
source = "农村基层党建工作常见做法"
tags = ["党建联谊", "文体活动"]
local = true
'''
# Valid TOML, but an entry with only an id: every other required field is missing.
BROKEN_FAQ = '[[faq]]\nid = "x"\n'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def content_dir(tmp_path) -> Path:
    """A copy of the shipped content files (not the Python modules that live beside them)."""
    root = tmp_path / "content"
    root.mkdir()
    for name in ("sources.toml", "dictionary.txt", "synonyms.toml"):
        shutil.copy(DEFAULT_ROOT / name, root / name)
    for folder in ("faq", "docs"):
        shutil.copytree(DEFAULT_ROOT / folder, root / folder)
    return root


@pytest.fixture
def env(tmp_path, content_dir) -> dict:
    # Inherited ZHIBU_* settings (a developer's database URL, say) must not leak into the processes.
    base = {name: value for name, value in os.environ.items() if not name.startswith("ZHIBU_")}
    return {
        **base,
        # The processes run in tmp_path (so no stray .env is read); this makes them import this checkout.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), base.get("PYTHONPATH")])),
        "ZHIBU_DATA_DIR": str(tmp_path / "data"),
        "ZHIBU_CONTENT_DIR": str(content_dir),
        # 0 turns off the file watcher, so only SIGHUP (zhibu content reload) can change the content.
        "ZHIBU_CONTENT_POLL_SECONDS": "0",
        "ZHIBU_WECHAT_TOKEN": DemoDefaults.token,
        "ZHIBU_WECHAT_APP_ID": DemoDefaults.app_id,
        "ZHIBU_WECHAT_APP_SECRET": DemoDefaults.app_secret,
        # A port nobody listens on: anything the server tries to push fails locally, never reaching WeChat.
        "ZHIBU_WECHAT_API_BASE": f"http://127.0.0.1:{free_port()}",
    }


def zhibu(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run one `zhibu` command to completion, as an operator would in a shell."""
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)


class Server:
    """`zhibu serve` in a child process; its log goes to a file so a full pipe can never block it."""

    def __init__(self, env: dict, cwd: Path, *options: str, own_group: bool = False) -> None:
        """own_group: the server and its workers in a process group of their own, which can be signalled whole
        (os.killpg), as systemd signals every process of a service."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / "serve.log"
        with self.log_path.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--port", str(self.port), *options],
                env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=own_group)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_until_healthy(self, seconds: float = 90) -> None:
        # A first start builds the Q&A index (about 10 s on a calm machine, several times that on a busy one).
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"zhibu serve exited with {self.process.returncode}:\n{self.log()}")
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass  # not listening yet
                await asyncio.sleep(0.2)
        pytest.fail(f"zhibu serve did not answer /healthz within {seconds} s:\n{self.log()}")

    async def wait_for_log(self, text: str, seconds: float = 15) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.log():
            if time.monotonic() > deadline:
                pytest.fail(f"the server never logged {text!r}:\n{self.log()}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: aiohttp shuts down gracefully
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
async def server(env, tmp_path):
    init = zhibu(env, tmp_path, "init")
    assert init.returncode == 0, init.stderr
    running = Server(env, tmp_path)
    try:
        await running.wait_until_healthy()
        yield running
    finally:
        running.stop()


_msg_ids = itertools.count(int(time.time() * 1000))


async def ask(server: Server, text: str, openid: str = "follower-1", msg_id: int | None = None) -> str:
    """Post a text message as WeChat does (plaintext mode, signed) and return the passive reply's text.

    Each call has a new MsgId (unless given), or the server would take it for WeChat's retry and repeat the
    stored reply. Each call opens its own connection, as WeChat's copies of a message may.
    """
    timestamp, nonce = str(int(time.time())), new_nonce()
    query = {"timestamp": timestamp, "nonce": nonce, "signature": signature(DemoDefaults.token, timestamp, nonce)}
    body = message_xml({"ToUserName": "gh_zhibu", "FromUserName": openid, "CreateTime": int(timestamp),
                        "MsgType": "text", "Content": text, "MsgId": msg_id or next(_msg_ids)})
    async with aiohttp.ClientSession() as http, \
            http.post(f"{server.url}/wechat", params=query, data=body.encode("utf-8")) as response:
        reply = await response.text()
        assert response.status == 200, reply
    # "success" means no passive reply: the answer would have been pushed later instead.
    assert reply != "success", "the server answered nothing within the reply budget"
    return xmltodict.parse(reply)["xml"]["Content"]


async def ask_until(server: Server, text: str, expected: str, seconds: float = 90) -> str:
    """Ask again until the reply contains expected: a SIGHUP reload finishes a moment after the signal (it builds the
    new index in a child process: about 10 s on a calm machine, twice that on a busy one)."""
    deadline = time.monotonic() + seconds
    while True:
        reply = await ask(server, text)
        if expected in reply:
            return reply
        if time.monotonic() > deadline:
            pytest.fail(f"no reply with {expected!r} within {seconds} s; last reply: {reply!r}\n{server.log()}")
        await asyncio.sleep(0.2)


async def test_content_reload_reaches_the_running_server_and_a_broken_edit_keeps_the_last_good_content(
        server, env, tmp_path, content_dir):
    # Before: the question is declined (and not, say, answered by some loosely related entry).
    # A party question (党建) the content does not cover: said so, not guessed at.
    assert await ask(server, QUESTION) == UNKNOWN + UNKNOWN_ASK_SECRETARY

    # The operator adds an entry and reloads; the server answers with it, citing its source.
    (content_dir / "faq" / "extra.toml").write_text(EXTRA_FAQ, encoding="utf-8")
    reload = await asyncio.to_thread(zhibu, env, tmp_path, "content", "reload")
    assert reload.returncode == 0, reload.stderr
    pid = int((tmp_path / "data" / "zhibu.pid").read_text(encoding="utf-8"))
    assert pid == server.process.pid and f"已通知服务（进程 {pid}）重新加载问答和学习内容" in reload.stdout
    reply = await ask_until(server, QUESTION, NEW_ANSWER)
    assert reply == f"{NEW_ANSWER}\n来源：《农村基层党建工作常见做法》（这是各地常见做法，具体以本乡镇党委的要求为准）"

    # A broken file: `zhibu content reload` checks first, names the problems and does not signal.
    (content_dir / "faq" / "broken.toml").write_text(BROKEN_FAQ, encoding="utf-8")
    refused = await asyncio.to_thread(zhibu, env, tmp_path, "content", "reload")
    assert refused.returncode == 1
    assert "faq/broken.toml:1: 缺少字段 answer" in refused.stderr
    assert "没有重新加载（服务继续使用原来的内容）" in refused.stderr
    assert NEW_ANSWER in await ask(server, QUESTION)

    # The same files reaching the server anyway (`kill -HUP`, which the command would have sent): the
    # server logs the problem and keeps serving the last good content, the new entry included.
    os.kill(server.process.pid, signal.SIGHUP)
    await server.wait_for_log("content reload failed; still serving the previous content")
    # Two signals in all: the good reload's and ours; the refused command sent none.
    assert server.log().count("SIGHUP: reloading content") == 2
    assert "faq/broken.toml:1: 缺少字段 answer" in server.log()
    assert NEW_ANSWER in await ask(server, QUESTION)
    assert server.process.poll() is None
