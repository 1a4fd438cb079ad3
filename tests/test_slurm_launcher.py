"""r1exp's Slurm launcher: job states without Slurm accounting, and jobs lost before returning."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from test_config import CONF

from r1exp.rundir import RunDir
from r1exp.tracking.sweep import SWEEP_FILE, collect_jobs, record_lost_job

pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                    reason="the slurm extra (hydra-submitit-launcher) is not installed")
from r1exp.launch.slurm_launcher import NOT_IN_QUEUE, queue_watcher_class  # noqa: E402


def fake_commands(tmp_path: Path, monkeypatch, **scripts: str) -> Path:
    """Put executables named after `scripts`' keys, with those bodies, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def watching(*job_ids: str):
    watcher = queue_watcher_class()(delay_s=600)
    for job_id in job_ids:
        watcher.register_job(job_id)
    watcher.update()
    return watcher


def test_without_accounting_squeue_tells_which_jobs_ended(tmp_path, monkeypatch):
    fake_commands(tmp_path, monkeypatch,
                  sacct='echo "Slurm accounting storage is disabled" >&2; exit 1',
                  squeue='printf "7_0|RUNNING\\n7_1|CANCELLED\\n8|PENDING\\n"')
    watcher = watching("7_0", "7_1", "7_2")
    assert [watcher.get_state(j, mode="cache") for j in ("7_0", "7_1", "7_2")] == \
        ["RUNNING", "CANCELLED", NOT_IN_QUEUE]
    assert not watcher.is_done("7_0", mode="cache")
    assert watcher.is_done("7_1", mode="cache")  # ended: its result decides how
    assert watcher.is_done("7_2", mode="cache")  # slurmctld forgot it: it ended long ago


def test_when_neither_answers_jobs_are_not_declared_done(tmp_path, monkeypatch):
    fake_commands(tmp_path, monkeypatch, sacct="exit 1", squeue="exit 1")
    watcher = watching("7_0")
    assert watcher.get_state("7_0", mode="cache") == "UNKNOWN"
    assert not watcher.is_done("7_0", mode="cache")


def test_sacct_is_used_when_it_works(tmp_path, monkeypatch):
    asked = tmp_path / "squeue-was-asked"
    fake_commands(tmp_path, monkeypatch,
                  sacct='printf "JobID|State|NodeList\\n7_0|COMPLETED|n1\\n"',
                  squeue=f"touch {asked}")
    assert watching("7_0").get_state("7_0", mode="cache") == "COMPLETED"
    assert not asked.exists()


def job_config(sweep_dir: Path, job_num: int, overrides: list[str]):
    """A job's composed config as the launcher holds it: with its `hydra` node."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("config", overrides=[f"hydra.sweep.dir={sweep_dir}", *overrides],
                         return_hydra_config=True)
    with open_dict(config):
        config.hydra.job.num = job_num
    return config


def sweep_with_parent(tmp_path: Path):
    from r1exp.tracking.mlflow_run import client_for, experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri)
    experiment = experiment_id(client, "r1exp", uri)  # artifacts beside the db, as r1exp keeps them
    parent = client.create_run(experiment, tags={"r1exp.sweep": "true"}).info.run_id
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(
        {"parent_run_id": parent, "tracking_uri": uri, "snapshot": False}))
    return client, experiment, parent, sweep_dir, uri


def test_a_job_lost_before_it_started_is_a_failed_job_with_a_run(tmp_path):
    client, experiment, parent, sweep_dir, uri = sweep_with_parent(tmp_path)
    overrides = ["train.learning_rate=2e-05", f"logger.tracking_uri={uri}"]
    reason = "Slurm job 7_1 ended without a result (state CANCELLED)"
    record_lost_job(job_config(sweep_dir, 1, overrides), sweep_dir / "1", overrides, reason)

    (job,) = collect_jobs(sweep_dir, "reward", None)
    assert (job.name, job.overrides, job.status) == ("1", overrides, "FAILED")
    assert job.error == f"LostJobError: {reason}"
    child = client.get_run(job.run_id)
    assert child.info.status == "FAILED"
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.params["train.learning_rate"] == "2e-05"
    assert child.data.tags["run_dir"] == str(sweep_dir / "1")
    assert len(client.search_runs([experiment])) == 2


def test_a_job_killed_mid_run_ends_its_own_run(tmp_path):
    client, experiment, parent, sweep_dir, uri = sweep_with_parent(tmp_path)
    job_dir = sweep_dir / "0" / ".hydra"
    job_dir.mkdir(parents=True)
    overrides = [f"logger.tracking_uri={uri}"]
    (job_dir / "overrides.yaml").write_text(f"- {overrides[0]}\n")
    # what a controller leaves when it is killed: a RUNNING run, no status file
    running = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    RunDir(sweep_dir / "0").mlflow_run_id_file.write_text(running)

    record_lost_job(job_config(sweep_dir, 0, overrides), sweep_dir / "0", overrides,
                    "Slurm job 7_0 ended without a result (state OUT_OF_MEMORY)")
    run = client.get_run(running)
    assert run.info.status == "FAILED"
    assert "OUT_OF_MEMORY" in run.data.tags["error"]
    assert len(client.search_runs([experiment])) == 2  # no second run for the job
    (job,) = collect_jobs(sweep_dir, "reward", None)
    assert (job.status, job.run_id) == ("FAILED", running)


def test_a_requeued_job_that_never_ran_again_ends_failed(tmp_path):
    # A job requeued at its time limit or preempted waits as REQUEUED / SCHEDULED; cancelled
    # while it waits, it comes back to the launcher as lost and must not stay "waiting".
    client, experiment, parent, sweep_dir, uri = sweep_with_parent(tmp_path)
    job_dir = sweep_dir / "0"
    (job_dir / ".hydra").mkdir(parents=True)
    overrides = [f"logger.tracking_uri={uri}"]
    (job_dir / ".hydra" / "overrides.yaml").write_text(f"- {overrides[0]}\n")
    waiting = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    client.update_run(waiting, status="SCHEDULED")
    RunDir(job_dir).mlflow_run_id_file.write_text(waiting)
    (job_dir / "status").write_text("REQUEUED\n")

    record_lost_job(job_config(sweep_dir, 0, overrides), job_dir, overrides,
                    "Slurm job 7_0 ended without a result (state CANCELLED)")
    assert client.get_run(waiting).info.status == "FAILED"
    assert len(client.search_runs([experiment])) == 2  # still the job's one run
    (job,) = collect_jobs(sweep_dir, "reward", None)
    assert (job.status, job.run_id) == ("FAILED", waiting)
