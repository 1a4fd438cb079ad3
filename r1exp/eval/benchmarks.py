"""Benchmarks: the `benchmark.<name>` specs of the config turned into Problems with prompts.

A spec is a dataset config (conf/benchmark/<name>.yaml pulls conf/dataset/<name>.yaml) plus
`split`, `task` (math | choice), `choice_columns` and `id_column`; `eval.benchmarks` and
`train.benchmarks` choose specs by name. Loading goes through r1exp.data.loading, so a hub id,
its offline fallback and a local file all work the same way.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

from r1exp.errors import ConfigError
from r1exp.inference import Problem, load_problems

TASKS = ("math", "choice")
CHOICE_LETTERS = string.ascii_uppercase


def num_samples(cfg, name: str) -> int:
    """Samples per problem of benchmark `name`: one when greedy (eval.greedy=true demands
    eval.num_samples=1; per-benchmark counts, as eval=open-r1 sets them, serve sampled runs),
    else its eval.num_samples_by_benchmark entry, else eval.num_samples."""
    if cfg.eval.greedy:
        return 1
    return int(cfg.eval.num_samples_by_benchmark.get(name, cfg.eval.num_samples))


def check_benchmarks(cfg, names, key: str) -> None:
    """Cheap checks of the benchmarks named at config key `key` (no dataset is read)."""
    known = dict(cfg.get("benchmark") or {})
    for name in names:
        if name not in known:
            raise ConfigError(
                f"{key} names unknown benchmark {name!r}; choose from: {', '.join(sorted(known))} "
                "(a new one is a file conf/benchmark/<name>.yaml added to the `benchmark` list)"
            )
        spec = known[name]
        if spec.task not in TASKS:
            raise ConfigError(f"benchmark.{name}.task={spec.task!r}; "
                              f"choose one of: {', '.join(TASKS)}")
        if spec.task == "choice" and not spec.choice_columns:
            raise ConfigError(f"benchmark.{name}.task=choice needs benchmark.{name}.choice_columns "
                              "(the correct option's column first)")
        if spec.source == "local" and not Path(str(spec.path)).exists():
            raise ConfigError(f"benchmark.{name}.path={spec.path!r} does not exist "
                              f"(benchmark.{name}.source=local reads a local file)")


def benchmark_problems(cfg, name: str) -> list[Problem]:
    """The first `eval.limit` problems of benchmark `name`, with their prompts and golds."""
    spec = cfg.benchmark[name]
    needed = [spec.prompt_column, *(spec.choice_columns or [spec.answer_column])]
    if spec.task == "math" and spec.lighteval.gold_column:
        needed.append(spec.lighteval.gold_column)
    return load_problems(spec, spec.split, seed=cfg.seed, limit=cfg.eval.limit, columns=needed,
                         name=f"benchmark.{name}", ids=lambda rows: _problem_ids(rows, spec),
                         make=lambda problem_id, row: _problem(cfg, name, spec, problem_id, row))


def _problem_ids(rows, spec) -> list[str]:
    if spec.id_column and spec.id_column in rows.column_names:
        ids = [str(v) for v in rows[spec.id_column]]
        if len(set(ids)) == len(ids):
            return ids
    return [str(i) for i in range(len(rows))]


def _problem(cfg, name: str, spec, problem_id: str, row: dict) -> Problem:
    question = str(row[spec.prompt_column]).strip()
    if spec.task == "choice":
        text, gold = choice_prompt(question, [str(row[c]) for c in spec.choice_columns],
                                   cfg.eval.choice_prompt, seed=f"{cfg.seed}:{name}:{problem_id}")
        lighteval_gold = gold
    else:
        text = math_prompt(question, cfg.eval.prompt)
        gold = str(row[spec.answer_column])
        lighteval_gold = str(row[spec.lighteval.gold_column or spec.answer_column])
    messages = []
    if cfg.eval.system_prompt:
        messages.append({"role": "system", "content": cfg.eval.system_prompt})
    messages.append({"role": "user", "content": text})
    return Problem(problem_id, question, tuple(messages), gold, lighteval_gold)


def math_prompt(question: str, prompt: str) -> str:
    """The user message: `prompt` with the question in place of {problem}, or the question with
    `prompt` on the next line ("" leaves the question alone, as a model was trained on it)."""
    if "{problem}" in prompt:
        return prompt.replace("{problem}", question)  # not str.format: LaTeX braces in prompts
    return f"{question}\n{prompt}" if prompt else question


def choice_prompt(question: str, options: list[str], instruction: str, *,
                  seed: str) -> tuple[str, str]:
    """The question with its options in a per-problem shuffled order, and the gold letter.

    `options[0]` is the correct one. The order depends only on `seed` (run seed, benchmark and
    problem id), so every sample, every resume and every backend sees the same letters; a
    global `random` (as lighteval's GPQA task uses) would move the gold between runs.
    """
    order = list(range(len(options)))
    random.Random(seed).shuffle(order)
    lines = [instruction, "", question, ""]
    lines += [f"{CHOICE_LETTERS[i]}) {options[j].strip()}" for i, j in enumerate(order)]
    return "\n".join(lines), CHOICE_LETTERS[order.index(0)]
