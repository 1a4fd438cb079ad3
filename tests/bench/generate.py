"""Benchmark: fixed batches vs a bounded stream against one OpenAI-compatible server, same work.

    python -m tests.bench.generate [--requests 32] [--max-in-flight 8] [--endpoint URL]

Without --endpoint it starts a real `vllm serve` of --model (default: the embedded
SmolLM2-135M; vLLM's CPU build through r1exp.launch.vllm_cli) on a free port of 127.0.0.1,
with --server-args passed on (on a CPU, e.g. '--dtype float32 --enforce-eager'). vLLM rather
than a server of r1exp's own: the comparison is only worth what the server's batching is,
and vLLM's continuous batching is the one distillation runs use.

The work: requests of uneven length, as reasoning traces are: most ask for a few tokens, a
quarter for ~10x more (`ignore_eos`, so every request generates exactly its max_tokens and
both sides do identical work). The baseline is the plain-library way: httpx + asyncio.gather
over fixed batches of --max-in-flight requests, each batch awaited before the next is sent.
r1exp's way is r1exp.inference.openai_client.stream_chat with the same --max-in-flight: a new
request goes out the moment one finishes. Passes alternate (batched, streamed, streamed,
batched, ...) so drifting machine load hits both sides alike. The last line is JSON.

Why streaming wins: the server decodes all requests it holds in one batched step, and a step
costs about the same for 1 or 16 requests while decoding is latency-bound (always on a GPU,
partly on a CPU). A fixed batch shrinks as its short requests finish, and the server then
spends most steps on the batch's one or two long requests, nearly alone, until the slowest
is done; the stream refills each freed slot at once, so every step carries max_in_flight
requests and the same tokens take far fewer steps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from r1exp.inference import Request, Sampling
from r1exp.inference.openai_client import ClientSettings, chat_body, stream_chat
from r1exp.launch.processes import free_port, stop, wait_until_serving
from r1exp.resources import CONF_DIR

MODEL = "smollm2-135m"


def workload(n: int, short: tuple[int, int], long: tuple[int, int], long_fraction: float,
             seed: int) -> list[Request]:
    rng = random.Random(seed)
    n_long = round(n * long_fraction)
    lengths = ([rng.randint(*long) for _ in range(n_long)]
               + [rng.randint(*short) for _ in range(n - n_long)])
    rng.shuffle(lengths)
    # The key carries each request's length: body() asks for exactly that many tokens.
    return [Request((i, length), ({"role": "user", "content": f"Count from {i} upwards."},))
            for i, length in enumerate(lengths)]


def body_for(model: str):
    """Sampled bodies of exactly the length the request's key names (vLLM's ignore_eos)."""
    sampled = chat_body(Sampling(greedy=False, temperature=0.7, top_p=0.95, max_new_tokens=1,
                                 seed=0), model)
    return lambda r: {**sampled(r), "max_tokens": r.key[1], "ignore_eos": True}


async def batched(requests: list[Request], endpoint: str, model: str, batch: int,
                  timeout_s: float) -> int:
    """The plain way: send a batch, wait for all of it, send the next."""
    import httpx

    tokens, body = 0, body_for(model)
    async with httpx.AsyncClient(base_url=endpoint.rstrip("/") + "/", timeout=timeout_s) as http:
        for start in range(0, len(requests), batch):
            chunk = requests[start:start + batch]
            replies = await asyncio.gather(*(http.post("chat/completions", json=body(r))
                                             for r in chunk))
            for reply in replies:
                reply.raise_for_status()
                tokens += reply.json()["usage"]["completion_tokens"]
    return tokens


async def streamed(requests: list[Request], endpoint: str, model: str, batch: int,
                   timeout_s: float) -> int:
    settings = ClientSettings(endpoint=endpoint, model=model, max_in_flight=batch,
                              request_timeout_s=timeout_s, max_retries=0)
    tokens = 0
    async for result in stream_chat(requests, body_for(model), settings):
        if result.error:
            raise RuntimeError(f"request {result.key} failed: {result.error}")
        tokens += result.completion_tokens
    return tokens


MODES = {"batched": batched, "streamed": streamed}


def model_dir(model: str) -> str:
    """A conf/model option (e.g. smollm2-135m, converted from its GGUF once), else as given."""
    option = CONF_DIR / "model" / f"{model}.yaml"
    if not option.is_file():
        return model  # a local dir or a hub id: vLLM resolves it
    from omegaconf import OmegaConf

    from r1exp.models.loading import resolve_model_dir

    cache_dir = os.environ.get("R1EXP_CACHE_DIR") or Path.home() / ".cache" / "r1exp"
    return resolve_model_dir(OmegaConf.load(option), cache_dir)


@contextmanager
def local_server(model: str, server_args: list[str], startup_timeout_s: float = 600):
    from r1exp.launch import vllm_cli

    port = free_port()
    proc = subprocess.Popen(vllm_cli.command(
        "serve", model_dir(model), "--served-model-name", model, "--host", "127.0.0.1",
        "--port", str(port), *server_args))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, f"{base}/health", what="vllm serve",
                           timeout_s=startup_timeout_s)
        yield f"{base}/v1"
    finally:
        stop(proc)


def run(endpoint: str, args) -> dict:
    requests = workload(args.requests, (args.short_min, args.short_max),
                        (args.long_min, args.long_max), args.long_fraction, args.seed)
    # Warm-up at full width and some length: a cold GPU server's first pass runs ~2x slower.
    asyncio.run(streamed(workload(2 * args.max_in_flight, (16, 16), (16, 16), 0, args.seed + 1),
                         endpoint, args.model, args.max_in_flight, args.timeout_s))
    order = [m for r in range(args.rounds) for m in (("batched", "streamed") if r % 2 == 0
                                                       else ("streamed", "batched"))]
    totals = {m: {"seconds": 0.0, "tokens": 0} for m in MODES}
    for mode in order:
        started = time.perf_counter()
        tokens = asyncio.run(MODES[mode](requests, endpoint, args.model, args.max_in_flight,
                                         args.timeout_s))
        seconds = time.perf_counter() - started
        totals[mode]["seconds"] += seconds
        totals[mode]["tokens"] += tokens
        print(f"  {mode:9s} pass: {seconds:7.1f} s, {tokens} tokens", flush=True)
    if totals["batched"]["tokens"] != totals["streamed"]["tokens"]:
        raise RuntimeError(f"the two sides did different work: {totals}")
    return {"totals": totals, "requests": requests}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default=None,
                   help="an OpenAI-compatible …/v1 (default: start `vllm serve`)")
    p.add_argument("--model", default=MODEL,
                   help="served model: conf/model option, local dir or hub id")
    p.add_argument("--server-args", default="",
                   help="more `vllm serve` flags, e.g. '--dtype float32 --enforce-eager'")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--max-in-flight", type=int, default=8, help="batch size = streamed in flight")
    p.add_argument("--short-min", type=int, default=6)
    p.add_argument("--short-max", type=int, default=12)
    p.add_argument("--long-min", type=int, default=60)
    p.add_argument("--long-max", type=int, default=96)
    p.add_argument("--long-fraction", type=float, default=0.25)
    p.add_argument("--rounds", type=int, default=1, help="each round times both modes once")
    p.add_argument("--timeout-s", type=float, default=900)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    if args.endpoint:
        result = run(args.endpoint, args)
    else:
        with local_server(args.model, args.server_args.split()) as endpoint:
            result = run(endpoint, args)
    totals = result["totals"]
    lengths = sorted(r.max_tokens for r in result["requests"])
    print(f"\n{args.requests} requests per pass, max_tokens {lengths[0]}..{lengths[-1]} "
          f"(median {lengths[len(lengths) // 2]}), {args.max_in_flight} in flight, "
          f"{args.rounds} round(s)")
    header = f"{'mode':10s} {'seconds':>9s} {'tokens':>8s} {'tokens/s':>9s}"
    print(header)
    print("-" * len(header))
    for mode, t in totals.items():
        print(f"{mode:10s} {t['seconds']:9.1f} {t['tokens']:8d} {t['tokens'] / t['seconds']:9.1f}")
    batched_s, streamed_s = totals["batched"]["seconds"], totals["streamed"]["seconds"]
    print(json.dumps({
        "batched_s": round(batched_s, 2), "streamed_s": round(streamed_s, 2),
        "speedup": round(batched_s / streamed_s, 3), "rows": args.requests * args.rounds,
        "completion_tokens": totals["streamed"]["tokens"], "max_in_flight": args.max_in_flight,
    }))


if __name__ == "__main__":
    main()
