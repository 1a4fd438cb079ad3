"""Stopping child processes the same way everywhere: ask, wait a grace period, then kill."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, grace_s: float = 30) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
