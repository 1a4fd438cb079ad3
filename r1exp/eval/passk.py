"""pass@k from per-problem sample scores: the unbiased estimator of Chen et al. (2021).

With n samples of a problem of which c are correct, pass@k = 1 - C(n-c, k) / C(n, k): the
chance that k samples drawn without replacement from the n contain a correct one. pass@1 is
then the mean score over samples, which is what R1 reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with n samples, c of them correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): the binomial ratio without huge factorials.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def k_values(num_samples: int, extra: Iterable[int] = ()) -> list[int]:
    """The k values reported: 1, num_samples, and any extra ones (each <= num_samples)."""
    return sorted({1, num_samples, *extra})


def summarize(scores: Sequence[Sequence[float]], ks: Iterable[int]) -> dict[str, float]:
    """Per-benchmark pass@k (mean over problems) and the standard error of pass@1.

    `scores[i]` holds problem i's sample scores (1.0 correct, 0.0 not). A problem counts as
    correct for pass@k when its score is >= 0.5, so partial scores cannot inflate it.
    """
    if not scores:
        raise ValueError("no problems to summarize")
    out: dict[str, float] = {}
    for k in ks:
        values = [pass_at_k(len(s), sum(x >= 0.5 for x in s), k) for s in scores]
        out[f"pass@{k}"] = sum(values) / len(values)
    per_problem = [sum(s) / len(s) for s in scores]
    out["pass@1"] = sum(per_problem) / len(per_problem)  # mean over samples (== unbiased pass@1)
    out["stderr"] = standard_error(per_problem)
    return out


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean over problems (sample std with n-1, / sqrt(n))."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)
