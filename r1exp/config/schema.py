"""Typed schema of the composed config.

The YAML under conf/ is the single source of truth for default values; these dataclasses
only declare names and types (every field is MISSING), so merging the composed config into
them rejects unknown keys and wrong types, and a knob missing from YAML is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


@dataclass
class GGUFSource:
    package: str = MISSING
    version: str = MISSING
    file: str = MISSING


@dataclass
class ModelArchitecture:
    """The network's shape, for the memory-fit check (r1exp/config/memory.py)."""

    hidden_size: int = MISSING
    num_layers: int = MISSING
    num_attention_heads: int = MISSING
    num_kv_heads: int = MISSING
    intermediate_size: int = MISSING
    vocab_size: int = MISSING
    tie_word_embeddings: bool = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    path: Optional[str] = MISSING
    revision: Optional[str] = MISSING
    gguf: Optional[GGUFSource] = MISSING
    trust_remote_code: bool = MISSING
    chat_template: Optional[str] = MISSING
    num_parameters: float = MISSING
    architecture: Optional[ModelArchitecture] = MISSING


@dataclass
class DatasetConfig:
    name: str = MISSING
    source: str = MISSING
    path: Optional[str] = MISSING
    config_name: Optional[str] = MISSING
    revision: Optional[str] = MISSING
    train_split: str = MISSING
    test_split: Optional[str] = MISSING
    rename: Dict[str, str] = MISSING
    prompt_column: Optional[str] = MISSING
    answer_column: Optional[str] = MISSING
    messages_column: Optional[str] = MISSING
    offline_path: Any = MISSING  # null, one path for every split, or {split: path}
    max_samples: Optional[int] = MISSING
    generator: Optional[Dict[str, Any]] = MISSING
    # Entries {path, source, config_name, revision, split, weight, columns, rename, offline_path};
    # r1exp.data.loading validates them (each key is optional but `path`).
    mixture: Optional[List[Dict[str, Any]]] = MISSING
    test_size: Optional[float] = MISSING
    shuffle: bool = MISSING


@dataclass
class VLLMConfig:
    mode: str = MISSING
    server_devices: int = MISSING
    gpu_memory_utilization: float = MISSING
    enforce_eager: bool = MISSING


@dataclass
class PerfConfig:
    """Speed levers (r1exp/perf/fast_paths.py). All keep the maths the same except sft_packing,
    which changes what train.global_batch_size counts (packed rows)."""

    liger_kernel: bool = MISSING
    torch_compile: bool = MISSING
    fused_optimizer: bool = MISSING
    packed_attention: str = MISSING
    compiled_generation: bool = MISSING
    sft_packing: bool = MISSING


@dataclass
class HardwareConfig:
    name: str = MISSING
    accelerator: str = MISSING
    num_nodes: int = MISSING
    devices_per_node: int = MISSING
    device_memory_gb: Optional[float] = MISSING
    dtype: str = MISSING
    attn_implementation: str = MISSING
    per_device_train_batch_size: int = MISSING
    per_device_eval_batch_size: int = MISSING
    gradient_checkpointing: bool = MISSING
    distributed: str = MISSING
    inference_engine: str = MISSING  # inference.engine's default on this hardware
    vllm: VLLMConfig = MISSING
    perf: PerfConfig = MISSING
    lacks: List[str] = MISSING
    env: Dict[str, str] = MISSING


@dataclass
class LoraConfig:
    enabled: bool = MISSING
    r: int = MISSING
    alpha: int = MISSING
    dropout: float = MISSING
    target_modules: Any = MISSING


@dataclass
class TrainConfig:
    global_batch_size: int = MISSING
    learning_rate: float = MISSING
    lr_scheduler_type: str = MISSING
    warmup_ratio: float = MISSING
    weight_decay: float = MISSING
    max_grad_norm: float = MISSING
    optim: str = MISSING
    num_train_epochs: float = MISSING
    max_steps: int = MISSING
    logging_steps: int = MISSING
    save_steps: int = MISSING
    save_total_limit: Optional[int] = MISSING
    keep_checkpoints: bool = MISSING
    benchmarks: List[str] = MISSING
    lora: LoraConfig = MISSING


@dataclass
class SFTConfig:
    max_length: int = MISSING
    packing: bool = MISSING
    packing_strategy: str = MISSING
    loss_on: str = MISSING
    trace_format: str = MISSING
    completion_column: Optional[str] = MISSING
    system_prompt: Optional[str] = MISSING
    eos_token: Optional[str] = MISSING
    lr_scheduler_kwargs: Dict[str, Any] = MISSING
    eval_steps: Optional[int] = MISSING


@dataclass
class GRPOConfig:
    num_generations: int = MISSING
    max_completion_length: int = MISSING
    temperature: float = MISSING
    top_p: float = MISSING
    beta: float = MISSING
    epsilon: float = MISSING
    loss_type: str = MISSING
    scale_rewards: str = MISSING
    num_iterations: int = MISSING
    mask_truncated_completions: bool = MISSING
    steps_per_generation: Optional[int] = MISSING
    system_prompt: Optional[str] = MISSING
    log_completions_steps: int = MISSING
    vllm_sync_check_steps: int = MISSING


@dataclass
class InferenceVLLMConfig:
    tensor_parallel_size: int = MISSING
    gpu_memory_utilization: float = MISSING
    max_model_len: Optional[int] = MISSING


@dataclass
class InferenceOpenAIConfig:
    endpoint: Optional[str] = MISSING
    model: Optional[str] = MISSING
    max_in_flight: int = MISSING
    request_timeout_s: float = MISSING
    max_retries: int = MISSING
    retry_backoff_s: float = MISSING
    retry_backoff_max_s: float = MISSING


@dataclass
class InferenceConfig:
    """The engine eval, generate and GRPO's rollouts generate with (conf/inference/)."""

    engine: str = MISSING
    batch_tokens: int = MISSING
    vllm: InferenceVLLMConfig = MISSING
    openai: InferenceOpenAIConfig = MISSING


@dataclass
class EvalLightevalConfig:
    env: str = MISSING
    engine: str = MISSING
    model_args: Dict[str, Any] = MISSING


@dataclass
class EvalConfig:
    benchmarks: List[str] = MISSING
    num_samples: int = MISSING
    num_samples_by_benchmark: Dict[str, int] = MISSING
    pass_k: List[int] = MISSING
    temperature: float = MISSING
    top_p: float = MISSING
    greedy: bool = MISSING
    max_new_tokens: int = MISSING
    limit: Optional[int] = MISSING
    evaluator: str = MISSING
    prompt: str = MISSING
    choice_prompt: str = MISSING
    system_prompt: Optional[str] = MISSING
    use_chat_template: bool = MISSING
    score_timeout_s: float = MISSING
    lighteval: EvalLightevalConfig = MISSING


@dataclass
class BenchmarkLightevalConfig:
    gold_column: Optional[str] = MISSING
    gold_format: str = MISSING


@dataclass
class BenchmarkConfig(DatasetConfig):
    """A dataset config (conf/benchmark/<name>.yaml pulls conf/dataset/<name>.yaml) plus how
    to evaluate it."""

    split: str = MISSING
    task: str = MISSING
    choice_columns: Optional[List[str]] = MISSING
    id_column: Optional[str] = MISSING
    lighteval: BenchmarkLightevalConfig = MISSING


@dataclass
class GenerateConfig:
    num_generations: int = MISSING
    temperature: float = MISSING
    top_p: float = MISSING
    max_new_tokens: int = MISSING
    prompt_template: str = MISSING
    limit: Optional[int] = MISSING
    keep: str = MISSING
    score_timeout_s: float = MISSING
    output_dir: str = MISSING
    shard_size: int = MISSING
    commit_interval_s: float = MISSING
    push_to_hub: Optional[str] = MISSING


@dataclass
class LoggerConfig:
    name: str = MISSING
    tracking_uri: Optional[str] = MISSING
    experiment_name: str = MISSING


@dataclass
class PathsConfig:
    output_dir: str = MISSING
    cache_dir: str = MISSING
    data_dir: str = MISSING


@dataclass
class RunConfig:
    seed: int = MISSING
    dry_run: bool = MISSING
    resume: str = MISSING
    stage: str = MISSING
    paths: PathsConfig = MISSING
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    hardware: HardwareConfig = MISSING
    logger: LoggerConfig = MISSING
    # The knob nodes of the stages: a run holds those its stage reads (r1exp.config.stage_nodes),
    # the others are None.
    train: Optional[TrainConfig] = None
    sft: Optional[SFTConfig] = None
    grpo: Optional[GRPOConfig] = None
    # Reward parameters differ per reward: r1exp.rewards validates them against its registry.
    reward: Dict[str, Any] = field(default_factory=dict)
    eval: Optional[EvalConfig] = None
    # The benchmark specs the run evaluates (eval.benchmarks or train.benchmarks), by name.
    benchmark: Dict[str, BenchmarkConfig] = field(default_factory=dict)
    generate: Optional[GenerateConfig] = None
    inference: Optional[InferenceConfig] = None
