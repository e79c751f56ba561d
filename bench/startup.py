"""Start-up and memory of `zhibu serve`: time to the first 200 from /healthz, idle RSS, RSS after reloads.

Every run starts `zhibu serve` as a child process on a fresh SQLite database (made by `zhibu init`), with
demo credentials and a copy of the shipped content (so reloads can edit it), and measures

- when the port first accepts a connection and when /healthz first answers 200 (seconds from the spawn),
- the server's VmRSS once idle (it has stopped changing for a second),
- VmRSS and VmHWM (the peak) after three reloads by SIGHUP (what `zhibu content reload` sends), each after
  an edit of the content, so each one builds an index (the last edit restores the original content, so
  the cache is warm again for the next run);
- the longest a /healthz request (asked every 20 ms) waited while those reloads ran: how long a build
  holds up the event loop, and with it every member's reply.

Variants, measured in the same run:
- cold cache: an empty ZHIBU_CACHE_DIR, so the Q&A index is built and the cache written;
- warm cache: the cache a previous run left;
- with --baseline REV: the tree at that git revision (`git archive`, nothing in the working tree or .git
  changes), run from the same virtual environment: the before of a change (--baseline-dir DIR: a tree
  unpacked already).

    python bench/startup.py [--runs 3] [--baseline REV | --baseline-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import DemoDefaults  # noqa: E402

RELOADS = 3
# The log line every version of the Q&A holder writes when an index is in place (built or from the cache).
LOADED = "content loaded from"
FROM_CACHE = "from the cache"
READY_TIMEOUT = 120.0
RELOAD_TIMEOUT = 120.0
# Idle: RSS has moved less than this (kB) over IDLE_SECONDS.
IDLE_KB = 512
IDLE_SECONDS = 1.0
IDLE_TIMEOUT = 15.0
HEALTH_INTERVAL = 0.02


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_kb(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field_name} for process {pid}")


def idle_rss_kb(pid: int) -> int:
    """VmRSS once it has stopped moving (or after IDLE_TIMEOUT)."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    last = status_kb(pid, "VmRSS")
    while time.monotonic() < deadline:
        time.sleep(IDLE_SECONDS)
        now = status_kb(pid, "VmRSS")
        if abs(now - last) < IDLE_KB:
            return now
        last = now
    return last


def healthz_status(port: int) -> int | None:
    """The status of GET /healthz, or None when nothing listens yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            line = connection.makefile("rb").readline()
    except OSError:
        return None
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


class HealthWatch:
    """Asks /healthz every HEALTH_INTERVAL seconds from a thread, and keeps the longest answer time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(HEALTH_INTERVAL):
            started = time.perf_counter()
            if healthz_status(self.port) != 200:
                raise RuntimeError("/healthz failed during a reload")
            self.slowest = max(self.slowest, time.perf_counter() - started)


@dataclass
class Run:
    opened: float  # seconds from spawn until the port accepted a connection
    ready: float  # seconds from spawn until the first 200
    idle_mb: float
    reloaded_mb: float
    peak_mb: float
    cached: bool  # the start-up index came from the cache
    slowest_ms: float  # the longest a /healthz request waited while the reloads ran (the event loop's stalls)


@dataclass
class Variant:
    label: str
    tree: Path
    runs: list[Run] = field(default_factory=list)


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.content = work / "content"
        # The shipped content without the code: reloads edit this copy.
        shutil.copytree(ROOT / "content", self.content,
                        ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        self.synonyms = (self.content / "synonyms.toml").read_text(encoding="utf-8")

    def env(self, tree: Path, data: Path, cache: Path) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ZHIBU_")}
        env.update(PYTHONPATH=str(tree), ZHIBU_DATA_DIR=str(data), ZHIBU_CACHE_DIR=str(cache),
                   ZHIBU_CONTENT_DIR=str(self.content), ZHIBU_CONTENT_POLL_SECONDS="0",
                   ZHIBU_WECHAT_TOKEN=DemoDefaults.token, ZHIBU_WECHAT_APP_ID=DemoDefaults.app_id,
                   ZHIBU_WECHAT_APP_SECRET=DemoDefaults.app_secret,
                   # Nothing is sent at start-up; should anything be, it goes nowhere.
                   ZHIBU_WECHAT_API_BASE="http://127.0.0.1:9")
        return env

    @staticmethod
    def zhibu(*args: str) -> list[str]:
        return [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", *args]

    def run(self, tree: Path, cache: Path) -> Run:
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.work))
        env = self.env(tree, data, cache)
        # Run from the data folder: no .env of the working tree is read, and the tree comes from PYTHONPATH.
        subprocess.run(self.zhibu("init"), env=env, cwd=data, check=True, capture_output=True)
        (self.content / "synonyms.toml").write_text(self.synonyms, encoding="utf-8")
        port = free_port()
        log_path = data / "serve.log"
        with open(log_path, "wb") as log:
            started = time.perf_counter()
            server = subprocess.Popen(self.zhibu("serve", "--port", str(port)), env=env, cwd=data,
                                      stdout=log, stderr=subprocess.STDOUT)
            try:
                try:
                    opened, ready = self._wait_ready(server, port, started)
                except RuntimeError as error:
                    raise RuntimeError(f"{error}:\n{log_path.read_text(encoding='utf-8')[-3000:]}") from None
                idle = idle_rss_kb(server.pid)
                cached = FROM_CACHE in log_path.read_text(encoding="utf-8")
                # Two edits, then the original again: every reload builds, and the cache ends warm.
                edits = [self.synonyms + f"\n# bench reload {n}\n" for n in range(1, RELOADS)] + [self.synonyms]
                with HealthWatch(port) as watch:
                    for edit in edits:
                        loaded = log_path.read_text(encoding="utf-8").count(LOADED)
                        (self.content / "synonyms.toml").write_text(edit, encoding="utf-8")
                        server.send_signal(signal.SIGHUP)
                        self._wait_loaded(server, log_path, loaded + 1)
                reloaded = idle_rss_kb(server.pid)
                peak = status_kb(server.pid, "VmHWM")
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        shutil.rmtree(data, ignore_errors=True)
        print(f"  {tree.name}, cache {cache.name}: first 200 after {ready:.2f} s, idle {idle / 1024:.0f} MB, "
              f"after reloads {reloaded / 1024:.0f} MB", file=sys.stderr)
        return Run(opened=opened, ready=ready, idle_mb=idle / 1024, reloaded_mb=reloaded / 1024,
                   peak_mb=peak / 1024, cached=cached, slowest_ms=watch.slowest * 1000)

    @staticmethod
    def _wait_ready(server: subprocess.Popen, port: int, started: float) -> tuple[float, float]:
        opened = None
        while time.perf_counter() - started < READY_TIMEOUT:
            if server.poll() is not None:
                raise RuntimeError(f"zhibu serve exited with {server.returncode} before answering")
            status = healthz_status(port)
            now = time.perf_counter() - started
            if status is not None and opened is None:
                opened = now
            if status == 200:
                return opened, now
            time.sleep(0.005)
        raise RuntimeError("zhibu serve did not answer /healthz in time")

    @staticmethod
    def _wait_loaded(server: subprocess.Popen, log_path: Path, count: int) -> None:
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while time.monotonic() < deadline:
            text = log_path.read_text(encoding="utf-8")
            if text.count(LOADED) >= count:
                return
            if "reload failed" in text or server.poll() is not None:
                raise RuntimeError("a reload failed:\n" + text[-2000:])
            time.sleep(0.05)
        raise RuntimeError("a reload did not finish in time")


def spread(values: list[float], digits: int) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def baseline_tree(revision: str, work: Path) -> Path:
    """The tree at a git revision, unpacked beside the other temporary files."""
    tree = work / f"tree-{revision}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def main(runs: int, baseline: str | None, baseline_dir: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="zhibu-startup-") as folder:
        work = Path(folder)
        bench = Bench(work)
        variants: list[Variant] = []
        if baseline or baseline_dir:
            tree = baseline_dir.resolve() if baseline_dir else baseline_tree(baseline, work)
            before = Variant(f"before ({baseline or tree.name})", tree)
            for _ in range(runs):
                before.runs.append(bench.run(before.tree, work / "unused-cache"))
            variants.append(before)
        cold = Variant("cold cache (index built, cache written)", ROOT)
        warm = Variant("warm cache (index read from the cache)", ROOT)
        warm_cache = work / "cache-warm"
        for number in range(runs):
            cache = work / f"cache-cold-{number}"
            cold.runs.append(bench.run(ROOT, cache))
            if number == 0 and cache.exists():
                cache.rename(warm_cache)  # its last reload restored the original content: a warm cache
        for _ in range(runs):
            warm.runs.append(bench.run(ROOT, warm_cache))
        variants += [cold, warm]

    print(f"\n`zhibu serve` start-up and memory, {runs} run(s) each, SQLite, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs (median, min–max)\n")
    print("| variant | port open s | first 200 from /healthz s | idle RSS MB | RSS after 3 reloads MB "
          "| peak RSS MB | slowest /healthz during reloads ms | index from cache |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in variants:
        found = variant.runs
        cached = sum(run.cached for run in found)
        print(f"| {variant.label} | {spread([r.opened for r in found], 2)} | {spread([r.ready for r in found], 2)} "
              f"| {spread([r.idle_mb for r in found], 0)} | {spread([r.reloaded_mb for r in found], 0)} "
              f"| {spread([r.peak_mb for r in found], 0)} | {spread([r.slowest_ms for r in found], 0)} "
              f"| {cached}/{len(found)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="starts per variant (default 3)")
    parser.add_argument("--baseline", help="a git revision to measure too (the before of a change)")
    parser.add_argument("--baseline-dir", type=Path, help="or a source tree to measure as the before")
    options = parser.parse_args()
    main(options.runs, options.baseline, options.baseline_dir)
