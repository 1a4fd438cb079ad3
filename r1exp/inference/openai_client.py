"""An OpenAI-compatible chat client that streams: at most `max_in_flight` requests outstanding.

Sending fixed batches and waiting for each to finish leaves the server idle while a batch's
slowest sample finishes (open-r1's first lesson). Here `max_in_flight` workers each take the
next request as soon as their previous one is answered, so the server always has
`max_in_flight` requests to batch and results come back in completion order.

Every request ends as a Result, never as an exception: 5xx, 408/429, connection errors,
timeouts and replies that are not the expected JSON are retried with exponential backoff and
jitter (`max_retries` times), then reported with `error` set; other 4xx are not retried.
An API key is read from OPENAI_API_KEY and sent as a bearer token; it is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass

from r1exp.inference.protocol import Request, Result, Sampling

RETRY_STATUS = {408, 409, 425, 429}  # plus every 5xx
API_KEY_ENV = "OPENAI_API_KEY"


@dataclass(frozen=True)
class ClientSettings:
    endpoint: str                # base URL ending in /v1
    model: str
    max_in_flight: int = 32
    request_timeout_s: float = 600.0
    max_retries: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0


Body = Callable[[Request], dict]  # a request's chat completion body


def chat_body(sampling: Sampling, model: str) -> Body:
    """Bodies with `sampling`; each sample gets its own seed (`sample_seed`)."""
    temperature = 0.0 if sampling.greedy else sampling.temperature

    def body(request: Request) -> dict:
        return {"model": model, "messages": list(request.messages),
                "max_tokens": sampling.max_new_tokens, "temperature": temperature,
                "top_p": sampling.top_p, "n": 1, "seed": sample_seed(sampling.seed, request.key)}

    return body


def sample_seed(seed: int, key: tuple) -> int:
    """A per-sample seed that does not depend on order or on where a run was resumed."""
    digest = hashlib.sha256(f"{seed}:{key[0]}:{key[1]}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class MalformedReply(ValueError):
    pass


def parse_reply(payload) -> tuple[str, str | None, int | None, int | None]:
    """(text, finish_reason, prompt_tokens, completion_tokens) of a chat completion body."""
    try:
        choice = payload["choices"][0]
        message = choice["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as err:
        raise MalformedReply(f"no choices[0].message ({type(err).__name__}: {err})") from None
    # Reasoning parsers (vllm serve --reasoning-parser) move the trace out of `content`; put
    # it back in R1's markup, since the trace is what distillation wants.
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if not isinstance(content, str) and not isinstance(reasoning, str):
        raise MalformedReply(f"choices[0].message.content is {type(content).__name__}, not text")
    text = content if isinstance(content, str) else ""
    if isinstance(reasoning, str) and reasoning:
        text = f"<think>\n{reasoning}\n</think>\n\n{text}"
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    return (text, choice.get("finish_reason"), usage.get("prompt_tokens"),
            usage.get("completion_tokens"))


def backoff_delay(retry: int, settings: ClientSettings, retry_after: float | None = None) -> float:
    """Wait before retry number `retry` (1, 2, ...): exponential with "equal jitter" (half
    fixed, half random), so clients that failed together do not retry together; a server's
    Retry-After is honoured up to backoff_max_s."""
    ceiling = min(settings.backoff_max_s, settings.backoff_s * 2 ** (retry - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.backoff_max_s))
    return delay


def _retry_after(headers) -> float | None:
    try:
        return float(headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


async def complete(http, request: Request, body: Body, settings: ClientSettings) -> Result:
    """One request with retries; always returns (an error row after the last try)."""
    import httpx

    error, retry_after = "not sent", None
    attempts = 0
    for attempt in range(settings.max_retries + 1):
        if attempt:
            await asyncio.sleep(backoff_delay(attempt, settings, retry_after))
        attempts, retry_after = attempt + 1, None
        try:
            reply = await asyncio.wait_for(
                http.post("chat/completions", json=body(request)),
                settings.request_timeout_s)
        except asyncio.TimeoutError:
            error = f"timed out after {settings.request_timeout_s:g}s"
            continue
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}"
            continue
        status = reply.status_code
        if status >= 400:
            error = f"HTTP {status}: {reply.text[:300]}"
            if status >= 500 or status in RETRY_STATUS:
                retry_after = _retry_after(reply.headers)
                continue
            break  # the request itself is wrong (e.g. prompt too long): retrying cannot help
        try:
            text, finish, prompt_tokens, completion_tokens = parse_reply(reply.json())
        except (ValueError, MalformedReply) as err:  # not JSON, or not a chat completion
            error = f"malformed reply: {err}"
            continue
        return Result(request.key, text, finish, prompt_tokens, completion_tokens,
                      attempts=attempts)
    return Result(request.key, None, None, None, None, error=error, attempts=attempts)


def http_client(settings: ClientSettings):
    import httpx

    headers = {}
    if os.environ.get(API_KEY_ENV):
        headers["Authorization"] = f"Bearer {os.environ[API_KEY_ENV]}"
    return httpx.AsyncClient(
        base_url=settings.endpoint.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(settings.request_timeout_s,
                              connect=min(30.0, settings.request_timeout_s)),
        limits=httpx.Limits(max_connections=settings.max_in_flight,
                            max_keepalive_connections=settings.max_in_flight),
    )


async def stream_chat(requests: Iterable[Request], body: Body, settings: ClientSettings
                      ) -> AsyncIterator[Result]:
    """Results in completion order, with never more than max_in_flight requests outstanding."""
    source = iter(requests)
    results: asyncio.Queue = asyncio.Queue()
    finished = object()

    async with http_client(settings) as http:
        async def worker():
            # next() runs without an await, so no two workers ever take the same request.
            for request in source:
                await results.put(await complete(http, request, body, settings))

        async def supervise():
            try:
                await asyncio.gather(*(worker() for _ in range(settings.max_in_flight)))
                await results.put(finished)
            except BaseException as err:  # a bug, not a server fault: hand it to the consumer
                await results.put(err)
                raise

        supervisor = asyncio.ensure_future(supervise())
        try:
            while True:
                item = await results.get()
                if item is finished:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)


async def list_models(endpoint: str, timeout_s: float = 30.0) -> list[str]:
    settings = ClientSettings(endpoint=endpoint, model="", max_in_flight=1,
                              request_timeout_s=timeout_s)
    async with http_client(settings) as http:
        reply = await http.get("models")
        reply.raise_for_status()
        return [m["id"] for m in reply.json().get("data", [])]


def iterate_in_background(requests: list[Request], body: Body, settings: ClientSettings
                          ) -> Iterator[list[Result]]:
    """Run `stream_chat` on an event loop in a thread; yield what finished since the last
    step, as lists. The caller's work per result (scoring, writing shards) then never delays
    sending the next request."""
    out: queue.Queue = queue.Queue()
    done = object()
    state: dict = {}

    def run() -> None:
        async def pump():
            async for result in stream_chat(requests, body, settings):
                out.put(result)

        loop = asyncio.new_event_loop()
        state["loop"], state["task"] = loop, loop.create_task(pump())
        try:
            loop.run_until_complete(state["task"])
            out.put(done)
        except BaseException as err:  # noqa: BLE001 - re-raised in the consuming thread
            out.put(err)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="r1exp-openai-stream", daemon=True)
    thread.start()
    try:
        while True:
            batch = [out.get()]
            while not out.empty():
                batch.append(out.get_nowait())
            results = [r for r in batch if isinstance(r, Result)]
            if results:
                yield results
            for item in batch:
                if item is done:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, asyncio.CancelledError):
                        return
                    raise item
    finally:
        if thread.is_alive() and "loop" in state:
            state["loop"].call_soon_threadsafe(state["task"].cancel)
        thread.join(timeout=30)
