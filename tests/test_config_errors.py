"""A typo on the command line gets one message, exit status 2 and no traceback: a group choice
names the group and its options, a number out of range names the key and the range, and a
reward reading a column its dataset lacks is refused in the dry run, before any model loads."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from r1exp.config.ranges import RANGES, Interval
from r1exp.config.schema import RunConfig
from r1exp.stages import validate
from r1exp.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def r1exp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1exp", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def refused(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("r1exp: config error: "), out.stderr
    return out.stderr


@pytest.mark.parametrize("args,group,bad", [
    (["hardware=3060"], "hardware", "3060 (int)"),  # Hydra: "Got int" and a traceback
    (["reward=[accuracy,nonexistent]"], "reward", "'nonexistent'"),
    (["reward=[accuracy,7]"], "reward", "7 (int)"),
    (["+reward=nope"], "reward", "'nope'"),
    (["model=null"], "model", "null"),
    (["-m", "hardware=cpu,3060"], "hardware", "3060 (int)"),
    (["-m", "reward=[accuracy],[format,nope]"], "reward", "'nope'"),
    (["stage=range(1,3)"], "stage", "numeric sweep"),
])
def test_bad_group_choice_names_the_group_and_lists_its_options(tmp_path, args, group, bad):
    message = refused(r1exp(*args, "dry_run=true", cwd=tmp_path))
    assert f"config group '{group}'" in message and bad in message
    assert f"options: {', '.join(options(group))}" in message


def test_int_choice_suggests_the_option_it_is_part_of(tmp_path):
    assert "did you mean rtx3060-12g?" in refused(r1exp("hardware=3060", cwd=tmp_path))


def test_nested_group_lists_options_from_conf_hydra_and_plugins(tmp_path):
    message = refused(r1exp("hydra/launcher=slurm", cwd=tmp_path))
    # conf/hydra/launcher/*.yaml, Hydra's own default and the submitit plugin's
    assert "config group 'hydra/launcher'" in message
    assert all(name in message for name in (*options("hydra/launcher"), "basic",
                                            "submitit_slurm"))


def test_misspelt_group_lists_the_groups(tmp_path):
    message = refused(r1exp("hardwre=cpu", "hydra/launchr=local", cwd=tmp_path))
    assert "'hardwre' is neither a config group nor a config key" in message
    assert "hardware" in message and "reward" in message
    assert "'hydra/launchr' is not a config group; groups under 'hydra':" in message
    assert "launcher" in message


BASES = ("dataset", "hardware", "model", "benchmark")  # conf/<group>_base.yaml


def test_group_bases_are_no_options_to_choose(tmp_path):
    message = refused(r1exp(*(f"{group}={group}_base" for group in BASES), cwd=tmp_path))
    for group in BASES:
        assert f"'{group}_base' is not an option of config group '{group}'" in message
        assert f"options: {', '.join(options(group))}" in message
        assert f"{group}_base" not in options(group)
    listed = r1exp("--help", cwd=tmp_path)
    assert listed.returncode == 0 and "hardware: " in listed.stdout, listed.stderr
    assert "_base" not in listed.stdout


@pytest.mark.parametrize("args,stage,override", [
    # the default recipe (quickstart) sets grpo knobs, so this one composes: the run would
    # leave it out without a word
    (["stage=sft"], "sft", "grpo.temperature=0.7"),
    # smoke-sft composes no grpo node: Hydra would fail and suggest +grpo.beta=0.1
    (["experiment=smoke-sft"], "sft", "grpo.beta=0.1"),
    (["stage=eval"], "eval", "reward=[accuracy]"),
    (["-m", "stage=sft,grpo"], "sft", "grpo.temperature=0.7,0.9"),
])
def test_knob_of_another_stage_is_refused_naming_the_key_and_why(tmp_path, args, stage,
                                                                 override):
    message = refused(r1exp(*args, override, "dry_run=true", cwd=tmp_path))
    node = override.split("=")[0].split(".")[0]
    assert f"{override}: stage={stage} does not read the `{node}` knobs" in message
    assert "belong to stage grpo" in message and "pick stage=grpo" in message


@pytest.mark.parametrize("stage,instead", [
    ("sft", "pick a stage=sft recipe: light-r1-3060-sft, "),
    ("eval", "run stage=eval without it ('~experiment')"),
])
def test_a_recipe_of_another_stage_names_the_recipe_stage_and_the_fix(tmp_path, stage, instead):
    # Hydra alone: "In 'experiment/countdown-zero': Could not override 'reward'"
    message = refused(r1exp("experiment=countdown-zero", f"stage={stage}", "dry_run=true",
                            cwd=tmp_path))
    assert (f"experiment=countdown-zero stage={stage}: the recipe is for stage=grpo and picks "
            f"its `reward` knobs, which stage={stage} does not compose; drop stage={stage}"
            in message)
    assert instead in message


def test_the_old_resume_key_names_the_new_one(tmp_path):
    message = refused(r1exp("stage=sft", "train.resume=never", "dry_run=true", cwd=tmp_path))
    assert "train.resume=never: train.resume is now `resume`" in message
    assert "use resume=never" in message


@pytest.mark.parametrize("override,moved,use", [
    ("eval.backend=lighteval", "eval.backend is now `eval.evaluator`", "eval.evaluator=lighteval"),
    ("eval.backend=vllm", "eval.backend is now `eval.evaluator`", "inference.engine=vllm"),
    ("eval.vllm.gpu_memory_utilization=0.5", "eval.vllm is now `inference.vllm`",
     "inference.vllm.gpu_memory_utilization=0.5"),
    ("generate.endpoint_model=m", "generate.endpoint_model is now `inference.openai.model`",
     "inference.openai.model=m"),
    ("hardware.generation_backend=vllm",
     "hardware.generation_backend is now `hardware.inference_engine`",
     "hardware.inference_engine=vllm"),
])
def test_moved_inference_keys_name_the_new_one(tmp_path, override, moved, use):
    message = refused(r1exp("stage=eval", override, "dry_run=true", cwd=tmp_path))
    assert f"{override}: {moved}" in message and f"use {use}" in message


def test_every_moved_key_names_a_key_that_exists():
    from r1exp.command_line.group_overrides import RENAMED_KEYS

    absent = object()
    # between them they compose every node that a key moved from or to
    configs = [composed(["stage=eval"]), composed(["stage=grpo"])]
    for old, (new, _) in RENAMED_KEYS.items():
        assert all(OmegaConf.select(c, old, default=absent) is absent for c in configs), old
        assert any(OmegaConf.select(c, new, default=absent) is not absent for c in configs), new


def test_good_group_choices_still_compose(tmp_path):
    out = r1exp("--cfg", "job", "~experiment", "reward=tag_count", "hardware='cpu'",
                "hydra/launcher=local", "seed=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "tag_count:" in out.stdout and "seed: 3" in out.stdout


@pytest.mark.parametrize("override,message", [
    ("train.learning_rate=-1e-5", "train.learning_rate=-1e-05 must be > 0"),
    ("train.warmup_ratio=1", "train.warmup_ratio=1.0 must be in [0, 1)"),
    ("train.max_steps=0", "train.max_steps=0 must be -1 or >= 1"),
    ("grpo.top_p=1.5", "grpo.top_p=1.5 must be in (0, 1]"),
    ("grpo.num_generations=1", "grpo.num_generations=1 must be >= 2"),
    ("hardware.vllm.gpu_memory_utilization=0",
     "hardware.vllm.gpu_memory_utilization=0.0 must be in (0, 1]"),
    ("reward.accuracy.weight=inf", "reward.accuracy.weight=inf must be finite"),
    ("eval.pass_k=[1,0]", "eval.pass_k[1]=0 must be >= 1"),
])
def test_value_out_of_range_names_the_key_value_and_range(tmp_path, override, message):
    # the default run (grpo) evaluates no benchmark, so it holds no eval knobs to check
    stage = ["stage=eval"] if override.startswith("eval.") else []
    assert message in refused(r1exp("dry_run=true", *stage, override, cwd=tmp_path))


def numeric_knobs(schema: type, prefix: str = "") -> set[str]:
    """Dotted keys of every int/float field of the schema (`*` for mapping keys, `[]` lists)."""
    found = set()
    for name, hint in typing.get_type_hints(schema).items():
        key = f"{prefix}{name}"
        if typing.get_origin(hint) is typing.Union:  # Optional[X]
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint in (int, float):
            found.add(key)
        elif dataclasses.is_dataclass(hint):
            found |= numeric_knobs(hint, f"{key}.")
        elif origin is list and args[0] in (int, float):
            found.add(f"{key}[]")
        elif origin is dict and dataclasses.is_dataclass(args[1]):
            found |= numeric_knobs(args[1], f"{key}.*.")
    return found


def test_every_numeric_knob_of_the_schema_has_a_range():
    knobs = numeric_knobs(RunConfig)
    assert "train.learning_rate" in knobs and "benchmark.*.max_samples" in knobs
    assert sorted(knobs - set(RANGES)) == []
    # a misspelt key in the table would never be checked: `reward` alone is untyped
    assert sorted(set(RANGES) - knobs) == ["reward.*.weight"]


def test_interval_notation():
    steps = Interval.parse("-1 or [1, inf)")
    assert [v in steps for v in (-1, 0, 1, 10**9, math.inf, -2)] == [1, 0, 1, 1, 0, 0]
    assert steps.words() == "-1 or >= 1"
    fraction = Interval.parse("(0, 1]")
    assert [v in fraction for v in (0, 1e-9, 1, 1.0001, math.nan)] == [0, 1, 1, 0, 0]
    assert fraction.words() == "in (0, 1]"
    finite = Interval.parse("(-inf, inf)")
    assert [v in finite for v in (-1e308, math.inf, -math.inf, math.nan)] == [1, 0, 0, 0]
    assert Interval.parse("(-inf, 0]").words() == "<= 0"
    with pytest.raises(ValueError, match="not interval notation"):
        Interval.parse(">= 1")


def test_reward_column_missing_from_the_dataset_is_refused_in_the_dry_run(tmp_path):
    # It used to pass the dry run, load the model and die at step 1 with KeyError: 'numbers'.
    message = refused(r1exp("dry_run=true", "reward=[countdown]", cwd=tmp_path))
    assert "reward.countdown.numbers_column='numbers' is not a column of dataset 'arithmetic'" \
        in message and "answer, problem" in message
    out = r1exp("dry_run=true", "dataset=countdown", "reward=[countdown,format]", cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def composed(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/tmp/r1exp-test-run", *overrides])
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def test_reward_columns_follow_rename_and_mixture_columns():
    renamed = ["dataset=countdown", "reward=[countdown]", "+dataset.rename.numbers=operands"]
    with pytest.raises(ConfigError, match="numbers_column='numbers'.*answer, operands, problem"):
        validate(composed(renamed))
    validate(composed([*renamed, "reward.countdown.numbers_column=operands"]))
    mixture = ["dataset=jsonl", "dataset.path=/data/any.jsonl", "reward=[countdown]",
               "dataset.mixture=[{path: /data/a.jsonl, columns: [problem, answer]}]"]
    with pytest.raises(ConfigError, match="numbers_column='numbers'"):
        validate(composed(mixture))


def test_eval_temperature_zero_needs_greedy_on_transformers():
    with pytest.raises(ConfigError, match="eval.temperature=0 with eval.greedy=false"):
        validate(composed(["stage=eval", "eval.temperature=0"]))
    validate(composed(["stage=eval", "eval.temperature=0", "eval.greedy=true"]))
    validate(composed(["stage=eval", "eval.temperature=0", "inference.engine=vllm",
                       "hardware=1xh100"]))
    # a training run checks them where it evaluates: train.benchmarks
    with pytest.raises(ConfigError, match="eval.temperature=0 with eval.greedy=false"):
        validate(composed(["eval.temperature=0", "train.benchmarks=[arithmetic]"]))
    validate(composed(["eval.temperature=0"]))  # evaluates nothing: no eval knobs to check
