"""The profile's speed levers (r1exp/perf) and the GPU benchmark's arithmetic, on CPU."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.bench import gpu
from r1exp.stages import make_plan, stage, validate
from r1exp.errors import ConfigError
from r1exp.perf import accelerate_trainer, fast_paths, trainer_arguments, training_attention
from r1exp.perf.generation import reuse_static_cache
from r1exp.perf.graph_generation import GraphGeneration

CONF = Path(__file__).resolve().parents[1] / "conf"


def config(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/tmp/r1exp-test-perf", "logger=none",
                                           *overrides])
    return validate(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))


@pytest.fixture
def liger_installed(monkeypatch):
    monkeypatch.setattr(fast_paths, "_require", lambda *args: None)


@pytest.mark.parametrize("profile,packed", [("1xh100", True), ("8xh100", True),
                                            ("rtx3060-12g", True), ("cpu", False),
                                            ("metax-c500", False)])
def test_the_profile_chooses_whether_sft_packs_and_an_override_wins(profile, packed):
    cfg = config(["stage=sft", f"hardware={profile}"])
    assert cfg.sft.packing is packed
    assert (stage("sft").packed_row_tokens(cfg) > 0) is packed
    flipped = config(["stage=sft", f"hardware={profile}", f"sft.packing={not packed}"])
    assert flipped.sft.packing is (not packed)


def test_h100_packed_sft_gets_every_lever(liger_installed):
    cfg = config(["stage=sft", "hardware=1xh100", "model=qwen2.5-0.5b-instruct",
                  "sft.packing=true", "sft.max_length=2048", "train.global_batch_size=8"])
    args = trainer_arguments(cfg, stage(cfg.stage))
    assert args == {"optim": "adamw_torch_fused", "use_liger_kernel": True,
                    "pad_to_multiple_of": 8 * 2048}  # one static row: flex compiles once
    assert training_attention(cfg, stage("sft"), "sdpa") == "flex_attention"
    # flash-attn does varlen itself
    assert training_attention(cfg, stage("sft"), "flash_attention_2") == "flash_attention_2"


def test_unpacked_sft_keeps_the_profile_attention_and_no_padding(liger_installed):
    cfg = config(["stage=sft", "hardware=1xh100", "model=qwen2.5-0.5b-instruct",
                  "sft.packing=false", "train.global_batch_size=8"])
    assert training_attention(cfg, stage("sft"), "sdpa") == "sdpa"
    assert "pad_to_multiple_of" not in trainer_arguments(cfg, stage(cfg.stage))


def test_h100_grpo_compiles_generation_without_liger():
    cfg = config(["stage=grpo", "hardware=1xh100", "train.global_batch_size=16"])
    assert trainer_arguments(cfg, stage(cfg.stage)) == {"optim": "adamw_torch_fused",
                                      "cache_implementation": "static", "pad_to_multiple_of": 64}


def test_vllm_generation_leaves_transformers_generation_alone():
    cfg = config(["experiment=open-r1-grpo-demo"])
    assert "cache_implementation" not in trainer_arguments(cfg, stage(cfg.stage))


def test_cpu_profile_stays_plain():
    for name in ("sft", "grpo"):
        cfg = config([f"stage={name}", "hardware=cpu"])
        assert trainer_arguments(cfg, stage(name)) == {}


def test_liger_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(fast_paths.importlib.util, "find_spec", lambda name: None)
    cfg = config(["stage=sft", "hardware=1xh100", "train.global_batch_size=8"])
    with pytest.raises(ConfigError, match="hardware.perf.liger_kernel=true but liger-kernel"):
        trainer_arguments(cfg, stage(cfg.stage))


def test_training_kwargs_carry_the_levers(liger_installed):
    from r1exp.stages.training import model_init_kwargs, trainer_kwargs

    cfg = config(["stage=sft", "hardware=1xh100", "sft.packing=true", "sft.max_length=1024",
                  "train.global_batch_size=8"])
    kwargs = trainer_kwargs(cfg, make_plan(cfg))
    assert kwargs["optim"] == "adamw_torch_fused" and kwargs["use_liger_kernel"]
    assert model_init_kwargs(cfg)["attn_implementation"] == "flex_attention"


@pytest.mark.parametrize("override,message", [
    ("hardware.perf.packed_attention=magic", "choose one of: flex_attention, sdpa"),
    ("hardware.perf.liger_kernel=true", "needs a CUDA device"),
    ("hardware.perf.compiled_generation=true", "needs a CUDA device"),
])
def test_bad_levers_fail_before_anything_runs(override, message):
    with pytest.raises(ConfigError, match=message):
        config(["hardware=cpu", override])


def test_accelerate_trainer_switches_compiled_generation_on():
    from transformers import GenerationConfig

    def generate(**kwargs):
        return "transformers' generate"

    model = SimpleNamespace(_prepare_static_cache=lambda **kw: object(), generate=generate)
    trainer = SimpleNamespace(generation_config=GenerationConfig(disable_compile=True),
                              model=model)
    accelerate_trainer(trainer, config(["stage=grpo", "hardware=1xh100",
                                        "train.global_batch_size=16"]), stage("grpo"))
    assert trainer.generation_config.disable_compile is False  # the fallback compiles
    assert trainer.generation_config.compile_config.mode == "reduce-overhead"
    assert isinstance(model.generate, GraphGeneration) and model.generate.original is generate

    untouched = SimpleNamespace(generation_config=GenerationConfig(disable_compile=True),
                                model=model)
    accelerate_trainer(untouched, config(["stage=grpo", "hardware=cpu"]), stage("grpo"))
    assert untouched.generation_config.disable_compile is True


def test_static_cache_is_reused_per_shape():
    made = []

    class Cache:
        def __init__(self):
            self.resets = 0

        def reset(self):
            self.resets += 1

    def prepare(**kwargs):
        made.append(Cache())
        return made[-1]

    model = SimpleNamespace(_prepare_static_cache=prepare)
    assert reuse_static_cache(model)
    call = dict(cache_implementation="static", batch_size=16, max_cache_len=320,
                prefill_chunk_size=None, model_kwargs={})
    first = model._prepare_static_cache(**call)
    again = model._prepare_static_cache(**call)
    assert again is first and first.resets == 1 and len(made) == 1  # same addresses: no re-record
    longer = model._prepare_static_cache(**{**call, "max_cache_len": 384})
    assert longer is not first and len(made) == 2


# --- the benchmark's arithmetic over recorded results -----------------------------------------


def _result(name, kind, side, **numbers):
    variant = dict(name=name, kind=kind, side=side, model="qwen2.5-0.5b-instruct", batch=8,
                   gradient_checkpointing=False, beta=0.0, role="speed")
    return {"name": name, "variant": variant, **numbers}


def test_bench_summary_takes_the_faster_plain_baseline_and_own_run_peak():
    results = {
        "matmul": {"name": "matmul", "bf16_tflops": 770.0, "device": "H100"},
        "sft_trl_padded": _result("sft_trl_padded", "sft", "trl", tokens_per_s=11000.0),
        "sft_trl_packed": _result("sft_trl_packed", "sft", "trl", tokens_per_s=20000.0),
        "sft_r1exp": _result("sft_r1exp", "sft", "r1exp", tokens_per_s=92000.0,
                             mfu_flops_per_token=3.33e9, peak_gb=22.3, estimate_gb=23.8),
        "grpo_trl": _result("grpo_trl", "grpo", "trl", step_s=6.4),
        "grpo_r1exp_on_policy": _result("grpo_r1exp_on_policy", "grpo", "r1exp", step_s=0.8),
        "grpo_r1exp_best": _result("grpo_r1exp_best", "grpo", "r1exp", step_s=0.4),
        "sft_large_trl_liger": _result("sft_large_trl_liger", "sft", "trl", tokens_per_s=30000.0,
                                       mfu_flops_per_token=1e10),
        "sft_large_r1exp": _result("sft_large_r1exp", "sft", "r1exp", tokens_per_s=39000.0,
                                   mfu_flops_per_token=1e10),
        "grpo_r1exp_vllm": _result("grpo_r1exp_vllm", "grpo", "r1exp", step_s=0.8),
        "grpo_r1exp_vllm_text": _result("grpo_r1exp_vllm_text", "grpo", "r1exp", step_s=1.0),
        "grpo_trl_vllm": _result("grpo_trl_vllm", "grpo", "trl", step_s=1.2),
        "grpo_long_r1exp": _result("grpo_long_r1exp", "grpo", "r1exp", step_s=10.0),
    }
    out = gpu.summary(results)
    # the profile as shipped (graph generation) and r1exp + vLLM, each against TRL + vLLM
    assert out["grpo_graphs_speedup"] == pytest.approx(1.2 / 0.8)
    assert out["grpo_vllm_speedup"] == pytest.approx(1.5)
    assert set(out["grpo_phases"]) == {"grpo_trl_vllm", "grpo_r1exp_on_policy",
                                       "grpo_r1exp_vllm", "grpo_r1exp_vllm_text"}
    assert "grpo_long_graphs_speedup" not in out  # its peer did not run
    assert out["sft_large_mfu"] == pytest.approx(39000 * 1e10 / 770e12, rel=1e-3)
    assert out["sft_large_peer_mfu"] == pytest.approx(30000 * 1e10 / 770e12, rel=1e-3)
    assert out["sft_large_speedup"] == pytest.approx(1.3)
    assert out["grpo_vllm_token_ids_only_gain"] == pytest.approx(1.25)
    assert "grpo_long_vllm_token_ids_only_gain" not in out  # only pairs that both ran
    assert out["sft_baseline"] == "sft_trl_packed" and out["sft_speedup"] == pytest.approx(4.6)
    assert out["sft_mfu"] == pytest.approx(92000 * 3.33e9 / 770e12, rel=1e-3)
    assert out["grpo_speedup_on_policy"] == pytest.approx(8.0)
    assert out["grpo_speedup"] == pytest.approx(16.0)
    assert out["memory_worst_error"] == pytest.approx(23.8 / 22.3 - 1, abs=1e-3)
    json.dumps(out)  # the final line is JSON
    assert "sft_r1exp" in gpu.report(results)


def test_bench_catalog_names_are_unique_and_each_part_has_both_sides():
    parts = gpu.catalog(tiny=False, explore=True)
    names = [v.name for variants in parts.values() for v in variants]
    assert len(names) == len(set(names))
    for part in ("sft", "sft-large", "grpo", "grpo-vllm"):
        assert {v.side for v in parts[part]} == {"trl", "r1exp"}


@pytest.mark.slow
def test_bench_runs_end_to_end_on_a_tiny_model(tmp_path):
    """The bench's own logic on CPU: a tiny r1exp SFT variant through the orchestrator."""
    results = gpu.run_all([v for v in gpu.catalog(tiny=True, explore=False)["sft"]
                           if v.name == "sft_r1exp"], tmp_path, tiny=True, budget_s=600)
    r = results["sft_r1exp"]
    assert "error" not in r, r
    assert r["tokens_per_s"] > 0 and r["steps"] == 3 and r["saved_gb"] > 0
