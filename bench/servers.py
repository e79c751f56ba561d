"""What the benchmarks share: the real server started as `zhibu serve`, and what its processes cost.

Not a benchmark itself. The server runs as an operator runs it (`zhibu init`, then `zhibu serve`, with
`--workers N` when N > 1), configured through the environment; its CPU time and peak memory are read
from /proc for the whole process tree (the first process and every process it started), so a server
that forks workers is counted whole.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import DemoDefaults

ZHIBU = str(Path(sys.executable).parent / "zhibu")
# The checkout these benchmarks sit in: the servers run its code (ahead of whatever the venv installed).
ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(database_url: str, data_dir: Path, *, api_base: str, safe: bool = False,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `zhibu serve` reads (the demo credentials; never a real account's)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZHIBU_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(ZHIBU_DATABASE_URL=database_url, ZHIBU_DATA_DIR=str(data_dir), ZHIBU_WECHAT_TOKEN=DemoDefaults.token,
               ZHIBU_WECHAT_APP_ID=DemoDefaults.app_id, ZHIBU_WECHAT_APP_SECRET=DemoDefaults.app_secret,
               ZHIBU_WECHAT_API_BASE=api_base)
    if safe:
        env["ZHIBU_WECHAT_AES_KEY"] = DemoDefaults.aes_key
    env.update(extra or {})
    return env


def zhibu_init(env: dict[str, str], cwd: Path) -> None:
    subprocess.run([ZHIBU, "init"], env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def start_zhibu(port: int, env: dict[str, str], cwd: Path, *, workers: int = 1, log_name: str = "server.log"
                ) -> subprocess.Popen:
    """`zhibu serve` on 127.0.0.1:port; its output goes to cwd/log_name. cwd is a scratch folder (no .env)."""
    command = [ZHIBU, "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    log = open(cwd / log_name, "ab")
    try:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM to the server's process group (it started it: workers included), then SIGKILL if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def wait_healthy(port: int, process: subprocess.Popen | None = None, seconds: float = 120) -> None:
    for _ in range(int(seconds * 10)):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode} before it was up")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server on {port} did not come up")


# ---------------------------------------------------------------- what the processes cost (/proc)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as file:
            raw = file.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    return raw[raw.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """root and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if _stat(pid) is None:
            continue
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system time of one process (all its threads), and of its children it has waited for."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # After the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    return sum(int(value) for value in fields[11:15]) / TICKS


@dataclass
class CpuMeter:
    """CPU seconds used by a process tree between start() and read(), processes that appear in between
    counted from zero."""

    root: int
    _start: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self._start = {pid: cpu_seconds(pid) for pid in process_tree(self.root)}

    def read(self) -> float:
        return sum(cpu_seconds(pid) - self._start.get(pid, 0.0) for pid in process_tree(self.root))


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on this machine (the database's share of a run, read as a
    difference; other clients of the same server count too)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as file:
                    if file.read().strip() != "postgres":
                        continue
            except OSError:
                continue
            total += cpu_seconds(int(entry))
    return total


def peak_rss_mb(root: int) -> list[float]:
    """Peak resident memory (VmHWM) of each live process in the tree, in MB."""
    peaks = []
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as file:
                for line in file:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peaks


def supports_workers() -> bool:
    """Whether this checkout's `zhibu serve` has --workers (another change adds it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    help_text = subprocess.run([ZHIBU, "serve", "--help"], capture_output=True, text=True, env=env).stdout
    return "--workers" in help_text


# ---------------------------------------------------------------- cores of a given speed (cgroups)


class CpuCaps:
    """Processes each put in a control group of their own that may use at most `share` of one core (a CFS quota
    per period): so many small cores, simulated. On a machine with few cores the workers, the database and the
    load client take turns on the same ones, and whether throughput grows with the workers cannot be seen; capped,
    N workers need N × share, and the rest is left for the others (bench/scaling.py). Needs root and the cpu
    controller (cgroup v1's cpu hierarchy or v2's cpu.max)."""

    V1 = Path("/sys/fs/cgroup/cpu")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, share: float, *, period_us: int = 20_000, prefix: str = "zhibu-bench") -> None:
        # A short period: a capped process waits at most period × (1 - share) once its quota is spent.
        self.share, self.period_us, self.prefix = share, period_us, f"{prefix}-{os.getpid()}"
        controllers = self.V2 / "cgroup.controllers"  # cgroup v2 only
        if (self.V1 / "cpu.cfs_quota_us").exists():
            self._version = 1
        elif controllers.exists() and "cpu" in controllers.read_text().split():
            self._version = 2
        else:
            raise RuntimeError("no cgroup cpu controller here (neither /sys/fs/cgroup/cpu nor cgroup v2's cpu)")
        self._groups: list[Path] = []

    def cap(self, pid: int) -> None:
        """pid (all its threads) limited to share of a core from now on."""
        quota = max(1_000, int(self.share * self.period_us))
        root = self.V1 if self._version == 1 else self.V2
        group = root / f"{self.prefix}-{len(self._groups)}"
        try:
            group.mkdir()
            if self._version == 1:
                (group / "cpu.cfs_period_us").write_text(str(self.period_us))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (group / "cpu.max").write_text(f"{quota} {self.period_us}")
            (group / "cgroup.procs").write_text(str(pid))
        except PermissionError as error:
            raise RuntimeError(f"cannot make a cgroup at {group} (run as root): {error}") from error
        self._groups.append(group)

    def release(self) -> None:
        """Remove the groups (their processes must have ended; a live one is moved back to the root first)."""
        root = self.V1 if self._version == 1 else self.V2
        for group in self._groups:
            try:
                for pid in (group / "cgroup.procs").read_text().split():
                    (root / "cgroup.procs").write_text(pid)
                group.rmdir()
            except OSError:
                pass
        self._groups.clear()
