"""The profile's speed levers (`hardware.perf`) as TRL arguments and trainer switches.

A stage lists the levers that apply to it (`Stage.perf_levers`); why each does where it does
(numbers in docs/performance.md):
- `fused_optimizer`: `adamw_torch` runs as `adamw_torch_fused`, one kernel for all tensors
  instead of a chain of foreach ops with temporaries (sft and grpo, CUDA only).
- `liger_kernel`: Liger's Triton RMSNorm / SwiGLU / RoPE (sft). TRL keeps its own chunked
  LM head, so the 152k-vocabulary logits are never materialised either way. Not for grpo,
  whose time goes to generation.
- `packed_attention`: packed sft batches are flattened into one row (TRL's padding-free
  `bfd` packing). sdpa has no variable-length kernel, so with it every token attends over
  the whole flattened batch under a dense mask; `flex_attention` skips the blocks outside
  each document. flash-attn, where installed, does varlen itself and is kept.
- `torch_compile`: compiles the training model (sft). Packed flex batches are padded to one
  static length so it compiles once.
- `compiled_generation`: grpo's transformers generation prefills the prompts, then replays
  CUDA graphs of 16 decode steps each over a static KV cache, reading the training weights
  in place (r1exp/perf/graph_generation.py): no per-token host work, no weight copy. Models
  or generation options that loop does not cover decode with transformers' generate on a
  static cache and a `torch.compile`d step instead (TRL builds its GenerationConfig with
  compilation disabled; the stage switches it back on). Prompts are padded to a multiple of
  64 tokens so the cache length, and so the graphs, change rarely.

Nothing here imports torch at module level: the controller imports this for dry runs.
"""

from __future__ import annotations

import importlib.util
import logging

from r1exp.config.stage import Stage
from r1exp.errors import ConfigError
from r1exp.models.loading import resolve_attn_implementation
from r1exp.perf.generation import reuse_static_cache

log = logging.getLogger(__name__)

# Attention kernels that take the packed row's document boundaries natively (varlen).
VARLEN_ATTENTIONS = ("flash_attention_2", "flash_attention_3")
# Prompts are left-padded to a multiple of this under compiled generation (few cache shapes).
GENERATION_PROMPT_MULTIPLE = 64


def training_attention(cfg, stage: Stage, resolved: str) -> str:
    """The attention the training model loads with, given the profile's resolved choice."""
    if ("packed_attention" in stage.perf_levers and stage.packed_row_tokens(cfg)
            and resolved not in VARLEN_ATTENTIONS):
        return cfg.hardware.perf.packed_attention
    return resolved


def trainer_arguments(cfg, stage: Stage) -> dict:
    """Arguments for TRL's SFTConfig / GRPOConfig that the profile's levers imply.

    They override what `r1exp.stages.training.trainer_kwargs` sets (e.g. `optim`).
    """
    perf, hw, levers = cfg.hardware.perf, cfg.hardware, stage.perf_levers
    args: dict = {}
    if ("fused_optimizer" in levers and perf.fused_optimizer and hw.accelerator == "cuda"
            and cfg.train.optim == "adamw_torch"):
        args["optim"] = "adamw_torch_fused"
    if "liger_kernel" in levers and perf.liger_kernel:
        _require("liger_kernel", "hardware.perf.liger_kernel", "liger-kernel")
        args["use_liger_kernel"] = True
    if "torch_compile" in levers and perf.torch_compile:
        args["torch_compile"] = True
    row = stage.packed_row_tokens(cfg)
    if row and (perf.torch_compile or _uses_flex(cfg, stage)):
        # One static row length: flex attention and torch.compile then compile once.
        args["pad_to_multiple_of"] = row
    if "compiled_generation" in levers and compiles_generation(cfg):
        args["cache_implementation"] = "static"
        args["pad_to_multiple_of"] = GENERATION_PROMPT_MULTIPLE
    return args


def compiles_generation(cfg) -> bool:
    return (bool(cfg.hardware.perf.compiled_generation) and cfg.inference is not None
            and cfg.inference.engine == "transformers")


def accelerate_trainer(trainer, cfg, stage: Stage) -> None:
    """Switches TRL has no argument for; the stage calls this right after building the trainer."""
    if "compiled_generation" in stage.perf_levers and compiles_generation(cfg):
        generation_config = getattr(trainer, "generation_config", None)
        if generation_config is None:  # vLLM generation: nothing to compile here
            return
        from transformers import CompileConfig

        # TRL passes disable_compile=True; with a static cache, generate() then compiles the
        # decode step (prefill stays eager) and replays it as CUDA graphs. Static shapes: the
        # batch and the cache length are fixed per call, so each shape compiles once.
        generation_config.disable_compile = False
        generation_config.compile_config = CompileConfig(dynamic=False, mode="reduce-overhead")
        reuse_static_cache(trainer.model)
        # Imports torch: the controller's dry runs never get here.
        from r1exp.perf.graph_generation import use_graph_generation

        use_graph_generation(trainer.model)  # in front of generate(); falls back to it
        log.info("grpo generation: CUDA graphs of whole decode chunks over a static KV cache")


def _uses_flex(cfg, stage: Stage) -> bool:
    hw = cfg.hardware
    resolved = resolve_attn_implementation(hw.attn_implementation, hw.dtype, hw.accelerator)
    return training_attention(cfg, stage, resolved) == "flex_attention"


def _require(module: str, key: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{key}=true but {package} is not installed; "
                          f"`pip install {package}` or set {key}=false")
