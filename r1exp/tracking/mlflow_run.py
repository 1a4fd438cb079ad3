"""Controller side: create the MLflow run, log what defines it, and set its final status.

The client API is used instead of mlflow's global active-run state, because the run is
written by two processes (controller and worker) and must end exactly once, here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from r1exp.tracking.params import config_params, metric_name, used_config
from r1exp.tracking.run_name import run_name
from r1exp.tracking.source import source_tags

log = logging.getLogger(__name__)
RUN_ID_ENV = "MLFLOW_RUN_ID"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
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
    """One MLflow run; `None`-safe so `logger=none` needs no special casing by callers."""

    def __init__(self, client, run_id: str, uri: str):
        self.client, self.run_id, self.tracking_uri = client, run_id, uri

    def env(self) -> dict[str, str]:
        """What a worker needs to reattach to this run."""
        return {RUN_ID_ENV: self.run_id, TRACKING_URI_ENV: self.tracking_uri}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(metric_name(k), float(v), now, step or 0)
            for k, v in metrics.items() if isinstance(v, (int, float))
        ]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start:start + 1000])

    def log_artifacts(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def open_run(cfg, resolved: dict[str, Any], run_dir: Path, tags: dict[str, str],
             parent_run_id: str | None = None) -> TrackedRun | None:
    if cfg.logger.name == "none":
        return None
    from mlflow.entities import Param

    uri = tracking_uri(cfg)
    client = client_for(uri)
    exp_id = experiment_id(client, cfg.logger.experiment_name, uri)
    all_tags = {**tags, **source_tags(), "run_dir": str(run_dir)}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    varied = tags.get(SWEEP_VARIED_TAG)
    run = client.create_run(exp_id, run_name=run_name(resolved, [varied] if varied else []),
                            tags=all_tags)
    params = [Param(k, v) for k, v in config_params(used_config(resolved)).items()]
    for start in range(0, len(params), 100):  # MLflow caps a batch at 100 params
        client.log_batch(run.info.run_id, params=params[start:start + 100])
    (run_dir / "mlflow_run_id").write_text(run.info.run_id)
    log.info("MLflow run %s in %s", run.info.run_id, uri)
    return TrackedRun(client, run.info.run_id, uri)
