"""A sweep through the submitit Slurm launcher on a real (local, one-node) Slurm cluster."""

from __future__ import annotations

import csv

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
