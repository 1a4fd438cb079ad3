"""Worker entrypoint: `python -m r1exp.launch.worker <run_dir>/resolved.yaml`.

Started by the controller (directly, or under `accelerate launch` once per rank). It never
imports Hydra: it reads the fully resolved config, reattaches to the controller's MLflow run
through MLFLOW_RUN_ID, runs the stage and, on rank 0, writes `metrics.json` for the controller.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

METRICS_FILE = "metrics.json"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m r1exp.launch.worker <run_dir>/resolved.yaml", file=sys.stderr)
        return 2
    cfg = OmegaConf.load(argv[0])
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[%(asctime)s][rank{rank}][%(name)s][%(levelname)s] %(message)s",
        datefmt="%H:%M:%S",
    )
    from r1exp.stages import run_stage

    metrics = run_stage(cfg)
    if rank == 0:
        out = Path(cfg.paths.output_dir) / METRICS_FILE
        out.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
