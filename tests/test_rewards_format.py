"""format, tag_count, reasoning_steps: open-r1's expectations, plus each deliberate difference."""

from __future__ import annotations

import time

import pytest

from r1exp.errors import ConfigError
from r1exp.rewards import build_reward_functions

FULL = "<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>"


def make(name: str, **params):
    funcs, _ = build_reward_functions({name: {"weight": 1.0, **params}})
    return funcs[0]


def format_reward(answer_tag="answer", think_opened_by_prompt=False):
    return make("format", think_tag="think", answer_tag=answer_tag,
                think_opened_by_prompt=think_opened_by_prompt)


# --- format: open-r1 tests/test_rewards.py ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        FULL,
        (
            "<think>\nTo solve this:\n1. First step\n2. Second step\n3. Check\n</think>\n"
            "<answer>\n9\n</answer>"
        ),
    ],
)
def test_format_accepts_open_r1_correct_examples(text):
    assert format_reward()([text]) == [1.0]


@pytest.mark.parametrize(
    "text",
    [
        "<think>Only thinking</think>",
        "<answer>Only answer</answer>",
        "No tags at all",
        "<think>Missing closing</think><answer>Missing closing",
        "<think>Wrong order</answer><answer>Wrong order</think>",
    ],
)
def test_format_rejects_open_r1_incorrect_examples(text):
    assert format_reward()([text]) == [0.0]


# --- format: deliberate differences --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "<think>Some reasoning</think><answer>42</answer>",  # no newlines at all
        "<think>\nreasoning\n</think>\n\n<answer> 42 </answer>\n",  # blank line, trailing newline
        "  <think>reasoning</think>\r\n<answer>\r\n42\r\n</answer>",  # CRLF, leading spaces
    ],
)
def test_format_tolerates_whitespace_open_r1_rejects(text):
    assert format_reward()([text]) == [1.0]


@pytest.mark.parametrize(
    "text",
    [
        FULL + "\nand some text after the answer",  # open-r1's MULTILINE `$` accepts this
        FULL + "\n<answer>\nsecond\n</answer>",  # two answers
        "<think>\na\n</think>\n<think>\nb\n</think>\n<answer>\n1\n</answer>",  # two think blocks
        "<think>\nreasoning\n</think>\n<answer>\n\n</answer>",  # empty answer
        "",
    ],
)
def test_format_rejects_trailing_text_repeated_tags_and_empty_answers(text):
    assert format_reward()([text]) == [0.0]


def test_format_with_empty_answer_tag_scores_r1_style_output():
    reward = format_reward(answer_tag="")
    assert reward(["<think>\nreasoning\n</think>\nThe answer is \\boxed{4}."]) == [1.0]
    assert reward(["<think>\nreasoning\n</think>\n   "]) == [0.0]  # nothing after the thinking
    assert reward(["The answer is 4."]) == [0.0]


def test_format_think_opened_by_prompt_accepts_completions_starting_inside_the_block():
    text = "reasoning...\n</think>\n<answer>\n4\n</answer>"
    assert format_reward()([text]) == [0.0]
    assert format_reward(think_opened_by_prompt=True)([text]) == [1.0]
    assert format_reward(think_opened_by_prompt=True)([FULL]) == [1.0]


def test_format_custom_tags_and_chat_messages():
    reward = make("format", think_tag="reasoning", answer_tag="final", think_opened_by_prompt=False)
    message = [{"role": "assistant", "content": "<reasoning>r</reasoning><final>2</final>"}]
    assert reward([message, FULL]) == [1.0, 0.0]


def test_format_rejects_a_bad_tag_name():
    with pytest.raises(ConfigError, match=r"reward\.format\.think_tag"):
        make("format", think_tag="<think>", answer_tag="answer", think_opened_by_prompt=False)


def test_format_on_huge_input_is_fast():
    text = "<think>\n" + "hmm " * 500_000 + "\n</think>\n<answer>\n1\n</answer>"
    started = time.monotonic()
    assert format_reward()([text, "<think>" * 100_000]) == [1.0, 0.0]
    assert time.monotonic() - started < 2


# --- tag_count ------------------------------------------------------------------------------------


def tag_count(answer_tag="answer"):
    return make("tag_count", think_tag="think", answer_tag=answer_tag)


def test_tag_count_open_r1_expectations():
    reward = tag_count()
    assert reward([FULL]) == [1.0]
    for tag in ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>"):
        assert reward([FULL.replace(tag, "\n", 1)]) == [0.75]
    assert reward(["Some reasoning\nThe answer"]) == [0.0]


def test_tag_count_ignores_newlines_around_tags_unlike_open_r1():
    assert tag_count()(["<think>r</think><answer>a</answer>"]) == [1.0]


def test_tag_count_counts_only_tags_that_occur_exactly_once():
    assert tag_count()([FULL + FULL]) == [0.0]
    assert tag_count(answer_tag="")(["<think>r</think> 4", "<think>r"]) == [1.0, 0.5]


# --- reasoning_steps ------------------------------------------------------------------------------


def reasoning_steps(min_steps=3):
    return make("reasoning_steps", min_steps=min_steps)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Step 1: Do this\nStep 2: Do that\nStep 3: Done", 1.0),
        ("First, do this.\nSecond, do that.\nFinally, done.", 1.0),
        ("Step 1: Only step", 1 / 3),
        ("First, do this.\nFinally, done.", 2 / 3),
        ("Just plain text without steps", 0.0),
    ],
)
def test_reasoning_steps_open_r1_expectations(text, expected):
    assert reasoning_steps()([text]) == [pytest.approx(expected)]


def test_reasoning_steps_counts_numbered_lists_on_any_line_unlike_open_r1():
    # open-r1's `^\d+\.` has no MULTILINE flag, so it scores this plan 0.0
    plan = "Plan:\n1. factor\n2. solve\n  3. check"
    assert reasoning_steps()([plan]) == [1.0]
    assert reasoning_steps()(["The value is 3.14 and\n2.5 more"]) == [0.0]  # decimals are not items


def test_reasoning_steps_min_steps_is_a_parameter():
    assert reasoning_steps(min_steps=2)(["Step 1: a\nStep 2: b"]) == [1.0]
    with pytest.raises(ConfigError, match=r"reward\.reasoning_steps\.min_steps"):
        reasoning_steps(min_steps=0)
