"""The problems to distil: a dataset config's train split, each rendered as a chat prompt."""

from __future__ import annotations

import string

from r1exp.errors import ConfigError
from r1exp.inference import Problem, Request, load_problems


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


def dataset_problems(cfg) -> list[Problem]:
    """The first `generate.limit` rows of the dataset's train split; ids are row indices
    (after dataset.shuffle / max_samples)."""
    d, template = cfg.dataset, cfg.generate.prompt_template
    fields = [f for f in template_fields(template) if f != "problem"]

    def make(index: int, row: dict) -> Problem:
        text = str(row[d.prompt_column])
        prompt = template.format_map({**row, "problem": text})
        answer = row[d.answer_column] if d.answer_column else None
        return Problem(index, text, ({"role": "user", "content": prompt},),
                       None if answer is None else str(answer))

    return load_problems(d, d.train_split, seed=cfg.seed, limit=cfg.generate.limit,
                         columns=[d.prompt_column, d.answer_column, *fields], name=d.name,
                         hint="set dataset.prompt_column / dataset.answer_column, or fix "
                              "generate.prompt_template", make=make)


def requests_for(problems: list[Problem], num_generations: int, done: set[tuple[int, int]],
                 rank: int = 0, world_size: int = 1) -> list[Request]:
    """The samples still to generate, of this rank's share of the problems (every
    world_size-th problem), in problem order."""
    return [Request((p.id, s), p.messages) for p in problems if p.id % world_size == rank
            for s in range(num_generations) if (p.id, s) not in done]
