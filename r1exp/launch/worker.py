"""Worker entrypoint: `python -m r1exp.launch.worker <run_dir>/resolved.yaml`.

Started by the controller (directly, or under `accelerate launch` once per rank). It never
imports Hydra: it reads the fully resolved config, reattaches to the controller's MLflow run
through MLFLOW_RUN_ID, runs the stage and, on rank 0, writes `metrics.json` for the controller.
"""

from __future__ import annotations

import os
import sys

from omegaconf import OmegaConf

from r1exp.errors import ConfigError
from r1exp.launch.worker_logging import configure as configure_logging
from r1exp.rundir import RESOLVED_CONFIG, RunDir, write_json_atomically
from r1exp.stages import run_stage


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m r1exp.launch.worker <run_dir>/{RESOLVED_CONFIG}", file=sys.stderr)
        return 2
    cfg = OmegaConf.load(argv[0])
    rank = int(os.environ.get("RANK", "0"))
    configure_logging(rank)

    try:
        metrics = run_stage(cfg)
    except ConfigError as err:  # found only once the data is open: one line, as the controller
        print(f"r1exp: config error: {err}", file=sys.stderr, flush=True)
        return 2
    if rank == 0:
        write_json_atomically(RunDir(cfg.paths.output_dir).metrics_file, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
