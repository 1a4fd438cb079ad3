"""Does GRPO make the model better? Held-out accuracy before and after `smollm-arith-grpo`.

    python -m tests.bench.grpo_learning [--steps 100] [--samples 4] [--hardware cpu]

Both measurements go through the eval stage (same prompts, sampling and scorer as the reward)
on the arithmetic task's test split, which training never sees. Runs the real CLI twice: an
eval of the base model, then the GRPO recipe with `train.benchmarks=[arithmetic]` (the
training stage evaluates its final model). Prints the reward curve, a table, and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = "arithmetic"


def r1exp(run_dir: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "r1exp", "experiment=smollm-arith-grpo",
           f"hydra.run.dir={run_dir}", *overrides]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO_ROOT, check=True)
    return json.loads((run_dir / "metrics.json").read_text())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=4, help="samples per held-out problem")
    parser.add_argument("--hardware", default="cpu")
    parser.add_argument("--logger", default="none", help="mlflow or none")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="r1exp-grpo-learning-"))
    common = [f"hardware={args.hardware}", f"logger={args.logger}",
              f"eval.num_samples={args.samples}", "eval.temperature=0.8", "eval.top_p=1.0",
              "eval.max_new_tokens=32", "eval.prompt=''"]

    start = time.perf_counter()
    before = r1exp(out / "before", [*common, "stage=eval", f"eval.benchmarks=[{BENCHMARK}]"])
    after = r1exp(out / "train", [*common, f"train.max_steps={args.steps}",
                                  f"train.benchmarks=[{BENCHMARK}]"])
    wall_s = time.perf_counter() - start

    key = f"eval/{BENCHMARK}/pass@1"
    acc_before, acc_after = before[key], after[key]
    n = int(before[f"eval/{BENCHMARK}/n_problems"]) * args.samples
    # Two independent proportions: the difference's standard error.
    stderr = math.sqrt(acc_before * (1 - acc_before) / n + acc_after * (1 - acc_after) / n)
    state = json.loads((out / "train" / "model" / "trainer_state.json").read_text())
    curve = [(h["step"], h["reward"]) for h in state["log_history"] if "reward" in h]

    print("\nreward mean per step:")
    for step, reward in curve:
        print(f"  step {step:4d}  {reward:6.3f}  " + "#" * round(reward * 40))
    print(f"\n| held-out {BENCHMARK} (n={n} samples) | pass@1 |\n|---|---|")
    print(f"| before GRPO | {acc_before:.3f} |\n| after {args.steps} steps | {acc_after:.3f} |")
    print(f"difference {acc_after - acc_before:+.3f} (standard error {stderr:.3f})")
    result = {
        "acc_before": round(acc_before, 4), "acc_after": round(acc_after, 4),
        "difference_stderr": round(stderr, 4), "samples": n, "steps": args.steps,
        "wall_s": round(wall_s, 1), "hardware": args.hardware,
        "reward_first5": round(sum(r for _, r in curve[:5]) / max(1, len(curve[:5])), 4),
        "reward_last5": round(sum(r for _, r in curve[-5:]) / max(1, len(curve[-5:])), 4),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
