"""Continue an interrupted run instead of starting over.

Every Hydra run gets a fresh timestamped dir, so "run the same command again" must find the
earlier attempt: each run dir holds a `fingerprint` of its resolved config (minus what is
specific to one attempt: its dir, dry_run, train.resume, where it logs). A later run with the
same fingerprint adopts the newest earlier dir under the same runs root (the run dir's
grandparent: `multirun_outputs/runs` for the default layout, so any day counts) that did not
finish, holds progress and is not in use: the stage resumes there and metrics continue in the
same MLflow run. Progress is a complete trainer checkpoint, unless the stage module defines
`resumable(cfg, run_dir) -> bool` (eval: finished samples; generate: committed shards).

Controller side only (no torch); `already_logged` also serves workers, to not log a
(metric, step) point twice when they redo the steps after the last checkpoint.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from r1exp.errors import ConfigError

log = logging.getLogger(__name__)
FINGERPRINT_FILE = "fingerprint"
RESUMED_IN_FILE = "resumed_in"
LOCK_FILE = ".r1exp.lock"
MLFLOW_RUN_ID_FILE = "mlflow_run_id"  # written by r1exp.tracking.mlflow_run.open_run
STATUS_FILE = "status"                # written by the controller when a run ends
ATTEMPTS_TAG = "r1exp.attempts"       # on a run continued by a later attempt (reattach_run)
CHECKPOINTS_DIR = "checkpoints"       # trainer output dir (r1exp.stages.training)
FINAL_MODEL_DIR = "model"             # the saved model (r1exp.stages.training)
# Keys that differ between attempts of the same run without changing what it computes.
NOT_FINGERPRINTED = ("paths.output_dir", "dry_run", "train.resume", "logger")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


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
    text = json.dumps(data, sort_keys=True, default=str).replace(run_dir, "<run_dir>")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest `checkpoints/checkpoint-N` that was fully written.

    The Trainer writes a checkpoint in place and its trainer_state.json last, so a process
    killed while saving leaves a dir without it; resuming from that would fail.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    complete = [(int(m.group(1)), p) for p in root.iterdir()
                if (m := _CHECKPOINT.fullmatch(p.name)) and (p / "trainer_state.json").is_file()]
    return max(complete)[1] if complete else None


def refuse_finished_training(cfg: DictConfig, run_dir: Path) -> None:
    """Raise ConfigError when `run_dir` already holds a checkpoint at `train.max_steps`.

    transformers' Trainer checks max_steps only after a step, so resuming there would train one
    step past the limit and overwrite the finished model. Say so before any heavy work instead.
    """
    from r1exp.config.plan import TRAINING_STAGES

    if cfg.stage not in TRAINING_STAGES or cfg.train.resume != "auto" or cfg.train.max_steps <= 0:
        return
    checkpoint = last_complete_checkpoint(run_dir)
    step = int(_CHECKPOINT.fullmatch(checkpoint.name).group(1)) if checkpoint else 0
    if step < cfg.train.max_steps:
        return
    final = Path(run_dir) / FINAL_MODEL_DIR
    saved = final.is_dir() and _read(Path(run_dir) / STATUS_FILE) == "FINISHED"
    done = (f"its final model is in {final}" if saved else
            f"it ended before saving its final model; the weights are in {checkpoint}")
    raise ConfigError(
        f"run dir {run_dir} already trained to train.max_steps={cfg.train.max_steps} "
        f"({checkpoint.name}): {done}. Raise train.max_steps to train on from there, or set "
        "train.resume=never (or another hydra.run.dir) to start over")


def holds_progress(cfg: DictConfig, run_dir: Path) -> bool:
    """Whether `run_dir` holds work of `cfg.stage` worth continuing from."""
    from r1exp.stages import stage_module

    stage_resumable = getattr(stage_module(cfg.stage), "resumable", None)
    if stage_resumable is not None:
        return stage_resumable(cfg, run_dir)
    return last_complete_checkpoint(run_dir) is not None


def find_resumable_run(cfg: DictConfig) -> Path | None:
    """The newest unfinished, idle run dir of this config holding progress, or None.

    The dir this attempt was given comes first, with or without progress, when an earlier
    attempt of the same config ran there and did not finish: a Slurm job requeued at its time
    limit or preempted runs again in its own dir, and must continue its MLflow run even if it
    was stopped before its first checkpoint.
    """
    if cfg.train.resume != "auto":
        return None
    run_dir = Path(cfg.paths.output_dir).resolve()
    wanted = fingerprint(cfg)
    if (_read(run_dir / FINGERPRINT_FILE) == wanted and _read(run_dir / STATUS_FILE) != "FINISHED"
            and not _in_use(run_dir)):
        log.info("continuing the unfinished run in its own dir %s", run_dir)
        return run_dir
    # Nodes of a multi-node run must agree on one dir; they resume only within the dir they
    # are given (the worker still picks up its checkpoints there).
    if cfg.hardware.num_nodes > 1:
        return None
    candidates = []
    for marker in run_dir.parent.parent.glob(f"*/*/{FINGERPRINT_FILE}"):
        candidate = marker.parent
        if (_read(marker) == wanted and _read(candidate / STATUS_FILE) != "FINISHED"
                and holds_progress(cfg, candidate) and not _in_use(candidate)):
            candidates.append((marker.stat().st_mtime, candidate))
    if not candidates:
        return None
    found = max(candidates)[1]
    log.info("resuming the unfinished run %s", found)
    return found


def adopt_run(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """`cfg` with paths.output_dir, and every value derived from it, moved to `run_dir`; the
    dir this attempt was given keeps only a `resumed_in` pointer (and Hydra's own files)."""
    from r1exp.config.validate import validate

    old = str(cfg.paths.output_dir)
    if Path(old).resolve() == Path(run_dir).resolve():  # rerun in the same dir: nothing moves
        return cfg
    Path(old).mkdir(parents=True, exist_ok=True)
    (Path(old) / RESUMED_IN_FILE).write_text(f"{run_dir}\n")

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
        self.path = Path(run_dir) / LOCK_FILE
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise ConfigError(f"run dir {run_dir} is in use by another r1exp process; wait for "
                              "it or start this one with train.resume=never") from None
        self._handle.truncate(0)
        self._handle.write(str(os.getpid()))
        self._handle.flush()
        (Path(run_dir) / FINGERPRINT_FILE).write_text(fingerprint(cfg) + "\n")

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def reattach_run(cfg: DictConfig, run_dir: Path):
    """The resumed dir's MLflow run, set RUNNING again; None when there is none to continue
    (logging off, or it lives in another tracking store) so the caller opens a new one."""
    id_file = Path(run_dir) / MLFLOW_RUN_ID_FILE
    if cfg.logger.name == "none" or not id_file.is_file():
        return None
    from r1exp.tracking.mlflow_run import TrackedRun, client_for, tracking_uri

    run_id = id_file.read_text().strip()
    uri = tracking_uri(cfg)
    client = client_for(uri)
    try:
        previous = client.get_run(run_id)
    except Exception as err:  # deleted, or a different store than the first attempt used
        log.warning("cannot continue MLflow run %s in %s (%s); opening a new one", run_id, uri,
                    type(err).__name__)
        return None
    client.update_run(run_id, status="RUNNING")
    attempts = int(previous.data.tags.get(ATTEMPTS_TAG, "1")) + 1
    client.set_tag(run_id, ATTEMPTS_TAG, str(attempts))
    log.info("continuing MLflow run %s (attempt %d)", run_id, attempts)
    return TrackedRun(client, run_id, uri, run_dir)  # pending metrics of earlier attempts too


def already_logged(run) -> Callable[[str, int], bool]:
    """`(metric, step) -> bool`: whether `run` already holds that point (history fetched once
    per metric), so steps redone after a resume are not logged twice."""
    from r1exp.tracking.params import metric_name

    last_step: dict[str, int] = {}

    def logged(key: str, step: int) -> bool:
        name = metric_name(key)
        if name not in last_step:
            history = run.client.get_metric_history(run.run_id, name)
            last_step[name] = max((m.step for m in history), default=-1)
        return step <= last_step[name]

    return logged


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _in_use(run_dir: Path) -> bool:
    lock = run_dir / LOCK_FILE
    if not lock.is_file():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
