"""hydra-submitit-launcher's Slurm launcher, with two gaps closed for sweeps and requeue wired in.

1. Without Slurm accounting (no slurmdbd: small clusters, the tests' one-node cluster) `sacct`
   fails, and submitit keeps every job's state UNKNOWN, which it counts as still running: a job
   killed before writing its result (scancel, OOM kill, node failure, time limit) made `r1exp -m`
   wait forever. `QueueWatcher` asks `squeue` when `sacct` fails.
2. Such a job raised in the launcher, so the sweep stopped waiting for the jobs after it and the
   summary left it out (if it never started) or showed it UNKNOWN. It is now recorded as a
   failed job (`r1exp.tracking.sweep.record_lost_job`) and the launcher waits for the others.
3. A job whose time limit nears (or that is preempted) is requeued by submitit through the
   plugin's `checkpoint()`; ours first lets the running controller stop its workers and mark
   the run REQUEUED (r1exp.launch.requeue), and the requeued job resumes in the same run dir.

Hydra takes launcher classes only from the `hydra_plugins` namespace: the presets in
conf/hydra/launcher/slurm-*.yaml name `hydra_plugins.r1exp_slurm_launcher.SlurmLauncher`, this
class under that name. Everything else (parameters, the sbatch array, pickling) is the plugin's.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from omegaconf import open_dict

from r1exp.launch import requeue
from r1exp.tracking.sweep import FAILED, record_lost_job

log = logging.getLogger(__name__)
# squeue lists what slurmctld holds: pending and running jobs, and ended ones for MinJobAge
# seconds. A job it does not list has ended, with its state forgotten.
NOT_IN_QUEUE = "NOT_IN_QUEUE"
SQUEUE_TIMEOUT_S = 60
WATCH_DELAY_S = 600  # submitit's own for Slurm: the longest wait between two state queries


def queue_states(job_ids: set[str]) -> dict[str, str] | None:
    """{job id: state} from squeue for `job_ids` (array tasks as `<array>_<task>`), those it no
    longer lists as NOT_IN_QUEUE; None when squeue cannot answer (nothing is known then)."""
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--states=all",
                              "--format=%i|%T"], capture_output=True, text=True,
                             timeout=SQUEUE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    listed = dict(line.split("|", 1) for line in out.stdout.splitlines() if "|" in line)
    return {job_id: listed.get(job_id, NOT_IN_QUEUE) for job_id in job_ids}


@functools.cache
def queue_watcher_class():
    """submitit's Slurm watcher, falling back to squeue (built lazily: submitit is imported
    only when a sweep is launched)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            try:
                output = subprocess.check_output(command, stderr=subprocess.DEVNULL)
                self._info_dict.update(self.read_info(output))
            except (subprocess.CalledProcessError, OSError):
                states = queue_states(self._registered - self._finished) or {}
                self._info_dict.update({job: {"JobID": job, "State": state}
                                        for job, state in states.items()})
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

    return QueueWatcher


class RecordingSlurmLauncher(submitit_launcher.SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit
        from submitit.slurm.slurm import SlurmJob

        watcher = queue_watcher_class()
        if not isinstance(SlurmJob.watcher, watcher):
            SlurmJob.watcher = watcher(delay_s=WATCH_DELAY_S)
        # The plugin's launch submits the array, then returns [job.results()[0] for each job]:
        # hand it jobs whose results() records a lost job instead of raising.
        map_array = submitit.AutoExecutor.map_array

        def map_array_recording_lost_jobs(executor, fn, *iterables):
            jobs = map_array(executor, fn, *iterables)
            return [_JobOutcome(self, job, list(overrides), initial_job_idx + i)
                    for i, (job, overrides) in enumerate(zip(jobs, job_overrides))]

        submitit.AutoExecutor.map_array = map_array_recording_lost_jobs
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = map_array

    def checkpoint(self, *args, **kwargs):
        """submitit calls this in the job when Slurm's USR2 comes (the time limit is
        `signal_delay_s` away, or the job is preempted), then requeues the job with what it
        returns and exits. The controller running in this process stops its workers and marks
        the run REQUEUED first: after the requeue Slurm kills the job within KillWait."""
        requeue.prepare()
        return super().checkpoint(*args, **kwargs)

    def lost_job_return(self, job, overrides: list[str], job_num: int) -> JobReturn:
        """Record a job that ended without a result; a return the sweep counts as FAILED."""
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.num = job_num
            config.hydra.job.id = job.job_id
        job_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        reason = (f"Slurm job {job.job_id} ended without a result (state {job.state}); "
                  f"its log: {job.paths.stdout}")
        log.error("sweep job %d: %s", job_num, reason)
        record_lost_job(config, job_dir, overrides, reason)
        return JobReturn(overrides=overrides, working_dir=str(job_dir), status=JobStatus.COMPLETED,
                         task_name=str(config.hydra.job.name),
                         _return_value={"status": FAILED, "error": reason})


class _JobOutcome:
    """A submitted job as the plugin's launch reads it: `results()` never raises for a lost job."""

    def __init__(self, launcher: RecordingSlurmLauncher, job, overrides: list[str], job_num: int):
        self.launcher, self.job, self.overrides, self.job_num = launcher, job, overrides, job_num

    def results(self) -> list[JobReturn]:
        from submitit.core.utils import UncompletedJobError

        try:
            return self.job.results()
        except UncompletedJobError:
            return [self.launcher.lost_job_return(self.job, self.overrides, self.job_num)]
