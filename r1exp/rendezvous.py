"""Where the ranks of a multi-node run meet: the main process on the first node of the allocation.

A run with `hardware.num_nodes > 1` is one Slurm job with one task per node (the submitit
presets set `tasks_per_node: 1`). Every node runs the controller, and each controller starts
`accelerate launch --machine_rank <its node> --main_process_ip <first node> ...` for its own
ranks. Everything comes from the job's environment as submitit reads it
(`submitit.slurm.slurm.SlurmJobEnvironment`), so nothing per-node has to be configured:

- `hostnames[0]`, the first host of SLURM_JOB_NODELIST, is the main node;
- `node` (SLURM_NODEID) is the machine rank, `num_nodes` (SLURM_JOB_NUM_NODES) the count;
- the port is MASTER_PORT when set, else one derived from the job id as submitit's
  `helpers.TorchDistributedEnvironment` derives it: every node computes the same one, and two
  jobs sharing a main node rarely meet on one port.

The Slurm class is used directly rather than `submitit.JobEnvironment()`, which needs the
SUBMITIT_EXECUTOR variable only jobs submitted by submitit have: a plain `sbatch`/`srun` of
r1exp reads the same Slurm variables. submitit is imported only for multi-node runs (it comes
with r1exp's `slurm` extra), so single-node runs and the controller's import stay light.

Only machine rank 0 opens the MLflow run and writes metrics; the other nodes only train.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from r1exp.errors import ConfigError

JOB_ID_VAR = "SLURM_JOB_ID"
NODELIST_VAR = "SLURM_JOB_NODELIST"
PORT_VAR = "MASTER_PORT"
# submitit's TorchDistributedEnvironment picks from this range, seeded by the job id.
PORT_RANGE = (20000, 60000)


@dataclass(frozen=True)
class Rendezvous:
    main_process_ip: str
    main_process_port: int
    machine_rank: int
    num_machines: int

    def accelerate_args(self) -> tuple[str, ...]:
        return (
            "--main_process_ip", self.main_process_ip,
            "--main_process_port", str(self.main_process_port),
            "--machine_rank", str(self.machine_rank),
        )


def from_environment(num_nodes: int) -> Rendezvous | None:
    """The rendezvous of this node, None for a single-node run; ConfigError if it can't be found."""
    if num_nodes <= 1:
        return None
    if not (os.environ.get(JOB_ID_VAR) and os.environ.get(NODELIST_VAR)):
        raise ConfigError(
            f"hardware.num_nodes={num_nodes} needs a Slurm allocation to find the main node "
            f"({JOB_ID_VAR} and {NODELIST_VAR} are unset): submit it with "
            f"`r1exp -m hydra/launcher=slurm-8xh100 hydra.launcher.nodes={num_nodes} ...`, "
            "or use hardware.num_nodes=1"
        )
    job = slurm_job()
    hosts = allocation_hosts(job)
    if job.num_nodes != num_nodes or len(hosts) != num_nodes:
        raise ConfigError(
            f"hardware.num_nodes={num_nodes} but this Slurm job has {job.num_nodes} node(s) "
            f"({os.environ[NODELIST_VAR]}); set hydra.launcher.nodes={num_nodes} or "
            f"hardware.num_nodes={job.num_nodes}"
        )
    return Rendezvous(hosts[0], main_process_port(job.job_id), job.node, num_nodes)


def machine_rank(num_nodes: int) -> int:
    """0 on the node that tracks the run (always, for single-node runs)."""
    found = from_environment(num_nodes)
    return 0 if found is None else found.machine_rank


def main_process_port(job_id: str) -> int:
    """MASTER_PORT, else submitit's port for this job id (the same on every node)."""
    if os.environ.get(PORT_VAR):
        return int(os.environ[PORT_VAR])
    return random.Random(job_id).randint(*PORT_RANGE)


def slurm_job():
    """submitit's view of this Slurm job (it reads SLURM_* variables when asked)."""
    try:
        from submitit.slurm.slurm import SlurmJobEnvironment
    except ImportError:
        raise ConfigError("hardware.num_nodes > 1 reads its Slurm allocation through submitit: "
                          "install r1exp's slurm extra (pip install 'r1exp[slurm]')") from None
    return SlurmJobEnvironment()


def allocation_hosts(job) -> list[str]:
    """The job's hosts in order, as submitit expands SLURM_JOB_NODELIST (`gpu[07-08,11]`)."""
    from submitit.slurm.slurm import SlurmParseException

    nodelist = os.environ.get(NODELIST_VAR, "")
    try:
        hosts = list(job.hostnames)
    except SlurmParseException:
        raise ConfigError(f"{NODELIST_VAR}={nodelist!r}: cannot read it as a host list") from None
    # submitit reads a lone `]` as part of a name; Slurm never writes one there.
    if not hosts or any(not host or "[" in host or "]" in host for host in hosts):
        raise ConfigError(f"{NODELIST_VAR}={nodelist!r}: cannot read it as a host list")
    return hosts
