"""What every engine takes and gives: one request type, one result type, one sampling spec.

An engine turns prompts into completions and nothing else; the pipelines (r1exp.eval,
r1exp.stages.generate) load problems, score and store. Each request carries the key that
identifies its sample everywhere: (problem id, sample index).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Request:
    key: tuple  # (problem id, sample index)
    messages: tuple[dict[str, str], ...]  # the chat prompt
    # The prompt already tokenized (throughput benches); an in-process engine then skips
    # rendering `messages`.
    prompt_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Result:
    key: tuple
    text: str | None  # decoded without special tokens and the stop token; None for errors
    finish_reason: str | None  # "stop" | "length" | a server's word; None for errors
    prompt_tokens: int | None
    completion_tokens: int | None  # generated tokens, the stop token included
    error: str | None = None  # why a request failed for good (HTTP engines; never in-process)
    attempts: int = 1

    @property
    def stopped(self) -> bool:
        """Ended at an end-of-sequence token, not at max_new_tokens."""
        return self.finish_reason == "stop"


@dataclass(frozen=True)
class Sampling:
    greedy: bool
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int  # the run's seed; engines derive per-rank or per-sample seeds from it

    @classmethod
    def of(cls, section, seed: int) -> Sampling:
        """From a config section with temperature, top_p, max_new_tokens and optionally
        `greedy` (without it, temperature 0 means greedy)."""
        greedy = bool(section.get("greedy", False)) or float(section.temperature) == 0.0
        return cls(greedy, float(section.temperature), float(section.top_p),
                   int(section.max_new_tokens), int(seed))


class Engine(Protocol):
    """Registered by name (r1exp.inference.registry); built with
    `cls.from_config(cfg, model_cfg, sampling, chat_template=...)`, which loads nothing."""

    def describe(self) -> dict:
        """{"engine": name, "model": which weights, ...}: what a sample depends on."""

    def check(self) -> None:
        """Cheap checks before anything loads (vLLM importable, the server answers)."""

    def open(self) -> None:
        """Load the model or reach the server; `generate` opens on first use too."""

    def generate(self, requests: Sequence[Request]) -> Iterator[list[Result]]:
        """Results batch by batch as they finish, so the caller can save each batch."""

    def close(self) -> None:
        """Free the model; the engine may be opened again."""
