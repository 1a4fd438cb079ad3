"""The config tree composes, validates and plans for every option, without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from r1exp.config.stage_nodes import KNOB_NODES, nodes_read
from r1exp.stages import STAGES, make_plan, validate
from r1exp.errors import ConfigError
from r1exp.launch.controller import prepare


REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf"
GROUPS = ("model", "dataset", "stage", "hardware", "logger", "experiment")
# A refusal must be one of these clear messages, never an obscure failure.
CLEAR_REFUSALS = ("not implemented yet", "the plan does not fit")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(overrides: list[str], tmp_path: Path | None = None):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        out = str(tmp_path or "/tmp/r1exp-test-run")
        return compose("config", overrides=[f"paths.output_dir={out}", *overrides])


def planned(overrides: list[str]):
    cfg = validate(OmegaConf.create(OmegaConf.to_container(composed(overrides), resolve=True)))
    return cfg, make_plan(cfg)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(group, option):
    # A global batch every profile's world size x per-device batch divides (lcm of 8, 28 and
    # 8xh100-grpo's 7 x 16 = 112).
    overrides = [f"{group}={option}"] + ([] if group == "experiment"
                                         else ["train.global_batch_size=112"])
    if group == "dataset" and option == "jsonl":
        overrides.append("dataset.path=/data/any.jsonl")
    cfg = composed(overrides)
    assert OmegaConf.select(cfg, group) is not None or group in ("stage", "experiment")
    try:
        prepare(cfg)
    except ConfigError as err:  # a stage of a later issue must say so, not fail obscurely
        assert any(reason in str(err) for reason in CLEAR_REFUSALS), err


@pytest.mark.parametrize("stage", options("stage"))
def test_a_stage_composes_the_knob_groups_its_module_reads(stage):
    # conf/stage/<name>.yaml lists the groups, the stage module declares what it reads
    # (r1exp.config.stage_nodes); the benchmark catalogue is the primary's, for every stage.
    knobs = {node for node in KNOB_NODES if node in composed([f"stage={stage}", "~experiment"])}
    assert knobs - {"benchmark"} == nodes_read(STAGES[stage]) - {"benchmark"}


def test_every_reward_composes_as_multiselect():
    rewards = options("reward")
    assert {"accuracy", "format"} <= set(rewards)
    cfg = composed([f"reward=[{','.join(rewards)}]"])
    assert sorted(cfg.reward) == rewards
    assert all("weight" in cfg.reward[name] for name in rewards)


@pytest.mark.parametrize("hardware", options("hardware"))
@pytest.mark.parametrize("stage", options("stage"))
def test_dry_run_plans_every_hardware_and_stage(hardware, stage):
    overrides = [f"hardware={hardware}", f"stage={stage}", "~experiment"]
    # a stage composes only its own knobs
    if stage in ("sft", "grpo"):
        overrides.append("train.global_batch_size=896")
    if stage == "grpo":
        overrides.append("grpo.num_generations=8")
    try:
        cfg, plan = planned(overrides)
    except ConfigError as err:
        assert any(reason in str(err) for reason in CLEAR_REFUSALS), err
        return
    rendered = plan.render()
    assert f"world_size: {plan.world_size}" in rendered
    if stage in ("sft", "grpo"):
        assert plan.world_size * plan.per_device_train_batch_size \
            * plan.gradient_accumulation_steps == 896


def test_same_global_batch_different_accumulation_across_hardware():
    big = planned(["hardware=8xh100", "stage=sft", "train.global_batch_size=128"])[1]
    small = planned(["hardware=rtx3060-12g", "stage=sft", "train.global_batch_size=128"])[1]
    assert big.global_batch_size == small.global_batch_size == 128
    assert (big.world_size, big.gradient_accumulation_steps) == (8, 4)
    assert (small.world_size, small.gradient_accumulation_steps) == (1, 64)


def test_grpo_on_8xh100_reserves_one_gpu_for_generation():
    plan = planned(["hardware=8xh100", "stage=grpo", "train.global_batch_size=112"])[1]
    assert (plan.world_size, plan.generation_devices) == (7, 1)


@pytest.mark.parametrize("overrides,precision", [
    (["hardware=8xh100", "stage=sft"], "bf16"),
    (["hardware=8xh100", "stage=sft", "hardware.dtype=fp32", "hardware.distributed=zero3",
      "hardware.attn_implementation=sdpa"], "no"),
    (["hardware=8xh100", "stage=sft", "hardware.dtype=fp16", "hardware.attn_implementation=sdpa"],
     "fp16"),
])
def test_launcher_mixed_precision_follows_the_profile_dtype(overrides, precision):
    # The launcher files say 'no'; a DeepSpeed engine in bf16 under an fp32 Trainer fails.
    command = planned([*overrides, "train.global_batch_size=64"])[1].launch_command
    assert command[command.index("--mixed_precision") + 1] == precision


def test_indivisible_global_batch_names_the_three_numbers():
    with pytest.raises(ConfigError) as err:
        planned(["hardware=rtx3060-12g", "train.global_batch_size=9", "grpo.num_generations=3"])
    message = str(err.value)
    assert "train.global_batch_size=9" in message and "world_size (1)" in message
    assert ("per_device_train_batch_size (2)" in message
            and "use train.global_batch_size=8" in message)


def test_num_generations_must_divide_the_generation_batch():
    with pytest.raises(ConfigError, match=r"grpo.num_generations=3 does not divide"):
        planned(["train.global_batch_size=16", "grpo.num_generations=3"])


@pytest.mark.parametrize("override,key", [
    ("hardware.dtype=bf16", "hardware.dtype=bf16 on the cpu profile"),
    ("hardware.dtype=fp64",
     "hardware.dtype='fp64' is not allowed; choose one of: fp32, bf16, fp16"),
    ("train.learning_rate=fast", "train.learning_rate"),
    ("grpo.loss_type=ppo", "grpo.loss_type='ppo' is not allowed"),
])
def test_bad_values_name_the_key_and_the_allowed_values(override, key):
    with pytest.raises(ConfigError) as err:
        planned([override])
    assert key in str(err.value)


def test_fp16_with_flash_attention_is_rejected():
    with pytest.raises(ConfigError, match="flash_attention_2 with hardware.dtype=fp16"):
        planned(["hardware=1xh100", "hardware.dtype=fp16",
                 "hardware.attn_implementation=flash_attention_2"])


def test_metax_has_no_deepspeed_or_vllm():
    with pytest.raises(ConfigError, match="needs DeepSpeed, which hardware 'metax-c500' lacks"):
        planned(["hardware=metax-c500", "hardware.distributed=zero3"])
    with pytest.raises(ConfigError, match="has no vLLM build"):
        planned(["hardware=metax-c500", "inference.engine=vllm"])


def test_unknown_reward_lists_the_valid_names():
    with pytest.raises(ConfigError) as err:
        cfg = composed([])
        with open_dict(cfg):
            cfg.reward["nonsense"] = {"weight": 1.0}
        validate(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
    assert "nonsense" in str(err.value) and "accuracy" in str(err.value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1exp", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_bad_group_choice_lists_options(tmp_path):
    out = run_cli("hardware=tpu", cwd=tmp_path)
    assert out.returncode != 0
    assert "hardware" in out.stderr and "rtx3060-12g" in out.stderr


def test_config_error_exits_2_with_one_message(tmp_path):
    out = run_cli("train.global_batch_size=10", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("r1exp: config error: train.global_batch_size=10")
    assert "Traceback" not in out.stderr


def test_dry_run_prints_plan_without_loading_a_model(tmp_path):
    code = (
        "import sys, runpy; sys.argv=['r1exp','dry_run=true','hardware=8xh100','stage=grpo',"
        "'train.global_batch_size=112']\n"
        "try:\n    runpy.run_module('r1exp', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'dry run imported torch'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for line in ("world_size: 7", "per_device_train_batch_size: 4",
                 "gradient_accumulation_steps: 4", "global_batch_size: 112"):
        assert line in out.stdout
    assert "accelerate launch" in out.stdout and "zero3.yaml" in out.stdout


def test_cfg_job_never_imports_torch(tmp_path):
    code = (
        "import sys, runpy; sys.argv=['r1exp','--cfg','job']\n"
        "try:\n    runpy.run_module('r1exp', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "stage: grpo" in out.stdout


def test_runs_started_in_the_same_second_get_dirs_of_their_own(tmp_path):
    # A shell loop of `r1exp ... &` starts its runs within one second. With second-resolution
    # names they shared one dir, and all but one failed on its lock.
    runs = [subprocess.Popen([sys.executable, "-m", "r1exp", "dry_run=true"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read()
        run.stderr.close()
    assert len(list((tmp_path / "multirun_outputs" / "runs").glob("*/*_grpo"))) == 3


def test_the_engine_choices_are_the_registered_engines():
    # r1exp.config.validate lists them (it sits below r1exp.inference, which registers them)
    from r1exp.config.validate import ENGINES
    from r1exp.inference import engine_names

    assert sorted(ENGINES) == engine_names()
