"""Controller side: create the MLflow run, log what defines it, and set its final status.

The client API is used instead of mlflow's global active-run state, because the run is
written by two processes (controller and worker) and must end exactly once, here.
A tracking server that goes away does not end the run: metrics wait in the run dir
(r1exp.tracking.pending), the controller's own calls wait a bounded time (patience).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from r1exp.config.stage import Stage
from r1exp.rundir import RunDir
from r1exp.tracking.params import config_params, metric_name, used_choices, used_config
from r1exp.tracking.patience import Patience
from r1exp.tracking.pending import (
    MAX_BATCH, PendingMetrics, describe, unreachable,
)
from r1exp.tracking.run_name import run_name
from r1exp.tracking.source import source_tags

log = logging.getLogger(__name__)
RUN_ID_ENV = "MLFLOW_RUN_ID"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
RUN_DIR_ENV = "R1EXP_RUN_DIR"  # where a worker keeps the metrics the server has not taken
# MLflow retries a request ~4 minutes by default, holding up whatever logged it; r1exp rides
# out longer outages itself (pending metrics, Patience), so MLflow's own retries only need to
# cover a blip. A value the user set wins.
MLFLOW_RETRY_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# Set by a sweep job (r1exp.tracking.sweep): the overrides that tell it from the other jobs.
SWEEP_VARIED_TAG = "sweep.varied"


def absolute_tracking_uri(uri: str) -> str:
    """Pin a relative sqlite path to an absolute one, so workers in any cwd agree."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(uri[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


def tracking_uri(cfg) -> str:
    """Where a run of `cfg` logs: MLFLOW_TRACKING_URI (set for workers and sweep jobs), else
    logger.tracking_uri, as an absolute URI."""
    return absolute_tracking_uri(os.environ.get(TRACKING_URI_ENV) or cfg.logger.tracking_uri)


def _artifact_root(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///"):]).parent / "mlartifacts")
    return None


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    for key, value in MLFLOW_RETRY_ENV.items():  # read by MLflow at each request
        os.environ.setdefault(key, value)

    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = _artifact_root(uri)
    try:
        return client.create_experiment(name, artifact_location=root and Path(root).as_uri())
    except Exception:  # a parallel sweep job created it first
        return client.get_experiment_by_name(name).experiment_id


class TrackedRun:
    """One MLflow run; `None`-safe so `logger=none` needs no special casing by callers.

    With a `run_dir`, metrics the server does not take wait in it (r1exp.tracking.pending)
    and `finish` sends them.
    """

    def __init__(self, client, run_id: str, uri: str, run_dir: Path | None = None,
                 patience: Patience | None = None):
        self.client, self.run_id, self.tracking_uri = client, run_id, uri
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.pending = (PendingMetrics(RunDir(self.run_dir).pending_metrics_file, uri)
                        if self.run_dir is not None else None)
        self.patience = patience or Patience(uri)

    def env(self) -> dict[str, str]:
        """What a worker needs to reattach to this run."""
        env = {RUN_ID_ENV: self.run_id, TRACKING_URI_ENV: self.tracking_uri}
        if self.run_dir is not None:
            env[RUN_DIR_ENV] = str(self.run_dir)
        return env

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Never waits for an absent server when the run has a dir to keep them in."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(metric_name(k), float(v), now, step or 0)
            for k, v in metrics.items() if isinstance(v, (int, float))
        ]
        if self.pending is not None:
            self.pending.log(self._send, self.run_id, batch)
        else:
            self.patience.call(f"log {len(batch)} metric(s)",
                               lambda: self._send(self.run_id, batch))

    def _send(self, run_id: str, metrics: list) -> None:
        for start in range(0, len(metrics), MAX_BATCH):
            self.client.log_batch(run_id, metrics=metrics[start:start + MAX_BATCH])

    def log_table(self, frame, artifact_file: str) -> None:
        """A view for the UI (its data stays in the run dir): skipped while the server is
        away, never waited for."""
        if self.pending is not None and self.pending.away():
            return
        try:
            self.client.log_table(self.run_id, data=frame, artifact_file=artifact_file)
        except Exception as err:
            if not unreachable(err):
                raise
            log.warning("MLflow tracking server unreachable: %s not logged (%s)",
                        artifact_file, describe(err))
            if self.pending is not None:
                self.pending.went_away(err)

    def log_artifacts(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.patience.call(f"upload {path.name}/", lambda: self.client.log_artifacts(
                self.run_id, str(path), artifact_path))
        elif path.is_file():
            self.patience.call(f"upload {path.name}", lambda: self.client.log_artifact(
                self.run_id, str(path), artifact_path))

    def set_tag(self, key: str, value: str) -> None:
        self.patience.call(f"set tag {key}", lambda: self.client.set_tag(self.run_id, key, value))

    def finish(self, status: str) -> None:
        """Send the metrics still waiting, then the final status."""
        if self.pending is not None:
            self.patience.call("send the metrics kept while it was away",
                               lambda: self.pending.deliver(self._send))
            left = self.pending.count()
            if left:
                log.warning("%d batch(es) of metrics never reached MLflow; they stay in %s and "
                            "`python -m r1exp.tracking.pending %s` sends them", left,
                            self.pending.path, self.run_dir)
        done, _ = self.patience.call(f"mark the run {status}", lambda: self.client.set_terminated(
            self.run_id, status=status))
        if not done:
            log.warning("MLflow run %s stays RUNNING in %s; the run ended %s (its status file "
                        "says so)", self.run_id, self.tracking_uri, status)


def open_run(cfg, resolved: dict[str, Any], run_dir: Path, tags: dict[str, str],
             stage: Stage | None, parent_run_id: str | None = None) -> TrackedRun | None:
    """The run's MLflow run; None (and a warning) when logging is off or the server stays
    away longer than the controller waits: the run goes on, recorded in its run dir only.
    `stage`: the config's stage, which decides what of it is logged (None: not a stage)."""
    if cfg.logger.name == "none":
        return None
    from mlflow.entities import Param

    uri = tracking_uri(cfg)
    client, patience = client_for(uri), Patience(uri)
    used = used_config(resolved, stage)
    all_tags = {**used_choices(tags, used), **source_tags(), "run_dir": str(run_dir)}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    varied = tags.get(SWEEP_VARIED_TAG)
    name = run_name(resolved, stage, [varied] if varied else [])
    opened, run_id = patience.call("open the run", lambda: client.create_run(
        experiment_id(client, cfg.logger.experiment_name, uri), run_name=name,
        tags=all_tags).info.run_id)
    if not opened:
        log.warning("this run is not tracked in MLflow; its record is %s", run_dir)
        return None
    RunDir(run_dir).mlflow_run_id_file.write_text(run_id)
    params = [Param(k, v) for k, v in config_params(used).items()]
    for start in range(0, len(params), 100):  # MLflow caps a batch at 100 params
        patience.call("log the run's params", lambda: client.log_batch(
            run_id, params=params[start:start + 100]))
    log.info("MLflow run %s in %s", run_id, uri)
    return TrackedRun(client, run_id, uri, run_dir, patience)
