"""Engine `openai`: an OpenAI-compatible server (`vllm serve`, SGLang) over HTTP, streamed with
at most `inference.openai.max_in_flight` requests outstanding (r1exp.inference.openai_client).

The server applies the chat template; a request that keeps failing comes back as a Result
with `error` set, never as an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

from r1exp.errors import ConfigError
from r1exp.inference.openai_client import (
    ClientSettings,
    chat_body,
    iterate_in_background,
    list_models,
)
from r1exp.inference.protocol import Request, Result, Sampling
from r1exp.inference.registry import register


@register("openai")
class OpenAIEngine:
    def __init__(self, options, sampling: Sampling):
        self.options, self.sampling = options, sampling  # the inference.openai knobs
        self._model: str | None = options.model

    @classmethod
    def from_config(cls, cfg, model_cfg, sampling: Sampling, *,
                    chat_template: bool = True) -> OpenAIEngine:
        if not chat_template:
            raise ConfigError("the openai engine sends chat messages (the server applies the "
                              "template); it cannot send raw prompts (use_chat_template=false)")
        return cls(cfg.inference.openai, sampling)

    def check(self) -> None:
        self.model()  # the endpoint answers and serves the model asked for

    def open(self) -> None:
        self.model()

    def close(self) -> None:
        pass  # the server outlives this run

    def model(self) -> str:
        if self._model is None:
            endpoint = self.options.endpoint
            try:
                served = asyncio.run(list_models(endpoint))
            except Exception as err:  # connection refused, DNS, HTTP error: all say the same
                raise ConfigError(f"inference.openai.endpoint={endpoint!r} does not answer GET "
                                  f"/models ({type(err).__name__}: {err}); is the server up?"
                                  ) from None
            if len(served) != 1:
                raise ConfigError(f"inference.openai.endpoint serves {served or 'no models'}; "
                                  "choose one with inference.openai.model=<name>")
            self._model = served[0]
        return self._model

    def describe(self) -> dict:
        return {"engine": "openai", "endpoint": self.options.endpoint, "model": self.model()}

    def settings(self) -> ClientSettings:
        o = self.options
        return ClientSettings(
            endpoint=o.endpoint, model=self.model(), max_in_flight=int(o.max_in_flight),
            request_timeout_s=float(o.request_timeout_s), max_retries=int(o.max_retries),
            backoff_s=float(o.retry_backoff_s), backoff_max_s=float(o.retry_backoff_max_s),
        )

    def generate(self, requests: Sequence[Request]) -> Iterator[list[Result]]:
        if not requests:
            return
        body = chat_body(self.sampling, self.model())
        yield from iterate_in_background(list(requests), body, self.settings())
