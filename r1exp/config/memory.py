"""Peak GPU memory per device of a training plan, estimated before anything is loaded.

A run that cannot fit should fail in the dry run, not after a long start-up (open-r1's most
common complaint). The estimate models what r1exp actually runs, term by term:

- weights, gradients, optimizer states. Without DeepSpeed the model trains in its load dtype
  (bf16 on GPU profiles): TRL loads it in bf16, so there are no fp32 master weights and
  torch's AdamW keeps its two moments in bf16 too (8 bytes per parameter). DeepSpeed ZeRO
  keeps fp32 master weights and moments (12 bytes per parameter) sharded over the data-parallel
  ranks (ZeRO paper: 2+2+12 bytes, stage 2 shards gradients and states, stage 3 weights too).
  LoRA trains only the adapters, which PEFT keeps in fp32; the base weights stay frozen.
- activations: tensors saved for backward per token and decoder layer, counted from the
  modules (Qwen2/Llama blocks): RMSNorm's fp32 copy unless Liger's kernel replaces it, q/k/v
  (k/v repeated to every head when the attention kernel needs it), attention output and its
  log-sum-exp, the MLP's gate/up/activation/product. Gradient checkpointing keeps each layer's
  input and recomputes one layer at a time.
- the LM head: TRL 1.16 computes log-probabilities in vocabulary tiles, so the 152k-wide
  logits are never materialised; its fp32 tiles, fp32 input gradient and fp32 weight gradient
  are the transient cost of the loss.
- grpo: the frozen reference model (beta > 0 without LoRA), the KV cache of one generation
  batch (transformers generation), or the memory vLLM reserves when colocated.
- the CUDA context and library workspaces.

The phases do not overlap: the peak is the largest of generation, forward/backward and the
optimizer step, on top of what persists (weights, optimizer states, reference model).
Validated against peaks measured on an H100 (docs/performance.md, tests/test_memory.py);
DeepSpeed and LoRA terms follow the arithmetic above but were not measured there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from omegaconf import OmegaConf

from r1exp.config.stage import Stage, VLLMUse
from r1exp.errors import ConfigError

log = logging.getLogger(__name__)

GB = 1e9  # hardware.device_memory_gb is read as decimal gigabytes
TIGHT_FRACTION = 0.85
# grpo has no prompt-length cap in the config; prompts of math datasets stay under this.
ASSUMED_PROMPT_TOKENS = 512
# CUDA context, cuBLAS/cuDNN workspaces and the allocator's slack beyond the live tensors.
# Measured on the H100 (torch 2.11, CUDA 13): see docs/performance.md.
RUNTIME_BYTES = 1.0e9
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# TRL's chunked log-prob LM head: tiles of 4096 tokens x 32768 vocabulary entries, fp32.
LOGPROB_TILE_TOKENS, LOGPROB_TILE_VOCAB = 4096, 32768
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, arch) -> Shape:
        return cls(arch.hidden_size, arch.num_layers, arch.num_attention_heads, arch.num_kv_heads,
                   arch.intermediate_size, arch.vocab_size, bool(arch.tie_word_embeddings))

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear of one decoder layer."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_linear_params(self) -> int:
        return sum(i * o for i, o in self.linear_shapes().values())

    def total_params(self) -> int:
        h = self.hidden
        per_layer = self.layer_linear_params() + h + 2 * self.kv_dim + 2 * h  # + qkv bias, norms
        head = 0 if self.tied else self.vocab * h
        return self.vocab * h + self.layers * per_layer + h + head

    def matmul_params(self) -> int:
        """Parameters that take part in a matmul per token (the LM head, not the lookup)."""
        return self.layers * self.layer_linear_params() + self.vocab * self.hidden

    def lora_params(self, rank: int, targets) -> int:
        chosen = (LINEARS if targets in ("all-linear", None)
                  else [t for t in targets if t in LINEARS])
        shapes = self.linear_shapes()
        return self.layers * rank * sum(sum(shapes[name]) for name in chosen)

    def lora_input_features(self, targets) -> int:
        chosen = (LINEARS if targets in ("all-linear", None)
                  else [t for t in targets if t in LINEARS])
        return sum(self.linear_shapes()[name][0] for name in chosen)


@dataclass(frozen=True)
class Workload:
    """What one training process holds: everything the estimate reads, config-free."""

    stage: str
    shape: Shape | None
    num_parameters: float
    dtype: str
    per_device_batch: int
    tokens_per_sequence: int         # sft: max_length; grpo: prompt + completion
    gradient_checkpointing: bool
    liger: bool
    attention: str                   # sdpa | eager | flex_attention | flash_attention_2 | ...
    distributed: str = "none"
    world_size: int = 1
    accumulation: int = 1
    fused_optimizer: bool = False
    lora_rank: int = 0               # 0: full fine-tune
    lora_targets: object = "all-linear"
    reference_model: bool = False
    generation_sequences: int = 0    # sequences in one transformers generation batch
    # The generation's KV cache stays allocated through training: graph generation keeps it
    # for its recorded graphs (r1exp/perf/graph_generation.py) instead of freeing it per batch.
    kv_cache_resident: bool = False
    vllm_bytes: float = 0.0          # memory a colocated vLLM engine reserves


@dataclass
class MemoryEstimate:
    terms: dict[str, float]          # bytes, in display order
    peak_phase: str
    total: float
    device_bytes: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        return self.total / self.device_bytes if self.device_bytes else None

    @property
    def fits(self) -> bool:
        return self.device_bytes is None or self.total <= self.device_bytes

    @property
    def tight(self) -> bool:
        return self.fraction is not None and self.fits and self.fraction > TIGHT_FRACTION

    def biggest_term(self) -> tuple[str, float]:
        return max(self.terms.items(), key=lambda item: item[1])

    def render(self) -> str:
        budget = (f"{self.device_bytes / GB:.1f} GB device ({self.fraction:.0%})"
                  if self.device_bytes else "device memory not checked")
        lines = [f"memory_per_device: {self.total / GB:.2f} GB estimated peak of {budget}",
                 f"  peak phase: {self.peak_phase}"]
        lines += [f"  {name}: {value / GB:.2f} GB" for name, value in self.terms.items() if value]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def estimate(work: Workload, device_bytes: float | None = None) -> MemoryEstimate:
    a = DTYPE_BYTES[work.dtype]
    total_params = work.shape.total_params() if work.shape else work.num_parameters
    lora = work.lora_rank > 0 and work.shape is not None
    trainable = work.shape.lora_params(work.lora_rank, work.lora_targets) if lora else total_params
    frozen = total_params - trainable if lora else 0
    weights, gradients, optimizer, optimizer_temp = _states(work, a, trainable, frozen)
    reference = (total_params * a / _shards(work, weights=True)
                 if work.reference_model and not lora else 0.0)

    notes: list[str] = []
    if work.shape is None:
        notes.append("model.architecture is unknown: activations and KV cache not estimated")
        activations = transient = kv_cache = prefill = 0.0
    else:
        activations = _activations(work, a)
        transient = _backward_transient(work, a)
        kv_cache, prefill = _kv_cache(work, a), _prefill(work, a)
    resident = kv_cache if work.kv_cache_resident else 0.0

    persistent = {"weights": weights, "optimizer_states": optimizer, "reference_model": reference,
                  "vllm_reserved": work.vllm_bytes, "resident_kv_cache": resident,
                  "cuda_runtime": RUNTIME_BYTES}
    # Gradients accumulate across micro-batches; at one micro-batch per step they appear while
    # backward frees activations, so only the LM head's (computed first) count at that peak.
    accumulated = gradients if work.accumulation > 1 else 0.0
    phases = {
        "forward/backward": {"activations": activations, "loss_and_backward_transients": transient,
                             "gradients": accumulated or _head_gradient(work, a)},
        "optimizer step": {"gradients": gradients, "optimizer_temporaries": optimizer_temp},
        "generation": {"kv_cache": kv_cache - resident + prefill, "gradients": accumulated},
    }
    phase, phase_terms = max(phases.items(), key=lambda item: sum(item[1].values()))
    terms = {**persistent, **phase_terms}
    return MemoryEstimate(terms=terms, peak_phase=phase, total=sum(terms.values()),
                          device_bytes=device_bytes, notes=notes)


def _shards(work: Workload, *, weights: bool) -> int:
    if work.distributed == "zero3" or (not weights and work.distributed == "zero2"):
        return work.world_size
    return 1


def _states(work: Workload, a: int, trainable: float, frozen: float):
    """Weights, gradients, optimizer states and the optimizer step's temporaries (bytes)."""
    lora = frozen > 0
    trainable_bytes = 4 if lora else a  # PEFT keeps adapters in fp32
    weights = (frozen * a + trainable * trainable_bytes) / _shards(work, weights=True)
    if work.distributed in ("zero2", "zero3"):
        # fp32 master copy + two fp32 moments, fp32 gradient partition, all sharded
        gradients = trainable * 4 / work.world_size
        optimizer = trainable * 12 / work.world_size
        return weights, gradients, optimizer, 0.0
    gradients = trainable * trainable_bytes
    if work.distributed == "ddp":
        gradients *= 2  # DDP's bucket copies of the gradients
    optimizer = 2 * trainable * trainable_bytes  # AdamW's moments, in the parameters' dtype
    # torch's foreach AdamW materialises one parameter-sized temporary (sqrt of the 2nd moment)
    temp = 0.0 if work.fused_optimizer else trainable * trainable_bytes
    return weights, gradients, optimizer, temp


def saved_bytes_per_token_layer(shape: Shape, a: int, liger: bool, attention: str) -> float:
    """Bytes one decoder layer saves for backward per token (module by module, see docstring)."""
    h, i = shape.hidden, shape.intermediate
    kv = h if repeats_kv(shape, attention) else shape.kv_dim
    norm = 2 * a * h + 4 if liger else 4 * h + 2 * a * h  # (input or fp32 copy) + output
    attn = a * (3 * h + 2 * kv) + 4 * shape.heads  # q, k, v, output, o_proj input; lse
    mlp = (3 if liger else 4) * a * i  # gate, up, (activation), product
    return 2 * norm + attn + mlp


def repeats_kv(shape: Shape, attention: str) -> bool:
    """Whether k/v are expanded to every query head before the kernel (and saved that way)."""
    if attention.startswith("flash_attention"):
        return False
    if attention == "flex_attention":  # transformers repeats unless the head count is a power of 2
        return shape.heads & (shape.heads - 1) != 0
    return shape.kv_heads != shape.heads  # sdpa / eager with a mask


def _layer_bytes(work: Workload, a: int) -> float:
    """Saved bytes per token of one decoder layer, adapters included."""
    shape = work.shape
    layer = saved_bytes_per_token_layer(shape, a, work.liger, work.attention)
    if work.lora_rank:  # adapters' dropout masks and inputs: ~2 bytes per adapted input
        layer += 2 * shape.lora_input_features(work.lora_targets)  # feature (H100 probe)
    return layer


def _activations(work: Workload, a: int) -> float:
    """What the forward leaves saved for backward (with checkpointing: the layer inputs)."""
    shape = work.shape
    tokens = work.per_device_batch * work.tokens_per_sequence
    h = shape.hidden
    final_norm = 2 * a * h + 4 if work.liger else 4 * h + 2 * a * h
    head_inputs = a * h + 16  # the LM head's gathered input, fp32 log-sum-exp and outputs
    per_layer = a * h if work.gradient_checkpointing else _layer_bytes(work, a)
    return tokens * (shape.layers * per_layer + final_norm + head_inputs)


def _backward_transient(work: Workload, a: int) -> float:
    """The largest of backward's passing costs, on top of the saved activations.

    First the LM head (fp32 logit tiles, fp32 input and weight gradients), with everything
    saved still alive; then, layer by layer, one layer's activation gradients (and, with
    checkpointing, that layer's recomputed activations) while earlier ones are freed.
    """
    shape = work.shape
    tokens = work.per_device_batch * work.tokens_per_sequence
    tile = min(tokens, LOGPROB_TILE_TOKENS) * min(shape.vocab, LOGPROB_TILE_VOCAB) * 4
    head = 2 * tile + tokens * 4 * shape.hidden + shape.vocab * shape.hidden * 4
    layer = tokens * a * (2 * shape.intermediate + 2 * shape.hidden)
    if work.gradient_checkpointing:
        layer += tokens * _layer_bytes(work, a)
    return max(head, layer)


def _head_gradient(work: Workload, a: int) -> float:
    if work.shape is None or work.lora_rank:
        return 0.0
    return work.shape.vocab * work.shape.hidden * a


def _kv_cache(work: Workload, a: int) -> float:
    tokens = work.generation_sequences * work.tokens_per_sequence
    return tokens * work.shape.layers * 2 * work.shape.kv_dim * a


def _prefill(work: Workload, a: int) -> float:
    """The prefill of the whole generation batch, without gradients: one layer's MLP at a time."""
    shape = work.shape
    return work.generation_sequences * work.tokens_per_sequence * a * (2 * shape.intermediate
                                                                        + 4 * shape.hidden)


# --- from a config ---------------------------------------------------------------------------


def workload_from_config(cfg, stage: Stage, world_size: int, per_device: int,
                         accumulation: int,
                         prompt_tokens: int = ASSUMED_PROMPT_TOKENS) -> Workload:
    """What one process of `stage` (a training stage) holds: the terms every training stage
    shares, completed by the stage's own (Stage.memory)."""
    hw, model = cfg.hardware, cfg.model
    arch = OmegaConf.select(cfg, "model.architecture", throw_on_missing=False)
    shape = Shape.from_config(arch) if arch is not None and not OmegaConf.is_missing(
        cfg.model, "architecture") else None
    lora = cfg.train.lora
    common = dict(
        shape=shape, num_parameters=float(model.num_parameters), dtype=hw.dtype,
        per_device_batch=per_device, gradient_checkpointing=bool(hw.gradient_checkpointing),
        # "auto" becomes flash-attn only where it is installed; plan for sdpa, which saves more.
        attention=hw.attn_implementation if hw.attn_implementation != "auto" else "sdpa",
        distributed=hw.distributed, world_size=world_size, accumulation=accumulation,
        fused_optimizer=bool(hw.perf.fused_optimizer) and cfg.train.optim == "adamw_torch",
        lora_rank=lora.r if lora.enabled else 0,
        lora_targets=lora.target_modules if isinstance(lora.target_modules, str)
        else list(lora.target_modules),
    )
    return stage.memory(cfg, common, accumulation, prompt_tokens)


def estimate_for_plan(cfg, stage: Stage, world_size: int, per_device: int,
                      accumulation: int) -> MemoryEstimate:
    hw = cfg.hardware
    device = hw.device_memory_gb * GB if hw.device_memory_gb is not None else None
    work = workload_from_config(cfg, stage, world_size, per_device, accumulation)
    result = estimate(work, device)
    if work.generation_sequences:
        result.notes.append(f"{stage.name} prompts assumed at most {ASSUMED_PROMPT_TOKENS} tokens")
    return result


def check_fit(cfg, stage: Stage, result: MemoryEstimate, world_size: int, per_device: int,
              accumulation: int) -> None:
    """ConfigError when the plan cannot fit, naming the biggest term and the knob that fixes it."""
    if result.fits:
        if result.tight:
            log.warning("tight memory plan: %.1f of %.1f GB (%.0f%%) per device; see the dry run",
                        result.total / GB, result.device_bytes / GB, 100 * result.fraction)
        return
    work = workload_from_config(cfg, stage, world_size, per_device, accumulation)
    name, value = result.biggest_term()
    head = (f"the plan does not fit: about {result.total / GB:.1f} GB per device at its peak "
            f"({result.peak_phase}) on hardware '{cfg.hardware.name}' with "
            f"{result.device_bytes / GB:.0f} GB; biggest term: {name} {value / GB:.1f} GB")
    raise ConfigError(f"{head}; {_remedy(cfg, stage, work, result.device_bytes)}")


def _remedy(cfg, stage: Stage, work: Workload, device: float) -> str:
    """The knobs that make it fit: one alone if possible, else the fewest, greedily."""
    fixes = _candidate_fixes(cfg, stage, work)
    sized = sorted(((estimate(w).total, knob, w) for knob, w in fixes), key=lambda t: t[0])
    alone = [(total, knob) for total, knob, _ in sized if total <= device]
    if alone:
        options = " or ".join(f"{knob} (~{total / GB:.1f} GB)" for total, knob in alone[:3])
        return f"fix: {options}"
    chosen, current = [], work
    for _ in range(len(fixes)):
        steps = [(estimate(w).total, knob, w) for knob, w in _candidate_fixes(cfg, stage, current)
                 if knob.split("=")[0] not in {c.split("=")[0] for c in chosen}]
        if not steps:
            break
        total, knob, current = min(steps, key=lambda t: t[0])
        chosen.append(knob)
        if total <= device:
            return f"fix: {' '.join(chosen)} together (~{total / GB:.1f} GB)"
    best = estimate(current)
    return (f"even with {' '.join(chosen)} it needs ~{best.total / GB:.1f} GB (the weights alone "
            f"are {best.terms['weights'] / GB:.1f} GB): use a smaller model (model=...) or a "
            f"profile with more memory per device (hardware=...)")


def _candidate_fixes(cfg, stage: Stage, work: Workload) -> list[tuple[str, Workload]]:
    fixes = []
    if not work.lora_rank and work.shape is not None:
        fixes.append(("train.lora.enabled=true", replace(work, lora_rank=cfg.train.lora.r)))
    if work.world_size > 1 and work.distributed != "zero3":
        fixes.append(("hardware.distributed=zero3", replace(work, distributed="zero3")))
    if not work.gradient_checkpointing:
        fixes.append(("hardware.gradient_checkpointing=true",
                      replace(work, gradient_checkpointing=True)))
    if work.per_device_batch > 1:
        smaller = _largest_divisor_below(cfg.train.global_batch_size // work.world_size,
                                         work.per_device_batch)
        if smaller:
            fixes.append((f"hardware.per_device_train_batch_size={smaller}",
                          replace(work, per_device_batch=smaller,
                                  generation_sequences=work.generation_sequences
                                  * smaller // work.per_device_batch)))
    return fixes + stage.memory_fixes(cfg, work)


def _largest_divisor_below(total: int, current: int) -> int:
    return next((d for d in range(current - 1, 0, -1) if total % d == 0), 0)


@dataclass(frozen=True)
class VLLMShare:
    """What vLLM takes on each GPU it generates on: its reserved share, and the weights in it."""

    key: str             # the knob that sets the share
    reserved: float      # bytes vLLM reserves per GPU (gpu_memory_utilization x device)
    weights: float       # bytes of model weights per GPU (split over tensor parallelism)
    where: str           # which GPUs

    def render(self) -> str:
        return (f"vllm_per_device: {self.reserved / GB:.2f} GB reserved ({self.key}) on "
                f"{self.where}, {self.weights / GB:.2f} GB of it weights, the rest KV cache")


def vllm_share(cfg, use: VLLMUse | None) -> VLLMShare | None:
    """vLLM's memory on the GPUs it uses, where this run generates with vLLM on a GPU.

    vLLM reserves gpu_memory_utilization of each GPU at start and fits weights plus KV cache
    into it, instead of growing a KV cache as transformers does: the plan counts that share
    (a colocated share is also part of the training estimate) and checks the weights fit in it.
    """
    hw = cfg.hardware
    if use is None or hw.accelerator != "cuda" or hw.device_memory_gb is None:
        return None
    key, fraction, split, where = (use.memory_key, use.gpu_memory_utilization, use.devices,
                                   use.where)
    share = VLLMShare(key, fraction * hw.device_memory_gb * GB,
                      float(cfg.model.num_parameters) * DTYPE_BYTES[hw.dtype] / max(split, 1),
                      where)
    if share.weights >= share.reserved:
        raise ConfigError(
            f"{key}={fraction} reserves {share.reserved / GB:.1f} GB on {where}, less than the "
            f"model's {share.weights / GB:.1f} GB of weights there, and vLLM needs room for a KV "
            f"cache too; raise {key} or use a larger card")
    return share
