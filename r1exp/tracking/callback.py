"""Worker side: stream Trainer logs into the controller's MLflow run (rank 0 only)."""

from __future__ import annotations

import functools
import os

from transformers import TrainerCallback

from r1exp.tracking.attempts import ATTEMPTS_TAG, already_logged
from r1exp.tracking.mlflow_run import (
    RUN_DIR_ENV, RUN_ID_ENV, TRACKING_URI_ENV, TrackedRun, client_for,
)


def attached_run() -> TrackedRun | None:
    """The controller's run, if this process was started with MLFLOW_RUN_ID."""
    run_id, uri = os.environ.get(RUN_ID_ENV), os.environ.get(TRACKING_URI_ENV)
    if not run_id or not uri:
        return None
    return _attached(run_id, uri, os.environ.get(RUN_DIR_ENV))


@functools.lru_cache(maxsize=None)
def _attached(run_id: str, uri: str, run_dir: str | None) -> TrackedRun:
    # One per process: the callbacks share what they know of an outage (one warning, one
    # retry clock) and append to the pending file in order.
    return TrackedRun(client_for(uri), run_id, uri, run_dir)


class MlflowMetricsCallback(TrainerCallback):
    """Logs every `on_log` dict at the trainer's global step. Never ends the run.

    With `resuming=True`, the steps between the last checkpoint and an interruption run twice;
    points the run already holds are not logged again. The same holds in a run that an earlier
    attempt logged to (r1exp.tracking.attempts.reattach_run tags it), even without a checkpoint: a
    Slurm job requeued before its first checkpoint redoes its steps from the start.
    """

    def __init__(self, run: TrackedRun | None = None, *, resuming: bool = False):
        self.run = run if run is not None else attached_run()
        self.logged = None
        if self.run is not None and (resuming or _continued(self.run)):
            self.logged = already_logged(self.run)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not state.is_world_process_zero or not logs:
            return
        numeric = {k: v for k, v in logs.items() if isinstance(v, (int, float))
                   and not (self.logged and self.logged(k, state.global_step))}
        if numeric:
            self.run.log_metrics(numeric, step=state.global_step)


def _continued(run: TrackedRun) -> bool:
    try:
        return ATTEMPTS_TAG in run.client.get_run(run.run_id).data.tags
    except Exception:  # the tracking server is away: log as a first attempt does
        return False


class CompletionTableCallback(TrainerCallback):
    """Every N steps, log the newest table of sample completions (prompt, completion, each
    reward, advantage) that TRL's GRPOTrainer wrote to <output_dir>/completions/, as an MLflow
    table artifact `completions/step_XXXXX.json`."""

    def __init__(self, every_steps: int, run: TrackedRun | None = None):
        self.every_steps = every_steps
        self.run = run if run is not None else attached_run()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not state.is_world_process_zero or self.every_steps <= 0:
            return
        if state.global_step % self.every_steps:
            return
        from pathlib import Path

        tables = sorted((Path(args.output_dir) / "completions").glob("completions_*.parquet"))
        if tables:
            import pandas as pd

            frame = pd.read_parquet(tables[-1])
            frame["prompt"] = frame["prompt"].astype(str)
            frame["completion"] = frame["completion"].astype(str)
            # The parquet it came from stays in the output dir: the table is only a view.
            self.run.log_table(frame, f"completions/step_{state.global_step:05d}.json")
