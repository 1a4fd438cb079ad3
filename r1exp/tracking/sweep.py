"""Sweeps (`r1exp -m ...`): a parent MLflow run per sweep, a child run per job, a summary.

Hydra calls `SweepTracker` on the host that starts the sweep (`on_multirun_start/_end`), while
the jobs may run elsewhere (Slurm, through submitit). So everything a job needs from the sweep
is a file in the sweep dir, never state in this process:

    <sweep_dir>/sweep.json          parent run id + tracking URI, read by every job
    <sweep_dir>/snapshot/conf/      conf/ as it was at submission; jobs compose from it
    <sweep_dir>/snapshot/git.txt    commit, branch and `git status` at submission (+ git.diff)
    <sweep_dir>/<job>/              the job's run dir: status, metrics.json, error.txt, ...
    <sweep_dir>/summary.csv|.md     job, overrides, status, metric (written at the end)
    <sweep_dir>/<metric>.png        the swept parameter against the metric

A failing job does not stop the sweep: `run_sweep_job` (r1exp/launch/sweep_job.py) records it
(status FAILED, error.txt, a FAILED child run) and returns, so the launcher goes on with the
others; at the end the parent run is FAILED and `r1exp -m` exits with status 1 if any job did
not finish.

Light at import (no mlflow, matplotlib, torch): Hydra instantiates this in every sweep, and
submitit pickles it with the launcher.
"""

from __future__ import annotations

import atexit
import csv
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from r1exp.config.stage import Stage
from r1exp.errors import ConfigError
from r1exp.rendezvous import machine_rank
from r1exp.rundir import RunDir
from r1exp.stages import stage
from r1exp.tracking.mlflow_run import (
    SWEEP_VARIED_TAG, TrackedRun, client_for, experiment_id, open_run, tracking_uri,
)
from r1exp.tracking.params import metric_name
from r1exp.tracking.patience import Patience
from r1exp.tracking.run_name import SEPARATOR, run_name
from r1exp.tracking.source import source_tags

log = logging.getLogger(__name__)
SWEEP_FILE = "sweep.json"
SNAPSHOT_DIR = "snapshot"
FINISHED = "FINISHED"
FAILED = "FAILED"
REQUEUED = "REQUEUED"               # r1exp.launch.requeue: the job waits to run again


class SweepTracker(Callback):
    """Registered in conf/config.yaml as `hydra.callbacks.sweep` (its knobs live there)."""

    def __init__(self, metric: str, snapshot: bool):
        self.metric = metric
        self.snapshot = snapshot
        # Plain data only: Hydra's submitit launcher pickles callbacks with the launcher.
        self._sweep_dir: str | None = None
        self._parent: dict[str, str] | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._sweep_dir = str(sweep_dir)
        if self.snapshot:
            write_snapshot(sweep_dir / SNAPSHOT_DIR, primary_config_dir(config))
        self._parent = open_parent_run(config, sweep_dir)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps({
            "parent_run_id": self._parent and self._parent["run_id"],
            "tracking_uri": self._parent and self._parent["tracking_uri"],
            "snapshot": self.snapshot,
            "varied": sorted(sweep_axes(config)),
        }, indent=2))
        # The sweep can end without on_multirun_end (a launcher error, Ctrl-C): the parent
        # run must not stay RUNNING then.
        atexit.register(self._finish, exit_on_failure=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish(exit_on_failure=True)

    def _finish(self, exit_on_failure: bool) -> None:
        if self._sweep_dir is None:
            return
        sweep_dir, self._sweep_dir = Path(self._sweep_dir), None
        jobs = collect_jobs(sweep_dir, self.metric, self._parent)
        summary = write_summary(jobs, self.metric, sweep_dir)
        failed = [job for job in jobs if job.status != FINISHED]
        status = FAILED if failed or not jobs else FINISHED
        if self._parent is not None:
            finish_parent_run(self._parent, status, sweep_dir, summary)
        log.info("sweep %s: %d job(s), %d not finished; summary in %s",
                 sweep_dir, len(jobs), len(failed), summary[0])
        if failed and exit_on_failure:
            lines = [f"  job {job.name} ({' '.join(job.overrides)}): {job.status}"
                     + (f": {job.error}" if job.error else "") for job in failed]
            print(f"r1exp: sweep {sweep_dir}: {len(failed)} of {len(jobs)} job(s) did not "
                  f"finish\n" + "\n".join(lines) + f"\nsummary: {summary[1]}", file=sys.stderr)
            # Hydra turns a callback's exception into a warning; only an exit status reaches
            # the shell (or the CI job) that started the sweep.
            sys.exit(1)


# --- the job side ----------------------------------------------------------------------------

def sweep_axes(config: DictConfig) -> dict[str, str]:
    """What a sweep varies, key -> its values as written: a named sweep's
    `hydra.sweeper.params`, then command-line overrides with several values (`a=1,2`,
    `range(...)`), which replace the named sweep's for the same key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    axes = {str(key): str(values) for key, values in params.items()}
    task = list(config.hydra.overrides.task)
    for text, override in zip(task, OverridesParser.create().parse_overrides(task)):
        if override.is_sweep_override():
            axes[override.key_or_group] = text.split("=", 1)[1]
    return axes


def job_varies(overrides: list[str], record: dict[str, Any], job_num: int) -> str:
    """What tells this job from the sweep's others, for its run name: its values of the swept
    keys, else its job number."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    varied = set(record.get("varied") or ())
    parsed = OverridesParser.create().parse_overrides(overrides)
    mine = [text for text, o in zip(overrides, parsed) if o.key_or_group in varied]
    return " ".join(mine) or f"job {job_num}"


def read_sweep_record(sweep_dir: Path) -> dict[str, Any] | None:
    path = sweep_dir / SWEEP_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def compose_from_snapshot(conf_dir: Path, live: DictConfig) -> DictConfig:
    """This job's config composed from the submitted conf/, not the one on disk now.

    Hydra composes a queued job when it starts, from the live conf/: an edit made after
    submission would silently change jobs still in the queue. Composing the job's overrides
    against the snapshot keeps the sweep what it was when submitted.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf_dir)))
    cfg = loader.load_configuration(config_name=hydra_cfg.job.config_name,
                                    overrides=list(hydra_cfg.overrides.task),
                                    run_mode=RunMode.RUN)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    changed = changed_keys(live, cfg)
    if changed:
        log.warning("conf/ changed since this sweep was submitted (%s); job %s runs the "
                    "submitted config from %s", ", ".join(changed[:10]), hydra_cfg.job.num,
                    conf_dir)
        if hydra_cfg.output_subdir is not None:  # so .hydra/config.yaml tells the truth
            out = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir / "config.yaml"
            OmegaConf.save(cfg, out)
    return cfg


def changed_keys(a: DictConfig, b: DictConfig) -> list[str]:
    flat_a = dict(_flatten(OmegaConf.to_container(a, resolve=False)))
    flat_b = dict(_flatten(OmegaConf.to_container(b, resolve=False)))
    return sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))


def _flatten(node: Any, prefix: str = ""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


class LostJobError(RuntimeError):
    """A sweep job ended without returning: killed, its node lost, out of time."""


def record_failed_job(cfg: DictConfig, job_dir: Path, err: BaseException,
                      tags: dict[str, str], parent_run_id: str | None) -> None:
    """Leave the failure where the summary and MLflow look: even a config error gets a run."""
    job_dir.mkdir(parents=True, exist_ok=True)
    job = RunDir(job_dir)
    job.error_file.write_text(f"{type(err).__name__}: {err}\n")
    run_dir = RunDir(run_dir_of(job_dir))
    if not run_dir.status_file.is_file():  # the controller did not get as far as a run
        job.write_status(FAILED)
    elif run_dir.status() == REQUEUED:  # it never ran again
        run_dir.write_status(FAILED)
    if OmegaConf.select(cfg, "logger.name") in (None, "none") or not is_tracking_node(cfg):
        return  # (node 0 of a multi-node job reports the failure)
    if (run_id := run_dir.mlflow_run_id()) is not None:
        # Ended by the controller, unless the controller itself was killed mid-run.
        _fail_if_running(cfg, run_id, err)
        return

    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # an unresolvable config still deserves a FAILED run
        resolved = {}
    run = open_run(cfg, resolved, job_dir, {**tags, "error": first_line(err)[:5000]},
                   _stage_of(resolved), parent_run_id)
    if run is None:  # the tracking server stayed away: the job dir is the record
        return
    run.log_artifacts(job.error_file)
    run.log_artifacts(job_dir / ".hydra", ".hydra")
    run.finish(FAILED)


def _fail_if_running(cfg: DictConfig, run_id: str, err: BaseException) -> None:
    client = client_for(tracking_uri(cfg))
    if client.get_run(run_id).info.status in ("RUNNING", "SCHEDULED"):  # SCHEDULED: requeued
        client.set_tag(run_id, "error", first_line(err)[:5000])
        client.set_terminated(run_id, FAILED)


def record_lost_job(config: DictConfig, job_dir: Path, overrides: list[str], reason: str) -> None:
    """On the submitting host, a job that ended without returning, recorded as a failed one.

    `config` is the job's composed config with its `hydra` node (the launcher's view).
    """
    hydra_dir = job_dir / ".hydra"
    if not (hydra_dir / "overrides.yaml").is_file():  # it never started: the summary finds
        hydra_dir.mkdir(parents=True, exist_ok=True)   # jobs by this file
        OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    record = read_sweep_record(sweep_dir) or {}
    tags = {"overrides": " ".join(overrides), "sweep.dir": str(sweep_dir),
            "sweep.job": str(config.hydra.job.num),
            SWEEP_VARIED_TAG: job_varies(list(overrides), record, config.hydra.job.num)}
    cfg = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
    with open_dict(cfg):  # `${hydra:runtime.output_dir}` would name the submitting process's dir
        cfg.paths.output_dir = str(job_dir)
    record_failed_job(cfg, job_dir, LostJobError(reason), tags, record.get("parent_run_id"))


def run_dir_of(job_dir: Path) -> Path:
    """Where the job's run lives: its own dir, or the earlier attempt it resumed in."""
    return RunDir(job_dir).resumed_in() or job_dir


def is_tracking_node(cfg: DictConfig) -> bool:
    try:
        return machine_rank(int(OmegaConf.select(cfg, "hardware.num_nodes") or 1)) == 0
    except ConfigError:  # the failure may be exactly a missing rendezvous
        return True


def first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


# --- the submitting side ---------------------------------------------------------------------

def primary_config_dir(config: DictConfig) -> Path | None:
    for source in config.hydra.runtime.config_sources:
        if source.provider == "main" and source.schema == "file":
            return Path(source.path)
    return None


def write_snapshot(target: Path, conf_dir: Path | None) -> None:
    """conf/ as submitted, and which code it ran with (commit + uncommitted diff)."""
    if conf_dir is None or not conf_dir.is_dir():
        raise RuntimeError(f"no file-based primary config dir to snapshot ({conf_dir})")
    shutil.copytree(conf_dir, target / "conf", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    repo = conf_dir.parent
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain")
    (target / "git.txt").write_text(
        f"commit: {commit or 'unknown (not a git checkout)'}\n"
        f"branch: {_git(repo, 'rev-parse', '--abbrev-ref', 'HEAD') or 'unknown'}\n"
        f"dirty: {bool(status)}\n" + (f"status:\n{status}\n" if status else "")
    )
    (target / "git.diff").write_text(_git(repo, "diff", "HEAD") or "")


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.rstrip("\n") if out.returncode == 0 else None


def open_parent_run(config: DictConfig, sweep_dir: Path) -> dict[str, str] | None:
    if OmegaConf.select(config, "logger.name") in (None, "none"):
        return None

    uri = tracking_uri(config)
    client = client_for(uri)
    params = OmegaConf.select(config, "hydra.sweeper.params")  # None without a sweep file
    params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
    tags = {
        "r1exp.sweep": "true",
        "sweep.dir": str(sweep_dir),
        "sweep.params": json.dumps(params),
        "overrides": " ".join(config.hydra.overrides.task),
        "launcher": str(config.hydra.runtime.choices.get("hydra/launcher", "basic")),
        **source_tags(),
    }
    name = sweep_run_name(config)
    opened, run_id = Patience(uri).call("open the sweep's parent run", lambda: client.create_run(
        experiment_id(client, config.logger.experiment_name, uri), run_name=name,
        tags=tags).info.run_id)
    if not opened:  # the jobs still track, as runs of their own
        return None
    log.info("MLflow parent run %s for sweep %s", run_id, sweep_dir)
    return {"run_id": run_id, "tracking_uri": uri}


def sweep_run_name(config: DictConfig) -> str:
    """`sweep · grpo · smollm2-135m · arithmetic · cpu · train.learning_rate=1e-6,1e-5`."""
    shared = {}
    for key in ("stage", "model", "dataset", "hardware", "eval"):
        try:
            node = OmegaConf.select(config, key)
            shared[key] = (OmegaConf.to_container(node, resolve=True)
                           if isinstance(node, DictConfig) else node)
        except OmegaConfBaseException:  # a name is a nicety: an odd config still gets a run
            continue
    swept = [f"{key}={values}" for key, values in sweep_axes(config).items()]
    return "sweep" + SEPARATOR + run_name(shared, _stage_of(shared), swept)


def _stage_of(config: dict[str, Any]) -> Stage | None:
    """The config's stage; None for a config that names none (recorded before validation)."""
    try:
        return stage(str(config.get("stage")))
    except ConfigError:
        return None


def finish_parent_run(parent: dict[str, str], status: str, sweep_dir: Path,
                      summary: tuple[Path, ...]) -> None:
    run = TrackedRun(client_for(parent["tracking_uri"]), parent["run_id"],
                     parent["tracking_uri"])
    for path in (*summary, sweep_dir / "multirun.yaml"):
        run.log_artifacts(path)
    run.log_artifacts(sweep_dir / SNAPSHOT_DIR, SNAPSHOT_DIR)
    run.finish(status)


# --- the summary -----------------------------------------------------------------------------

@dataclass
class JobResult:
    name: str
    overrides: list[str]
    status: str
    value: float | None = None
    run_id: str | None = None
    error: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    run_dir: Path | None = None


def collect_jobs(sweep_dir: Path, metric: str, parent: dict[str, str] | None) -> list[JobResult]:
    """Every job dir of the sweep (found by its .hydra/overrides.yaml), in job order."""
    jobs = []
    for overrides_file in sweep_dir.glob("**/.hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        if SNAPSHOT_DIR in job_dir.relative_to(sweep_dir).parts:
            continue
        overrides = [str(o) for o in OmegaConf.load(overrides_file)]
        run_dir = RunDir(run_dir_of(job_dir))
        jobs.append(JobResult(
            name=str(job_dir.relative_to(sweep_dir)),
            overrides=overrides,
            # No status file: the job never got to end its run (killed, node lost).
            status=run_dir.status() or "UNKNOWN",
            run_id=run_dir.mlflow_run_id(),
            error=_first_line_of(RunDir(job_dir).error_file),
            run_dir=run_dir.path,
            params=dict(o.split("=", 1) for o in overrides if "=" in o),
        ))
    jobs.sort(key=lambda j: (not j.name.isdigit(), int(j.name) if j.name.isdigit() else 0, j.name))
    for job in jobs:
        job.value = metric_value(job.run_dir or sweep_dir / job.name, metric, job.run_id, parent)
    return jobs


def _first_line_of(path: Path) -> str | None:
    lines = path.read_text().strip().splitlines() if path.is_file() else []
    return lines[0] if lines else None


def metric_value(run_dir: Path, metric: str, run_id: str | None,
                 parent: dict[str, str] | None) -> float | None:
    """The job's final metric (metrics.json), else the last value its MLflow run logged."""
    value = RunDir(run_dir).metrics().get(metric)
    if isinstance(value, (int, float)):
        return float(value)
    if run_id and parent:
        logged = client_for(parent["tracking_uri"]).get_run(run_id).data.metrics
        for key in (metric, metric_name(metric)):
            if key in logged:
                return float(logged[key])
    return None


def swept_keys(jobs: list[JobResult]) -> list[str]:
    """The override keys whose value differs between jobs: the sweep's axes."""
    keys = sorted({k for job in jobs for k in job.params})
    return [k for k in keys if len({job.params.get(k) for job in jobs}) > 1]


def write_summary(jobs: list[JobResult], metric: str, sweep_dir: Path) -> tuple[Path, Path, Path]:
    axes = swept_keys(jobs)
    header = ["job", *axes, "overrides", "status", metric, "mlflow_run_id", "error"]
    rows = [[job.name, *(job.params.get(k, "") for k in axes), " ".join(job.overrides),
             job.status, "" if job.value is None else f"{job.value:.6g}", job.run_id or "",
             job.error or ""] for job in jobs]
    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with csv_path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(str(c)) for c in row) + " |" for row in rows]
    md_path.write_text(f"# Sweep {sweep_dir}\n\n" + "\n".join(lines) + "\n")
    plot_path = sweep_dir / (metric.replace("/", "_") + ".png")
    plot_metric(jobs, axes, metric, plot_path)
    return csv_path, md_path, plot_path


def plot_metric(jobs: list[JobResult], axes: list[str], metric: str, out: Path) -> None:
    """One swept number: metric against it (log x for spans > 20x); otherwise one bar per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [job for job in jobs if job.value is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    numeric_axis = len(axes) == 1 and all(_is_number(j.params.get(axes[0])) for j in done)
    if done and numeric_axis:
        points = sorted((float(j.params[axes[0]]), j.value) for j in done)
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o")
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(axes[0])
    elif done:
        labels = [" ".join(f"{k}={j.params.get(k, '')}" for k in axes) or j.name for j in done]
        ax.bar(range(len(done)), [j.value for j in done])
        ax.set_xticks(range(len(done)), labels, rotation=30, ha="right", fontsize=7)
    else:
        ax.text(0.5, 0.5, f"no job reported {metric}", ha="center", va="center",
                transform=ax.transAxes)
    missing = len(jobs) - len(done)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: {len(done)} job(s)" + (f", {missing} without a value" if missing
                                                     else ""))
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _is_number(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True
