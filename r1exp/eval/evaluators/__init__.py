"""Evaluators other than r1exp's own pipeline, by name (`eval.evaluator`).

r1exp's pipeline (`eval.evaluator=r1exp`, r1exp.eval.runner) generates through the inference
engine (`inference.engine`) and scores with
r1exp.rewards. An evaluator here is a whole other pipeline: it generates and scores with its
own tool, from the problems the runner loaded, and hands back per-sample records that the
runner writes and summarizes as it does its own. Each is a module with `check(cfg, benchmarks)`
and `evaluate(cfg, model_cfg, problems: {benchmark: [Problem]}, out_dir) -> Report`, imported on
use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

EVALUATORS = {
    "lighteval": "r1exp.eval.evaluators.lighteval",
}


def evaluator(name: str):
    return importlib.import_module(EVALUATORS[name])


@dataclass(frozen=True)
class Report:
    """What an evaluator hands back: r1exp sample records per benchmark."""

    model: str  # the model dir or hub id evaluated
    seconds: float  # the evaluator's whole run, every benchmark together
    records: dict[str, list[dict]]  # benchmark -> records with problem_id, sample, completion,
    # extracted, gold, score, status, new_tokens, stopped (as the runner's _record)
    extra: dict[str, dict]  # benchmark -> the evaluator's own numbers, added to its results
    about: dict  # the evaluator's name, version and settings, for results.json
