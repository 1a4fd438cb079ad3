"""The one math scorer: rewards, evaluation and generation filtering all grade through here.

Grading a completion against a gold answer:
1. Only the text after the last `</think>` counts (R1 output format).
2. The final answer is the last `\\boxed{}` (or GSM8K's `#### N`); without one, math-verify
   looks for an anchored answer in the tail of the text ("the answer is $\\frac12$"), and
   failing that the last plain number counts. Never an unevaluated expression, boxed or
   anchored: restating "9 + 17" from the question must not score as the answer 26.
3. Cases that need no math are decided inline: identical answers up to spelling (`\\dfrac` vs
   `\\frac`, spaces, `\\left`), integers and fractions of integers compared exactly (`025` ==
   `25`, `1,450,000` == `1450000`, `\\frac{6}{8}` == `3/4`), and multiple-choice letters (gold
   `A`-`D`). These are string operations and cannot hang. Also decided inline: an answer (or
   gold) whose value is too big to evaluate (`9^{9^{9^{9}}}`, `1000000!`; magnitude.py) scores
   0.0 unless it is spelled like the gold, where math-verify would spend its whole limit.
4. Everything else goes to math-verify in a worker process with a hard per-item time limit
   (pool.py). A timeout or error scores 0.0 and is counted (health.py).
A gold answer that math-verify cannot turn into a mathematical object is reported as
status "gold_unparsed" (and by `score_math` as GoldParseError), never silently scored.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from r1exp.rewards import answers, health, magnitude, math_backend
from r1exp.rewards.pool import TimedPool

# For callers outside the reward registry (eval, generate); rewards take theirs from YAML.
DEFAULT_TIMEOUT_S = 5.0
# Without a marked final answer, math-verify searches only this much of the end of the text:
# the answer is at the end, and regex work on a megabyte of rambling is wasted time.
TEXT_TAIL_CHARS = 4096
# Recent worker results, so that accuracy, cosine and length scoring one batch pay once.
CACHE_SIZE = 4096
# Math scoring is light; more workers than this only cost memory (~150 MB each).
MAX_WORKERS = 16

OK, TIMEOUT, ERROR, GOLD_UNPARSED = "ok", "timeout", "error", "gold_unparsed"


@dataclass(frozen=True)
class MathScore:
    score: float  # 1.0 correct, 0.0 otherwise (also for timeout, error, unparseable gold)
    extracted: str | None  # the completion's final answer as found, None when there is none
    status: str  # "ok" | "timeout" | "error" | "gold_unparsed"
    seconds: float = 0.0  # time math-verify spent on this item (0.0 when decided inline)

    @property
    def gold_parsed(self) -> bool:
        return self.status != GOLD_UNPARSED


class GoldParseError(ValueError):
    """The gold answer cannot be parsed, so no completion can be scored against it."""


def score_math(completion: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """1.0 if `completion`'s final answer equals `gold` mathematically, else 0.0."""
    result = grade_math([completion], [gold], timeout_s=timeout_s)[0]
    if result.status == GOLD_UNPARSED:
        raise GoldParseError(f"gold answer {gold!r} cannot be parsed as math")
    return result.score


def grade_math(
    completions: Sequence, golds: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[MathScore]:
    """Grade each completion (a string or chat messages) against its gold answer.

    Never raises for a bad item. Each item that needs math-verify gets `timeout_s` of CPU time,
    and at most pool.WALL_LIMIT_FACTOR times that in wall time on a starved machine (plus worker
    start-up on first use).
    """
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    prepared = [_prepare(answers.completion_text(c), g) for c, g in zip(completions, golds)]
    tasks = {item for item in prepared if isinstance(item, tuple)}
    graded = _run_tasks(tasks, timeout_s)
    return [graded[item] if isinstance(item, tuple) else item for item in prepared]


def _prepare(text: str, gold) -> MathScore | tuple[str, str, str]:
    """A MathScore when the answer is decided without math-verify, else a worker task."""
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):  # a numeric column
        gold = str(gold)
    gold = answers.gold_answer(gold) if isinstance(gold, str) else ""
    if not gold:
        return MathScore(0.0, None, GOLD_UNPARSED)
    region = answers.answer_region(text)
    candidate = answers.final_answer(region)
    tail = region[-TEXT_TAIL_CHARS:]
    letter = answers.gold_choice(gold)
    if letter is not None:
        if candidate is not None:
            found = answers.predicted_choice(candidate)
        else:
            found = answers.choice_in_text(tail)
        return MathScore(float(found == letter), found, OK)
    if candidate is None:
        if not tail.strip():
            return MathScore(0.0, None, OK)
        if _too_big(tail, gold):  # math-verify's answer could be any value in the text
            return MathScore(0.0, None, OK)
        return (math_backend.TEXT, tail, answers.without_thousands_separators(gold))
    if answers.exact_form(candidate) == answers.exact_form(gold):
        return MathScore(1.0, candidate, OK)
    if answers.unevaluated_arithmetic(candidate):  # "\boxed{16+12}": the sum is left undone
        return MathScore(0.0, candidate, OK)
    predicted_value, gold_value = answers.exact_rational(candidate), answers.exact_rational(gold)
    if predicted_value is not None and gold_value is not None:
        return MathScore(float(predicted_value == gold_value), candidate, OK)
    predicted_number = answers.number_value(candidate)
    if predicted_number is not None and predicted_number == answers.number_value(gold):
        return MathScore(1.0, candidate, OK)
    if _too_big(candidate, gold):  # and not spelled like the gold (checked above)
        return MathScore(0.0, candidate, OK)
    return (
        math_backend.BOXED,
        answers.without_thousands_separators(candidate),
        answers.without_thousands_separators(gold),
    )


def _too_big(answer: str, gold: str) -> bool:
    """Whether math-verify could spend its whole time limit just evaluating one side
    (`9^{9^{9^{9}}}`, `1000000!`): such an item is decided inline, and counted."""
    if magnitude.too_big_to_evaluate(answer) or magnitude.too_big_to_evaluate(gold):
        health.count("math_score/too_big_total")
        return True
    return False


def _run_tasks(tasks: set[tuple], timeout_s: float) -> dict[tuple, MathScore]:
    graded = {task: hit for task in tasks if (hit := _cache.get(task)) is not None}
    todo = [task for task in tasks if task not in graded]
    if not todo:
        return graded
    outcomes = _scoring_pool().map(todo, timeout_s)
    health.count("math_score/items_total", len(todo))
    for task, outcome in zip(todo, outcomes):
        graded[task] = result = _to_score(task, outcome, timeout_s)
        # A timeout says as much about the limit and the machine's load as about the answer:
        # a later call with more time, or on a quieter machine, must try again.
        if result.status != TIMEOUT:
            _cache.put(task, result)
    return graded


def _to_score(task: tuple[str, str, str], outcome, timeout_s: float) -> MathScore:
    kind, payload, gold = task
    if outcome.status == "ok":
        score, extracted, gold_parsed = outcome.value
        if kind == math_backend.BOXED:
            extracted = payload  # the model's own spelling, not math-verify's normalisation
        if gold_parsed:
            return MathScore(score, extracted, OK, outcome.seconds)
        health.count("math_score/gold_unparsed_total")
        health.warn("gold_unparsed", f"gold answer {gold[:200]!r} cannot be parsed; not scored")
        return MathScore(0.0, extracted, GOLD_UNPARSED, outcome.seconds)
    status = TIMEOUT if outcome.status == "timeout" else ERROR
    health.count(f"math_score/{status}s_total")
    what = f"took over {timeout_s:g} s" if status == TIMEOUT else f"failed ({outcome.value})"
    health.warn(status, f"math scoring {what}, scored 0.0: answer {payload[:200]!r} gold {gold!r}")
    return MathScore(0.0, payload if kind == math_backend.BOXED else None, status, outcome.seconds)


class _LruCache:
    def __init__(self, size: int):
        self._size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._size:
                self._items.popitem(last=False)


_cache = _LruCache(CACHE_SIZE)
_pool: TimedPool | None = None
_pool_lock = threading.Lock()


def _scoring_pool() -> TimedPool:
    """The process-wide pool, started on first use and stopped at interpreter exit."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = TimedPool(
                math_backend.grade,
                math_backend.warm_up,
                workers=worker_count(),
                on_restart=lambda: health.count("math_score/worker_restarts_total"),
            )
            atexit.register(_pool.close)
        return _pool


def worker_count() -> int:
    """CPUs this process may use, shared among the training ranks on this node."""
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    cores = len(os.sched_getaffinity(0))
    return max(1, min(MAX_WORKERS, cores // max(1, ranks_here)))


def start_scoring_workers(wait: bool = True) -> None:
    """Start the workers now (they start on first use otherwise). With wait=False they warm up
    in the background, e.g. while the model loads, so the first reward call does not wait."""
    _scoring_pool().start(wait)
