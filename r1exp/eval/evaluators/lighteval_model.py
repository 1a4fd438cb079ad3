"""The model dir as lighteval's environment (transformers 4) must see it.

r1exp saves models with transformers 5, whose files transformers 4 misreads:
- config.json keeps RoPE's base inside `rope_parameters`; transformers 4 reads only
  `rope_theta`, finds none and silently uses its default (10,000 where SmolLM2 has 100,000), so
  the model loads without a warning and writes other text;
- tokenizer_config.json names the class `TokenizersBackend`, which transformers 4 does not
  have (it refuses to load); the tokenizer.json beside it is what its PreTrainedTokenizerFast
  reads.
The view is a directory of links to the weights and tokenizer files with those two files
rewritten, plus a generation_config.json holding r1exp's sampling protocol instead of the
checkpoint's: transformers merges a checkpoint's repetition_penalty or top_k (Qwen ships both)
into every generate call, which r1exp's own engines never apply
(r1exp/inference/transformers_engine.py).
It also decides `do_sample`, which lighteval's transformers backend never sets.

lighteval writes its sample cache into `<cache_dir>/<model_name>`, which for an absolute model
path is the model dir itself; a view in a temporary directory keeps that out of the user's
checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REWRITTEN = ("config.json", "tokenizer_config.json", "generation_config.json")
# transformers 4's name for the class transformers 5 calls TokenizersBackend
TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}
GENERATION_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def local_model_dir(source: str, revision: str | None) -> Path:
    """A local dir for `source`: itself, or its hub snapshot (offline: from the local cache)."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(
        source, revision=revision,
        allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.py"]))


def write_view(model_dir: Path, view_dir: Path, *, greedy: bool) -> Path:
    view_dir.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        if item.name not in REWRITTEN and not (view_dir / item.name).exists():
            os.symlink(item.resolve(), view_dir / item.name)
    config = json.loads((model_dir / "config.json").read_text())
    (view_dir / "config.json").write_text(json.dumps(transformers4_config(config), indent=2))
    tokenizer_config = model_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        settings = json.loads(tokenizer_config.read_text())
        cls = settings.get("tokenizer_class")
        settings["tokenizer_class"] = TOKENIZER_CLASSES.get(cls, cls)
        (view_dir / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
    (view_dir / "generation_config.json").write_text(json.dumps(
        r1exp_generation_config(model_dir, config, greedy=greedy), indent=2))
    return view_dir


def transformers4_config(config: dict) -> dict:
    """config.json with RoPE's settings where transformers 4 reads them."""
    config = dict(config)
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        if scaling.get("rope_type", "default") != "default":
            config["rope_scaling"] = scaling
    return config


def r1exp_generation_config(model_dir: Path, config: dict, *, greedy: bool) -> dict:
    """The checkpoint's special token ids only, and r1exp's sampling: temperature and top_p
    (set per call by lighteval), no top-k (0 turns transformers' default of 50 off)."""
    source = model_dir / "generation_config.json"
    original = json.loads(source.read_text()) if source.is_file() else config
    ids = {key: original[key] for key in GENERATION_KEYS if original.get(key) is not None}
    return {**ids, "do_sample": False} if greedy else {**ids, "do_sample": True, "top_k": 0}
