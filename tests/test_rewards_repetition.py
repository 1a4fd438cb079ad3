"""repetition_penalty: open-r1's expectations and its configuration errors."""

from __future__ import annotations

import importlib.util

import pytest

from r1exp.errors import ConfigError
from r1exp.rewards import build_reward_functions


def penalty(ngram_size: int, max_penalty: float, language: str = "en"):
    config = {"weight": 1.0, "ngram_size": ngram_size, "max_penalty": max_penalty,
              "language": language}
    funcs, _ = build_reward_functions({"repetition_penalty": config})
    return funcs[0]


@pytest.mark.parametrize("max_penalty", [1.0, 1.5])
def test_positive_max_penalty_is_a_config_error(max_penalty):
    with pytest.raises(ConfigError, match=f"max_penalty {max_penalty} should not be positive"):
        penalty(2, max_penalty)


@pytest.mark.parametrize(
    "ngram_size, max_penalty, text, expected",
    [
        (2, -1.0, "this is a test sentence", 0.0),
        (2, -1.0, "this this this this this", -0.75),
        (2, -1.0, "this is a this is a test", -1 / 3),
        (2, -1.0, "", 0.0),
        (3, -0.5, "this is a test", 0.0),
        (3, -0.5, "test test test test", -0.25),
        (3, -0.5, "A B C A B", 0.0),
        (3, -2.0, "this is a this is a test", -0.4),
        (3, -1.0, "word", 0.0),
        (3, -1.0, "two words", 0.0),
        (3, -1.0, "three different words", 0.0),
        (3, -1.0, "word word word word", -0.5),
        (3, -1.0, "one two one two", 0.0),
        (3, -1.0, "A B C A B C", -0.25),
        (3, -1.0, "A B C A B C E F G A B C A B C", -0.3846),
        (3, -1.0, "A B C D E F G H I J K L", 0.0),
    ],
)
def test_open_r1_expectations(ngram_size, max_penalty, text, expected):
    assert penalty(ngram_size, max_penalty)([text]) == [pytest.approx(expected, abs=1e-4)]


def test_case_insensitive_and_chat_messages():
    reward = penalty(2, -1.0)
    message = [{"role": "assistant", "content": "this IS a test"}]
    assert reward(["This is A Test", message]) == reward(["this is a test", "this is a test"])
    assert reward(["that that that that that"]) == [-0.75]


def test_huge_repetitive_text_is_fast():
    assert penalty(3, -1.0)(["na " * 300_000]) == [pytest.approx(-1.0, abs=1e-4)]


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match=r"reward\.repetition_penalty\.language"):
        penalty(3, -1.0, language="fr")
    with pytest.raises(ConfigError, match=r"reward\.repetition_penalty\.ngram_size"):
        penalty(0, -1.0)


@pytest.mark.skipif(importlib.util.find_spec("jieba") is not None, reason="jieba is installed")
def test_chinese_without_jieba_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="pip install jieba"):
        penalty(2, -1.0, language="zh")


@pytest.mark.skipif(importlib.util.find_spec("jieba") is None, reason="jieba is not installed")
def test_chinese_with_jieba():
    assert penalty(2, -1.0, language="zh")(["这个这个这个这个这个"]) == [pytest.approx(-0.75)]
