"""r1exp as a real package: the wheel built from this tree carries conf/ and launchers/, and an
install of it, run outside the checkout, composes, plans and trains from its own copies.

The venv sees the main environment's packages (reinstalling torch, transformers, ... would take
minutes), so the test proves which r1exp runs: the wheel's, imported from the venv's
site-packages, never the editable checkout. CI runs it through pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]
# What the build reads. Copied first, so the build's own build/ and egg-info never land in the
# shared checkout.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "r1exp", "conf",
                "launchers", "hydra_plugins")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO_ROOT / name, source / name)
    # No build isolation: it would fetch setuptools from an index on every run.
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(root / "dist"), str(source)], cwd=root)
    wheel = next((root / "dist").glob("r1exp-*.whl"))
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        cwd=root)
    python = venv / "bin" / "python"
    # --ignore-installed: the editable r1exp of the main environment counts as installed and
    # would otherwise make pip skip the wheel.
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed",
         str(wheel)], cwd=root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "venv": venv, "python": python, "cwd": elsewhere}


def run(argv: list, cwd: Path, timeout: int = 300) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{output[-4000:]}"
    return output


def test_wheel_ships_conf_and_launchers(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for path in (REPO_ROOT / "conf").rglob("*.yaml"):
        assert f"r1exp/conf/{path.relative_to(REPO_ROOT / 'conf')}" in names
    for path in (REPO_ROOT / "launchers").rglob("*.yaml"):
        assert f"r1exp/launchers/{path.relative_to(REPO_ROOT / 'launchers')}" in names


def test_wheel_ships_no_benchmarks_or_tests(installed):
    # The benchmarks and their device-call glue are tools of the checkout (tests/bench), not of
    # an install; this catches a move back into the package or a packages.find that grows.
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    tops = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert tops == {"r1exp", "hydra_plugins"}, tops
    assert [name for name in names if "bench" in name.split("/")] == []


def test_installed_r1exp_reads_its_own_files(installed):
    venv = installed["venv"].resolve()
    printed = run([installed["python"], "-c", "import r1exp, r1exp.resources as r; "
                   "print(r1exp.__file__, r.CONF_DIR, r.LAUNCHERS_DIR, sep='\\n')"],
                  cwd=installed["cwd"])
    paths = [Path(line) for line in printed.split()]
    assert len(paths) == 3, printed
    for path in paths:
        assert path.is_relative_to(venv), f"{path} is not the wheel's copy in {venv}"


def test_cfg_job_composes_from_the_wheel(installed):
    r1exp = installed["venv"] / "bin" / "r1exp"
    job = run([r1exp, "--cfg", "job"], cwd=installed["cwd"])
    assert "stage: grpo" in job and "name: smollm2-135m" in job, job[-2000:]
    search_path = run([r1exp, "--info", "searchpath"], cwd=installed["cwd"])
    main_source = next(line for line in search_path.splitlines() if "main" in line.split())
    assert str(installed["venv"].resolve()) in main_source, search_path
    assert str(REPO_ROOT) not in search_path, search_path


def test_dry_run_plans_a_launch_with_the_wheels_launcher(installed):
    plan = run([installed["venv"] / "bin" / "r1exp", "dry_run=true", "stage=sft",
                "hardware=8xh100", "model=qwen2.5-0.5b-instruct", "train.global_batch_size=64"],
               cwd=installed["cwd"])
    command = next((line for line in plan.splitlines() if line.startswith("launch_command:")),
                   None)
    assert command is not None, plan[-3000:]
    config_file = Path(command.split("--config_file ")[1].split()[0])
    assert config_file.is_relative_to(installed["venv"].resolve()), command
    assert config_file.is_file(), command


def test_quickstart_runs_from_the_wheel(installed, tmp_path):
    # One short step: the quickstart's whole path (model, data, rewards, GRPO, saving) without
    # its minutes of training; MLflow is tests/test_quickstart.py's to check.
    output = run([installed["venv"] / "bin" / "r1exp", "train.max_steps=1",
                  "grpo.max_completion_length=8", "logger=none",
                  f"hydra.run.dir={tmp_path / 'run'}"], cwd=installed["cwd"], timeout=600)
    assert (tmp_path / "run" / "model" / "config.json").is_file(), output[-3000:]
