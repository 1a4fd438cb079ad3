"""conf/experiment/distill-then-sft.yaml end to end: its two commands, from config alone, on
the embedded SmolLM2 (tiny: 3 problems x 2 samples x 8 tokens, then one SFT step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from r1exp.launch.controller import prepare
from r1exp.stages import run_stage

pytestmark = pytest.mark.slow
CONF = Path(__file__).resolve().parents[1] / "conf"


def step(run_dir: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={run_dir}",
                                           "experiment=distill-then-sft", "logger=none",
                                           *overrides])
    return prepare(cfg)[0]


def test_generate_then_sft_from_the_recipe(tmp_path):
    distilled = tmp_path / "distill"  # instead of ${paths.cache_dir}/distill/..., for the test
    generate = step(tmp_path / "generate", f"dataset.path={distilled}", "generate.limit=3",
                    "generate.num_generations=2", "generate.max_new_tokens=8",
                    "generate.keep=all")  # `correct` could keep nothing of 6 tiny samples
    assert generate.stage == "generate" and generate.generate.output_dir == str(distilled)
    run_stage(generate)
    manifest = json.loads((distilled / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["kept"] == 6

    sft = step(tmp_path / "sft", f"dataset.path={distilled}", "stage=sft", "dataset=jsonl",
               "train.max_steps=1", "train.save_steps=1", "train.global_batch_size=2",
               "hardware.per_device_train_batch_size=2")
    assert sft.dataset.path == str(distilled) and sft.generate is None
    metrics = run_stage(sft)
    assert metrics["train/global_step"] == 1
    assert (tmp_path / "sft" / "model" / "config.json").is_file()
