"""A config group's option as Hydra composes it on its own: the option over the base it
extends (conf/<group>_base.yaml), interpolations into the rest of a run left unresolved. For
tests that need one dataset or model config, not a whole run."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


def option_config(group: str, option: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=f"{group}/{option}")[group]
    OmegaConf.set_struct(cfg, False)  # as OmegaConf.load gives it: tests add keys
    return cfg
