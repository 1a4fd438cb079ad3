"""A two-node Slurm job simulated on this host, through the launch path multi-node jobs use.

`python -m tests.bench.multi_gpu_validation --cpu` starts two controllers, each with the
environment Slurm and submitit give a task of a `--nodes 2 --ntasks-per-node 1` job. Each finds
the main node and its machine rank there and starts one gloo rank with `accelerate launch
--machine_rank ...`. Same world size, same micro-batches, fp32: the losses must equal those of
two ranks on one node exactly. The same bench ran this on 4 GPUs (docs/scale-out.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from slurm.harness import tiny_model  # noqa: F401

pytestmark = pytest.mark.slow
# The bench is `tests.bench.*`: importable from the checkout's root, wherever pytest started.
REPO_ROOT = Path(__file__).resolve().parents[1]


def test_two_simulated_nodes_train_like_one_node(tmp_path, tiny_model):  # noqa: F811
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.multi_gpu_validation", "--cpu",
         "--runs", "sft-ddp,sft-2nodes", "--tokenizer", str(tiny_model), "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    one_node, two_nodes = runs["sft-ddp"], runs["sft-2nodes"]
    assert two_nodes["status"] == "FINISHED"
    assert [r["rank"] for r in two_nodes["ranks"]] == [0, 1]
    assert all(r["world_size"] == 2 and r["steps"] == 3 for r in two_nodes["ranks"])
    assert two_nodes["losses"] == one_node["losses"] and len(one_node["losses"]) == 3
    for node in (0, 1):
        log = tmp_path / "logs" / ("sft-2nodes.log" if node == 0 else "sft-2nodes.node1.log")
        launch = next(line for line in log.read_text().splitlines() if "starting worker" in line)
        assert "--num_machines 2" in launch and f"--machine_rank {node}" in launch
        assert "--main_process_ip localhost" in launch
    # only the first node tracks the run; the second one's ranks log to their own file
    assert (tmp_path / "runs" / "sft-2nodes" / "worker-node1.log").is_file()
