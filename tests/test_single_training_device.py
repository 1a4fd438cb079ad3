"""A one-process training run sees one GPU, so the Trainer never falls back to nn.DataParallel.

Found on a 2-GPU machine: `hardware=1xh100` SFT in one process saw both GPUs and TRL's
SFTTrainer refused DataParallel (docs/scale-out.md, "Two-GPU validation").
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from r1exp.cli import CONF_DIR
from r1exp.launch.controller import prepare, single_training_device


def planned(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/tmp/r1exp-test-device",
                                           "logger=none", *overrides])
    return prepare(cfg)


@pytest.mark.parametrize("stage", ["sft", "grpo"])
@pytest.mark.parametrize(("visible", "expected"), [(None, "0"), ("3,5", "3"), ("2", "2")])
def test_one_training_process_gets_the_first_visible_gpu(stage, visible, expected):
    cfg, plan = planned(f"stage={stage}", "hardware=1xh100")
    env = {"PATH": "/bin"} | ({} if visible is None else {"CUDA_VISIBLE_DEVICES": visible})
    assert single_training_device(plan, cfg, env)["CUDA_VISIBLE_DEVICES"] == expected


@pytest.mark.parametrize("overrides", [
    ("stage=sft", "hardware=1xh100", "hardware.devices_per_node=2", "hardware.distributed=ddp",
     "train.global_batch_size=16"),
    ("stage=sft", "hardware=cpu"),  # no GPU to choose
    ("stage=eval", "hardware=1xh100"),  # one vLLM process may use several GPUs
])
def test_other_runs_keep_every_visible_gpu(overrides):
    cfg, plan = planned(*overrides)
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert single_training_device(plan, cfg, env) == env
