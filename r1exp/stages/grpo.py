"""The grpo stage: TRL's GRPOTrainer over prompts with verifiable answers.

Generation backend comes from the hardware profile: transformers everywhere; vLLM colocated
(in the training processes) or as a server on reserved GPUs (open-r1's 7 + 1 layout, started
by the controller, see r1exp/launch/vllm_server.py).
"""

from __future__ import annotations

import logging

from r1exp.config.plan import Plan, make_plan
from r1exp.stages.training import TRAINING_BENCHMARKS, TRAINING_SECTIONS

log = logging.getLogger(__name__)
# What this stage reads, so what its MLflow params show (r1exp.tracking.params).
CONFIG_SECTIONS = TRAINING_SECTIONS + ("grpo", "reward")
BENCHMARKS_KEY = TRAINING_BENCHMARKS


def check(cfg) -> None:
    from r1exp.stages.training import check_train_benchmarks

    check_train_benchmarks(cfg)


def run(cfg) -> dict[str, float]:
    from trl import GRPOConfig, GRPOTrainer

    from r1exp.data.loading import load_split, require_columns
    from r1exp.models.loading import load_tokenizer, resolve_model_dir
    from r1exp.perf import accelerate_trainer
    from r1exp.rewards import RewardHealthCallback, build_reward_functions
    from r1exp.stages.training import (
        checkpoint_callbacks,
        checkpoint_to_resume,
        evaluate_trained_model,
        final_metrics,
        peft_config,
        save_final,
    )
    from r1exp.tracking.callback import CompletionTableCallback, MlflowMetricsCallback

    plan = make_plan(cfg)
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
    accelerate_trainer(trainer, cfg)  # the profile's speed levers TRL has no argument for
    if cfg.hardware.generation_backend == "vllm":
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
    from r1exp.stages.training import model_init_kwargs, trainer_kwargs

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
        **generation_backend_arguments(cfg),
    )


# TRL takes only token ids and the sampled tokens' log-probs from a colocated vLLM and decodes
# the text itself. Left on, vLLM also detokenizes every token as it is sampled and keeps a
# Python object per token's log-prob: host work per token that the GPU waits on at large
# generation batches (docs/performance.md). Same tokens, same log-probs. Not for server mode:
# there the reply goes through vLLM's OpenAI-compatible server, which needs the text.
COLOCATED_VLLM_SAMPLING = {"detokenize": False, "flat_logprobs": True}


def generation_backend_arguments(cfg) -> dict:
    hw = cfg.hardware
    if hw.generation_backend != "vllm":
        return {"use_vllm": False}
    args = {
        "use_vllm": True,
        "vllm_mode": hw.vllm.mode,
        "vllm_gpu_memory_utilization": hw.vllm.gpu_memory_utilization,
    }
    if hw.vllm.mode == "colocate":
        args["generation_kwargs"] = dict(COLOCATED_VLLM_SAMPLING)
    if hw.vllm.mode == "server":
        from r1exp.launch.vllm_server import (
            SERVER_URL_ENV, group_port_from_env, server_url_from_env,
        )

        url = server_url_from_env()
        if url is None:
            raise RuntimeError(f"vLLM server mode but {SERVER_URL_ENV} is unset: the controller "
                               "starts the server and exports its address")
        args["vllm_server_base_url"] = url
        group_port = group_port_from_env()
        if group_port is not None:  # a free port, so parallel runs do not collide
            args["vllm_group_port"] = group_port
    return args


def conversation(row, cfg) -> list[dict[str, str]]:
    messages = []
    if cfg.grpo.system_prompt:
        messages.append({"role": "system", "content": cfg.grpo.system_prompt})
    messages.append({"role": "user", "content": str(row[cfg.dataset.prompt_column])})
    return messages
