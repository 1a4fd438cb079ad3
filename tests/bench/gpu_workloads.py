"""One variant of the GPU benchmark, run in a process of its own by `tests.bench.gpu`.

A variant trains a random-weight model of a conf/model shape for a few steps, either the way
a plain TRL script would or through r1exp's own argument builders and fast paths
(`r1exp.stages.training`, `r1exp.stages.grpo.grpo_arguments`, `r1exp.perf`), and reports
step time, trained tokens per second and peak device memory as JSON. Only random weights:
the GPU machines have no hub, and throughput does not depend on the weights' values.
Generation lengths are fixed (`min_new_tokens = max_new_tokens`) so runs do equal work.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from r1exp.resources import CONF_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
# Architecture of a CPU-sized model for testing the bench's logic without a GPU.
TINY_ARCHITECTURE = dict(hidden_size=64, num_layers=2, num_attention_heads=4, num_kv_heads=2,
                         intermediate_size=128, vocab_size=1024, tie_word_embeddings=True)
SFT_DOCUMENTS = 600
GRPO_PROMPTS = 512


@dataclass
class Variant:
    name: str
    kind: str                      # sft | grpo | matmul | env
    side: str = "r1exp"            # r1exp | trl
    model: str = "qwen2.5-0.5b-instruct"
    overrides: list[str] = field(default_factory=list)  # r1exp config overrides
    warmup: int = 3                # steps before the timed window (compilation happens here)
    measure: int = 10              # timed steps
    seq: int = 2048                # sft: max_length; grpo: max_completion_length
    batch: int = 8                 # per-device batch (sft sequences, grpo completions)
    packing: bool = True           # sft
    generations: int = 8           # grpo: completions per prompt
    steps_per_generation: int = 1  # grpo
    prompt_tokens: int = 64        # grpo
    beta: float = 0.0              # grpo
    accumulation: int = 1          # micro-batches per optimizer step (grpo: per generation)
    vllm: bool = False             # grpo: generate with vLLM colocated on the training GPU
    alloc_conf: str | None = None  # PYTORCH_CUDA_ALLOC_CONF for this variant, in place of r1exp's
    # grpo, r1exp with colocated vLLM: SamplingParams extras in place of r1exp's own
    # (COLOCATED_VLLM_SAMPLING); {} measures what they give
    vllm_sampling: dict | None = None
    liger: bool = False            # plain TRL: use_liger_kernel=True (its strongest one-flag peer)
    gradient_checkpointing: bool = False
    role: str = "speed"            # speed | memory (memory: few steps, peak only)


def run_variant(variant: Variant, out_dir: Path, tiny: bool) -> dict:
    """Run one variant in this process; return its measurements."""
    if variant.kind == "env":
        return _environment()
    if variant.kind == "matmul":
        return _matmul_rate()
    import torch

    cuda = torch.cuda.is_available() and not tiny
    if cuda:
        torch.cuda.init()
        torch.cuda.synchronize()
    before = _device_used() if cuda else 0
    cfg, plan = compose(variant, out_dir, tiny, cuda)
    model_dir = _random_model(cfg, out_dir / "model", cuda)
    tokenizer = _tokenizer(model_dir)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer = _step_timer(cuda)
    if variant.kind == "sft":
        trainer, counter = _sft_trainer(variant, cfg, plan, model_dir, tokenizer, out_dir)
    else:
        trainer, counter = _grpo_trainer(variant, cfg, plan, model_dir, tokenizer, out_dir)
    trainer.add_callback(timer)
    trainer.train()
    result = {"name": variant.name, "variant": asdict(variant), **_timing(variant, timer, counter)}
    result["log"] = _logged_means(trainer.state.log_history)
    result["generate_s"] = getattr(counter, "generate_s", None)
    if getattr(counter, "phases", None):
        result["phases"] = phase_means(counter.phases, variant.warmup, variant.measure)
    if cuda:
        result.update(_memory(before))
    if variant.kind == "sft":
        result.update(_saved_activations(trainer))
    result["estimate_gb"] = estimate_gb(variant, cfg, plan)
    result["mfu_flops_per_token"] = _flops_per_token(cfg, counter)
    return result


# --- configuration ---------------------------------------------------------------------------


def compose(variant: Variant, out_dir: Path, tiny: bool, cuda: bool):
    """The r1exp config of this variant (both sides read the shape and sizes from it)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from r1exp.launch.controller import prepare

    total_steps = variant.warmup + variant.measure
    overrides = [
        f"model={variant.model}", "logger=none", f"paths.output_dir={out_dir / 'run'}",
        f"paths.cache_dir={out_dir / 'cache'}", f"hardware={'1xh100' if cuda else 'cpu'}",
        f"stage={variant.kind}", f"train.max_steps={total_steps}", "train.save_steps=100000",
        "train.logging_steps=5",
        f"hardware.gradient_checkpointing={variant.gradient_checkpointing}",
    ]
    overrides += [f"hardware.per_device_train_batch_size={variant.batch}",
                  f"train.global_batch_size={variant.batch * variant.accumulation}"]
    if variant.kind == "sft":
        overrides += [f"sft.max_length={variant.seq}", f"sft.packing={variant.packing}"]
    else:
        spg = variant.steps_per_generation
        overrides += [f"grpo.max_completion_length={variant.seq}",
                      f"grpo.num_generations={variant.generations}", f"grpo.beta={variant.beta}",
                      f"grpo.steps_per_generation={'null' if spg == 1 else spg}",
                      "grpo.temperature=1.0", "grpo.top_p=1.0", "reward=[accuracy]"]
        if variant.vllm:
            overrides += ["inference.engine=vllm", "hardware.vllm.mode=colocate"]
    if tiny:
        architecture = dict(TINY_ARCHITECTURE)
        if variant.vllm:  # vLLM's CPU attention has no kernel for head_dim 16: one head of 64
            architecture.update(num_attention_heads=1, num_kv_heads=1)
        overrides += [f"model.architecture.{k}={v}" for k, v in architecture.items()]
    overrides += variant.overrides
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose("config", overrides=overrides)
    return prepare(composed)  # validation, plan and memory check exactly as `r1exp` runs them


def _random_model(cfg, model_dir: Path, cuda: bool) -> str:
    """A random-weight Qwen2 of the config's architecture, saved with a word-level tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch = cfg.model.architecture
    config = Qwen2Config(
        hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_attention_heads, num_key_value_heads=arch.num_kv_heads,
        intermediate_size=arch.intermediate_size, vocab_size=arch.vocab_size,
        tie_word_embeddings=arch.tie_word_embeddings, max_position_embeddings=32768,
        rope_theta=1_000_000.0, bos_token_id=1, eos_token_id=1, pad_token_id=0,
    )
    dtype = torch.bfloat16 if cuda else torch.float32
    with torch.device("cuda" if cuda else "cpu"):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(dtype)
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    model.save_pretrained(model_dir)
    del model
    _word_tokenizer(arch.vocab_size).save_pretrained(model_dir)
    if cuda:
        torch.cuda.empty_cache()
    return str(model_dir)


def _word_tokenizer(vocab_size: int):
    """Token i is the word `t<i>`: any id sequence round-trips through text, no hub needed."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, **{f"t{i}": i for i in range(2, vocab_size)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<eos>")


def _tokenizer(model_dir: str):
    # Not AutoTokenizer: it would pick Qwen2's tokenizer class for this config's model type.
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(model_dir)


# --- sft ---------------------------------------------------------------------------------------


def sft_documents(vocab: int, seq: int, count: int = SFT_DOCUMENTS,
                  seed: int = 0) -> list[list[int]]:
    """Documents of uniform random length in [seq/8, seq): the padded-batch worst case."""
    rng = random.Random(seed)
    return [[rng.randrange(2, vocab) for _ in range(rng.randrange(seq // 8, seq))]
            for _ in range(count)]


def _sft_trainer(variant: Variant, cfg, plan, model_dir: str, tokenizer, out_dir: Path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    documents = sft_documents(cfg.model.architecture.vocab_size, variant.seq)
    data = Dataset.from_dict({"input_ids": documents})
    if variant.side == "trl":
        args = SFTConfig(**_plain_trl_args(variant, cfg, out_dir), max_length=variant.seq,
                         packing=variant.packing, use_liger_kernel=variant.liger)
    else:
        from r1exp.stages.training import model_init_kwargs, peft_config, trainer_kwargs

        s = cfg.sft  # as r1exp/stages/sft.py builds its SFTConfig
        args = SFTConfig(**trainer_kwargs(cfg, plan), model_init_kwargs=model_init_kwargs(cfg),
                         max_length=s.max_length, packing=s.packing,
                         packing_strategy=s.packing_strategy)
    lora = None if variant.side == "trl" else peft_config(cfg)
    trainer = SFTTrainer(model=model_dir, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=lora)
    counter = _TokenCounter(trainer.data_collator, documents)
    trainer.data_collator = counter
    return trainer, counter


def _plain_trl_args(variant: Variant, cfg, out_dir: Path) -> dict:
    """What a user's plain TRL script sets: the same batch, steps and dtype; TRL's defaults else."""
    import torch

    cuda = cfg.hardware.accelerator == "cuda"
    return dict(
        output_dir=str(out_dir / "trl"), per_device_train_batch_size=variant.batch,
        gradient_accumulation_steps=variant.accumulation,
        max_steps=variant.warmup + variant.measure,
        logging_steps=5, save_strategy="no", report_to="none",
        bf16=cuda and torch.cuda.is_available(),
        use_cpu=not cuda, gradient_checkpointing=variant.gradient_checkpointing,
        learning_rate=cfg.train.learning_rate, seed=cfg.seed,
    )


# --- grpo --------------------------------------------------------------------------------------


def bench_reward(completions, **_) -> list[float]:
    """Cheap and varied, so advantages are non-zero; identical on both sides."""
    return [float(sum(len(word) for word in str(c).split()) % 7) for c in completions]


def _grpo_trainer(variant: Variant, cfg, plan, model_dir: str, tokenizer, out_dir: Path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rng = random.Random(0)
    vocab = cfg.model.architecture.vocab_size
    prompts = [" ".join(f"t{rng.randrange(2, vocab)}" for _ in range(variant.prompt_tokens))
               for _ in range(GRPO_PROMPTS)]
    data = Dataset.from_dict({"prompt": prompts})
    # Equal work: no early EOS on either side (vLLM's SamplingParams name it min_tokens).
    fixed_length = {"min_tokens" if variant.vllm else "min_new_tokens": variant.seq}
    if variant.vllm:
        # The profile's vLLM environment (the CPU build's KV-cache size), as r1exp's controller
        # sets it for its workers; the same for both sides.
        for key, value in cfg.hardware.env.items():
            if key.startswith("VLLM_"):
                os.environ.setdefault(key, str(value))
    if variant.side == "trl":
        spg = variant.steps_per_generation
        args = GRPOConfig(**_plain_trl_args(variant, cfg, out_dir),
                          num_generations=variant.generations, max_completion_length=variant.seq,
                          beta=variant.beta, temperature=1.0,
                          steps_per_generation=None if spg == 1 else spg,
                          generation_kwargs=fixed_length,
                          # what open-r1's users set; TRL's defaults for everything else
                          **(dict(use_vllm=True, vllm_mode="colocate") if variant.vllm else {}))
    else:
        from r1exp.stages.grpo import grpo_arguments

        args = grpo_arguments(cfg, plan)
        sampling = args.pop("generation_kwargs", {})
        if variant.vllm_sampling is not None:
            sampling = variant.vllm_sampling
        args = GRPOConfig(**args, reward_weights=[1.0],
                          generation_kwargs={**sampling, **fixed_length})
    trainer = GRPOTrainer(model=model_dir, reward_funcs=[bench_reward], args=args,
                          train_dataset=data, processing_class=tokenizer)
    if variant.side == "r1exp":
        from r1exp.perf import accelerate_trainer
        from r1exp.stages import stage

        accelerate_trainer(trainer, cfg, stage("grpo"))  # as r1exp/stages/grpo.py does
    if variant.vllm and cfg.hardware.accelerator == "cpu":
        from r1exp.stages.vllm_policy import use_reloading_sync

        use_reloading_sync(trainer)  # the CPU build cannot take TRL's weight push (both sides)
    counter = _FixedTokens(variant.batch * variant.accumulation * variant.seq)
    if not variant.vllm:
        _time_generate(trainer.model, counter.generate_s)
    counter.phases = _phase_timer(trainer)
    return trainer, counter


def _time_generate(model, sink: list[float]) -> None:
    """Record how long each generate() call takes (device work included)."""
    import torch

    generate = model.generate

    def timed(*args, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = generate(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        sink.append(round(time.perf_counter() - start, 4))
        return out

    model.generate = timed


def _phase_timer(trainer) -> list[tuple[str, int, float]]:
    """Time GRPO's phases, device work included: (phase, global step, seconds) per call.

    training_step = prepare inputs (on generating steps: weight sync, generation, rewards,
    scoring log-probs) + loss forward + backward; the optimizer and the rest of the step are
    what the step time holds beyond training_step.
    """
    import functools

    import torch

    calls: list[tuple[str, int, float]] = []
    scoring = {"active": False}

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def timed(owner, method_name: str, phase, mark_scoring: bool = False):
        method = getattr(owner, method_name)

        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            sync()
            start = time.perf_counter()
            if mark_scoring:
                scoring["active"] = True
            try:
                return method(*args, **kwargs)
            finally:
                if mark_scoring:
                    scoring["active"] = False
                sync()
                name = phase() if callable(phase) else phase
                calls.append((name, trainer.state.global_step, time.perf_counter() - start))

        setattr(owner, method_name, wrapper)

    timed(trainer, "training_step", "training_step")
    timed(trainer, "_generate_and_score_completions", "generate_and_score", mark_scoring=True)
    timed(trainer, "_calculate_rewards", "rewards")
    timed(trainer, "compute_loss", "loss_forward")
    timed(trainer, "_get_per_token_logps_and_entropies",
          lambda: "scoring_logprobs" if scoring["active"] else "loss_logprobs")
    generation = getattr(trainer, "vllm_generation", None)
    if generation is not None:
        timed(generation, "generate", "generation")
        timed(generation, "sync_weights", "weight_sync")
    else:  # transformers generation reads the training weights: nothing to sync
        timed(trainer, "_generate_single_turn", "generation")
    return calls


def phase_means(calls: list, warmup: int, measure: int) -> dict[str, float]:
    """Seconds per optimizer step of each phase over the timed steps."""
    totals: dict[str, float] = {}
    for name, step, seconds in calls:
        if warmup <= step < warmup + measure:
            totals[name] = totals.get(name, 0.0) + seconds
    return {name: round(total / measure, 4) for name, total in totals.items()}


# --- measurement -------------------------------------------------------------------------------


class _TokenCounter:
    """Wraps the collator: trained (label != -100) tokens of each batch, in step order."""

    def __init__(self, collator, documents):
        self.collator = collator
        self.per_batch: list[int] = []
        lengths = [len(d) for d in documents]
        self.mean_context = sum(n * n for n in lengths) / sum(lengths)  # token-weighted

    def __call__(self, examples):
        batch = self.collator(examples)
        self.per_batch.append(int((batch["labels"] != -100).sum()))
        return batch

    def __getattr__(self, name):
        return getattr(self.collator, name)


class _FixedTokens:
    """grpo: every step trains the same number of completion tokens (fixed lengths)."""

    def __init__(self, per_step: int):
        self.per_step = per_step
        self.per_batch = None
        self.mean_context = None
        self.generate_s: list[float] = []
        self.phases: list[tuple[str, int, float]] = []


def _step_timer(cuda: bool):
    """A callback stamping the end of every optimizer step (after the device finished it)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []
            self.start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    return StepTimer()


def _timing(variant: Variant, timer, counter) -> dict:
    ends, w, m = timer.ends, variant.warmup, variant.measure
    out = {"steps": len(ends), "first_steps_s": round(ends[w - 1] - timer.start, 2) if w else 0.0}
    if len(ends) < w + m or m < 1:
        return out
    seconds = ends[w + m - 1] - (ends[w - 1] if w else timer.start)
    if counter.per_batch is not None:
        tokens = sum(counter.per_batch[w:w + m])
    else:
        tokens = counter.per_step * m
    out.update(step_s=seconds / m, tokens_per_s=tokens / seconds, timed_tokens=tokens)
    return out


def _logged_means(history: list[dict]) -> dict:
    """The trainer's logged numbers (loss, reward, ...), averaged over the logged steps."""
    sums: dict[str, list[float]] = {}
    for entry in history:
        for key, value in entry.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                sums.setdefault(key, []).append(float(value))
    return {k: round(sum(v) / len(v), 4) for k, v in sums.items()}


def _device_used() -> int:
    import torch

    free, total = torch.cuda.mem_get_info()
    return total - free


def _memory(before: int) -> dict:
    """Peak device memory: the allocator's peak plus what lives outside it (context, libraries)."""
    import torch

    torch.cuda.synchronize()
    outside = _device_used() - torch.cuda.memory_reserved()
    return {
        "context_gb": before / 1e9,
        "outside_allocator_gb": outside / 1e9,
        "max_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
        "max_reserved_gb": torch.cuda.max_memory_reserved() / 1e9,
        "peak_gb": (torch.cuda.max_memory_reserved() + outside) / 1e9,
    }


def _saved_activations(trainer) -> dict:
    """Bytes the forward saves for backward on one batch (unique storages), and its tokens.

    Separates the activation term from the allocator's transients when the peak disagrees
    with the estimate.
    """
    import torch

    batch = next(iter(trainer.get_train_dataloader()))
    batch = trainer._prepare_inputs(batch)
    seen: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:  # linears save their weight: not an activation
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    trainer.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = trainer.compute_loss(trainer.model, batch)
    tokens = int(batch["input_ids"].numel())
    del loss
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return {"saved_gb": sum(seen.values()) / 1e9, "saved_tokens": tokens}


def estimate_gb(variant: Variant, cfg, plan) -> float:
    """r1exp's estimate for this run (plain TRL runs: the same model with TRL's settings)."""
    from dataclasses import replace

    from r1exp.config.memory import estimate, workload_from_config
    from r1exp.stages import stage

    work = workload_from_config(cfg, stage(cfg.stage), plan.world_size,
                                plan.per_device_train_batch_size,
                                plan.gradient_accumulation_steps,
                                prompt_tokens=variant.prompt_tokens)
    if variant.side == "trl":  # TRL's defaults: fused AdamW, sdpa, no Liger
        work = replace(work, fused_optimizer=True, attention="sdpa", liger=False)
    return round(estimate(work).total / 1e9, 3)


def _flops_per_token(cfg, counter) -> float | None:
    """Model FLOPs per trained token: 6 x matmul parameters + attention over the document."""
    from r1exp.config.memory import Shape

    if counter.mean_context is None:
        return None
    shape = Shape.from_config(cfg.model.architecture)
    return 6 * shape.matmul_params() + 12 * shape.layers * shape.hidden * counter.mean_context


def _matmul_rate() -> dict:
    """The card's bf16 matmul rate, the MFU denominator (median of timed 8192^3 products)."""
    import torch

    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(5):
        a @ b
    times = []
    for _ in range(30):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return {"name": "matmul", "bf16_tflops": 2 * n ** 3 / times[len(times) // 2] / 1e12,
            "device": torch.cuda.get_device_name()}


def _environment() -> dict:
    import importlib.metadata as md

    versions = {}
    for package in ("torch", "transformers", "trl", "datasets", "accelerate", "liger-kernel",
                    "pyarrow", "triton", "hydra-core", "omegaconf"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return {"name": "env", "versions": versions,
            "env": {k: os.environ.get(k) for k in ("PYTORCH_CUDA_ALLOC_CONF",)}}


def main_variant(variant_json: str, out_dir: str, result_path: str, tiny: bool) -> None:
    variant = Variant(**json.loads(variant_json))
    result = run_variant(variant, Path(out_dir), tiny)
    Path(result_path).write_text(json.dumps(result, indent=1, default=str))
