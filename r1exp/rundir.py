"""The run directory's layout: every file and dir a run leaves, and how each is written.

The controller, the worker, the stages, resume and the sweep summary all read and write the same
dir; naming its parts here, once, keeps them agreeing. At the bottom of the layers: no r1exp
imports, no torch, so the controller and the Hydra-free worker can both use it cheaply.

    resolved.yaml          the worker's input (the controller writes it atomically)
    fingerprint            what the run computes (r1exp.launch.resume)
    .r1exp.lock            the controller's flock: a run in use is not resumed
    status                 how the run ended: FINISHED, FAILED, KILLED, REQUEUED
    metrics.json           the stage's final metrics (the worker, rank 0)
    mlflow_run_id          the MLflow run this dir logs to
    mlflow_pending.jsonl   metrics the tracking server could not take yet
    resumed_in             in a dir whose attempt continued an earlier dir: that dir
    error.txt              why a sweep job failed
    worker.log             the workers' output
    checkpoints/           the trainer's output dir; checkpoint-N inside
    model/                 the saved final model
    eval/results.json      the eval stage's results
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

# Names that also appear outside a run dir: the saved model carries its resolved config, and
# an eval written to another dir (eval's out_dir) has the eval dir's layout.
RESOLVED_CONFIG = "resolved.yaml"
EVAL_DIR = "eval"
EVAL_RESULTS = "results.json"
TRAINER_STATE = "trainer_state.json"  # a checkpoint is complete once it holds this
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    # Files.
    @property
    def resolved_config(self) -> Path:
        return self.path / RESOLVED_CONFIG

    @property
    def fingerprint_file(self) -> Path:
        return self.path / "fingerprint"

    @property
    def lock_file(self) -> Path:
        return self.path / ".r1exp.lock"

    @property
    def status_file(self) -> Path:
        return self.path / "status"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def mlflow_run_id_file(self) -> Path:
        return self.path / "mlflow_run_id"

    @property
    def pending_metrics_file(self) -> Path:
        return self.path / "mlflow_pending.jsonl"

    @property
    def resumed_in_file(self) -> Path:
        return self.path / "resumed_in"

    @property
    def error_file(self) -> Path:
        return self.path / "error.txt"

    @property
    def worker_log(self) -> Path:
        return self.path / "worker.log"

    def node_log(self, machine_rank: int) -> Path:
        """The worker log of a node after the first (node 0 writes `worker_log`)."""
        return self.path / f"worker-node{machine_rank}.log"

    # Dirs.
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL_DIR

    @property
    def eval_results(self) -> Path:
        return self.eval_dir / EVAL_RESULTS

    # Reading and writing.
    def read(self, path: Path) -> str | None:
        """`path`'s stripped text, or None when it cannot be read (absent, a race with a
        writer on another node)."""
        try:
            return path.read_text().strip()
        except OSError:
            return None

    def status(self) -> str | None:
        return self.read(self.status_file)

    def write_status(self, status: str) -> None:
        self.status_file.write_text(status + "\n")

    def mlflow_run_id(self) -> str | None:
        return self.read(self.mlflow_run_id_file)

    def metrics(self) -> dict:
        path = self.metrics_file
        return json.loads(path.read_text()) if path.is_file() else {}

    def resumed_in(self) -> Path | None:
        """The earlier run dir this attempt continued in, if it did."""
        found = self.read(self.resumed_in_file)
        return Path(found) if found else None

    def write_resumed_in(self, earlier: Path) -> None:
        self.resumed_in_file.write_text(f"{earlier}\n")

    def last_complete_checkpoint(self) -> Path | None:
        """The newest `checkpoints/checkpoint-N` that was fully written.

        The Trainer writes a checkpoint in place and its trainer_state.json last, so a process
        killed while saving leaves a dir without it; resuming from that would fail.
        """
        root = self.checkpoints_dir
        if not root.is_dir():
            return None
        complete = [(checkpoint_step(p), p) for p in root.iterdir()
                    if _CHECKPOINT.fullmatch(p.name) and (p / TRAINER_STATE).is_file()]
        return max(complete)[1] if complete else None

    def checkpoints(self) -> list[Path]:
        return sorted(self.checkpoints_dir.glob("checkpoint-*"))


def checkpoint_step(checkpoint: Path) -> int:
    return int(_CHECKPOINT.fullmatch(checkpoint.name).group(1))


def canonical_json(data) -> str:
    """One text per value, whatever the key order: what fingerprints hash."""
    return json.dumps(data, sort_keys=True, default=str)


def short_hash(text: str) -> str:
    """The 16 hex digits every fingerprint in a run dir (and its eval and generate outputs)
    is written as; changing them would make every earlier run look different."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(data) -> str:
    return short_hash(canonical_json(data))


# What marks the temporary file write_atomically renames over its target.
TEMPORARY_MARK = ".tmp-"


def write_atomically(path: Path, text: str, *, durable: bool = False) -> None:
    """Readers see the old file or the new one, never half of it. The temporary name is unique
    per host and process: nodes of a multi-node run write the same file into a shared dir.
    `durable`: the file and its directory entry are synced to disk before this returns, for
    what a resume counts as done (the sample store's shards), which must survive the machine
    crashing, not only the process."""
    tmp = path.with_name(f".{path.name}{TEMPORARY_MARK}{socket.gethostname()}-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


def temporary_target(name: str) -> str | None:
    """The name of the file a temporary of write_atomically was to become (one a killed
    process left behind), or None where `name` is no such temporary."""
    if not name.startswith(".") or TEMPORARY_MARK not in name:
        return None
    return name[1:].rsplit(TEMPORARY_MARK, 1)[0]


def _fsync_dir(directory: Path) -> None:
    # The rename itself survives a machine crash only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomically(path: Path, data) -> None:
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True))
