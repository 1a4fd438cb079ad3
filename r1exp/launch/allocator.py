"""PyTorch's allocator setting for the processes that run vLLM.

The GPU profiles set `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` (hardware.env): it
keeps the fragmentation of training's changing shapes down. A vLLM engine under it generates
slower. Measured on one H200 (docs/performance.md, GRPO with vLLM colocated, 16 completions x 256
tokens): vLLM's generate call took 0.955 s per step with the profile's environment and 0.715 s
without it, against 0.72-0.80 s for plain TRL, which sets no allocator. So every process that
hosts a vLLM engine (a colocated GRPO worker, eval and generate with vLLM, the vLLM server) runs
without expandable segments; the other settings of the variable stay.
"""

from __future__ import annotations

ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"
EXPANDABLE = "expandable_segments"


def for_vllm(env: dict[str, str]) -> dict[str, str]:
    """`env` with expandable segments left out of PyTorch's allocator settings."""
    settings = [s for s in env.get(ALLOC_CONF, "").split(",")
                if s.strip() and not s.strip().startswith(EXPANDABLE)]
    out = {k: v for k, v in env.items() if k != ALLOC_CONF}
    if settings:
        out[ALLOC_CONF] = ",".join(settings)
    return out
