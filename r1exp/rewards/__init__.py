"""Rewards for GRPO and the math scorer shared with evaluation.

Light to import (no math-verify, sympy, torch or transformers): scoring runs in worker processes
started on first use, and RewardHealthCallback imports transformers only when asked for.
"""

from __future__ import annotations

# Importing the reward modules registers them.
from r1exp.rewards import accuracy, countdown, format, length, repetition  # noqa: F401
from r1exp.rewards.health import health_metrics
from r1exp.rewards.math_score import (
    DEFAULT_TIMEOUT_S,
    GoldParseError,
    MathScore,
    grade_math,
    score_math,
    start_scoring_workers,
)
from r1exp.rewards.registry import (
    build_reward_functions,
    register,
    reward_names,
    validate_reward_config,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GoldParseError",
    "MathScore",
    "RewardHealthCallback",
    "build_reward_functions",
    "grade_math",
    "health_metrics",
    "register",
    "reward_names",
    "score_math",
    "start_scoring_workers",
    "validate_reward_config",
]


def __getattr__(name: str):
    if name == "RewardHealthCallback":
        from r1exp.rewards.callback import RewardHealthCallback

        return RewardHealthCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
