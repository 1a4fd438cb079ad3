"""countdown: 1.0 when the boxed expression uses each given number exactly once and equals the
target (TinyZero's Countdown task), else 0.0.

Checked by walking the expression's syntax tree (numbers and + - * / only), never by eval(),
so a completion cannot run code or hang; a length cap bounds the work per item.
"""

from __future__ import annotations

import ast
import operator
import re
from collections import Counter
from collections.abc import Mapping
from fractions import Fraction

from r1exp.rewards import health
from r1exp.rewards.answers import answer_region, completion_text, last_boxed
from r1exp.rewards.registry import RewardFn, register

MAX_EXPRESSION_CHARS = 200
_INTEGER = re.compile(r"[-+]?[0-9]{1,100}")
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


@register("countdown")
def countdown(*, numbers_column: str, target_column: str) -> RewardFn:
    def reward(completions, **columns) -> list[float | None]:
        rows = zip(completions, columns[numbers_column], columns[target_column])
        return [score_expression(completion_text(c), numbers, target) for c, numbers, target
                in rows]

    return reward


def score_expression(text: str, numbers, target) -> float | None:
    """1.0 or 0.0; None (TRL: NaN, left out of the mean) for a row whose numbers or target are
    not integers, which no completion can solve: counted and warned about, never a crash."""
    given, goal = _integers(numbers), _integer(target)
    if given is None or goal is None:
        health.count("rewards/countdown/bad_rows_total")
        health.warn("countdown_bad_row", f"countdown row not scored: numbers {numbers!r:.200} "
                                         f"and target {target!r:.200} must be integers")
        return None
    expression = last_boxed(answer_region(text))
    if not expression or len(expression) > MAX_EXPRESSION_CHARS:
        return 0.0
    expression = expression.replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/")
    expression = expression.split("=")[0]  # "3*4+2 = 14" states the target too
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        used: list[int] = []
        value = _evaluate(tree.body, used)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return 0.0
    return 1.0 if Counter(used) == Counter(given) and value == goal else 0.0


def _integer(value) -> int | None:
    """A dataset's integer: 16, a numpy int64, 16.0 or "16"; None for anything else."""
    if isinstance(value, str):
        value = value.strip()
        return int(value) if _INTEGER.fullmatch(value) else None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _integers(values) -> list[int] | None:
    if isinstance(values, (str, bytes, Mapping)):
        return None
    try:
        integers = [_integer(value) for value in values]
    except TypeError:  # not iterable
        return None
    return None if None in integers else integers


def _evaluate(node, used: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:  # not bool, a subclass of int
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left, used), _evaluate(node.right, used))
    raise ValueError("only integers and + - * / are allowed")
