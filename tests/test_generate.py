"""The generate stage's pieces that need no model: config checks, the ledger (atomic shards,
resume bookkeeping), filtering, the dataset dir and its loading by the data layer / sft."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fault_plan import FaultInjector, FaultPlan
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from r1exp import rundir
from r1exp.errors import ConfigError
from r1exp.generation import output
from r1exp.inference import samples
from r1exp.inference.openai_client import (
    ClientSettings,
    MalformedReply,
    backoff_delay,
    parse_reply,
)
from r1exp.generation.filtering import Verdict, kept_keys
from r1exp.generation.prompts import requests_for, template_fields
from r1exp.inference import Problem
from r1exp.launch.controller import prepare

CONF = Path(__file__).resolve().parents[1] / "conf"


def composed(tmp_path: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={tmp_path / 'run'}", "stage=generate",
                                           *overrides])
    return prepare(cfg)[0]


# --- configuration ------------------------------------------------------------------------


def test_defaults_validate_and_write_under_the_run_dir(tmp_path):
    cfg = composed(tmp_path)
    assert cfg.generate.output_dir == str(tmp_path / "run" / "generated")
    assert cfg.inference.engine == "transformers" and cfg.generate.keep == "all"


@pytest.mark.parametrize("overrides,message", [
    (["inference.engine=openai"], "needs inference.openai.endpoint"),
    (["inference.openai.endpoint=http://h:1/v1"], "read by inference.engine=openai only"),
    (["inference.engine=bogus"], "choose one of: transformers, vllm, openai"),
    (["generate.keep=best"], "choose one of: all, correct, first_correct"),
    (["generate.num_generations=0"], "generate.num_generations=0 must be >= 1"),
    (["inference.openai.max_in_flight=0"], "inference.openai.max_in_flight=0"),
    (["generate.top_p=0"], "generate.top_p=0"),
    (["generate.prompt_template='{problem'"], "not a valid format string"),
    (["generate.prompt_template='{0} {problem}'"], "uses field(s) ['0']"),
    (["generate.keep=correct", "dataset.answer_column=null"], "needs gold answers"),
    (["dataset.prompt_column=null"], "sets no dataset.prompt_column"),
])
def test_bad_settings_are_config_errors_naming_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        composed(tmp_path, *overrides)


def test_the_recipe_chains_generate_into_sft_by_config(tmp_path):
    first = composed(tmp_path, "experiment=distill-then-sft")
    second = composed(tmp_path, "experiment=distill-then-sft", "stage=sft", "dataset=jsonl")
    assert first.stage == "generate" and first.dataset.name == "arithmetic"
    assert second.stage == "sft" and second.dataset.name == "jsonl"
    assert first.generate.output_dir == first.dataset.path == second.dataset.path
    assert second.generate is None  # the sft step composes no generate knobs
    assert first.generate.output_dir.endswith("/distill/smollm2-135m-arithmetic")


def test_template_fields():
    assert template_fields("{problem}\nUse {numbers}; braces {{}}") == ["problem", "numbers"]


def test_requests_skip_committed_pairs_and_split_problems_by_rank():
    problems = [Problem(i, f"p{i}", ({"role": "user", "content": f"p{i}"},), "1")
                for i in range(5)]
    done = {(0, 0), (3, 1)}
    requests = requests_for(problems, 2, done)
    assert [r.key for r in requests] == [(0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (4, 0),
                                         (4, 1)]
    shares = [{r.key for r in requests_for(problems, 2, done, rank, 2)} for rank in (0, 1)]
    assert shares[0] | shares[1] == {r.key for r in requests} and not shares[0] & shares[1]
    assert all(k[0] % 2 == 0 for k in shares[0])


# --- the ledger -----------------------------------------------------------------------------


def sample(problem_id, sample_idx, correct=True, error=None, text="\\boxed{1}"):
    return {"problem_id": problem_id, "sample_idx": sample_idx, "problem": f"p{problem_id}",
            "answer": "1", "generation": None if error else text,
            "messages": [{"role": "user", "content": f"p{problem_id}"}]
            + ([] if error else [{"role": "assistant", "content": text}]),
            "finish_reason": None if error else "stop", "prompt_tokens": 5,
            "completion_tokens": None if error else 3, "score": None if error else float(correct),
            "correct": None if error else correct, "extracted": None, "score_status": "ok",
            "error": error, "attempts": 1, "model": "m"}


def test_shards_commit_by_size_and_on_exit_and_resume_numbering(tmp_path):
    with samples.ShardWriter(tmp_path, shard_size=2, interval_s=3600) as writer:
        assert writer.add([sample(0, 0)]) == 0
        assert writer.add([sample(0, 1), sample(1, 0)]) == 3
        writer.add([sample(1, 1)])
        assert [p.name for p in samples.shard_paths(tmp_path)] == ["shard-00000.jsonl"]
    assert [p.name for p in samples.shard_paths(tmp_path)] == ["shard-00000.jsonl",
                                                              "shard-00001.jsonl"]
    leftover = tmp_path / ".shard-00002.jsonl.tmp-node7-4242"  # a killed attempt's temporary
    leftover.write_text('{"half a line')
    writer = samples.ShardWriter(tmp_path, shard_size=2, interval_s=3600)
    assert writer.next_seq == 2 and not leftover.exists()
    assert set(samples.committed_keys(tmp_path)) == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_a_shard_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    writer = samples.ShardWriter(tmp_path, shard_size=10, interval_s=3600)
    writer.add([sample(0, 0), sample(0, 1)])

    def killed(*args):
        raise KeyboardInterrupt  # the process dies between writing the temporary and the rename

    monkeypatch.setattr(rundir.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        writer.commit()
    assert samples.shard_paths(tmp_path) == [] and samples.committed_keys(tmp_path) == set()


def test_time_based_commit(tmp_path):
    writer = samples.ShardWriter(tmp_path, shard_size=1000, interval_s=0)
    assert writer.add([sample(0, 0)]) == 1


def test_ranks_write_their_own_shards(tmp_path):
    for rank in (0, 1):
        with samples.ShardWriter(tmp_path, shard_size=1, interval_s=3600, rank=rank,
                                world_size=2) as w:
            w.add([sample(rank, 0)])
    assert [p.name for p in samples.shard_paths(tmp_path)] == ["shard-r0-00000.jsonl",
                                                              "shard-r1-00000.jsonl"]
    assert samples.ShardWriter(tmp_path, shard_size=1, interval_s=1, rank=1,
                              world_size=2).next_seq == 1


# --- filtering --------------------------------------------------------------------------------


def test_keep_modes():
    verdicts = [Verdict((0, 0), True, False), Verdict((0, 1), True, True),
                Verdict((0, 2), True, True),
                Verdict((1, 0), False, None), Verdict((1, 1), True, False),
                Verdict((2, 3), True, True), Verdict((2, 1), True, True)]
    assert kept_keys(verdicts, "all") == {(0, 0), (0, 1), (0, 2), (1, 1), (2, 3), (2, 1)}
    assert kept_keys(verdicts, "correct") == {(0, 1), (0, 2), (2, 3), (2, 1)}
    # the lowest sample index, whatever order the samples arrived in
    assert kept_keys(verdicts, "first_correct") == {(0, 1), (2, 1)}


def test_scoring_uses_the_math_scorer():
    from r1exp.generation.filtering import score_rows

    rows = [{"generation": "so \\boxed{4}", "answer": "4"},
            {"generation": "\\boxed{5}", "answer": "4"},
            {"generation": None, "answer": "4"}, {"generation": "\\boxed{4}", "answer": None}]
    score_rows(rows, timeout_s=5)
    assert [r["correct"] for r in rows] == [True, False, None, None]
    assert rows[0]["score"] == 1.0 and rows[0]["extracted"] == "4"


# --- the client's parsing and backoff ------------------------------------------------------


def test_parse_reply():
    good = {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    assert parse_reply(good) == ("hi", "stop", 3, 1)
    split = {"choices": [{"message": {"content": "42", "reasoning_content": "think"},
                          "finish_reason": "length"}]}
    assert parse_reply(split) == ("<think>\nthink\n</think>\n\n42", "length", None, None)
    for broken in ({}, {"choices": []}, {"choices": [{"message": {"content": None}}]}, [1]):
        with pytest.raises(MalformedReply):
            parse_reply(broken)


def test_backoff_grows_with_jitter_and_is_capped():
    s = ClientSettings(endpoint="http://x/v1", model="m", backoff_s=1.0, backoff_max_s=8.0)
    for retry, (low, high) in {1: (0.5, 1.0), 2: (1.0, 2.0), 3: (2.0, 4.0), 6: (4.0, 8.0)}.items():
        delays = {backoff_delay(retry, s) for _ in range(50)}
        assert all(low <= d <= high for d in delays) and len(delays) > 1
    assert backoff_delay(1, s, retry_after=5.0) == 5.0
    assert backoff_delay(1, s, retry_after=100.0) == 8.0


def test_faults_are_evenly_spaced():
    injector = FaultInjector(FaultPlan(error_rate=0.5, malformed_rate=0.25))
    draws = [injector.draw() for _ in range(8)]
    assert [("error" in d) for d in draws] == [False, True] * 4
    assert sum("malformed" in d for d in draws) == 2
    with pytest.raises(ValueError):
        FaultPlan(slow_rate=2)


# --- the dataset dir ------------------------------------------------------------------------


def write_ledger(out: Path, rows):
    output.begin(out, settings={"a": 1}, fingerprint="f", config={}, provenance={})
    with samples.ShardWriter(out / samples.SAMPLES_DIR, shard_size=2, interval_s=3600) as w:
        w.add(rows)


def finalized(out: Path, keep: str, expected):
    manifest = output.read_manifest(out)
    return output.finalize(out, manifest, keep=keep, shard_size=2, expected=expected)


def test_finalize_filters_counts_and_rewrites(tmp_path):
    rows = [sample(0, 1, True), sample(0, 0, False), sample(1, 0, error="HTTP 500"),
            sample(1, 1, True), sample(2, 0, False), sample(2, 1, False)]
    write_ledger(tmp_path, rows)
    expected = {(p, s) for p in range(3) for s in range(2)}
    manifest = finalized(tmp_path, "all", expected)
    assert manifest["status"] == "complete"
    assert manifest["counts"] | {"finish_reasons": None} == {
        "problems": 3, "samples": 6, "errors": 1, "scored": 5, "correct": 2, "kept": 5,
        "problems_kept": 3, "completion_tokens": 15, "finish_reasons": None}
    assert len(manifest["files"]) == 3

    manifest = finalized(tmp_path, "first_correct", expected)  # re-filtering, nothing generated
    assert manifest["files"] == ["train-00000.jsonl"]
    assert sorted(tmp_path.glob("train-*.jsonl")) == [tmp_path / "train-00000.jsonl"]
    kept = [json.loads(line) for line in (tmp_path / "train-00000.jsonl").read_text().splitlines()]
    assert {(r["problem_id"], r["sample_idx"]) for r in kept} == {(0, 1), (1, 1)}
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"]["kept"] == 2


def test_finalize_refuses_missing_samples(tmp_path):
    write_ledger(tmp_path, [sample(0, 0)])
    with pytest.raises(RuntimeError, match="1 samples missing"):
        finalized(tmp_path, "all", {(0, 0), (0, 1)})


def test_an_output_dir_of_other_settings_is_refused(tmp_path):
    output.begin(tmp_path, settings={"temperature": 0.6}, fingerprint="a", config={}, provenance={})
    again = output.begin(tmp_path, settings={"temperature": 0.6}, fingerprint="a", config={},
                         provenance={})
    assert again["provenance"]["attempts"] == 2
    with pytest.raises(ConfigError, match="differing: temperature"):
        output.begin(tmp_path, settings={"temperature": 0.9}, fingerprint="b", config={},
                     provenance={})


def test_the_dataset_dir_loads_as_dataset_jsonl_and_in_sft(tmp_path):
    from r1exp.data.formatting import to_sft_examples
    from r1exp.data.loading import load_split

    out = tmp_path / "distilled"
    write_ledger(out, [sample(0, 0, True, text="2 + 2 = \\boxed{4}"), sample(0, 1, False),
                       sample(1, 0, error="timed out")])
    finalized(out, "all", {(0, 0), (0, 1), (1, 0)})
    cfg = composed(tmp_path, "stage=sft", "dataset=jsonl", f"dataset.path={out}")
    rows = load_split(cfg.dataset, cfg.dataset.train_split, seed=cfg.seed)
    assert (len(rows) == 2
            and {"problem", "answer", "generation", "messages"} <= set(rows.column_names))
    examples = to_sft_examples(rows, cfg.dataset, cfg.sft)
    first = examples[0]
    assert first["prompt"] == [{"role": "user", "content": "p0"}]
    assert first["completion"] == [{"role": "assistant", "content": "2 + 2 = \\boxed{4}"}]
