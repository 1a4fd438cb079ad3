"""Scoring samples against the gold answer, and which samples the dataset keeps.

Scoring uses r1exp.rewards' one math scorer (grade_math is score_math over a batch, with the
extracted answer and a status), so a kept "correct" sample is correct by the same rule that
rewards GRPO and scores evaluation. Filtering is a pure function of the committed samples,
applied when the dataset is written: re-running a finished generation with another
`generate.keep` re-filters without generating anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from r1exp.rewards import grade_math

CORRECT_AT = 0.5  # scores are 1.0 / 0.0; anything from here up counts as correct


@dataclass(frozen=True)
class Verdict:
    """What filtering needs to know of one committed sample."""
    key: tuple[int, int]
    ok: bool                 # has a generation (not an error row)
    correct: bool | None     # None: not scored (no answer column, or an error row)


def score_rows(rows: list[dict], timeout_s: float) -> None:
    """Fill score / correct / extracted / score_status in place, in one scorer call."""
    scorable = [r for r in rows if r.get("generation") is not None and r.get("answer") is not None]
    for row in rows:
        row.update(score=None, correct=None, extracted=None, score_status=None)
    if not scorable:
        return
    grades = grade_math([r["generation"] for r in scorable], [r["answer"] for r in scorable],
                        timeout_s=timeout_s)
    for row, grade in zip(scorable, grades):
        row.update(score=grade.score, correct=grade.score >= CORRECT_AT,
                   extracted=grade.extracted, score_status=grade.status)


def verdict(row: dict) -> Verdict:
    return Verdict((int(row["problem_id"]), int(row["sample_idx"])),
                   row.get("error") is None and row.get("generation") is not None,
                   row.get("correct"))


def _all(verdicts: Iterable[Verdict]) -> set[tuple[int, int]]:
    return {v.key for v in verdicts if v.ok}


def _correct(verdicts: Iterable[Verdict]) -> set[tuple[int, int]]:
    return {v.key for v in verdicts if v.ok and v.correct}


def _first_correct(verdicts: Iterable[Verdict]) -> set[tuple[int, int]]:
    # "First" is the lowest sample index, not the first to arrive: a stream finishes samples
    # in any order, and the dataset must not depend on it (nor on where a run was resumed).
    first: dict[int, int] = {}
    for v in verdicts:
        if v.ok and v.correct:
            problem, sample = v.key
            first[problem] = min(sample, first.get(problem, sample))
    return set(first.items())


KEEP_MODES: dict[str, Callable[[Iterable[Verdict]], set[tuple[int, int]]]] = {
    "all": _all,                      # every sample with a generation
    "correct": _correct,              # samples the scorer marks correct
    "first_correct": _first_correct,  # per problem, the correct sample of lowest index
}
NEEDS_ANSWERS = ("correct", "first_correct")


def kept_keys(verdicts: Iterable[Verdict], mode: str) -> set[tuple[int, int]]:
    return KEEP_MODES[mode](verdicts)
