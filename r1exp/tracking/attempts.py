"""A run continued by a later attempt: the same MLflow run, set RUNNING again and tagged, and
no metric point logged twice when steps are redone after a resume."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from r1exp.rundir import RunDir
from r1exp.tracking.mlflow_run import TrackedRun, client_for, tracking_uri
from r1exp.tracking.params import metric_name

log = logging.getLogger(__name__)
ATTEMPTS_TAG = "r1exp.attempts"       # on a run continued by a later attempt (reattach_run)


def reattach_run(cfg: DictConfig, run_dir: Path):
    """The resumed dir's MLflow run, set RUNNING again; None when there is none to continue
    (logging off, or it lives in another tracking store) so the caller opens a new one."""
    run_id = RunDir(run_dir).mlflow_run_id()
    if cfg.logger.name == "none" or run_id is None:
        return None
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
    last_step: dict[str, int] = {}

    def logged(key: str, step: int) -> bool:
        name = metric_name(key)
        if name not in last_step:
            history = run.client.get_metric_history(run.run_id, name)
            last_step[name] = max((m.step for m in history), default=-1)
        return step <= last_step[name]

    return logged
