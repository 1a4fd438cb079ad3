"""Load one split of a dataset config as a `datasets.Dataset`.

Sources: `generated` (r1exp.data.synthetic), `hub` (an id for `load_dataset`, falling back to
`offline_path` when the hub is unreachable or HF_HUB_OFFLINE=1), `local` (a .jsonl / .json /
.parquet file, or a directory written by `save_to_disk`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from r1exp.errors import ConfigError

log = logging.getLogger(__name__)
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def load_split(dataset_cfg, split: str, *, seed: int):
    """One split, columns renamed to canonical names, capped at `max_samples`."""
    if dataset_cfg.source == "generated":
        ds = _generated(dataset_cfg, split, seed)
    elif dataset_cfg.source == "hub":
        ds = _hub(dataset_cfg, split)
    else:
        ds = load_local(dataset_cfg.path, split)
    rename = {src: dst for src, dst in dict(dataset_cfg.rename).items() if src in ds.column_names}
    if rename:
        ds = ds.rename_columns(rename)
    if dataset_cfg.max_samples is not None:
        ds = ds.select(range(min(dataset_cfg.max_samples, len(ds))))
    return ds


def require_columns(ds, columns, dataset_name: str) -> None:
    missing = [c for c in columns if c and c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"dataset '{dataset_name}' lacks column(s) {missing}; it has {ds.column_names} "
            "(set dataset.prompt_column / dataset.answer_column or dataset.rename)"
        )


def _generated(dataset_cfg, split: str, seed: int):
    from datasets import Dataset

    from r1exp.data.synthetic import generate_splits

    splits = generate_splits(dict(dataset_cfg.generator), seed)
    if split not in splits:
        raise ConfigError(f"generated dataset '{dataset_cfg.name}' has splits {list(splits)}, not {split!r}")
    return Dataset.from_list(splits[split])


def _hub(dataset_cfg, split: str):
    offline = dataset_cfg.offline_path
    if os.environ.get("HF_HUB_OFFLINE") == "1" and offline:
        return load_local(offline, split)
    from datasets import load_dataset

    try:
        return load_dataset(
            dataset_cfg.path, dataset_cfg.config_name, split=split, revision=dataset_cfg.revision
        )
    except Exception as err:  # the hub raises many types: connection, 404, gated, offline
        if offline and Path(offline).exists():
            log.warning("hub dataset %s unavailable (%s); using %s", dataset_cfg.path,
                        type(err).__name__, offline)
            return load_local(offline, split)
        raise


def load_local(path: str, split: str = "train"):
    from datasets import load_dataset, load_from_disk

    target = Path(path)
    if not target.exists():
        raise ConfigError(f"dataset.path={path!r} does not exist")
    if target.is_dir():
        if (target / "dataset_info.json").exists() or (target / "dataset_dict.json").exists():
            loaded = load_from_disk(str(target))
            return loaded[split] if hasattr(loaded, "keys") else loaded
        files = sorted(p for p in target.iterdir() if p.suffix in LOCAL_FORMATS)
        if not files:
            raise ConfigError(f"dataset.path={path!r} holds no {'/'.join(LOCAL_FORMATS)} files")
        builder = LOCAL_FORMATS[files[0].suffix]
        return load_dataset(builder, data_files=[str(f) for f in files], split="train")
    if target.suffix not in LOCAL_FORMATS:
        raise ConfigError(f"dataset.path={path!r}: use one of {', '.join(LOCAL_FORMATS)}")
    return load_dataset(LOCAL_FORMATS[target.suffix], data_files=str(target), split="train")
