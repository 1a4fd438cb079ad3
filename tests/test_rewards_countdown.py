"""countdown reward: the boxed expression must use each number once and hit the target."""

from __future__ import annotations

import random

import pytest

from r1exp.data.synthetic import countdown as generate_countdown
from r1exp.rewards import build_reward_functions
from r1exp.rewards.countdown import score_expression


@pytest.mark.parametrize("text,numbers,target,expected", [
    ("<think>try 3+5</think> \\boxed{(3+5)*2}", [3, 5, 2], "16", 1.0),
    ("\\boxed{8/2*4}", [8, 2, 4], "16", 1.0),                       # exact rational arithmetic
    ("\\boxed{3 \\times 5 + 2 - 1}", [3, 5, 2, 1], "16", 1.0),      # LaTeX operators
    ("\\boxed{(3+5)*2 = 16}", [3, 5, 2], "16", 1.0),                # the target restated
    ("\\boxed{16}", [3, 5, 2], "16", 0.0),                          # the target alone: no numbers
    ("\\boxed{3*5+2}", [3, 5, 2], "16", 0.0),                       # wrong value
    ("\\boxed{(3+5)*2*1}", [3, 5, 2], "16", 0.0),                   # a number not given
    ("\\boxed{(3+3)*2}", [3, 5, 2], "12", 0.0),                     # a number used twice
    ("\\boxed{__import__('os').getcwd()}", [3], "3", 0.0),          # no code runs
    ("\\boxed{2**10}", [2, 10], "1024", 0.0),                       # only + - * /
    ("\\boxed{5/(3-3)}", [5, 3, 3], "1", 0.0),                      # division by zero
    ("(3+5)*2", [3, 5, 2], "16", 0.0),                              # not boxed
    ("", [3, 5, 2], "16", 0.0),
    ("\\boxed{" + "1+" * 5000 + "1}", [1] * 5001, "5001", 0.0),     # huge: capped, no recursion
])
def test_countdown_scores(text, numbers, target, expected):
    assert score_expression(text, numbers, target) == expected


def test_every_generated_problem_has_a_solution_the_reward_accepts():
    rows = generate_countdown(50, random.Random(0), num_numbers=3, max_number=20)
    funcs, weights = build_reward_functions(
        {"countdown": {"weight": 0.5, "numbers_column": "numbers", "target_column": "answer"}})
    assert weights == [0.5] and funcs[0].__name__ == "countdown"
    # Brute force over orders and operators, left to right as the generator builds targets.
    import itertools

    solutions = []
    for row in rows:
        for a, b, c in itertools.permutations(row["numbers"]):
            for p, q in itertools.product("+-*", repeat=2):
                if eval(f"({a}{p}{b}){q}{c}") == int(row["answer"]):  # trusted: our own digits
                    solutions.append(f"\\boxed{{({a}{p}{b}){q}{c}}}")
                    break
            else:
                continue
            break
    assert len(solutions) == len(rows)
    scores = funcs[0](solutions, numbers=[r["numbers"] for r in rows],
                      answer=[r["answer"] for r in rows])
    assert scores == [1.0] * len(rows)
