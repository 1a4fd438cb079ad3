"""Worker side of math scoring: math-verify with its own (SIGALRM) timeouts off.

This module runs inside the scoring pool's worker processes; the parent enforces the time limit
by killing a worker that overruns (pool.py). It is imported by the parent only by name.

One extraction config serves the gold, the boxed answers and free text alike: math-verify caches
its compiled LaTeX regexes for ONE config at a time (lru_cache(maxsize=1)), so alternating configs,
as open-r1 does for gold and prediction, recompiles them on every call and costs most of the time.
"""

from __future__ import annotations

import logging
from functools import lru_cache

# Kinds of task the parent sends (math_score.py builds them).
BOXED = "boxed"  # payload: the content of the final \boxed{} or `####` answer
TEXT = "text"  # payload: the tail of a completion with no marked final answer

GOLD_CACHE_SIZE = 8192


def warm_up() -> None:
    """Import math-verify and compile its regexes before the first real task is timed."""
    # math-verify warns that its own timeouts are off; in a killable worker that is the design.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    grade((BOXED, "1", "1"))


def grade(task: tuple[str, str, str]) -> tuple[float, str | None, bool]:
    """(kind, payload, gold answer) -> (score, extracted answer, gold parsed)."""
    from math_verify import parse, verify

    kind, payload, gold = task
    gold_parsed = _parse_gold(gold)
    if gold_parsed is None:
        return 0.0, None, False
    if kind == BOXED:
        predicted = parse(
            f"\\boxed{{{payload}}}", _config(), extraction_mode="first_match", parsing_timeout=None
        )
    else:
        predicted = parse(payload, _config(), parsing_timeout=None)
    extracted = _display(predicted)
    if not predicted:
        return 0.0, extracted, True
    return float(verify(gold_parsed, predicted, timeout_seconds=None)), extracted, True


@lru_cache(maxsize=GOLD_CACHE_SIZE)
def _parse_gold(gold: str):
    """math-verify's parse of a gold answer, or None when it yields no mathematical object."""
    from math_verify import parse

    parsed = parse(
        f"\\boxed{{{gold}}}", _config(), extraction_mode="first_match", parsing_timeout=None
    )
    return parsed if any(not isinstance(item, str) for item in parsed) else None


def _display(parsed: list) -> str | None:
    """The matched answer text math-verify reports (its last item), else the parsed object."""
    if not parsed:
        return None
    return parsed[-1] if isinstance(parsed[-1], str) else str(parsed[0])


@lru_cache(maxsize=1)
def _config():
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    # Differences from open-r1's prediction config, each needed by real answers:
    # malformed_operators=True reads `\frac43`, `\frac 59`, `11\sqrt2` (8 MATH-500 golds fail
    # without it); nits=True strips `x =`-style prefixes and `\text{ degrees}`-style units the
    # way MATH answers are written; anchorless extraction lets a bare final number count when
    # nothing is boxed (boxed answers keep top priority, and only the last match is used).
    normalization = NormalizationConfig(
        basic_latex=True,
        units=True,
        malformed_operators=True,
        nits=True,
        boxed="all",
        equations=False,
    )
    return (
        LatexExtractionConfig(
            normalization_config=normalization,
            boxed_match_priority=0,
            try_extract_without_anchor=True,
        ),
        ExprExtractionConfig(try_extract_without_anchor=True),
    )


