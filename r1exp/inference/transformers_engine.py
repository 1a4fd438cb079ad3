"""Engine `transformers`: batched in-process generation; works on CPU and GPU, no extra dependency.

Requests are sorted by prompt length (longest first, so an out-of-memory shows up at once),
then cut into batches whose padded size, rows x (longest prompt + max_new_tokens), fits a
token budget. Prompts are left-padded, so every row's new tokens start at the same column.
The model's own generation_config is not used: a checkpoint's repetition_penalty or top_k
(Qwen ships both) would silently change the R1 protocol (temperature + top_p only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from r1exp.inference.problems import request_prompt_ids
from r1exp.inference.process import local_rank, model_label, rank
from r1exp.inference.protocol import Request, Result, Sampling
from r1exp.inference.registry import register
from r1exp.models.loading import load_model, load_tokenizer

log = logging.getLogger(__name__)


def plan_batches(lengths: Sequence[int], max_new_tokens: int, batch_tokens: int,
                 max_rows: int) -> list[list[int]]:
    """Indices of `lengths` grouped into batches, longest prompts first.

    A batch costs rows x (its longest prompt + max_new_tokens) tokens of KV cache and logits;
    it grows while that stays within `batch_tokens` and `max_rows`. A single request larger
    than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        fits = (len(current) + 1) * (longest + max_new_tokens) <= batch_tokens
        if current and (len(current) >= max_rows or not fits):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a reply: the tokenizer's EOS and the model's configured ones."""
    ids = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return sorted(ids)


@contextmanager
def token_progress(rows: int, max_new_tokens: int) -> Iterator:
    """A tqdm bar over one batch's decoding steps, as a stopping criterion that never stops.

    One batch may decode for many minutes on a CPU (50 rows x 2048 tokens took 50); the bar
    shows the step and an ETA for the worst case (every row running to max_new_tokens).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import StoppingCriteria

    bar = tqdm(total=max_new_tokens, desc=f"decoding {rows} rows", unit="tok", leave=False,
               mininterval=2.0, dynamic_ncols=True)

    class Step(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            bar.update(1)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    try:
        yield Step()
    finally:
        bar.close()


@register("transformers")
class TransformersEngine:
    def __init__(self, sampling: Sampling, *, batch_tokens: int, max_rows: int,
                 chat_template: bool = True, load=None, label: str = ""):
        self.sampling, self.chat_template = sampling, chat_template
        self.batch_tokens, self.max_rows = batch_tokens, max_rows
        self.load, self.label = load, label  # load() -> (model, tokenizer)
        self.model = self.tokenizer = None

    @classmethod
    def from_config(cls, cfg, model_cfg, sampling: Sampling, *,
                    chat_template: bool = True) -> TransformersEngine:
        def load():
            tokenizer = load_tokenizer(model_cfg, cfg.paths.cache_dir)
            model = load_model(model_cfg, cfg.hardware, cfg.paths.cache_dir, training=False)
            if cfg.hardware.accelerator == "cuda":
                model = model.to(f"cuda:{local_rank()}")
            return model.eval(), tokenizer

        return cls(sampling, batch_tokens=int(cfg.inference.batch_tokens),
                   max_rows=int(cfg.hardware.per_device_eval_batch_size),
                   chat_template=chat_template, load=load, label=model_label(model_cfg))

    def check(self) -> None:
        pass

    def describe(self) -> dict:
        return {"engine": "transformers", "model": self.label}

    def open(self) -> None:
        if self.model is None:
            self.use(*self.load())

    def use(self, model, tokenizer) -> None:
        """Generate with `model` (already loaded, in eval mode) from now on."""
        import torch

        self.model, self.tokenizer = model, tokenizer
        self.stop_ids = stop_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]
        self.device = next(model.parameters()).device
        torch.manual_seed(self.sampling.seed + rank())

    def batches(self, prompts: Sequence[tuple]) -> list[list[tuple]]:
        lengths = [len(ids) for _, ids in prompts]
        plan = plan_batches(lengths, self.sampling.max_new_tokens, self.batch_tokens, self.max_rows)
        return [[prompts[i] for i in batch] for batch in plan]

    def generate(self, requests: Sequence[Request]) -> Iterator[list[Result]]:
        if not requests:
            return
        self.open()
        ids = request_prompt_ids(self.tokenizer, requests, self.chat_template)
        for batch in self.batches([(r.key, i) for r, i in zip(requests, ids)]):
            yield self.generate_batch(batch)

    def generate_batch(self, batch: Sequence[tuple]) -> list[Result]:
        import torch

        input_ids, attention_mask = self.left_padded([ids for _, ids in batch])
        with torch.inference_mode(), token_progress(len(batch),
                                                    self.sampling.max_new_tokens) as progress:
            output = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask,
                generation_config=self.generation_config(), stopping_criteria=[progress],
            )
        new = output[:, input_ids.shape[1]:].tolist()
        return [self.result(key, len(ids), tokens) for (key, ids), tokens in zip(batch, new)]

    def left_padded(self, prompts: Sequence[list[int]]):
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            n = len(prompt)
            ids[row, width - n:] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - n:] = 1
        return ids.to(self.device), mask.to(self.device)

    def generation_config(self):
        from transformers import GenerationConfig

        s = self.sampling
        sampled = {} if s.greedy else dict(temperature=s.temperature, top_p=s.top_p, top_k=0)
        return GenerationConfig(
            max_new_tokens=s.max_new_tokens, do_sample=not s.greedy, eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id, **sampled,
        )

    def result(self, key: tuple, prompt_tokens: int, tokens: list[int]) -> Result:
        stops = [i for i, t in enumerate(tokens) if t in self.stop_ids]
        end = stops[0] if stops else len(tokens)
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        return Result(key, text, "stop" if stops else "length", prompt_tokens,
                      end + 1 if stops else end)

    def close(self) -> None:
        self.model = None

