"""`zhibu serve --workers N`: N server processes on one port, and the parent that looks after them.

Each worker is a whole service (webhook, pages, outbox, orphan recovery) listening with SO_REUSEPORT, so
the kernel spreads connections over them; they share the database, and the scheduler's leader lock lets
exactly one of them run the jobs. The parent only supervises: it owns the pid file, passes SIGHUP (a
content reload) and SIGTERM/SIGINT on to the workers, and starts a worker again when one dies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

log = logging.getLogger(__name__)

# A worker that dies sooner than this after its start is not started again at once (a broken
# configuration would otherwise spin); the parent waits this long before trying again.
RESTART_PAUSE = 5.0
# How long the workers get to finish what they are doing after SIGTERM before they are killed.
STOP_GRACE = 30.0


class Supervisor:
    def __init__(self, count: int, target: Callable[..., None], args: tuple, *, pid_path: Path) -> None:
        self.count = count
        self.target = target
        self.args = args
        self.pid_path = pid_path
        # Spawned, not forked: each worker imports and builds its service from nothing, with no state
        # (threads, sockets, the parent's event loop) copied half-alive from the parent.
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, tuple[BaseProcess, float]] = {}
        self._stopping = False
        self._signal: int | None = None

    def run(self) -> int:
        """Start the workers and look after them until SIGTERM or SIGINT; the exit status."""
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.write_text(f"{os.getpid()}\n", encoding="utf-8")
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._note_signal)
        try:
            for slot in range(self.count):
                self._start(slot)
            while not self._stopping:
                self._handle_signal()
                self._restart_dead()
                time.sleep(0.2)
            return self._stop()
        finally:
            if self.pid_path.exists() and self.pid_path.read_text(encoding="utf-8").strip() == str(os.getpid()):
                self.pid_path.unlink()

    def _note_signal(self, signum, _frame) -> None:
        # Only noted here; acted on in the loop, outside the signal handler.
        self._signal = signum
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stopping = True

    def _handle_signal(self) -> None:
        signum, self._signal = self._signal, None
        if signum == signal.SIGHUP:
            log.info("SIGHUP: passing the reload on to %d worker(s)", len(self._workers))
            for process, _ in self._workers.values():
                if process.pid is not None and process.is_alive():
                    os.kill(process.pid, signal.SIGHUP)

    def _start(self, slot: int) -> None:
        process = self._context.Process(target=self.target, args=(*self.args, slot), name=f"zhibu-worker-{slot}")
        process.start()
        self._workers[slot] = (process, time.monotonic())
        log.info("worker %d started (pid %s)", slot, process.pid)

    def _restart_dead(self) -> None:
        for slot, (process, started) in list(self._workers.items()):
            if process.is_alive():
                continue
            if time.monotonic() - started < RESTART_PAUSE:
                continue  # it died at once: wait a little before trying again
            log.error("worker %d (pid %s) exited with status %s; starting it again", slot, process.pid,
                      process.exitcode)
            self._start(slot)

    def _stop(self) -> int:
        log.info("stopping %d worker(s)", len(self._workers))
        for process, _ in self._workers.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process, _ in self._workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop within %.0f s; killing it", process.pid, STOP_GRACE)
                process.kill()
                process.join()
        # A worker still starting when the SIGTERM came ends by the signal itself: stopped as asked, too.
        stopped = (0, -signal.SIGTERM)
        return 0 if all(process.exitcode in stopped for process, _ in self._workers.values()) else 1
