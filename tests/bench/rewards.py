"""Benchmark: r1exp's math scorer against open-r1's accuracy reward, same items, one run.

    python -m tests.bench.rewards [--data-dir ../shared/data] [--timeout-s 5]

Items: every reference solution of MATH-500, GSM8K test and AIME24 scored against its own answer
(must be correct), plus a wrong variant of each: the same solution against another problem's
answer with a different value (must be wrong). Both sides score the same chunks of items in
turn, so that load from other processes on a shared machine falls on both alike. The baseline is
plain math-verify, serial, in this process, with open-r1's accuracy settings (gold parsed with
the default config, wrapped in `$` since open-r1's gold strings carry their delimiters;
prediction parsed with its LatexExtractionConfig; `verify(gold, pred)` with math-verify's own
SIGALRM timeouts). Both sides
first parse the same warm-up answers, so neither pays for a cold LaTeX parser in the timing;
r1exp's worker start-up is reported separately. CPU seconds (r1exp: this process plus its
workers) are reported beside wall time: on a machine shared with other sessions, Linux's autogroup
scheduler gives this session one share however many processes it runs, so there the wall-time
speedup shrinks towards the ratio of CPU work. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path

from r1exp.rewards import DEFAULT_TIMEOUT_S, grade_math, start_scoring_workers
from r1exp.rewards.answers import exact_form
from r1exp.rewards.math_backend import WARM_UP_ANSWERS
from r1exp.rewards.math_score import worker_count
from r1exp.rewards.pool import cpu_seconds

# Items per call to each side: about one GRPO batch of completions.
CHUNK = 128
DATASETS = {"math500": "math500.jsonl", "gsm8k": "gsm8k_test.jsonl", "aime24": "aime24.jsonl"}
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_items(path: Path, seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(solution, own answer) pairs and (solution, another problem's different answer) pairs."""
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    answers = [row["answer"] for row in rows]
    rng = random.Random(seed)
    gold, wrong = [], []
    for row in rows:
        other = rng.choice(answers)
        while exact_form(other) == exact_form(row["answer"]):
            other = rng.choice(answers)
        gold.append((row["solution"], row["answer"]))
        wrong.append((row["solution"], other))
    return gold, wrong


class OpenR1Accuracy:
    """open-r1's accuracy_reward scoring, one item at a time."""

    def __init__(self):
        from latex2sympy2_extended import NormalizationConfig
        from math_verify import LatexExtractionConfig, parse, verify

        self._parse, self._verify = parse, verify
        self._prediction_config = [
            LatexExtractionConfig(
                normalization_config=NormalizationConfig(
                    nits=False,
                    malformed_operators=False,
                    basic_latex=True,
                    boxed="all",
                    units=True,
                ),
                boxed_match_priority=0,
                try_extract_without_anchor=False,
            )
        ]

    def warm_up(self) -> None:
        for answer in WARM_UP_ANSWERS:
            self.score(f"\\boxed{{{answer}}}", answer)

    def score(self, completion: str, gold: str) -> float:
        gold_parsed = self._parse(f"${gold}$", extraction_mode="first_match")
        if not gold_parsed:
            return 0.0
        answer = self._parse(
            completion, extraction_config=self._prediction_config, extraction_mode="first_match"
        )
        try:
            return float(self._verify(gold_parsed, answer))
        except Exception:  # noqa: BLE001 - open-r1 scores any verify failure (None/0) as no reward
            return 0.0


def children_cpu_seconds() -> float:
    """CPU time of this process's live children (the scoring workers), from Linux /proc."""
    pids = [pid for children in Path(f"/proc/{os.getpid()}/task").glob("*/children")
            for pid in children.read_text().split()]
    return sum(cpu_seconds(int(pid)) or 0.0 for pid in pids)


def run(data_dir: Path, timeout_s: float) -> dict:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    baseline = OpenR1Accuracy()
    started = time.perf_counter()
    baseline.warm_up()
    baseline_warm_up_s = time.perf_counter() - started
    started = time.perf_counter()
    start_scoring_workers()
    startup_s = time.perf_counter() - started

    rows = []
    for name, filename in DATASETS.items():
        gold, wrong = load_items(data_dir / filename)
        items = gold + wrong

        base_scores, results, baseline_s, r1exp_s, baseline_cpu, r1exp_cpu = [], [], 0, 0, 0, 0
        # Alternate the two sides over chunks (and which goes first), so that both see the same
        # machine load: on a shared machine the load drifts within seconds.
        for number, start in enumerate(range(0, len(items), CHUNK)):
            chunk = items[start:start + CHUNK]
            for side in ("baseline", "r1exp") if number % 2 == 0 else ("r1exp", "baseline"):
                started, cpu = time.perf_counter(), time.process_time() + children_cpu_seconds()
                if side == "baseline":
                    base_scores += [baseline.score(c, a) for c, a in chunk]
                    baseline_s += time.perf_counter() - started
                    baseline_cpu += time.process_time() + children_cpu_seconds() - cpu
                else:
                    results += grade_math([c for c, _ in chunk], [a for _, a in chunk],
                                          timeout_s=timeout_s)
                    r1exp_s += time.perf_counter() - started
                    r1exp_cpu += time.process_time() + children_cpu_seconds() - cpu

        rows.append({
            "dataset": name,
            "items": len(items),
            "baseline_s": baseline_s,
            "r1exp_s": r1exp_s,
            "baseline_cpu_s": baseline_cpu,
            "r1exp_cpu_s": r1exp_cpu,
            "gold_correct": sum(r.score for r in results[: len(gold)]),
            "gold_total": len(gold),
            "baseline_gold_correct": sum(base_scores[: len(gold)]),
            "false_positives": sum(r.score for r in results[len(gold):]),
            "baseline_false_positives": sum(base_scores[len(gold):]),
            "timeouts": sum(r.status == "timeout" for r in results),
            "max_item_s": max(r.seconds for r in results),
        })
    totals = {key: sum(row[key] for row in rows) for key in rows[0] if key != "dataset"}
    totals["max_item_s"] = max(row["max_item_s"] for row in rows)

    print_table(rows, totals)
    print(f"\nr1exp workers: {worker_count()} (start-up incl. warm-up {startup_s:.2f} s); "
          f"baseline warm-up {baseline_warm_up_s:.2f} s; cpus: {len(os.sched_getaffinity(0))}")
    return {
        "items": totals["items"],
        "baseline_per_s": round(totals["items"] / totals["baseline_s"], 1),
        "r1exp_per_s": round(totals["items"] / totals["r1exp_s"], 1),
        "speedup": round(totals["baseline_s"] / totals["r1exp_s"], 2),
        "gold_correct": int(totals["gold_correct"]),
        "gold_total": totals["gold_total"],
        "false_positives": int(totals["false_positives"]),
        "timeouts": totals["timeouts"],
        "max_item_latency_s": round(totals["max_item_s"], 3),
        "baseline_cpu_s": round(totals["baseline_cpu_s"], 2),
        "r1exp_cpu_s": round(totals["r1exp_cpu_s"], 2),
        "baseline_gold_correct": int(totals["baseline_gold_correct"]),
        "worker_startup_s": round(startup_s, 2),
        "per_dataset_speedup": {r["dataset"]: round(r["baseline_s"] / r["r1exp_s"], 2)
                                for r in rows},
    }


def print_table(rows: list[dict], totals: dict) -> None:
    header = (f"{'dataset':<8} {'items':>6} {'baseline/s':>11} {'r1exp/s':>9} {'speedup':>8} "
              f"{'cpu s (base)':>14} {'gold ok (base)':>15} {'false pos (base)':>17} "
              f"{'timeouts':>9} {'max item s':>11}")
    print(header)
    print("-" * len(header))
    for row in rows + [{"dataset": "total", **totals}]:
        gold = (f"{int(row['gold_correct'])}/{row['gold_total']} "
                f"({int(row['baseline_gold_correct'])})")
        false = f"{int(row['false_positives'])} ({int(row['baseline_false_positives'])})"
        cpu = f"{row['r1exp_cpu_s']:.1f} ({row['baseline_cpu_s']:.1f})"
        print(
            f"{row['dataset']:<8} {row['items']:>6} {row['items'] / row['baseline_s']:>11.1f} "
            f"{row['items'] / row['r1exp_s']:>9.1f} {row['baseline_s'] / row['r1exp_s']:>8.2f} "
            f"{cpu:>14} {gold:>15} {false:>17} {row['timeouts']:>9} {row['max_item_s']:>11.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("R1EXP_DATA_DIR", DEFAULT_DATA_DIR)))
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S)
    args = parser.parse_args()
    print(json.dumps(run(args.data_dir, args.timeout_s)))


if __name__ == "__main__":
    main()
