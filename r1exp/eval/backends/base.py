"""What a backend receives and returns; for generators the runner does prompts and scoring."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    key: tuple[str, int]  # (problem id, sample index)
    prompt_ids: tuple[int, ...]  # the rendered prompt, tokenized once by the runner


@dataclass(frozen=True)
class Completion:
    request: Request
    text: str  # decoded without special tokens, without the stop token
    new_tokens: int  # generated tokens, the stop token included
    stopped: bool  # True: ended at an end-of-sequence token; False: hit max_new_tokens


@dataclass(frozen=True)
class Sampling:
    greedy: bool
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    @classmethod
    def from_eval(cls, eval_cfg, seed: int) -> Sampling:
        return cls(bool(eval_cfg.greedy), float(eval_cfg.temperature), float(eval_cfg.top_p),
                   int(eval_cfg.max_new_tokens), int(seed))


@dataclass(frozen=True)
class PeerReport:
    """What a peer backend (lighteval) hands back: r1exp sample records per benchmark, which
    the runner writes and summarizes as it does its own."""

    model: str  # the model dir or hub id evaluated
    seconds: float  # the peer's whole run, every benchmark together
    records: dict[str, list[dict]]  # benchmark -> records with problem_id, sample, completion,
    # extracted, gold, score, status, new_tokens, stopped (as the runner's _record)
    extra: dict[str, dict]  # benchmark -> the peer's own numbers, added to its results
    about: dict  # the peer's name, version and settings, for results.json
