"""The engine registry: config name -> engine class, in the reward registry's style.

An engine module registers its class with `@register("<name>")`; importing r1exp.inference
imports every engine module. The modules import torch, transformers, vllm and httpx inside
their methods, so registering costs the controller nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1exp.errors import ConfigError
from r1exp.inference.protocol import Engine, Sampling


@dataclass(frozen=True)
class EngineSpec:
    name: str
    cls: type  # cls.from_config(cfg, model_cfg, sampling, *, chat_template) -> Engine


ENGINES: dict[str, EngineSpec] = {}


def register(name: str):
    """Class decorator: make the class the engine called `name` in configs."""

    def decorate(cls: type) -> type:
        if name in ENGINES:
            raise ValueError(f"engine {name!r} is registered twice")
        ENGINES[name] = EngineSpec(name, cls)
        return cls

    return decorate


def engine_names() -> list[str]:
    return sorted(ENGINES)


def engine_spec(name: str, key: str) -> EngineSpec:
    if name not in ENGINES:
        raise ConfigError(f"{key}={name!r}; choose one of: {', '.join(engine_names())}")
    return ENGINES[name]


def build_engine(name: str, cfg, model_cfg, sampling: Sampling, *, key: str,
                 chat_template: bool = True) -> Engine:
    """The engine `name` (chosen at config key `key`) for `model_cfg`; nothing is loaded yet."""
    return engine_spec(name, key).cls.from_config(cfg, model_cfg, sampling,
                                                  chat_template=chat_template)
