"""Turn dataset rows into chat conversations with one reasoning-trace format.

Distillation data comes in several shapes: `messages` [{role, content}], ShareGPT-style
`conversations` [{from, value}] (Bespoke-Stratos, with an optional `system` column), or plain
problem/solution columns (GSM8K, MATH). Reasoning inside assistant turns is marked up as
Bespoke-Stratos `<|begin_of_thought|>…<|begin_of_solution|>…` or R1 `<think>…</think>`. Every
row becomes the same user/assistant conversation and every trace the same markup
(`sft.trace_format`), so mixtures of sources teach the model one format.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from collections.abc import Callable

from r1exp.errors import ConfigError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Reasoning traces
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    thought: str | None  # None: the text carries no marked-up reasoning
    answer: str


_STRATOS = re.compile(r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>(.*)", re.DOTALL)
_STRATOS_SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)(?:<\|end_of_solution\|>|$)",
                               re.DOTALL)
# R1 distills often start after a template-prefilled `<think>`, so the opening tag is optional.
_THINK = re.compile(r"^\s*(?:<think>)?(.*?)</think>(.*)$", re.DOTALL)


def parse_trace(text: str) -> Trace:
    """Split an assistant message into reasoning and answer, whatever its markup."""
    stratos = _STRATOS.search(text)
    if stratos:
        rest = stratos.group(2)
        solution = _STRATOS_SOLUTION.search(rest)
        return Trace(stratos.group(1).strip(), (solution.group(1) if solution else rest).strip())
    think = _THINK.match(text)
    if think:
        return Trace(think.group(1).strip(), think.group(2).strip())
    return Trace(None, text.strip())


def _render_think(trace: Trace) -> str:
    if trace.thought is None:
        return trace.answer
    return f"<think>\n{trace.thought}\n</think>\n\n{trace.answer}"


def _render_stratos(trace: Trace) -> str:
    if trace.thought is None:
        return trace.answer
    return (f"<|begin_of_thought|>\n\n{trace.thought}\n\n<|end_of_thought|>\n\n"
            f"<|begin_of_solution|>\n\n{trace.answer}\n\n<|end_of_solution|>")


def _render_answer(trace: Trace) -> str:
    return trace.answer


# sft.trace_format -> renderer; `keep` leaves assistant text exactly as the data has it.
TRACE_FORMATS: dict[str, Callable[[Trace], str] | None] = {
    "think": _render_think,
    "stratos": _render_stratos,
    "answer": _render_answer,
    "keep": None,
}
# Markup a system prompt may describe; one that describes markup we rewrite away is dropped.
_MARKERS = {"think": ("<think>", "</think>"),
            "stratos": ("<|begin_of_thought|>", "<|begin_of_solution|>")}


def check_trace_format(name: str) -> None:
    if name not in TRACE_FORMATS:
        raise ConfigError(f"sft.trace_format={name!r} is not allowed; choose one of: "
                          f"{', '.join(TRACE_FORMATS)}")


def normalise_trace(text: str, trace_format: str) -> str:
    render = TRACE_FORMATS[trace_format]
    return text if render is None else render(parse_trace(text))


def _describes_other_markup(system_text: str, trace_format: str) -> bool:
    if trace_format == "keep":
        return False
    return any(marker in system_text for fmt, markers in _MARKERS.items() if fmt != trace_format
               for marker in markers)

# ---------------------------------------------------------------------------------------------
# Rows -> conversations
# ---------------------------------------------------------------------------------------------


ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "model": "assistant", "system": "system"}
CONVERSATION_COLUMNS = ("messages", "conversations")


@dataclass(frozen=True)
class RowLayout:
    """Where a dataset keeps its conversation: one column of turns, or prompt + completion."""
    conversation: str | None = None
    prompt: str | None = None
    completion: str | None = None
    system: str | None = None  # a per-row system prompt column (Bespoke-Stratos has one)


def detect_layout(column_names, dataset_cfg, completion_column: str | None) -> RowLayout:
    """The layout of a dataset, or a ConfigError naming the column(s) the sft stage misses."""
    columns = set(column_names)
    system = "system" if "system" in columns else None
    wanted = [dataset_cfg.messages_column, *CONVERSATION_COLUMNS]
    for name in wanted:
        if name and name in columns:
            return RowLayout(conversation=name, system=system)
    prompt = dataset_cfg.prompt_column
    if prompt in columns and completion_column in columns:
        return RowLayout(prompt=prompt, completion=completion_column, system=system)
    missing = [c for c in (prompt, completion_column) if c and c not in columns] or [prompt]
    conversation = dataset_cfg.messages_column or "messages"
    raise ConfigError(
        f"dataset '{dataset_cfg.name}' lacks column(s) {missing} and has no conversation column "
        f"({conversation!r} or {'/'.join(CONVERSATION_COLUMNS)}); it has {sorted(columns)}. The "
        "sft stage needs either a conversation column (dataset.messages_column) or a prompt "
        "column (dataset.prompt_column) plus a target column (sft.completion_column)"
    )


def conversation(row: dict, layout: RowLayout, *, trace_format: str,
                 system_prompt: str | None) -> list[dict[str, str]]:
    """One row as [{role, content}], assistant traces in `trace_format`, system turn resolved."""
    if layout.conversation:
        turns = [_turn(t) for t in row[layout.conversation] or []]
    else:
        turns = [{"role": "user", "content": str(row[layout.prompt])},
                 {"role": "assistant", "content": str(row[layout.completion])}]
    if layout.system and row.get(layout.system) and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": str(row[layout.system])})
    if system_prompt:
        turns = [{"role": "system", "content": system_prompt}] + [
            t for t in turns if t["role"] != "system"]
    else:
        turns = [t for t in turns if not (t["role"] == "system"
                                          and _describes_other_markup(t["content"], trace_format))]
    return [{"role": t["role"],
             "content": normalise_trace(t["content"], trace_format)
             if t["role"] == "assistant" else t["content"]} for t in turns]


def _turn(turn) -> dict[str, str]:
    role = turn.get("role") or turn.get("from")
    content = turn.get("content") if "content" in turn else turn.get("value")
    if role not in ROLES:
        raise ConfigError(f"a conversation turn has role {role!r}; known roles: {', '.join(ROLES)}")
    return {"role": ROLES[role], "content": "" if content is None else str(content)}


def to_sft_examples(ds, dataset_cfg, sft_cfg):
    """A dataset of TRL conversational examples: `prompt`/`completion` when the loss is on the
    final assistant turn only (sft.loss_on=completion), else `messages`."""
    check_trace_format(sft_cfg.trace_format)
    layout = detect_layout(ds.column_names, dataset_cfg, sft_cfg.completion_column)
    split_prompt = sft_cfg.loss_on == "completion"

    def convert(row):
        turns = conversation(row, layout, trace_format=sft_cfg.trace_format,
                             system_prompt=sft_cfg.system_prompt)
        usable = bool(turns) and turns[-1]["role"] == "assistant" and turns[-1]["content"].strip()
        if not usable:  # nothing to learn from; dropped below
            turns = []
        if split_prompt:
            return {"prompt": turns[:-1], "completion": turns[-1:]}
        return {"messages": turns}

    converted = ds.map(convert, remove_columns=ds.column_names,
                       desc=f"formatting {dataset_cfg.name} as conversations")
    key = "completion" if split_prompt else "messages"
    kept = converted.filter(lambda row: len(row[key]) > 0)
    if len(kept) < len(converted):
        log.warning("dropped %d of %d rows of %s that end without an assistant reply",
                    len(converted) - len(kept), len(converted), dataset_cfg.name)
    if len(kept) == 0:
        raise ConfigError(f"dataset '{dataset_cfg.name}' has no row ending in an assistant reply")
    return kept

# ---------------------------------------------------------------------------------------------
# Chat template and end-of-turn token
# ---------------------------------------------------------------------------------------------


CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_SENTINEL = "R1EXP-END-OF-TURN-PROBE"


def ensure_chat_template(tokenizer) -> list[str]:
    """Give a template-less tokenizer ChatML; return the special tokens that had to be added
    (the model's embeddings must then be resized)."""
    if tokenizer.chat_template:
        return []
    from transformers import AddedToken

    missing = [t for t in CHATML_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing],
                             special_tokens=True)
    tokenizer.chat_template = CHATML_TEMPLATE
    log.info("tokenizer has no chat template; using ChatML (added tokens: %s)", missing or "none")
    return missing


def end_of_turn_token(tokenizer) -> str:
    """The token the chat template closes an assistant turn with (e.g. `<|im_end|>`).

    Generation must stop there, or a fine-tuned base model whose tokenizer EOS differs never
    stops (open-r1#604/#663). Falls back to the tokenizer's EOS when the template adds none.
    """
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}],
        tokenize=False,
    )
    tail = rendered.split(_SENTINEL, 1)[-1]
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    for token_id in tokenizer(tail, add_special_tokens=False)["input_ids"]:
        if token_id in special:
            return tokenizer.convert_ids_to_tokens(token_id)
    return tokenizer.eos_token
