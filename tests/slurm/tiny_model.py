"""A tiny random causal LM (a few hundred thousand weights) for infrastructure tests.

Sweeps, Slurm jobs and multi-process launches are about processes, files and MLflow runs, not
about what the model learns; a 2-layer model with a small byte-level vocabulary keeps each
GRPO step well under a second on a shared 2-core CPU. Real SmolLM2 runs are tested elsewhere
(tests/test_quickstart.py).
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "What is 3 + 4? Put the final answer in \\boxed{}. <think> 3 + 4 = 7 </think>",
    "<answer> \\boxed{7} </answer> user assistant system 0123456789 +-*/=()",
]


def build_tiny_model(out: Path) -> Path:
    """Write tokenizer + random weights to `out` (reused when already there)."""
    if (out / "config.json").is_file():
        return out
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = ByteLevelBPETokenizer()
    raw.train_from_iterator(CORPUS, vocab_size=320, min_frequency=1,
                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    out.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
