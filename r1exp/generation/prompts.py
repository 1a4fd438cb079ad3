"""The problems to distil: a dataset config's train split, each rendered as a chat prompt."""

from __future__ import annotations

import string
from dataclasses import dataclass

from r1exp.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    id: int                  # row index in the split (after dataset.shuffle / max_samples)
    problem: str             # the dataset's prompt column
    answer: str | None       # the dataset's answer column, None when it has none
    messages: tuple[dict[str, str], ...]  # the chat prompt sent to the engine


@dataclass(frozen=True)
class Job:
    """One sample to generate: (problem id, sample index) identifies it everywhere."""
    problem_id: int
    sample_idx: int
    messages: tuple[dict[str, str], ...]

    @property
    def key(self) -> tuple[int, int]:
        return (self.problem_id, self.sample_idx)


def template_fields(template: str) -> list[str]:
    """The fields `template` formats; ConfigError if it is not a valid str.format template."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ConfigError(f"generate.prompt_template={template!r} is not a valid format string "
                          f"({err}); write literal braces as {{{{ and }}}}") from None
    bad = [f for f in fields if not f.isidentifier()]
    if bad:
        raise ConfigError(f"generate.prompt_template uses field(s) {bad}; use column names like "
                          "{problem} (literal braces are written {{ and }})")
    return fields


def load_problems(cfg) -> list[Problem]:
    from r1exp.data.loading import load_split, require_columns

    d = cfg.dataset
    rows = load_split(d, d.train_split, seed=cfg.seed)
    fields = [f for f in template_fields(cfg.generate.prompt_template) if f != "problem"]
    require_columns(rows, [d.prompt_column, d.answer_column, *fields], d.name,
                    hint="set dataset.prompt_column / dataset.answer_column, or fix "
                         "generate.prompt_template")
    limit = cfg.generate.limit
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    problems = []
    for index, row in enumerate(rows):
        text = str(row[d.prompt_column])
        prompt = cfg.generate.prompt_template.format_map({**row, "problem": text})
        answer = row[d.answer_column] if d.answer_column else None
        problems.append(Problem(index, text, None if answer is None else str(answer),
                                ({"role": "user", "content": prompt},)))
    return problems


def jobs_for(problems: list[Problem], num_generations: int, done: set[tuple[int, int]],
             rank: int = 0, world_size: int = 1) -> list[Job]:
    """The samples still to generate, of this rank's share of the problems (every
    world_size-th problem), in problem order."""
    return [Job(p.id, s, p.messages) for p in problems if p.id % world_size == rank
            for s in range(num_generations) if (p.id, s) not in done]
