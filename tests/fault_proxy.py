"""`python tests/fault_proxy.py --port P --upstream http://127.0.0.1:Q`: a reverse proxy in
front of a real OpenAI-compatible server (`vllm serve`) that fails on purpose, for tests.

It forwards `GET /v1/models` and `POST /v1/chat/completions` to the upstream and injects the
faults of a FaultPlan (tests/fault_plan.py) into chat requests:
- error: HTTP 500 with a JSON error, the upstream never asked;
- malformed: HTTP 200 whose body is the upstream's reply cut in half (not JSON);
- slow: held slow_s before forwarding; a client that gives up is noticed and its request
  dropped, so a timed-out request does not stay in flight.
Test hooks: `POST /_test/faults` (a FaultPlan as JSON; replaces the current one),
`GET /_test/stats` and `POST /_test/reset` (stats and faults back to zero), so one proxy can
play a flaky server for one test and a healthy one for the next. vLLM does the serving.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request)
# at runtime.
import argparse
import asyncio
import contextlib
import time

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from fault_plan import FaultInjector, FaultPlan, ServerStats


def create_app(upstream: str) -> FastAPI:
    stats, faults = ServerStats(), FaultInjector()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # No timeout of its own: the client under test decides when a request took too long.
        async with httpx.AsyncClient(base_url=upstream, timeout=None) as client:
            app.state.upstream = client
            yield

    app = FastAPI(title="r1exp fault proxy", lifespan=lifespan)

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)

    def relay(reply: httpx.Response, content: bytes | None = None) -> Response:
        return Response(reply.content if content is None else content, reply.status_code,
                        media_type=reply.headers.get("content-type"))

    @app.get("/v1/models")
    async def models():
        return relay(await app.state.upstream.get("/v1/models"))

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        stats.enter()
        try:
            return await _chat(request)
        finally:
            stats.leave()

    async def _chat(request: Request):
        # The body first: Request.is_disconnected() below may consume an unread body.
        body = await request.body()
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
        reply = await app.state.upstream.post(
            "/v1/chat/completions", content=body,
            headers={"content-type": request.headers.get("content-type", "application/json")})
        if "malformed" in hits:
            return relay(reply, reply.content[:len(reply.content) // 2])
        if reply.status_code == 200:
            stats.completed += 1
            stats.completion_tokens += reply.json()["usage"]["completion_tokens"]
        return relay(reply)

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
        for key, value in vars(ServerStats()).items():
            if key != "in_flight":  # requests still being served keep counting down
                setattr(stats, key, value)
        faults.set_plan(FaultPlan())
        return stats.as_dict()

    return app


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python tests/fault_proxy.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="the server's root, e.g. http://host:8000")
    args = p.parse_args(argv)
    uvicorn.run(create_app(args.upstream.rstrip("/")), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
