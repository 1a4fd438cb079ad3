"""MLflow runs a person can read: params are what the run's stage reads, the standard source
and git tags fill the UI's Source and Version columns, names say stage/model/data/hardware.

Runs are opened by the controller's own `open_run` against a real sqlite store; no model
is loaded, so this module takes seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_config import REPO_ROOT, composed

from r1exp.stages import stage, validate
from r1exp.tracking import source
from r1exp.tracking.mlflow_run import SWEEP_VARIED_TAG, client_for, open_run
from r1exp.tracking.sweep import job_varies, sweep_axes, sweep_run_name


def opened(tmp_path: Path, *overrides: str, tags: dict[str, str] | None = None):
    """The MLflow run the controller opens for `r1exp <overrides>`."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = validate(OmegaConf.create(OmegaConf.to_container(
        composed([f"logger.tracking_uri={uri}", *overrides], tmp_path), resolve=True)))
    run = open_run(cfg, OmegaConf.to_container(cfg), tmp_path, tags or {}, stage(cfg.stage))
    return client_for(uri).get_run(run.run_id)


def sections(params: dict[str, str]) -> set[str]:
    return {key.split(".")[0] for key in params}


def benchmarks(params: dict[str, str]) -> set[str]:
    return {key.split(".")[1] for key in params if key.startswith("benchmark.")}


CHOICES = {"choice.model": "smollm2-135m", "choice.sft": "default", "choice.grpo": "default",
           "choice.eval": "default", "choice.sweep": "None", "choice.experiment": "quickstart",
           "choice.benchmark": "[math500, aime24, gsm8k]", "choice.dataset@benchmark.gsm8k":
           "gsm8k", "choice.dataset@benchmark.aime24": "aime24"}


def test_an_sft_run_logs_its_knobs_and_no_other_stage(tmp_path):
    run = opened(tmp_path, "stage=sft", tags=CHOICES)
    params = run.data.params
    assert {k: v for k, v in run.data.tags.items() if k.startswith("choice.")} == {
        "choice.model": "smollm2-135m", "choice.sft": "default", "choice.experiment": "quickstart"}
    assert sections(params) == {"stage", "seed", "paths", "model", "dataset", "hardware",
                                "train", "sft"}
    assert params["sft.max_length"] and params["train.learning_rate"]
    assert not benchmarks(params)
    assert not any(k.startswith(("grpo.", "eval.", "generate.", "reward.")) for k in params)
    assert not any(k.startswith("hardware.env") for k in params)


def test_an_eval_run_logs_only_the_benchmarks_it_names(tmp_path):
    run = opened(tmp_path, "stage=eval", "eval.benchmarks=[gsm8k]", tags=CHOICES)
    assert "choice.dataset@benchmark.gsm8k" in run.data.tags
    assert not any(k.startswith(("choice.dataset@benchmark.aime24", "choice.sft"))
                   for k in run.data.tags)
    params = opened(tmp_path, "stage=eval", "eval.benchmarks=[gsm8k,aime24]").data.params
    assert benchmarks(params) == {"gsm8k", "aime24"}
    assert params["eval.benchmarks"] == "['gsm8k', 'aime24']" and params["eval.max_new_tokens"]
    assert sections(params) == {"stage", "seed", "paths", "model", "hardware", "eval",
                                "inference", "benchmark"}


def test_a_training_run_logs_the_benchmarks_it_evaluates_after_training(tmp_path):
    params = opened(tmp_path, "stage=grpo", "train.benchmarks=[math500]").data.params
    assert benchmarks(params) == {"math500"}
    assert {"grpo", "reward", "eval"} <= sections(params) and "sft" not in sections(params)
    assert params["reward.accuracy.weight"]


def test_source_and_git_tags_fill_the_ui_columns(tmp_path):
    run = opened(tmp_path, "stage=grpo", tags={"stage": "grpo"})
    tags = run.data.tags
    assert tags["mlflow.source.name"] == "r1exp" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"]  # the UI's "Created by"
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the tests run from a copy that is not a git checkout")
    assert tags["mlflow.source.git.commit"] == head.stdout.strip()
    assert tags["mlflow.source.git.dirty"] in ("true", "false")
    assert "git_commit" not in tags
    assert run.info.run_name == "grpo · smollm2-135m · arithmetic · cpu"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def package_in(monkeypatch):
    """Pretend r1exp was imported from `<dir>/r1exp`."""
    def place(directory: Path) -> None:
        (directory / "r1exp").mkdir(parents=True)
        monkeypatch.setattr(source, "PACKAGE_DIR", directory / "r1exp")
        source.git_info.cache_clear()

    yield place
    source.git_info.cache_clear()


def test_a_checkout_gives_commit_branch_and_a_repo_url_without_credentials(tmp_path,
                                                                            package_in):
    git(tmp_path, "init", "-q", "-b", "work")
    package_in(tmp_path)
    (tmp_path / "r1exp" / "__init__.py").write_text("")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    git(tmp_path, "remote", "add", "origin", "https://someone:s3cret@github.com/org/r1exp.git")
    info = source.git_info()
    assert info["branch"] == "work" and info["dirty"] == "false" and len(info["commit"]) == 40
    assert info["repo_url"] == "https://github.com/org/r1exp.git"


def test_an_installed_package_inside_another_repo_borrows_no_commit(tmp_path, package_in):
    # e.g. a venv inside some project's checkout: that project's commit is not r1exp's
    git(tmp_path, "init", "-q")
    package_in(tmp_path / ".venv" / "lib" / "site-packages")
    assert source.git_info() == {}
    tags = source.source_tags()
    assert not any(k.startswith("mlflow.source.git") for k in tags)
    assert tags["mlflow.source.name"] == "r1exp"


def sweep_config(task: list[str], params: dict[str, str] | None = None):
    return OmegaConf.create({
        "stage": "grpo", "model": {"name": "smollm2-135m", "path": None},
        "dataset": {"name": "arithmetic"}, "hardware": {"name": "cpu"},
        "hydra": {"overrides": {"task": task}, "sweeper": {"params": params or {}}},
    })


def test_sweep_children_are_named_by_what_they_vary(tmp_path):
    config = sweep_config(["train.learning_rate=1e-6,1e-5", "train.max_steps=3"],
                          {"seed": "1,2"})
    axes = sweep_axes(config)
    assert axes == {"seed": "1,2", "train.learning_rate": "1e-6,1e-5"}
    assert sweep_run_name(config) == ("sweep · grpo · smollm2-135m · arithmetic · cpu · "
                                      "seed=1,2 · train.learning_rate=1e-6,1e-5")
    record = {"varied": sorted(axes)}
    varies = job_varies(["train.learning_rate=1e-6", "train.max_steps=3", "seed=2"], record, 1)
    assert varies == "train.learning_rate=1e-6 seed=2"
    assert job_varies(["train.max_steps=3"], {"varied": []}, 4) == "job 4"
    run = opened(tmp_path, "stage=grpo", tags={SWEEP_VARIED_TAG: varies})
    assert run.info.run_name == ("grpo · smollm2-135m · arithmetic · cpu · "
                                 "train.learning_rate=1e-6 seed=2")
