"""accuracy: 1.0 when the final answer equals the gold answer mathematically, else 0.0."""

from __future__ import annotations

from r1exp.rewards.correctness import check_timeout, graded
from r1exp.rewards.math_score import GOLD_UNPARSED
from r1exp.rewards.registry import RewardFn, register


@register("accuracy")
def accuracy(*, gold_column: str, timeout_s: float) -> RewardFn:
    check_timeout("accuracy", timeout_s)

    def reward(completions, **columns) -> list[float | None]:
        results = graded("accuracy", completions, columns, gold_column, timeout_s)
        # None (TRL: NaN, left out of the mean) when the gold cannot be parsed: no signal.
        return [None if r.status == GOLD_UNPARSED else r.score for r in results]

    return reward
