"""Stage registry: a stage is a module `r1exp.stages.<name>` with `run(cfg) -> dict[str, float]`.

A stage module may also define `check(cfg)`, cheap validation run by the controller before any
heavy work (raise `r1exp.errors.ConfigError`). Stage modules import torch/trl inside functions
so that `--cfg job`, `dry_run` and submitit pickling stay fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from r1exp.errors import ConfigError

STAGES = ("sft", "grpo", "eval", "generate")


def stage_module(name: str) -> ModuleType:
    if name not in STAGES:
        raise ConfigError(f"stage={name!r} is not a stage; choose one of: {', '.join(STAGES)}")
    return importlib.import_module(f"{__name__}.{name}")


def run_stage(cfg) -> dict[str, float]:
    return stage_module(cfg.stage).run(cfg)
