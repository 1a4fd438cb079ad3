"""`python -m r1exp.serve.openai_server --port N`: an OpenAI-compatible chat server over a
transformers model (default: the embedded SmolLM2-135M), for tests and benchmarks.

Endpoints, as `vllm serve` has them (the subset r1exp uses):
- `GET /v1/models`
- `POST /v1/chat/completions` with model, messages, max_tokens (or max_completion_tokens),
  temperature, top_p, and vLLM's `ignore_eos`; `n` must be 1 and `stream` false; `seed` is
  accepted and ignored (the batch loop has one sampling seed).
With `--test-hooks`, also `POST /_test/faults` (a FaultPlan as JSON; replaces the current
one), `GET /_test/stats` and `POST /_test/reset` (stats and faults back to zero), so one
server started by a test fixture can play a flaky server for one test and a healthy one for
the next. Faults also come from the command line (`--error-rate 0.1 ...`).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request)
# at runtime, and they are imported inside create_app.
import argparse
import asyncio
import logging
import os
import time
import uuid
from pathlib import Path

from r1exp.serve.faults import FaultInjector, FaultPlan, ServerStats

log = logging.getLogger("r1exp.serve")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
DEFAULT_CACHE_DIR = os.environ.get("R1EXP_CACHE_DIR") or str(Path.home() / ".cache" / "r1exp")
MALFORMED_BODY = '{"id": "chatcmpl-broken", "choices": [{"message": {"content": "trunc'


def create_app(backend, served_name: str, faults: FaultInjector, *, test_hooks: bool):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    app = FastAPI(title="r1exp test server")
    stats = ServerStats()
    app.state.stats, app.state.faults = stats, faults

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [
            {"id": served_name, "object": "model", "created": 0, "owned_by": "r1exp"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        stats.enter()
        try:
            return await _chat(request)
        finally:
            stats.leave()

    async def _chat(request: Request):
        # The body first: Request.is_disconnected() below may consume an unread body.
        try:
            body = await request.json()
        except ValueError:
            return error(400, "request body is not JSON", "BadRequestError")
        hits = faults.draw()
        for kind in hits:
            stats.injected[kind] += 1
        if "slow" in hits:
            deadline = time.monotonic() + faults.plan.slow_s
            while (left := deadline - time.monotonic()) > 0:
                if await request.is_disconnected():  # the client timed out: stop holding it
                    return Response(status_code=499)
                await asyncio.sleep(min(0.1, left))
        if "error" in hits:
            return error(500, "injected server error", "InternalServerError")
        problem = _unsupported(body, served_name)
        if problem:
            return error(404 if problem.startswith("model") else 400, problem,
                         "NotFoundError" if problem.startswith("model") else "BadRequestError")
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
        prompt_ids = backend.prompt_ids(body["messages"])
        reply = await backend.complete(
            prompt_ids, max_tokens=max_tokens, temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)), ignore_eos=bool(body.get("ignore_eos", False)),
        )
        if "malformed" in hits:
            return Response(MALFORMED_BODY, media_type="application/json")
        stats.completed += 1
        stats.completion_tokens += len(reply.token_ids)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served_name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": backend.decode(reply.token_ids)},
                "finish_reason": reply.finish_reason,
            }],
            "usage": {"prompt_tokens": reply.prompt_tokens,
                      "completion_tokens": len(reply.token_ids),
                      "total_tokens": reply.prompt_tokens + len(reply.token_ids)},
        }

    if test_hooks:
        @app.post("/_test/faults")
        async def set_faults(request: Request):
            try:
                plan = FaultPlan(**(await request.json()))
            except (TypeError, ValueError) as err:
                return error(400, str(err), "BadRequestError")
            faults.set_plan(plan)
            return {"faults": vars(plan)}

        @app.get("/_test/stats")
        async def get_stats():
            return stats.as_dict()

        @app.post("/_test/reset")
        async def reset():
            fresh = ServerStats()
            for key, value in vars(fresh).items():
                if key != "in_flight":  # requests still being served keep counting down
                    setattr(stats, key, value)
            faults.set_plan(FaultPlan())
            return stats.as_dict()

    return app


def _unsupported(body, served_name: str) -> str | None:
    if (not isinstance(body, dict) or not isinstance(body.get("messages"), list)
            or not body["messages"]):
        return "`messages` must be a non-empty list of {role, content}"
    if body.get("model") not in (None, served_name):
        return f"model {body.get('model')!r} does not exist; this server serves {served_name!r}"
    if int(body.get("n", 1)) != 1:
        return "only n=1 is supported (send one request per sample)"
    if body.get("stream"):
        return "stream=true is not supported"
    return None


def load_backend(model: str, *, cache_dir: str, device: str, dtype: str, max_batch: int,
                 kv_tokens: int, seed: int, dummy_weights: bool = False):
    """`model`: a conf/model/<name>.yaml option (e.g. smollm2-135m), a local dir or a hub id."""
    from types import SimpleNamespace

    from r1exp.models.loading import load_model, load_tokenizer, resolve_model_dir
    from r1exp.serve.backend import ContinuousBatchingBackend

    option = CONF_DIR / "model" / f"{model}.yaml"
    if option.is_file():
        from omegaconf import OmegaConf

        model_cfg = OmegaConf.load(option)
    else:
        model_cfg = SimpleNamespace(name=model, path=model, revision=None, gguf=None,
                                    trust_remote_code=False, chat_template=None)
    hardware = SimpleNamespace(accelerator="cuda" if device.startswith("cuda") else "cpu",
                               dtype=dtype, attn_implementation="sdpa",
                               gradient_checkpointing=False)
    tokenizer = load_tokenizer(model_cfg, cache_dir)
    if dummy_weights:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from r1exp.models.loading import TORCH_DTYPES

        config = AutoConfig.from_pretrained(resolve_model_dir(model_cfg, cache_dir))
        torch.manual_seed(seed)
        loaded = AutoModelForCausalLM.from_config(
            config, dtype=getattr(torch, TORCH_DTYPES[dtype]), attn_implementation="sdpa")
    else:
        loaded = load_model(model_cfg, hardware, cache_dir, training=False)
    return ContinuousBatchingBackend(loaded.to(device).eval(), tokenizer, max_batch=max_batch,
                                     kv_tokens=kv_tokens, seed=seed)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m r1exp.serve.openai_server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="smollm2-135m",
                   help="conf/model option, local dir or hub id (default: %(default)s)")
    p.add_argument("--served-name", default=None, help="name in /v1/models (default: --model)")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--max-batch", type=int, default=16, help="requests decoded together")
    p.add_argument("--kv-tokens", type=int, default=16384, help="paged KV cache size in tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads on CPU (default 1: on a shared CPU, more threads "
                        "stall on each other and run several times slower)")
    p.add_argument("--load-format", default="auto", choices=("auto", "dummy"),
                   help="dummy: the model's architecture with random weights, as vLLM's "
                        "--load-format dummy (throughput benchmarks with ignore_eos)")
    p.add_argument("--test-hooks", action="store_true", help="serve /_test/{faults,stats,reset}")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--malformed-rate", type=float, default=0.0)
    p.add_argument("--slow-rate", type=float, default=0.0)
    p.add_argument("--slow-s", type=float, default=0.0)
    return p.parse_args(argv)


def main(argv=None) -> None:
    import uvicorn

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s",
                        datefmt="%H:%M:%S")
    faults = FaultInjector(FaultPlan(args.error_rate, args.malformed_rate, args.slow_rate,
                                     args.slow_s))
    if args.device == "cpu":
        import torch

        torch.set_num_threads(args.threads)
    # The model loads before the port opens: a client that can connect can be served.
    backend = load_backend(args.model, cache_dir=args.cache_dir, device=args.device,
                           dtype=args.dtype, max_batch=args.max_batch, kv_tokens=args.kv_tokens,
                           seed=args.seed, dummy_weights=args.load_format == "dummy")
    app = create_app(backend, args.served_name or args.model, faults, test_hooks=args.test_hooks)
    log.info("serving %s on http://%s:%d/v1", args.served_name or args.model, args.host, args.port)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        backend.close()


if __name__ == "__main__":
    main()
