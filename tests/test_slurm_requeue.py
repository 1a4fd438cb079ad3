"""Slurm jobs that reach their time limit or are preempted requeue and resume (real local Slurm).

submitit asks sbatch for USR2 `signal_delay_s` before the time limit; on USR2 (time limit or a
preemption) it calls the launcher's checkpoint() and requeues the job. Each test checks what a
user sees afterwards: the job finished, one MLflow run per job with every step logged once, and
the final model equal to an uninterrupted run of the same config.

Two cluster-side steps keep the tests short, neither of them r1exp's: slurmctld holds a requeued
job back for ~2 minutes (BeginTime), which the tests lift with `scontrol update StartTime=now`;
and the time-limit test raises the requeued job's limit, so the second attempt surely finishes
(Slurm sends the time-limit signal up to 30 s early, too coarse to plan several attempts on).
"""

from __future__ import annotations

import csv
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from slurm.harness import mlflow_runs, run_r1exp, slurm_cluster, tiny_model  # noqa: F401
from waiting import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

MAX_STEPS = 120
SAVE_STEPS = 10
# SFT of the tiny model, deterministic: 0.3-0.5 s a step on one core (128 sequences a step), so
# a signal lands mid-run and the redone steps after the last checkpoint are few.
TRAINING = ["experiment=smoke-sft", f"train.max_steps={MAX_STEPS}",
            f"train.save_steps={SAVE_STEPS}", "train.global_batch_size=128",
            "hardware.per_device_train_batch_size=1", "dataset.max_samples=256"]
SLURM_ON_CPU = ["hydra/launcher=slurm-1gpu", "hydra.launcher.gpus_per_node=null",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the same float reductions in every run, on every core
CREDENTIAL_CLOCK_S = 2  # slurmd compares credential times in whole seconds


def _training(model: Path) -> list[str]:
    return [f"model.path={model}", *TRAINING]


LEARNING_RATES = ("5e-05", "0.0001")  # as MLflow shows the swept values


@pytest.fixture(scope="module")
def uninterrupted_models(tmp_path_factory, tiny_model) -> dict[str, Path]:  # noqa: F811
    """{learning rate: final model} of the same training runs without interruption (no Slurm),
    both at once."""
    runs = {lr: tmp_path_factory.mktemp(f"uninterrupted-{lr}") for lr in LEARNING_RATES}
    with ThreadPoolExecutor(len(runs)) as pool:
        outs = {lr: pool.submit(run_r1exp, tmp, *_training(tiny_model),
                                f"train.learning_rate={lr}", env=ONE_THREAD, timeout=600)
                for lr, tmp in runs.items()}
        for lr, out in outs.items():
            assert out.result().returncode == 0, out.result().stderr[-3000:]
    return {lr: tmp / "run" / "model" for lr, tmp in runs.items()}


def _queue() -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} of every job slurmctld holds (array tasks as <array>_<task>)."""
    out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r"],
                         capture_output=True, text=True, check=True).stdout
    return {job: (state, reason) for job, state, reason in
            (line.split("|") for line in out.splitlines() if line.count("|") == 2)}


def _job_id_of(sweep: Path, job_num: int) -> str | None:
    """The Slurm id of a sweep job once it has started (Hydra's job id is the Slurm one)."""
    hydra_yaml = sweep / str(job_num) / ".hydra" / "hydra.yaml"
    if not hydra_yaml.is_file():
        return None
    from omegaconf import OmegaConf

    # Hydra writes the file in place: a read while it is being written finds it incomplete.
    job_id = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.id")
    return None if job_id is None else str(job_id)


def _wait_until_requeued(job_id: str) -> None:
    wait_for(lambda: _queue().get(job_id, ("", ""))[0] == "PENDING", 120,
              f"job {job_id} requeued")


def _start_now(job_id: str, *extra: str) -> None:
    """Let a requeued job start at once (see the module docstring)."""
    # slurmd refuses to launch a job whose credential dates from the same second as the
    # revocation of the killed attempt's one ("Job credential revoked"): let a second pass.
    time.sleep(CREDENTIAL_CLOCK_S)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now", *extra],
                   check=True, capture_output=True, text=True)


def _assert_waiting_to_continue(tmp_path: Path, run_dir: Path) -> None:
    """While requeued: a resumable run dir, and an MLflow run that nothing reads as over."""
    assert (run_dir / "status").read_text() == "REQUEUED\n"
    client, _, _ = mlflow_runs(tmp_path)
    assert client.get_run((run_dir / "mlflow_run_id").read_text()).info.status == "SCHEDULED"


def _max_logged_step(tmp_path: Path, run_dir: Path) -> int:
    id_file = run_dir / "mlflow_run_id"
    if not id_file.is_file():
        return 0
    client, _, _ = mlflow_runs(tmp_path)
    history = client.get_metric_history(id_file.read_text().strip(), "loss")
    return max((m.step for m in history), default=0)


def _assert_equal_models(model: Path, reference: Path) -> None:
    from safetensors.torch import load_file

    got, want = load_file(model / "model.safetensors"), load_file(reference / "model.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].equal(want[name]), (name, (got[name] - want[name]).abs().max())


def _assert_resumed_run(tmp_path: Path, run_dir: Path, child) -> None:
    """Finished, on a second attempt of the same MLflow run, with every step logged once."""
    client, _, _ = mlflow_runs(tmp_path)
    assert (run_dir / "status").read_text() == "FINISHED\n"
    assert child.info.status == "FINISHED"
    assert child.data.tags["r1exp.attempts"] == "2"
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, MAX_STEPS + 1))


def _submitit_log(sweep: Path, job_id: str) -> str:
    """The job's stdout, every attempt of it (Slurm appends a requeued job's output)."""
    return (sweep / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()


def test_a_job_at_its_time_limit_requeues_and_finishes_as_if_uninterrupted(
        tmp_path, slurm_cluster, tiny_model, uninterrupted_models):  # noqa: F811
    # 1-minute limit, USR2 20 s before it: 10-40 s after the start (slurmctld checks limits
    # every 30 s). Training (from ~10 s, 40-55 s long) ends after 40 s: the signal always
    # comes before the end, at the latest mid-run.
    sweep = tmp_path / "sweep"
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            run_r1exp, tmp_path, *SLURM_ON_CPU, "hydra.launcher.timeout_min=1",
            "hydra.launcher.signal_delay_s=20", *_training(tiny_model),
            f"train.learning_rate={LEARNING_RATES[0]}", multirun=True,
            env=ONE_THREAD, timeout=600)
        job_id = wait_for(lambda: _job_id_of(sweep, 0), 120, "the job to start")
        # (what the run records while it waits is checked in the preemption test, where the
        # signal comes at a known step; here it may come before the controller started)
        _wait_until_requeued(job_id)
        _start_now(job_id, "TimeLimit=10")
        out = running.result(timeout=600)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    log = _submitit_log(sweep, job_id)
    assert "this job is timed-out" in log and f"Requeued job {job_id}" in log, log[-3000:]

    _, parents, children = mlflow_runs(tmp_path)
    (child,) = children  # the requeued attempt continued the job's run
    _assert_resumed_run(tmp_path, sweep / "0", child)
    _assert_equal_models(sweep / "0" / "model", uninterrupted_models[LEARNING_RATES[0]])


def test_preempted_sweep_jobs_resume_with_one_child_run_per_job(
        tmp_path, slurm_cluster, tiny_model, uninterrupted_models):  # noqa: F811
    # Two jobs share the node; after their first checkpoint, mid-way to the next, job 0 gets
    # USR2 (what submitit reacts to: Slurm's --signal, or a preemption that sends it) and job 1
    # is requeued by Slurm itself (`scontrol requeue`: SIGTERM, as PreemptMode=REQUEUE does).
    sweep = tmp_path / "sweep"
    preempt_after = SAVE_STEPS + 3
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            run_r1exp, tmp_path, *SLURM_ON_CPU, "hydra.launcher.timeout_min=15",
            *_training(tiny_model), f"train.learning_rate={','.join(LEARNING_RATES)}",
            multirun=True, env=ONE_THREAD, timeout=900)
        job_ids = [wait_for(lambda: _job_id_of(sweep, job), 120, f"job {job} to start")
                   for job in (0, 1)]
        for job in (0, 1):
            wait_for(lambda: _max_logged_step(tmp_path, sweep / str(job)) >= preempt_after,
                      300, f"job {job} at step {preempt_after}")
        subprocess.run(["scancel", "--signal=USR2", job_ids[0]], check=True)
        subprocess.run(["scontrol", "requeue", job_ids[1]], check=True)
        for job_id in job_ids:
            _wait_until_requeued(job_id)
        _assert_waiting_to_continue(tmp_path, sweep / "0")
        # ended by Slurm: resumable, and no result, so the sweep waits for the requeued job
        assert (sweep / "1" / "status").read_text() == "KILLED\n"
        assert not list((sweep / ".submitit" / job_ids[1]).glob("*_result.pkl"))
        for job_id in job_ids:
            _start_now(job_id)
        out = running.result(timeout=900)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    log = _submitit_log(sweep, job_ids[0])
    assert "this job is preempted" in log and f"Requeued job {job_ids[0]}" in log, log[-3000:]

    with (sweep / "summary.csv").open() as rows:
        summary = list(csv.DictReader(rows))
    assert [(r["train.learning_rate"], r["status"]) for r in summary] == \
        [(lr, "FINISHED") for lr in LEARNING_RATES]
    _, parents, children = mlflow_runs(tmp_path)
    assert [p.info.status for p in parents] == ["FINISHED"]
    by_lr = {c.data.params["train.learning_rate"]: c for c in children}
    assert len(children) == 2 and sorted(by_lr) == sorted(LEARNING_RATES)  # one run per job
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    for job, lr in enumerate(LEARNING_RATES):
        _assert_resumed_run(tmp_path, sweep / str(job), by_lr[lr])
        _assert_equal_models(sweep / str(job) / "model", uninterrupted_models[lr])
