"""Where an in-process engine runs: its rank, its share of the GPUs, and which weights it loads."""

from __future__ import annotations

import os

from r1exp.errors import ConfigError


def model_label(model_cfg) -> str:
    """Which weights: the hub id / dir, or the embedded GGUF's package and file (not the cache
    dir it was converted into, which differs between machines)."""
    if model_cfg.path:
        path = str(model_cfg.path)
        return f"{path}@{model_cfg.revision}" if model_cfg.revision else path
    g = model_cfg.gguf
    return f"{g.package}=={g.version}:{g.file}"


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes the launcher started for this run (each takes its share of the requests)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def claim_gpus(per_rank: int) -> None:
    """Give this rank GPUs [local_rank*per_rank, (local_rank+1)*per_rank) of those visible,
    through CUDA_VISIBLE_DEVICES before vLLM starts, as vLLM's data-parallel example does."""
    index = local_rank()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        devices = [d for d in visible.split(",") if d]
    else:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())]
    mine = devices[index * per_rank:(index + 1) * per_rank]
    if len(mine) < per_rank:
        raise ConfigError(
            f"inference.vllm.tensor_parallel_size={per_rank} on rank {index} needs GPUs "
            f"{index * per_rank}..{(index + 1) * per_rank - 1}, but only "
            f"{len(devices)} are visible; lower it or run fewer processes "
            "(hardware.devices_per_node)"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
