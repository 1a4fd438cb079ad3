"""A GRPO run's logged per-reward metrics are what the reward functions give on its samples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]


def test_logged_reward_metrics_match_recomputation_on_the_logged_samples(tmp_path):
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from r1exp.rewards import build_reward_functions

    db = tmp_path / "mlflow.db"
    weights = {"accuracy": 1.0, "tag_count": 0.5}
    cmd = [sys.executable, "-m", "r1exp", f"hydra.run.dir={tmp_path / 'run'}",
           f"logger.tracking_uri=sqlite:///{db}", "reward=[accuracy,tag_count]",
           "reward.tag_count.weight=0.5", "train.max_steps=1", "grpo.max_completion_length=12"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    table = pd.read_parquet(
        next((tmp_path / "run" / "checkpoints" / "completions").glob("*.parquet")))
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.search_runs([client.get_experiment_by_name("r1exp").experiment_id])[0]
    funcs, logged_weights = build_reward_functions(
        {"accuracy": {"weight": 1.0, "gold_column": "answer", "timeout_s": 5.0},
         "tag_count": {"weight": 0.5, "think_tag": "think", "answer_tag": "answer"}})
    assert logged_weights == list(weights.values())
    completions = [list(c) if not isinstance(c, str) else c for c in table["completion"]]
    answers = _answers(table, tmp_path / "run" / "resolved.yaml")
    for func in funcs:
        recomputed = func(completions, answer=answers)
        assert recomputed == pytest.approx(list(table[func.__name__]))
        mean = sum(recomputed) / len(recomputed)
        assert run.data.metrics[f"rewards/{func.__name__}/mean"] == pytest.approx(mean, abs=1e-6)
    expected_reward = sum(w * table[name] for name, w in weights.items()).mean()
    assert run.data.metrics["reward"] == pytest.approx(expected_reward, abs=1e-6)


def _answers(table, resolved: Path) -> list[str]:
    """The gold of each logged prompt, regenerated from the run's own resolved config."""
    from omegaconf import OmegaConf

    from r1exp.data.synthetic import generate_splits

    cfg = OmegaConf.load(resolved)
    rows = generate_splits(OmegaConf.to_container(cfg.dataset.generator), cfg.seed)["train"]
    gold = {row["problem"]: row["answer"] for row in rows}
    return [gold[list(prompt)[-1]["content"]] for prompt in table["prompt"]]
