"""Generation for the test server: transformers' continuous batching (paged KV cache).

Requests join and leave the running batch token by token, as in vLLM: a short request that
finishes frees its slot at once for the next one. This is what lets a client that keeps
requests in flight (a stream) beat one that sends fixed batches and waits for each batch's
slowest request: see r1exp/bench/generate.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)
# Sampling temperature 0 (greedy) is approximated: the per-request temperature processor
# divides the logits, so it needs a positive value.
GREEDY_TEMPERATURE = 1e-4


@dataclass(frozen=True)
class Reply:
    prompt_tokens: int
    token_ids: list[int]
    finish_reason: str  # "stop" | "length"


class ContinuousBatchingBackend:
    def __init__(self, model, tokenizer, *, max_batch: int, kv_tokens: int, page_size: int = 64,
                 seed: int = 0):
        from transformers import ContinuousBatchingConfig, GenerationConfig

        self.tokenizer = tokenizer
        self.stop_ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        # Temperature and top_p must differ from 1.0 here, or transformers creates no processor
        # for them and per-request values are refused.
        generation_config = GenerationConfig(
            do_sample=True, temperature=0.7, top_p=0.95, top_k=0, max_new_tokens=256,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        cb_config = ContinuousBatchingConfig(
            page_size=page_size, num_blocks=max(1, kv_tokens // page_size),
            max_batch_tokens=max(512, max_batch * 16), max_requests_per_batch=max_batch,
            per_request_processors=True, seed=seed,
        )
        self.manager = model.init_continuous_batching(
            generation_config=generation_config, continuous_batching_config=cb_config)
        self.manager.start()
        self._ids = itertools.count()

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    async def complete(self, prompt_ids: list[int], *, max_tokens: int, temperature: float,
                       top_p: float, ignore_eos: bool = False) -> Reply:
        """Generate for one request; awaits while the batch loop works on it among others."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future = loop.create_future()
        request_id = f"r{next(self._ids)}"

        def on_output(output) -> None:
            if output.is_finished() and not finished.done():
                finished.set_result(output)

        # Registered before the request exists, so its result cannot arrive unrouted.
        self.manager.register_result_handler(request_id, on_output)
        self.manager.add_request(
            list(prompt_ids), request_id=request_id, max_new_tokens=max_tokens,
            eos_token_id=-1 if ignore_eos else None,
            temperature=max(float(temperature), GREEDY_TEMPERATURE), top_p=float(top_p),
        )
        try:
            output = await finished
        except asyncio.CancelledError:  # the client went away: stop spending compute on it
            self.manager.cancel_request(request_id)
            raise
        if output.error:
            raise RuntimeError(f"generation failed: {output.error}")
        tokens = list(output.generated_tokens)
        stopped = not ignore_eos and bool(tokens) and tokens[-1] in self.stop_ids
        return Reply(len(prompt_ids), tokens, "stop" if stopped else "length")

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def close(self) -> None:
        self.manager.stop(block=True, timeout=30)
