"""Processes that host a vLLM engine run without PyTorch's expandable segments (measured to slow
vLLM's generation; r1exp/launch/allocator.py), and keep the profile's other allocator settings."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from r1exp.launch.allocator import for_vllm
from r1exp.stages import stage


@pytest.mark.parametrize("conf,expected", [
    ("expandable_segments:True", None),
    ("expandable_segments:True,max_split_size_mb:512", "max_split_size_mb:512"),
    ("max_split_size_mb:512, expandable_segments:True", "max_split_size_mb:512"),
    ("max_split_size_mb:512", "max_split_size_mb:512"),
])
def test_only_expandable_segments_is_left_out(conf, expected):
    env = for_vllm({"PYTORCH_CUDA_ALLOC_CONF": conf, "OTHER": "1"})
    assert env.get("PYTORCH_CUDA_ALLOC_CONF") == expected
    assert env["OTHER"] == "1"


def _cfg(stage, engine="transformers", mode="colocate", evaluator="r1exp"):
    return OmegaConf.create({
        "stage": stage, "eval": {"evaluator": evaluator},
        "inference": {"engine": engine,
                      "vllm": {"gpu_memory_utilization": 0.9, "tensor_parallel_size": 1}},
        "hardware": {"vllm": {"mode": mode, "server_devices": 1, "gpu_memory_utilization": 0.3}}})


@pytest.mark.parametrize("cfg,hosts", [
    (_cfg("grpo", engine="vllm"), True),
    (_cfg("grpo", engine="vllm", mode="server"), False),   # the server is its own process
    (_cfg("grpo"), False),
    (_cfg("eval", engine="vllm"), True),
    (_cfg("eval", engine="vllm", evaluator="lighteval"), False),  # lighteval runs its own
    (_cfg("generate", engine="vllm"), True),
    (_cfg("generate", engine="openai"), False),
    (_cfg("sft", engine="vllm"), False),
])
def test_which_workers_host_an_engine(cfg, hosts):
    assert stage(cfg.stage).hosts_vllm_engine(cfg) is hosts
