"""The eval stage: generate on R1 benchmarks, score with r1exp.rewards, report pass@k.

`r1exp stage=eval 'eval.benchmarks=[math500,aime24]' model.path=<checkpoint dir>`; knobs in
conf/eval/default.yaml, benchmark specs in conf/benchmark/. Outputs land in `<run dir>/eval/`
and the MLflow run; re-running on the same run dir resumes (finished samples are kept).
"""

from __future__ import annotations

from r1exp.config.stage import Stage
from r1exp.errors import ConfigError
from r1exp.eval import check as check_eval
from r1exp.eval import evaluate_model, evaluating_engine
from r1exp.eval.outputs import APPENDED_GLOB
from r1exp.inference.samples import SAMPLES_DIR, SHARD_GLOB
from r1exp.inference.vllm_engine import in_process_use
from r1exp.rundir import RunDir
from r1exp.stages.registry import register

# What this stage reads, so what its MLflow params show (r1exp.tracking.params): the benchmarks
# named by BENCHMARKS_KEY add their specs and the eval section.
CONFIG_SECTIONS = ("seed", "paths", "model", "hardware", "eval", "inference")
BENCHMARKS_KEY = "eval.benchmarks"


def check(cfg) -> None:

    if not cfg.eval.benchmarks:
        raise ConfigError("eval.benchmarks=[] names no benchmark; e.g. 'eval.benchmarks=[math500]'")
    check_eval(cfg, cfg.eval.benchmarks, "eval.benchmarks")


def resumable(cfg, run_dir) -> bool:
    """Whether an unfinished run dir holds finished samples worth continuing from.

    For r1exp.launch.resume: an eval run has no trainer checkpoint; its progress is the
    samples under `<run dir>/eval/<benchmark>/` (the store's shards, or the samples*.jsonl an
    earlier version appended to).
    """
    eval_dir = RunDir(run_dir).eval_dir
    return (any(eval_dir.glob(f"*/{SAMPLES_DIR}/{SHARD_GLOB}"))
            or any(path.stat().st_size > 0 for path in eval_dir.glob(f"*/{APPENDED_GLOB}")))


def run(cfg) -> dict[str, float]:
    check(cfg)
    return evaluate_model(cfg)


STAGE = register(Stage(
    name="eval", run=run, check=check, resumable=resumable,
    config_sections=CONFIG_SECTIONS, benchmarks_key=BENCHMARKS_KEY,
    vllm=lambda cfg: in_process_use(cfg, evaluating_engine(cfg)),
))
