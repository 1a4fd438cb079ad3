"""The one way r1exp waits for a child server and stops a child process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from r1exp.launch.processes import free_port, stop, wait_until_serving


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_returns_once_a_real_http_server_answers(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1", "--directory", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{port}/", what="http.server", timeout_s=60,
                           poll_s=0.1)
    finally:
        stop(proc, grace_s=5)


def test_a_server_that_dies_at_start_up_is_an_error_with_its_status():
    proc = python("import sys; sys.exit(3)")
    with pytest.raises(RuntimeError, match="the server exited with status 3 at start-up"):
        wait_until_serving(proc, f"http://127.0.0.1:{free_port()}/", what="the server",
                           timeout_s=60, poll_s=0.1)


def test_a_server_that_never_answers_times_out_naming_the_url():
    proc = python("import time; time.sleep(60)")
    url = f"http://127.0.0.1:{free_port()}/health"
    try:
        with pytest.raises(RuntimeError, match=f"did not answer {url} within 0.5 s"):
            wait_until_serving(proc, url, what="the server", timeout_s=0.5, poll_s=0.1)
    finally:
        stop(proc, grace_s=5)


def test_stop_kills_a_child_that_ignores_the_signal_after_the_grace_period():
    proc = python("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  "print('ready', flush=True); time.sleep(60)")
    assert proc.stdout.readline() == "ready\n"  # the handler is in place
    started = time.monotonic()
    stop(proc, sig=signal.SIGTERM, grace_s=0.5)
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10
