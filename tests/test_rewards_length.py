"""cosine, length (Kimi 1.5) and soft_overlong_punishment (DAPO): open-r1's expectations, token
lengths, and the documented differences."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1exp.errors import ConfigError
from r1exp.rewards import build_reward_functions

CONF = Path(__file__).resolve().parents[1] / "conf" / "reward"
CORRECT = r"\boxed{\frac{63}{400}}"
WRONG = r"\boxed{\frac{64}{400}}"
GOLD = r"\frac{63}{400}"


def make(name: str, **params):
    funcs, _ = build_reward_functions({name: {"weight": 1.0, **params}})
    return funcs[0]


def from_yaml(name: str, **overrides):
    """The reward as conf/reward/<name>.yaml configures it (with `overrides` applied)."""
    config = OmegaConf.merge(
        {"grpo": {"max_completion_length": 100}}, OmegaConf.load(CONF / f"{name}.yaml")
    )
    entry = OmegaConf.to_container(config, resolve=True)[name]
    funcs, _ = build_reward_functions({name: {**entry, **overrides}})
    return funcs[0]


# --- cosine ---------------------------------------------------------------------------------------


def open_r1_cosine():
    return make("cosine", min_value_wrong=-1.0, max_value_wrong=-0.5, min_value_correct=0.5,
                max_value_correct=1.0, max_len=100, gold_column="answer", timeout_s=5.0)


@pytest.mark.parametrize(
    "content, length, expected",
    [(CORRECT, 20, 0.943), (CORRECT, 80, 0.547), (WRONG, 20, -0.942), (WRONG, 80, -0.547)],
)
def test_cosine_open_r1_expectations_in_characters_without_ids(content, length, expected):
    padded = content.ljust(length)  # the 22-character answer cannot shrink to 20
    assert open_r1_cosine()([padded], answer=[GOLD]) == [pytest.approx(expected, abs=5e-3)]


def test_cosine_counts_tokens_when_ids_are_given():
    reward = open_r1_cosine()
    long_text = CORRECT + " " * 5000  # long in characters, short in tokens
    assert reward([long_text], answer=[GOLD], completion_ids=[[0] * 10]) == [
        pytest.approx(0.5 + 0.25 * (1 + 0.9511), abs=1e-3)
    ]


def test_cosine_yaml_defaults_punish_short_wrong_answers_most():
    # open-r1's registry default (min_value_wrong=0.0) scores a short wrong answer 0.0, above a
    # long wrong one; the YAML keeps the factory's intent: short wrong -1.0, long wrong -0.5.
    reward = from_yaml("cosine")
    ids = {"short": [[]], "long": [[0] * 1000], "beyond": [[0] * 1500]}
    assert reward([WRONG], answer=[GOLD], completion_ids=ids["short"]) == [-1.0]
    assert reward([WRONG], answer=[GOLD], completion_ids=ids["long"]) == [pytest.approx(-0.5)]
    assert reward([CORRECT], answer=[GOLD], completion_ids=ids["short"]) == [1.0]
    assert reward([CORRECT], answer=[GOLD], completion_ids=ids["long"]) == [pytest.approx(0.5)]
    # beyond max_len the progress is clipped; open-r1's cosine wraps around to 0.75 here
    assert reward([CORRECT], answer=[GOLD], completion_ids=ids["beyond"]) == [pytest.approx(0.5)]


def test_cosine_unparseable_gold_is_skipped_not_rewarded():
    # open-r1 returns 1.0 when the gold cannot be parsed; None keeps it out of the mean
    assert open_r1_cosine()([CORRECT], answer=["unparseable_latex"]) == [None]


def test_cosine_rejects_a_zero_max_len():
    with pytest.raises(ConfigError, match=r"reward\.cosine\.max_len"):
        from_yaml("cosine", max_len=0)


# --- length -------------------------------------------------------------------------------------


def length():
    return make("length", gold_column="answer", timeout_s=5.0)


def test_length_open_r1_expectations():
    reward, long_suffix = length(), "  " + "x" * 10
    assert reward([CORRECT, CORRECT], answer=[GOLD, GOLD]) == [0.0, 0.0]
    short, long = reward([CORRECT, CORRECT + long_suffix], answer=[GOLD, GOLD])
    assert short == 0.5 and short > long
    short, long = reward([WRONG, WRONG + long_suffix], answer=[GOLD, GOLD])
    assert short <= 0 and long <= 0 and short > long
    r = reward([CORRECT, CORRECT + long_suffix, WRONG, WRONG + long_suffix], answer=[GOLD] * 4)
    assert r[0] > 0 and r[2] > r[1] >= r[3] and r[2] <= 0 and r[3] <= 0
    assert r[0] > r[1] and r[2] > r[3]


def test_length_unparseable_gold_is_skipped_not_treated_as_correct():
    # open-r1 counts an unparseable gold as correct (short 0.5 beats long); here it is no signal
    result = length()([CORRECT, CORRECT + "  xxxx"], answer=["unparseable_latex"] * 2)
    assert result == [None, None]


def test_length_compares_lengths_within_each_prompt_group():
    # open-r1 compares across the whole batch, so a hard prompt's long answers drag down an easy
    # prompt's; Kimi 1.5 (and r1exp) compare the completions of the same prompt
    prompts = ["easy", "easy", "hard", "hard"]
    ids = [[0] * 10, [0] * 20, [0] * 100, [0] * 200]
    result = length()([CORRECT] * 4, answer=[GOLD] * 4, prompts=prompts, completion_ids=ids)
    assert result == [0.5, -0.5, 0.5, -0.5]


# --- soft_overlong_punishment ---------------------------------------------------------------------


def test_soft_overlong_open_r1_expectations_in_tokens():
    reward = make("soft_overlong_punishment", max_completion_len=100, soft_punish_fraction=0.2)
    result = reward(["a", "b", "c"], completion_ids=[[1] * 50, [1] * 110, [1] * 90])
    assert result == [0.0, -1.0, pytest.approx(-0.5)]


def test_soft_overlong_yaml_follows_the_generation_limit():
    reward = from_yaml("soft_overlong_punishment")  # grpo.max_completion_length = 100 here
    assert reward(["x"] * 3, completion_ids=[[1] * 80, [1] * 90, [1] * 100]) == [
        0.0, pytest.approx(-0.5), -1.0
    ]


def test_soft_overlong_rejects_a_ramp_outside_the_limit():
    with pytest.raises(ConfigError, match="soft_punish_fraction"):
        make("soft_overlong_punishment", max_completion_len=100, soft_punish_fraction=1.5)
