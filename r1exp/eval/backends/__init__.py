"""Backends of the eval stage, by name (`eval.backend`).

Generators (transformers, vllm) only turn token prompts into completions; the runner renders
prompts, scores with r1exp.rewards and writes the outputs, so both score identically. Peers
(lighteval) generate and score with another tool, from the problems the runner loaded, and hand
back per-sample records that the runner writes and summarizes as it does its own.
"""

from __future__ import annotations

import importlib

# name -> "module:attribute", imported on use (torch / vllm stay out of the controller).
GENERATORS = {
    "transformers": "r1exp.eval.backends.hf:TransformersGenerator",
    "vllm": "r1exp.eval.backends.vllm:VLLMGenerator",
}
# name -> module with `check(cfg, benchmarks)` and
# `evaluate(cfg, model_cfg, problems: {benchmark: [Problem]}, out_dir) -> base.PeerReport`.
PEERS = {
    "lighteval": "r1exp.eval.backends.lighteval",
}
BACKENDS = (*GENERATORS, *PEERS)


def peer(name: str):
    return importlib.import_module(PEERS[name])


def load(target: str):
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)
