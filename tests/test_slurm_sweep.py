"""A sweep through the submitit Slurm launcher on a real (local, one-node) Slurm cluster."""

from __future__ import annotations

import csv
import re

import pytest
from omegaconf import OmegaConf
from slurm.harness import mlflow_runs, run_r1exp, slurm_cluster, tiny_grpo, tiny_model  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# The 1-GPU preset as a user would submit it, minus what this CPU-only cluster cannot give.
SLURM_1GPU_ON_CPU = ["hydra/launcher=slurm-1gpu", "hydra.launcher.gpus_per_node=null",
                     "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
                     "hydra.launcher.timeout_min=10"]


def test_sweep_on_slurm_runs_every_job_and_tracks_them(tmp_path, slurm_cluster, tiny_model):  # noqa: F811
    out = run_r1exp(tmp_path, *SLURM_1GPU_ON_CPU, *tiny_grpo(tiny_model),
                    "train.learning_rate=1e-5,2e-5", multirun=True, timeout=900)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "CONTROLLER_IMPORTED=[]" in out.stdout
    sweep = tmp_path / "sweep"

    # one sbatch array built from the preset, one array task per job of the sweep
    folders = sorted(p for p in (sweep / ".submitit").iterdir() if p.is_dir())
    (script,) = (sweep / ".submitit").glob("*/*_submission.sh")
    sbatch = script.read_text()
    for line in ("#SBATCH --array=0-1", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=2GB",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --job-name=r1exp",
                 "export PYTHONUNBUFFERED=1"):
        assert line in sbatch, (line, sbatch)
    slurm_jobs = sorted(p.name for p in folders if "_" in p.name)  # <array id>_<task>
    assert len(slurm_jobs) == 2, slurm_jobs
    for job_id in slurm_jobs:
        log = (sweep / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
        assert f"JobEnvironment(job_id={job_id}," in log  # submitit saw Slurm's environment
    hydra_job_ids = set()
    for job in ("0", "1"):
        job_dir = sweep / job
        assert (job_dir / "status").read_text() == "FINISHED\n"
        assert (job_dir / "model" / "config.json").is_file()
        assert (job_dir / "metrics.json").is_file() and (job_dir / "resolved.yaml").is_file()
        hydra_job_ids.add(OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.job.id)
    assert hydra_job_ids == set(slurm_jobs)  # Hydra's job id is the Slurm (array) job id

    with (sweep / "summary.csv").open() as rows:
        summary = list(csv.DictReader(rows))
    assert [(r["train.learning_rate"], r["status"]) for r in summary] == \
        [("1e-05", "FINISHED"), ("2e-05", "FINISHED")]
    assert all(r["train/train_loss"] != "" for r in summary)

    client, parents, children = mlflow_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FINISHED"]
    parent = parents[0]
    assert parent.data.tags["launcher"] == "slurm-1gpu"
    assert sorted((c.data.params["train.learning_rate"], c.info.status) for c in children) == \
        [("1e-05", "FINISHED"), ("2e-05", "FINISHED")]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    for child in children:  # metrics streamed from the job's worker on the Slurm node
        assert [m.step for m in client.get_metric_history(child.info.run_id, "loss")] == [1]


def test_a_job_cancelled_before_it_returns_fails_alone_without_accounting(tmp_path,
                                                                          slurm_cluster):  # noqa: F811
    # This cluster has no accounting (sacct fails), as many small ones: submitit alone could
    # not tell the cancelled job from a running one and `r1exp -m` waited forever.
    import subprocess
    import threading
    import time

    def cancel_first_job():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            listed = subprocess.run(["squeue", "--noheader", "--array", "--format=%i"],
                                    capture_output=True, text=True, check=False).stdout.split()
            first = [job for job in listed if job.endswith("_0")]
            if first:
                subprocess.run(["scancel", first[0]], check=True)
                return
            time.sleep(0.5)

    canceller = threading.Thread(target=cancel_first_job)
    canceller.start()
    # Both jobs spend their first 20 s in the setup line, so job 0 is cancelled while queued
    # or starting, before it can return; job 1 runs to the end.
    out = run_r1exp(tmp_path, *SLURM_1GPU_ON_CPU, "hydra.launcher.setup=[sleep 20]",
                    "dry_run=true", "train.learning_rate=1e-5,2e-5", multirun=True, timeout=300)
    canceller.join()
    assert out.returncode == 1, (out.stdout[-2000:], out.stderr[-3000:])
    assert "1 of 2 job(s) did not finish" in out.stderr
    sweep = tmp_path / "sweep"
    with (sweep / "summary.csv").open() as rows:
        summary = {r["train.learning_rate"]: r for r in csv.DictReader(rows)}
    assert summary["2e-05"]["status"] == "FINISHED"
    lost = summary["1e-05"]
    assert lost["status"] == "FAILED"
    # CANCELLED while slurmctld still holds the job; a job cancelled while pending may be
    # dropped from squeue at once (seen with Slurm 22.05), and then it is NOT_IN_QUEUE.
    assert re.search(r"ended without a result \(state (CANCELLED|NOT_IN_QUEUE)\)",
                     lost["error"]), lost["error"]
    client, parents, children = mlflow_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FAILED"]
    assert [(c.data.params["train.learning_rate"], c.info.status) for c in children] == \
        [("1e-05", "FAILED")]  # the dry run of job 1 opens no run
