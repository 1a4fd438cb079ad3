"""The eval stage. Not implemented yet: it lands with the issue "Eval stage: R1 benchmarks"."""

from __future__ import annotations

from r1exp.errors import ConfigError


def check(cfg) -> None:
    raise ConfigError("stage=eval is not implemented yet (it lands with the issue \"Eval stage: R1 benchmarks\")")


def run(cfg) -> dict[str, float]:
    check(cfg)
    return {}
