"""An interrupted run continues where it stopped when the same command runs again."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from r1exp.errors import ConfigError
from r1exp.launch.controller import prepare
from r1exp.rundir import RunDir
from r1exp.launch.resume import (
    RunClaim, adopt_run, find_resumable_run, fingerprint, refuse_finished_training,
)
from r1exp.tracking.attempts import already_logged, reattach_run
from waiting import wait_for

CONF = Path(__file__).resolve().parents[1] / "conf"


@functools.cache
def _validated(overrides: tuple[str, ...]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/unset", "experiment=smoke-sft",
                                           *overrides])
    return prepare(cfg)[0]


def typed(run_dir: Path, *overrides: str):
    """The validated smoke-sft config of a run in `run_dir` (composed once per overrides)."""
    cfg = copy.deepcopy(_validated(overrides))
    cfg.paths.output_dir = str(run_dir)
    return cfg


def make_run(run_dir: Path, cfg, *, status: str | None = "FAILED", checkpoint: int | None = 3,
             complete: bool = True) -> Path:
    """A run dir as an earlier controller leaves it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    RunDir(run_dir).fingerprint_file.write_text(fingerprint(cfg) + "\n")
    if status:
        (run_dir / "status").write_text(status + "\n")
    if checkpoint is not None:
        ckpt = run_dir / "checkpoints" / f"checkpoint-{checkpoint}"
        ckpt.mkdir(parents=True)
        if complete:
            (ckpt / "trainer_state.json").write_text("{}")
    return run_dir


def _fingerprint_from(conf: Path, *overrides: str) -> str:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/unset", *overrides])
    return fingerprint(prepare(cfg)[0])


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer holds {old!r}"
    path.write_text(text.replace(old, new))


def test_sft_fingerprint_covers_only_what_sft_computes(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    smoke = ("experiment=smoke-sft",)
    # the default recipe (quickstart) sets grpo knobs; an sft run leaves them out
    quickstart = ("stage=sft", "sft.completion_column=answer")
    evaluating = (*smoke, "train.benchmarks=[aime25]")
    runs = (smoke, quickstart, evaluating)
    before = {run: _fingerprint_from(conf, *run) for run in runs}
    _edit(conf / "benchmark" / "aime25.yaml", "split: train", "split: test")
    _edit(conf / "grpo" / "default.yaml", "temperature: 1.0", "temperature: 0.7")
    _edit(conf / "experiment" / "quickstart.yaml", "temperature: 0.8", "temperature: 0.9")
    assert _fingerprint_from(conf, *smoke) == before[smoke]
    assert _fingerprint_from(conf, *quickstart) == before[quickstart]
    assert _fingerprint_from(conf, *evaluating) != before[evaluating]  # it evaluates aime25
    _edit(conf / "sft" / "default.yaml", "eos_token: null", "eos_token: '</s>'")
    assert _fingerprint_from(conf, *smoke) != before[smoke]


def test_fingerprint_ignores_what_differs_between_attempts(tmp_path):
    base = fingerprint(typed(tmp_path / "a"))
    assert fingerprint(typed(tmp_path / "b", "dry_run=true", "resume=never",
                             "logger=none")) == base
    assert fingerprint(typed(tmp_path / "a", "train.learning_rate=1e-3")) != base
    assert fingerprint(typed(tmp_path / "a", "train.max_steps=11")) != base
    # values derived from the run dir name the attempt, not the computation
    first, second = typed(tmp_path / "a"), typed(tmp_path / "b")
    first.sft.system_prompt, second.sft.system_prompt = f"{tmp_path}/a/x", f"{tmp_path}/b/x"
    assert fingerprint(first) == fingerprint(second)


def test_last_complete_checkpoint_skips_one_cut_short(tmp_path):
    assert RunDir(tmp_path).last_complete_checkpoint() is None
    make_run(tmp_path, typed(tmp_path), checkpoint=3)
    (tmp_path / "checkpoints" / "checkpoint-6").mkdir()  # killed while saving: no trainer_state
    (tmp_path / "checkpoints" / "checkpoint-10.tmp").mkdir()
    assert RunDir(tmp_path).last_complete_checkpoint() == tmp_path / "checkpoints" / "checkpoint-3"


def test_finds_the_newest_unfinished_idle_run_of_the_same_config(tmp_path):
    runs = tmp_path / "runs"
    now = typed(runs / "day2" / "now")
    older = make_run(runs / "day1" / "older", now)
    newer = make_run(runs / "day2" / "newer", now)
    os.utime(RunDir(older).fingerprint_file, (1, 1))
    assert find_resumable_run(now) == newer
    claim = RunClaim(newer, now)  # a controller is working in it
    assert find_resumable_run(now) == older
    claim.release()
    (newer / "status").write_text("FINISHED\n")
    assert find_resumable_run(now) == older


@pytest.mark.parametrize("why", ["finished", "no checkpoint", "cut-short checkpoint",
                                 "other config", "resume=never"])
def test_runs_that_cannot_be_continued_are_ignored(tmp_path, why):
    resume = ["resume=never"] if why == "resume=never" else []
    now = typed(tmp_path / "runs" / "d" / "now", *resume)
    other = typed(tmp_path / "x", "train.max_steps=99")
    make_run(tmp_path / "runs" / "d" / "earlier", other if why == "other config" else now,
             status="FINISHED" if why == "finished" else None,
             checkpoint=None if why == "no checkpoint" else 3,
             complete=why != "cut-short checkpoint")
    assert find_resumable_run(now) is None


@pytest.mark.parametrize("stage,progress_file", [
    ("eval", "eval/gsm8k/samples.jsonl"),  # finished samples of an eval run
    ("generate", "generated/samples/shard-00000.jsonl"),  # a committed generate shard
])
def test_eval_and_generate_runs_resume_from_their_own_progress(tmp_path, stage, progress_file):
    extra = ["eval.benchmarks=[gsm8k]"] if stage == "eval" else []
    now = typed(tmp_path / "runs" / "d" / "now", f"stage={stage}", *extra)
    if stage == "generate":
        now.generate.output_dir = f"{now.paths.output_dir}/generated"  # as resolved in that dir
    earlier = make_run(tmp_path / "runs" / "d" / "earlier", now, checkpoint=None)
    assert find_resumable_run(now) is None  # no progress yet: nothing to continue
    progress = earlier / progress_file
    progress.parent.mkdir(parents=True)
    progress.write_text('{"problem_id": 0}\n')
    assert find_resumable_run(now) == earlier
    assert adopt_run(now, earlier).paths.output_dir == str(earlier)


def test_generate_into_a_fixed_dir_needs_no_adoption(tmp_path):
    now = typed(tmp_path / "runs" / "d" / "now", "stage=generate",
                f"generate.output_dir={tmp_path}/distill")
    make_run(tmp_path / "runs" / "d" / "earlier", now, checkpoint=None)
    shard = tmp_path / "distill" / "samples" / "shard-00000.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text('{"problem_id": 0}\n')  # any attempt writing there continues these
    assert find_resumable_run(now) is None


def test_adopting_a_run_moves_the_paths_and_leaves_a_pointer(tmp_path):
    now = typed(tmp_path / "runs" / "d" / "now")
    earlier = make_run(tmp_path / "runs" / "d" / "earlier", now)
    adopted = adopt_run(now, earlier)
    assert adopted.paths.output_dir == str(earlier)
    assert fingerprint(adopted) == fingerprint(now)
    assert RunDir(tmp_path / "runs" / "d" / "now").resumed_in() == earlier


def test_rerun_in_the_same_dir_continues_there(tmp_path):
    now = typed(tmp_path / "runs" / "d" / "run")
    make_run(tmp_path / "runs" / "d" / "run", now)  # hydra.run.dir fixed: same dir again
    assert find_resumable_run(now) == tmp_path / "runs" / "d" / "run"
    assert adopt_run(now, tmp_path / "runs" / "d" / "run") is now
    assert not RunDir(tmp_path / "runs" / "d" / "run").resumed_in_file.exists()


@pytest.mark.parametrize("status", [None, "REQUEUED", "KILLED", "FAILED"])
def test_a_requeued_job_continues_in_its_own_dir_even_before_a_checkpoint(tmp_path, status):
    # A Slurm job requeued before its first checkpoint runs again in the same dir: it must
    # continue its MLflow run there, not open a second one or adopt another dir's progress.
    runs = tmp_path / "runs"
    now = typed(runs / "d" / "job")
    make_run(runs / "d" / "other", now)  # an older unfinished attempt holding a checkpoint
    make_run(runs / "d" / "job", now, status=status, checkpoint=None)
    assert find_resumable_run(now) == runs / "d" / "job"


def test_a_finished_or_foreign_run_in_the_own_dir_is_not_continued(tmp_path):
    now = typed(tmp_path / "runs" / "d" / "job")
    make_run(tmp_path / "runs" / "d" / "job", now, status="FINISHED", checkpoint=None)
    assert find_resumable_run(now) is None
    make_run(tmp_path / "runs" / "d" / "job", typed(tmp_path / "x", "train.max_steps=99"),
             status="REQUEUED", checkpoint=None)
    assert find_resumable_run(now) is None


@pytest.mark.parametrize("status,model_saved,says", [
    ("FINISHED", True, "its final model is in"),
    ("FAILED", False, "ended before saving its final model; the weights are in"),
])
def test_a_run_that_reached_max_steps_is_not_trained_again(tmp_path, status, model_saved, says):
    cfg = typed(tmp_path, "train.max_steps=3")
    make_run(tmp_path, cfg, status=status, checkpoint=3)
    if model_saved:
        (tmp_path / "model").mkdir()
    with pytest.raises(ConfigError, match="train.max_steps=3") as err:
        refuse_finished_training(cfg, tmp_path)
    assert says in str(err.value) and "resume=never" in str(err.value)


@pytest.mark.parametrize("overrides", [("train.max_steps=4",), ("train.max_steps=3",
                                                                  "resume=never")])
def test_a_run_short_of_max_steps_or_started_over_is_let_through(tmp_path, overrides):
    cfg = typed(tmp_path, *overrides)
    make_run(tmp_path, cfg, checkpoint=3)
    refuse_finished_training(cfg, tmp_path)


def test_a_run_dir_has_one_controller_at_a_time(tmp_path):
    cfg = typed(tmp_path)
    claim = RunClaim(tmp_path, cfg)
    with pytest.raises(ConfigError, match="in use by another r1exp process"):
        RunClaim(tmp_path, cfg)
    claim.release()
    RunClaim(tmp_path, cfg).release()
    assert RunDir(tmp_path).fingerprint_file.read_text().strip() == fingerprint(cfg)


def test_reattach_continues_the_same_mlflow_run_and_skips_logged_points(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = typed(tmp_path / "run", f"logger.tracking_uri={uri}")
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("resume")).info.run_id
    for step in (1, 2, 3):
        client.log_metric(run_id, "loss", 1.0 / step, step=step)
    client.set_terminated(run_id, status="FAILED")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mlflow_run_id").write_text(run_id)

    run = reattach_run(cfg, tmp_path / "run")
    assert run.run_id == run_id and client.get_run(run_id).info.status == "RUNNING"
    assert client.get_run(run_id).data.tags["r1exp.attempts"] == "2"
    logged = already_logged(run)
    assert logged("loss", 3) and not logged("loss", 4) and not logged("grad_norm", 1)
    # The worker of the continued run skips those points even when it starts over without a
    # checkpoint (a Slurm job requeued before its first one): steps 1-3 are not logged twice.
    from types import SimpleNamespace

    from r1exp.tracking.callback import MlflowMetricsCallback

    callback = MlflowMetricsCallback(run, resuming=False)
    for step in (2, 4):
        callback.on_log(None, SimpleNamespace(is_world_process_zero=True, global_step=step),
                        None, logs={"loss": 9.0})
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss")) == \
        [(1, 1.0), (2, 0.5), (3, 1.0 / 3), (4, 9.0)]
    assert reattach_run(typed(tmp_path / "run", "logger=none"), tmp_path / "run") is None
    (tmp_path / "run" / "mlflow_run_id").write_text("0" * 32)  # not in this store
    assert reattach_run(cfg, tmp_path / "run") is None


# --- end to end: SIGKILL the worker after a checkpoint, run the same command again ----------

KILL_AFTER_STEP = 5  # checkpoint-3 is complete by then; checkpoint-6 is not started
MAX_STEPS = 6
COMMAND = [sys.executable, "-m", "r1exp", "experiment=smoke-sft", f"train.max_steps={MAX_STEPS}",
           "train.save_steps=3", "train.lr_scheduler_type=linear", "train.learning_rate=1e-4",
           "train.global_batch_size=1", "hardware.per_device_train_batch_size=1",
           "dataset.max_samples=8", "dataset.test_size=null"]


def _logged_losses(client, run_id: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, "loss")}


@pytest.mark.slow
def test_killed_worker_resumes_without_lost_or_repeated_steps(tmp_path):
    from mlflow.tracking import MlflowClient

    # One thread per tiny model: the machine's cores are shared with the controller (and CI).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = tmp_path / "multirun_outputs" / "runs"
    first_log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(COMMAND, cwd=tmp_path, env=env, stdout=first_log,
                             stderr=subprocess.STDOUT)
    try:
        id_file = wait_for(lambda: next(runs.glob("*/*/mlflow_run_id"), None), 120, "the run")
        run_dir, run_id = id_file.parent, id_file.read_text().strip()
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/multirun_outputs/mlflow.db")
        wait_for(lambda: max(_logged_losses(client, run_id), default=0) >= KILL_AFTER_STEP,
                  400, f"step {KILL_AFTER_STEP}")
        worker = int(Path(f"/proc/{first.pid}/task/{first.pid}/children").read_text().split()[0])
        os.kill(worker, signal.SIGKILL)
        assert first.wait(timeout=120) != 0
    finally:
        if first.poll() is None:
            first.kill()
        first_log.close()
    assert (run_dir / "status").read_text().strip() == "FAILED"
    killed_losses = _logged_losses(client, run_id)
    resumed_from = int(RunDir(run_dir).last_complete_checkpoint().name.split("-")[1])
    assert resumed_from < max(killed_losses)  # some steps were done but not checkpointed

    second = subprocess.run(COMMAND, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    # the rerun got a new Hydra dir, and continued in the killed one
    pointers = list(runs.glob("*/*/resumed_in"))
    assert [p.read_text().strip() for p in pointers] == [str(run_dir)]
    assert (run_dir / "status").read_text().strip() == "FINISHED"
    state = json.loads((run_dir / "checkpoints" / f"checkpoint-{MAX_STEPS}" / "trainer_state.json")
                       .read_text())
    assert state["global_step"] == MAX_STEPS
    trained = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    assert [e["step"] for e in state["log_history"] if "loss" in e] == list(range(1, MAX_STEPS + 1))

    # one MLflow run, every step once, finished, on its second attempt
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, MAX_STEPS + 1))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["r1exp.attempts"] == "2"

    # Steps redone after the checkpoint reproduce the killed attempt: the weights, the data
    # position, and (from the second redone step on) Adam's moments and the LR schedule.
    redone = sorted(s for s in killed_losses if s > resumed_from)
    assert len(redone) >= 2, (resumed_from, killed_losses)
    for step in redone:
        assert trained[step] == pytest.approx(killed_losses[step], rel=1e-4, abs=1e-5), step
