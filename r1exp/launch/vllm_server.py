"""vLLM server mode for GRPO: the server `trl vllm-serve` starts, on the profile's reserved GPUs.

TRL 1.16 builds the `vllm serve` command its `VLLMClient` needs (the NCCL weight-transfer
engine that receives the trainer's weights after each step, processed log-probs, no log-prob
cap) in `trl.scripts.vllm_serve.build_command`; the command is taken from there rather than
copied, so it follows TRL. `VLLM_SERVER_DEV_MODE=1` exposes the weight-sync endpoints, as
`trl vllm-serve` sets it.

The controller starts the server before the training workers (which see only the remaining
devices), waits until it serves, watches it while they train and stops it after them. Its
output goes to `vllm_server.log` in the run dir; a server that does not come up or dies
mid-run fails the run with that path in the message. Workers find the server through
R1EXP_VLLM_SERVER_URL and the port of the weight-sync group through R1EXP_VLLM_GROUP_PORT.
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from r1exp.launch.allocator import for_vllm
from r1exp.launch.processes import free_port, stop, wait_until_serving
from r1exp.launch.vllm_cli import command
from r1exp.models.loading import TORCH_DTYPES
from r1exp.stages.grpo import GROUP_PORT_ENV, SERVER_URL_ENV

LOG_FILE = "vllm_server.log"


class ServerFailed(RuntimeError):
    """The vLLM server did not come up, or exited while the workers trained."""


def device_split(devices_per_node: int, server_devices: int) -> tuple[str, str]:
    """CUDA_VISIBLE_DEVICES for (training ranks, the server): the server takes the last ones."""
    training = ",".join(str(i) for i in range(devices_per_node - server_devices))
    server = ",".join(str(i) for i in range(devices_per_node - server_devices, devices_per_node))
    return training, server


def server_command(model_dir: str, cfg, port: int) -> list[str]:
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    v = cfg.hardware.vllm
    args = ScriptArguments(
        model=model_dir, revision=cfg.model.revision, host="127.0.0.1", port=port,
        tensor_parallel_size=v.server_devices or 1,
        gpu_memory_utilization=v.gpu_memory_utilization,
        dtype=TORCH_DTYPES[cfg.hardware.dtype],  # vLLM names dtypes as torch does
        enforce_eager=v.enforce_eager,
        trust_remote_code=cfg.model.trust_remote_code, log_level="warning",
    )
    built = build_command(args)  # [python, -m, vllm's CLI, serve, ...]
    return command(*built[built.index("serve"):])  # through the shim where the build needs it


@dataclass
class RunningServer:
    proc: subprocess.Popen
    log: Path
    worker_env: dict[str, str]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ServerFailed(f"the vLLM server exited with status {self.proc.returncode} "
                               f"while the workers trained; its log: {self.log}")


@contextmanager
def running_server(cfg, model_dir: str, env: dict[str, str], run_dir: Path,
                   timeout_s: float = 900):
    """Start the server, wait until it serves, yield it, stop it."""
    training_devices, server_devices = device_split(
        cfg.hardware.devices_per_node, cfg.hardware.vllm.server_devices)
    port, group_port = free_port(), free_port()
    server_env = {**for_vllm(env), "VLLM_SERVER_DEV_MODE": "1"}
    worker_env = {**env, SERVER_URL_ENV: f"http://127.0.0.1:{port}",
                  GROUP_PORT_ENV: str(group_port)}
    if cfg.hardware.accelerator == "cuda":
        server_env["CUDA_VISIBLE_DEVICES"] = server_devices
        worker_env["CUDA_VISIBLE_DEVICES"] = training_devices
    log_path = run_dir / LOG_FILE
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(server_command(model_dir, cfg, port), env=server_env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_until_serving(proc, worker_env[SERVER_URL_ENV] + "/health",
                               what="the vLLM server", timeout_s=timeout_s, poll_s=2)
        except RuntimeError as err:
            raise ServerFailed(f"{err}; its log: {log_path}") from None
        yield RunningServer(proc, log_path, worker_env)
    finally:
        stop(proc)
