"""The stage registry (r1exp/stages/registry.py): what `stage=` picks, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1exp.config.stage import Stage
from r1exp.errors import ConfigError
from r1exp.stages import STAGES, register, stage, stage_names

CONF_STAGES = Path(__file__).resolve().parents[1] / "conf" / "stage"


def test_every_stage_choice_is_a_registered_stage():
    assert sorted(p.stem for p in CONF_STAGES.glob("*.yaml")) == stage_names()


def test_an_unknown_stage_names_the_registered_ones():
    with pytest.raises(ConfigError, match="stage='rl' is not a stage; choose one of: eval, "
                                          "generate, grpo, sft"):
        stage("rl")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="registered twice"):
        register(Stage(name="sft", run=lambda cfg: {}, config_sections=()))


def test_a_training_stage_states_its_memory():
    with pytest.raises(TypeError, match="without a memory workload"):
        register(Stage(name="dpo", run=lambda cfg: {}, config_sections=(), training=True))
    assert "dpo" not in STAGES
