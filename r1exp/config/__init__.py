"""Config schema, validation and plan.

Importing this package registers the `r1exp.project_root` resolver, so `conf/` can name files
relative to the checkout (e.g. the offline benchmark copies) whatever the current directory.
"""

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OmegaConf.register_new_resolver("r1exp.project_root", lambda: str(PROJECT_ROOT), replace=True)
