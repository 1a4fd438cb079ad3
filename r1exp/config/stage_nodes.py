"""The knob nodes a run keeps: those its stage reads, and only the benchmarks it names.

A stage composes its own knob groups (conf/stage/<name>.yaml), but a recipe may still set
knobs of another stage: the default recipe, quickstart, sets grpo's for every `r1exp stage=...`,
and distill-then-sft sets sft's for its generate step. The benchmark catalogue holds every
spec. The resolved config (resolved.yaml, the resume fingerprint, MLflow params) keeps only
what the stage computes with, so a knob of another stage or an unnamed benchmark changes
nothing about a run. What a stage reads is what its module declares: CONFIG_SECTIONS, and
eval's and inference's nodes plus the named benchmark specs where BENCHMARKS_KEY names any.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from r1exp.config.stage import Stage
from r1exp.errors import ConfigError

# Top-level nodes that belong to a stage; the rest (model, dataset, hardware, paths, ...)
# shape every run.
KNOB_NODES = ("train", "sft", "grpo", "reward", "eval", "benchmark", "generate", "inference")
# What evaluating reads: eval's knobs, the named benchmark specs, and the engine it generates with.
EVALUATION_NODES = ("eval", "benchmark", "inference")


def nodes_read(stage: Stage | None, config: Any = None) -> set[str]:
    """The knob nodes `stage` reads. Without `config`, those it may read: eval's node and the
    benchmark specs count whenever the stage can evaluate; with it, only when it names a
    benchmark. A stage r1exp does not know (None) may read any of them."""
    if stage is None:
        return set(KNOB_NODES)
    read = set(stage.config_sections)
    if stage.benchmarks_key and (config is None or _select(config, stage.benchmarks_key)):
        read |= set(EVALUATION_NODES)
    return read & set(KNOB_NODES)


def stage_config(config: dict[str, Any], stage: Stage | None) -> dict[str, Any]:
    """`config` (resolved, plain containers) without the knob nodes its stage does not read,
    its benchmark catalogue cut to the benchmarks the stage names. Raises ConfigError for a
    named benchmark the catalogue lacks (the message lists the catalogue, which is cut after)."""
    read = nodes_read(stage, config)
    kept = {key: value for key, value in config.items()
            if key not in KNOB_NODES or key in read}
    if "benchmark" in kept and stage is not None:
        key = stage.benchmarks_key
        catalogue = kept["benchmark"] or {}
        named = list(_select(config, key) or [])
        unknown = [name for name in named if name not in catalogue]
        if unknown:
            raise ConfigError(
                f"{key} names unknown benchmark {unknown[0]!r}; choose from: "
                f"{', '.join(sorted(catalogue))} (a new one is a file "
                "conf/benchmark/<name>.yaml added to the `benchmark` list of conf/config.yaml)")
        kept["benchmark"] = {name: catalogue[name] for name in named}
    return kept


def foreign_knob_overrides(stage_name: str, overrides: list[str],
                           stages: Mapping[str, Stage]) -> list[str]:
    """One line for each command-line override of a knob node stage `stage_name` does not read
    (`grpo.temperature=0.7` on an SFT run): it would change nothing, or fail to compose.
    `stages`: every registered stage, to name the ones that do read the node."""
    read = nodes_read(stages.get(stage_name))
    problems = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        node = key.split(".", 1)[0].split("@", 1)[0]
        if node in KNOB_NODES and node not in read:
            owners = [name for name, other in stages.items() if node in nodes_read(other)]
            problems.append(
                f"{override}: stage={stage_name} does not read the `{node}` knobs (they belong "
                f"to stage {' and '.join(owners)}), so a run of it leaves them out; drop the "
                f"override, or pick stage={owners[0]}" if owners else
                f"{override}: stage={stage_name} does not read the `{node}` knobs; drop the "
                "override")
    return problems


def _select(config: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if config is None or key not in config:
            return None
        config = config[key]
    return config
