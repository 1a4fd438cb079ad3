"""The tracking server going away does not kill training (issue 16, item 4).

A real `mlflow server` (sqlite store in tmp) is stopped while a CPU GRPO run logs to it over
http, and restarted on the same port and store: the run finishes FINISHED, every step's loss
reaches MLflow exactly once, and the logs name the outage. Controller-side calls against a
server that stays away wait a bounded time, then warn instead of failing the run.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm.harness import tiny_grpo, tiny_model  # noqa: F401

from r1exp.launch.processes import free_port, wait_until_serving
from r1exp.launch.summary import collect
from r1exp.tracking import patience as patience_module
from r1exp.tracking import pending as pending_module
from r1exp.tracking.mlflow_run import TrackedRun, client_for
from r1exp.tracking.patience import Patience
from r1exp.rundir import RunDir
from r1exp.tracking.pending import PendingMetrics

STEPS = 40
# The server stays away a minute (the outage), and at least until the run has kept
# several steps' metrics for later. On a 2-core CPU the 40 steps may end inside it: then the
# controller's end-of-run delivery waits for the server (its patience), which is part of the
# path under test. 143 s for the test here.
OUTAGE_S = 60
PENDING_BEFORE_RESTART = 3


class MlflowServer:
    def __init__(self, store: Path):
        self.store, self.port, self.proc = store, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.store / "server.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.store / 'mlflow.db'}",
             "--artifacts-destination", str(self.store / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_serving(self.proc, f"{self.uri}/health", what="mlflow server",
                           timeout_s=180)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
        self.proc.wait(timeout=60)


@pytest.fixture
def server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()


def wait_for(condition, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def pending_batches(run_dir: Path) -> int:
    path = RunDir(run_dir).pending_metrics_file
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.slow
def test_training_outlives_a_tracking_server_outage(tmp_path, server, tiny_model):  # noqa: F811
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_grpo(tiny_model) if not o.startswith("train.max_steps")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "r1exp", f"hydra.run.dir={run_dir}",
         f"logger.tracking_uri={server.uri}", *overrides, f"train.max_steps={STEPS}",
         "train.logging_steps=1", f"train.save_steps={STEPS}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        worker_log = run_dir / "worker.log"
        # the first step reached the server: the outage starts mid-run
        wait_for(lambda: worker_log.is_file() and "'loss'" in worker_log.read_text(),
                 "the first logged step")
        server.stop()
        stopped = time.monotonic()
        wait_for(lambda: pending_batches(run_dir) >= PENDING_BEFORE_RESTART
                 or proc.poll() is not None, "steps logged during the outage")
        kept_during_outage = pending_batches(run_dir)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        server.start()
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-4000:]
    assert kept_during_outage >= 1, "no step was logged while the server was away"

    assert (run_dir / "status").read_text() == "FINISHED\n"
    assert not (RunDir(run_dir).pending_metrics_file).exists(), "metrics left behind"
    client = client_for(server.uri)
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert sorted(steps) == list(range(1, STEPS + 1)), steps  # every step, each once
    log_text = worker_log.read_text() + output
    # one outage, one warning: the worker's callbacks share what they know of it
    assert worker_log.read_text().count(f"MLflow tracking server {server.uri} is unreachable") == 1
    assert "is back" in log_text and "Traceback" not in log_text


def test_pending_metrics_wait_in_order_and_go_out_once_the_server_is_back(tmp_path,
                                                                          monkeypatch):
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    monkeypatch.setattr(pending_module, "RETRY_INTERVAL_S", 0.0)
    received, server_up = [], {"up": True}

    def send(run_id, metrics):  # the REST client's failure when nothing listens
        if not server_up["up"]:
            raise MlflowException("API request to http://127.0.0.1:1 failed with exception "
                                  "Connection refused")
        received.extend((run_id, m.key, m.step) for m in metrics)

    pending = PendingMetrics(RunDir(tmp_path).pending_metrics_file, "http://127.0.0.1:1")
    pending.log(send, "r", [Metric("loss", 1.0, 1, 1)])
    server_up["up"] = False
    pending.log(send, "r", [Metric("loss", 0.9, 2, 2)])
    pending.log(send, "r", [Metric("loss", 0.8, 3, 3), Metric("reward", 0.5, 3, 3)])
    assert pending.count() == 2 and received == [("r", "loss", 1)]
    server_up["up"] = True
    pending.log(send, "r", [Metric("loss", 0.7, 4, 4)])
    assert received == [("r", "loss", 1), ("r", "loss", 2), ("r", "loss", 3),
                        ("r", "reward", 3), ("r", "loss", 4)]
    assert not pending.path.exists()


def test_controller_calls_wait_a_bounded_time_then_warn(tmp_path, monkeypatch, caplog):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    # nothing listens on this port: every request is refused, as during an outage
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(patience_module, "MAX_DELAY_S", 0.2)
    (tmp_path / "status").write_text("FINISHED\n")
    run = TrackedRun(client_for(uri), "0" * 32, uri, tmp_path, Patience(uri, wait_s=1.0))
    with caplog.at_level(logging.WARNING):
        run.log_metrics({"loss": 0.5}, step=3)  # kept, no wait
        run.log_artifacts(tmp_path / "status")
        run.finish("FINISHED")
    assert pending_batches(tmp_path) == 1  # still there for a later upload
    assert pending_module.main(str(tmp_path)) == 1  # by hand, while the server is still away
    warnings = caplog.text
    assert "could not upload status" in warnings
    assert "stays RUNNING" in warnings and "never reached MLflow" in warnings
    summary = collect("FINISHED", "grpo", tmp_path, run)  # the run's last words, server away
    assert summary.mlflow_command and summary.mlflow_url is None
    refused = MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)
    with pytest.raises(MlflowException):  # an answer that is not an outage still raises
        Patience(uri).call("x", lambda: (_ for _ in ()).throw(refused))


def test_a_controller_call_goes_through_once_the_server_is_back(monkeypatch, caplog):
    from mlflow.exceptions import MlflowException

    monkeypatch.setattr(patience_module, "MAX_DELAY_S", 0.05)
    refusals = iter(range(3))  # the server refuses three tries, then answers

    def set_status():
        if next(refusals, None) is not None:
            raise MlflowException("API request failed with exception [Errno 111] Connection "
                                  "refused")
        return "FINISHED"

    with caplog.at_level(logging.WARNING):
        assert Patience("http://tracking:5000", wait_s=60).call("mark the run FINISHED",
                                                                set_status) == (True, "FINISHED")
    assert "waiting up to 60s for it to mark the run FINISHED" in caplog.text
    assert "is back" in caplog.text and "still unreachable" not in caplog.text
