"""Every registered reward, called the way TRL's GRPOTrainer calls it, on malformed completions.

A reward that raises stops the training run, one that hangs stalls it, and one that returns NaN
or a non-number poisons the advantages. A seeded generator writes 1,200 completions of the kinds
a policy produces when it goes off the rails (random LaTeX, unbalanced braces, huge numbers and
towers of powers, null bytes, lone surrogates, 100 kB strings, nested boxes, stray `</think>`)
with plausible and malformed dataset columns, and every reward built from its conf/reward YAML
must score them all: no exception, one finite float per completion (None only where the reward
documents it), no math-verify item reaching its time limit, all within a bounded time.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from r1exp.rewards import (
    build_reward_functions,
    health_metrics,
    reward_names,
    start_scoring_workers,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "reward"
SEED = 16
COMPLETIONS = 1200
GROUP = 4  # completions per prompt, as GRPO's num_generations
BATCH = 16  # completions per reward call
BIG = 100_000  # characters in the longest completions
# Rewards that return None (TRL: NaN, left out of the mean) for a row they cannot score: an
# unparseable gold (accuracy, cosine, length) or a countdown row without integers.
MAY_RETURN_NONE = {"accuracy", "cosine", "length", "countdown"}

FRAGMENTS = [
    "\\frac", "\\dfrac", "\\sqrt", "\\sqrt[3]", "\\boxed", "\\boxed{", "\\fbox{", "{", "}", "{",
    "}", "(", ")", "[", "]", "\\{", "\\}", "^", "^{", "_", "!", "!!", "+", "-", "\\times",
    "\\cdot", "/", "=", ",", ".", "$", "$$", "\\left(", "\\right)", "\\left.", "\\\\", "&",
    "\\begin{pmatrix}", "\\end{pmatrix}", "\\text{", "\\mathrm{", "\\pi", "e", "i", "x", "y",
    "n", "\\infty", "\\binom", "\\Gamma", "\\exp", "\\ln", "\\log_", "\\sin", "\\circ", "\\%",
    "\\$", "\\", "%", "#", "####", "<think>", "</think>", "<answer>", "</answer>",
    "The answer is ", "the final answer is ", "Step 1:", "\n1. ", "- ", "\n", " ", "\t", "\x00",
    "\ud800", "\udfff", "\u202e", "\u200b", "\ufeff", "\u0301", "数学", "\U0001f642", "é",
    "\u0661\u0662", "\u00b2", "\u221e", "\u221a", "\u2212", "\\uparrow", "**", "0x1F", "1e999",
    "NaN", "inf", "None", "__import__('os')", "{}", "\\boxed{}", "\r\n",
]
TOWERS = [
    "9^{9^{9^{9}}}", "1000000!", "10^{10^{100}}", "(10^{10})!", "2^{2^{2^{2^{2}}}}",
    "2^{-10^{100}}", "9^9^9^9", "\\binom{10^{10}}{10^5}", "\\Gamma(10^{10})", "e^{e^{e^{10}}}",
    "10^{10^{10^{10}}}!", "2**10**100", "\\exp(10^{10})", "(10^{1000}+1)^{1/2}",
]
GOLDS = ["5", "-3", "\\frac{1}{2}", "2^{10}", "10!", "\\sqrt{2}", "x^2+1", "(1,2)", "B",
         "1,450,000", "0.25", "\\pi", "[2,5)", "#### 72", "\\text{Monday}", "9^9"]
BAD_GOLDS = [None, "", " ", "{", "\\boxed{", "\x00", "9" * 5000, "9^{9^{9^{9}}}", 7, 2.5,
             float("nan"), ["5"], "\\frac{1}{0}", "\ud800"]
NUMBERS = [[3, 5, 2], [1, 1, 1, 1], [], np.array([4, 7, 9])]
BAD_NUMBERS = [None, "3,5,2", [3, "x"], [1.5, 2], 7, [None], {"a": 1}, ["9" * 5000]]


def random_number(rng: random.Random) -> str:
    digits = rng.choice([1, 1, 2, 3, 5, 20, 300, 2000, 4301, 6000])
    number = str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=digits - 1))
    if rng.random() < 0.2:
        number += "." + "".join(rng.choices("0123456789", k=rng.randint(1, 50)))
    return number


def random_latex(rng: random.Random, pieces: int) -> str:
    out = []
    for _ in range(pieces):
        roll = rng.random()
        if roll < 0.6:
            out.append(rng.choice(FRAGMENTS))
        elif roll < 0.85:
            out.append(random_number(rng))
        elif roll < 0.95:
            out.append(rng.choice(TOWERS))
        else:
            out.append(chr(rng.randint(0, 0x10FFFF)))  # any code point, surrogates included
    return "".join(out)


def malformed_completion(rng: random.Random, index: int) -> str:
    kind = index % 12
    soup = random_latex(rng, rng.randint(1, 60))
    if kind == 0:
        return soup
    if kind == 1:  # an R1-shaped completion with a malformed answer
        return f"<think>{random_latex(rng, 20)}</think> \\boxed{{{soup}}}"
    if kind == 2:  # unbalanced braces
        return "\\boxed{" * rng.randint(1, 50) + soup + "}" * rng.randint(0, 3)
    if kind == 3:  # a huge or towering final answer
        answer = rng.choice(TOWERS + [random_number(rng), "9" * rng.choice([2001, 4300, 9000])])
        return f"{soup} \\boxed{{{answer}}}" if rng.random() < 0.7 else f"#### {answer}"
    if kind == 4:  # null bytes
        return "\x00".join(soup) + "\x00\\boxed{\x005\x00}"
    if kind == 5:  # ~100 kB strings
        unit = rng.choice(["\\boxed{", "{", "9", "</think>", "x^", "\\frac{1}{", "a b c ", soup])
        return (unit * (BIG // max(1, len(unit)) + 1))[:BIG]
    if kind == 6:  # nested boxes
        depth = rng.randint(1, 300)
        return "\\boxed{" * depth + random_number(rng) + "}" * depth
    if kind == 7:  # empty or blank
        return rng.choice(["", " ", "\n", "\t\t", "</think>", "<think></think>", "\\boxed{}"])
    if kind == 8:  # </think> in odd places
        parts = [soup[i:i + 7] for i in range(0, len(soup), 7)] or [""]
        return "</think>".join(parts) + rng.choice(["", "</think>", "<think>"])
    if kind == 9:  # the anchored free-text path, with an unevaluable answer
        return f"{soup}\nThe answer is ${rng.choice(TOWERS)}$."
    if kind == 10:  # odd unicode throughout
        return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 200)))
    return f"<think>{soup}</think><answer>{random_latex(rng, 10)}</answer>"


def dataset_column(rng: random.Random, good: list, bad: list):
    return rng.choice(bad) if rng.random() < 0.25 else rng.choice(good)


def all_rewards():
    names = reward_names()
    config = OmegaConf.merge(*[OmegaConf.load(CONF / f"{name}.yaml") for name in names])
    root = OmegaConf.create({"grpo": {"max_completion_length": 256}, "reward": config})
    funcs, _ = build_reward_functions(root.reward)
    assert [f.__name__ for f in funcs] == names
    return funcs


def trl_batches(rng: random.Random):
    """Batches as TRL 1.16's _calculate_rewards passes them: dataset columns repeated for each
    of a prompt's GROUP completions, chat messages (or plain strings for a standard dataset)."""
    completions = [malformed_completion(rng, i) for i in range(COMPLETIONS)]
    for start in range(0, COMPLETIONS, BATCH):
        texts = completions[start:start + BATCH]
        conversational = (start // BATCH) % 4 != 3
        rows = [
            {"problem": random_latex(rng, 5),
             "answer": dataset_column(rng, GOLDS + ["16", "24"], BAD_GOLDS),
             "numbers": dataset_column(rng, NUMBERS, BAD_NUMBERS)}
            for _ in range(len(texts) // GROUP)
        ]
        rows = [row for row in rows for _ in range(GROUP)]
        if conversational:
            prompts = [[{"role": "user", "content": row["problem"]}] for row in rows]
            batch = [[{"role": "assistant", "content": text}] for text in texts]
        else:
            prompts, batch = [row["problem"] for row in rows], texts
        ids = [list(range(min(len(text) // 4, 300))) for text in texts]
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        yield prompts, batch, ids, columns


@pytest.mark.timeout(300)  # a hang fails the test; it takes well under a minute when healthy
def test_every_reward_survives_malformed_completions_as_trl_calls_it():
    start_scoring_workers()  # worker start-up is not the rewards' time
    funcs = all_rewards()
    before = health_metrics()
    logged: dict[str, float] = {}
    scored = 0
    for prompts, completions, ids, columns in trl_batches(random.Random(SEED)):
        for func in funcs:
            rewards = func(
                prompts=prompts, completions=completions, completion_ids=ids,
                trainer_state=SimpleNamespace(global_step=1),
                log_extra=lambda column, values: None,
                log_metric=logged.__setitem__,
                **columns,
            )
            assert len(rewards) == len(completions), func.__name__
            for value in rewards:
                if value is None:
                    assert func.__name__ in MAY_RETURN_NONE, func.__name__
                    continue
                assert isinstance(value, float) and math.isfinite(value), (func.__name__, value)
        scored += len(completions)
    assert scored >= 1000
    after = health_metrics()
    # Malformed input is decided cheaply: none of it may cost a scoring worker its time limit.
    for key in ("math_score/timeouts_total", "math_score/errors_total"):
        assert after.get(key, 0.0) == before.get(key, 0.0), key
    assert after.get("math_score/too_big_total", 0.0) > before.get("math_score/too_big_total", 0)
