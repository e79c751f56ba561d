"""Instructions per message, counted by valgrind's callgrind: a measure of the webhook path that the machine's
speed does not move.

On this shared two-core machine a message's CPU time swings by a third within an hour (README 性能), so a change
worth a few percent cannot be told from noise by timing it. The number of instructions the server executes for a
message does not swing: run twice, the same code gives the same count to within a fraction of a percent.

Each server runs under `valgrind --tool=callgrind --instr-atstart=no`: start-up and a warm-up run uninstrumented
(a few times slower than natively); then, for each kind of message, instrumentation is switched on, the counters
are zeroed (callgrind_control), the messages are sent, and a dump gives the instructions (Ir) the server's process
executed: every thread, the interpreter, SQLite and the C libraries; not the kernel's work for its system calls.
What the server does meanwhile on its own (the scheduler, the outbox's polls) is measured over a quiet interval
and subtracted for the time the messages took.

The messages are sent one at a time, each waiting for its reply: no group commit batches anything, so each count is
the cost of a message alone, which is what a change's A/B needs. Throughput under load is bench/webhook.py's;
a check-in peak is bench/burst.py's.

Kinds, each from members who have not sent it before (a check-in is real work only once):
- 我的, as bench/webhook.py sends it;
- 签到 with the meeting's code, 签到 alone, and the menu's 签到 button, as bench/burst.py's city sends them
  (one 主题党日 per branch, open for check-in);
- the bare aiohttp handler of bench/webhook.py, as the baseline (only its HTTP work: the floor any server pays).

    python bench/instructions.py [--messages 100] [--baseline REV | --baseline-dir DIR] [--database-url URL] [--safe]

--database-url: a PostgreSQL database instead of a fresh SQLite file, wiped first; only the server's instructions
are counted, not PostgreSQL's.
--baseline REV: the tree at that git revision (`git archive`) is measured too, in the same run, from the same
virtual environment: the before of a change, with the ratio per kind. Needs valgrind (Debian package valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.burst import build_city, openid_of  # noqa: E402
from bench.servers import free_port, server_env, wait_healthy  # noqa: E402
from bench.startup import LOADED, baseline_tree  # noqa: E402
from bot.config import DemoDefaults  # noqa: E402
from bot.wechat.emulator import Emulator, message_xml  # noqa: E402

CLOSED_API = "http://127.0.0.1:9"  # pushes go nowhere (none is expected: every reply is passive)
WARM_UP = 20  # messages of each kind sent uninstrumented first
QUIET_SECONDS = 10.0  # the idle interval measured to subtract the server's own background work
START_TIMEOUT = 900.0  # start-up under valgrind, with the Q&A index built cold, takes minutes
KINDS = ("我的", "签到 + code", "签到 alone", "签到 tap")


@dataclass
class Counted:
    instructions: dict[str, float] = field(default_factory=dict)  # kind → instructions per message
    replies: dict[str, str] = field(default_factory=dict)  # kind → a reply, to show what was measured
    idle_per_second: float = 0.0


class Callgrind:
    """A server process under callgrind, instrumented only while counting."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.out = cwd / "callgrind.out"
        self.log_path = cwd / "server.log"
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={self.out}", *command],
            env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.dumps = 0

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.process.pid)], check=True, capture_output=True)

    def start_counting(self) -> None:
        self._control("--instr=on")
        self._control("--zero")

    def read(self) -> int:
        """Instructions executed since start_counting (a dump, then its totals)."""
        self._control("--dump")
        self.dumps += 1
        dumped = Path(f"{self.out}.{self.dumps}")
        for line in dumped.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
        raise RuntimeError(f"no totals in {dumped}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def signed_request(emulator: Emulator, fields: dict, openid: str) -> tuple[str, bytes]:
    # Signed before they are sent, some seconds later (each waits for the one before it): a CreateTime an hour old
    # is one the server does not trust, and its reply budget then runs from the request's arrival (bench/webhook.py).
    plaintext = message_xml({"ToUserName": "gh_bench", "FromUserName": openid,
                             "CreateTime": int(time.time()) - 3600, **fields})
    query, body = emulator.sign(plaintext)
    return f"/wechat?{urlencode(query)}", body.encode()


def send_all(port: int, requests: list[tuple[str, bytes]], emulator: Emulator) -> list[str]:
    """Each request in turn on one keep-alive connection, waiting for its reply; the replies' texts, as the WeChat
    app would show them (decrypted in safe mode)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    replies = []
    try:
        for path, body in requests:
            connection.request("POST", path, body, {"Content-Type": "text/xml"})
            answer = connection.getresponse()
            text = answer.read().decode("utf-8", "replace")
            if answer.status != 200:
                raise RuntimeError(f"the server answered {answer.status}: {text[:200]}")
            replies.append(emulator.read_reply(answer.status, text) or text)
    finally:
        connection.close()
    return replies


class Messages:
    """Requests of each kind, every check-in from a member who has not checked in yet."""

    def __init__(self, city: dict, members: int, safe: bool) -> None:
        self.city = city
        self.members = members
        self.next_member = 1
        self.next_msg_id = int(time.time()) * 1000
        self.emulator = Emulator(app_id=DemoDefaults.app_id, app_secret=DemoDefaults.app_secret,
                                 token=DemoDefaults.token, aes_key=DemoDefaults.aes_key if safe else "")

    def take(self, kind: str, count: int) -> list[tuple[str, bytes]]:
        requests = []
        for _ in range(count):
            member_id = self.next_member
            self.next_member += 1
            if member_id > self.members:
                raise RuntimeError("more messages than members")
            self.next_msg_id += 1
            if kind == "签到 tap":
                fields = {"MsgType": "event", "Event": "CLICK", "EventKey": "CHECKIN"}
            else:
                if kind == "签到 + code":
                    content = f"签到 {self.city['codes'][self.city['member_branch'][member_id]]}"
                else:
                    content = {"我的": "我的", "签到 alone": "签到"}[kind]
                fields = {"MsgType": "text", "Content": content, "MsgId": self.next_msg_id}
            requests.append(signed_request(self.emulator, fields, openid_of(member_id)))
        return requests


def count_kinds(server: Callgrind, port: int, messages: Messages, count: int, *, bare: bool = False) -> Counted:
    counted = Counted()
    server.start_counting()
    time.sleep(QUIET_SECONDS)
    counted.idle_per_second = server.read() / QUIET_SECONDS
    for kind in (("bare",) if bare else KINDS):
        source = "我的" if bare else kind
        send_all(port, messages.take(source, WARM_UP), messages.emulator)
        requests = messages.take(source, count)
        server.start_counting()
        started = time.monotonic()
        replies = send_all(port, requests, messages.emulator)
        executed = server.read() - counted.idle_per_second * (time.monotonic() - started)
        counted.instructions[kind] = executed / count
        counted.replies[kind] = replies[-1]
        unexpected = [reply for reply in replies if not bare and _unexpected(kind, reply)]
        if unexpected:
            raise RuntimeError(f"{kind}: {len(unexpected)} replies were not the expected one, e.g. {unexpected[0]!r}; "
                               "the server's log ends:\n" + server.log_path.read_text(errors="replace")[-3000:])
    return counted


def _unexpected(kind: str, reply: str) -> bool:
    return not (reply.startswith("签到成功") if kind.startswith("签到") else "姓名" in reply)


def wait_for_content(server: Callgrind) -> None:
    """Until the Q&A index is loaded: the server answers before it is (built in a child process, or read from the
    cache), and loading it would stall the messages being counted."""
    deadline = time.monotonic() + START_TIMEOUT
    log = server.log_path
    while LOADED not in log.read_text(encoding="utf-8", errors="replace"):
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not load its content:\n" + log.read_text(errors="replace")[-2000:])
        time.sleep(0.5)


def measure(tree: Path, work: Path, count: int, database_url: str | None, safe: bool) -> Counted:
    """The full server of tree: a city's database, the server under callgrind, each kind counted."""
    data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    url = database_url or f"sqlite+aiosqlite:///{data}/bench.db"
    if database_url:
        from storage.db import reset_postgres_schema

        asyncio.run(reset_postgres_schema(url))
    env = server_env(url, data, api_base=CLOSED_API, safe=safe, extra={
        "PYTHONPATH": str(tree), "ZHIBU_CACHE_DIR": str(work / f"cache-{tree.name}"),
        "ZHIBU_CONTENT_DIR": str(tree / "content"),
        "ZHIBU_QUIET_HOURS_START": "00:00", "ZHIBU_QUIET_HOURS_END": "00:00"})
    zhibu = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())"]
    subprocess.run([*zhibu, "init"], env=env, cwd=data, check=True, capture_output=True)
    members = (len(KINDS) * (WARM_UP + count)) + 1
    # One 主题党日 per branch, starting in a minute: its check-in window is open throughout.
    meeting_at = (datetime.now(timezone.utc) + timedelta(minutes=1)).replace(microsecond=0)
    city = asyncio.run(build_city(url, members, meeting_at))
    port = free_port()
    server = Callgrind([*zhibu, "serve", "--host", "127.0.0.1", "--port", str(port)], env, data)
    try:
        print(f"  {tree.name}: starting under valgrind (minutes) …", file=sys.stderr, flush=True)
        asyncio.run(wait_healthy(port, server.process, seconds=START_TIMEOUT))
        wait_for_content(server)
        counted = count_kinds(server, port, Messages(city, members, safe), count)
    finally:
        server.stop()
    return counted


def measure_bare(work: Path, count: int, safe: bool) -> float:
    data = Path(tempfile.mkdtemp(prefix="bare-", dir=work))
    port = free_port()
    server = Callgrind([sys.executable, str(ROOT / "bench" / "webhook.py"), "--serve-bare", "--port", str(port)],
                       server_env("sqlite://", data, api_base=CLOSED_API), data)
    try:
        asyncio.run(wait_healthy(port, server.process, seconds=START_TIMEOUT))
        messages = Messages({"codes": [], "member_branch": []}, WARM_UP + count, safe)
        return count_kinds(server, port, messages, count, bare=True).instructions["bare"]
    finally:
        server.stop()


def main(count: int, baseline: str | None, baseline_dir: Path | None, database_url: str | None,
         safe: bool) -> None:
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (Debian package valgrind)")
    with tempfile.TemporaryDirectory(prefix="zhibu-instructions-") as folder:
        work = Path(folder)
        bare = measure_bare(work, count, safe)
        trees = []
        if baseline or baseline_dir:
            trees.append((f"before ({baseline or baseline_dir.name})",
                          baseline_dir.resolve() if baseline_dir else baseline_tree(baseline, work)))
        trees.append(("this tree", ROOT))
        results = [(name, measure(tree, work, count, database_url, safe)) for name, tree in trees]
    report(count, bare, results, ("PostgreSQL" if database_url else "SQLite") + (", safe mode" if safe else ""))


def report(count: int, bare: float, results: list[tuple[str, Counted]], engine: str) -> None:
    print(f"\nInstructions per message on {engine} (callgrind, the server's process only; one message at a time, "
          f"{count} of each kind after {WARM_UP} to warm up; the server's idle work subtracted)\n")
    names = [name for name, _ in results]
    header = f"| kind | {' | '.join(names)} |" + (" after / before |" if len(results) == 2 else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print(f"| bare aiohttp handler | {' | '.join(f'{bare / 1e3:,.0f} k' for _ in results)} |"
          + (" 1.000 |" if len(results) == 2 else ""))
    for kind in KINDS:
        values = [counted.instructions[kind] for _, counted in results]
        cells = " | ".join(f"{value / 1e3:,.0f} k ({value / bare:.1f}× bare)" for value in values)
        ratio = f" {values[1] / values[0]:.3f} |" if len(values) == 2 else ""
        print(f"| {kind} | {cells} |{ratio}")
    print("\nIdle work subtracted: " + ", ".join(
        f"{name} {counted.idle_per_second / 1e3:,.0f} k instructions/s" for name, counted in results))
    print("Last reply of each kind (this tree): " + "; ".join(
        f"{kind}: {reply[:24]!r}" for kind, reply in results[-1][1].replies.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100, help="messages of each kind counted")
    parser.add_argument("--baseline", help="a git revision to measure too (the before of a change)")
    parser.add_argument("--baseline-dir", type=Path, help="or a source tree to measure as the before")
    parser.add_argument("--database-url", help="a PostgreSQL database to use instead of a fresh SQLite file "
                                               "(wiped first; its server's own work is not counted)")
    parser.add_argument("--safe", action="store_true", help="safe mode: every request encrypted, every reply too")
    options = parser.parse_args()
    main(options.messages, options.baseline, options.baseline_dir, options.database_url, options.safe)
