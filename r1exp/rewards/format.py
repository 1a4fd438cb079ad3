"""Output-format rewards: format, tag_count, reasoning_steps.

Deliberate differences from open-r1 (each has a test in tests/test_rewards_format.py):
- format accepts any whitespace around the tags, where open-r1 demands exactly one newline on each
  side (the usual cause of "format reward stuck at 0", open-r1#235/#256/#560);
- format requires the text to END after the answer (open-r1's MULTILINE `$` accepts trailing
  text after `</answer>\\n`), each tag exactly once, and a non-empty answer;
- `answer_tag: ""` scores the R1 format itself: `<think>...</think>` then a plain answer
  (R1 does not emit `<answer>` tags, open-r1#489);
- `think_opened_by_prompt: true` accepts completions that start inside the think block, for chat
  templates that pre-fill `<think>` (DeepSeek-R1-Distill);
- tag_count counts each tag regardless of the newlines around it;
- reasoning_steps counts numbered items and bullets on every line, where open-r1's `^\\d+\\.`
  without MULTILINE only ever matched at the very start of the text.
"""

from __future__ import annotations

import re

from r1exp.errors import ConfigError
from r1exp.rewards.answers import completion_text
from r1exp.rewards.registry import RewardFn, register

_TAG_NAME = re.compile(r"[A-Za-z][\w-]*")


def _tags(reward: str, think_tag: str, answer_tag: str) -> list[str]:
    """[<think>, </think>] (+ [<answer>, </answer>]), after checking the names."""
    for key, name in (("think_tag", think_tag), ("answer_tag", answer_tag)):
        if (name or key == "think_tag") and not _TAG_NAME.fullmatch(name):
            raise ConfigError(f"reward.{reward}.{key}: {name!r} is not a tag name")
    names = [think_tag, answer_tag] if answer_tag else [think_tag]
    return [tag for name in names for tag in (f"<{name}>", f"</{name}>")]


@register("format")
def format_reward(*, think_tag: str, answer_tag: str, think_opened_by_prompt: bool) -> RewardFn:
    """1.0 for `<think>reasoning</think>` followed by the answer (in answer tags if set)."""
    tags = _tags("format", think_tag, answer_tag)
    think_open, think_close = map(re.escape, tags[:2])
    opening = f"(?:{think_open})?" if think_opened_by_prompt else think_open
    pattern = rf"\s*{opening}.*?{think_close}\s*"
    if answer_tag:
        answer_open, answer_close = map(re.escape, tags[2:])
        pattern += rf"{answer_open}(?P<answer>.*?){answer_close}\s*"
    else:
        pattern += r"(?P<answer>.*)"
    shape = re.compile(pattern, re.DOTALL)

    def well_formed(text: str) -> bool:
        for tag in tags:
            allowed = (0, 1) if tag == tags[0] and think_opened_by_prompt else (1,)
            if text.count(tag) not in allowed:
                return False
        match = shape.fullmatch(text)
        return bool(match and match.group("answer").strip())

    def reward(completions, **columns) -> list[float]:
        return [float(well_formed(completion_text(c))) for c in completions]

    return reward


@register("tag_count")
def tag_count(*, think_tag: str, answer_tag: str) -> RewardFn:
    """An equal share of 1.0 for each format tag that occurs exactly once."""
    tags = _tags("tag_count", think_tag, answer_tag)

    def reward(completions, **columns) -> list[float]:
        texts = [completion_text(c) for c in completions]
        return [sum(text.count(tag) == 1 for tag in tags) / len(tags) for text in texts]

    return reward


_STEP = re.compile(
    r"Step \d+:|^[ \t]*\d+\.\s|^[ \t]*[-*]\s|First,|Second,|Next,|Finally,", re.MULTILINE
)


@register("reasoning_steps")
def reasoning_steps(*, min_steps: int) -> RewardFn:
    """min(1, steps / min_steps), counting "Step N:", list items and First/Second/Next/Finally."""
    if min_steps < 1:
        raise ConfigError(f"reward.reasoning_steps.min_steps: must be >= 1, got {min_steps}")

    def reward(completions, **columns) -> list[float]:
        counts = [len(_STEP.findall(completion_text(c))) for c in completions]
        return [min(1.0, n / min_steps) for n in counts]

    return reward
