"""The block every run ends with, success or failure: where things are and how it went.

Built from what the run dir holds (the trainer's log history, eval/results.json, metrics.json),
so a failed run still shows the progress it made before it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from r1exp.eval.outputs import format_table
from r1exp.rundir import TRAINER_STATE, RunDir
from r1exp.tracking.pending import unreachable

# Training curves worth one line each, first -> last, in the order shown.
TRAINING_KEYS = ("reward", "loss", "eval_loss")
GENERATE_COUNTS = ("problems", "samples", "kept", "errors", "correct_fraction")
MLFLOW_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


@dataclass
class Summary:
    status: str
    stage: str
    run_dir: Path
    recipe: str | None = None
    model_dir: Path | None = None
    worker_log: Path | None = None
    curves: dict[str, tuple[tuple[int, float], tuple[int, float]]] = field(default_factory=dict)
    eval_table: str | None = None
    counts: dict[str, float] = field(default_factory=dict)
    mlflow_command: str | None = None
    mlflow_url: str | None = None


def collect(status: str, stage: str, run_dir: Path, run=None, recipe: str | None = None
            ) -> Summary:
    """Read what `run_dir` holds; `run` is the run's TrackedRun (None: logger=none)."""
    model_dir = RunDir(run_dir).model_dir
    log = RunDir(run_dir).worker_log
    summary = Summary(status=status, stage=stage, run_dir=run_dir, recipe=recipe,
                      model_dir=model_dir if (model_dir / "config.json").is_file() else None,
                      worker_log=log if log.is_file() else None,
                      curves=training_curves(_trainer_log(run_dir)),
                      eval_table=_eval_table(run_dir), counts=_generate_counts(run_dir))
    if run is not None:
        summary.mlflow_command = f"mlflow ui --backend-store-uri {run.tracking_uri}"
        try:
            experiment = run.client.get_run(run.run_id).info.experiment_id
        except Exception as err:
            if not unreachable(err):
                raise
            return summary  # the server is away (the log said so): no address to show
        summary.mlflow_url = f"{MLFLOW_UI_URL}/#/experiments/{experiment}/runs/{run.run_id}"
    return summary


def training_curves(log_history: list[dict]) -> dict[str, tuple[tuple[int, float],
                                                               tuple[int, float]]]:
    """(step, value) of the first and last logged point of each of TRAINING_KEYS."""
    curves = {}
    for key in TRAINING_KEYS:
        points = [(int(entry.get("step", 0)), float(entry[key])) for entry in log_history
                  if isinstance(entry.get(key), (int, float))]
        if points:
            curves[key] = (points[0], points[-1])
    return curves


def render(summary: Summary) -> str:
    rows = [("status", summary.status), ("stage", summary.stage),
            ("run dir", str(summary.run_dir))]
    if summary.recipe:
        rows.append(("recipe", summary.recipe))
    if summary.model_dir:
        rows.append(("model", str(summary.model_dir)))
    if summary.worker_log:
        rows.append(("log", str(summary.worker_log)))
    for key, ((first_step, first), (last_step, last)) in summary.curves.items():
        rows.append((key, f"{first:.4g} -> {last:.4g}  (step {first_step} -> {last_step})"))
    for key, value in summary.counts.items():
        rows.append((key, f"{value:.3f}" if key.endswith("fraction") else f"{value:g}"))
    if summary.mlflow_command:
        rows += [("mlflow", summary.mlflow_command), ("", f"then open {summary.mlflow_url}")]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    if summary.eval_table:
        lines += ["", *summary.eval_table.splitlines()]
    rule = "=" * 72
    return "\n".join([rule, f"r1exp run {summary.status}", rule, *lines, rule])


def _trainer_log(run_dir: Path) -> list[dict]:
    """The trainer's per-step log: the final model's copy, else the newest checkpoint's."""
    rundir = RunDir(run_dir)
    candidates = [rundir.model_dir / TRAINER_STATE]
    checkpoint = rundir.last_complete_checkpoint()
    if checkpoint is not None:
        candidates.append(checkpoint / TRAINER_STATE)
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text()).get("log_history", [])
    return []


def _eval_table(run_dir: Path) -> str | None:
    path = RunDir(run_dir).eval_results
    return format_table(json.loads(path.read_text())) if path.is_file() else None


def _generate_counts(run_dir: Path) -> dict[str, float]:
    metrics = RunDir(run_dir).metrics()
    return {key: metrics[f"generate/{key}"] for key in GENERATE_COUNTS
            if f"generate/{key}" in metrics}
