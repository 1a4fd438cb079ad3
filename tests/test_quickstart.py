"""The default command end to end: real SmolLM2, real GRPOTrainer, real MLflow store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]


def r1exp(tmp_path: Path, *overrides: str, name: str = "run", **popen) -> subprocess.Popen:
    args = [sys.executable, "-m", "r1exp", f"hydra.run.dir={tmp_path / name}",
            f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", *overrides]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def mlflow_runs(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("r1exp")
    return client, client.search_runs([experiment.experiment_id])


def test_quickstart_trains_and_tracks(tmp_path):
    proc = r1exp(tmp_path, "train.max_steps=2", "train.save_steps=1",
                 "grpo.max_completion_length=12")
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-4000:]

    run_dir = tmp_path / "run"
    assert ((run_dir / "resolved.yaml").is_file()
            and (run_dir / "status").read_text() == "FINISHED\n")
    # The quickstart keeps no checkpoint once its final model is saved (train.keep_checkpoints)
    assert (run_dir / "model" / "config.json").is_file()
    assert not list((run_dir / "checkpoints").glob("checkpoint-*"))
    written = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    assert written < 0.7e9, f"the quickstart wrote {written / 1e9:.2f} GB"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/global_step"] == 2

    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    history = client.get_metric_history(run.info.run_id, "rewards/accuracy/mean")
    assert [m.step for m in history] == [1, 2]
    assert "rewards/format/mean" in run.data.metrics and "reward" in run.data.metrics
    assert run.data.params["grpo.num_generations"] == "4"
    assert (run.data.tags["choice.hardware"] == "cpu"
            and run.data.tags["choice.model"] == "smollm2-135m")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"resolved.yaml", ".hydra", "metrics.json", "worker.log"} <= artifacts
    # The workers' whole output, also on the terminal; the run starts naming its recipe and
    # ends with the summary.
    worker_log = (run_dir / "worker.log").read_text()
    assert "Loading weights" in worker_log and "Loading weights" in output
    assert "recipe: experiment=quickstart" in output
    summary = output[output.index("r1exp run FINISHED"):]
    for line in (f"model    {run_dir / 'model'}", "reward   ", "loss     ", "(step 1 -> 2)",
                 "mlflow ui --backend-store-uri sqlite:///", run.info.run_id):
        assert line in summary, summary


def test_a_crash_marks_the_run_failed(tmp_path):
    data = tmp_path / "no_problem_column.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    proc = r1exp(tmp_path, "dataset=jsonl", f"dataset.path={data}")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "lacks column(s) ['problem']" in output
    assert output.count("lacks column(s) ['problem']") == 1, "the error is printed once"
    assert "r1exp run FAILED" in output and "Error executing job" not in output
    _, runs = mlflow_runs(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED"]


def test_ctrl_c_marks_the_run_killed(tmp_path):
    proc = r1exp(tmp_path, "train.max_steps=50", start_new_session=True)
    worker_started = tmp_path / "run" / "mlflow_run_id"
    deadline = time.monotonic() + 300
    while not worker_started.exists() and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(5)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    _, runs = mlflow_runs(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"]
    assert (tmp_path / "run" / "status").read_text() == "KILLED\n"
