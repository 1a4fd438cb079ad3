"""The stage registry: config name (`stage=<name>`) -> `Stage` (r1exp.config.stage).

A stage module registers itself when imported (`register(Stage(...))` at its end), the way a
reward does; r1exp/stages/__init__.py imports every stage module.
"""

from __future__ import annotations

from r1exp.config.stage import Stage
from r1exp.errors import ConfigError

STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Make `stage` the one `stage=<its name>` picks; returns it, for the module's `STAGE`."""
    if stage.training and stage.memory is None:
        # the plan checks a training run's memory before anything loads
        raise TypeError(f"stage {stage.name!r} is a training stage without a memory workload "
                        "(Stage.memory)")
    if stage.name in STAGES:
        raise ValueError(f"stage {stage.name!r} is registered twice")
    STAGES[stage.name] = stage
    return stage


def stage_names() -> list[str]:
    return sorted(STAGES)


def stage(name: str) -> Stage:
    if name not in STAGES:
        raise ConfigError(f"stage={name!r} is not a stage; choose one of: "
                          f"{', '.join(stage_names())}")
    return STAGES[name]
