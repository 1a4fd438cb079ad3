"""lighteval's own Python environment: where it lives, what it holds, creating and checking it.

    python -m r1exp.eval.lighteval_env [--path DIR] [--vllm] [--force]

lighteval cannot share r1exp's environment: every lighteval release from 0.10 to 0.13 pins
latex2sympy2_extended==1.0.6, which r1exp's scorer (math-verify >= 0.8) cannot use, and 0.13
needs transformers 4 and huggingface_hub 0.x where r1exp runs transformers 5 and hub 1.x. A venv
with `--system-site-packages` does not help: it sees the main environment's hub 1.x. So the
venv made here is fully isolated; r1exp drives it as a subprocess (r1exp/eval/lighteval_runtime)
and never imports lighteval itself.

torch is installed at the main environment's version and build (`2.13.0+cpu` gets the CPU
wheel, `+cu128` the CUDA 12.8 one, from PyTorch's index when pip cannot find it otherwise), so
the two environments run the same kernels. With --vllm the venv gets lighteval's vLLM extra
instead, and vLLM brings the torch it was built for.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

LIGHTEVAL_VERSION = "0.13.0"
# Upper bounds that lighteval 0.13's own requirements leave open, each found by running it:
REQUIREMENTS = (
    f"lighteval[math]=={LIGHTEVAL_VERSION}",
    # its models and tokenizer handling are written against transformers 4 (`torch_dtype=`,
    # slow/fast tokenizer classes); transformers 4 in turn needs huggingface_hub < 1
    "transformers>=4.54,<5",
    "huggingface_hub<1",
    # xxhash 4 refuses str input; lighteval's details logger hashes each query string
    "xxhash<4",
)
VLLM_EXTRA = f"lighteval[math,vllm]=={LIGHTEVAL_VERSION}"
PYTORCH_INDEX = "https://download.pytorch.org/whl/{build}"
STAMP_FILE = "r1exp-lighteval.json"  # what was installed, written once the install succeeded
COMMAND = "python -m r1exp.eval.lighteval_env"
# Run by the venv's interpreter: the versions it holds (importing lighteval would take ~10 s;
# `pip check` and run.py's own imports, before it loads the model, catch what this cannot).
PROBE = """
import importlib.metadata as metadata, json
versions = {}
for name in ("lighteval", "transformers", "huggingface_hub", "torch", "xxhash", "vllm"):
    try:
        versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        versions[name] = None
print(json.dumps(versions))
"""


def default_env_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the env lives unless eval.lighteval.env says otherwise: under r1exp's cache."""
    if cache_dir is None:
        cache_dir = os.environ.get("R1EXP_CACHE_DIR") or Path.home() / ".cache" / "r1exp"
    return Path(cache_dir).expanduser() / f"lighteval-{LIGHTEVAL_VERSION}"


def python_of(env_dir: str | Path) -> Path:
    return Path(env_dir).expanduser() / "bin" / "python"


def fix_command(env_dir: str | Path, *, force: bool = False) -> str:
    command = COMMAND
    if Path(env_dir).expanduser() != default_env_dir():
        command += f" --path {env_dir}"
    return command + (" --force" if force else "")


@dataclass(frozen=True)
class EnvStatus:
    python: Path
    versions: dict[str, str | None]

    @property
    def has_vllm(self) -> bool:
        return self.versions.get("vllm") is not None


class LightevalEnvError(RuntimeError):
    """The env is missing or broken; the message names the command that fixes it."""


def check_env(env_dir: str | Path) -> EnvStatus:
    """The env's interpreter and versions, or LightevalEnvError saying what is wrong and how to
    fix it. Takes about 2 s (the env's python reports its versions, then `pip check`)."""
    python = python_of(env_dir)
    if not os.access(python, os.X_OK):
        raise LightevalEnvError(
            f"no lighteval environment at {env_dir} (lighteval needs its own: its pins conflict "
            f"with r1exp's); create it with `{fix_command(env_dir)}` (about 2 minutes, ~2 GB)")
    if not (Path(env_dir).expanduser() / STAMP_FILE).is_file():
        raise LightevalEnvError(
            f"the lighteval environment at {env_dir} was never finished (no {STAMP_FILE}); "
            f"recreate it with `{fix_command(env_dir, force=True)}`")
    report = _probe(python)
    problem = report.get("error") or _version_problem(report["versions"]) or report["pip_check"]
    if problem:
        raise LightevalEnvError(f"the lighteval environment at {env_dir} is broken ({problem}); "
                                f"recreate it with `{fix_command(env_dir, force=True)}`")
    return EnvStatus(python, report["versions"])


def _probe(python: Path) -> dict:
    """{"versions", "pip_check"} of the env, or {"error"} when its python does not run."""
    try:
        out = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True,
                             timeout=120, check=False)
        versions = json.loads(out.stdout.strip().splitlines()[-1])
        check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True,
                               text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"its python does not run: {err}"}
    except (json.JSONDecodeError, IndexError):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"its python exited with status {out.returncode}: {last}"}
    pip_check = None
    if check.returncode != 0:
        pip_check = "pip check: " + "; ".join(check.stdout.strip().splitlines()[:3])
    return {"versions": versions, "pip_check": pip_check}


def _version_problem(versions: dict[str, str | None]) -> str | None:
    if versions["lighteval"] != LIGHTEVAL_VERSION:
        return f"lighteval {versions['lighteval']}, r1exp drives {LIGHTEVAL_VERSION}"
    for name, below in (("transformers", 5), ("huggingface_hub", 1), ("xxhash", 4)):
        version = versions[name]
        if version is None or int(version.split(".")[0]) >= below:
            return f"{name} {version}; lighteval {LIGHTEVAL_VERSION} needs {name} < {below}"
    if versions["torch"] is None:
        return "torch is not installed"
    return None


def torch_requirement() -> tuple[str, str | None]:
    """The main environment's torch as a requirement, and PyTorch's index for its build."""
    from importlib.metadata import version

    installed = version("torch")  # e.g. 2.13.0+cpu, 2.13.0+cu128, 2.13.0 (PyPI's default)
    build = installed.partition("+")[2]
    return f"torch=={installed}", PYTORCH_INDEX.format(build=build) if build else None


def create(env_dir: Path, *, with_vllm: bool = False, force: bool = False) -> EnvStatus:
    """Make the venv at `env_dir` and install lighteval into it; print progress as it goes."""
    finished = (env_dir / STAMP_FILE).is_file()
    if finished and not force:
        try:
            status = check_env(env_dir)
        except LightevalEnvError as err:
            raise LightevalEnvError(f"{err} (it exists; --force replaces it)") from None
        print(f"lighteval environment already in place at {env_dir}: {status.versions}")
        return status
    if env_dir.exists():  # forced, or left unfinished by an interrupted install
        print(f"removing the environment at {env_dir}", flush=True)
        shutil.rmtree(env_dir)
    started = time.perf_counter()
    print(f"creating lighteval's environment at {env_dir}", flush=True)
    venv.EnvBuilder(with_pip=True, symlinks=True).create(env_dir)
    pip = [str(python_of(env_dir)), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    if with_vllm:
        _step("lighteval with vLLM (vLLM brings its own torch)",
              [*pip, VLLM_EXTRA, *REQUIREMENTS[1:]])
    else:
        torch_req, torch_index = torch_requirement()
        _install_torch(pip, torch_req, torch_index)
        # the torch requirement again, so the resolver keeps the build installed above
        _step(f"lighteval {LIGHTEVAL_VERSION} and its pins", [*pip, *REQUIREMENTS, torch_req])
    # Written last: an env without it is an interrupted install, which check_env refuses.
    (env_dir / STAMP_FILE).write_text(json.dumps({"vllm": with_vllm, "by": COMMAND}))
    status = check_env(env_dir)
    (env_dir / STAMP_FILE).write_text(json.dumps(
        {"versions": status.versions, "vllm": with_vllm, "by": COMMAND}, indent=2))
    print(f"lighteval environment ready in {time.perf_counter() - started:.0f} s: "
          f"{status.versions}", flush=True)
    return status


def _install_torch(pip: list[str], requirement: str, index: str | None) -> None:
    # pip's own sources first (a wheel cache, find-links, a mirror): no network if they have it
    try:
        _step(f"{requirement} (the main environment's torch)", [*pip, requirement])
    except subprocess.CalledProcessError:
        if index is None:
            raise
        _step(f"{requirement} from {index}", [*pip, requirement, "--extra-index-url", index])


def _step(what: str, argv: list[str]) -> None:
    print(f"  installing {what} ...", flush=True)
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, default=default_env_dir(),
                        help="where to create it (default: %(default)s; eval.lighteval.env "
                             "must name the same place)")
    parser.add_argument("--vllm", action="store_true",
                        help="install lighteval's vLLM extra (GPU machines; its own torch)")
    parser.add_argument("--force", action="store_true", help="replace an existing environment")
    args = parser.parse_args(argv)
    try:
        create(args.path.expanduser(), with_vllm=args.vllm, force=args.force)
    except (LightevalEnvError, subprocess.CalledProcessError) as err:
        print(f"r1exp.eval.lighteval_env: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
