"""The data layer loads every source kind, mixes weighted sources and splits deterministically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1exp.data.loading import (
    load_local, load_mixture, load_split, load_train_eval, require_columns,
    validate_dataset_config,
)
from group_options import option_config
from r1exp.errors import ConfigError

ROWS = [{"problem": f"What is {i} + 1?", "answer": str(i + 1), "solution": f"{i} + 1 = {i + 1}"}
        for i in range(20)]


def dataset_cfg(option: str = "jsonl", **overrides):
    cfg = option_config("dataset", option)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=False)
    return cfg


@pytest.fixture
def jsonl_file(tmp_path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_generated_source_is_deterministic_and_has_disjoint_splits():
    cfg = dataset_cfg("arithmetic", **{"generator.num_train": 30, "generator.num_test": 10})
    train = load_split(cfg, "train", seed=3)
    again = load_split(cfg, "train", seed=3)
    test = load_split(cfg, "test", seed=3)
    assert train["problem"] == again["problem"] and len(train) == 30 and len(test) == 10
    assert not set(train["problem"]) & set(test["problem"])


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_local_files_of_each_format(tmp_path, suffix):
    from datasets import Dataset

    path = tmp_path / f"rows{suffix}"
    if suffix == ".parquet":
        Dataset.from_list(ROWS).to_parquet(str(path))
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    ds = load_split(dataset_cfg(path=str(path)), "train", seed=0)
    assert ds["problem"] == [r["problem"] for r in ROWS]


def test_directory_of_files_and_save_to_disk_dirs(tmp_path, jsonl_file):
    from datasets import Dataset, DatasetDict

    assert len(load_local(str(jsonl_file.parent))) == len(ROWS)
    single = tmp_path / "single"
    Dataset.from_list(ROWS[:5]).save_to_disk(str(single))
    assert len(load_split(dataset_cfg(path=str(single)), "train", seed=0)) == 5
    splits = tmp_path / "splits"
    DatasetDict({"train": Dataset.from_list(ROWS[:6]), "test": Dataset.from_list(ROWS[6:8])}) \
        .save_to_disk(str(splits))
    cfg = dataset_cfg(path=str(splits), test_split="test")
    train, evaluation = load_train_eval(cfg, seed=0)
    assert (len(train), len(evaluation)) == (6, 2)
    with pytest.raises(ConfigError, match=r"has splits \['train', 'test'\], not 'validation'"):
        load_split(cfg, "validation", seed=0)


@pytest.mark.parametrize("path,message", [("/nowhere/x.jsonl", "does not exist"),
                                          ("__file__", "use one of .jsonl, .json, .parquet")])
def test_bad_local_paths_are_config_errors(path, message):
    with pytest.raises(ConfigError, match=message):
        load_local(__file__ if path == "__file__" else path)


def test_hub_offline_env_uses_the_offline_copy(monkeypatch, jsonl_file):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = dataset_cfg("gsm8k", offline_path=str(jsonl_file))
    assert len(load_split(cfg, "train", seed=0)) == len(ROWS)


def test_unreachable_hub_falls_back_or_says_what_to_set(monkeypatch, jsonl_file, caplog):
    import datasets

    local_builder = datasets.load_dataset

    def unreachable(path, *args, **kwargs):  # local files still load; hub ids do not
        if path in ("json", "parquet"):
            return local_builder(path, *args, **kwargs)
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    cfg = dataset_cfg("gsm8k", offline_path=str(jsonl_file))
    assert len(load_split(cfg, "train", seed=0)) == len(ROWS)
    assert "unavailable (ConnectionError)" in caplog.text
    with pytest.raises(RuntimeError, match="dataset.offline_path"):
        load_split(dataset_cfg("gsm8k", offline_path=None), "train", seed=0)


def test_rename_shuffle_and_max_samples(jsonl_file):
    base = {"path": str(jsonl_file), "rename": {"problem": "question"}}
    plain = load_split(dataset_cfg(**base, max_samples=5), "train", seed=0)
    assert "question" in plain.column_names and plain["answer"] == [str(i + 1) for i in range(5)]
    def shuffled(seed):
        return load_split(dataset_cfg(**base, shuffle=True), "train", seed=seed)["answer"]

    assert shuffled(1) == shuffled(1) and shuffled(1) != shuffled(2)
    assert sorted(shuffled(1)) == sorted(r["answer"] for r in ROWS)


@pytest.mark.parametrize("size,expected", [(0.25, (15, 5)), (4, (16, 4))])
def test_test_size_splits_off_a_seeded_eval_set(jsonl_file, size, expected):
    cfg = dataset_cfg(path=str(jsonl_file), test_size=size)
    train, evaluation = load_train_eval(cfg, seed=7)
    assert (len(train), len(evaluation)) == expected
    assert not set(train["problem"]) & set(evaluation["problem"])
    assert load_train_eval(cfg, seed=7)[1]["problem"] == evaluation["problem"]


def test_no_eval_split_unless_asked(jsonl_file):
    assert load_train_eval(dataset_cfg(path=str(jsonl_file)), seed=0)[1] is None


@pytest.mark.parametrize("overrides,message", [
    ({"test_size": 0.2, "test_split": "test"}, "set dataset.test_split=null"),
    ({"test_size": 2.5}, "dataset.test_size=2.5"),
    ({"test_size": -1}, "dataset.test_size=-1"),
    ({"mixture": [{"split": "train"}]}, r"dataset.mixture\[0\].path is required"),
    ({"mixture": [{"path": "a", "wieght": 1}]}, r"unknown key\(s\) \['wieght'\]"),
    ({"mixture": [{"path": "a", "weight": 0}]}, r"weight=0 must be a number > 0"),
    ({"mixture": [{"path": "a", "source": "s3"}]}, "source='s3' is not allowed"),
    ({"mixture": [{"path": "a", "columns": ["x"]}, {"path": "b", "columns": ["y"]}]},
     "select different columns"),
])
def test_dataset_knobs_are_checked_before_loading(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_dataset_config(dataset_cfg(path="unused", **overrides))


def test_too_large_test_size_leaves_no_training_rows(jsonl_file):
    with pytest.raises(ConfigError, match="holds out 20 of 20 rows"):
        load_train_eval(dataset_cfg(path=str(jsonl_file), test_size=20), seed=0)


def _write(tmp_path: Path, name: str, rows: list[dict]) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_mixture_weights_columns_and_seeded_order(tmp_path):
    first = _write(tmp_path, "a.jsonl", ROWS)  # 20 rows
    second = _write(tmp_path, "b.jsonl", [{"question": f"q{i}", "solution": "s", "extra": i}
                                          for i in range(10)])
    entries = [
        {"path": first, "weight": 0.5, "columns": ["problem", "solution"]},
        {"path": second, "weight": 2, "rename": {"question": "problem"},
         "columns": ["problem", "solution"]},
    ]
    mixed = load_mixture(entries, seed=0)
    assert len(mixed) == 10 + 20 and sorted(mixed.column_names) == ["problem", "solution"]
    assert sum(p.startswith("q") for p in mixed["problem"]) == 20  # weight 2 repeats the source
    assert mixed["problem"] == load_mixture(entries, seed=0)["problem"]
    assert mixed["problem"] != load_mixture(entries, seed=1)["problem"]


def test_mixture_with_mismatched_columns_names_them(tmp_path):
    first = _write(tmp_path, "a.jsonl", ROWS)
    second = _write(tmp_path, "b.jsonl", [{"question": "q", "solution": "s"}])
    with pytest.raises(ConfigError) as err:
        load_mixture([{"path": first}, {"path": second}], seed=0)
    message = str(err.value)
    assert "dataset.mixture[1]" in message and "['question', 'solution']" in message
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['problem'\]"):
        load_mixture([{"path": second, "columns": ["problem", "solution"]}], seed=0)


def test_mixture_replaces_the_source_in_a_dataset_config(tmp_path):
    path = _write(tmp_path, "a.jsonl", ROWS)
    cfg = dataset_cfg("bespoke-stratos-17k", mixture=[{"path": path, "weight": 0.5}],
                      test_size=2)
    train, evaluation = load_train_eval(cfg, seed=0)
    assert (len(train), len(evaluation)) == (8, 2)
    with pytest.raises(ConfigError, match="builds only the train split"):
        load_split(cfg, "test", seed=0)


def test_missing_column_error_names_the_column(jsonl_file):
    ds = load_local(str(jsonl_file))
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['messages'\]"):
        require_columns(ds, ["problem", "messages"], "rows")


def test_offline_copies_per_split_never_train_on_the_test_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = {"train": _write(tmp_path, "train.jsonl", ROWS[:3]),
             "test": _write(tmp_path, "test.jsonl", ROWS[3:5])}
    cfg = dataset_cfg("gsm8k", offline_path=files)
    assert len(load_split(cfg, "train", seed=0)) == 3 and len(load_split(cfg, "test", seed=0)) == 2
    with pytest.raises(ConfigError,
                       match=r"copies of splits \['test', 'train'\], not 'validation'"):
        load_split(cfg, "validation", seed=0)


def test_a_missing_offline_copy_says_which_setting_points_at_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = OmegaConf.merge({"paths": {"data_dir": str(tmp_path / "empty")}},
                          {"dataset": option_config("dataset", "math500")}).dataset
    with pytest.raises(ConfigError) as raised:
        load_split(cfg, "test", seed=0)
    message = str(raised.value)
    assert f"{tmp_path / 'empty' / 'math500.jsonl'} does not exist" in message
    assert "R1EXP_DATA_DIR" in message and "paths.data_dir" in message
    assert "load_dataset('HuggingFaceH4/MATH-500', split='test')" in message


def test_gsm8k_offline_train_split_is_the_train_slice(monkeypatch, shared_data):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = OmegaConf.merge({"paths": {"data_dir": str(shared_data)}},
                          {"dataset": option_config("dataset", "gsm8k")}).dataset
    train, test = load_split(cfg, "train", seed=0), load_split(cfg, "test", seed=0)
    assert (len(train), len(test)) == (200, 1319)
    assert not set(train["problem"]) & set(test["problem"])
