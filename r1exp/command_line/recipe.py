"""Name the recipe (`experiment=`) a run composes and what it changed, before any heavy work.

The primary defaults list picks `experiment=quickstart`, so `r1exp` alone is the quickstart;
the same recipe then also shapes `r1exp stage=sft hardware=8xh100 model=...` (12 steps,
lr 1e-5). Every run says so at its start, with each value the recipe changed over the group
defaults (after the command line's overrides: a key set there is not the recipe's doing), and
how to run without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from r1exp.config.stage_nodes import KNOB_NODES, nodes_read
from r1exp.stages import STAGES

# Drops the default recipe: the group defaults alone (Hydra refuses `experiment=null` on the
# command line). Quoted in messages: an unquoted `~word` is a home dir to the shell.
NO_RECIPE = "~experiment"


def recipe_changes(with_recipe: DictConfig, without_recipe: DictConfig
                   ) -> list[tuple[str, Any, Any]]:
    """(key, group default, recipe's value) for every leaf the recipe changed that this run's
    stage reads: a recipe's knobs of another stage (the quickstart's grpo knobs on an sft
    run) are no part of the run (r1exp.config.stage_nodes)."""
    before, after = _leaves(without_recipe), _leaves(with_recipe)
    used = nodes_read(STAGES.get(str(after.get("stage"))))
    return [(key, before.get(key), value) for key, value in after.items()
            if key != "experiment" and before.get(key, _MISSING) != value
            and (key.split(".")[0] not in KNOB_NODES or key.split(".")[0] in used)]


def compose_without_recipe(overrides: list[str]) -> DictConfig:
    """The config the same command line composes without a recipe (needs Hydra's global
    state: inside @hydra.main)."""
    from hydra import compose

    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "experiment"]
    return compose(config_name="config", overrides=[*kept, NO_RECIPE])


def describe(experiment: str | None, from_command_line: bool,
             changes: list[tuple[str, Any, Any]]) -> str:
    """One paragraph for the start of a run."""
    if not experiment:
        return "recipe: none: the group defaults and your overrides"
    how = "named on the command line" if from_command_line else \
        f"the default of conf/config.yaml; '{NO_RECIPE}' runs without it"
    if not changes:
        return f"recipe: experiment={experiment} ({how}); it changes nothing here"
    shown = "\n".join(f"  {key}: {_shown(old)} -> {_shown(new)}" for key, old, new in changes)
    return f"recipe: experiment={experiment} ({how}) changes:\n{shown}"


_MISSING = object()


def _shown(value: Any) -> str:
    """As the command line would write it (true, not Python's True)."""
    if value is None:
        return "(unset)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _leaves(cfg: DictConfig) -> dict[str, Any]:
    """Dotted key -> value, interpolations left as written (resolving needs Hydra's runtime)."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return flat


@dataclass(frozen=True)
class RecipeInForce:
    experiment: str | None
    named: bool                               # on the command line, not the default
    changes: list[tuple[str, Any, Any]]

    def notice(self) -> str:
        return describe(self.experiment, self.named, self.changes)

    def origin_of(self, message: str) -> str | None:
        """A line saying the recipe set the keys a config error names, or None: an error
        about the quickstart's global batch of 8 on 8 GPUs must not look like the user's."""
        keys = [key for key, _, _ in self.changes
                if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message)]
        if not keys:
            return None
        how = "named on the command line" if self.named else \
            f"the default of conf/config.yaml; '{NO_RECIPE}' runs without it"
        return f"{', '.join(keys)} set by the recipe experiment={self.experiment} ({how})"


def recipe_in_force(cfg: DictConfig, runtime) -> RecipeInForce:
    """The recipe of this Hydra job (`runtime`: its HydraConfig) and what it changed."""
    experiment = runtime.runtime.choices.get("experiment")
    overrides = list(runtime.overrides.task)
    named = any(o.split("=", 1)[0].lstrip("+~") == "experiment" for o in overrides)
    if not experiment:
        return RecipeInForce(None, named, [])
    return RecipeInForce(experiment, named,
                         recipe_changes(cfg, compose_without_recipe(overrides)))
