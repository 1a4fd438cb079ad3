"""Do r1exp's own eval and the lighteval evaluator agree, sample by sample?

    python -m tests.bench.lighteval_parity --benchmarks math500:100 gsm8k:50 aime24:30 \
        --max-new-tokens 256 [--out DIR] [-- more r1exp overrides]

Runs `r1exp stage=eval` twice on the same model, problems (the first N of each benchmark),
prompt (eval=open-r1), chat template and max_new_tokens, with greedy decoding: once with
eval.evaluator=r1exp inference.engine=transformers (r1exp generates, r1exp's scorer grades)
and once with eval.evaluator=lighteval (lighteval generates, open-r1's lighteval metric
grades). Then joins the two samples.jsonl files and reports, per benchmark, both pass@1 values
and every sample where they differ, sorted into
- generation: the two completions differ (the first differing characters are shown);
- scoring: the same completion, graded differently (both extracted answers are shown).
Prints a table and the differing samples; writes everything to <out>/parity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Each run's name (its dir, its column) and the overrides that pick it.
BACKENDS = {"transformers": ("eval.evaluator=r1exp", "inference.engine=transformers"),
            "lighteval": ("eval.evaluator=lighteval",)}


def eval_command(backend: str, benchmarks: str, limit: int, max_new_tokens: int,
                 run_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "r1exp", "stage=eval", "eval=open-r1", "eval.greedy=true",
            *BACKENDS[backend], f"eval.benchmarks=[{benchmarks}]", f"eval.limit={limit}",
            f"eval.max_new_tokens={max_new_tokens}", f"hydra.run.dir={run_dir}", *extra]


def run_eval(argv: list[str], log_path: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:])} failed (status {done.returncode}); "
                           f"see {log_path}")
    return time.perf_counter() - started


def samples(run_dir: Path, benchmark: str) -> dict[tuple[str, int], dict]:
    """The run's records of its own settings (the last line of a (problem, sample) wins)."""
    path = run_dir / "eval" / benchmark / "samples.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {(r["problem_id"], r["sample"]): r for r in records}


def pass_at_1(run_dir: Path, benchmark: str) -> float:
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    return results["benchmarks"][benchmark]["pass@1"]


def compare(native: dict, lighteval: dict) -> list[dict]:
    """The samples where the two backends differ in text or score, each with its kind."""
    if native.keys() != lighteval.keys():
        raise RuntimeError(f"the runs hold different samples: {sorted(native)[:3]} vs "
                           f"{sorted(lighteval)[:3]}")
    differences = []
    for key in sorted(native):
        ours, theirs = native[key], lighteval[key]
        same_text = ours["completion"] == theirs["completion"]
        if same_text and ours["score"] == theirs["score"]:
            continue
        entry = {"problem_id": key[0], "sample": key[1], "gold": ours["gold"],
                 "native_score": ours["score"], "lighteval_score": theirs["score"],
                 "native_extracted": ours["extracted"],
                 "lighteval_extracted": theirs.get("lighteval_extracted"),
                 "lighteval_gold": theirs.get("lighteval_gold")}
        if same_text:
            entry.update(kind="scoring", completion_tail=ours["completion"][-160:])
        else:
            at = first_difference(ours["completion"], theirs["completion"])
            entry.update(kind="generation", differ_at=at,
                         native_from=ours["completion"][max(at - 40, 0): at + 60],
                         lighteval_from=theirs["completion"][max(at - 40, 0): at + 60])
        differences.append(entry)
    return differences


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def table(rows: list[dict]) -> str:
    lines = [f"{'benchmark':10} {'n':>4} {'native pass@1':>14} {'lighteval pass@1':>17} "
             f"{'differing (generation / scoring)':>33} {'native s':>9} {'lighteval s':>12}"]
    for r in rows:
        kinds = [d["kind"] for d in r["differences"]]
        split = f"{len(kinds)} ({kinds.count('generation')} / {kinds.count('scoring')})"
        seconds = r["seconds"]
        lines.append(f"{r['benchmark']:10} {r['n']:4d} {r['native_pass@1']:14.4f} "
                     f"{r['lighteval_pass@1']:17.4f} {split:>33} "
                     f"{seconds['transformers']:9.0f} {seconds['lighteval']:12.0f}")
    return "\n".join(lines)


def parity(benchmarks: list[str], limit: int, max_new_tokens: int, out: Path,
           extra: list[str], env: dict[str, str]) -> list[dict]:
    """One run per backend over `benchmarks` (the first `limit` problems of each), in
    <out>/<backend>-run; a row per benchmark."""
    out.mkdir(parents=True, exist_ok=True)
    seconds, dirs = {}, {}
    names = ",".join(benchmarks)
    for backend in BACKENDS:
        dirs[backend] = out / f"{backend}-run"
        argv = eval_command(backend, names, limit, max_new_tokens, dirs[backend], extra)
        seconds[backend] = run_eval(argv, out / f"{backend}.log", env)
    rows = []
    for benchmark in benchmarks:
        native = samples(dirs["transformers"], benchmark)
        lighteval = samples(dirs["lighteval"], benchmark)
        rows.append({"benchmark": benchmark, "n": len(native), "seconds": seconds,
                     "native_pass@1": pass_at_1(dirs["transformers"], benchmark),
                     "lighteval_pass@1": pass_at_1(dirs["lighteval"], benchmark),
                     "differences": compare(native, lighteval)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", nargs="+", default=["gsm8k:10"],
                        help="name:N, the first N problems of each")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("multirun_outputs/lighteval-parity"))
    parser.add_argument("overrides", nargs="*", help="more r1exp overrides (after --)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    extra = ["logger=none", *args.overrides]
    by_limit: dict[int, list[str]] = {}
    for item in args.benchmarks:
        benchmark, _, limit = item.partition(":")
        by_limit.setdefault(int(limit or 10), []).append(benchmark)
    rows = []
    for limit, benchmarks in by_limit.items():
        rows += parity(benchmarks, limit, args.max_new_tokens, out / f"first-{limit}", extra,
                       env)
    print(table(rows))
    for row in rows:
        for d in row["differences"]:
            print(json.dumps({"benchmark": row["benchmark"], **d}, ensure_ascii=False))
    settings = {"max_new_tokens": args.max_new_tokens, "overrides": extra, "greedy": True,
                "eval": "open-r1"}
    (out / "parity.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
