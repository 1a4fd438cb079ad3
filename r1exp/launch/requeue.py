"""What a controller does when its Slurm job is requeued: by a time limit, or preempted.

The mechanism is submitit's: sbatch asks Slurm for a USR2 `signal_delay_s` before the time
limit (preemption with USR2 looks the same); submitit's handler in the job's main process calls
the launcher's `checkpoint()`, which returns the same job to run again, then runs
`scontrol requeue` and exits with SystemExit (at most `max_num_timeout` times for time limits).
The requeued job runs the controller again in the same run dir: r1exp.launch.resume continues
from the last complete checkpoint and the same MLflow run.

Slurm can also end a job with SIGTERM: `scancel`, `scontrol requeue`, and its own preemption
(PreemptMode=REQUEUE requeues the job itself). submitit ignores SIGTERM in the controller, but
the workers die of it. Such an attempt is KILLED and returns no result, so the sweep waits for
the requeued job (or records a cancelled one as lost) instead of taking this attempt's failure
for the job's.

This module is the bridge between `checkpoint()` (r1exp.launch.slurm_launcher) and the
controller that is running at that moment in the same process: the controller registers what to
do (stop its workers, mark the run as requeued) and `prepare()` runs it, BEFORE submitit requeues.
After `scontrol requeue`, Slurm kills every process of the job within KillWait seconds, so nothing
that must happen may wait for the SystemExit to unwind.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
REQUEUED = "REQUEUED"   # the run dir's status while the job waits to run again
# Slurm delivers the job's USR2 to every process of the step, the workers included; their
# default action would kill them at once. They inherit it blocked: the controller decides.
PREEMPT_SIGNAL = signal.SIGUSR2
WORKER_STOP_GRACE_S = 20.0  # well inside the presets' signal_delay_s (120 s)

_hooks: list[Callable[[], None]] = []


@contextmanager
def on_requeue(hook: Callable[[], None]) -> Iterator[None]:
    """Run `hook` if the job is requeued while this block runs (innermost hook first)."""
    _hooks.append(hook)
    try:
        yield
    finally:
        _hooks.remove(hook)


def prepare() -> None:
    """Called from submitit's signal handler through the launcher's `checkpoint()`."""
    for hook in reversed(list(_hooks)):
        try:
            hook()
        except Exception:  # the requeue must still happen; the next attempt copes
            log.exception("preparing the requeue: %s failed", hook)


def ignore_from_now_on() -> None:
    """In a submitit Slurm job whose run is ending, let a late USR2 pass without a requeue: it
    would rerun a finished run (refused as already trained) or a failed one, and the requeued
    job, not this one, would report the result."""
    if (os.environ.get("SUBMITIT_EXECUTOR") != "slurm"
            or threading.current_thread() is not threading.main_thread()):
        return

    def too_late(signum, frame) -> None:
        log.warning("Slurm's %s came as the run ended: not requeued", signal.Signals(signum).name)

    signal.signal(PREEMPT_SIGNAL, too_late)


class Termination:
    """Whether Slurm sent this job SIGTERM: it is ending, whatever comes after it."""

    seen = False


@contextmanager
def noting_termination() -> Iterator[Termination]:
    """In a submitit Slurm job, note a SIGTERM that arrives in this block, then pass it on to
    submitit's handler. Elsewhere SIGTERM keeps its default: it ends the controller."""
    termination = Termination()
    previous = signal.getsignal(signal.SIGTERM)
    if (os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or not callable(previous)
            or threading.current_thread() is not threading.main_thread()):
        yield termination
        return

    def note(signum, frame) -> None:
        termination.seen = True
        previous(signum, frame)

    signal.signal(signal.SIGTERM, note)
    try:
        yield termination
    finally:
        signal.signal(signal.SIGTERM, previous)


class EndedBySlurm(SystemExit):
    """Slurm is ending this job; a SystemExit, so submitit records no result for it."""


@contextmanager
def signal_blocked_in_children() -> Iterator[None]:
    """Processes started in this block inherit PREEMPT_SIGNAL blocked (a signal mask survives
    fork and exec); this thread gets its pending signal once the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {PREEMPT_SIGNAL})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop_worker(proc: subprocess.Popen, grace_s: float = WORKER_STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after `grace_s`: the work since the last checkpoint is redone.

    Polls instead of `proc.wait()`: this runs inside a signal handler that may have interrupted
    the controller's own `proc.wait()`, which holds the lock a second wait would block on.
    """
    if proc.poll() is not None:
        return
    proc.terminate()
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
