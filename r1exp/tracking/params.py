"""Turn a resolved config into MLflow params: only what the run's stage reads, flat, bounded,
and free of secrets.

A resolved config already holds only the knob nodes its stage reads and the benchmarks it
names (r1exp.config.stage_nodes); of the rest, the params leave out what describes the attempt
rather than the computation (logger, dry_run), keeping the sections the stage module names
(CONFIG_SECTIONS) and, where it evaluates, eval's node and the named benchmark specs.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from r1exp.config.stage import Stage
from r1exp.config.stage_nodes import EVALUATION_NODES, nodes_read, stage_config
from r1exp.errors import ConfigError

MAX_VALUE_CHARS = 6000  # MLflow's limit on a param value
# Environment variables and anything that looks like a credential never leave the machine.
# A "token" key is one only as a whole name (hf_token, access_token): max_new_tokens and
# eos_token are knobs.
SECRET_KEY = re.compile(r"(secret|password|api_key|apikey|credential"
                        r"|(^|\.)((hf|access|auth|api|bearer)_)?token$)", re.IGNORECASE)
SKIPPED_PREFIXES = ("hardware.env",)
# Groups that shape every run although no stage reads a section of their name.
ALWAYS_CHOSEN = ("experiment", "logger")
# Groups whose choice is a catalogue to pick from (every benchmark spec), not what a run uses.
CATALOGUES = ("benchmark",)


def flatten(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            yield from flatten(value, name)
        else:
            yield name, value


def used_config(config: dict[str, Any], stage: Stage | None) -> dict[str, Any]:
    """The part of a resolved config that its stage reads.

    A config whose stage is unknown (None: a failed sweep job's, recorded before validation)
    is kept whole: the params then show what was asked for.
    """
    if stage is None:
        return config
    try:
        kept = stage_config(config, stage)
    except ConfigError:  # a benchmark the catalogue lacks: the params show what was asked for
        kept = config
    evaluates = nodes_read(stage, config) & set(EVALUATION_NODES)
    sections = ("stage", *stage.config_sections, *(n for n in EVALUATION_NODES if n in evaluates))
    return {key: kept[key] for key in dict.fromkeys(sections) if key in kept}


def used_choices(tags: dict[str, str], used: dict[str, Any]) -> dict[str, str]:
    """`tags` without the Hydra group choices (`choice.<group>`) of sections the run does not
    read, e.g. the catalogue's `choice.dataset@benchmark.aime25` on an SFT run, or unset ones."""
    kept = {}
    for key, value in tags.items():
        if key.startswith("choice."):
            group, _, package = key[len("choice."):].partition("@")
            if value == "None" or (group in CATALOGUES and not package):
                continue
            if not _reads(used, package or group.split("/")[0]):
                continue
        kept[key] = value
    return kept


def _reads(used: dict[str, Any], dotted: str) -> bool:
    return dotted in ALWAYS_CHOSEN or select(used, dotted) is not None


def select(config: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(config, dict):
            return None
        config = config.get(key)
    return config


def config_params(config: dict[str, Any]) -> dict[str, str]:
    params = {}
    for name, value in flatten(config):
        if name.startswith(SKIPPED_PREFIXES) or SECRET_KEY.search(name):
            continue
        if value is None or value == [] or value == {}:  # a knob left unset is not a setting
            continue
        params[name] = str(value)[:MAX_VALUE_CHARS]
    return params


METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_name(key: str) -> str:
    """MLflow accepts alphanumerics, _ - . / and spaces; TRL emits e.g. 'pass@1'."""
    return METRIC_NAME.sub("_", key.replace("@", "_at_"))
