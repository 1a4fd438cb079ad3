"""Validate a composed config before anything heavy happens: the checks no stage owns.

The checks a stage owns (its knobs, its dataset and rewards) are its `check`; r1exp.stages
runs both (`r1exp.stages.validate`). Every failure is one `ConfigError` naming the key, the bad
value and what is allowed, so a wrong command costs seconds. Checks here are cheap: no torch,
no model, no network.
"""

from __future__ import annotations

from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1exp.config.ranges import check_ranges
from r1exp.config.schema import RunConfig
from r1exp.config.stage import Stage
from r1exp.config.stage_nodes import stage_config
from r1exp.errors import ConfigError

# inference.engine and the profiles' default of it (r1exp.inference's registry, one layer up,
# registers these; tests/test_config.py keeps the two the same).
ENGINES = ("transformers", "vllm", "openai")
CHOICES: dict[str, tuple[str, ...]] = {
    "hardware.accelerator": ("cpu", "cuda"),
    "hardware.dtype": ("fp32", "bf16", "fp16"),
    "hardware.attn_implementation": ("auto", "sdpa", "eager", "flash_attention_2",
                                     "flex_attention"),
    "hardware.distributed": ("none", "ddp", "zero2", "zero3"),
    "hardware.inference_engine": ENGINES,
    "hardware.perf.packed_attention": ("flex_attention", "sdpa"),  # r1exp/perf/fast_paths.py
    "hardware.vllm.mode": ("colocate", "server"),
    "dataset.source": ("generated", "hub", "local"),
    "resume": ("auto", "never"),
    "eval.evaluator": ("r1exp", "lighteval"),
    "generate.keep": ("all", "correct", "first_correct"),
    "logger.name": ("mlflow", "none"),
    "inference.engine": ENGINES,
}
HARDWARE_FEATURES = ("flash_attn", "vllm", "deepspeed")


def check_config(cfg: DictConfig, stage: Stage | None) -> DictConfig:
    """Keep what `stage` reads (r1exp.config.stage_nodes), type-check it against the schema
    and run the stage-independent cross-field checks; return it typed."""
    typed = _check_schema(OmegaConf.create(stage_config(OmegaConf.to_container(cfg), stage)))
    check_ranges(typed)
    for key, allowed in CHOICES.items():
        if typed[key.split(".")[0]] is None:  # a knob node this run's stage does not read
            continue
        check_choice(key, OmegaConf.select(typed, key), allowed)
    for feature in typed.hardware.lacks:
        check_choice("hardware.lacks[]", feature, HARDWARE_FEATURES)
    _check_hardware(typed)
    _check_eval_sampling(typed)
    return typed


def _check_schema(cfg: DictConfig) -> DictConfig:
    try:
        return OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        reason = str(err).splitlines()[0]
        raise ConfigError(f"invalid config at '{key}': {reason}") from None


def check_choice(key: str, value: Any, allowed: Iterable[str]) -> None:
    """ConfigError naming `key`, its value and what is allowed, unless `value` is allowed."""
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _check_hardware(cfg: DictConfig) -> None:
    hw = cfg.hardware
    if hw.accelerator == "cpu" and hw.dtype != "fp32":
        raise ConfigError(
            f"hardware.dtype={hw.dtype} on the cpu profile '{hw.name}': CPUs train in fp32 "
            "here (bf16/fp16 matmuls are emulated and slow); use hardware.dtype=fp32"
        )
    if hw.attn_implementation == "flash_attention_2":
        if "flash_attn" in hw.lacks:
            raise ConfigError(
                f"hardware.attn_implementation=flash_attention_2 but hardware '{hw.name}' has "
                "no flash-attn build; use hardware.attn_implementation=sdpa"
            )
        if hw.dtype != "bf16":
            raise ConfigError(
                f"hardware.attn_implementation=flash_attention_2 with hardware.dtype={hw.dtype}: "
                "r1exp runs flash-attn in bf16 only (fp16/fp32 profiles are for cards it does "
                "not support); use hardware.dtype=bf16 or hardware.attn_implementation=sdpa"
            )
    if hw.distributed in ("zero2", "zero3") and "deepspeed" in hw.lacks:
        raise ConfigError(
            f"hardware.distributed={hw.distributed} needs DeepSpeed, which hardware '{hw.name}' "
            "lacks; use hardware.distributed=ddp"
        )
    if hw.accelerator != "cuda":  # the speed levers of r1exp/perf that need one
        for key in ("liger_kernel", "compiled_generation", "fused_optimizer"):
            if hw.perf[key]:
                raise ConfigError(
                    f"hardware.perf.{key}=true on the {hw.accelerator} profile '{hw.name}': it "
                    f"needs a CUDA device; use hardware.perf.{key}=false"
                )
    if cfg.inference is not None and cfg.inference.engine == "vllm" and "vllm" in hw.lacks:
        raise ConfigError(
            f"inference.engine=vllm but hardware '{hw.name}' has no vLLM build; "
            "use inference.engine=transformers"
        )


def _check_eval_sampling(cfg: DictConfig) -> None:
    # The eval knobs serve the eval stage and train.benchmarks alike. transformers samples
    # only at a temperature > 0 ("strictly positive float"); vLLM reads 0 as greedy.
    e = cfg.eval
    if e is None:  # the stage evaluates nothing
        return
    if (e.evaluator == "r1exp" and cfg.inference.engine == "transformers"
            and e.temperature == 0 and not e.greedy):
        raise ConfigError(
            "eval.temperature=0 with eval.greedy=false: the transformers engine samples only "
            "at a temperature > 0; use eval.greedy=true for greedy decoding"
        )
