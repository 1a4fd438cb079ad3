"""Load a dataset config as `datasets.Dataset`s: one source or a weighted mixture.

Sources: `generated` (r1exp.data.synthetic), `hub` (an id for `load_dataset`, falling back to
`offline_path` when the hub is unreachable or HF_HUB_OFFLINE=1: one file, or {split: file}),
`local` (a .jsonl / .json / .parquet file, a directory of them, or a `save_to_disk` dir).

`dataset.mixture` replaces the single source with a list of sources, each with its own split,
weight and columns; they are concatenated and shuffled by the run's seed, so the same config
and seed always give the same rows in the same order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from r1exp.data.synthetic import generate_splits
from r1exp.errors import ConfigError

log = logging.getLogger(__name__)
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
MIXTURE_KEYS = ("path", "source", "config_name", "revision", "split", "weight", "columns",
                "rename", "offline_path")
MIXTURE_SOURCES = ("hub", "local")


def load_split(dataset_cfg, split: str, *, seed: int):
    """One split, columns renamed to canonical names, shuffled if asked, capped at `max_samples`."""
    if dataset_cfg.mixture:
        if split != dataset_cfg.train_split:
            raise ConfigError(
                f"dataset.mixture builds only the train split ({dataset_cfg.train_split!r}), not "
                f"{split!r}; hold out part of it with dataset.test_size instead"
            )
        ds = load_mixture(dataset_cfg.mixture, seed=seed, name=dataset_cfg.name)
    elif dataset_cfg.source == "generated":
        ds = _generated(dataset_cfg, split, seed)
    elif dataset_cfg.source == "hub":
        ds = _hub(dataset_cfg.path, dataset_cfg.config_name, dataset_cfg.revision, split,
                  dataset_cfg.offline_path)
    else:
        ds = load_local(dataset_cfg.path, split)
    ds = _renamed(ds, dict(dataset_cfg.rename))
    if dataset_cfg.shuffle:
        ds = ds.shuffle(seed=seed)
    if dataset_cfg.max_samples is not None:
        ds = ds.select(range(min(dataset_cfg.max_samples, len(ds))))
    return ds


def load_train_eval(dataset_cfg, *, seed: int):
    """(train, eval or None): eval is `test_split`, else a `test_size` split-off of train."""
    train = load_split(dataset_cfg, dataset_cfg.train_split, seed=seed)
    if dataset_cfg.test_split:
        return train, load_split(dataset_cfg, dataset_cfg.test_split, seed=seed)
    if dataset_cfg.test_size is None:
        return train, None
    size = dataset_cfg.test_size
    held_out = int(size) if size >= 1 else float(size)  # a count of rows, or a fraction
    rows = held_out if isinstance(held_out, int) else round(held_out * len(train))
    if not 1 <= rows < len(train):
        raise ConfigError(
            f"dataset.test_size={size} holds out {rows} of {len(train)} rows; at least one row "
            "must land on each side"
        )
    parts = train.train_test_split(test_size=held_out, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def require_columns(ds, columns, dataset_name: str, hint: str | None = None) -> None:
    missing = [c for c in columns if c and c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"dataset '{dataset_name}' lacks column(s) {missing}; it has {ds.column_names} "
            f"({hint or 'set dataset.prompt_column / dataset.answer_column or dataset.rename'})"
        )


def validate_dataset_config(dataset_cfg) -> None:
    """Cheap checks (no loading) of the knobs this module reads; ConfigError naming the key."""
    size = dataset_cfg.test_size
    if size is not None:
        if size <= 0 or (size >= 1 and size != int(size)):
            raise ConfigError(
                f"dataset.test_size={size}: use a fraction in (0, 1) or a whole number of rows"
            )
        if dataset_cfg.test_split:
            raise ConfigError(
                f"dataset.test_size={size} and dataset.test_split={dataset_cfg.test_split!r} both "
                "choose an eval split; set dataset.test_split=null to split off test_size rows"
            )
    if dataset_cfg.mixture:
        _validate_mixture(dataset_cfg.mixture)


def _validate_mixture(entries) -> None:
    if isinstance(entries, str) or hasattr(entries, "keys") or not hasattr(entries, "__iter__"):
        raise ConfigError("dataset.mixture must be a list of {path, split, weight, columns} "
                          "entries")
    declared_columns = []
    for index, entry in enumerate(entries):
        key = f"dataset.mixture[{index}]"
        if not hasattr(entry, "keys"):
            raise ConfigError(f"{key} must be a mapping with at least `path`, got {entry!r}")
        unknown = sorted(set(entry.keys()) - set(MIXTURE_KEYS))
        if unknown:
            raise ConfigError(f"{key} has unknown key(s) {unknown}; allowed: "
                              f"{', '.join(MIXTURE_KEYS)}")
        if not entry.get("path"):
            raise ConfigError(f"{key}.path is required (a hub id, or a local file or directory)")
        source = entry.get("source")
        if source is not None and source not in MIXTURE_SOURCES:
            raise ConfigError(f"{key}.source={source!r} is not allowed; choose one of: "
                              f"{', '.join(MIXTURE_SOURCES)} (or leave it out to infer it)")
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(f"{key}.weight={weight!r} must be a number > 0 "
                              "(the fraction of that source to use; > 1 repeats it)")
        if entry.get("columns") is not None:
            declared_columns.append((index, sorted(entry["columns"])))
    if len({tuple(cols) for _, cols in declared_columns}) > 1:
        listing = "; ".join(f"[{i}]: {cols}" for i, cols in declared_columns)
        raise ConfigError(f"dataset.mixture entries select different columns ({listing}); "
                          "every source must end up with the same columns")


def load_mixture(entries, *, seed: int, name: str = "mixture"):
    """Concatenate weighted sources after checking they share their columns; shuffled by seed."""
    from datasets import concatenate_datasets

    _validate_mixture(entries)
    parts = []
    for index, entry in enumerate(entries):
        ds = _mixture_source(entry)
        ds = _renamed(ds, dict(entry.get("rename") or {}))
        columns = entry.get("columns")
        if columns is not None:
            require_columns(ds, list(columns), f"{name}[{index}] {entry['path']}",
                            hint=f"fix dataset.mixture[{index}].columns or .rename")
            ds = ds.select_columns(list(columns))
        parts.append(_weighted(ds, float(entry.get("weight", 1.0)), seed + index))
    _check_compatible(parts, entries)
    try:
        mixed = concatenate_datasets([p.cast(parts[0].features) for p in parts])
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"dataset.mixture sources have the same columns but incompatible types "
            f"({parts[0].features} vs the others): {err}"
        ) from None
    return mixed.shuffle(seed=seed)


def _mixture_source(entry):
    path, split = str(entry["path"]), entry.get("split") or "train"
    source = entry.get("source") or ("local" if Path(path).exists() else "hub")
    if source == "local":
        return load_local(path, split)
    return _hub(path, entry.get("config_name"), entry.get("revision"), split,
                entry.get("offline_path"))


def _weighted(ds, weight: float, seed: int):
    """`weight` copies of ds: the whole part repeats, the fraction is a seeded random subset."""
    from datasets import concatenate_datasets

    whole, fraction = int(weight), weight - int(weight)
    pieces = [ds] * whole
    rows = round(len(ds) * fraction)
    if rows:
        pieces.append(ds.shuffle(seed=seed).select(range(rows)))
    if not pieces:
        raise ConfigError(f"a dataset.mixture weight of {weight} keeps no row of a "
                          f"{len(ds)}-row source")
    return pieces[0] if len(pieces) == 1 else concatenate_datasets(pieces)


def _check_compatible(parts, entries) -> None:
    reference = sorted(parts[0].column_names)
    for index, part in enumerate(parts[1:], start=1):
        if sorted(part.column_names) != reference:
            raise ConfigError(
                f"dataset.mixture[{index}] ({entries[index]['path']}) has columns "
                f"{sorted(part.column_names)} but dataset.mixture[0] ({entries[0]['path']}) has "
                f"{reference}; set `columns` (and `rename`) in each entry so they match"
            )


def _renamed(ds, rename: dict):
    rename = {src: dst for src, dst in rename.items() if src in ds.column_names and src != dst}
    return ds.rename_columns(rename) if rename else ds


def _generated(dataset_cfg, split: str, seed: int):
    from datasets import Dataset

    splits = generate_splits(dict(dataset_cfg.generator), seed)
    if split not in splits:
        raise ConfigError(f"generated dataset '{dataset_cfg.name}' has splits {list(splits)}, "
                          f"not {split!r}")
    return Dataset.from_list(splits[split])


def _hub(path: str, config_name, revision, split: str, offline):
    offline = offline_copy(offline, split)
    if os.environ.get("HF_HUB_OFFLINE") == "1" and offline:
        if not Path(offline).exists():
            raise ConfigError(missing_offline_copy(path, config_name, split, offline,
                                                   "HF_HUB_OFFLINE=1"))
        return load_local(offline, split)
    from datasets import load_dataset

    try:
        return load_dataset(path, config_name, split=split, revision=revision)
    except Exception as err:  # the hub raises many types: connection, 404, gated, offline
        if offline and Path(offline).exists():
            log.warning("hub dataset %s unavailable (%s); using %s", path, type(err).__name__,
                        offline)
            return load_local(offline, split)
        reason = f"the hub failed: {type(err).__name__}: {err}"
        if offline:
            message = missing_offline_copy(path, config_name, split, offline, reason)
            raise ConfigError(message) from err
        raise RuntimeError(
            f"hub dataset {path!r} (split {split!r}) could not be loaded ({reason}); without "
            "network access point dataset.offline_path (or the mixture entry's offline_path) "
            "at a local copy"
        ) from err


def missing_offline_copy(path: str, config_name, split: str, offline: str, reason: str) -> str:
    """Where the copy should be, which setting moves it, and how to make one: the default
    (paths.data_dir under the cache) holds nothing until the user puts the files there."""
    load = ", ".join(repr(a) for a in (path, config_name) if a is not None)
    return (
        f"hub dataset {path!r} (split {split!r}) is read from its offline copy ({reason}), but "
        f"{offline} does not exist. Point R1EXP_DATA_DIR (or paths.data_dir=...) at the "
        f"directory that holds it, or dataset.offline_path at the file. A copy is the hub "
        f"split as JSON Lines, e.g. python -c \"import datasets; datasets.load_dataset("
        f"{load}, split='{split}').to_json('{offline}')\" on a machine with network access"
    )


def offline_copy(offline, split: str) -> str | None:
    """The local copy of `split`: one path for every split, or a {split: path} mapping (so an
    offline train split never silently reads the test file)."""
    if offline is None or isinstance(offline, str):
        return offline
    if split not in offline:
        raise ConfigError(f"dataset.offline_path has copies of splits {sorted(offline)}, "
                          f"not {split!r}; add `{split}: <file>` to it")
    return str(offline[split])


def load_local(path: str, split: str = "train"):
    from datasets import load_dataset, load_from_disk

    target = Path(path)
    if not target.exists():
        raise ConfigError(f"dataset.path={path!r} does not exist")
    if target.is_dir():
        if (target / "dataset_info.json").exists() or (target / "dataset_dict.json").exists():
            loaded = load_from_disk(str(target))
            if not hasattr(loaded, "keys"):
                return loaded
            if split not in loaded:
                raise ConfigError(f"dataset.path={path!r} has splits {list(loaded)}, not {split!r}")
            return loaded[split]
        # One format per directory, .jsonl first: a manifest.json beside the data shards (the
        # generate stage writes one) is metadata, not rows.
        files = next((found for suffix in LOCAL_FORMATS
                      if (found := sorted(target.glob(f"*{suffix}")))), [])
        if not files:
            raise ConfigError(f"dataset.path={path!r} holds no {'/'.join(LOCAL_FORMATS)} files")
        builder = LOCAL_FORMATS[files[0].suffix]
        return load_dataset(builder, data_files=[str(f) for f in files], split="train")
    if target.suffix not in LOCAL_FORMATS:
        raise ConfigError(f"dataset.path={path!r}: use one of {', '.join(LOCAL_FORMATS)}")
    return load_dataset(LOCAL_FORMATS[target.suffix], data_files=str(target), split="train")
