"""Evaluators other than r1exp's own pipeline, by name (`eval.evaluator`).

r1exp's pipeline (`eval.evaluator=r1exp`, r1exp.eval.runner) generates through the inference
engine (`inference.engine`) and scores with
r1exp.rewards. An evaluator here is a whole other pipeline: it generates and scores with its
own tool, from the problems the runner loaded, and hands back per-sample records that the
runner writes and summarizes as it does its own. Each is a module that ends with
`EVALUATOR = register(Evaluator(name, check, evaluate))`, the way a stage registers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Report:
    """What an evaluator hands back: r1exp sample records per benchmark."""

    model: str  # the model dir or hub id evaluated
    seconds: float  # the evaluator's whole run, every benchmark together
    records: dict[str, list[dict]]  # benchmark -> records with problem_id, sample, completion,
    # extracted, gold, score, status, new_tokens, stopped (as the runner's _record)
    extra: dict[str, dict]  # benchmark -> the evaluator's own numbers, added to its results
    about: dict  # the evaluator's name, version and settings, for results.json


@dataclass(frozen=True)
class Evaluator:
    name: str
    # Cheap config checks for evaluating `benchmarks`, before any model loads.
    check: Callable[[Any, list[str]], None]
    # Generate and score `problems` ({benchmark: [Problem]}) into out_dir.
    evaluate: Callable[[Any, Any, dict, Any], Report]


EVALUATORS: dict[str, Evaluator] = {}


def register(spec: Evaluator) -> Evaluator:
    if spec.name in EVALUATORS:
        raise ValueError(f"evaluator {spec.name!r} is registered twice")
    EVALUATORS[spec.name] = spec
    return spec


def evaluator(name: str) -> Evaluator:
    return EVALUATORS[name]


# Importing registers each evaluator; they import their heavy tools inside functions.
from r1exp.eval.evaluators import lighteval  # noqa: E402, F401
