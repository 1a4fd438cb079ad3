"""Does r1exp's scorer agree with lighteval's math metric on identical predictions?

    python -m tests.bench.eval_agreement [--samples <run>/eval/gsm8k/samples.jsonl ...]

Predictions: every MATH-500 reference solution (right), the same solution with its boxed answer
swapped for the next problem's answer (wrong), the bare answer in `\\boxed{}` (right), and the
answer in plain text "The final answer is X." (right, unboxed); plus, with --samples, the
model samples of an r1exp eval run. r1exp scores with `r1exp.rewards.grade_math`; lighteval
scores with its own `Metrics.pass_at_k_math` (k=1, n=1) called directly on a Doc and a
ModelResponse, with the gold as lighteval's MATH-500 task writes it ("ANSWER: <solution>").

lighteval pins latex2sympy2_extended 1.0.6, which r1exp's scorer cannot use, so its side runs
in its own interpreter (--lighteval-python, default: the env `python -m r1exp.eval.lighteval_env`
makes). Without one, --fallback scores with math-verify's parse+verify using lighteval's
pass_at_k_math extraction settings, and the table says so.

Prints a table (per prediction kind: items, r1exp correct, lighteval correct, agreement) and a
final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from r1exp.eval.lighteval_env import default_env_dir, python_of

DEFAULT_DATA = os.environ.get("R1EXP_DATA_DIR", str(Path(__file__).resolve().parents[2].parent
                                                      / "shared" / "data"))
# Runs inside lighteval's interpreter: stdin JSONL of {prediction, gold} -> stdout JSON scores.
LIGHTEVAL_SCORER = r"""
import json, sys, logging
logging.disable(logging.WARNING)
from lighteval.metrics.metrics import Metrics
from lighteval.models.model_output import ModelResponse
from lighteval.tasks.requests import Doc
metric = Metrics.pass_at_k_math(sample_params={"k": 1, "n": 1}).sample_level_fn
scores = []
for line in sys.stdin:
    item = json.loads(line)
    doc = Doc(query="", choices=[item["gold"]], gold_index=0)
    response = ModelResponse(text=[item["prediction"]])
    scores.append(float(metric.compute(doc=doc, model_response=response)))
print(json.dumps(scores))
"""


def math500_items(data_dir: Path) -> list[dict]:
    from r1exp.rewards.answers import last_boxed

    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines()]
    items = []
    for i, row in enumerate(rows):
        solution, answer = row["solution"], row["answer"]
        lighteval_gold = f"ANSWER: {solution}"  # lighteval's math_500 task (v2) gold
        other = rows[(i + 1) % len(rows)]["answer"]
        box = f"\\boxed{{{last_boxed(solution)}}}"
        cut = solution.rfind(box)
        wrong = solution
        if cut >= 0 and other != answer:
            wrong = solution[:cut] + f"\\boxed{{{other}}}" + solution[cut + len(box):]
        items += [
            dict(kind="math500 reference solution", prediction=solution, gold=answer,
                 lighteval_gold=lighteval_gold, expected=1.0),
            dict(kind="math500 wrong boxed answer", prediction=wrong, gold=answer,
                 lighteval_gold=lighteval_gold, expected=0.0 if wrong != solution else None),
            dict(kind="math500 bare \\boxed{answer}", prediction=f"\\boxed{{{answer}}}",
                 gold=answer, lighteval_gold=lighteval_gold, expected=1.0),
            dict(kind="math500 unboxed 'final answer is'",
                 prediction=f"The final answer is ${answer}$.", gold=answer,
                 lighteval_gold=lighteval_gold, expected=1.0),
        ]
    return items


def sample_items(paths: list[str]) -> list[dict]:
    items = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            items.append(dict(kind=f"model samples ({Path(path).parent.name})",
                              prediction=record["completion"], gold=record["gold"],
                              lighteval_gold=record["gold"], expected=None))
    return items


def r1exp_scores(items: list[dict]) -> list[float]:
    from r1exp.rewards import grade_math

    return [g.score for g in grade_math([i["prediction"] for i in items],
                                         [i["gold"] for i in items])]


def lighteval_scores(items: list[dict], python: str) -> list[float]:
    payload = "".join(json.dumps({"prediction": i["prediction"], "gold": i["lighteval_gold"]})
                      + "\n" for i in items)
    out = subprocess.run([python, "-c", LIGHTEVAL_SCORER], input=payload, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"lighteval scorer failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def math_verify_scores(items: list[dict]) -> list[float]:
    """math-verify with lighteval's pass_at_k_math settings (Expr + Latex for both sides)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [ExprExtractionConfig(), LatexExtractionConfig()]
    scores = []
    for item in items:
        gold = parse(item["lighteval_gold"], config) or [item["lighteval_gold"]]
        pred = parse(item["prediction"], config)
        scores.append(float(bool(pred) and verify(gold, pred, float_rounding=6)))
    return scores


def table(items, ours, theirs, peer_label: str) -> tuple[str, dict]:
    by_kind = defaultdict(lambda: [0, 0, 0, 0])
    for item, a, b in zip(items, ours, theirs):
        row = by_kind[item["kind"]]
        row[0] += 1
        row[1] += a >= 0.5
        row[2] += b >= 0.5
        row[3] += (a >= 0.5) == (b >= 0.5)
    peer_ok = peer_label + " ok"
    lines = [f"{'predictions':36} {'items':>6} {'r1exp ok':>9} {peer_ok:>16} {'agree':>7}"]
    for kind, (n, a, b, same) in by_kind.items():
        lines.append(f"{kind:36} {n:6d} {a:9d} {b:16d} {same / n:7.2%}")
    total = sum(r[0] for r in by_kind.values())
    agree = sum(r[3] for r in by_kind.values())
    lines.append(f"{'all':36} {total:6d} {'':9} {'':16} {agree / total:7.2%}")
    summary = {kind: {"items": n, "r1exp_correct": a, "peer_correct": b, "agreement": same / n}
               for kind, (n, a, b, same) in by_kind.items()}
    return "\n".join(lines), {"items": total, "agreement": agree / total, "by_kind": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA)
    parser.add_argument("--samples", nargs="*", default=[], help="samples.jsonl of eval runs")
    parser.add_argument("--lighteval-python", default=str(python_of(default_env_dir())))
    parser.add_argument("--fallback", action="store_true",
                        help="no lighteval: use math-verify with lighteval's settings")
    parser.add_argument("--show-disagreements", type=int, default=5)
    args = parser.parse_args(argv)

    items = math500_items(Path(args.data_dir)) + sample_items(args.samples)
    started = time.perf_counter()
    ours = r1exp_scores(items)
    r1exp_s = time.perf_counter() - started
    python = os.path.expanduser(args.lighteval_python)
    started = time.perf_counter()
    if args.fallback or not os.access(python, os.X_OK):
        if not args.fallback:
            print(f"no lighteval interpreter at {python}: pass --fallback to compare against "
                  "math-verify with lighteval's settings", file=sys.stderr)
            return 2
        label, theirs = "math-verify(le)", math_verify_scores(items)
    else:
        label, theirs = "lighteval", lighteval_scores(items, python)
    peer_s = time.perf_counter() - started

    text, summary = table(items, ours, theirs, label)
    print(text)
    shown = 0
    for item, a, b in zip(items, ours, theirs):
        if (a >= 0.5) != (b >= 0.5) and shown < args.show_disagreements:
            shown += 1
            print(f"  disagree [{item['kind']}] gold={item['gold']!r} r1exp={a} {label}={b} "
                  f"prediction tail={item['prediction'][-120:]!r}")
    # "expected" compares strings, so an equivalent neighbour answer (0.5 vs \\frac12) counts here
    wrong_expected = sum(1 for item, a in zip(items, ours)
                         if item["expected"] is not None
                         and (a >= 0.5) != (item["expected"] >= 0.5))
    summary.update(peer=label, r1exp_seconds=round(r1exp_s, 2), peer_seconds=round(peer_s, 2),
                   r1exp_vs_expected_differences=wrong_expected,
                   speed_ratio_r1exp_vs_peer=round(peer_s / r1exp_s, 2) if r1exp_s else None)
    print(json.dumps({"bench": "eval_agreement", **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
