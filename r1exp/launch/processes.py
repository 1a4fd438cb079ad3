"""Child processes the same way everywhere: wait until a server answers; stop (ask, grace, kill)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen, url: str, *, what: str, timeout_s: float,
                       poll_s: float = 1.0) -> None:
    """Return once GET `url` answers 200; raise RuntimeError if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} at start-up")
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:  # refused while it starts; URLError and timeouts are OSErrors
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url} within {timeout_s:g} s")
        time.sleep(poll_s)


def stop(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, grace_s: float = 30) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
