"""Compiled transformers generation that stays compiled over a whole GRPO run.

transformers builds a new StaticCache for every `generate()` call. The compiled decode step
is replayed as CUDA graphs, which read the cache at fixed addresses: a fresh cache means a
re-recording on every call, and after torch's re-record limit (128) the step silently falls
back to eager. Keeping one cache per (batch, length) and zeroing it between calls keeps the
addresses, so the graphs are recorded once per shape.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def reuse_static_cache(model) -> bool:
    """Patch `model` (the PreTrainedModel that generates) to reuse its static KV cache."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    prepare = getattr(base, "_prepare_static_cache", None)
    if prepare is None:  # another transformers layout: keep its behaviour
        log.warning("transformers has no _prepare_static_cache: static caches are not reused")
        return False
    kept: dict[tuple, object] = {}

    def prepare_once(**kwargs):
        # generate() itself sizes the cache to the longest length seen so far
        length = max(kwargs["max_cache_len"], getattr(base, "_previous_max_cache_length", -1))
        key = (kwargs["cache_implementation"], kwargs["batch_size"], length)
        cache = kept.get(key)
        if cache is None:
            kept.clear()  # lengths only grow: an older shape is not asked for again
            cache = kept[key] = prepare(**kwargs)
        else:
            cache.reset()
        return cache

    base._prepare_static_cache = prepare_once
    return True
