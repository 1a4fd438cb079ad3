"""One job of a sweep (`r1exp -m ...`): the controller's run, recorded for the sweep.

The sweep's own record (parent MLflow run, snapshot, summary) is r1exp/tracking/sweep.py; this
is the job side that runs the controller, so it lives with it, above tracking.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from r1exp.errors import ConfigError
from r1exp.launch.controller import control
from r1exp.rundir import RunDir
from r1exp.tracking.mlflow_run import SWEEP_VARIED_TAG
from r1exp.tracking.sweep import (
    FAILED, FINISHED, SNAPSHOT_DIR, compose_from_snapshot, first_line, is_tracking_node,
    job_varies, read_sweep_record, record_failed_job, run_dir_of,
)

log = logging.getLogger(__name__)


def run_sweep_job(cfg: DictConfig, tags: dict[str, str]) -> dict[str, Any]:
    """Run one job of a sweep; a failure is recorded in the job dir and MLflow, not raised."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(hydra_cfg.sweep.dir).resolve()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    record = read_sweep_record(sweep_dir)
    if record is None:  # SweepTracker is not registered: keep Hydra's own failure handling
        return control(cfg, tags)
    if record["tracking_uri"]:
        # A job on another node or in another cwd must log where the parent run lives.
        os.environ["MLFLOW_TRACKING_URI"] = record["tracking_uri"]
    overrides = list(hydra_cfg.overrides.task)
    tags = {**tags, "sweep.dir": str(sweep_dir), "sweep.job": str(hydra_cfg.job.num),
            SWEEP_VARIED_TAG: job_varies(overrides, record, hydra_cfg.job.num)}
    try:
        if record["snapshot"]:
            cfg = compose_from_snapshot(sweep_dir / SNAPSHOT_DIR / "conf", cfg)
        metrics = control(cfg, tags, parent_run_id=record["parent_run_id"])
    except Exception as err:  # any failure of one job is that job's result
        if isinstance(err, ConfigError):  # the message says it all; a traceback would not
            log.error("sweep job %s: config error: %s", hydra_cfg.job.num, err)
        else:
            log.exception("sweep job %s failed", hydra_cfg.job.num)
        record_failed_job(cfg, job_dir, err, tags, record["parent_run_id"])
        return {"status": FAILED, "error": first_line(err)}
    if not RunDir(run_dir_of(job_dir)).status_file.is_file() and is_tracking_node(cfg):
        RunDir(job_dir).write_status(FINISHED)  # a dry run: nothing failed
    return {"status": FINISHED, "metrics": metrics}
