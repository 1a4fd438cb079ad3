"""countdown: 1.0 when the boxed expression uses each given number exactly once and equals the
target (TinyZero's Countdown task), else 0.0.

Checked by walking the expression's syntax tree (numbers and + - * / only), never by eval(),
so a completion cannot run code or hang; a length cap bounds the work per item.
"""

from __future__ import annotations

import ast
from collections import Counter
from fractions import Fraction

from r1exp.rewards.answers import answer_region, completion_text, last_boxed
from r1exp.rewards.registry import RewardFn, register

MAX_EXPRESSION_CHARS = 200
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


@register("countdown")
def countdown(*, numbers_column: str, target_column: str) -> RewardFn:
    def reward(completions, **columns) -> list[float]:
        rows = zip(completions, columns[numbers_column], columns[target_column])
        return [score_expression(completion_text(c), numbers, target) for c, numbers, target
                in rows]

    return reward


def score_expression(text: str, numbers, target) -> float:
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
    same_numbers = Counter(used) == Counter(int(n) for n in numbers)
    return 1.0 if same_numbers and value == Fraction(int(target)) else 0.0


def _evaluate(node, used: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:  # not bool, a subclass of int
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left, used), _evaluate(node.right, used))
    raise ValueError("only integers and + - * / are allowed")
