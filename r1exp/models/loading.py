"""Load a model and tokenizer from a model config: hub id, local dir, or embedded GGUF."""

from __future__ import annotations

import logging
from pathlib import Path

from r1exp.errors import ConfigError
from r1exp.models.gguf import ensure_converted

log = logging.getLogger(__name__)

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_model_dir(model_cfg, cache_dir: str | Path) -> str:
    """A path or hub id that `from_pretrained` accepts; converts the GGUF model if needed."""
    if model_cfg.path:
        return str(model_cfg.path)
    if model_cfg.gguf is None:
        raise ConfigError(f"model '{model_cfg.name}' sets neither model.path nor model.gguf")
    g = model_cfg.gguf
    return str(ensure_converted(cache_dir, g.package, g.version, g.file))


def resolve_attn_implementation(requested: str, dtype: str, accelerator: str) -> str:
    """`auto` becomes flash_attention_2 only where flash-attn is installed and can run."""
    if requested != "auto":
        return requested
    if accelerator != "cuda" or dtype != "bf16":
        return "sdpa"
    import importlib.util

    import torch

    if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
        return "sdpa"
    major, _ = torch.cuda.get_device_capability()
    return "flash_attention_2" if major >= 8 else "sdpa"


def load_tokenizer(model_cfg, cache_dir: str | Path):
    from transformers import AutoTokenizer

    source = resolve_model_dir(model_cfg, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(
        source, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
    )
    if model_cfg.chat_template:
        tokenizer.chat_template = model_cfg.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_cfg, hardware_cfg, cache_dir: str | Path, *, training: bool = True):
    import torch
    from transformers import AutoModelForCausalLM

    source = resolve_model_dir(model_cfg, cache_dir)
    attn = resolve_attn_implementation(
        hardware_cfg.attn_implementation, hardware_cfg.dtype, hardware_cfg.accelerator
    )
    model = AutoModelForCausalLM.from_pretrained(
        source,
        revision=model_cfg.revision,
        trust_remote_code=model_cfg.trust_remote_code,
        dtype=getattr(torch, TORCH_DTYPES[hardware_cfg.dtype]),
        attn_implementation=attn,
    )
    if training and hardware_cfg.gradient_checkpointing:
        model.config.use_cache = False
    log.info("loaded %s (%s, %s, %.1fM params)", source, hardware_cfg.dtype, attn,
             model.num_parameters() / 1e6)
    return model
