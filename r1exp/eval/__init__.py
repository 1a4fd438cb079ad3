"""Evaluation: R1 benchmarks with honest pass@1, scored by the same scorer as training.

`evaluate_model(cfg, model_dir, benchmarks)` is the entry point for the eval stage and for the
training stages' `train.benchmarks`. Heavy imports happen inside it.
"""

from __future__ import annotations

from r1exp.eval.benchmarks import check_benchmarks
from r1exp.eval.evaluators import EVALUATORS, evaluator
from r1exp.eval.runner import check_eval_settings, evaluating_engine
from r1exp.eval.runner import evaluate_model as _evaluate


def evaluate_model(cfg, model_dir=None, benchmarks=None, out_dir=None) -> dict[str, float]:
    return _evaluate(cfg, model_dir, benchmarks, out_dir)


def check(cfg, benchmarks, key: str) -> None:
    """Cheap config checks for evaluating `benchmarks` (named at config key `key`)."""
    check_benchmarks(cfg, benchmarks, key)
    check_eval_settings(cfg)
    if cfg.eval.evaluator in EVALUATORS:
        evaluator(cfg.eval.evaluator).check(cfg, benchmarks)


__all__ = ["check", "evaluate_model", "evaluating_engine"]
