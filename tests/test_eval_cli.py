"""End to end: `python -m r1exp stage=eval` on SmolLM2, offline, into MLflow; then a resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_eval(tmp_path: Path, shared_data: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "R1EXP_DATA_DIR": str(shared_data),
           "OMP_NUM_THREADS": "1"}  # 2 spinning OpenMP threads per process crawl on a shared CPU
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "r1exp", "stage=eval", "model=smollm2-135m",
         "eval.benchmarks=[gsm8k]", "eval.limit=20", "eval.max_new_tokens=16",
         f"hydra.run.dir={tmp_path}/run", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )


@pytest.mark.slow
def test_cli_eval_logs_pass_at_1_to_mlflow_and_resumes(tmp_path, shared_data):
    from mlflow.tracking import MlflowClient

    first = run_eval(tmp_path, shared_data)
    assert first.returncode == 0, first.stderr[-3000:]
    eval_dir = tmp_path / "run" / "eval"
    bench = json.loads((eval_dir / "results.json").read_text())["benchmarks"]["gsm8k"]
    assert bench["n_problems"] == 20 and bench["k"] == 1 and bench["samples_generated"] == 20
    assert 0.0 <= bench["pass@1"] <= 1.0 and bench["tokens_generated"] > 0
    table_row = next(line for line in first.stdout.splitlines() if line.startswith("gsm8k "))
    assert table_row.split()[1:4] == ["20", "1", f"{bench['pass@1']:.4f}"]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = (tmp_path / "run" / "mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.data.metrics["eval/gsm8k/pass_at_1"] == pytest.approx(bench["pass@1"])
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert "eval/results.json" in artifacts and "eval/gsm8k" in artifacts

    # An interrupted run: 12 samples were committed. The re-run in the same run dir makes only 8.
    samples = eval_dir / "gsm8k" / "samples.jsonl"
    kept = samples.read_text().splitlines()[:12]
    store = eval_dir / "gsm8k" / "samples"
    shutil.rmtree(store)
    store.mkdir()
    (store / "shard-00000.jsonl").write_text("\n".join(kept) + "\n")
    samples.unlink()
    second = run_eval(tmp_path, shared_data)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = json.loads((eval_dir / "results.json").read_text())["benchmarks"]["gsm8k"]
    assert resumed["samples_generated"] == 8 and resumed["n_problems"] == 20
    assert samples.read_text().splitlines()[:12] == kept
