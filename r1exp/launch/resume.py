"""Continue an interrupted run instead of starting over.

Every Hydra run gets a fresh timestamped dir, so "run the same command again" must find the
earlier attempt: each run dir holds a `fingerprint` of its resolved config (minus what is
specific to one attempt: its dir, dry_run, resume, where it logs). That config holds
only the knob nodes its stage reads and the benchmarks it names (r1exp.config.stage_nodes), so
another stage's knob or an unnamed benchmark's spec does not keep a run from resuming. A later
run with the same fingerprint adopts the newest earlier dir under the same runs root (the run dir's
grandparent: `multirun_outputs/runs` for the default layout, so any day counts) that did not
finish, holds progress and is not in use: the stage resumes there and metrics continue in the
same MLflow run. Progress is a complete trainer checkpoint, unless the stage module defines
`resumable(cfg, run_dir) -> bool` (eval: finished samples; generate: committed shards).

Controller side only (no torch); `already_logged` also serves workers, to not log a
(metric, step) point twice when they redo the steps after the last checkpoint.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from r1exp.errors import ConfigError
from r1exp.rundir import RunDir, canonical_json, checkpoint_step, short_hash
from r1exp.stages import stage, validate

log = logging.getLogger(__name__)
# Keys that differ between attempts of the same run without changing what it computes.
NOT_FINGERPRINTED = ("paths.output_dir", "dry_run", "resume", "logger")


def fingerprint(cfg: DictConfig) -> str:
    """A short hash of what the run computes; equal configs give equal fingerprints."""
    data = OmegaConf.to_container(cfg, resolve=True)
    run_dir = str(data["paths"]["output_dir"])
    for dotted in NOT_FINGERPRINTED:
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    # Values derived from the run dir (e.g. `${paths.output_dir}/x`) must not tell attempts apart.
    return short_hash(canonical_json(data).replace(run_dir, "<run_dir>"))


def refuse_finished_training(cfg: DictConfig, run_dir: Path) -> None:
    """Raise ConfigError when `run_dir` already holds a checkpoint at `train.max_steps`.

    transformers' Trainer checks max_steps only after a step, so resuming there would train one
    step past the limit and overwrite the finished model. Say so before any heavy work instead.
    """
    if not stage(cfg.stage).training or cfg.resume != "auto" or cfg.train.max_steps <= 0:
        return
    rundir = RunDir(run_dir)
    checkpoint = rundir.last_complete_checkpoint()
    step = checkpoint_step(checkpoint) if checkpoint else 0
    if step < cfg.train.max_steps:
        return
    final = rundir.model_dir
    saved = final.is_dir() and rundir.status() == "FINISHED"
    done = (f"its final model is in {final}" if saved else
            f"it ended before saving its final model; the weights are in {checkpoint}")
    raise ConfigError(
        f"run dir {run_dir} already trained to train.max_steps={cfg.train.max_steps} "
        f"({checkpoint.name}): {done}. Raise train.max_steps to train on from there, or set "
        "resume=never (or another hydra.run.dir) to start over")


def holds_progress(cfg: DictConfig, run_dir: Path) -> bool:
    """Whether `run_dir` holds work of `cfg.stage` worth continuing from."""
    return stage(cfg.stage).resumable(cfg, run_dir)


def find_resumable_run(cfg: DictConfig) -> Path | None:
    """The newest unfinished, idle run dir of this config holding progress, or None.

    The dir this attempt was given comes first, with or without progress, when an earlier
    attempt of the same config ran there and did not finish: a Slurm job requeued at its time
    limit or preempted runs again in its own dir, and must continue its MLflow run even if it
    was stopped before its first checkpoint.
    """
    if cfg.resume != "auto":
        return None
    run_dir = Path(cfg.paths.output_dir).resolve()
    wanted = fingerprint(cfg)
    if _unfinished_with(RunDir(run_dir), wanted) and not _in_use(RunDir(run_dir)):
        log.info("continuing the unfinished run in its own dir %s", run_dir)
        return run_dir
    # Nodes of a multi-node run must agree on one dir; they resume only within the dir they
    # are given (the worker still picks up its checkpoints there).
    if cfg.hardware.num_nodes > 1:
        return None
    candidates = []
    for candidate in run_dir.parent.parent.glob("*/*"):
        rundir = RunDir(candidate)
        if (_unfinished_with(rundir, wanted) and holds_progress(cfg, candidate)
                and not _in_use(rundir)):
            candidates.append((rundir.fingerprint_file.stat().st_mtime, candidate))
    if not candidates:
        return None
    found = max(candidates)[1]
    log.info("resuming the unfinished run %s", found)
    return found


def adopt_run(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """`cfg` with paths.output_dir, and every value derived from it, moved to `run_dir`; the
    dir this attempt was given keeps only a `resumed_in` pointer (and Hydra's own files)."""
    old = str(cfg.paths.output_dir)
    if Path(old).resolve() == Path(run_dir).resolve():  # rerun in the same dir: nothing moves
        return cfg
    Path(old).mkdir(parents=True, exist_ok=True)
    RunDir(old).write_resumed_in(run_dir)

    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
            return str(run_dir) + value[len(old):]
        return value

    return validate(OmegaConf.create(move(OmegaConf.to_container(cfg, resolve=True))))


class RunClaim:
    """This controller's hold on a run dir: a lock other controllers see, and its fingerprint.

    An flock dies with its process, so a crashed or killed run never looks busy.
    """

    def __init__(self, run_dir: Path, cfg: DictConfig):
        self.path = RunDir(run_dir).lock_file
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise ConfigError(f"run dir {run_dir} is in use by another r1exp process; wait for "
                              "it or start this one with resume=never") from None
        self._handle.truncate(0)
        self._handle.write(str(os.getpid()))
        self._handle.flush()
        RunDir(run_dir).fingerprint_file.write_text(fingerprint(cfg) + "\n")

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def _unfinished_with(rundir: RunDir, wanted: str) -> bool:
    return rundir.read(rundir.fingerprint_file) == wanted and rundir.status() != "FINISHED"


def _in_use(rundir: RunDir) -> bool:
    lock = rundir.lock_file
    if not lock.is_file():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
