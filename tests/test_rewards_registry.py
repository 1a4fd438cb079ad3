"""The registry: names, YAML files as the single source of defaults, validation and weights."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1exp.errors import ConfigError
from r1exp.rewards import build_reward_functions, reward_names, validate_reward_config
from r1exp.rewards.registry import REWARDS

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "reward"
EXPECTED = ["accuracy", "cosine", "countdown", "format", "length", "reasoning_steps",
            "repetition_penalty", "soft_overlong_punishment", "tag_count"]


def composed(*names: str):
    """The config Hydra's multi-select builds: conf/reward/<name>.yaml merged under `reward`."""
    reward = OmegaConf.merge(*[OmegaConf.load(CONF / f"{name}.yaml") for name in names])
    return OmegaConf.create({"grpo": {"max_completion_length": 100}, "reward": reward})


def test_every_reward_is_registered_with_a_yaml_file():
    assert reward_names() == EXPECTED
    assert sorted(path.stem for path in CONF.glob("*.yaml")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_yaml_sets_exactly_the_factory_parameters(name):
    text = (CONF / f"{name}.yaml").read_text()
    assert text.startswith(f"# {name}: "), "first line: a comment saying what it does"
    config = OmegaConf.load(CONF / f"{name}.yaml")
    assert list(config) == [name]
    assert sorted(config[name]) == sorted(REWARDS[name].params)


def test_all_yaml_defaults_validate_and_build_in_order():
    config = composed(*EXPECTED)
    validate_reward_config(config.reward)
    funcs, weights = build_reward_functions(config.reward)
    assert [f.__name__ for f in funcs] == EXPECTED
    assert weights == [1.0] * len(EXPECTED)


def test_hydra_multi_select_merges_the_files_under_reward(tmp_path):
    from hydra import compose, initialize_config_dir

    (tmp_path / "primary.yaml").write_text(textwrap.dedent(f"""\
        defaults:
          - reward: [accuracy, format]
          - _self_
        hydra:
          searchpath: [file://{CONF.parent}]
        grpo:
          max_completion_length: 64
        """))
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        config = compose(
            config_name="primary",
            overrides=["reward=[accuracy,format,tag_count]", "reward.format.weight=0.5"],
        )
    funcs, weights = build_reward_functions(config.reward)
    assert [f.__name__ for f in funcs] == ["accuracy", "format", "tag_count"]
    assert weights == [1.0, 0.5, 1.0]


def test_weights_and_parameters_reach_the_functions():
    config = {
        "format": {"weight": 0.5, "think_tag": "think", "answer_tag": "",
                   "think_opened_by_prompt": False},
        "reasoning_steps": {"weight": 2, "min_steps": 1},  # an int weight is a float
    }
    funcs, weights = build_reward_functions(config)
    assert weights == [0.5, 2.0] and all(isinstance(w, float) for w in weights)
    assert [f(["<think>x</think> 4"]) for f in funcs] == [[1.0], [0.0]]


def entry(name: str, **changes) -> dict:
    params = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml")[name])
    return {name: {**params, **changes}}


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"acuracy": {"weight": 1.0}},
            r"reward\.acuracy: unknown reward; valid names are: "
            r"accuracy, cosine, countdown, format",
        ),
        (
            entry("accuracy", gold_col="x"),
            r"reward\.accuracy\.gold_col: unknown parameter; "
            r"allowed: weight, gold_column, timeout_s",
        ),
        (entry("format", weight="high"), r"reward\.format\.weight: expected float, got 'high'"),
        (entry("format", weight=True), r"reward\.format\.weight: expected float"),
        (entry("format", think_opened_by_prompt=1), r"think_opened_by_prompt: expected bool"),
        (entry("cosine", max_len=10.5), r"reward\.cosine\.max_len: expected int"),
        (entry("accuracy", timeout_s="???"), r"reward\.accuracy\.timeout_s: expected float"),
        ({"tag_count": {"weight": 1.0}}, r"reward\.tag_count\.think_tag: missing"),
        ({"format": None}, r"reward\.format: expected a mapping"),
        (["accuracy", "format"], r"reward: expected a mapping"),
        (entry("repetition_penalty", max_penalty=0.5), r"should not be positive"),
        (entry("length", timeout_s=0), r"reward\.length\.timeout_s: must be > 0"),
    ],
)
def test_bad_configs_are_config_errors_naming_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        validate_reward_config(config)


def test_a_missing_interpolation_is_a_config_error():
    config = OmegaConf.create({"reward": OmegaConf.to_container(
        OmegaConf.load(CONF / "soft_overlong_punishment.yaml"))})
    with pytest.raises(ConfigError, match="max_completion_length"):
        validate_reward_config(config.reward)


def test_validation_imports_nothing_heavy():
    code = textwrap.dedent("""
        import sys
        from omegaconf import OmegaConf
        from r1exp.rewards import validate_reward_config, build_reward_functions
        config = OmegaConf.create({"accuracy": {"weight": 1.0, "gold_column": "answer",
                                               "timeout_s": 5.0}})
        validate_reward_config(config)
        build_reward_functions(config)
        heavy = [m for m in ("math_verify", "sympy", "torch", "transformers",
                             "latex2sympy2_extended")
                 if m in sys.modules]
        print(heavy)
        """)
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_register_rejects_factories_with_python_side_defaults():
    from r1exp.rewards import register

    with pytest.raises(TypeError, match="keyword-only without a default"):

        @register("never_registered")
        def factory(*, size: int = 3):
            return lambda completions, **kw: [0.0] * len(completions)

    assert "never_registered" not in REWARDS
