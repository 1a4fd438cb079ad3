"""eval.evaluator=lighteval: its environment checks, the model view, open-r1's protocol; and, with
lighteval's environment present (CI creates it), parity with r1exp's own eval and a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_config import composed

from r1exp.errors import ConfigError
from r1exp.eval.evaluators.lighteval_model import write_view
from r1exp.eval.benchmarks import benchmark_problems, math_prompt, num_samples
from r1exp.launch.controller import prepare

REPO_ROOT = Path(__file__).resolve().parents[1]
FIX = "python -m r1exp.eval.lighteval_env"


def eval_cfg(tmp_path, *overrides):
    cfg, _ = prepare(composed(["stage=eval", "logger=none", *overrides], tmp_path))
    return cfg


def fake_model(path: Path, rope: dict) -> Path:
    """The files transformers 5 writes for a Llama-like model, weights a placeholder."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({
        "model_type": "llama", "rope_parameters": rope, "eos_token_id": 2,
        "transformers_version": "5.24.0"}))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "TokenizersBackend", "eos_token": "<|im_end|>"}))
    (path / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "eos_token_id": [2, 0], "repetition_penalty": 1.1, "top_k": 20}))
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "tokenizer.json").write_text("{}")
    return path


def test_view_gives_transformers_4_the_rope_base_tokenizer_class_and_r1exp_sampling(tmp_path):
    model = fake_model(tmp_path / "m", {"rope_theta": 100000.0, "rope_type": "default"})
    view = write_view(model, tmp_path / "view", greedy=True)
    config = json.loads((view / "config.json").read_text())
    # without rope_theta transformers 4 silently takes 10000: SmolLM2 would write other text
    assert config["rope_theta"] == 100000.0 and "rope_scaling" not in config
    tokenizer = json.loads((view / "tokenizer_config.json").read_text())
    assert tokenizer["tokenizer_class"] == "PreTrainedTokenizerFast"
    generation = json.loads((view / "generation_config.json").read_text())
    assert generation == {"bos_token_id": 1, "eos_token_id": [2, 0], "do_sample": False}
    assert (view / "model.safetensors").resolve() == (model / "model.safetensors").resolve()
    assert (view / "tokenizer.json").is_symlink()

    scaled = fake_model(tmp_path / "s", {"rope_theta": 1e6, "rope_type": "yarn", "factor": 4.0})
    view = write_view(scaled, tmp_path / "view-s", greedy=False)
    config = json.loads((view / "config.json").read_text())
    assert config["rope_theta"] == 1e6
    assert config["rope_scaling"] == {"rope_type": "yarn", "factor": 4.0}
    generation = json.loads((view / "generation_config.json").read_text())
    assert generation["do_sample"] is True and generation["top_k"] == 0
    assert "repetition_penalty" not in generation


def test_a_prompt_with_a_problem_slot_is_a_template_else_it_is_appended():
    template = "Think. {problem} Box it: \\boxed{}"
    assert math_prompt("2+2?", template) == "Think. 2+2? Box it: \\boxed{}"
    assert math_prompt("2+2?", "Box it.") == "2+2?\nBox it."
    assert math_prompt("2+2?", "") == "2+2?"


def test_open_r1_preset_sets_its_prompt_gold_and_sample_counts(tmp_path, shared_data):
    cfg = eval_cfg(tmp_path, "eval=open-r1", "eval.limit=2",
                   f"paths.data_dir={shared_data}", "benchmark.math500.source=local",
                   f"benchmark.math500.path={shared_data}/math500.jsonl")
    assert [num_samples(cfg, b) for b in ("math500", "aime24", "gsm8k")] == [4, 64, 1]
    problem = benchmark_problems(cfg, "math500")[0]
    text = problem.messages[-1]["content"]
    row = json.loads((shared_data / "math500.jsonl").read_text().splitlines()[0])
    assert text.startswith("Solve the following math problem efficiently and clearly.  The last")
    assert text.endswith("Think step by step before answering.\n\n" + row["problem"].strip())
    assert "$\\boxed{ANSWER}$. I hope it is correct" in text
    # open-r1's MATH-500 task reads its gold from the solution; r1exp's scorer from the answer
    assert (problem.answer, problem.lighteval_gold) == (row["answer"], row["solution"])
    greedy = eval_cfg(tmp_path, "eval=open-r1", "eval.greedy=true")
    assert num_samples(greedy, "aime24") == 1


def test_missing_lighteval_env_is_a_config_error_naming_the_command(tmp_path):
    with pytest.raises(ConfigError) as err:
        eval_cfg(tmp_path, "eval.evaluator=lighteval", f"eval.lighteval.env={tmp_path}/nowhere")
    assert "no lighteval environment" in str(err.value)
    assert f"`{FIX} --path {tmp_path}/nowhere`" in str(err.value)
    eval_cfg(tmp_path, "eval.evaluator=lighteval", f"eval.lighteval.env={tmp_path}/nowhere",
             "dry_run=true")  # a dry run may plan for a machine that has it


def test_broken_lighteval_env_is_a_config_error_naming_the_fix(tmp_path):
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)  # a python without lighteval
    with pytest.raises(ConfigError, match="never finished"):
        eval_cfg(tmp_path, "eval.evaluator=lighteval", f"eval.lighteval.env={env}")
    (env / "r1exp-lighteval.json").write_text("{}")
    with pytest.raises(ConfigError) as err:
        eval_cfg(tmp_path, "eval.evaluator=lighteval", f"eval.lighteval.env={env}")
    assert "is broken (lighteval None, r1exp drives 0.13.0)" in str(err.value)
    assert f"`{FIX} --path {env} --force`" in str(err.value)


def test_lighteval_runs_as_one_process(tmp_path):
    with pytest.raises(ConfigError, match="one process"):
        eval_cfg(tmp_path, "eval.evaluator=lighteval", "hardware.devices_per_node=2",
                 "dry_run=true")


@pytest.fixture(scope="module")
def lighteval_env() -> Path:
    """lighteval's environment; skipped where it is missing, except in CI, which must prove
    the backend runs."""
    from r1exp.eval.lighteval_env import LightevalEnvError, check_env, default_env_dir

    env = default_env_dir()
    try:
        check_env(env)
    except LightevalEnvError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the lighteval backend: {err}")
        pytest.skip(str(err))
    return env


# MATH-500 problems SmolLM2 answers within 48 tokens (greedy, eval=open-r1): three right for both
# scorers, one wrong, and two where it restates the question, which lighteval's metric evaluates
# and scores right while r1exp's scorer does not count a restated question as an answer
# (docs/lighteval-parity.md).
SMOKE_MATH500 = ("test/algebra/187.json", "test/algebra/2023.json", "test/number_theory/515.json",
                 "test/algebra/1035.json", "test/algebra/1098.json", "test/prealgebra/1747.json")
RESTATED = {"test/algebra/1098.json", "test/prealgebra/1747.json"}


@pytest.mark.slow
def test_lighteval_and_native_eval_agree_sample_by_sample(tmp_path, shared_data, lighteval_env):
    from mlflow.tracking import MlflowClient

    from tests.bench.lighteval_parity import parity

    rows = {json.loads(line)["unique_id"]: line
            for line in (shared_data / "math500.jsonl").read_text().splitlines()}
    subset = tmp_path / "math500-smoke.jsonl"
    subset.write_text("\n".join(rows[i] for i in SMOKE_MATH500) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "R1EXP_DATA_DIR": str(shared_data),
           "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = [f"logger.tracking_uri={uri}", "benchmark.math500.source=local",
                 f"benchmark.math500.path={subset}"]
    found = parity(["math500", "gsm8k"], len(SMOKE_MATH500), 48, tmp_path, overrides, env)
    for row in found:
        listing = json.dumps(row["differences"], indent=1)
        assert row["n"] == len(SMOKE_MATH500)
        assert [d for d in row["differences"] if d["kind"] == "generation"] == [], listing
        scoring = [d for d in row["differences"] if d["kind"] == "scoring"]
        assert all(d["problem_id"] in RESTATED and d["lighteval_score"] == 1.0
                   for d in scoring), listing
        assert row["lighteval_pass@1"] - row["native_pass@1"] == pytest.approx(
            len(scoring) / row["n"])
    math500 = found[0]
    assert math500["native_pass@1"] == pytest.approx(3 / 6)

    # One results format: the same keys whichever backend ran, plus lighteval's own numbers.
    results = {b: json.loads((tmp_path / f"{b}-run" / "eval" / "results.json").read_text())
               for b in ("transformers", "lighteval")}
    for name in ("gsm8k", "math500"):
        ours = results["transformers"]["benchmarks"][name]
        theirs = results["lighteval"]["benchmarks"][name]
        assert set(theirs) - set(ours) == {"lighteval_metric", "lighteval_pass@1"}
        assert set(ours) <= set(theirs)
        assert theirs["lighteval_pass@1"] == theirs["pass@1"]
    client = MlflowClient(uri)
    run_id = (tmp_path / "lighteval-run" / "mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["eval/math500/pass_at_1"] == results["lighteval"]["benchmarks"][
        "math500"]["pass@1"]
    logged = {a.path for a in client.list_artifacts(run_id, "eval/lighteval")}
    assert {"eval/lighteval/lighteval.log", "eval/lighteval/output"} <= logged
    details = list((tmp_path / "lighteval-run" / "eval" / "lighteval" / "output" /
                    "details").rglob("details_r1exp_math500*.parquet"))
    assert len(details) == 1


def test_parity_sorts_differences_into_generation_and_scoring():
    from tests.bench.lighteval_parity import compare

    def record(text, score):
        return {"completion": text, "score": score, "gold": "4", "extracted": None}

    native = {("0", 0): record("so 4", 1.0), ("1", 0): record("x = 4", 1.0),
              ("2", 0): record("same", 0.0)}
    lighteval = {("0", 0): record("so 5", 0.0), ("1", 0): record("x = 4", 0.0),
                 ("2", 0): record("same", 0.0)}
    found = {d["problem_id"]: d for d in compare(native, lighteval)}
    assert set(found) == {"0", "1"}
    assert found["0"]["kind"] == "generation" and found["0"]["differ_at"] == 3
    assert found["1"]["kind"] == "scoring" and found["1"]["lighteval_score"] == 0.0


def broken_copy_of_the_embedded_model(tmp_path: Path) -> Path:
    """SmolLM2's config and tokenizer with weights cut short: lighteval starts, loads its tasks
    and the tokenizer, then fails loading the model."""
    from r1exp.models.loading import resolve_model_dir

    cfg = eval_cfg(tmp_path / "cfg")
    source = Path(resolve_model_dir(cfg.model, cfg.paths.cache_dir))
    broken = tmp_path / "broken-model"
    shutil.copytree(source, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    (broken / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes()[:4096])
    return broken


@pytest.mark.slow
def test_a_lighteval_crash_fails_the_run_and_keeps_its_log(tmp_path, shared_data, lighteval_env):
    from mlflow.tracking import MlflowClient

    model = broken_copy_of_the_embedded_model(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "R1EXP_DATA_DIR": str(shared_data)}
    env.pop("MLFLOW_TRACKING_URI", None)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "r1exp", "stage=eval", "eval.evaluator=lighteval",
         f"model.path={model}", "eval.benchmarks=[gsm8k]", "eval.limit=2", "eval.greedy=true",
         "eval.max_new_tokens=8", f"hydra.run.dir={run_dir}", f"logger.tracking_uri={uri}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert (run_dir / "status").read_text().strip() == "FAILED"
    log = run_dir / "eval" / "lighteval" / "lighteval.log"
    assert "--- LOADING MODEL ---" in log.read_text()  # lighteval had started
    assert "Traceback" in log.read_text()
    client = MlflowClient(uri)
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    assert client.get_run(run_id).info.status == "FAILED"
    logged = {a.path for a in client.list_artifacts(run_id, "eval/lighteval")}
    assert "eval/lighteval/lighteval.log" in logged
