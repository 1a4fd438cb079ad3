"""`r1exp`: the Hydra controller. Compose -> validate -> resolve once -> track -> dispatch."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from r1exp.command_line.group_overrides import exits_on_bad_group_choice
from r1exp.command_line.recipe import recipe_in_force
from r1exp.errors import ConfigError, config_error_exit
from r1exp.launch.controller import WorkerFailed, control
from r1exp.launch.sweep_job import run_sweep_job
from r1exp.launch.vllm_server import ServerFailed
from r1exp.resources import CONF_DIR as CONF_PATH

# An absolute path: Hydra would otherwise look for a Python module `conf` when r1exp is
# imported as a package (console script, `python -m r1exp`, submitit's pickled job).
CONF_DIR = str(CONF_PATH)


# Outside @hydra.main: Hydra turns a bad group choice into a traceback before main runs.
@exits_on_bad_group_choice(CONF_DIR)
@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> dict | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    runtime = HydraConfig.get()
    tags = {f"choice.{group}": str(option) for group, option in runtime.runtime.choices.items()
            if not group.startswith("hydra/")}
    tags["overrides"] = " ".join(runtime.overrides.task)
    if runtime.mode == RunMode.MULTIRUN:
        # A failing job is recorded and the sweep goes on; `r1exp -m` exits 1 at the end.
        return run_sweep_job(cfg, tags)
    recipe = recipe_in_force(cfg, runtime)
    try:
        control(cfg, tags, notice=recipe.notice())
    except ConfigError as err:
        config_error_exit(err, origin=recipe.origin_of(str(err)))
    except WorkerFailed as err:  # the worker printed its error, the summary says the rest
        print(f"r1exp: {err}", file=sys.stderr)
        sys.exit(err.returncode)
    except ServerFailed as err:  # the message names the server's log; no traceback adds to it
        print(f"r1exp: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
