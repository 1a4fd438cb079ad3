"""A small process pool whose every task has a time limit.

A stock ProcessPoolExecutor cannot cancel a running task, so one pathological input (sympy
expanding 9^(9^(9^9))) would stall training forever. Here each worker streams back one result per
item; the parent gives every item `timeout_s` of CPU time from the moment its worker is free for
it, and kills and replaces a worker that overruns. CPU time, not wall time: on a busy machine a
normal item can wait seconds for a core, and must not be scored as a timeout for it; a wall-clock
backstop (WALL_LIMIT_FACTOR x the limit) still bounds every item. Nothing relies on signals, so
`map` works from any thread.

Workers are fresh interpreters (`python -c ...`) talking over a socket pair: forking a process that
holds torch/CUDA state or threads is unsafe, and multiprocessing's "spawn" would re-run the
caller's main script in every worker whenever it lacks an `if __name__ == "__main__"` guard.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

READY = "ready"
# Items sent per IPC round trip: enough to amortise a send, small enough to balance the workers.
MAX_CHUNK = 32
# An item gets at most this many times its CPU limit in wall time, however starved the machine.
WALL_LIMIT_FACTOR = 5
# When an item reaches its wall deadline having used less CPU, look again this soon at the latest.
MIN_RECHECK_S = 0.05
# Worker start-up (python + math-verify import + warm-up) must finish within this.
STARTUP_TIMEOUT_S = 120.0
# After this many workers in a row fail to start, stop trying: report errors instead of looping.
MAX_FAILED_STARTS = 3
# A worker whose address space grows past this gets MemoryError (an error result), not the OOM
# killer's attention for the whole training job.
WORKER_MEMORY_BYTES = 8 << 30


class Outcome(NamedTuple):
    status: str  # "ok" | "timeout" | "error"
    value: Any  # the function's result when ok, else a short reason
    seconds: float


@dataclass
class _Worker:
    process: Any
    conn: Connection
    started_at: float
    ready: bool = False
    inflight: deque = field(default_factory=deque)
    item_started: float = math.inf  # when the worker became free for its current item
    cpu_seconds: float = 0.0  # the worker's CPU time then (it reports it with every message)
    next_check: float = math.inf  # when to look at its CPU time again


class TimedPool:
    """Runs `func(item)` for many items in worker processes, each item within `timeout_s`.

    `func` and `warm_up` must be module-level functions: workers import them by name.
    `on_restart` is called (in the parent) each time a worker is killed or found dead.
    """

    def __init__(
        self,
        func: Callable,
        warm_up: Callable | None,
        workers: int,
        on_restart: Callable[[], None] | None = None,
    ):
        self._targets = [_import_name(f) for f in (func, warm_up) if f is not None]
        self._size = max(1, workers)
        self._on_restart = on_restart
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        self._failed_starts = 0
        self.broken: str | None = None
        self.restarts = 0

    def map(self, items: Sequence, timeout_s: float) -> list[Outcome]:
        with self._lock:
            if os.getpid() != self._owner_pid:  # inherited through fork: those workers are not ours
                self._workers, self._owner_pid = [], os.getpid()
            return self._map(items, timeout_s)

    def start(self, wait: bool = True) -> None:
        """Start every worker; with `wait`, until each is ready (or the pool is found broken)."""
        with self._lock:
            self._fill()
            while wait and not self.broken and not all(w.ready for w in self._workers):
                self._wait_for_news(timeout_s=math.inf)
                self._collect([], deque(), timeout_s=math.inf)
                self._enforce_deadlines([], deque(), timeout_s=math.inf)
                self._fill()

    def close(self) -> None:
        """Stop every worker within about a second (used at interpreter exit); later calls to
        `map` report errors instead of starting new workers."""
        self.broken = self.broken or "the scoring pool is closed"
        workers, self._workers = self._workers, []
        for worker in workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # busy with an item: it will not read the request
                worker.process.kill()
                worker.process.wait()
            worker.conn.close()

    def _map(self, items: Sequence, timeout_s: float) -> list[Outcome | None]:
        results: list[Outcome | None] = [None] * len(items)
        queue = deque(range(len(items)))
        remaining = len(items)
        while remaining:
            if self.broken:
                return [r or Outcome("error", self.broken, 0.0) for r in results]
            self._fill()
            self._dispatch(items, queue, timeout_s)
            self._wait_for_news(timeout_s)
            remaining -= self._collect(results, queue, timeout_s)
            remaining -= self._enforce_deadlines(results, queue, timeout_s)
        return results

    def _fill(self) -> None:
        while len(self._workers) < self._size and not self.broken:
            self._start_worker()

    def _start_worker(self) -> None:
        parent_end, child_end = socket.socketpair()
        on_main_thread = threading.current_thread() is threading.main_thread()
        command = (
            f"from {__name__} import serve; "
            f"serve({child_end.fileno()}, {os.getpid()}, {on_main_thread}, {self._targets!r})"
        )
        env = dict(os.environ)
        # The worker must import this package even when it is not installed (a source checkout).
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", command], pass_fds=[child_end.fileno()], env=env
            )
        except OSError as err:
            self.broken = f"scoring workers cannot start: {type(err).__name__}: {err}"
            log.error(self.broken)
            parent_end.close()
            return
        finally:
            child_end.close()
        conn = Connection(parent_end.detach())
        self._workers.append(_Worker(process, conn, time.monotonic()))

    def _dispatch(self, items: Sequence, queue: deque, timeout_s: float) -> None:
        idle = [w for w in self._workers if w.ready and not w.inflight]
        if not idle or not queue:
            return
        chunk = min(MAX_CHUNK, max(1, math.ceil(len(queue) / (2 * len(self._workers)))))
        for worker in idle:
            batch = [queue.popleft() for _ in range(min(chunk, len(queue)))]
            if not batch:
                return
            try:
                worker.conn.send([(index, items[index]) for index in batch])
            except (OSError, ValueError):  # died since the last look; _collect will replace it
                queue.extendleft(reversed(batch))
                continue
            worker.inflight.extend(batch)
            worker.item_started = time.monotonic()
            worker.next_check = worker.item_started + timeout_s

    def _wait_for_news(self, timeout_s: float) -> None:
        now = time.monotonic()
        deadlines = [w.next_check for w in self._workers if w.inflight]
        deadlines += [w.started_at + STARTUP_TIMEOUT_S for w in self._workers if not w.ready]
        if not deadlines:
            return
        wait([w.conn for w in self._workers], timeout=max(0.0, min(deadlines) - now))

    def _collect(self, results: list, queue: deque, timeout_s: float) -> int:
        done = 0
        for worker in list(self._workers):
            try:
                while worker.conn.poll():
                    message = worker.conn.recv()
                    if message[0] == READY:
                        worker.ready, worker.cpu_seconds = True, message[1]
                        self._failed_starts = 0
                        continue
                    index, status, value, seconds, worker.cpu_seconds = message
                    worker.inflight.popleft()
                    results[index] = Outcome(status, value, seconds)
                    worker.item_started = time.monotonic()
                    worker.next_check = worker.item_started + timeout_s
                    done += 1
            except (EOFError, OSError):
                done += self._replace(worker, results, queue, "error", "scoring worker died")
        return done

    def _enforce_deadlines(self, results: list, queue: deque, timeout_s: float) -> int:
        now, done = time.monotonic(), 0
        for worker in list(self._workers):
            if worker.inflight and now >= worker.next_check:
                wall = now - worker.item_started
                cpu = cpu_seconds(worker.process.pid)
                used = wall if cpu is None else cpu - worker.cpu_seconds
                if used >= timeout_s or wall >= timeout_s * WALL_LIMIT_FACTOR:
                    done += self._replace(worker, results, queue, "timeout", "time limit exceeded")
                else:
                    worker.next_check = now + max(MIN_RECHECK_S, timeout_s - used)
            elif not worker.ready and now > worker.started_at + STARTUP_TIMEOUT_S:
                done += self._replace(worker, results, queue, "error", "worker start timed out")
        return done

    def _replace(self, worker: _Worker, results: list, queue: deque, status: str, why: str) -> int:
        """Kill `worker`; its current item gets `status`, the rest of its batch is re-queued."""
        worker.process.kill()
        worker.process.wait(timeout=5.0)
        worker.conn.close()
        self._workers.remove(worker)
        self.restarts += 1
        if self._on_restart is not None:
            self._on_restart()
        if not worker.ready:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                self.broken = f"scoring workers failed to start {MAX_FAILED_STARTS} times ({why})"
                log.error(self.broken)
        if not worker.inflight:
            return 0
        current = worker.inflight.popleft()
        results[current] = Outcome(status, why, time.monotonic() - worker.item_started)
        queue.extendleft(reversed(worker.inflight))
        return 1


def serve(fd: int, parent_pid: int, kill_with_parent: bool, targets: list[str]) -> None:
    """Worker main loop: one result message per item, in order."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid, kill_with_parent)
    _limit_memory()
    conn = Connection(fd)
    func, *warm_up = [_resolve_name(name) for name in targets]
    for prepare in warm_up:
        prepare()
    conn.send((READY, time.process_time()))
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for index, item in batch:
            start = time.perf_counter()
            try:
                status, value = "ok", func(item)
            except Exception as err:  # noqa: BLE001 - any failure of one item is that item's result
                status, value = "error", f"{type(err).__name__}: {err}"[:500]
            message = (index, status, value, time.perf_counter() - start, time.process_time())
            try:
                conn.send(message)
            except (EOFError, OSError):
                return


def _exit_with_parent(parent_pid: int, kill_with_parent: bool) -> None:
    """No orphans: leave when the parent goes, even while stuck inside a long C call."""
    if kill_with_parent:  # PDEATHSIG fires when the creating *thread* exits, so main thread only
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _import_name(func: Callable) -> str:
    name = f"{func.__module__}:{func.__qualname__}"
    if _resolve_name(name) is not func:
        raise ValueError(f"{name} is not importable by name, so a worker cannot run it")
    return name


def _resolve_name(name: str) -> Callable:
    module, _, qualname = name.partition(":")
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
