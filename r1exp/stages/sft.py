"""The sft stage. Not implemented yet: it lands with the issue "SFT stage and the data layer"."""

from __future__ import annotations

from r1exp.errors import ConfigError


def check(cfg) -> None:
    raise ConfigError("stage=sft is not implemented yet (it lands with the issue \"SFT stage and the data layer\")")


def run(cfg) -> dict[str, float]:
    check(cfg)
    return {}
