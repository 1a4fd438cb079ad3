"""The eval scorer on the offline benchmarks: reference solutions score 100%, wrong golds ~0."""

from __future__ import annotations

import json

import pytest

from r1exp.eval.benchmarks import choice_prompt
from r1exp.rewards import grade_math

FILES = ("math500.jsonl", "gsm8k_test.jsonl", "aime24.jsonl")


def rows(shared_data, name):
    return [json.loads(line) for line in (shared_data / name).read_text().splitlines()]


@pytest.mark.parametrize("name", FILES)
def test_reference_solutions_score_100_percent(shared_data, name):
    data = rows(shared_data, name)
    graded = grade_math([r["solution"] for r in data], [r["answer"] for r in data])
    wrong = [(r["id"], r["answer"], g.extracted, g.status) for r, g in zip(data, graded)
             if g.score != 1.0]
    assert not wrong, wrong[:10]


@pytest.mark.parametrize("name", FILES)
def test_solutions_against_another_problems_answer_score_about_zero(shared_data, name):
    data = rows(shared_data, name)
    golds = [r["answer"] for r in data]
    shifted = golds[1:] + golds[:1]  # neighbours rarely share an answer
    graded = grade_math([r["solution"] for r in data], shifted)
    coincidences = sum(a == b for a, b in zip(golds, shifted))
    assert sum(g.score for g in graded) / len(data) <= 0.03
    assert sum(g.score for g in graded) >= coincidences  # equal answers must still match


def test_choice_answers_score_by_letter():
    _, gold = choice_prompt("Which?", ["right", "w1", "w2", "w3"], "Answer.", seed="1:gpqa:0")
    other = next(letter for letter in "ABCD" if letter != gold)
    graded = grade_math([f"so \\boxed{{{gold}}}", f"so \\boxed{{{other}}}"], [gold, gold])
    assert [g.score for g in graded] == [1.0, 0.0]
