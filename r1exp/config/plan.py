"""The effective plan of a run: what the config implies once the hardware is applied.

Batch sizes are stated globally by recipes and split here, so the same recipe runs unchanged
on one 12 GB card or an 8-GPU node; only gradient accumulation changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from omegaconf import DictConfig

from r1exp.config.memory import (
    MemoryEstimate, VLLMShare, check_fit, estimate_for_plan, vllm_share,
)
from r1exp.config.stage import Stage
from r1exp import rendezvous
from r1exp.errors import ConfigError
from r1exp.resources import LAUNCHERS_DIR
from r1exp.rundir import RESOLVED_CONFIG

ACCELERATE_MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass(frozen=True)
class Plan:
    stage: str
    world_size: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    global_batch_size: int
    generation_devices: int
    launch_command: tuple[str, ...]
    # Peak memory per device, term by term (r1exp/config/memory.py); None: not checked.
    memory: MemoryEstimate | None = field(default=None, compare=False)
    # vLLM's reserved share on the GPUs it generates on; None: no vLLM on a GPU.
    vllm_memory: VLLMShare | None = field(default=None, compare=False)

    def render(self) -> str:
        """The lines `dry_run=true` prints (one `key: value` per line)."""
        lines = [f"{key}: {value}" for key, value in asdict(self).items()
                 if key not in ("launch_command", "memory", "vllm_memory")]
        lines.append("launch_command: " + " ".join(self.launch_command))
        if self.memory is not None:
            lines.append(self.memory.render())
        if self.vllm_memory is not None:
            lines.append(self.vllm_memory.render())
        return "\n".join(lines)


def make_plan(cfg: DictConfig, stage: Stage,
              resolved_yaml: str = f"<run_dir>/{RESOLVED_CONFIG}") -> Plan:
    """Derive world size and batch split from a validated config of `stage`; ConfigError if
    impossible."""
    hw = cfg.hardware
    devices = hw.num_nodes * hw.devices_per_node
    vllm = stage.vllm(cfg)
    generation_devices = vllm.devices * hw.num_nodes if vllm and vllm.server else 0
    world_size = devices - generation_devices
    if world_size < 1:
        raise ConfigError(
            f"hardware.vllm.server_devices={hw.vllm.server_devices} leaves no training device "
            f"out of {devices}; lower it or use hardware.vllm.mode=colocate"
        )
    if world_size > 1 and hw.distributed == "none":
        raise ConfigError(
            f"hardware.distributed=none with {world_size} training processes; "
            "choose one of: ddp, zero2, zero3"
        )
    per_device = hw.per_device_train_batch_size
    # Only the training stages compose `train`; another stage's batch is one pass of the devices.
    global_batch = cfg.train.global_batch_size if stage.training else world_size * per_device
    accumulation = 1
    memory = None
    if stage.training:
        accumulation = _accumulation(global_batch, world_size, per_device)
        stage.check_batch(cfg, global_batch)
        if hw.device_memory_gb is not None:  # fails here, before anything loads, if it can't fit
            memory = estimate_for_plan(cfg, stage, world_size, per_device, accumulation)
            check_fit(cfg, stage, memory, world_size, per_device, accumulation)
    return Plan(
        stage=stage.name,
        world_size=world_size,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        global_batch_size=global_batch,
        generation_devices=generation_devices,
        launch_command=launch_command(cfg, world_size, resolved_yaml),
        memory=memory,
        vllm_memory=vllm_share(cfg, vllm),
    )


def _accumulation(global_batch: int, world_size: int, per_device: int) -> int:
    step = world_size * per_device
    if global_batch < 1 or global_batch % step:
        lower = max(step, global_batch // step * step)
        raise ConfigError(
            f"train.global_batch_size={global_batch} is not divisible by world_size ({world_size}) "
            f"x hardware.per_device_train_batch_size ({per_device}) = {step}; "
            f"use train.global_batch_size={lower} or {lower + step}, "
            "or change hardware.per_device_train_batch_size"
        )
    return global_batch // step



def launch_command(cfg: DictConfig, world_size: int, resolved_yaml: str) -> tuple[str, ...]:
    """How the controller starts the stage's worker process(es)."""
    worker = ("-m", "r1exp.launch.worker", resolved_yaml)
    hw = cfg.hardware
    if world_size == 1 and hw.distributed == "none":
        return ("python", *worker)
    return (
        "accelerate", "launch",
        "--config_file", str(LAUNCHERS_DIR / "accelerate" / f"{hw.distributed}.yaml"),
        "--num_machines", str(hw.num_nodes),
        "--num_processes", str(world_size),
        # From the profile, not the launcher file: a DeepSpeed engine in bf16 under a Trainer
        # in fp32 or fp16 (such a profile with zero2/zero3) fails at start.
        "--mixed_precision", ACCELERATE_MIXED_PRECISION[hw.dtype],
        *_rendezvous_args(hw.num_nodes),
        *worker,
    )


def _rendezvous_args(num_nodes: int) -> tuple[str, ...]:
    """Main node and machine rank from Slurm's environment (r1exp/rendezvous.py).

    Outside a Slurm allocation (a dry run on a laptop) the flags are left out; the controller
    checks the rendezvous again before it starts anything and refuses without one.
    """
    try:
        found = rendezvous.from_environment(num_nodes)
    except ConfigError:
        return ()
    return found.accelerate_args() if found else ()
