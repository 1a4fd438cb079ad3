"""Eval pieces that need no model: pass@k, batching, choice prompts, config, outputs, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_config import composed

from r1exp.errors import ConfigError
from r1exp.eval import outputs
from r1exp.eval.benchmarks import choice_prompt
from r1exp.eval.passk import pass_at_k, summarize
from r1exp.inference import Result
from r1exp.inference.transformers_engine import plan_batches
from r1exp.launch.controller import prepare


@pytest.mark.parametrize("n,c,k,expected", [
    (5, 2, 1, 2 / 5),
    (5, 2, 2, 1 - 3 / 10),           # 1 - C(3,2)/C(5,2)
    (10, 3, 5, 1 - 21 / 252),        # 1 - C(7,5)/C(10,5)
    (4, 0, 2, 0.0),
    (4, 3, 2, 1.0),                  # fewer wrong samples than k: always a correct one
    (64, 1, 1, 1 / 64),
    (64, 64, 64, 1.0),
])
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_summary_is_mean_over_samples_with_stderr_over_problems():
    out = summarize([[1, 0], [1, 1], [0, 0]], [1, 2])
    assert out["pass@1"] == pytest.approx(0.5)
    assert out["pass@2"] == pytest.approx((1 + 1 + 0) / 3)
    # per-problem means 0.5, 1, 0: sample variance 0.25, stderr sqrt(0.25 / 3)
    assert out["stderr"] == pytest.approx(math.sqrt(0.25 / 3))


def test_batches_cover_every_request_within_the_token_budget():
    lengths = [5, 50, 7, 30, 30, 2, 90, 11]
    batches = plan_batches(lengths, max_new_tokens=10, batch_tokens=200, max_rows=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    for batch in batches:
        assert len(batch) <= 3
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * (longest + 10) <= 200


def test_choice_order_is_fixed_per_problem_and_varies_across_problems():
    options = ["right", "wrong1", "wrong2", "wrong3"]
    text, gold = choice_prompt("Q?", options, "Pick one.", seed="42:gpqa:7")
    assert (text, gold) == choice_prompt("Q?", options, "Pick one.", seed="42:gpqa:7")
    assert f"{gold}) right" in text and text.startswith("Pick one.")
    golds = {choice_prompt("Q?", options, "", seed=f"42:gpqa:{i}")[1] for i in range(40)}
    assert golds == {"A", "B", "C", "D"}


def eval_cfg(tmp_path, *overrides):
    cfg, _ = prepare(composed(["stage=eval", "logger=none", *overrides], tmp_path))
    return cfg


def test_unknown_benchmark_lists_the_valid_names(tmp_path):
    with pytest.raises(ConfigError) as err:
        eval_cfg(tmp_path, "eval.benchmarks=[math500,mmlu]")
    message = str(err.value)
    assert "eval.benchmarks" in message and "'mmlu'" in message
    assert all(name in message for name in ("math500", "aime24", "gsm8k", "gpqa-diamond"))


def test_missing_local_benchmark_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="benchmark.gsm8k.path"):
        eval_cfg(tmp_path, "eval.benchmarks=[gsm8k]", "benchmark.gsm8k.source=local",
                 f"benchmark.gsm8k.path={tmp_path}/missing.jsonl")


@pytest.mark.parametrize("overrides,key", [
    (["eval.greedy=true", "eval.num_samples=4"], "eval.greedy"),
    (["eval.num_samples=2", "eval.pass_k=[4]"], "eval.pass_k"),
    (["eval.benchmarks=[]"], "eval.benchmarks"),
    (["eval.evaluator=onnx"], "eval.evaluator"),
    (["inference.engine=openai", "inference.openai.endpoint=http://h:1/v1"],
     "eval.evaluator=r1exp generates with one of: transformers, vllm"),
])
def test_bad_eval_settings_name_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        eval_cfg(tmp_path, *overrides)


def test_vllm_engine_without_vllm_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    from r1exp.stages import make_plan
    from r1exp.launch.preflight import preflight

    with pytest.raises(ConfigError, match="inference.engine=vllm"):
        eval_cfg(tmp_path, "inference.engine=vllm", "hardware=metax-c500")  # it has no vLLM build
    cfg = eval_cfg(tmp_path, "inference.engine=vllm", "hardware=1xh100")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        preflight(cfg, make_plan(cfg))


def test_benchmark_specs_reuse_the_dataset_configs(tmp_path):
    cfg = eval_cfg(tmp_path, "eval.benchmarks=[math500,gsm8k,gpqa-diamond]")
    assert sorted(cfg.benchmark) == ["gpqa-diamond", "gsm8k", "math500"]  # only those named
    assert cfg.benchmark.math500.path == "HuggingFaceH4/MATH-500"
    assert cfg.benchmark.math500.offline_path.endswith("math500.jsonl")
    assert cfg.benchmark.gsm8k.split == "test"
    assert cfg.benchmark["gpqa-diamond"].task == "choice"


def test_read_samples_takes_each_sample_once_and_skips_cut_lines_and_other_settings(tmp_path):
    from r1exp.inference import samples

    with samples.ShardWriter(tmp_path / "samples", shard_size=1, interval_s=0) as writer:
        writer.add([{"problem_id": "0", "sample": 0, "config": "a", "from": "store"}])
    # an earlier version's appended file: a line cut short by a kill ends it
    lines = [json.dumps({"problem_id": "0", "sample": 0, "config": "a", "from": "file"}),
             json.dumps({"problem_id": "1", "sample": 0, "config": "a"}),
             json.dumps({"problem_id": "2", "sample": 0, "config": "b"}),
             '{"problem_id": "3", "sam']
    (tmp_path / "samples.rank1.jsonl").write_text("\n".join(lines))
    records = outputs.read_samples(tmp_path, "a")
    assert [(r["problem_id"], r["sample"]) for r in records] == [("0", 0), ("1", 0)]
    assert records[0]["from"] == "store"


def test_rank_zero_waits_for_the_samples_of_its_settings(tmp_path, monkeypatch):
    from r1exp.inference import samples

    other_rank = samples.ShardWriter(tmp_path, shard_size=1, interval_s=0, rank=1, world_size=2)
    other_rank.add([{"problem_id": "1", "sample": 0, "config": "old"}])
    polls = []

    def sleep(seconds):  # while rank 0 waits, the other rank commits the sample
        polls.append(seconds)
        other_rank.add([{"problem_id": "1", "sample": 0, "config": "new"}])

    monkeypatch.setattr(samples.time, "sleep", sleep)
    samples.wait_for(tmp_path, {("1", 0)}, outputs.KEY,
                     select=lambda row: row["config"] == "new")
    assert polls == [samples.BARRIER_POLL_S]  # the sample of other settings did not count


def test_table_shows_the_numbers_of_the_results_json():
    bench = {"n_problems": 20, "k": 4, "pass@1": 0.1234, "pass@4": 0.5, "stderr": 0.01,
             "tokens_generated": 800, "wall_time_s": 12.5, "tokens_per_s": 64.0}
    table = outputs.format_table({"benchmarks": {"gsm8k": bench}})
    row = table.splitlines()[2].split()
    assert row == ["gsm8k", "20", "4", "0.1234", "0.0100", "0.5000", "800", "12.5", "64.0"]
    assert outputs.mlflow_metrics({"benchmarks": {"gsm8k": bench}})["eval/gsm8k/pass@1"] == 0.1234


class EchoEngine:
    """Answers every problem with the gold (problem ids are row numbers); counts requests."""

    generated: list = []

    def __init__(self, cfg):
        lines = Path(cfg.benchmark.gsm8k.path).read_text().splitlines()
        self.golds = [json.loads(line)["answer"] for line in lines]

    def open(self):
        pass

    def generate(self, requests):
        for request in requests:
            EchoEngine.generated.append(request.key)
            gold = self.golds[int(request.key[0])]
            yield [Result(request.key, f"so \\boxed{{{gold}}}", "stop", 3, 5)]

    def close(self):
        pass


def echo_eval(tmp_path, monkeypatch, shared_data, problems: int):
    """An eval of the first `problems` GSM8K problems, 2 samples each, by EchoEngine."""
    from r1exp.eval import runner

    rows = (shared_data / "gsm8k_test.jsonl").read_text().splitlines()[:problems]
    local = tmp_path / f"gsm8k{problems}.jsonl"
    local.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(runner, "resolve_model_dir", lambda *a, **k: "fake-model")
    monkeypatch.setattr(runner, "build_engine", lambda name, cfg, *a, **k: EchoEngine(cfg))
    return eval_cfg(tmp_path, "eval.benchmarks=[gsm8k]", "eval.num_samples=2",
                    "benchmark.gsm8k.source=local", f"benchmark.gsm8k.path={local}")


def test_an_interrupted_eval_resumes_without_regenerating(tmp_path, monkeypatch, shared_data):
    from r1exp.eval import runner

    cfg = echo_eval(tmp_path, monkeypatch, shared_data, problems=5)

    EchoEngine.generated = []
    first = runner.evaluate_model(cfg)
    assert len(EchoEngine.generated) == 10 and first["eval/gsm8k/pass@1"] == 1.0

    # Simulate a kill: the last 4 samples (one shard each) never got committed, one shard was
    # being written, and the end-of-benchmark files were not reached.
    bench = tmp_path / "eval" / "gsm8k"
    shards = sorted((bench / "samples").glob("shard-*.jsonl"))
    assert len(shards) == 10
    for shard in shards[6:]:
        shard.unlink()
    half_written = bench / "samples" / ".shard-00006.jsonl.tmp-node7-4242"
    half_written.write_text('{"problem_id": "3", "sam')
    (bench / "samples.jsonl").unlink()
    (tmp_path / "eval" / "results.json").unlink()
    kept = [line for shard in shards[:6] for line in shard.read_text().splitlines()]

    EchoEngine.generated = []
    second = runner.evaluate_model(cfg)
    finished = {(json.loads(line)["problem_id"], json.loads(line)["sample"]) for line in kept}
    assert len(EchoEngine.generated) == 4
    assert not finished & set(EchoEngine.generated)
    assert second["eval/gsm8k/pass@1"] == 1.0 and second["eval/gsm8k/samples_generated"] == 4
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["benchmarks"]["gsm8k"]["n_problems"] == 5
    written = [json.loads(line) for line in (bench / "samples.jsonl").read_text().splitlines()]
    assert [(r["problem_id"], r["sample"]) for r in written] == [
        (str(p), s) for p in range(5) for s in range(2)]
    assert not half_written.exists()

    EchoEngine.generated = []
    runner.evaluate_model(cfg)  # everything done: nothing to generate
    assert EchoEngine.generated == []

    from r1exp.stages.eval import resumable

    assert resumable(cfg, tmp_path) and not resumable(cfg, tmp_path / "elsewhere")


def test_an_eval_shows_a_bar_over_generating_and_scoring(tmp_path, monkeypatch, shared_data,
                                                         capfd):
    from r1exp.eval import runner

    cfg = echo_eval(tmp_path, monkeypatch, shared_data, problems=3)
    runner.evaluate_model(cfg)
    bar = capfd.readouterr().err
    assert "eval gsm8k: 100%" in bar and "6/6" in bar and "correct 6" in bar
