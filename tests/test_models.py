"""Model loading: the embedded GGUF model is converted once, reused, and trainable."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from group_options import option_config
from r1exp.models.loading import resolve_attn_implementation, resolve_model_dir

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def embedded_model_cfg():
    return option_config("model", "smollm2-135m")


def cache_dir() -> str:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/tmp/unused"])
    return cfg.paths.cache_dir  # the same cache the CLI uses, so conversion is paid once


@pytest.mark.slow
def test_embedded_model_is_converted_once_and_reused(embedded_model_cfg):
    cache = cache_dir()
    first = Path(resolve_model_dir(embedded_model_cfg, cache))
    weights = next(first.glob("*.safetensors"))
    converted_at = weights.stat().st_mtime
    start = time.perf_counter()
    again = Path(resolve_model_dir(embedded_model_cfg, cache))
    assert again == first
    assert weights.stat().st_mtime == converted_at
    assert time.perf_counter() - start < 1.0, "the cached conversion was not reused"

    config = json.loads((first / "config.json").read_text())
    assert "quantization_config" not in config  # Trainers refuse GGUF-quantized models
    assert (first / "tokenizer.json").is_file() or (first / "tokenizer_config.json").is_file()


@pytest.mark.slow
def test_converted_model_loads_plainly_and_generates(embedded_model_cfg):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_dir(embedded_model_cfg, cache_dir())
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert 130e6 < model.num_parameters() < 140e6
    assert getattr(model, "hf_quantizer", None) is None
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                           add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_hub_ids_and_local_dirs_pass_through_untouched(tmp_path):
    cfg = option_config("model", "qwen2.5-1.5b-instruct")
    assert resolve_model_dir(cfg, tmp_path) == "Qwen/Qwen2.5-1.5B-Instruct"
    cfg.path = str(tmp_path)
    assert resolve_model_dir(cfg, tmp_path) == str(tmp_path)


def test_trust_remote_code_is_off_unless_a_model_config_says_so():
    for path in (CONF / "model").glob("*.yaml"):
        assert option_config("model", path.stem).trust_remote_code is False, path.name


@pytest.mark.parametrize("requested,dtype,accelerator,expected", [
    ("sdpa", "bf16", "cuda", "sdpa"),
    ("eager", "fp32", "cpu", "eager"),
    ("auto", "fp32", "cpu", "sdpa"),
    ("auto", "fp16", "cuda", "sdpa"),  # flash-attn only in bf16
])
def test_auto_attention_only_picks_flash_attn_where_it_can_run(requested, dtype, accelerator,
                                                               expected):
    assert resolve_attn_implementation(requested, dtype, accelerator) == expected
