"""Where the ranks of a multi-node run meet: the main process on the first node of the allocation.

A run with `hardware.num_nodes > 1` is one Slurm job with one task per node (the submitit
presets set `tasks_per_node: 1`). Every node runs the controller, and each controller starts
`accelerate launch --machine_rank <its node> --main_process_ip <first node> ...` for its own
ranks. Everything comes from Slurm's environment, so nothing per-node has to be configured:

- the first host of `SLURM_JOB_NODELIST` (compact syntax, e.g. `gpu[07-08,11]`) is the main node;
- `SLURM_NODEID` (or `SLURM_PROCID`, equal with one task per node) is the machine rank;
- the port is fixed (MAIN_PROCESS_PORT): multi-node jobs own their nodes, so nothing else on
  the main node listens there.

Only machine rank 0 opens the MLflow run and writes metrics; the other nodes only train.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from r1exp.errors import ConfigError

MAIN_PROCESS_PORT = 29500
NODELIST_VARS = ("SLURM_JOB_NODELIST", "SLURM_NODELIST")
NODE_RANK_VARS = ("SLURM_NODEID", "SLURM_PROCID")
NODE_COUNT_VARS = ("SLURM_JOB_NUM_NODES", "SLURM_NNODES")


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


def from_environment(num_nodes: int, env: Mapping[str, str] | None = None) -> Rendezvous | None:
    """The rendezvous of this node, None for a single-node run; ConfigError if it can't be found."""
    if num_nodes <= 1:
        return None
    env = os.environ if env is None else env
    nodelist, rank = _first(env, NODELIST_VARS), _first(env, NODE_RANK_VARS)
    if nodelist is None or rank is None:
        raise ConfigError(
            f"hardware.num_nodes={num_nodes} needs a Slurm allocation to find the main node "
            f"({NODELIST_VARS[0]} and {NODE_RANK_VARS[0]} are unset): submit it with "
            f"`r1exp -m hydra/launcher=slurm-8xh100 hydra.launcher.nodes={num_nodes} ...`, "
            "or use hardware.num_nodes=1"
        )
    hosts = expand_nodelist(nodelist)
    allocated = int(_first(env, NODE_COUNT_VARS) or len(hosts))
    if allocated != num_nodes:
        raise ConfigError(
            f"hardware.num_nodes={num_nodes} but this Slurm job has {allocated} node(s) "
            f"({nodelist}); set hydra.launcher.nodes={num_nodes} or hardware.num_nodes={allocated}"
        )
    return Rendezvous(hosts[0], MAIN_PROCESS_PORT, int(rank), num_nodes)


def machine_rank(num_nodes: int, env: Mapping[str, str] | None = None) -> int:
    """0 on the node that tracks the run (always, for single-node runs)."""
    found = from_environment(num_nodes, env)
    return 0 if found is None else found.machine_rank


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compact host list to host names, in order: what `scontrol show hostnames` prints.

    `a[01-03,7],b-[1-2]-ib,c` -> a01 a02 a03 a7 b-1-ib b-2-ib c. Several bracket groups in one
    name expand as a product (`r[1-2]n[1-2]` -> r1n1 r1n2 r2n1 r2n2); zero padding is kept.
    """
    hosts: list[str] = []
    for name in _split_top_level(nodelist.strip()):
        parts = re.split(r"(\[[^\]]*\])", name)
        choices = [_expand_range(p[1:-1], nodelist) if p.startswith("[") else [p] for p in parts]
        hosts.extend("".join(combo) for combo in itertools.product(*choices))
    if not hosts:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r} names no host")
    return hosts


def _split_top_level(nodelist: str) -> list[str]:
    names, depth, start = [], 0, 0
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: unbalanced brackets")
        if char == "," and depth == 0:
            names.append(nodelist[start:i])
            start = i + 1
    if depth:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: unbalanced brackets")
    names.append(nodelist[start:])
    return [name for name in names if name]


def _expand_range(spec: str, nodelist: str) -> list[str]:
    out = []
    for item in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item.strip())
        if match is None:
            raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: cannot read range {item!r}")
        low, high = match.group(1), match.group(2) or match.group(1)
        width = len(low)
        out.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
    return out


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if env.get(name):
            return env[name]
    return None
