"""Inference: one Engine protocol, one request and one result type, engines registered by name.

- `protocol`:  Request, Result, Sampling and the Engine protocol
- `registry`:  name -> engine class (`@register`), `build_engine`
- `problems`:  Problem, load_problems and the one `prompt_ids` (chat template or raw text)
- `process`:   an in-process engine's rank, GPUs and weights label
- engines:     `transformers` (transformers_engine), `vllm` (vllm_engine, offline LLM.generate),
               `openai` (openai_engine over openai_client: any OpenAI-compatible server)
The eval pipeline (r1exp.eval) and the generate stage use it; GRPO generates through TRL.
`options`: the `inference` node (engine per stage, its knobs) that all of them read.
Nothing here imports torch, transformers, vllm or httpx at import time.
"""

from __future__ import annotations

# Importing the engine modules registers them.
from r1exp.inference import openai_engine, transformers_engine, vllm_engine  # noqa: F401
from r1exp.inference.problems import Problem, load_problems, prompt_ids
from r1exp.inference.protocol import Engine, Request, Result, Sampling
from r1exp.inference.registry import ENGINES, build_engine, engine_names, engine_spec, register

__all__ = ["ENGINES", "Engine", "Problem", "Request", "Result", "Sampling", "build_engine",
           "engine_names", "engine_spec", "load_problems", "prompt_ids", "register"]
