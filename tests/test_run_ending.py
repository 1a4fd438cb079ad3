"""How a run starts and ends on the terminal: the recipe it names, the worker's output kept in
the run dir, the summary block, and quiet third-party loggers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

from r1exp.cli import CONF_DIR
from r1exp.command_line.recipe import compose_without_recipe, describe, recipe_changes
from r1exp.launch import worker_logging
from r1exp.launch.summary import Summary, collect, render, training_curves
from r1exp.launch.worker_output import teed_process

REPO_ROOT = Path(__file__).resolve().parents[1]


def changes(*overrides: str) -> list[tuple]:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return recipe_changes(compose(config_name="config", overrides=list(overrides)),
                              compose_without_recipe(list(overrides)))


def test_the_default_recipe_names_what_it_changed_over_the_group_defaults():
    found = {key: (old, new) for key, old, new in changes("stage=sft", "hardware=8xh100")}
    assert found["train.max_steps"] == (-1, 12)
    assert found["train.learning_rate"] == (1e-6, 1e-5)
    assert not any(key.startswith("grpo.") for key in found), "sft does not read grpo.*"


def test_a_key_set_on_the_command_line_is_not_the_recipes_doing():
    found = {key for key, _, _ in changes("train.max_steps=3")}
    assert "train.max_steps" not in found and "train.learning_rate" in found


def test_an_eval_run_is_told_the_training_recipe_changes_nothing_it_reads():
    assert changes("stage=eval") == []
    assert "changes nothing here" in describe("quickstart", False, [])


def test_the_notice_says_how_to_run_without_the_default_recipe():
    text = describe("quickstart", False, [("train.max_steps", -1, 12)])
    assert "'~experiment' runs without it" in text and "train.max_steps: -1 -> 12" in text
    assert "command line" in describe("smoke-sft", True, [("train.max_steps", -1, 4)])


def test_the_notice_is_printed_and_without_the_recipe_runs_the_group_defaults(tmp_path):
    def dry_run(*overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "r1exp", "dry_run=true", *overrides],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    default = dry_run("stage=sft")
    assert default.returncode == 0, default.stderr
    assert "recipe: experiment=quickstart" in default.stderr
    assert "max_steps: 12" in default.stdout
    bare = dry_run("stage=sft", "~experiment")
    assert bare.returncode == 0, bare.stderr
    assert "recipe: none" in bare.stderr and "max_steps: -1" in bare.stdout
    # a value the recipe set that the profile cannot take: the error says where it came from
    refused = dry_run("stage=sft", "hardware=8xh100")
    assert refused.returncode == 2
    assert refused.stderr.startswith("r1exp: config error: train.global_batch_size=8 is not "
                                     "divisible"), refused.stderr
    assert refused.stderr.splitlines()[1] == (
        "r1exp: train.global_batch_size set by the recipe experiment=quickstart (the default "
        "of conf/config.yaml; '~experiment' runs without it)")
    # an error about the user's own value names no recipe
    own = dry_run("stage=sft", "train.learning_rate=-1")
    assert own.returncode == 2 and len(own.stderr.splitlines()) == 1, own.stderr


def test_the_worker_output_reaches_the_terminal_and_the_log(tmp_path, capfd):
    log = tmp_path / "worker.log"
    code = ("import sys; print('to stdout'); print('progress\\r', end='', file=sys.stderr); "
            "sys.exit(3)")
    for _ in range(2):  # a resumed run appends to the log of the attempt before it
        with teed_process([sys.executable, "-c", code], {}, log) as proc:
            assert proc.wait(timeout=60) == 3
    out, err = capfd.readouterr()
    assert out.count("to stdout") == 2 and err.count("progress\r") == 2
    kept = log.read_bytes()  # bytes: read_text would turn the bar's \r into \n
    assert kept.count(b"to stdout") == 2 and kept.count(b"progress\r") == 2


def test_training_curves_take_the_first_and_last_logged_point():
    history = [{"loss": 0.5, "reward": 0.1, "step": 1}, {"eval_loss": 2.0, "step": 2},
               {"loss": 0.25, "reward": 0.75, "step": 3}, {"train_runtime": 9.0, "step": 3}]
    assert training_curves(history) == {"reward": ((1, 0.1), (3, 0.75)),
                                        "loss": ((1, 0.5), (3, 0.25)),
                                        "eval_loss": ((2, 2.0), (2, 2.0))}


def test_a_failed_training_run_sums_up_its_progress_from_the_last_checkpoint(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "checkpoint-6"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"log_history": [
        {"reward": 0.2, "loss": 0.1, "step": 1}, {"reward": 0.6, "loss": 0.05, "step": 6}]}))
    (tmp_path / "worker.log").write_text("Traceback ...\n")
    text = render(collect("FAILED", "grpo", tmp_path))
    assert "r1exp run FAILED" in text
    assert "reward   0.2 -> 0.6  (step 1 -> 6)" in text
    assert f"log      {tmp_path / 'worker.log'}" in text
    assert "model" not in text and "mlflow" not in text  # no final model, logger=none


def test_an_eval_summary_shows_the_pass_at_1_table(tmp_path):
    (tmp_path / "eval").mkdir()
    bench = {"n_problems": 50, "k": 1, "pass@1": 0.42, "stderr": 0.07, "tokens_generated": 900,
             "wall_time_s": 30.0, "tokens_per_s": 30.0}
    (tmp_path / "eval" / "results.json").write_text(json.dumps({"benchmarks": {"gsm8k": bench}}))
    text = render(collect("FINISHED", "eval", tmp_path))
    assert "pass@1" in text and "gsm8k" in text and "0.4200" in text


def test_a_generate_summary_shows_the_counts(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({
        "generate/problems": 10, "generate/samples": 40, "generate/kept": 12,
        "generate/errors": 0, "generate/correct_fraction": 0.3, "generate/wall_s": 5.0}))
    text = render(collect("FINISHED", "generate", tmp_path))
    assert "samples           40" in text and "correct_fraction  0.300" in text


def test_the_summary_gives_the_mlflow_command_and_the_runs_address(tmp_path):
    run = SimpleNamespace(tracking_uri="sqlite:////x/mlflow.db", run_id="abc",
                          client=SimpleNamespace(get_run=lambda _: SimpleNamespace(
                              info=SimpleNamespace(experiment_id="7"))))
    text = render(collect("FINISHED", "grpo", tmp_path, run))
    assert "mlflow ui --backend-store-uri sqlite:////x/mlflow.db" in text
    assert "#/experiments/7/runs/abc" in text


def test_render_puts_the_status_first():
    text = render(Summary(status="KILLED", stage="sft", run_dir=Path("/r")))
    assert text.splitlines()[1] == "r1exp run KILLED"


@pytest.fixture
def restored_logging():
    root, ours = logging.getLogger(), logging.getLogger("r1exp")
    saved = (root.level, list(root.handlers), ours.level, warnings.filters[:])
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    ours.setLevel(saved[2])
    warnings.filters[:] = saved[3]


def test_third_party_loggers_are_quiet_unless_asked(restored_logging, monkeypatch):
    logging.getLogger().handlers.clear()
    worker_logging.configure(rank=0)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("r1exp.stages").isEnabledFor(logging.INFO)
    logging.getLogger().handlers.clear()
    monkeypatch.setenv(worker_logging.LIBRARY_LEVEL_ENV, "info")
    worker_logging.configure(rank=0)
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_the_deprecated_checkpointing_name_warns_no_more_and_others_still_do(restored_logging):
    worker_logging.configure(rank=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        worker_logging.configure(rank=0)  # its filter goes in front of "default"
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.",
                      FutureWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_values_are_shown_as_the_command_line_writes_them():
    text = describe("quickstart", False, [("train.keep_checkpoints", True, False),
                                          ("model.revision", None, "main")])
    assert "train.keep_checkpoints: true -> false" in text and "(unset) -> main" in text
