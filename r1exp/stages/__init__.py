"""The stages: `stage=<name>` picks one registered `Stage` (r1exp.config.stage).

A stage is one module here that ends with `register(Stage(...))`: how it runs, and what plan,
memory, preflight and tracking read about it. Importing this package imports every stage
module, and so registers them; stage modules import torch/trl inside functions so that
`--cfg job`, `dry_run` and submitit pickling stay fast. CONTRIBUTING.md: adding a stage.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from r1exp.config.plan import Plan
from r1exp.config.plan import make_plan as plan_for_stage
from r1exp.config.validate import check_config
from r1exp.data.synthetic import generate_splits
from r1exp.rundir import RESOLVED_CONFIG
from r1exp.stages import eval, generate, grpo, sft  # noqa: F401  (importing registers them)
from r1exp.stages.registry import STAGES, register, stage, stage_names

__all__ = ["STAGES", "make_plan", "register", "run_stage", "stage", "stage_names", "validate"]


def validate(cfg: DictConfig) -> DictConfig:
    """Every check of a composed config: the schema and the stage-independent cross-field
    checks (r1exp.config.validate), a generated dataset, then the stage's own; return it
    typed. Cheap: no torch, no model, no network."""
    typed = check_config(cfg, STAGES.get(str(cfg.stage)))
    if typed.dataset.source == "generated":
        # Generating is milliseconds of pure Python, so a bad generator config fails here,
        # not minutes later in the worker.
        generate_splits(OmegaConf.to_container(typed.dataset.generator), typed.seed)
    stage(typed.stage).check(typed)
    return typed


def make_plan(cfg: DictConfig, resolved_yaml: str = f"<run_dir>/{RESOLVED_CONFIG}") -> Plan:
    """The plan of a validated config (r1exp.config.plan) for the stage it names."""
    return plan_for_stage(cfg, stage(cfg.stage), resolved_yaml)


def run_stage(cfg: DictConfig) -> dict[str, float]:
    return stage(cfg.stage).run(cfg)
