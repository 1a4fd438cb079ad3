"""Worst-case inputs stay cheap: values too big to evaluate are decided before math-verify.

Before the magnitude guard, each of the adversarial answers below cost a scoring worker its whole
5 s limit (and a restart). Now they are decided inline: the assertions are structural (status
ok, seconds == 0.0, the scoring pool never asked), not timings, so a loaded machine cannot make
them flaky.
"""

from __future__ import annotations

import json
import math
import random
import time
from fractions import Fraction

import numpy as np
import pytest

from r1exp.rewards import grade_math, health_metrics, math_score
from r1exp.rewards.answers import exact_rational, gold_answer
from r1exp.rewards.countdown import score_expression
from r1exp.rewards.magnitude import MAX_DIGITS, digits_bound, too_big_to_evaluate

ADVERSARIAL = [
    r"\boxed{9^{9^{9^{9}}}}",
    r"\boxed{1000000!}",
    r"\boxed{10^{10^{100}}}",
    r"\boxed{(10^{10})!}",
    r"\boxed{2^{2^{2^{2^{2}}}}}",
    r"\boxed{2^{-10^{100}}}",
    r"\boxed{9^{9^9}}",
    r"\boxed{9^9^9^9}",
    r"\boxed{2**10**100}",
    r"\boxed{1000000!!}",
    r"\boxed{\binom{10^{10}}{10^5}}",
    r"\boxed{\Gamma(10^{10})}",
    r"\boxed{\exp(10^{10})}",
    r"\boxed{e^{e^{e^{10}}}}",
    r"\boxed{\pi^{\pi^{\pi^{\pi}}}}",
    r"\boxed{\sum_{k=1}^{10^{10}} k}",
    r"\boxed{\sqrt{" + "7" * 1500 + "}}",  # sympy factors the radicand: 2.4 s
    r"\boxed{(10^{1000}+1)^{1/2}}",
    r"\boxed{10^{10^{10^{10}}}!}",
    r"\boxed{(10^{10^{100}})^0}",  # sympy evaluates the base before the power is 1
    r"\boxed{2^\frac{9^{9^{9}}}{2}}",
    "#### 10^{10^{100}}",
    "<think>easy</think> The answer is $9^{9^{9^{9}}}$.",  # no box: the anchored free text
    "So we get $(10^{10})!$",
]
# MATH-style answers with big-looking but cheap values: math-verify still decides them.
CHEAP = [
    (r"\boxed{1024}", "2^{10}"),
    (r"\boxed{3628800}", "10!"),
    (r"\boxed{\frac{1}{1048576}}", r"\frac{1}{2^{20}}"),
    (r"\boxed{387420489}", "9^9"),
    (r"\boxed{2^{1024}}", "2^{2^{10}}"),
    (r"\boxed{4^{1000}}", "2^{2000}"),
    (r"\boxed{6.02 \times 10^{23}}", r"6.02\times10^{23}"),
    (r"\boxed{\binom{100}{50}}", "100891344545564193334812497256"),
    ("The answer is $2^{10}$.", "1024"),
]


@pytest.fixture
def no_scoring_pool(monkeypatch):
    """Fails the test if anything is sent to the math-verify workers."""
    def refuse():
        raise AssertionError("a worst-case item reached the math-verify workers")

    monkeypatch.setattr(math_score, "_scoring_pool", refuse)


@pytest.mark.parametrize("completion", ADVERSARIAL)
def test_an_answer_too_big_to_evaluate_scores_zero_without_math_verify(completion, no_scoring_pool):
    before = health_metrics().get("math_score/too_big_total", 0.0)
    [result] = grade_math([completion], ["1"])
    assert (result.score, result.status, result.seconds) == (0.0, "ok", 0.0)
    assert health_metrics()["math_score/too_big_total"] == before + 1


def test_all_adversarial_answers_together_take_milliseconds(no_scoring_pool):
    started = time.process_time()
    results = grade_math(ADVERSARIAL * 10, ["42"] * len(ADVERSARIAL) * 10)
    assert all(r.score == 0.0 and r.seconds == 0.0 for r in results)
    assert time.process_time() - started < 5.0  # ~10 ms: generous for a loaded machine


@pytest.mark.parametrize("completion, gold", [
    (r"\boxed{9^{9^{9^{9}}}}", "9^{9^{9^{9}}}"),
    (r"\boxed{9^{ 9^{ 9^{9} } }}", "9^{9^{9^{9}}}"),  # spacing is no difference
    (r"so $\boxed{2^{2^{2^{2^{2}}}}}$.", r"2^{2^{2^{2^{2}}}}"),
    (r"\boxed{\dfrac{1}{10^{10^{100}}}}", r"\frac{1}{10^{10^{100}}}"),
])
def test_a_too_big_answer_spelled_like_the_gold_still_scores_one(completion, gold,
                                                                 no_scoring_pool):
    [result] = grade_math([completion], [gold])
    assert (result.score, result.status, result.seconds) == (1.0, "ok", 0.0)


@pytest.mark.parametrize("completion", [
    r"\boxed{10^{10^{99}}}",  # differently spelled: it could be equal, but is not evaluated
    r"\boxed{5}",
    "The answer is 5.",
])
def test_a_too_big_gold_scores_other_spellings_zero_without_math_verify(completion,
                                                                       no_scoring_pool):
    [result] = grade_math([completion], [r"10^{10^{100}}"])
    assert (result.score, result.status, result.seconds) == (0.0, "ok", 0.0)


@pytest.mark.parametrize("completion, gold", CHEAP)
def test_big_looking_cheap_values_still_go_to_math_verify_and_score(completion, gold):
    assert not too_big_to_evaluate(gold)
    [result] = grade_math([completion], [gold])
    assert (result.score, result.status) == (1.0, "ok")


def test_the_bound_is_an_upper_bound_on_the_digits_of_exact_values():
    """Random expressions of integers with + - * / ^ ! and nested brackets, evaluated exactly
    here: the bound read off the LaTeX is never below the digits of the value's height."""
    rng = random.Random(5)
    for _ in range(2000):
        latex, value = _random_expression(rng, depth=4)
        height = max(abs(value.numerator), value.denominator)
        assert digits_bound(latex) >= math.log10(height) - 1e-9, latex


def _random_expression(rng: random.Random, depth: int) -> tuple[str, Fraction]:
    if depth == 0 or rng.random() < 0.25:
        n = rng.choice([rng.randint(0, 9), rng.randint(10, 999), rng.randint(10**5, 10**12)])
        return str(n), Fraction(n)
    a, x = _random_expression(rng, depth - 1)
    kind = rng.choice(["+", "-", "cdot", "frac", "pow", "pow", "factorial", "group"])
    if kind == "pow":
        n = rng.randint(0, 12)
        exponent = rng.choice([str(n), f"{{{n}}}", f"{{{n // 2}+{n - n // 2}}}"])
        if x == 0:
            n = max(n, 1)
            exponent = str(n)
        return f"({a})^{exponent}", x**n
    if kind == "factorial":
        n = rng.randint(0, 40)
        factorial = rng.choice([f"{n}!", f"({n})!", f"{{{n}}}!"])
        return f"{factorial} \\cdot ({a})", x * math.factorial(n)
    if kind == "group":
        return rng.choice([f"\\left({a}\\right)", f"{{{a}}}", f"[{a}]"]), x
    b, y = _random_expression(rng, depth - 1)
    if kind == "frac":
        if y == 0:
            return f"\\frac{{{a}}}{{1}}", x
        return f"\\frac{{{a}}}{{{b}}}", x / y
    sign = {"+": "+", "-": "-", "cdot": "\\cdot"}[kind]
    value = {"+": x + y, "-": x - y, "cdot": x * y}[kind]
    return f"({a} {sign} {b})", value


@pytest.mark.parametrize("text", [
    "{" * 100_000, "}" * 100_000, "^" * 100_000, "!" * 100_000, "\\sqrt" * 50_000,
    "2^" * 50_000 + "2", "\\boxed{" * 20_000, "(" * 60 + "1", "\\binom" * 10_000, "\x00" * 1000,
    "\ud800\udfff", "", "\\", "2^", "\\sqrt[", "\\binom{", "1" * 4301, "1." + "0" * 10_000,
])
def test_the_bound_never_raises_and_stays_linear_on_garbage(text):
    started = time.process_time()
    assert digits_bound(text) >= 0.0
    assert time.process_time() - started < 5.0  # ~0.1 s for 100 kB


def test_no_gold_answer_of_the_benchmarks_is_flagged(shared_data):
    golds = []
    for name in ("math500", "aime24", "gsm8k_test"):
        with open(shared_data / f"{name}.jsonl", encoding="utf-8") as rows:
            for row in map(json.loads, rows):
                golds += [gold_answer(row["answer"]), gold_answer(row["solution"])]
    assert len(golds) == 2 * (500 + 30 + 1319)
    flagged = [gold for gold in golds if too_big_to_evaluate(gold)]
    assert flagged == []
    assert max(map(digits_bound, golds)) < MAX_DIGITS / 100  # far from the limit, not near it


def test_integers_longer_than_python_converts_are_no_crash():
    long_number = "9" * 5000  # int() refuses more than 4300 digits
    assert exact_rational(long_number) is None
    results = grade_math([f"#### {long_number}", f"\\boxed{{{long_number[:1999]}}}"],
                         [long_number, long_number])
    assert [r.score for r in results] == [0.0, 0.0]


@pytest.mark.parametrize("numbers, target", [
    (None, "16"), ("3,5,2", "16"), ([3, "x", 2], "16"), ([3.5, 5, 2], "16"), (7, "16"),
    ([3, 5, 2], None), ([3, 5, 2], "sixteen"), ([3, 5, 2], 16.5), ([3, 5, 2], "9" * 5000),
    ([3, 5, 2], float("nan")), ([True, 5, 2], "16"),
])
def test_a_countdown_row_without_integers_gives_none_and_is_counted(numbers, target):
    before = health_metrics().get("rewards/countdown/bad_rows_total", 0.0)
    assert score_expression(r"\boxed{(3+5)*2}", numbers, target) is None
    assert health_metrics()["rewards/countdown/bad_rows_total"] == before + 1


@pytest.mark.parametrize("numbers, target", [
    ([3, 5, 2], "16"), ([3, 5, 2], 16), ([3, 5, 2], 16.0), (np.array([3, 5, 2]), np.int64(16)),
    (("3", "5", "2"), " 16 "),
])
def test_countdown_reads_integers_however_the_dataset_stores_them(numbers, target):
    assert score_expression(r"\boxed{(3+5)*2}", numbers, target) == 1.0
