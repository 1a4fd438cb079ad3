"""Turn a resolved config into MLflow params: flat, bounded, and free of secrets."""

from __future__ import annotations

import re
from typing import Any, Iterator

MAX_VALUE_CHARS = 6000  # MLflow's limit on a param value
# Environment variables and anything that looks like a credential never leave the machine.
SECRET_KEY = re.compile(r"(token|secret|password|api_key|apikey|credential)", re.IGNORECASE)
SKIPPED_PREFIXES = ("hardware.env",)


def flatten(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            yield from flatten(value, name)
        else:
            yield name, value


def config_params(config: dict[str, Any]) -> dict[str, str]:
    params = {}
    for name, value in flatten(config):
        if name.startswith(SKIPPED_PREFIXES) or SECRET_KEY.search(name):
            continue
        params[name] = str(value)[:MAX_VALUE_CHARS]
    return params


METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_name(key: str) -> str:
    """MLflow accepts alphanumerics, _ - . / and spaces; TRL emits e.g. 'pass@1'."""
    return METRIC_NAME.sub("_", key.replace("@", "_at_"))
