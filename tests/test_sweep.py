"""Sweeps: a failing job is recorded and the others go on; a parent MLflow run per sweep with
a child per job; a summary, a plot and a snapshot of conf/ + git; `r1exp -m` exits 1 on failure."""

from __future__ import annotations

import csv
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict
from slurm.harness import mlflow_runs, run_r1exp, tiny_grpo, tiny_model  # noqa: F401
from test_config import CONF, REPO_ROOT

from r1exp.tracking.sweep import (
    JobResult,
    SweepTracker,
    compose_from_snapshot,
    swept_keys,
    write_summary,
)

NO_HEAVY_IMPORTS = "CONTROLLER_IMPORTED=[]"


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as rows:
        return list(csv.DictReader(rows))


def test_config_error_in_one_job_fails_only_that_job(tmp_path):
    # dry runs: nothing trains, but job 1 is still validated and rejected
    out = run_r1exp(tmp_path, "dry_run=true", "train.global_batch_size=8,9",
                    multirun=True)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "1 of 2 job(s) did not finish" in out.stderr
    assert "train.global_batch_size=9 is not divisible" in out.stderr
    sweep = tmp_path / "sweep"
    rows = summary_rows(sweep)
    assert [(r["job"], r["train.global_batch_size"], r["status"]) for r in rows] == \
        [("0", "8", "FINISHED"), ("1", "9", "FAILED")]
    assert "not divisible" in rows[1]["error"]
    assert (sweep / "1" / "status").read_text() == "FAILED\n"

    _, parents, children = mlflow_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FAILED"]
    # a dry run opens no run; the rejected job still gets one, FAILED, under the parent
    assert [c.info.status for c in children] == ["FAILED"]
    child = children[0]
    assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert child.data.params["train.global_batch_size"] == "9"
    assert "not divisible" in child.data.tags["error"]
    assert rows[1]["mlflow_run_id"] == child.info.run_id


def test_named_sweep_runs_as_multirun_with_snapshot_and_summary(tmp_path):
    out = run_r1exp(tmp_path, "sweep=learning-rate", "train.learning_rate=1e-5,2e-5",
                    "dry_run=true")
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    rows = summary_rows(sweep)
    assert [(r["train.learning_rate"], r["status"]) for r in rows] == \
        [("1e-05", "FINISHED"), ("2e-05", "FINISHED")]
    assert (sweep / "reward.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # sweep.metric: reward

    snapshot = sweep / "snapshot"
    assert (snapshot / "conf" / "config.yaml").read_text() == (CONF / "config.yaml").read_text()
    recorded = (snapshot / "git.txt").read_text().splitlines()[0].removeprefix("commit: ")
    # the commit checked out at submission: HEAD, or an ancestor if HEAD moved on since
    is_ancestor = subprocess.run(["git", "-C", str(REPO_ROOT), "merge-base", "--is-ancestor",
                                  recorded, "HEAD"], capture_output=True, check=False)
    assert len(recorded) == 40 and is_ancestor.returncode == 0, recorded
    assert (snapshot / "git.diff").is_file()

    client, parents, children = mlflow_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FINISHED"] and children == []
    parent = parents[0]
    assert parent.data.tags["sweep.dir"] == str(sweep)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "summary.md", "reward.png", "multirun.yaml", "snapshot"} <= artifacts


def test_parent_run_never_stays_running_when_the_launcher_fails(tmp_path):
    # sbatch refuses (an empty slurm.conf; without sbatch installed it is missing, which
    # fails the same way): the launcher raises before a job starts, Hydra exits, and
    # on_multirun_end never comes; the parent run must still end, FAILED
    (tmp_path / "empty-slurm.conf").write_text("")
    out = run_r1exp(tmp_path, "hydra/launcher=slurm-1gpu", "dry_run=true", "seed=1,2",
                    multirun=True, env={"SLURM_CONF": str(tmp_path / "empty-slurm.conf")})
    assert out.returncode != 0
    _, parents, children = mlflow_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FAILED"] and children == []
    assert summary_rows(tmp_path / "sweep") == []


@pytest.mark.slow
def test_failing_job_does_not_stop_a_real_sweep(tmp_path, tiny_model):  # noqa: F811
    overrides = [o for o in tiny_grpo(tiny_model) if not o.startswith("train.global_batch")]
    out = run_r1exp(tmp_path, *overrides, "train.global_batch_size=4,9", multirun=True)
    assert out.returncode == 1, out.stderr[-3000:]
    # the controller ran a real training job and stayed free of torch: each job's training
    # state lives in its own worker processes, so nothing leaks into the next job
    assert NO_HEAVY_IMPORTS in out.stdout, out.stdout[-2000:]
    sweep = tmp_path / "sweep"
    rows = summary_rows(sweep)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "FINISHED"), ("1", "FAILED")]
    assert rows[0]["train/train_loss"] != ""  # the metric came from job 0's metrics.json
    assert (sweep / "0" / "model" / "config.json").is_file()

    client, parents, children = mlflow_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FAILED"]
    by_job = {c.data.tags["sweep.job"]: c for c in children}
    assert {job: c.info.status for job, c in by_job.items()} == {"0": "FINISHED", "1": "FAILED"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    steps = client.get_metric_history(by_job["0"].info.run_id, "loss")
    assert [m.step for m in steps] == [1]


def test_jobs_compose_from_the_snapshot_not_the_live_conf(tmp_path):
    snapshot = tmp_path / "snapshot" / "conf"
    shutil.copytree(CONF, snapshot)
    train = snapshot / "train" / "default.yaml"
    train.write_text(train.read_text().replace("max_grad_norm: 1.0", "max_grad_norm: 0.25"))
    job_dir = tmp_path / "0"
    (job_dir / ".hydra").mkdir(parents=True)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["train.learning_rate=2e-5"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(job_dir)
        cfg.hydra.job.config_name = "config"
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    live = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    assert live.train.max_grad_norm == 1.0

    submitted = compose_from_snapshot(snapshot, live)
    assert submitted.train.max_grad_norm == 0.25          # the edit made "before submission"
    assert submitted.train.learning_rate == 2e-5           # the job's own override still applies
    assert submitted.paths.output_dir == str(job_dir)      # ${hydra:...} resolves for this job
    assert OmegaConf.load(job_dir / ".hydra" / "config.yaml").train.max_grad_norm == 0.25


def test_summary_plots_the_swept_number_and_lists_failures(tmp_path):
    jobs = [
        JobResult("0", ["train.learning_rate=1e-6", "seed=1"], "FINISHED", 0.5,
                  params={"train.learning_rate": "1e-6", "seed": "1"}),
        JobResult("1", ["train.learning_rate=1e-4", "seed=1"], "FINISHED", 0.25,
                  params={"train.learning_rate": "1e-4", "seed": "1"}),
        JobResult("2", ["train.learning_rate=1e-3", "seed=1"], "FAILED", None, error="boom",
                  params={"train.learning_rate": "1e-3", "seed": "1"}),
    ]
    assert swept_keys(jobs) == ["train.learning_rate"]
    _, md_path, png = write_summary(jobs, "reward", tmp_path)
    rows = summary_rows(tmp_path)
    assert [(r["train.learning_rate"], r["status"], r["reward"], r["error"]) for r in rows] == [
        ("1e-6", "FINISHED", "0.5", ""), ("1e-4", "FINISHED", "0.25", ""),
        ("1e-3", "FAILED", "", "boom")]
    assert "| 2 | 1e-3 |" in md_path.read_text()
    assert png.name == "reward.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_sweep_code_is_light_and_picklable():
    # Hydra instantiates the callback in every run and submitit pickles it with the launcher,
    # together with the task function r1exp.cli.main.
    code = ("import sys, pickle, cloudpickle, r1exp.cli, r1exp.tracking.sweep as s\n"
            "cb = s.SweepTracker(metric='reward', snapshot=True)\n"
            "blob = cloudpickle.dumps((cb, r1exp.cli.main))\n"
            "assert len(blob) < 2000, len(blob)\n"
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'mlflow', 'matplotlib')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert pickle.loads(pickle.dumps(SweepTracker(metric="m", snapshot=False))).metric == "m"
