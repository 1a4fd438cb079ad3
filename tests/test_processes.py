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


def test_a_vllm_server_that_dies_mid_run_stops_the_workers_and_names_its_log(tmp_path):
    from types import SimpleNamespace

    from r1exp.launch.controller import _start_and_wait
    from r1exp.launch.vllm_server import RunningServer, ServerFailed

    log = tmp_path / "vllm_server.log"
    server = RunningServer(python("import time; time.sleep(1)"), log, {})
    plan = SimpleNamespace(launch_command=("python", "-c", "import time; time.sleep(120)"))
    started = time.monotonic()
    with pytest.raises(ServerFailed, match=f"exited with status 0 while the workers trained; "
                                           f"its log: {log}"):
        _start_and_wait(plan, {}, tmp_path / "worker.log", watch=server.check_alive)
    assert time.monotonic() - started < 60  # the worker was stopped, not waited for


def test_a_vllm_server_that_never_serves_fails_at_start_with_its_log(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from r1exp.launch import vllm_server

    monkeypatch.setattr(vllm_server, "server_command", lambda *a: [
        sys.executable, "-c", "import sys; print('engine died'); sys.exit(3)"])
    cfg = OmegaConf.create({"hardware": {"accelerator": "cpu", "devices_per_node": 1,
                                         "vllm": {"server_devices": 0}}})
    with pytest.raises(vllm_server.ServerFailed, match="status 3 at start-up; its log: "):
        with vllm_server.running_server(cfg, "model", {}, tmp_path, timeout_s=60):
            pass
    assert "engine died" in (tmp_path / vllm_server.LOG_FILE).read_text()
