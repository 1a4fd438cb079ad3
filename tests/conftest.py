"""Shared fixtures: the offline benchmark data (skipping cleanly without it), and a real
`vllm serve` of the embedded model for the modules that talk to one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("R1EXP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SERVED_MODEL = "smollm2"  # the name `vllm_serve` serves the model under (/v1/models)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline copies of MATH-500 / GSM8K / AIME24 (../shared/data); skip when absent."""
    if not (SHARED_DATA / "math500.jsonl").is_file():
        pytest.skip(f"offline benchmark copies (math500.jsonl, gsm8k_*.jsonl, aime24.jsonl) not "
                    f"found at {SHARED_DATA}; set R1EXP_SHARED_DATA to a directory holding them")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def benchmark_data_dir():
    """Every r1exp the tests start, in-process or as a subprocess (which inherits os.environ),
    reads the offline benchmarks from the shared copies rather than the user's cache
    (paths.data_dir's default), unless R1EXP_DATA_DIR already names a directory."""
    if "R1EXP_DATA_DIR" in os.environ or not SHARED_DATA.is_dir():
        yield
        return
    os.environ["R1EXP_DATA_DIR"] = str(SHARED_DATA)
    yield
    del os.environ["R1EXP_DATA_DIR"]


@pytest.fixture(scope="module")
def vllm_serve(tmp_path_factory):
    """`vllm serve` of the embedded SmolLM2-135M on 127.0.0.1, as a user starts it; its root
    URL (…/v1 below it). Modules using it skip themselves where vLLM is not installed."""
    from omegaconf import OmegaConf

    from r1exp.launch import vllm_cli
    from r1exp.launch.processes import free_port, stop, wait_until_serving
    from r1exp.models.loading import resolve_model_dir

    cache_dir = os.environ.get("R1EXP_CACHE_DIR", Path.home() / ".cache" / "r1exp")
    model_dir = resolve_model_dir(OmegaConf.load(REPO_ROOT / "conf/model/smollm2-135m.yaml"),
                                  cache_dir)
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            vllm_cli.command("serve", str(model_dir), "--port", str(port), "--host", "127.0.0.1",
                             "--dtype", "float32", "--enforce-eager",
                             "--served-model-name", SERVED_MODEL, "--max-model-len", "2048"),
            env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}, stdout=log,
            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, f"{base}/health", what="vllm serve", timeout_s=600)
    except RuntimeError as err:
        stop(proc, grace_s=5)
        pytest.fail(f"{err}:\n{log_path.read_text()[-4000:]}")
    yield base
    stop(proc)
