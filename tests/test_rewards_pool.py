"""The time-limited worker pool: timeouts kill and replace, errors and crashes are results,
any thread may call it, and no worker outlives its parent."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from r1exp.rewards.pool import WALL_LIMIT_FACTOR, TimedPool

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sleep_pool():
    pool = TimedPool(time.sleep, None, workers=2)
    yield pool
    pool.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(") ")[1][0] != "Z"


def wait_until_dead(pids, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def test_an_item_over_its_cpu_limit_is_cut_off_and_its_worker_replaced():
    pool = TimedPool(math.factorial, None, workers=2)
    try:
        pool.start()
        started = time.monotonic()
        # factorial(10**6) needs ~15 s of CPU; the others a few milliseconds
        outcomes = pool.map([10, 10**6, 20, 30, 40], timeout_s=1.0)
        elapsed = time.monotonic() - started
        assert [o.status for o in outcomes] == ["ok", "timeout", "ok", "ok", "ok"]
        assert outcomes[0].value == 3628800
        assert 1.0 <= elapsed < 1.0 * WALL_LIMIT_FACTOR + 2.0
        assert pool.restarts == 1
        assert [o.status for o in pool.map([5] * 4, timeout_s=1.0)] == ["ok"] * 4
    finally:
        pool.close()


def test_an_item_that_waits_without_cpu_is_cut_off_by_the_wall_clock_backstop(sleep_pool):
    started = time.monotonic()
    outcomes = sleep_pool.map([0.01, 60, 0.01], timeout_s=0.5)
    assert [o.status for o in outcomes] == ["ok", "timeout", "ok"]
    assert time.monotonic() - started < 0.5 * WALL_LIMIT_FACTOR + 10  # + a worker start


def test_the_limit_is_per_item_not_per_batch(sleep_pool):
    # 40 items of 0.15 s go out in chunks of 10 (1.5 s): each item is within its wall backstop
    # (0.2 s x WALL_LIMIT_FACTOR = 1 s), no chunk is
    outcomes = sleep_pool.map([0.15] * 40, timeout_s=0.2)
    assert [o.status for o in outcomes] == ["ok"] * 40
    assert sleep_pool.restarts == 0


def test_exceptions_are_results_not_crashes():
    pool = TimedPool(math.sqrt, None, workers=1)
    try:
        outcomes = pool.map([4.0, -1.0, "nine"], timeout_s=5.0)
    finally:
        pool.close()
    assert [o.status for o in outcomes] == ["ok", "error", "error"]
    assert outcomes[0].value == 2.0
    assert outcomes[1].value.startswith("ValueError")


def test_a_worker_that_dies_is_replaced():
    pool = TimedPool(os._exit, None, workers=1)
    try:
        outcomes = pool.map([3, 3], timeout_s=5.0)
        assert pool.restarts == 2 and pool.broken is None
    finally:
        pool.close()
    assert [(o.status, o.value) for o in outcomes] == [("error", "scoring worker died")] * 2


def test_workers_that_cannot_start_break_the_pool_instead_of_looping(monkeypatch):
    pool = TimedPool(time.sleep, None, workers=1)
    # a worker whose interpreter dies at start-up, as with a broken environment
    monkeypatch.setattr(sys, "executable", "/bin/false")
    outcomes = pool.map([0.01, 0.01], timeout_s=1.0)
    pool.close()
    assert [o.status for o in outcomes] == ["error", "error"]
    assert "failed to start" in pool.broken


def test_map_works_from_several_threads_at_once(sleep_pool):
    results: dict[int, list[str]] = {}

    def run(n: int) -> None:
        results[n] = [o.status for o in sleep_pool.map([0.01] * 5, timeout_s=5.0)]

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {n: ["ok"] * 5 for n in range(3)}


def test_close_stops_every_worker(sleep_pool):
    sleep_pool.start()
    pids = [worker.process.pid for worker in sleep_pool._workers]
    assert len(pids) == 2
    sleep_pool.close()
    assert wait_until_dead(pids, seconds=5) == []
    assert [o.status for o in sleep_pool.map([0.01], timeout_s=1.0)] == ["error"]  # no restart


def test_a_scoring_process_exits_promptly_and_leaves_no_workers():
    code = textwrap.dedent(r"""
        import os
        from r1exp.rewards import grade_math
        from r1exp.rewards.math_score import _scoring_pool
        results = grade_math([r"\boxed{\frac{1}{2}}"], ["0.5"])
        print([w.process.pid for w in _scoring_pool()._workers], results[0].score, flush=True)
        """)
    started = time.monotonic()
    # two ranks per node leave one core each: one worker is enough to test the exit path
    env = {**os.environ, "LOCAL_WORLD_SIZE": "2"}
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True, cwd=REPO, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    pids, score = result.stdout.split("]")
    assert score.strip() == "1.0"
    worker_pids = [int(p) for p in pids.strip("[ ").split(",") if p.strip()]
    assert worker_pids and wait_until_dead(worker_pids, seconds=5) == []
    assert time.monotonic() - started < 170


def test_workers_die_with_a_killed_parent_even_mid_item():
    code = textwrap.dedent("""
        import threading, time
        from r1exp.rewards.pool import WALL_LIMIT_FACTOR, TimedPool
        pool = TimedPool(time.sleep, None, workers=2)
        pool.start()
        print(*[w.process.pid for w in pool._workers], flush=True)
        pool.map([600, 600], timeout_s=900)  # both workers busy when the parent is killed
        """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        worker_pids = [int(pid) for pid in parent.stdout.readline().split()]
        time.sleep(0.5)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert len(worker_pids) == 2
        assert wait_until_dead(worker_pids, seconds=10) == []
    finally:
        parent.kill()
