"""The controller's side of a Slurm requeue, without Slurm (r1exp/launch/requeue.py).

tests/test_slurm_requeue.py runs the whole path on a real local Slurm; these pin the pieces a
failure there would be hard to read from.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from r1exp.launch import requeue

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def signal_mask(pid: int, field: str) -> int:
    """SigBlk (blocked) or ShdPnd (sent to the process, pending) from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {field} line")


def bit(sig: int) -> int:
    return 1 << (sig - 1)


def test_workers_inherit_the_preemption_signal_blocked_and_the_controller_does_not():
    # Slurm signals every process of the step; a worker must not die of USR2 before the
    # controller (submitit's handler) has decided what to do.
    with requeue.signal_blocked_in_children():
        child = subprocess.Popen(SLEEPER)
    try:
        assert signal_mask(child.pid, "SigBlk") & bit(requeue.PREEMPT_SIGNAL)
        assert requeue.PREEMPT_SIGNAL not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        child.send_signal(requeue.PREEMPT_SIGNAL)
        # held pending by the kernel as kill() returns, instead of ending the process
        assert signal_mask(child.pid, "ShdPnd") & bit(requeue.PREEMPT_SIGNAL)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_hooks_run_innermost_first_and_a_failing_one_does_not_stop_the_others():
    ran = []

    def fails() -> None:
        ran.append("inner")
        raise RuntimeError("MLflow is away")

    with requeue.on_requeue(lambda: ran.append("outer")), requeue.on_requeue(fails):
        requeue.prepare()
    assert ran == ["inner", "outer"]
    requeue.prepare()  # outside the blocks: nothing registered any more
    assert ran == ["inner", "outer"]


@pytest.mark.parametrize("ignores_sigterm,returncode", [(False, -signal.SIGTERM),
                                                        (True, -signal.SIGKILL)])
def test_stop_worker_asks_then_kills(ignores_sigterm, returncode):
    disposition = "signal.SIG_IGN" if ignores_sigterm else "signal.SIG_DFL"
    code = ("import signal, sys, time\n"
            f"signal.signal(signal.SIGTERM, {disposition})\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    requeue.stop_worker(proc, grace_s=1.0)
    assert proc.wait() == returncode


def test_sigterm_is_noted_only_in_a_submitit_slurm_job(monkeypatch):
    calls = []

    def submitits_handler(signum, frame):  # what submitit installs: log and go on
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, submitits_handler)
    try:
        monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
        with requeue.noting_termination() as termination:
            assert signal.getsignal(signal.SIGTERM) is submitits_handler  # left alone
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
        with requeue.noting_termination() as termination:
            os.kill(os.getpid(), signal.SIGTERM)
        assert termination.seen and calls == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is submitits_handler  # restored
        with requeue.noting_termination() as termination:
            pass
        assert not termination.seen  # each controller starts with a clean slate
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_after_the_run_ended_does_not_requeue_it(monkeypatch):
    # submitit's handler would requeue a finished run; the requeued job would then refuse to
    # train past max_steps and report a failure for a job that succeeded.
    requeues = []
    previous = signal.signal(requeue.PREEMPT_SIGNAL, lambda signum, frame: requeues.append(1))
    try:
        monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
        requeue.ignore_from_now_on()  # not a submitit job: nothing changes
        os.kill(os.getpid(), requeue.PREEMPT_SIGNAL)
        assert requeues == [1]
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
        requeue.ignore_from_now_on()
        os.kill(os.getpid(), requeue.PREEMPT_SIGNAL)
        assert requeues == [1]
    finally:
        signal.signal(requeue.PREEMPT_SIGNAL, previous)
