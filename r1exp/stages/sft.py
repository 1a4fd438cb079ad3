"""The sft stage: distil reasoning traces into a model with TRL's SFTTrainer.

Rows of any supported layout become conversations whose assistant turns share one trace
format (r1exp.data.formatting). By default the loss covers only the final assistant reply:
rows are given to TRL as conversational prompt/completion pairs, which masks the prompt with
any chat template. (TRL's `assistant_only_loss` needs `{% generation %}` markers, which it can
patch in only for the templates it knows, e.g. Qwen2.5 but not a plain ChatML one; it is
`sft.loss_on=assistant`.) Generation of the saved model stops at the template's end-of-turn
token (open-r1#604, #663).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from r1exp.config.memory import Workload
from r1exp.config.plan import make_plan
from r1exp.config.stage import Stage
from r1exp.config.validate import check_choice
from r1exp.data.formatting import (
    check_trace_format, end_of_turn_token, ensure_chat_template, to_sft_examples,
)
from r1exp.data.loading import load_train_eval, validate_dataset_config
from r1exp.errors import ConfigError
from r1exp.models.loading import load_tokenizer, resolve_model_dir
from r1exp.perf import training_attention
from r1exp.rundir import RESOLVED_CONFIG
from r1exp.stages.registry import register
from r1exp.stages.training import (
    TRAINING_BENCHMARKS, TRAINING_SECTIONS, check_train_benchmarks, checkpoint_callbacks,
    checkpoint_to_resume, evaluate_trained_model, final_metrics, model_init_kwargs, peft_config,
    save_final, trainer_kwargs,
)

log = logging.getLogger(__name__)
# What this stage reads, so what its MLflow params show (r1exp.tracking.params).
CONFIG_SECTIONS = TRAINING_SECTIONS + ("sft",)
BENCHMARKS_KEY = TRAINING_BENCHMARKS
LOSS_ON = ("completion", "assistant", "all")
PACKING_STRATEGIES = ("bfd", "wrapped")
MIN_LR_KEYS = ("min_lr", "min_lr_rate")


def check(cfg) -> None:
    s = cfg.sft
    check_choice("sft.loss_on", s.loss_on, LOSS_ON)
    check_choice("sft.packing_strategy", s.packing_strategy, PACKING_STRATEGIES)
    check_trace_format(s.trace_format)
    if s.max_length < 1:
        raise ConfigError(f"sft.max_length={s.max_length} must be >= 1")
    if s.eval_steps is not None and s.eval_steps < 1:
        raise ConfigError(f"sft.eval_steps={s.eval_steps} must be >= 1 (or null: train.save_steps)")
    if cfg.train.lr_scheduler_type == "cosine_with_min_lr" and not any(
            k in s.lr_scheduler_kwargs for k in MIN_LR_KEYS):
        raise ConfigError("train.lr_scheduler_type=cosine_with_min_lr needs a floor: set "
                          "sft.lr_scheduler_kwargs.min_lr_rate (e.g. 0.1) or .min_lr")
    validate_dataset_config(cfg.dataset)
    check_train_benchmarks(cfg)


def run(cfg) -> dict[str, float]:
    from trl import SFTConfig, SFTTrainer

    from r1exp.tracking.callback import MlflowMetricsCallback

    check(cfg)
    plan = make_plan(cfg, STAGE)
    model_dir = resolve_model_dir(cfg.model, cfg.paths.cache_dir)
    _check_context_length(model_dir, cfg)
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    added_tokens = ensure_chat_template(tokenizer)
    if cfg.sft.loss_on == "assistant":
        _check_assistant_masks(tokenizer, cfg)
    eos_token = cfg.sft.eos_token or end_of_turn_token(tokenizer)
    log.info("end-of-turn / EOS token: %r", eos_token)

    train, evaluation = load_train_eval(cfg.dataset, seed=cfg.seed)
    train = to_sft_examples(train, cfg.dataset, cfg.sft)
    if evaluation is not None:
        evaluation = to_sft_examples(evaluation, cfg.dataset, cfg.sft)

    s = cfg.sft
    if s.packing:
        log.info("sft.packing=true: train.global_batch_size=%d counts packed rows of up to %d "
                 "tokens, each conversation attending only to itself", plan.global_batch_size,
                 s.max_length)
    args = SFTConfig(
        **trainer_kwargs(cfg, plan),
        model_init_kwargs=None if added_tokens else model_init_kwargs(cfg),
        max_length=s.max_length,
        packing=s.packing,
        packing_strategy=s.packing_strategy,
        completion_only_loss=s.loss_on == "completion",
        assistant_only_loss=s.loss_on == "assistant",
        eos_token=eos_token,
        lr_scheduler_kwargs=dict(s.lr_scheduler_kwargs),
        per_device_eval_batch_size=cfg.hardware.per_device_eval_batch_size,
        eval_strategy="steps" if evaluation is not None else "no",
        eval_steps=s.eval_steps or cfg.train.save_steps,
    )
    lora = peft_config(cfg)
    checkpoint = checkpoint_to_resume(cfg)
    trainer = SFTTrainer(
        model=_model(model_dir, cfg, plan, added_tokens, tokenizer, lora),
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[MlflowMetricsCallback(resuming=checkpoint is not None),
                   *checkpoint_callbacks(cfg)],
    )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = final_metrics(trainer, result)
    metrics.update(_loss_curve_ends(trainer.state.log_history))
    if evaluation is not None:
        metrics.update(_final_eval(trainer))
    model_out = _save(trainer, tokenizer, cfg)
    return metrics | evaluate_trained_model(cfg, model_out)


def _check_context_length(model_dir: str, cfg) -> None:
    """Training past the model's position range silently degrades it; refuse up front."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, revision=cfg.model.revision,
                                        trust_remote_code=cfg.model.trust_remote_code)
    limit = getattr(config.get_text_config(), "max_position_embeddings", None)
    if limit is not None and cfg.sft.max_length > limit:
        raise ConfigError(f"sft.max_length={cfg.sft.max_length} exceeds model '{cfg.model.name}' "
                          f"max_position_embeddings={limit}; use sft.max_length={limit} or less")


def _check_assistant_masks(tokenizer, cfg) -> None:
    """TRL marks assistant turns only in templates it knows; say so before loading data."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        raise ConfigError(
            f"sft.loss_on=assistant needs a chat template with {{% generation %}} markers, and "
            f"TRL cannot add them to the template of model '{cfg.model.name}'; use "
            "sft.loss_on=completion (the final reply) or set model.chat_template to one with them"
        ) from None


def _model(model_dir: str, cfg, plan, added_tokens: list[str], tokenizer, lora):
    """A path TRL loads itself, or, when ChatML tokens were added, a loaded and resized model."""
    if not added_tokens:
        return model_dir
    from trl.trainer.utils import create_model_from_path

    kwargs = model_init_kwargs(cfg)
    if plan.world_size > 1:
        kwargs["device_map"] = None  # each rank holds its copy; "auto" would split it
    model = create_model_from_path(model_dir, **kwargs)
    model.resize_token_embeddings(len(tokenizer))
    if lora is not None:  # new rows of the embedding must learn, even under LoRA
        added_ids = tokenizer.convert_tokens_to_ids(added_tokens)
        lora.trainable_token_indices = {"embed_tokens": added_ids}
    return model


def _final_eval(trainer) -> dict[str, float]:
    """Eval metrics of the final weights; reuses the eval the last step already ran."""
    last = [e for e in trainer.state.log_history if "eval_loss" in e]
    if last and last[-1].get("step") == trainer.state.global_step:
        results = last[-1]
    else:
        results = trainer.evaluate()
    return {f"eval/{k.removeprefix('eval_')}": float(v) for k, v in results.items()
            if k.startswith("eval_") and isinstance(v, (int, float))}


def _loss_curve_ends(history: list[dict]) -> dict[str, float]:
    losses = [entry["loss"] for entry in history if "loss" in entry]
    if not losses:
        return {}
    return {"train/first_loss": float(losses[0]), "train/last_loss": float(losses[-1])}


def _save(trainer, tokenizer, cfg) -> Path:
    """`<run_dir>/model`: a plain transformers model (LoRA merged), tokenizer, resolved.yaml."""
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        deepspeed = trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin
        if deepspeed and deepspeed.zero_stage == 3:
            # Merging needs the full weights, which ZeRO-3 keeps sharded: keep the adapter.
            log.warning("LoRA under ZeRO-3: saving the adapter only (load it with peft)")
        else:
            trainer.model = model.merge_and_unload()
    trainer.model.config.use_cache = True  # training turns it off for gradient checkpointing
    out = save_final(trainer, tokenizer, cfg)
    if trainer.is_world_process_zero():
        (out / RESOLVED_CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True))
    log.info("saved the final model to %s", out)
    return out


def memory_workload(cfg, common: dict, accumulation: int, prompt_tokens: int) -> Workload:
    """One process's memory terms: sequences of sft.max_length, Liger's kernels if enabled."""
    attention = training_attention(cfg, STAGE, common["attention"])  # packed rows may switch it
    return Workload(stage="sft", tokens_per_sequence=cfg.sft.max_length,
                    liger=bool(cfg.hardware.perf.liger_kernel),
                    **{**common, "attention": attention})


def memory_fixes(cfg, work: Workload) -> list[tuple[str, Workload]]:
    if work.tokens_per_sequence <= 256:
        return []
    half = work.tokens_per_sequence // 2
    return [(f"sft.max_length={half}", replace(work, tokens_per_sequence=half))]


def packed_row_tokens(cfg) -> int:
    """Tokens of one packed batch row, where sft.packing flattens a batch into one row."""
    # `bfd` is TRL's default strategy; `wrapped` keeps rows and cuts documents instead.
    if not cfg.sft.packing or OmegaConf.select(cfg, "sft.packing_strategy",
                                               default="bfd") not in ("bfd", "bfd_split"):
        return 0
    return cfg.hardware.per_device_train_batch_size * cfg.sft.max_length


STAGE = register(Stage(
    name="sft", run=run, check=check, training=True,
    perf_levers=("fused_optimizer", "liger_kernel", "torch_compile", "packed_attention"),
    packed_row_tokens=packed_row_tokens,
    config_sections=CONFIG_SECTIONS, benchmarks_key=BENCHMARKS_KEY,
    memory=memory_workload, memory_fixes=memory_fixes,
))
