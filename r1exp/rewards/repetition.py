"""repetition_penalty: max_penalty times the share of repeated word n-grams (0 when none repeat)."""

from __future__ import annotations

import importlib.util

from r1exp.errors import ConfigError
from r1exp.rewards.answers import completion_text
from r1exp.rewards.registry import RewardFn, register

LANGUAGES = ("en", "zh")


@register("repetition_penalty")
def repetition_penalty(*, ngram_size: int, max_penalty: float, language: str) -> RewardFn:
    key = "reward.repetition_penalty"
    if max_penalty > 0:
        raise ConfigError(
            f"{key}.max_penalty: max_penalty {max_penalty} should not be positive "
            "(0 disables the penalty, -1 is the usual strength)"
        )
    if ngram_size < 1:
        raise ConfigError(f"{key}.ngram_size: must be >= 1, got {ngram_size}")
    if language not in LANGUAGES:
        raise ConfigError(f"{key}.language: {language!r} is not one of {', '.join(LANGUAGES)}")
    if language == "zh" and importlib.util.find_spec("jieba") is None:
        raise ConfigError(f"{key}.language=zh needs the jieba word segmenter: pip install jieba")
    split = _chinese_words if language == "zh" else _english_words

    def penalty(text: str) -> float:
        words = split(text)
        if len(words) < ngram_size:
            return 0.0
        ngrams = list(zip(*(words[i:] for i in range(ngram_size))))
        return (1.0 - len(set(ngrams)) / len(ngrams)) * max_penalty

    def reward(completions, **columns) -> list[float]:
        return [penalty(completion_text(c)) for c in completions]

    return reward


def _english_words(text: str) -> list[str]:
    return text.lower().split()


def _chinese_words(text: str) -> list[str]:
    import jieba

    return [word for word in jieba.lcut(text) if word.strip()]
