"""Eval generation throughput: r1exp's transformers backend vs plain `model.generate`.

    python -m tests.bench.eval_throughput --shape 1.5b --prompts 256 --prompt-len 256 \
        --new-tokens 512
    python -m tests.bench.eval_throughput --shape tiny       # CPU smoke: seconds

A random-weight Qwen2 model of the given shape is built from `Qwen2Config(...)` (no hub), and
N synthetic prompts of a fixed length are generated for, sampled with the R1 protocol
(temperature 0.6, top_p 0.95). r1exp's path is r1exp.inference's TransformersEngine (length-
sorted, token-budget batches, left padding, stop at EOS); the plain path calls
`model.generate` on the same padded batches, after a full-size warm-up; the two alternate
for --repeats runs and each keeps its best. Both count the tokens actually generated (up to
and including an EOS). Prints a table, then a final JSON line with the ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

# Qwen2.5-1.5B / R1-Distill-Qwen-1.5B dimensions; `tiny` keeps the structure for a CPU smoke.
SHAPES = {
    "1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                 num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 max_position_embeddings=32768, rope_theta=10000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=True),
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                 rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class StubTokenizer:
    """What the generator needs from a tokenizer, for token-id prompts of a random model."""

    def __init__(self, eos_token_id: int):
        self.eos_token_id = self.pad_token_id = eos_token_id

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def build_model(shape: str, dtype: str, device: str):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**SHAPES[shape])
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(dtype=getattr(torch, DTYPES[dtype]), device=device)
    model.generation_config.eos_token_id = None  # the stub tokenizer's EOS is the only stop
    return model.eval()


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_r1exp(generator, requests, device):
    synchronize(device)
    started = time.perf_counter()
    tokens = sum(r.completion_tokens for batch in generator.generate(requests) for r in batch)
    synchronize(device)
    return tokens, time.perf_counter() - started


def run_plain(generator, batches, sampling, device):
    import torch

    synchronize(device)
    started = time.perf_counter()
    tokens = 0
    eos = generator.stop_ids[0]
    for batch in batches:
        input_ids, attention_mask = generator.left_padded([ids for _, ids in batch])
        with torch.inference_mode():
            out = generator.model.generate(
                input_ids=input_ids, attention_mask=attention_mask,
                max_new_tokens=sampling.max_new_tokens, do_sample=True,
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=0,
                pad_token_id=eos, eos_token_id=eos,
            )
        for row in out[:, input_ids.shape[1]:].tolist():
            tokens += row.index(eos) + 1 if eos in row else len(row)
    synchronize(device)
    return tokens, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    parser.add_argument("--prompts", type=int, default=None, help="default: 256 (1.5b), 16 (tiny)")
    parser.add_argument("--prompt-len", type=int, default=None, help="default: 256 / 32")
    parser.add_argument("--new-tokens", type=int, default=None, help="default: 512 / 16")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="r1exp's token budget per batch; default: max-rows rows' worth")
    parser.add_argument("--max-rows", type=int, default=None, help="default: 64 / 8")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each path; best is kept")
    args = parser.parse_args(argv)

    import torch

    from r1exp.inference import Request, Sampling
    from r1exp.inference.transformers_engine import TransformersEngine

    big = args.shape != "tiny"
    n = args.prompts or (256 if big else 16)
    prompt_len = args.prompt_len or (256 if big else 32)
    new_tokens = args.new_tokens or (512 if big else 16)
    max_rows = args.max_rows or (64 if big else 8)
    batch_tokens = args.batch_tokens or max_rows * (prompt_len + new_tokens)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("bf16" if device.startswith("cuda") else "fp32")

    model = build_model(args.shape, dtype, device)
    vocab = model.config.vocab_size
    rng = random.Random(args.seed)
    requests = [Request((str(i), 0), (), tuple(rng.randrange(vocab - 1) for _ in range(prompt_len)))
                for i in range(n)]
    sampling = Sampling(greedy=False, temperature=0.6, top_p=0.95, max_new_tokens=new_tokens,
                        seed=args.seed)
    generator = TransformersEngine(sampling, batch_tokens=batch_tokens, max_rows=max_rows)
    generator.use(model, StubTokenizer(vocab - 1))
    batches = generator.batches([(r.key, list(r.prompt_ids)) for r in requests])
    # Warm-up at full batch size (kernels, allocator, CUDA context), then alternate the order
    # of the two paths per repeat and keep each one's best: whoever runs first pays no more.
    generator.generate_batch(batches[0])
    runs = {"r1exp": [], "plain": []}
    for repeat in range(args.repeats):
        order = ("r1exp", "plain") if repeat % 2 == 0 else ("plain", "r1exp")
        for path in order:
            torch.manual_seed(args.seed)
            runs[path].append(run_r1exp(generator, requests, device) if path == "r1exp"
                              else run_plain(generator, batches, sampling, device))
    r1exp_tokens, r1exp_s = max(runs["r1exp"], key=lambda r: r[0] / r[1])
    plain_tokens, plain_s = max(runs["plain"], key=lambda r: r[0] / r[1])

    rows = [("r1exp TransformersEngine", r1exp_tokens, r1exp_s),
            ("plain model.generate", plain_tokens, plain_s)]
    print(f"shape={args.shape} device={device} dtype={dtype} prompts={n} prompt_len={prompt_len} "
          f"new_tokens={new_tokens} batches={len(batches)} max_rows={max_rows}")
    print(f"{'path':28} {'tokens':>8} {'seconds':>9} {'problems/s':>11} {'tokens/s':>10}")
    for name, tokens, seconds in rows:
        print(f"{name:28} {tokens:8d} {seconds:9.2f} {n / seconds:11.2f} {tokens / seconds:10.1f}")
    ratio = (r1exp_tokens / r1exp_s) / (plain_tokens / plain_s)
    print(f"ratio (r1exp / plain tokens/s): {ratio:.3f}")
    print(json.dumps({
        "bench": "eval_throughput", "shape": args.shape, "device": device, "dtype": dtype,
        "prompts": n, "prompt_len": prompt_len, "new_tokens": new_tokens,
        "batches": len(batches), "max_rows": max_rows, "repeats": args.repeats,
        "r1exp_problems_per_s": round(n / r1exp_s, 3),
        "r1exp_tokens_per_s": round(r1exp_tokens / r1exp_s, 1),
        "plain_problems_per_s": round(n / plain_s, 3),
        "plain_tokens_per_s": round(plain_tokens / plain_s, 1),
        "ratio_tokens_per_s": round(ratio, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
