"""The memory-fit check: estimates against peaks measured on an H100, and the dry-run failure.

MEASURED holds peak device memory (allocator peak + CUDA context and libraries) recorded by
`python -m tests.bench.gpu` on an H100 80GB (torch 2.11, transformers 5.23, TRL 1.16,
liger-kernel 0.8.5; three device calls on 2026-11-22, docs/performance.md). Each row is the
benchmark variant that produced it, so the estimate is recomputed here exactly as the bench
computes it, from the same composed config, without a GPU.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.bench.gpu_workloads import Variant, estimate_gb
from tests.bench.gpu_workloads import compose as compose_variant
from r1exp.config.memory import GB, Shape, Workload, estimate, workload_from_config
from r1exp.errors import ConfigError
from r1exp.stages import make_plan, stage, validate

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf"
LARGER = "qwen2.5-1.5b-instruct"
SFT = dict(kind="sft", seq=2048, batch=8)
GRPO = dict(kind="grpo", seq=256, batch=16, generations=8, prompt_tokens=64)
TOLERANCE = 0.20

# (variant as run on the H100, measured peak GB). The LoRA row's per-feature coefficient was
# read off that same run's saved-tensor probe, so it is not an independent check.
MEASURED = [
    (Variant("sft_r1exp", **SFT), 22.27),
    (Variant("sft_r1exp_no_liger", overrides=["hardware.perf.liger_kernel=false"], **SFT), 28.96),
    (Variant("sft_r1exp_padded", packing=False, **SFT), 23.71),
    (Variant("mem_sft_0.5b_ckpt", packing=False, gradient_checkpointing=True, **SFT), 5.95),
    (Variant("mem_sft_1.5b", model=LARGER, packing=False, **SFT), 48.08),
    (Variant("mem_sft_1.5b_ckpt", model=LARGER, packing=False, gradient_checkpointing=True,
             **SFT), 15.38),
    (Variant("val_sft_1.5b_seq4096_ckpt", model=LARGER, packing=False,
             gradient_checkpointing=True, **{**SFT, "seq": 4096, "batch": 4}), 15.57),
    (Variant("val_sft_0.5b_pdb16_seq1024", packing=False, **{**SFT, "seq": 1024, "batch": 16}),
     22.81),
    (Variant("val_sft_1.5b_lora", model=LARGER, packing=False,
             overrides=["train.lora.enabled=true"], **{**SFT, "batch": 4}), 31.02),
    (Variant("grpo_r1exp_on_policy", **GRPO), 12.41),
    (Variant("grpo_r1exp_best", steps_per_generation=4, **GRPO), 12.68),
    (Variant("grpo_r1exp_uncompiled", overrides=["hardware.perf.compiled_generation=false"],
             **GRPO), 12.23),
    (Variant("mem_grpo_0.5b_ckpt_beta", gradient_checkpointing=True, beta=0.04, **GRPO), 6.69),
    (Variant("mem_grpo_1.5b", model=LARGER, **GRPO), 27.31),
    (Variant("mem_grpo_1.5b_ckpt_beta", model=LARGER, gradient_checkpointing=True, beta=0.04,
             **GRPO), 17.87),
    (Variant("val_grpo_0.5b_spg8_c512", steps_per_generation=8, **{**GRPO, "seq": 512}), 19.40),
    (Variant("val_grpo_1.5b_pdb8_c512_ckpt", model=LARGER, gradient_checkpointing=True,
             **{**GRPO, "seq": 512, "batch": 8}), 14.55),
]


@pytest.mark.parametrize("variant,measured", MEASURED, ids=[v.name for v, _ in MEASURED])
def test_estimate_is_within_20_percent_of_the_h100_peak(variant, measured, tmp_path):
    cfg, plan = compose_variant(variant, tmp_path, tiny=False, cuda=True)
    estimated = estimate_gb(variant, cfg, plan)
    assert abs(estimated / measured - 1) <= TOLERANCE, (variant.name, estimated, measured)


def planned(overrides: list[str], tmp_path: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={tmp_path}", "logger=none",
                                           *overrides])
    typed = validate(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
    return typed, make_plan(typed)


def test_7b_full_finetune_on_a_12gb_card_fails_in_the_dry_run_naming_the_fix(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "r1exp", "dry_run=true", "stage=sft", "model=qwen2.5-math-7b",
         "hardware=rtx3060-12g", "logger=none", f"hydra.run.dir={tmp_path}/run"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr
    assert "does not fit" in error and "rtx3060-12g" in error
    assert "biggest term: optimizer_states" in error
    assert "train.lora.enabled=true" in error  # the largest saving, named first
    assert "smaller model" in error  # and, since even that leaves the bf16 weights, the way out
    assert not (tmp_path / "run" / "resolved.yaml").exists()  # nothing started


def test_a_fix_that_fits_alone_is_named_alone(tmp_path):
    with pytest.raises(ConfigError) as err:
        planned(["stage=sft", "model=qwen2.5-1.5b-instruct", "hardware=rtx3060-12g"], tmp_path)
    assert "fix: train.lora.enabled=true" in str(err.value)
    # and applying it does fit
    _, plan = planned(["stage=sft", "model=qwen2.5-1.5b-instruct", "hardware=rtx3060-12g",
                       "train.lora.enabled=true"], tmp_path)
    assert plan.memory.fits


def test_activation_bound_plan_names_checkpointing(tmp_path):
    with pytest.raises(ConfigError) as err:
        planned(["stage=sft", "model=qwen2.5-1.5b-instruct", "hardware=1xh100",
                 "hardware.per_device_train_batch_size=16", "train.global_batch_size=16",
                 "sft.max_length=4096"], tmp_path)
    message = str(err.value)
    assert "biggest term: activations" in message
    assert "hardware.gradient_checkpointing=true" in message


def test_dry_run_prints_every_term_and_the_budget(tmp_path):
    _, plan = planned(["stage=sft", "model=qwen2.5-0.5b-instruct", "hardware=1xh100",
                       "train.global_batch_size=8"], tmp_path)
    text = plan.render()
    assert "memory_per_device:" in text and "of 80.0 GB device" in text
    for term in ("weights", "optimizer_states", "activations", "cuda_runtime"):
        assert f"  {term}:" in text
    assert plan.memory.total == pytest.approx(sum(plan.memory.terms.values()))


def test_a_tight_plan_warns(tmp_path, caplog):
    overrides = ["stage=sft", "model=qwen2.5-1.5b-instruct", "hardware=1xh100",
                 "hardware.per_device_train_batch_size=12", "train.global_batch_size=12",
                 "sft.max_length=2048"]
    with caplog.at_level("WARNING"):
        _, plan = planned(overrides, tmp_path)
    assert plan.memory.tight and plan.memory.fits
    assert any("tight memory plan" in record.message for record in caplog.records)


def test_cpu_profile_is_not_checked(tmp_path):
    _, plan = planned(["stage=sft", "hardware=cpu"], tmp_path)
    assert plan.memory is None


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_architecture_matches_the_parameter_count(name):
    model = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    shape = Shape.from_config(model.architecture)
    assert shape.total_params() == pytest.approx(model.num_parameters, rel=0.03)


def _work(**changes) -> Workload:
    shape = Shape(3584, 28, 28, 4, 18944, 152064, False)  # Qwen2.5-7B
    base = Workload(stage="sft", shape=shape, num_parameters=7.6e9, dtype="bf16",
                    per_device_batch=1, tokens_per_sequence=4096, gradient_checkpointing=True,
                    liger=True, attention="sdpa", distributed="ddp", world_size=8)
    return replace(base, **changes)


def test_zero_stages_shard_what_they_promise():
    ddp, zero2, zero3 = (estimate(_work(distributed=d)) for d in ("ddp", "zero2", "zero3"))
    assert zero2.terms["optimizer_states"] == pytest.approx(7.6e9 * 12 / 8, rel=0.01)
    assert zero2.terms["weights"] == pytest.approx(ddp.terms["weights"])
    assert zero3.terms["weights"] == pytest.approx(ddp.terms["weights"] / 8)
    assert ddp.total > zero2.total > zero3.total


def test_lora_trains_only_the_adapters():
    full, lora = estimate(_work()), estimate(_work(lora_rank=16))
    assert lora.terms["optimizer_states"] < full.terms["optimizer_states"] / 50
    assert lora.total < full.total / 2


def test_reference_model_and_kv_cache_count_for_grpo():
    grpo = dict(stage="grpo", distributed="none", world_size=1, tokens_per_sequence=1536,
                per_device_batch=4)
    plain = estimate(_work(**grpo))
    with_ref = estimate(_work(**grpo, reference_model=True))
    assert with_ref.terms["reference_model"] == pytest.approx(plain.terms["weights"])
    generating = estimate(_work(**grpo, generation_sequences=512))
    assert generating.peak_phase == "generation" and generating.terms["kv_cache"] > 10 * GB


def test_graph_generation_keeps_its_kv_cache_through_training():
    # Measured on an H100 (docs/performance.md): 256 x (128 + 1024) tokens, graph generation,
    # peak 23.65 GB; without the resident cache the estimate said 20.46.
    grpo = dict(stage="grpo", distributed="none", world_size=1, tokens_per_sequence=1152,
                per_device_batch=8, accumulation=32, generation_sequences=256)
    freed, kept = estimate(_work(**grpo)), estimate(_work(**grpo, kv_cache_resident=True))
    shape = _work().shape
    cache = 256 * 1152 * shape.layers * 2 * shape.kv_dim * 2  # bf16 keys and values
    assert kept.terms["resident_kv_cache"] == pytest.approx(cache)
    assert not freed.terms["resident_kv_cache"]
    # This 7B shape peaks while generating: the cache counts once, as a resident term
    assert freed.peak_phase == kept.peak_phase == "generation"
    assert kept.terms["kv_cache"] == pytest.approx(freed.terms["kv_cache"] - cache)
    assert kept.total == pytest.approx(freed.total)


def test_vllm_counts_its_reserved_share_not_a_kv_cache(tmp_path):
    _, colocated = planned(["hardware=1xh100", "inference.engine=vllm",
                            "model=qwen2.5-1.5b-instruct"], tmp_path)
    assert colocated.memory.terms["vllm_reserved"] == pytest.approx(0.3 * 80 * GB)
    assert colocated.memory.terms.get("kv_cache", 0) == 0  # vLLM holds its own KV cache
    assert colocated.vllm_memory.reserved == pytest.approx(0.3 * 80 * GB)
    _, served = planned(["hardware=8xh100", "train.global_batch_size=56"], tmp_path)
    assert served.memory.terms.get("vllm_reserved", 0) == 0  # not on the training GPUs
    assert "on the server's GPU(s)" in served.render()
    cpu_cfg, cpu = planned(["hardware=cpu", "inference.engine=vllm"], tmp_path)
    assert cpu.vllm_memory is None
    # on a CPU vLLM's share is of host memory: no device bytes (the GPU bench's --tiny needs it)
    assert workload_from_config(cpu_cfg, stage("grpo"), 1, 2, 1).vllm_bytes == 0


def test_vllm_share_too_small_for_the_weights_fails_in_the_dry_run(tmp_path):
    with pytest.raises(ConfigError, match=r"inference.vllm.gpu_memory_utilization=0.9 reserves "
                                          r"10.8 GB on each GPU, less than the model's 15.2 GB"):
        planned(["stage=eval", "inference.engine=vllm", "hardware=rtx3060-12g",
                 "model=qwen2.5-math-7b"], tmp_path)
