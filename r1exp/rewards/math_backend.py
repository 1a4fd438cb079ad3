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

from r1exp.rewards import answers

# Kinds of task the parent sends (math_score.py builds them).
BOXED = "boxed"  # payload: the content of the final \boxed{} or `####` answer
TEXT = "text"  # payload: the tail of a completion with no marked final answer; math-verify
# looks for an anchored answer ("the answer is ..."), else the last plain number counts

PARSE_CACHE_SIZE = 8192


# Typical answer shapes, parsed once per worker before it takes real items. The LaTeX parser
# (ANTLR) builds its prediction tables lazily: cold, a worker spends several times longer per
# item, and an unlucky first item can run into the time limit. Costs ~3 s of CPU per worker.
WARM_UP_ANSWERS = (
    r"7", r"-12", r"3.25", r"\frac{1}{2}", r"-\frac{7}{3}", r"\dfrac{5}{8}", r"\frac43",
    r"\sqrt{2}", r"3\sqrt{5}", r"\frac{\sqrt{3}}{2}", r"2+\sqrt{3}", r"\sqrt[3]{4}", r"11\sqrt2",
    r"\pi", r"\frac{3\pi}{4}", r"e^{2}", r"\ln 2", r"\log_2 8", r"x^2+3x-4", r"(x-1)(x+2)",
    r"\frac{x+1}{x-1}", r"a^2b", r"y=2x+3", r"x=5", r"(3,-2)", r"\left( 1, \frac{\pi}{3} \right)",
    r"\{1,2,3\}", r"1, 2, 3", r"[2,5)", r"(-\infty,-1)\cup(2,\infty)", r"-2<x<3", r"x \le 4",
    r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}", r"3+4i", r"45^\circ", r"\text{Monday}",
    r"\text{(B)}", r"12\text{ cm}", r"5\%", r"\$1.50", r"10,000", r"\binom{5}{2}", r"5!",
    r"\cos\theta", r"|x-3|", r"2^{10}", r"6.02\times10^{23}", r"0.\overline{3}", r"\infty",
    r"\frac{n(n+1)}{2}", r"1 \pm \sqrt{7}", r"\{2\pm\sqrt{3}, -1\}", r"(1,4) \cup (4,9]",
    r"\left[ \frac{\pi}{4}, \frac{3 \pi}{2} \right)", r"y = -3x + 2", r"x^4 - 2x^3 + x - 5",
    r"(m+2)(n-3)", r"\cot x", r"\sec^2 \theta", r"2 - 7i", r"\frac{1+i}{2}", r"101_2", r"4\sqrt{6}",
    r"\sqrt{\frac{5}{2}}", r"\frac{2\sqrt{10}}{5}", r"\text{Evelyn}", r"\text{(E)}",
    r"p + q", r"\begin{pmatrix} 2 & -1 \\ 0 & 3 \end{pmatrix}", r"(2, -\frac{1}{3}, 5)",
    r"\mathbf{i}+\mathbf{j}", r"-\frac{\sqrt{2}}{2}", r"12{,}000", r"8^\circ", r"\$ 25",
    r"x \in [-2, 7]", r"a > 3", r"\tfrac{9}{4}", r"3^{\frac{1}{3}}", r"\log_{3} 5",
)


def warm_up() -> None:
    """Import math-verify and prime its parser before the first real item is timed."""
    # math-verify warns that its own timeouts are off; in a killable worker that is the design.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for answer in WARM_UP_ANSWERS:
        _parse_boxed(answer)
    grade((BOXED, r"\frac{2}{4}", "0.5"))
    _parse_boxed.cache_clear()


def grade(task: tuple[str, str, str]) -> tuple[float, str | None, bool]:
    """(kind, payload, gold answer) -> (score, extracted answer, gold parsed)."""
    from math_verify import parse, verify

    kind, payload, gold = task
    gold_parsed = _parse_boxed(gold)
    if all(isinstance(item, str) for item in gold_parsed):  # no mathematical object in it
        return 0.0, None, False
    if kind == BOXED:
        predicted = _parse_boxed(payload)
    else:
        predicted = parse(payload, _config(), parsing_timeout=None)
        if predicted and answers.unevaluated_arithmetic(restated := _display(predicted)):
            # "the answer is 3 + 2 = 5": the restated sum is not the answer, a number after it
            # may be; its own operands never are ("the answer is 0 + 15" is no answer of 15).
            cut = payload.rfind(restated)
            payload = payload[cut + len(restated):] if cut >= 0 else ""
            predicted = []
        number = answers.last_number(payload) if not predicted else None
        if number is not None:
            predicted = _parse_boxed(answers.without_thousands_separators(number))
    extracted = _display(predicted)
    if not predicted:
        return 0.0, extracted, True
    return float(verify(gold_parsed, predicted, timeout_seconds=None)), extracted, True


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_boxed(answer: str) -> list:
    """math-verify's parse of one answer, cached: golds repeat across a group's completions,
    and so do common answers ("\\boxed{2}"), whether they are golds or predictions."""
    from math_verify import parse

    return parse(
        f"\\boxed{{{answer}}}", _config(), extraction_mode="first_match", parsing_timeout=None
    )


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
    # way MATH answers are written. As in open-r1, nothing is extracted without an anchor
    # ("answer is", "final answer", a box): anchorless extraction evaluates the last expression,
    # so a completion restating the question ("9 + 17") would score as its own answer. Free
    # text falls back to its last plain number instead (see grade).
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
            try_extract_without_anchor=False,
        ),
        ExprExtractionConfig(try_extract_without_anchor=False),
    )


