"""The grpo stage: TRL's GRPOTrainer over a dataset of prompts with verifiable answers."""

from __future__ import annotations

import logging

from r1exp.config.plan import make_plan

log = logging.getLogger(__name__)


def run(cfg) -> dict[str, float]:
    from trl import GRPOConfig, GRPOTrainer

    from r1exp.data.loading import load_split, require_columns
    from r1exp.models.loading import load_tokenizer, resolve_model_dir
    from r1exp.rewards import RewardHealthCallback, build_reward_functions
    from r1exp.stages.training import (
        checkpoint_to_resume, final_metrics, model_init_kwargs, peft_config, save_final,
        trainer_kwargs,
    )
    from r1exp.tracking.callback import MlflowMetricsCallback

    plan = make_plan(cfg)
    model_dir = resolve_model_dir(cfg.model, cfg.paths.cache_dir)
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    dataset = load_split(cfg.dataset, cfg.dataset.train_split, seed=cfg.seed)
    require_columns(dataset, [cfg.dataset.prompt_column], cfg.dataset.name)
    dataset = dataset.map(lambda row: {"prompt": _conversation(row, cfg)})
    reward_funcs, reward_weights = build_reward_functions(cfg.reward)

    g = cfg.grpo
    args = GRPOConfig(
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
        reward_weights=reward_weights,
    )
    trainer = GRPOTrainer(
        model=model_dir,  # a path, not an object: TRL can then load the reference model too
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg),
        callbacks=[MlflowMetricsCallback(), RewardHealthCallback()],
    )
    result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(cfg))
    save_final(trainer, tokenizer, cfg)
    return final_metrics(trainer, result)


def _conversation(row, cfg) -> list[dict[str, str]]:
    messages = []
    if cfg.grpo.system_prompt:
        messages.append({"role": "system", "content": cfg.grpo.system_prompt})
    messages.append({"role": "user", "content": str(row[cfg.dataset.prompt_column])})
    return messages
