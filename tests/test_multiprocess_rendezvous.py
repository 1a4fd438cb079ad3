"""Multi-node rendezvous from Slurm's environment, and the launch command it produces."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from test_config import CONF

from r1exp.stages import make_plan, validate
from r1exp.errors import ConfigError
from r1exp.rendezvous import (
    PORT_RANGE, allocation_hosts, from_environment, main_process_port, slurm_job,
)

SLURM_VARS = ("SUBMITIT_EXECUTOR", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
              "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_NODEID", "SLURM_PROCID",
              "SLURM_JOB_NUM_NODES", "SLURM_NNODES", "MASTER_PORT")


@pytest.fixture
def slurm_env(monkeypatch):
    """Set this job's Slurm variables (and only those) as a node of an allocation sees them."""
    for var in SLURM_VARS:
        monkeypatch.delenv(var, raising=False)

    def set_vars(**values: str) -> None:
        for var, value in values.items():
            monkeypatch.setenv(var, value)

    return set_vars


def hosts_of(slurm_env, nodelist: str) -> list[str]:
    slurm_env(SLURM_JOB_NODELIST=nodelist)
    return allocation_hosts(slurm_job())


# The regression cases of r1exp's own nodelist parser, now answered by submitit's.
@pytest.mark.parametrize("nodelist,hosts", [
    ("gpu07", ["gpu07"]),
    ("gpu[07-09]", ["gpu07", "gpu08", "gpu09"]),
    ("gpu[07-08,11],login1", ["gpu07", "gpu08", "gpu11", "login1"]),
    ("a[8-10]", ["a8", "a9", "a10"]),
    ("b-[1-2]-ib", ["b-1-ib", "b-2-ib"]),
    ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
    ("x[1],y[3-4]", ["x1", "y3", "y4"]),
])
def test_nodelist_expands_as_slurm_writes_it(nodelist, hosts, slurm_env):
    assert hosts_of(slurm_env, nodelist) == hosts


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="scontrol is not installed")
@pytest.mark.parametrize("nodelist", ["gpu[07-08,11],login1", "r[1-2]n[01-02]", "a[8-10]",
                                      "x[1],y[3-4]", "gpu[098-101]"])
def test_nodelist_expansion_agrees_with_scontrol(nodelist, tmp_path, slurm_env):
    # `scontrol show hostnames` parses locally; it only needs some slurm.conf to start.
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=t\nSlurmctldHost=localhost\nNodeName=localhost CPUs=1\n"
                    "PartitionName=p Nodes=localhost\n")
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                         text=True, timeout=30, env={**os.environ, "SLURM_CONF": str(conf)})
    assert out.returncode == 0, out.stderr
    assert hosts_of(slurm_env, nodelist) == out.stdout.split()


@pytest.mark.parametrize("bad", ["gpu[07-", "gpu[a-b]", "gpu]0[", "a,,b"])
def test_bad_nodelist_is_a_config_error(bad, slurm_env):
    with pytest.raises(ConfigError, match="SLURM_JOB_NODELIST"):
        hosts_of(slurm_env, bad)


def test_single_node_needs_no_rendezvous(slurm_env):
    assert from_environment(1) is None


def test_second_node_of_a_slurm_job(slurm_env):
    slurm_env(SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="gpu[07-08]", SLURM_NODEID="1",
              SLURM_JOB_NUM_NODES="2")
    found = from_environment(2)
    assert (found.main_process_ip, found.machine_rank, found.num_machines) == ("gpu07", 1, 2)
    assert found.accelerate_args() == ("--main_process_ip", "gpu07", "--main_process_port",
                                       str(found.main_process_port), "--machine_rank", "1")


def test_every_node_of_a_job_derives_the_same_port_and_master_port_wins(slurm_env):
    slurm_env(SLURM_JOB_ID="4242")
    port = main_process_port("4242")
    assert PORT_RANGE[0] <= port <= PORT_RANGE[1]
    assert port == main_process_port("4242")  # what the other node computes
    assert {main_process_port(str(job)) for job in range(4240, 4250)} != {port}
    from submitit.helpers import TorchDistributedEnvironment  # the rule this follows

    slurm_env(SUBMITIT_EXECUTOR="slurm")
    assert TorchDistributedEnvironment().master_port == port
    slurm_env(MASTER_PORT="29511")
    assert main_process_port("4242") == 29511


def test_a_plain_sbatch_job_without_submitit_variables_still_finds_its_nodes(slurm_env):
    slurm_env(SLURM_JOB_ID="77", SLURM_JOB_NODELIST="n[1-3]", SLURM_NODEID="2",
              SLURM_JOB_NUM_NODES="3")
    assert from_environment(3).machine_rank == 2


def test_multi_node_outside_slurm_says_how_to_submit(slurm_env):
    with pytest.raises(ConfigError, match=r"hardware.num_nodes=2 needs a Slurm allocation"):
        from_environment(2)


def test_allocation_size_must_match_the_profile(slurm_env):
    slurm_env(SLURM_JOB_ID="5", SLURM_JOB_NODELIST="gpu07", SLURM_NODEID="0",
              SLURM_JOB_NUM_NODES="1")
    with pytest.raises(ConfigError, match=r"hydra.launcher.nodes=2"):
        from_environment(2)


def _plan(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/tmp/r1exp-rdzv", *overrides])
    return make_plan(validate(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))))


def test_two_node_launch_command_names_the_main_node(slurm_env):
    slurm_env(SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="h100-[3-4]", SLURM_NODEID="1",
              SLURM_JOB_NUM_NODES="2")
    port = main_process_port("4242")
    plan = _plan(["hardware=8xh100", "hardware.num_nodes=2", "stage=grpo",
                  "train.global_batch_size=224", "grpo.num_generations=8"])
    command = " ".join(plan.launch_command)
    assert plan.world_size == 14  # 2 x (8 GPUs - 1 vLLM server GPU)
    assert "--num_machines 2 --num_processes 14" in command
    assert f"--main_process_ip h100-3 --main_process_port {port} --machine_rank 1" in command


def test_cpu_ddp_uses_the_ddp_launcher_without_rendezvous(slurm_env):
    plan = _plan(["hardware.devices_per_node=2", "hardware.distributed=ddp",
                  "hardware.per_device_train_batch_size=2", "train.global_batch_size=8"])
    command = plan.launch_command
    assert command[:2] == ("accelerate", "launch") and command[3].endswith("ddp.yaml")
    assert "--main_process_ip" not in command and "--num_processes" in command
