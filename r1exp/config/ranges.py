"""The allowed range of every numeric knob, checked before anything heavy runs.

Written in interval notation: `[1, inf)` is >= 1, `(0, 1]` excludes 0, `-1 or [1, inf)` allows
one sentinel besides the interval; the error message says it in words ("must be >= 1"). Every
bound is exclusive at infinity, so NaN and inf are always rejected. `*` matches every key of a
mapping (each reward, each benchmark) and `[]` every item of a list. null is not checked here:
the schema says which knobs may be null.

Where a range comes from a library, the comment names what that library does outside it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterator

from omegaconf import DictConfig, ListConfig

from r1exp.errors import ConfigError

_NOTATION = re.compile(r"^(?:(?P<sentinel>-?\d+) or )?(?P<left>[\[(])(?P<low>[^,]+),\s*"
                       r"(?P<high>[^\])]+)(?P<right>[\])])$")


@dataclass(frozen=True)
class Interval:
    text: str
    low: float
    high: float
    low_closed: bool
    high_closed: bool
    sentinel: int | None

    @classmethod
    def parse(cls, text: str) -> Interval:
        match = _NOTATION.match(text)
        if match is None:
            raise ValueError(f"not interval notation: {text!r}")
        sentinel = match["sentinel"]
        return cls(text, float(match["low"]), float(match["high"]), match["left"] == "[",
                   match["right"] == "]", None if sentinel is None else int(sentinel))

    def words(self) -> str:
        if math.isinf(self.low) and math.isinf(self.high):
            said = "finite"
        elif math.isinf(self.high):
            said = f"{'>=' if self.low_closed else '>'} {_number(self.low)}"
        elif math.isinf(self.low):
            said = f"{'<=' if self.high_closed else '<'} {_number(self.high)}"
        else:
            said = f"in {self.text.split(' or ')[-1]}"
        return said if self.sentinel is None else f"{self.sentinel} or {said}"

    def __contains__(self, value: float) -> bool:
        if value == self.sentinel:
            return True
        # an infinite bound is never reached, whatever the bracket says
        above = value > self.low or (self.low_closed and value == self.low != -math.inf)
        below = value < self.high or (self.high_closed and value == self.high != math.inf)
        return above and below


POSITIVE_INT = "[1, inf)"
FRACTION = "(0, 1]"

RANGES: dict[str, str] = {
    # numpy's seed (transformers.set_seed) must fit an unsigned 32-bit integer
    "seed": "[0, 4294967295]",
    "model.num_parameters": "(0, inf)",
    "model.architecture.hidden_size": POSITIVE_INT,
    "model.architecture.num_layers": POSITIVE_INT,
    "model.architecture.num_attention_heads": POSITIVE_INT,
    "model.architecture.num_kv_heads": POSITIVE_INT,
    "model.architecture.intermediate_size": POSITIVE_INT,
    "model.architecture.vocab_size": POSITIVE_INT,
    # 0 rows would train on nothing; test_size: r1exp.data.loading also wants a whole count >= 1
    "dataset.max_samples": POSITIVE_INT,
    "dataset.test_size": "(0, inf)",
    "benchmark.*.max_samples": POSITIVE_INT,
    "benchmark.*.test_size": "(0, inf)",
    "hardware.num_nodes": POSITIVE_INT,
    "hardware.devices_per_node": POSITIVE_INT,
    "hardware.device_memory_gb": "(0, inf)",
    "hardware.per_device_train_batch_size": POSITIVE_INT,
    "hardware.per_device_eval_batch_size": POSITIVE_INT,
    "hardware.vllm.server_devices": "[0, inf)",
    # vLLM's fraction of GPU memory for weights and KV cache
    "hardware.vllm.gpu_memory_utilization": FRACTION,
    # TRL reward_weights: any sign (a penalty may weigh negative), never NaN or inf
    "reward.*.weight": "(-inf, inf)",
    "train.global_batch_size": POSITIVE_INT,
    "train.learning_rate": "(0, inf)",
    # passed as transformers' warmup_steps, which reads a value >= 1 as a count of steps
    "train.warmup_ratio": "[0, 1)",
    "train.weight_decay": "[0, inf)",
    # 0 turns clipping off (transformers clips only when max_grad_norm > 0)
    "train.max_grad_norm": "[0, inf)",
    "train.num_train_epochs": "(0, inf)",
    # -1: num_train_epochs decides (transformers reads any value <= 0 that way; only -1 is ours)
    "train.max_steps": "-1 or [1, inf)",
    "train.logging_steps": POSITIVE_INT,
    "train.save_steps": POSITIVE_INT,
    # transformers reads 0 as "keep every checkpoint", which null already says
    "train.save_total_limit": POSITIVE_INT,
    "train.lora.r": POSITIVE_INT,
    "train.lora.alpha": POSITIVE_INT,
    # 1 would drop every LoRA input: nothing trains
    "train.lora.dropout": "[0, 1)",
    "sft.max_length": POSITIVE_INT,
    "sft.eval_steps": POSITIVE_INT,
    # TRL: "GRPO requires at least 2 generations per prompt to calculate the advantages"
    "grpo.num_generations": "[2, inf)",
    "grpo.max_completion_length": POSITIVE_INT,
    # TRL divides the logits by the temperature (transformers: "strictly positive float")
    "grpo.temperature": "(0, inf)",
    # TRL: "Must be in (0, 1]"
    "grpo.top_p": FRACTION,
    "grpo.beta": "[0, inf)",
    # the ratio is clipped to [1 - epsilon, 1 + epsilon]: epsilon >= 1 clips nothing below
    "grpo.epsilon": "[0, 1)",
    "grpo.num_iterations": POSITIVE_INT,
    "grpo.steps_per_generation": POSITIVE_INT,
    "grpo.log_completions_steps": POSITIVE_INT,
    "grpo.vllm_sync_check_steps": "[0, inf)",
    "eval.num_samples": POSITIVE_INT,
    "eval.pass_k[]": POSITIVE_INT,
    # 0 is greedy on vLLM; on transformers only with eval.greedy=true (validate.py checks)
    "eval.temperature": "[0, inf)",
    "eval.top_p": FRACTION,
    "eval.max_new_tokens": POSITIVE_INT,
    "eval.limit": POSITIVE_INT,
    "eval.score_timeout_s": "(0, inf)",
    "generate.num_generations": POSITIVE_INT,
    "generate.temperature": "[0, inf)",  # 0: greedy (r1exp.inference.Sampling)
    "generate.top_p": FRACTION,
    "generate.max_new_tokens": POSITIVE_INT,
    "generate.limit": POSITIVE_INT,
    "generate.score_timeout_s": "(0, inf)",
    "generate.shard_size": POSITIVE_INT,
    "generate.commit_interval_s": "[0, inf)",
    "inference.batch_tokens": POSITIVE_INT,
    "inference.vllm.tensor_parallel_size": POSITIVE_INT,
    "inference.vllm.gpu_memory_utilization": FRACTION,
    "inference.vllm.max_model_len": POSITIVE_INT,
    "inference.openai.max_in_flight": POSITIVE_INT,
    "inference.openai.request_timeout_s": "(0, inf)",
    "inference.openai.max_retries": "[0, inf)",
    "inference.openai.retry_backoff_s": "[0, inf)",
    "inference.openai.retry_backoff_max_s": "[0, inf)",
}
INTERVALS = {key: Interval.parse(text) for key, text in RANGES.items()}


def check_ranges(cfg: DictConfig) -> None:
    """Raise ConfigError naming the key, the value and the range of the first knob outside it."""
    for pattern, interval in INTERVALS.items():
        for key, value in _values(cfg, pattern.split(".")):
            if _is_number(value) and value not in interval:
                raise ConfigError(f"{key}={value} must be {interval.words()}")


def _values(node: Any, parts: list[str], key: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every knob `parts` matches under `node`."""
    if not parts:
        yield key, node
        return
    if not isinstance(node, DictConfig):
        return
    head, rest = parts[0], parts[1:]
    names = list(node.keys()) if head == "*" else [head.removesuffix("[]")]
    for name in names:
        if name not in node:
            continue
        child, child_key = node[name], f"{key}.{name}" if key else str(name)
        if head.endswith("[]") and isinstance(child, ListConfig):
            for index, item in enumerate(child):
                yield from _values(item, rest, f"{child_key}[{index}]")
        else:
            yield from _values(child, rest, child_key)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else str(bound)
