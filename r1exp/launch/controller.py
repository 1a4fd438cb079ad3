"""The Hydra job is a controller: validate, resolve once, track, start the worker(s).

It never imports torch, so `dry_run`, `--cfg job` and submitit stay fast, and each run's
training happens in fresh processes: no CUDA/NCCL state is shared between sweep jobs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from r1exp import rendezvous
from r1exp.config.plan import Plan
from r1exp.launch import allocator, requeue
from r1exp.launch.preflight import preflight
from r1exp.launch.processes import stop
from r1exp.launch.resume import RunClaim, adopt_run, find_resumable_run, refuse_finished_training
from r1exp.launch.summary import collect, render
from r1exp.launch.vllm_server import running_server
from r1exp.launch.worker_output import teed_process
from r1exp.models.loading import resolve_model_dir
from r1exp.rundir import RunDir, write_atomically
from r1exp.stages import make_plan, stage, validate
from r1exp.tracking.attempts import reattach_run
from r1exp.tracking.mlflow_run import open_run

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 5  # how often the controller checks what the workers depend on


class WorkerFailed(RuntimeError):
    """The workers exited with an error they printed themselves (their traceback is in the
    terminal and the worker log): no controller traceback should repeat it."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def prepare(cfg: DictConfig) -> tuple[DictConfig, Plan]:
    """Resolve every interpolation once, validate, derive the plan. Raises ConfigError."""
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    typed = validate(resolved)
    run_dir = RunDir(typed.paths.output_dir)
    return typed, make_plan(typed, resolved_yaml=str(run_dir.resolved_config))


def control(cfg: DictConfig, hydra_tags: dict[str, str] | None = None,
            parent_run_id: str | None = None, notice: str | None = None) -> dict[str, float]:
    """`notice`: what the command line composed (r1exp.command_line.recipe), shown once it is
    valid."""
    typed, plan = prepare(cfg)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    if typed.dry_run:
        print(OmegaConf.to_yaml(typed, resolve=True))
        print(plan.render())
        return {}
    machine_rank = rendezvous.machine_rank(typed.hardware.num_nodes)  # ConfigError off-Slurm
    preflight(typed, plan)
    resumed = find_resumable_run(typed)  # an unfinished earlier attempt of this config
    if resumed is not None:
        typed = adopt_run(typed, resumed)
        plan = make_plan(typed, resolved_yaml=str(RunDir(resumed).resolved_config))
    run_dir = Path(typed.paths.output_dir)
    refuse_finished_training(typed, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    claim = RunClaim(run_dir, typed) if machine_rank == 0 else None  # lock + fingerprint
    # Every node of a multi-node run writes the same file into the shared run dir: atomically,
    # so no worker reads a half-written one.
    write_atomically(RunDir(run_dir).resolved_config, OmegaConf.to_yaml(typed, resolve=True))
    if machine_rank != 0:
        return _run_untracked_node(plan, typed, machine_rank)

    tags = {"stage": typed.stage, **(hydra_tags or {})}
    run = (reattach_run(typed, run_dir) if resumed else None) or open_run(
        typed, OmegaConf.to_container(typed), run_dir, tags, stage(typed.stage), parent_run_id)
    status = "FAILED"
    requeued = False

    def record_requeue() -> None:  # submitit is requeuing the job (r1exp.launch.requeue)
        nonlocal requeued
        requeued = True
        _mark_requeued(run_dir, run)

    try:
        with requeue.on_requeue(record_requeue), requeue.noting_termination() as termination:
            returncode = _run_workers(plan, typed, run)
        if returncode != 0 and termination.seen:
            status = "KILLED"  # resumable; a requeued job continues this run
            raise requeue.EndedBySlurm(f"r1exp: Slurm ended this job (SIGTERM) while stage "
                                       f"'{typed.stage}' ran; the run in {run_dir} is KILLED")
        status = "FINISHED" if returncode == 0 else "FAILED"
        if returncode != 0:
            raise WorkerFailed(f"stage '{typed.stage}' worker exited with status {returncode}; "
                               f"its output is in {RunDir(run_dir).worker_log}", returncode)
        metrics = _read_metrics(run_dir)
        if run is not None:
            run.log_metrics(metrics)
        return metrics
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except SystemExit:  # submitit's exit after it requeued the job: not the run's end
        if requeued:
            status = requeue.REQUEUED
        raise
    finally:
        requeue.ignore_from_now_on()
        ended = status != requeue.REQUEUED  # a requeued run was recorded before the requeue
        if ended:
            _end_run(status, run_dir, run)
        claim.release()
        if ended:
            _print_summary(status, typed, run_dir, run, hydra_tags or {})


def _end_run(status: str, run_dir: Path, run) -> None:
    rundir = RunDir(run_dir)
    rundir.write_status(status)
    if run is not None:
        for path in (rundir.resolved_config, rundir.metrics_file, rundir.status_file):
            run.log_artifacts(path)
        run.log_artifacts(run_dir / ".hydra", ".hydra")
        for logfile in run_dir.glob("*.log"):
            run.log_artifacts(logfile)
        run.finish(status)


def _mark_requeued(run_dir: Path, run) -> None:
    """The run waits to continue: status REQUEUED (a resumable, unfinished run), its MLflow run
    SCHEDULED, not FAILED, so nothing reads it as over; the next attempt sets it RUNNING."""
    checkpoint = RunDir(run_dir).last_complete_checkpoint()
    log.warning("requeuing the Slurm job (time limit or preemption); the next attempt "
                "continues in %s from %s", run_dir, checkpoint.name if checkpoint else "the start")
    RunDir(run_dir).write_status(requeue.REQUEUED)
    if run is not None:
        run.client.update_run(run.run_id, status="SCHEDULED")


def _run_untracked_node(plan: Plan, cfg: DictConfig, machine_rank: int) -> dict[str, float]:
    """Nodes after the first only start their ranks: node 0 owns the MLflow run and metrics."""
    log_path = RunDir(cfg.paths.output_dir).node_log(machine_rank)
    returncode = _run_workers(plan, cfg, None, log_path=log_path)
    if returncode != 0:
        raise WorkerFailed(f"stage '{cfg.stage}' workers of machine rank {machine_rank} exited "
                           f"with status {returncode}", returncode)
    return {}


def _print_summary(status: str, cfg: DictConfig, run_dir: Path, run, tags: dict) -> None:
    recipe = tags.get("choice.experiment")
    try:
        text = render(collect(status, cfg.stage, run_dir, run,
                              recipe=f"experiment={recipe}" if recipe else None))
    except Exception:  # a summary that cannot be read must not hide how the run ended
        log.exception("could not summarize the run in %s", run_dir)
        return
    print(text, flush=True)


def _run_workers(plan: Plan, cfg: DictConfig, run, log_path: Path | None = None) -> int:
    env = {**os.environ, **{k: str(v) for k, v in cfg.hardware.env.items()}}
    if stage(cfg.stage).hosts_vllm_engine(cfg):
        env = allocator.for_vllm(env)
    log_path = log_path or RunDir(cfg.paths.output_dir).worker_log
    if run is not None:
        env.update(run.env())
    if stage(cfg.stage).uses_vllm_server(cfg):
        model_dir = resolve_model_dir(cfg.model, cfg.paths.cache_dir)
        with running_server(cfg, model_dir, env, Path(cfg.paths.output_dir)) as server:
            return _start_and_wait(plan, server.worker_env, log_path, watch=server.check_alive)
    return _start_and_wait(plan, single_training_device(plan, cfg, env), log_path)


def single_training_device(plan: Plan, cfg: DictConfig, env: dict[str, str]) -> dict[str, str]:
    """A one-process training run sees one GPU (the first visible one).

    With several GPUs visible to one process, transformers' Trainer wraps the model in
    nn.DataParallel: TRL's SFTTrainer refuses it, and it would multiply the per-device batch
    behind the plan's back. Found by the two-GPU validation (docs/scale-out.md). Eval and
    generate keep every GPU: one vLLM process may use several (tensor parallelism).
    """
    if (plan.world_size != 1 or not stage(plan.stage).training
            or cfg.hardware.accelerator != "cuda"):
        return env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    return {**env, "CUDA_VISIBLE_DEVICES": visible.split(",")[0] if visible is not None else "0"}


def _start_and_wait(plan: Plan, env: dict[str, str], log_path: Path, watch=None) -> int:
    """Run the workers to the end; `watch` raises when something they depend on died."""
    argv = executable_argv(plan.launch_command)
    log.info("starting worker: %s (output also in %s)", " ".join(argv), log_path)
    with ExitStack() as stack:
        with requeue.signal_blocked_in_children():
            proc = stack.enter_context(teed_process(argv, env, log_path))
        stack.enter_context(requeue.on_requeue(lambda: requeue.stop_worker(proc)))
        return _wait(proc, watch)


def _wait(proc: subprocess.Popen, watch) -> int:
    # Always with a timeout: a blocking wait holds Popen's wait lock, and a requeue signal
    # arriving then could not see the worker exit (requeue.stop_worker).
    try:
        while True:
            try:
                return proc.wait(timeout=WATCH_INTERVAL_S)
            except subprocess.TimeoutExpired:
                if watch is None:
                    continue
                try:
                    watch()
                except Exception:
                    stop(proc)
                    raise
    except KeyboardInterrupt:
        # The worker got the same Ctrl-C from the terminal; give it time to stop cleanly.
        stop(proc, sig=signal.SIGINT)
        raise


def executable_argv(command: tuple[str, ...]) -> list[str]:
    """Turn the plan's readable command into one that uses this interpreter."""
    if command[:1] == ("python",):
        return [sys.executable, *command[1:]]
    if command[:2] == ("accelerate", "launch"):
        return [sys.executable, "-m", "accelerate.commands.launch", *command[2:]]
    return list(command)


def _read_metrics(run_dir: Path) -> dict[str, float]:
    return RunDir(run_dir).metrics()
