"""Run names a person can scan in the MLflow runs table: stage · model · data · hardware.

e.g. `grpo · smollm2-135m · arithmetic · cpu`, `eval · Qwen2.5-1.5B-Instruct · math500+aime24 ·
8xh100`; a sweep job adds what its job varies (`· train.learning_rate=1e-06`), so the children
of one sweep stay apart. The run dir keeps its timestamped name (the `run_dir` tag).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Sequence

from r1exp.config.stage import Stage
from r1exp.tracking.params import select

SEPARATOR = " · "
MAX_CHARS = 250  # MLflow's runs table stores a run name in 250 characters


def run_name(config: dict[str, Any], stage: Stage | None, varied: Sequence[str] = ()) -> str:
    """`config`: a resolved config (plain dict) of `stage` (None: not a stage);
    `varied`: overrides that tell sweep jobs apart."""
    hardware = (config.get("hardware") or {}).get("name")
    parts = [str(config.get("stage") or "run"), model_label(config.get("model") or {}),
             data_label(config, stage), hardware, *varied]
    return SEPARATOR.join(str(p) for p in parts if p)[:MAX_CHARS]


def model_label(model: dict[str, Any]) -> str | None:
    """The profile's name, and where the weights came from when model.path overrides it: a
    hub id's repo name, or a local dir's last two components (`<run dir>/model`)."""
    name, path = model.get("name"), model.get("path")
    if not path:
        return name
    parts = PurePath(str(path)).parts
    tail = parts[-1] if _looks_like_hub_id(str(path)) else "/".join(parts[-2:])
    return f"{name} ({tail})" if name and name.lower() not in tail.lower() else tail


def data_label(config: dict[str, Any], stage: Stage | None) -> str | None:
    """The dataset, or for a stage that reads none (eval) the benchmarks it evaluates."""
    if stage is None:  # a failed sweep job's config, recorded before validation
        return None
    if "dataset" in stage.config_sections:
        return (config.get("dataset") or {}).get("name")
    benchmarks = select(config, stage.benchmarks_key) if stage.benchmarks_key else None
    return "+".join(str(b) for b in benchmarks or [])


def _looks_like_hub_id(path: str) -> bool:
    return not path.startswith(("/", ".", "~")) and path.count("/") == 1
