"""Correctness for the rewards that need it (accuracy, cosine, length): one math scorer, counted.

Each reward reports its own trouble twice: cumulative counters in health.py
(`rewards/<name>/timeouts_total`, ...) and, inside TRL's GRPOTrainer, per-batch counts through
the `log_metric` hook TRL passes to reward functions (`rewards/<name>/timeouts`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

from r1exp.errors import ConfigError
from r1exp.rewards import health
from r1exp.rewards.math_score import ERROR, GOLD_UNPARSED, TIMEOUT, MathScore, grade_math

# Keyword arguments TRL adds to every reward call that are not dataset columns.
TRL_EXTRA_KWARGS = {"prompts", "completion_ids", "trainer_state", "log_extra", "log_metric"}
TROUBLE = {TIMEOUT: "timeouts", ERROR: "errors", GOLD_UNPARSED: "gold_unparsed"}


def check_timeout(reward: str, timeout_s: float) -> None:
    if not timeout_s > 0:
        raise ConfigError(f"reward.{reward}.timeout_s: must be > 0 seconds, got {timeout_s}")


def graded(
    reward: str, completions: Sequence, columns: dict, gold_column: str, timeout_s: float
) -> list[MathScore]:
    """Grade `completions` against the dataset column `gold_column`, counting trouble."""
    golds = columns.get(gold_column)
    if golds is None:
        present = sorted(key for key in columns if key not in TRL_EXTRA_KWARGS)
        raise ConfigError(
            f"reward.{reward}.gold_column={gold_column!r} is not a column of the dataset; "
            f"columns passed to the reward: {present}"
        )
    results = grade_math(completions, golds, timeout_s=timeout_s)
    log_metric = columns.get("log_metric")
    for status, label in TROUBLE.items():
        n = sum(result.status == status for result in results)
        health.count(f"rewards/{reward}/{label}_total", n)
        if callable(log_metric):
            log_metric(f"rewards/{reward}/{label}", float(n))
    return results
