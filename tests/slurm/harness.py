"""What the scale-out tests share: a tiny model and a local Slurm cluster (session fixtures),
and running `r1exp` the way a user does while watching what the controller process imports.

Test modules import the fixtures (`from slurm.harness import slurm_cluster, tiny_model`);
pytest uses imported fixtures like its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm.tiny_model import build_tiny_model

HERE = Path(__file__).resolve().parent
STATE_DIR = Path(os.environ.get("R1EXP_SLURM_STATE", "/tmp/r1exp-slurm"))
PACKAGES_UNAVAILABLE = 3  # start_local_slurm.sh's exit status when apt-get cannot install


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny-model")


def _daemons_running(state: Path) -> bool:
    """Whether start_local_slurm.sh's daemons run (a pid file alone may name a reused pid)."""
    for name in ("slurmctld", "slurmd"):
        try:
            pid = (state / f"{name}.pid").read_text().strip()
            if Path(f"/proc/{pid}/comm").read_text().strip() != name:
                return False
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """A one-node Slurm on localhost (installed and started if needed); stopped at the end if
    this fixture started it. Yields the environment clients need (SLURM_CONF)."""
    started_here = not _daemons_running(STATE_DIR)
    if os.geteuid() != 0 and started_here:
        pytest.skip("starting a local Slurm needs root (apt-get, slurmctld/slurmd)")
    begin = time.perf_counter()
    out = subprocess.run(["bash", str(HERE / "start_local_slurm.sh"), str(STATE_DIR)],
                         capture_output=True, text=True, timeout=900, check=False)
    if out.returncode == PACKAGES_UNAVAILABLE:
        pytest.skip(f"slurm-wlm/munge cannot be installed here: {out.stderr[-800:]}")
    assert out.returncode == 0, f"local Slurm did not come up:\n{out.stderr[-3000:]}"
    conf = out.stdout.strip().splitlines()[-1].removeprefix("SLURM_CONF=")
    print(f"\nlocal Slurm up in {time.perf_counter() - begin:.1f}s "
          f"({'started' if started_here else 'reused'}; SLURM_CONF={conf})")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield {"SLURM_CONF": conf}
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if started_here:
            subprocess.run(["bash", str(HERE / "stop_local_slurm.sh"), str(STATE_DIR)],
                           timeout=120, check=False)


# Runs `r1exp <args>` in this interpreter, then reports which heavy modules the controller
# process itself imported: training state (torch, CUDA) must live in the worker processes only.
CONTROLLER = """
import runpy, sys
sys.argv = ["r1exp", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("r1exp", run_name="__main__")
except SystemExit as exit_:
    code = exit_.code or 0
heavy = sorted(m for m in ("torch", "transformers", "trl") if m in sys.modules)
print(f"CONTROLLER_IMPORTED={heavy}", flush=True)
sys.exit(code)
"""


def tiny_grpo(model_dir: Path) -> list[str]:
    """Overrides for the smallest real GRPO run: one step, 4 completions of 8 tokens."""
    return [f"model.path={model_dir}", "train.max_steps=1", "train.global_batch_size=4",
            "grpo.num_generations=2", "grpo.max_completion_length=8",
            "hardware.per_device_train_batch_size=4"]


def run_r1exp(tmp_path: Path, *overrides: str, multirun: bool = False, timeout: float = 600,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`r1exp [-m] <overrides>` in `tmp_path`, with its sweep/run dirs and MLflow store there."""
    args = [sys.executable, "-c", CONTROLLER, *(["-m"] if multirun else []),
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", *overrides]
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(env or {})
    start = time.perf_counter()
    out = subprocess.run(args, cwd=tmp_path, env=full_env, capture_output=True, text=True,
                         timeout=timeout, check=False)
    print(f"r1exp {'-m ' if multirun else ''}{' '.join(overrides)}: exit {out.returncode} in "
          f"{time.perf_counter() - start:.1f}s")
    return out


def mlflow_runs(tmp_path: Path):
    """(client, parent runs of sweeps, all other runs) of the test's MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("r1exp")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    is_parent = [r.data.tags.get("r1exp.sweep") == "true" for r in runs]
    return (client, [r for r, p in zip(runs, is_parent) if p],
            [r for r, p in zip(runs, is_parent) if not p])
