"""Problems: dataset rows turned into chat prompts with their gold answers, for eval and generate.

Both pipelines read a split through r1exp.data.loading (hub id, offline copy, local file),
check its columns, keep the first `limit` rows, and turn each row into a Problem with their
own prompt rules. The one tokenization of a prompt, `prompt_ids`, lives here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from r1exp.data.loading import load_split, require_columns


@dataclass(frozen=True)
class Problem:
    id: int | str  # eval: the benchmark's id column (or row index, as text); generate: row index
    text: str  # the question as the dataset has it
    messages: tuple[dict[str, str], ...]  # the chat prompt (system message first, if any)
    answer: str | None  # the gold: a math answer or a choice letter; None when there is none
    # the gold as lighteval's (open-r1's) task reads it: benchmark.<name>.lighteval.gold_column
    lighteval_gold: str | None = None


def load_problems(source, split: str, *, seed: int, limit: int | None, columns: Sequence[str],
                  name: str, make: Callable[[int | str, dict], Problem],
                  ids: Callable[[object], list] | None = None,
                  hint: str | None = None) -> list[Problem]:
    """The first `limit` rows of `split` of dataset config `source`, each made a Problem by
    `make(id, row)`; ids are row indices unless `ids(rows)` gives others."""
    rows = load_split(source, split, seed=seed)
    require_columns(rows, columns, name, hint=hint)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    problem_ids = ids(rows) if ids is not None else range(len(rows))
    return [make(problem_id, row) for problem_id, row in zip(problem_ids, rows)]


def prompt_ids(tokenizer, messages, use_chat_template: bool = True) -> list[int]:
    """The prompt as the model sees it: its chat template with the assistant turn opened, or
    (no template, or use_chat_template=false) the messages' text with the tokenizer's own
    special tokens."""
    if use_chat_template and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    text = "\n\n".join(m["content"] for m in messages)
    return tokenizer(text)["input_ids"]


def request_prompt_ids(tokenizer, requests, use_chat_template: bool = True) -> list[list[int]]:
    """Each request's prompt ids (its own, or its messages rendered); the samples of one
    problem share a prompt, so each distinct prompt is tokenized once."""
    rendered: dict[tuple, list[int]] = {}
    out = []
    for request in requests:
        if request.prompt_ids is not None:
            out.append(list(request.prompt_ids))
            continue
        text = tuple((m["role"], m["content"]) for m in request.messages)
        if text not in rendered:
            rendered[text] = prompt_ids(tokenizer, request.messages, use_chat_template)
        out.append(rendered[text])
    return out
