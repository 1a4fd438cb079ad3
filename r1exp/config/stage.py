"""What the layers below the stages need to know about a stage: the `Stage` protocol.

A stage module (r1exp/stages/<name>.py) states these facts about itself and registers them
(r1exp.stages.registry). Plan, memory estimate and validation read them from the `Stage`
they are given, so none of them names a stage, and a new stage touches none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from r1exp.rundir import RunDir


@dataclass(frozen=True)
class VLLMUse:
    """Where a run generates with vLLM, and the share of each GPU vLLM reserves there."""

    server: bool                  # on GPUs of its own (the controller starts it), else in-worker
    memory_key: str               # the knob that sets the share
    gpu_memory_utilization: float
    devices: int                  # GPUs one engine spans (tensor parallelism, server devices)
    where: str                    # which GPUs, as the dry run says it


def no_check(cfg: Any) -> None:
    """A stage whose knobs the schema's types and ranges cover."""


def no_batch_check(cfg: Any, global_batch: int) -> None:
    """A stage that takes any global batch the world size divides."""


def no_vllm(cfg: Any) -> VLLMUse | None:
    return None


def no_memory_fixes(cfg: Any, work: Any) -> list:
    return []


def never_packed(cfg: Any) -> int:
    return 0


def has_checkpoint(cfg: Any, run_dir: Path) -> bool:
    """A trainer's progress: a complete checkpoint in the run dir."""
    return RunDir(run_dir).last_complete_checkpoint() is not None


@dataclass(frozen=True)
class Stage:
    """One stage: how to run it, and what plan, memory, preflight and tracking read about it."""

    name: str
    run: Callable[[Any], dict[str, float]]
    # The config sections it reads: its MLflow params, the recipe notice, the run name.
    config_sections: tuple[str, ...]
    # The key listing the benchmarks it evaluates (their specs and eval.* are read too).
    benchmarks_key: str | None = None
    # Cheap validation before anything heavy (raise r1exp.errors.ConfigError).
    check: Callable[[Any], None] = no_check
    # A Trainer run: the global batch is split into accumulation steps and its memory checked.
    training: bool = False
    # Training stages: what the global batch must satisfy beyond the world size dividing it.
    check_batch: Callable[[Any, int], None] = no_batch_check
    # The profile's speed levers (hardware.perf, r1exp/perf) that apply to this stage.
    perf_levers: tuple[str, ...] = ()
    # Tokens of one batch packed TRL's padding-free way (documents flattened into one row);
    # 0: batches are not packed into one row.
    packed_row_tokens: Callable[[Any], int] = never_packed
    # Whether and where the run generates with vLLM (None: it does not).
    vllm: Callable[[Any], VLLMUse | None] = no_vllm
    # Training stages: the per-process Workload of r1exp.config.memory, from the config and the
    # stage-independent terms (`common`), accumulation and the assumed prompt length.
    memory: Callable[..., Any] | None = None
    # The stage's own knobs that lower its memory: [(override, smaller Workload)].
    memory_fixes: Callable[[Any, Any], list] = no_memory_fixes
    # Whether an unfinished run dir holds progress worth continuing from.
    resumable: Callable[[Any, Path], bool] = has_checkpoint

    def uses_vllm_server(self, cfg: Any) -> bool:
        use = self.vllm(cfg)
        return use is not None and use.server

    def hosts_vllm_engine(self, cfg: Any) -> bool:
        """Whether the stage's worker runs a vLLM engine in its own process."""
        use = self.vllm(cfg)
        return use is not None and not use.server
