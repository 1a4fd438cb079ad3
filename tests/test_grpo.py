"""GRPO stage: config -> TRL arguments, the rollout engine per profile, the vLLM preflight."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from r1exp.stages import make_plan, validate
from r1exp.errors import ConfigError
from r1exp.launch.preflight import preflight

CONF = Path(__file__).resolve().parents[1] / "conf"
GRPO_RECIPES = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")
                      if "stage: grpo" in p.read_text() or p.stem == "quickstart")
HARDWARE = sorted(p.stem for p in (CONF / "hardware").glob("*.yaml"))


def config(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/tmp/r1exp-grpo-test", *overrides])
    return validate(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))


def arguments(*overrides: str) -> dict:
    from r1exp.stages.grpo import grpo_arguments

    cfg = config(*overrides)
    return grpo_arguments(cfg, make_plan(cfg))


def test_every_grpo_knob_reaches_trl():
    args = arguments(
        "grpo.num_generations=4", "grpo.max_completion_length=77", "grpo.temperature=0.7",
        "grpo.top_p=0.9", "grpo.beta=0.04", "grpo.epsilon=0.3", "grpo.loss_type=dr_grpo",
        "grpo.scale_rewards=none", "grpo.num_iterations=2", "grpo.mask_truncated_completions=true",
        "grpo.steps_per_generation=2", "train.global_batch_size=32", "train.learning_rate=3e-6",
        "train.lr_scheduler_type=linear", "train.warmup_ratio=0.1", "train.max_steps=7",
        "train.save_steps=3", "seed=7",
    )
    expected = dict(
        num_generations=4, max_completion_length=77, temperature=0.7, top_p=0.9, beta=0.04,
        epsilon=0.3, loss_type="dr_grpo", scale_rewards="none", num_iterations=2,
        mask_truncated_completions=True, steps_per_generation=2, learning_rate=3e-6,
        lr_scheduler_type="linear", warmup_steps=0.1, max_steps=7, save_steps=3, seed=7,
        per_device_train_batch_size=8, gradient_accumulation_steps=4, use_cpu=True,
        bf16=False, fp16=False, use_vllm=False, report_to="none",
    )
    assert {k: args[k] for k in expected} == expected
    assert args["output_dir"] == "/tmp/r1exp-grpo-test/checkpoints"


def test_trl_accepts_the_arguments():
    from trl import GRPOConfig

    trl_args = GRPOConfig(**arguments("train.global_batch_size=16"), reward_weights=[1.0, 0.5])
    # the quickstart recipe
    assert trl_args.gradient_accumulation_steps == 2 and trl_args.num_generations == 4


@pytest.mark.parametrize("enabled", [True, False])
def test_gradient_checkpointing_reaches_trl_without_the_deprecated_name(enabled):
    from trl import GRPOConfig

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers 5 deprecates the old name
        override = f"hardware.gradient_checkpointing={str(enabled).lower()}"
        trl_args = GRPOConfig(**arguments(override))
    # TRL 1.16 reads the old name, which mirrors the new one where the release has it.
    assert trl_args.gradient_checkpointing is enabled
    assert getattr(trl_args, "activation_checkpointing", enabled) is enabled
    assert (trl_args.gradient_checkpointing_kwargs or {}).get("use_reentrant", False) is False


@pytest.mark.parametrize("hardware", HARDWARE)
def test_the_rollout_engine_follows_the_profile(hardware):
    from r1exp.stages.grpo import generation_arguments

    cfg = config(f"hardware={hardware}")
    assert cfg.inference.engine == cfg.hardware.inference_engine
    if cfg.inference.engine == "vllm" and cfg.hardware.vllm.mode == "server":
        with pytest.raises(RuntimeError, match="R1EXP_VLLM_SERVER_URL"):
            generation_arguments(cfg)  # the controller must have started the server
        return
    args = generation_arguments(cfg)
    assert args["use_vllm"] is (cfg.inference.engine == "vllm")


def test_grpo_refuses_the_openai_engine_naming_the_ones_it_runs():
    with pytest.raises(ConfigError, match=r"inference.engine='openai': stage=grpo .* one of: "
                                          r"transformers, vllm"):
        config("inference.engine=openai", "inference.openai.endpoint=http://h:1/v1")


def test_vllm_server_mode_points_trl_at_the_controllers_server(monkeypatch):
    from r1exp.stages.grpo import generation_arguments

    monkeypatch.setenv("R1EXP_VLLM_SERVER_URL", "http://127.0.0.1:8000")
    args = generation_arguments(config("hardware=8xh100"))
    assert args == {"use_vllm": True, "vllm_mode": "server", "vllm_gpu_memory_utilization": 0.7,
                    "vllm_server_base_url": "http://127.0.0.1:8000"}


def test_vllm_colocate_override():
    from r1exp.stages.grpo import generation_arguments

    args = generation_arguments(config(
        "hardware=1xh100", "inference.engine=vllm", "hardware.vllm.mode=colocate"))
    assert args["use_vllm"] and args["vllm_mode"] == "colocate"


def test_asking_for_vllm_without_it_installed_fails_before_loading_anything(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    cfg = config("hardware=1xh100", "inference.engine=vllm")
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        preflight(cfg, make_plan(cfg))


def test_vllm_server_takes_the_last_devices():
    from r1exp.launch.vllm_server import device_split

    assert device_split(8, 1) == ("0,1,2,3,4,5,6", "7")


@pytest.mark.parametrize("hardware", HARDWARE)
@pytest.mark.parametrize("recipe", GRPO_RECIPES)
def test_every_grpo_recipe_plans_on_every_profile_or_says_why(recipe, hardware):
    try:
        cfg = config(f"experiment={recipe}", f"hardware={hardware}")
        plan = make_plan(cfg)
    except ConfigError as err:
        # The only acceptable refusals name the key to change.
        assert any(key in str(err)
                   for key in ("train.global_batch_size", "hardware.", "grpo.")), err
        return
    assert plan.global_batch_size % cfg.grpo.num_generations == 0
