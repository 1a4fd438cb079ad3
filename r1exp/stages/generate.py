"""The generate stage. Not implemented yet: it lands with the issue "Generate stage: distillation data"."""

from __future__ import annotations

from r1exp.errors import ConfigError


def check(cfg) -> None:
    raise ConfigError("stage=generate is not implemented yet (it lands with the issue \"Generate stage: distillation data\")")


def run(cfg) -> dict[str, float]:
    check(cfg)
    return {}
