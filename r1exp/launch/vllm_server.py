"""vLLM server mode for GRPO: `vllm serve` on the devices reserved by the profile.

TRL 1.16 deprecated `trl vllm-serve` in favour of vLLM's own server with VLLM_SERVER_DEV_MODE=1
(the weight-sync endpoints live behind it), so that is what runs here.

The controller starts it before the training workers (which see only the remaining devices)
and stops it after them; workers find it through R1EXP_VLLM_SERVER_URL. Untested on this
project's machines: vLLM cannot be installed there (see the README's "What was exercised where").
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

from r1exp.launch.processes import stop, wait_until_serving

SERVER_URL_ENV = "R1EXP_VLLM_SERVER_URL"
PORT = 8000


def server_url_from_env() -> str | None:
    return os.environ.get(SERVER_URL_ENV)


def device_split(devices_per_node: int, server_devices: int) -> tuple[str, str]:
    """CUDA_VISIBLE_DEVICES for (training ranks, the server): the server takes the last ones."""
    training = ",".join(str(i) for i in range(devices_per_node - server_devices))
    server = ",".join(str(i) for i in range(devices_per_node - server_devices, devices_per_node))
    return training, server


def server_command(model_dir: str, cfg) -> list[str]:
    return [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model_dir,
        "--tensor-parallel-size", str(cfg.hardware.vllm.server_devices),
        "--gpu-memory-utilization", str(cfg.hardware.vllm.gpu_memory_utilization),
        "--port", str(PORT),
    ]


@contextmanager
def running_server(cfg, model_dir: str, env: dict[str, str], timeout_s: float = 900):
    """Start the server, wait for /health, yield the env for training workers, stop it."""
    training_devices, server_devices = device_split(
        cfg.hardware.devices_per_node, cfg.hardware.vllm.server_devices
    )
    proc = subprocess.Popen(server_command(model_dir, cfg),
                            env={**env, "CUDA_VISIBLE_DEVICES": server_devices,
                                 "VLLM_SERVER_DEV_MODE": "1"})
    url = f"http://127.0.0.1:{PORT}"
    try:
        wait_until_serving(proc, url + "/health", what="the vLLM server", timeout_s=timeout_s,
                           poll_s=5)
        yield {**env, SERVER_URL_ENV: url, "CUDA_VISIBLE_DEVICES": training_devices}
    finally:
        stop(proc)
