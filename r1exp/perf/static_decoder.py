"""A decoder-only model's own modules run over a KV cache of fixed shape.

GRPO's rollouts decode a few hundred tokens for a few dozen sequences at a time. There each
decode step is a few hundred small kernels, and a generation loop that issues them from Python
(transformers' generate, and vLLM's engine, whose scheduler, sampler and output processing
run per step) leaves the GPU waiting on the host. With every shape fixed (batch, cache length)
and every step's position kept in device tensors, whole runs of decode steps can be recorded
once as a CUDA graph and replayed (r1exp/perf/graph_generation.py).

This module is only the forward pass: the model's own embedding, norms, projections, rotary
embedding and MLPs, called as modules, around an attention over the fixed cache. The weights
are the training model's tensors, not a copy, so what is sampled always comes from the current
policy. Architectures of the Llama family are supported (`SUPPORTED_MODEL_TYPES`); anything
else keeps transformers' generate.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

# Pre-norm decoders with rotary attention and a gated MLP, laid out as LlamaForCausalLM
# (Qwen3 adds a per-head norm on queries and keys, handled below).
SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")
# Rotary variants whose frequencies depend on the sequence seen so far: not a fixed graph.
LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")


def unsupported_reason(model) -> str | None:
    """Why `model` cannot run on the static decoder, or None when it can."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
    if hasattr(model, "peft_config"):
        return "a PEFT adapter (its layers are not the base model's linears)"
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return "sliding-window attention"
    rope_type = getattr(getattr(model.model, "rotary_emb", None), "rope_type", "default")
    if any(kind in str(rope_type) for kind in LENGTH_DEPENDENT_ROPE):
        return f"rope type {rope_type!r}, whose frequencies depend on the length"
    if any(getattr(p, "ds_id", None) is not None for p in model.parameters()):
        return "DeepSpeed ZeRO-3 (its parameters are gathered anew for every generation)"
    return None


class StaticDecoder:
    """`model`'s forward pass over a KV cache of `batch` sequences x `length` slots."""

    def __init__(self, model, batch: int, length: int):
        self.model = model
        self.layers = list(model.model.layers)
        attention = self.layers[0].self_attn
        self.head_dim = attention.head_dim
        self.scaling = attention.scaling
        self.kv_heads = model.config.num_key_value_heads
        self.query_heads = model.config.num_attention_heads
        self.apply_rotary = sys.modules[type(attention).__module__].apply_rotary_pos_emb
        weight = model.model.embed_tokens.weight
        self.dtype, self.device = weight.dtype, weight.device
        self.batch, self.length = batch, length
        # One tensor per layer, not views of one: torch.compile turns an in-place write into a
        # view of a larger tensor into a copy of all of it (measured: 10 ms per decode step at
        # 256 sequences), and writes into a whole tensor in place.
        shape = (batch, self.kv_heads, length, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=self.dtype, device=self.device)
                     for _ in self.layers]
        self.values = [torch.zeros(shape, dtype=self.dtype, device=self.device)
                       for _ in self.layers]

    def blocked(self) -> float:
        """The additive mask value of a slot a query must not see (finite: no NaN rows)."""
        return torch.finfo(self.dtype).min

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Logits (float32) at the last of `tokens`' positions.

        tokens, positions: (batch, T); slots: (T,) the cache slots the T tokens are written
        to, the same for every sequence; mask: (batch, 1, T, length) additive, 0 where a
        query may attend.
        """
        model, batch, steps = self.model.model, tokens.shape[0], tokens.shape[1]
        hidden = model.embed_tokens(tokens)
        cos, sin = model.rotary_emb(hidden, positions)
        # Grouped-query attention as plain attention: the query heads that share a key/value
        # head become extra query rows of it, so the cache is read once per key/value head.
        groups = self.query_heads // self.kv_heads
        grouped_mask = mask.repeat(1, 1, groups, 1)
        for index, layer in enumerate(self.layers):
            attention = layer.self_attn
            normed = layer.input_layernorm(hidden)
            query = attention.q_proj(normed).view(batch, steps, self.query_heads, self.head_dim)
            key = attention.k_proj(normed).view(batch, steps, self.kv_heads, self.head_dim)
            value = attention.v_proj(normed).view(batch, steps, self.kv_heads, self.head_dim)
            if hasattr(attention, "q_norm"):  # Qwen3
                query, key = attention.q_norm(query), attention.k_norm(key)
            query, key = self.apply_rotary(query.transpose(1, 2), key.transpose(1, 2), cos, sin)
            self.keys[index].index_copy_(2, slots, key)
            self.values[index].index_copy_(2, slots, value.transpose(1, 2))
            grouped = query.reshape(batch, self.kv_heads, groups * steps, self.head_dim)
            attended = F.scaled_dot_product_attention(
                grouped, self.keys[index], self.values[index], attn_mask=grouped_mask,
                scale=self.scaling)
            attended = attended.reshape(batch, self.query_heads, steps, self.head_dim)
            attended = attended.transpose(1, 2).reshape(batch, steps, -1)
            hidden = hidden + attention.o_proj(attended)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        last = model.norm(hidden[:, -1])
        return self.model.lm_head(last).float()
