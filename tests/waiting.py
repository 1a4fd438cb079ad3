"""Polling for a condition in tests that drive real processes (Slurm jobs, resumed runs)."""

from __future__ import annotations

import time


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.3):
    """`condition()`'s first truthy value, polled every interval_s; AssertionError after
    timeout_s naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
