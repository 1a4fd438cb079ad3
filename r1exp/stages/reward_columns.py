"""The dataset columns a config provides, checked against the columns its rewards read.

A reward reading a column the dataset lacks fails at the first GRPO step, after the model has
loaded (`reward=[countdown]` on arithmetic: KeyError 'numbers'). The columns are known before
loading where the config fixes them: a generated dataset (its generator's rows) and a mixture
whose entries select `columns`, each after dataset.rename. A hub or local source shows its
columns only once loaded, so it is not checked here.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from r1exp.data.synthetic import generate_splits
from r1exp.errors import ConfigError
from r1exp.rewards.registry import dataset_columns


def check_reward_columns(cfg: DictConfig) -> None:
    provided = provided_columns(cfg.dataset, cfg.seed)
    if provided is None:
        return
    for key, column in dataset_columns(cfg.reward).items():
        if column not in provided:
            raise ConfigError(
                f"{key}={column!r} is not a column of dataset '{cfg.dataset.name}', whose rows "
                f"have: {', '.join(sorted(provided))}; choose a dataset with a {column!r} column "
                f"or set {key} to one of these"
            )


def provided_columns(dataset: DictConfig, seed: int) -> set[str] | None:
    """The columns of the loaded dataset, or None where only loading can tell."""
    if dataset.mixture:
        selected = [entry["columns"] for entry in dataset.mixture if entry.get("columns")]
        if not selected:
            return None
        columns = set(selected[0])  # r1exp.data.loading requires every entry to match
    elif dataset.source == "generated":
        splits = generate_splits(OmegaConf.to_container(dataset.generator), seed)
        columns = {column for rows in splits.values() for row in rows[:1] for column in row}
    else:
        return None
    rename = dict(dataset.rename)
    return {rename.get(column, column) for column in columns}
