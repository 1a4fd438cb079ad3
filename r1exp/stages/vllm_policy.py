"""GRPO's vLLM generation: the policy reaching vLLM, and proof that it did.

TRL owns the vLLM engine (colocated in the training process, or a server started by the
controller, r1exp/launch/vllm_server.py) and pushes the trainer's weights to it before each
generation. Two things are added here:

- `use_reloading_sync`: on vLLM's CPU build TRL's colocated push fails. The CPU backend repacks
  each linear layer's weight for its GEMM kernels after loading and drops the parameter, so the
  `model.load_weights` call TRL makes finds no `weight_loader` ('Parameter' object has no
  attribute 'weight_loader'). vLLM's own `reload_weights` undoes and redoes that repacking, so
  the push goes through it there.
- `PolicySyncCheck`: a silent failure to push looks like a policy that never learns. Every
  `grpo.vllm_sync_check_steps` steps the callback pushes the weights the way TRL does, asks vLLM
  for the log-probs of a fixed prompt and reply, and logs how far they are from the trainer's
  own (`vllm_sync/logprob_gap`) and from vLLM's before training (`vllm_sync/logprob_change`).
  Synced weights give a gap far below the change.
"""

from __future__ import annotations

import logging
import types

from transformers import TrainerCallback

log = logging.getLogger(__name__)

# The fixed reply whose log-probs both sides compute: long enough to average out kernel noise.
PROBE_REPLY = ("Let me add the numbers step by step. First, 3 + 4 = 7. Then 7 + 5 = 12. "
               "So the final answer is \\boxed{12}.")


def use_reloading_sync(trainer) -> None:
    """Push colocated weights through vLLM's reload API where the CPU backend needs it."""
    generation = getattr(trainer, "vllm_generation", None)
    if generation is None or generation.mode != "colocate":
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner

    def sync_weights(self):
        # TRL's iterator yields vLLM's parameter names, also for PEFT, FSDP and ZeRO-3.
        runner.reload_weights(weights_iterator=self._iter_named_params())
        self.llm.reset_prefix_cache()

    generation.sync_weights = types.MethodType(sync_weights, generation)


class PolicySyncCheck(TrainerCallback):
    def __init__(self, trainer, prompt_messages: list[dict[str, str]], every_steps: int):
        self.trainer, self.every_steps = trainer, every_steps
        tokenizer = trainer.processing_class
        prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False,
                                               add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(PROBE_REPLY, add_special_tokens=False)["input_ids"]
        self.token_ids = list(prompt_ids) + list(reply_ids)
        self.reply_start = len(prompt_ids)
        self.before: list[float] | None = None
        self.pending: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.before = self._vllm_logprobs()

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_steps <= 0 or state.global_step % self.every_steps:
            return
        self.trainer.vllm_generation.sync_weights()  # what TRL does before its next generation
        served = self._vllm_logprobs()
        trained = self._trainer_logprobs()
        if served is None:  # ranks other than the server's client took part in the push only
            return
        gap = _mean_abs_diff(served, trained)
        change = _mean_abs_diff(served, self.before)
        self.pending = {"vllm_sync/logprob_gap": gap, "vllm_sync/logprob_change": change}
        log.info("vLLM policy check at step %d: log-prob gap to the trainer %.2e, change since "
                 "the start %.2e", state.global_step, gap, change)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.pending:
            logs.update(self.pending)
            self.pending = {}

    def _vllm_logprobs(self) -> list[float] | None:
        generation = self.trainer.vllm_generation
        if generation.mode == "colocate":
            from vllm import SamplingParams

            params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
            output = generation.llm.generate([{"prompt_token_ids": self.token_ids}], params,
                                             use_tqdm=False)[0]
            per_position = output.prompt_logprobs
        elif self.trainer.accelerator.is_main_process:
            per_position = _server_prompt_logprobs(generation.vllm_client.base_url,
                                                   self.token_ids)
        else:
            return None
        return [_logprob_of(per_position[i], self.token_ids[i])
                for i in range(self.reply_start, len(self.token_ids))]

    def _trainer_logprobs(self) -> list[float]:
        import torch

        model = self.trainer.model
        ids = torch.tensor([self.token_ids], device=self.trainer.accelerator.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
        targets = ids[0, 1:]
        chosen = logprobs.gather(-1, targets[:, None])[:, 0]
        return chosen[self.reply_start - 1:].tolist()


def _server_prompt_logprobs(base_url: str, token_ids: list[int]) -> list:
    """vLLM's completions endpoint returns each prompt token's log-prob (`prompt_logprobs`)."""
    import requests

    models = requests.get(f"{base_url}/v1/models", timeout=30).json()["data"]
    reply = requests.post(f"{base_url}/v1/completions", timeout=120, json={
        "model": models[0]["id"], "prompt": token_ids, "max_tokens": 1, "temperature": 0.0,
        "prompt_logprobs": 0,
    })
    reply.raise_for_status()
    return [None if entry is None else {int(k): v for k, v in entry.items()}
            for entry in reply.json()["choices"][0]["prompt_logprobs"]]


def _logprob_of(entry, token_id: int) -> float:
    value = entry[token_id]
    if isinstance(value, dict):  # the server's JSON
        return float(value["logprob"])
    return float(value.logprob)  # vLLM's Logprob object


def _mean_abs_diff(a: list[float], b: list[float]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)
