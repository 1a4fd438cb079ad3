"""Two training processes on CPU through the real `accelerate launch` path (ddp, gloo).

The controller starts `accelerate launch --num_processes 2 -m r1exp.launch.worker` exactly as it
does for GPUs; only rank 0 may log to MLflow and write metrics.json, so every metric must show
up once per step, not once per rank.
"""

from __future__ import annotations

import json

import pytest
from slurm.harness import mlflow_runs, run_r1exp, tiny_grpo, tiny_model  # noqa: F401

pytestmark = pytest.mark.slow

# Every Python process that torchrun starts carries RANK; this probe, on the workers'
# PYTHONPATH, leaves one file per rank so the test sees how many ranks really ran.
RANK_PROBE = """
import os
if "RANK" in os.environ and "R1EXP_TEST_RANK_DIR" in os.environ:
    name = f"rank{os.environ['RANK']}-of-{os.environ['WORLD_SIZE']}"
    open(os.path.join(os.environ["R1EXP_TEST_RANK_DIR"], name), "w").close()
"""


def test_two_cpu_processes_log_each_step_once(tmp_path, tiny_model):  # noqa: F811
    probe, ranks = tmp_path / "probe", tmp_path / "ranks"
    probe.mkdir()
    ranks.mkdir()
    (probe / "sitecustomize.py").write_text(RANK_PROBE)
    overrides = [o for o in tiny_grpo(tiny_model)
                 if not o.startswith(("train.max_steps", "hardware.per_device"))]
    out = run_r1exp(tmp_path, *overrides, "train.max_steps=2",
                    "hardware.devices_per_node=2", "hardware.distributed=ddp",
                    "hardware.per_device_train_batch_size=2",
                    env={"PYTHONPATH": str(probe), "R1EXP_TEST_RANK_DIR": str(ranks)})
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    assert "accelerate.commands.launch" in out.stdout + out.stderr
    assert "--num_processes 2" in out.stdout + out.stderr
    assert sorted(p.name for p in ranks.iterdir()) == ["rank0-of-2", "rank1-of-2"]
    assert "CONTROLLER_IMPORTED=[]" in out.stdout

    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "metrics.json").read_text())["train/global_step"] == 2
    client, parents, runs = mlflow_runs(tmp_path)
    assert parents == [] and [r.info.status for r in runs] == ["FINISHED"]
    run_id = runs[0].info.run_id
    for metric in ("loss", "reward", "learning_rate"):
        steps = [m.step for m in client.get_metric_history(run_id, metric)]
        assert steps == [1, 2], (metric, steps)  # twice per step would mean rank 1 logged too
    final = client.get_metric_history(run_id, "train/global_step")
    assert len(final) == 1  # metrics.json: written by rank 0 only, logged by the controller
