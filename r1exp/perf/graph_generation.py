"""GRPO's transformers generation as CUDA graphs of whole runs of decode steps.

A rollout batch of GRPO is small (tens of sequences) and short (hundreds of tokens), so each
decode step is latency-bound: on an H100 a 0.5B model's step is ~0.3 ms of GPU work, while the
host needs ~3 ms to issue it through vLLM's engine (scheduler, sampler, output processing) and
more through transformers' generate. Here the prompt is prefilled once, then `CHUNK_STEPS`
decode steps (forward, the generation config's warpers, sampling, EOS bookkeeping) are
recorded as one CUDA graph and replayed until every sequence has ended: the host issues one
launch per chunk and checks for the end once per chunk.

Same semantics as transformers' `generate(do_sample=...)`: the model's effective generation
config (the trainer's merged over the model's), its own warper classes in its order, EOS and
`min_new_tokens` as its processors apply them, pad after EOS. Sampling draws from the same
distribution (an exponential race: argmax of p / Exp(1), as vLLM's sampler); the random
stream differs. Anything this loop does not implement (beam search, repetition penalty, stop
strings, a model outside static_decoder's family, ...) falls back to transformers' generate,
named once in the log.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from r1exp.perf.fast_paths import GENERATION_PROMPT_MULTIPLE
from r1exp.perf.static_decoder import StaticDecoder, unsupported_reason

log = logging.getLogger(__name__)

# Decode steps per graph: one host launch and one end-of-generation check per chunk. The last
# chunk may run past max_new_tokens; those tokens are dropped (at most CHUNK_STEPS - 1 steps).
CHUNK_STEPS = 16
# Cache lengths are rounded up to the multiple TRL pads prompts to under this lever, so
# prompts of nearby lengths share one graph.
LENGTH_MULTIPLE = GENERATION_PROMPT_MULTIPLE
# Generation options that change which tokens come out, at the value where they do not.
NEUTRAL_OPTIONS = {
    "num_beams": 1, "num_return_sequences": 1, "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0, "typical_p": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "min_length": 0, "diversity_penalty": 0.0, "guidance_scale": 1.0, "top_h": None,
    "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "sequence_bias": None,
    "exponential_decay_length_penalty": None, "stop_strings": None, "penalty_alpha": None,
    "prompt_lookup_num_tokens": None, "dola_layers": None, "watermarking_config": None,
    "renormalize_logits": False, "return_dict_in_generate": False, "output_scores": False,
    "output_logits": False, "token_healing": False,
}


@dataclass(frozen=True)
class Sampling:
    """What decides each next token, read from an effective GenerationConfig."""

    max_new_tokens: int
    min_new_tokens: int
    greedy: bool
    temperature: float | None
    top_k: int | None
    top_p: float | None
    min_p: float | None
    eos: tuple[int, ...]
    pad: int

    def warpers(self) -> list:
        """transformers' own warpers, in the order its generate() applies them."""
        if self.greedy:
            return []
        chosen = []
        if self.temperature is not None and self.temperature != 1.0:
            chosen.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            chosen.append(TopKLogitsWarper(top_k=self.top_k))
        if self.top_p is not None and self.top_p < 1.0:
            chosen.append(TopPLogitsWarper(top_p=self.top_p))
        if self.min_p is not None:
            chosen.append(MinPLogitsWarper(min_p=self.min_p))
        return chosen


def sampling_from(config) -> Sampling | str:
    """The Sampling of an effective GenerationConfig, or why this loop cannot follow it."""
    for key, neutral in NEUTRAL_OPTIONS.items():
        value = getattr(config, key, None)
        if value is not None and value != neutral:
            return f"generation_config.{key}={value!r}"
    if not config.max_new_tokens:
        return "no max_new_tokens"
    eos = config.eos_token_id
    eos = () if eos is None else (eos,) if isinstance(eos, int) else tuple(eos)
    pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if eos else 0)
    return Sampling(
        max_new_tokens=config.max_new_tokens, min_new_tokens=config.min_new_tokens or 0,
        greedy=not config.do_sample, temperature=config.temperature, top_k=config.top_k,
        top_p=config.top_p, min_p=config.min_p, eos=eos, pad=pad,
    )


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class Rollout:
    """One batch shape's decoder, loop state and recorded graph; reused while shapes hold."""

    def __init__(self, model, batch: int, prompt_slots: int, sampling: Sampling):
        self.sampling = sampling
        # The first token comes from the prefill; each chunk decodes CHUNK_STEPS more. The
        # buffers hold at least one chunk: the one a graph is recorded from.
        self.chunks = round_up(sampling.max_new_tokens - 1, CHUNK_STEPS) // CHUNK_STEPS
        self.steps = max(self.chunks, 1) * CHUNK_STEPS
        self.prompt_slots = prompt_slots
        self.decoder = StaticDecoder(model, batch, round_up(prompt_slots + self.steps,
                                                            LENGTH_MULTIPLE))
        device = self.decoder.device
        self.warpers = sampling.warpers()
        self.eos = torch.tensor(sampling.eos, dtype=torch.long, device=device)
        # The loop's state, in device tensors so that the recorded steps read and advance it.
        self.visible = torch.full((batch, self.decoder.length), self.decoder.blocked(),
                                  dtype=self.decoder.dtype, device=device)
        self.token = torch.zeros(batch, dtype=torch.long, device=device)
        self.position = torch.zeros(batch, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.column = torch.zeros(1, dtype=torch.long, device=device)
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)
        self.out = torch.zeros(batch, self.steps + 1, dtype=torch.long, device=device)
        self.graph = None
        self.parameters = _parameter_addresses(model)
        # Inside a graph every kernel still costs its launch and a tail on the GPU: eager, a
        # layer is ~40 small kernels (norms in pieces, rotary, residuals). Compiled, inductor
        # fuses those into a few, which is most of a decode step's time at these sizes. The
        # prefill (one call per batch, its own shape) stays eager, and so does sampling (its
        # random numbers come from torch's generator, which graph replays advance).
        self.decode = (torch.compile(self.decoder.forward, dynamic=False)
                       if device.type == "cuda" else self.decoder.forward)

    def fits(self, model, batch: int, prompt_length: int, sampling: Sampling) -> bool:
        return (batch == self.decoder.batch and prompt_length <= self.prompt_slots
                and sampling == self.sampling and _parameter_addresses(model) == self.parameters)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Prompt + completion ids, as transformers' generate returns them."""
        if self.decoder.device.type == "cuda" and self.graph is None:
            self.graph = self._record()
        self._prefill(input_ids, attention_mask)
        for _ in range(self.chunks):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._chunk()
            if bool(self.done.all()):  # one host sync per chunk
                break
        return torch.cat([input_ids, self.out[:, :self._generated_length()]], dim=1)

    def _prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        batch, length = input_ids.shape
        device, blocked = self.decoder.device, self.decoder.blocked()
        real = attention_mask.bool()
        self.visible.fill_(blocked)
        self.visible[:, :length].masked_fill_(real, 0.0)
        # Query t sees the real prompt tokens at slots <= t; a padding query sees itself only,
        # so no row is fully blocked (its outputs are never read).
        slots = torch.arange(self.decoder.length, device=device)
        steps = torch.arange(length, device=device)
        causal = slots[None, :] <= steps[:, None]
        allowed = (causal[None] & (self.visible[:, None, :] == 0)) | (
            slots[None, None, :] == steps[None, :, None])
        mask = torch.zeros(allowed.shape, dtype=self.decoder.dtype, device=device)
        mask.masked_fill_(~allowed, blocked)
        positions = (real.long().cumsum(-1) - 1).clamp(min=0)
        logits = self.decoder.forward(input_ids, positions, steps, mask[:, None])
        self.done.zero_()
        self.column.zero_()
        self.out.fill_(self.sampling.pad)
        self._take(logits)
        self.position.copy_(real.sum(-1))
        self.slot.fill_(length)

    def _take(self, logits: torch.Tensor) -> None:
        """Sample the token of `self.column` from `logits` and record it."""
        sampling = self.sampling
        if sampling.min_new_tokens and len(sampling.eos):
            too_early = self.column < sampling.min_new_tokens
            logits[:, self.eos] = torch.where(too_early, float("-inf"), logits[:, self.eos])
        for warper in self.warpers:
            logits = warper(None, logits)
        if sampling.greedy:
            token = logits.argmax(-1)
        else:
            probs = logits.softmax(-1)
            token = (probs / torch.empty_like(probs).exponential_()).argmax(-1)
        token = torch.where(self.done, sampling.pad, token)
        self.out.index_copy_(1, self.column, token[:, None])
        if len(sampling.eos):
            self.done |= torch.isin(token, self.eos)
        self.token.copy_(token)

    def _step(self) -> None:
        """Feed the last sampled token, sample the next one."""
        self.visible.index_fill_(1, self.slot, 0.0)
        mask = self.visible[:, None, None, :]
        logits = self.decode(self.token[:, None], self.position[:, None], self.slot, mask)
        self.column += 1
        self._take(logits)
        self.position += 1
        self.slot += 1

    def _chunk(self) -> None:
        for _ in range(CHUNK_STEPS):
            self._step()

    def _record(self) -> torch.cuda.CUDAGraph:
        """Record one chunk as a CUDA graph (after a warm-up run, as CUDA graphs require)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._chunk()  # on the state of no prompt: the next prefill resets all of it
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._chunk()
        return graph

    def _generated_length(self) -> int:
        """Columns up to the last sequence's EOS, or max_new_tokens (as generate() stops)."""
        sampling = self.sampling
        kept = self.out[:, :sampling.max_new_tokens]
        if not len(sampling.eos):
            return sampling.max_new_tokens
        is_eos = torch.isin(kept, self.eos)
        ends = torch.where(is_eos.any(-1), is_eos.int().argmax(-1) + 1, sampling.max_new_tokens)
        return int(ends.max())


class GraphGeneration:
    """`model.generate` through a Rollout where it can follow the request, else the original."""

    def __init__(self, model):
        self.model = model
        self.original = model.generate
        self.rollout: Rollout | None = None
        self.fallbacks: set[str] = set()

    def __call__(self, input_ids=None, attention_mask=None, generation_config=None, **kwargs):
        reason = self._refusal(input_ids, kwargs)
        sampling = None
        if reason is None:
            effective, extra = self.model._prepare_generation_config(generation_config)
            sampling = sampling_from(effective) if not extra else f"model kwargs {sorted(extra)}"
            reason = sampling if isinstance(sampling, str) else None
        if reason is not None:
            if reason not in self.fallbacks:
                self.fallbacks.add(reason)
                log.warning("graph generation falls back to transformers' generate: %s", reason)
            return self.original(input_ids=input_ids, attention_mask=attention_mask,
                                 generation_config=generation_config, **kwargs)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        batch, length = input_ids.shape
        # The cache holds the weights' dtype: autocast (a trainer's mixed precision) would write
        # keys of another into it.
        with torch.no_grad(), torch.autocast(input_ids.device.type, enabled=False):
            if self.rollout is None or not self.rollout.fits(self.model, batch, length, sampling):
                self.rollout = None  # free the old cache and graph before sizing the new ones
                self.rollout = Rollout(self.model, batch, round_up(length, LENGTH_MULTIPLE),
                                       sampling)
            return self.rollout.generate(input_ids, attention_mask)

    def _refusal(self, input_ids, kwargs) -> str | None:
        if input_ids is None or kwargs:
            return f"arguments {sorted(kwargs) or ['no input_ids']}"
        if input_ids.dim() != 2:
            return f"input_ids of shape {tuple(input_ids.shape)}"
        if not hasattr(self.model, "_prepare_generation_config"):  # another transformers layout
            return "transformers has no _prepare_generation_config (the effective config)"
        return unsupported_reason(self.model)


def use_graph_generation(model) -> GraphGeneration:
    """Route `model.generate` (the PreTrainedModel TRL unwraps to generate) through graphs."""
    generation = GraphGeneration(model)
    model.generate = functools.wraps(generation.original)(generation)
    return generation


def _parameter_addresses(model) -> tuple[int, ...]:
    # Recorded graphs read the weights at fixed addresses: a moved parameter needs a new graph.
    return tuple(p.data_ptr() for p in model.parameters())
