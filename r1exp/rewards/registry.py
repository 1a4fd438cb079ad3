"""The reward registry: config name -> factory, plus validation and building for the GRPO stage.

A factory takes its parameters as required keyword-only arguments with type annotations. The
annotations are the schema (names and types); conf/reward/<name>.yaml holds the values, so a
default lives in exactly one place. Every reward also takes `weight` (TRL's reward_weights).
A parameter named `*_column` names a dataset column the reward reads (TRL passes each column
as a keyword argument), so the dry run can check the dataset has it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from r1exp.errors import ConfigError

RewardFn = Callable[..., list]  # TRL: f(completions, **dataset_columns) -> list[float | None]


@dataclass(frozen=True)
class RewardSpec:
    name: str
    factory: Callable[..., RewardFn]
    params: dict[str, type]  # every parameter a config entry must set, `weight` included


REWARDS: dict[str, RewardSpec] = {}
COLUMN_SUFFIX = "_column"


def register(name: str):
    """Decorator: make `factory` the reward called `name` in configs and logged metrics."""

    def decorate(factory: Callable[..., RewardFn]) -> Callable[..., RewardFn]:
        hints = typing.get_type_hints(factory)
        params = {"weight": float}
        for param in inspect.signature(factory).parameters.values():
            if param.kind is not param.KEYWORD_ONLY or param.default is not param.empty:
                raise TypeError(
                    f"reward factory {factory.__qualname__}: parameter {param.name} must be "
                    "keyword-only without a default (conf/reward/*.yaml supplies the value)"
                )
            params[param.name] = hints[param.name]
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is registered twice")
        REWARDS[name] = RewardSpec(name, factory, params)
        return factory

    return decorate


def reward_names() -> list[str]:
    return sorted(REWARDS)


def validate_reward_config(reward_cfg: Mapping) -> None:
    """Raise ConfigError for an unknown reward or a missing, unknown or mistyped parameter.

    Cheap (no math-verify, no torch): it runs before any model is loaded.
    """
    _build(reward_cfg)


def dataset_columns(reward_cfg: Mapping) -> dict[str, str]:
    """{'reward.<name>.<param>': column} for every dataset column the selected rewards read."""
    return {f"reward.{name}.{key}": value
            for name, params in _entries(reward_cfg).items()
            for key, value in params.items() if key.endswith(COLUMN_SUFFIX)}


def build_reward_functions(reward_cfg: Mapping) -> tuple[list[RewardFn], list[float]]:
    """The reward functions (each `__name__` is its config name) and their weights, in order."""
    built = _build(reward_cfg)
    return [func for func, _ in built], [weight for _, weight in built]


def _build(reward_cfg: Mapping) -> list[tuple[RewardFn, float]]:
    built = []
    for name, params in _entries(reward_cfg).items():
        params = _checked_params(name, params)
        weight = params.pop("weight")
        func = REWARDS[name].factory(**params)
        func.__name__ = func.__qualname__ = name  # TRL logs rewards/<__name__>/mean
        built.append((func, weight))
    return built


def _entries(reward_cfg: Any) -> dict[str, Any]:
    if type(reward_cfg).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            reward_cfg = OmegaConf.to_container(reward_cfg, resolve=True)
        except OmegaConfBaseException as err:
            raise ConfigError(f"reward: {err}") from None
    if not isinstance(reward_cfg, Mapping):
        raise ConfigError(
            f"reward: expected a mapping of reward name -> parameters, got "
            f"{type(reward_cfg).__name__}; select rewards with reward=[{','.join(reward_names())}]"
        )
    unknown = [name for name in reward_cfg if name not in REWARDS]
    if unknown:
        raise ConfigError(
            f"reward.{unknown[0]}: unknown reward; valid names are: {', '.join(reward_names())}"
        )
    return dict(reward_cfg)


def _checked_params(name: str, params: Any) -> dict[str, Any]:
    spec = REWARDS[name]
    allowed = ", ".join(spec.params)
    if not isinstance(params, Mapping):
        raise ConfigError(
            f"reward.{name}: expected a mapping of parameters ({allowed}), got {params!r}"
        )
    for key in params:
        if key not in spec.params:
            raise ConfigError(f"reward.{name}.{key}: unknown parameter; allowed: {allowed}")
    checked = {}
    for key, expected in spec.params.items():
        if key not in params:
            raise ConfigError(
                f"reward.{name}.{key}: missing; set it in conf/reward/{name}.yaml "
                f"(parameters: {allowed})"
            )
        checked[key] = _typed(f"reward.{name}.{key}", params[key], expected)
    return checked


def _typed(key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # bool is an int subclass: YAML `true` must not pass as a number, nor 1 as a flag.
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {expected.__name__}, got {value!r}")
    return value
