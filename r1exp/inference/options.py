"""The `inference` node: which engine a stage generates with, and that engine's knobs.

Eval, generate, train.benchmarks and GRPO's rollouts all read `inference.engine`; each stage
passes the engines it can run, so a wrong choice is a ConfigError naming them.
"""

from __future__ import annotations

from collections.abc import Sequence

from r1exp.errors import ConfigError


def check_inference(cfg, allowed: Sequence[str], user: str) -> str:
    """Check the `inference` node for `user` (e.g. "stage=grpo"), which can generate with the
    engines `allowed`; return the engine. A profile without vLLM is r1exp.config.validate's
    check, run before every stage's."""
    inference = cfg.inference
    engine = inference.engine
    if engine not in allowed:
        raise ConfigError(f"inference.engine={engine!r}: {user} generates with one of: "
                          f"{', '.join(allowed)}")
    o = inference.openai
    if engine == "openai":
        if not o.endpoint or not str(o.endpoint).startswith(("http://", "https://")):
            raise ConfigError("inference.engine=openai needs inference.openai.endpoint="
                              "http://host:port/v1 (an OpenAI-compatible server such as "
                              f"`vllm serve`); got {o.endpoint!r}")
        if o.retry_backoff_max_s < o.retry_backoff_s:
            raise ConfigError(f"inference.openai.retry_backoff_max_s={o.retry_backoff_max_s} "
                              f"must be >= inference.openai.retry_backoff_s={o.retry_backoff_s}")
    elif o.endpoint or o.model:
        raise ConfigError("inference.openai.endpoint / inference.openai.model are read by "
                          f"inference.engine=openai only, not {engine}; set them to null or use "
                          "inference.engine=openai")
    return engine
