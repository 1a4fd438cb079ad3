"""Length-shaped rewards: cosine (length-scaled correctness), length (Kimi 1.5), and
soft_overlong_punishment (DAPO).

Lengths are counted in TOKENS from the `completion_ids` TRL passes, because generation limits are
in tokens; open-r1's cosine and length rewards count characters, which drifts from the budget by
the tokenizer's ~4 characters per token. Characters are used only when no ids are given (a
direct call outside the trainer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from r1exp.errors import ConfigError
from r1exp.rewards.answers import completion_text
from r1exp.rewards.correctness import check_timeout, graded
from r1exp.rewards.math_score import GOLD_UNPARSED
from r1exp.rewards.registry import RewardFn, register


def completion_lengths(completions: Sequence, completion_ids: Sequence | None) -> list[int]:
    if completion_ids is not None:
        return [len(ids) for ids in completion_ids]
    return [len(completion_text(c)) for c in completions]


@register("cosine")
def cosine(
    *,
    min_value_wrong: float,
    max_value_wrong: float,
    min_value_correct: float,
    max_value_correct: float,
    max_len: int,
    gold_column: str,
    timeout_s: float,
) -> RewardFn:
    """Correct answers earn more when short, wrong answers are punished less when long.

    A length of 0 scores max_value_correct / min_value_wrong; max_len and beyond score
    min_value_correct / max_value_wrong (open-r1's names: "min/max" follow the cosine, not the
    value). Progress is clipped at max_len, where open-r1's cosine wraps around and rewards
    overlong answers again.
    """
    if max_len < 1:
        raise ConfigError(f"reward.cosine.max_len: must be >= 1, got {max_len}")
    check_timeout("cosine", timeout_s)

    def reward(completions, completion_ids=None, **columns) -> list[float | None]:
        results = graded("cosine", completions, columns, gold_column, timeout_s)
        rewards = []
        for result, length in zip(results, completion_lengths(completions, completion_ids)):
            if result.status == GOLD_UNPARSED:
                rewards.append(None)
                continue
            if result.score == 1.0:
                at_zero, at_max = max_value_correct, min_value_correct
            else:
                at_zero, at_max = min_value_wrong, max_value_wrong
            progress = min(length / max_len, 1.0)
            rewards.append(at_max + 0.5 * (at_zero - at_max) * (1.0 + math.cos(math.pi * progress)))
        return rewards

    return reward


@register("length")
def length(*, gold_column: str, timeout_s: float) -> RewardFn:
    """Kimi 1.5 length reward: within each prompt's group, lambda = 0.5 - (len-min)/(max-min);
    correct answers get lambda, wrong ones min(0, lambda); 0.0 when all lengths are equal.

    Groups are the completions of the same prompt (Kimi's definition); open-r1 compares the
    lengths across the whole batch, mixing easy and hard prompts.
    """
    check_timeout("length", timeout_s)

    def reward(completions, completion_ids=None, prompts=None, **columns) -> list[float | None]:
        results = graded("length", completions, columns, gold_column, timeout_s)
        lengths = completion_lengths(completions, completion_ids)
        keys = [repr(p) for p in prompts] if prompts is not None else [""] * len(completions)
        scored = [i for i, r in enumerate(results) if r.status != GOLD_UNPARSED]
        rewards: list[float | None] = [None] * len(completions)
        for key in dict.fromkeys(keys[i] for i in scored):
            group = [i for i in scored if keys[i] == key]
            shortest, longest = min(lengths[i] for i in group), max(lengths[i] for i in group)
            for i in group:
                if longest == shortest:
                    rewards[i] = 0.0
                    continue
                lam = 0.5 - (lengths[i] - shortest) / (longest - shortest)
                rewards[i] = lam if results[i].score == 1.0 else min(0.0, lam)
        return rewards

    return reward


@register("soft_overlong_punishment")
def soft_overlong_punishment(*, max_completion_len: int, soft_punish_fraction: float) -> RewardFn:
    """DAPO's overlong shaping: 0 up to max-cache tokens, then a linear ramp to -1 at max.

    The ramp ("cache") is a fraction of max_completion_len rather than open-r1's token count,
    so one default suits a 24-token smoke test and a 16k-token run alike (DAPO: 4096 of 20480).
    """
    if max_completion_len < 1 or not 0.0 < soft_punish_fraction <= 1.0:
        raise ConfigError(
            "reward.soft_overlong_punishment: needs max_completion_len >= 1 and "
            f"0 < soft_punish_fraction <= 1, got {max_completion_len} and {soft_punish_fraction}"
        )
    cache = max(1, round(soft_punish_fraction * max_completion_len))
    free = max_completion_len - cache

    def reward(completions, completion_ids=None, **columns) -> list[float]:
        rewards = []
        for n in completion_lengths(completions, completion_ids):
            if n <= free:
                rewards.append(0.0)
            elif n <= max_completion_len:
                rewards.append((free - n) / cache)
            else:
                rewards.append(-1.0)
        return rewards

    return reward
