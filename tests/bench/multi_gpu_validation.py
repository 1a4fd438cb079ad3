"""Multi-GPU validation: r1exp's real multi-process paths against one process, same global batch.

    python -m tests.bench.multi_gpu_validation --out /tmp/r1exp-2gpu            # 2 GPUs (~4 min)
    python -m tests.bench.multi_gpu_validation --gpus 4 --out /tmp/r1exp-4gpu   # 4 GPUs
    python -m tests.bench.multi_gpu_validation --cpu --out /tmp/r1exp-2cpu      # 2 gloo ranks

Every run is the `r1exp` CLI in a subprocess, so the controller starts the workers as users get
them: `python -m r1exp.launch.worker` for one process, `accelerate launch --config_file
launchers/accelerate/<ddp|zero2|zero3>.yaml --num_processes N …` for N. Runs (N = --gpus):

- sft-1p (reference), sft-ddp, sft-zero2, sft-zero3: SFT on generated arithmetic on N ranks,
  same seed, global batch and per-device batch, so each optimizer step sees the same
  micro-batches (global batch 32 of 8 per device: one process accumulates 4 micro-batches,
  each of N ranks 4/N);
- sft-2nodes: sft-ddp's run as a two-node Slurm job simulated on this host: two controllers, each
  seeing N/2 GPUs and the environment submitit gives the tasks of a `--nodes 2
  --ntasks-per-node 1` job, meet through r1exp's multi-node launch path (rendezvous from that
  environment, `accelerate launch --machine_rank ...`); compared with sft-ddp;
- grpo-ddp, grpo-1p: GRPO with transformers generation;
- grpo-server: GRPO in the `8xh100` layout on N GPUs: N-1 training ranks (ZeRO-2) and one GPU
  for the vLLM server the controller starts, weights pushed over NCCL, the policy check
  (`grpo.vllm_sync_check_steps`) every 2 steps. Needs vLLM (docs/vllm.md says how it travels).

The model is a random-weight Qwen2 built here from a config (no hub on the GPU machines), with
SmolLM2's tokenizer (`--tokenizer`); speed and the loss comparison do not depend on the
weights' values. Logging is `logger=none` (MLflow does not travel to the GPU machines); losses
come from `<run_dir>/model/trainer_state.json`, which rank 0 writes.

Step time and peak memory per rank are measured from outside the product code: a
`sitecustomize` on the workers' PYTHONPATH (written into the work dir, active only where
R1EXP_PROBE_DIR is set) adds a TrainerCallback to every Trainer, times GRPOTrainer's phases
(generation, rewards, training step) and writes one JSON per rank.

Loss agreement (explained in docs/scale-out.md, "Two-GPU validation"): the first logged loss is
computed before any update, from the same weights and the same micro-batches, so only the order
of the final sums differs: it must agree within FIRST_LOSS_RTOL. Later steps follow after
optimizer updates whose gradients were summed in another order (bf16 all-reduce vs local
accumulation; ZeRO also keeps fp32 master weights, which the one-process run in pure bf16 does
not), so they are held to the looser CURVE_RTOL. GRPO samples its completions per rank, so its
losses are not expected to agree and are reported only.

The device call (docs/scale-out.md) installs the carried wheels first. Prints the table last;
`--hand-back DIR` copies results.json, table.md and logs.tgz there (the device tool's $OUT).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# r1exp.stages.vllm_policy's log line for `grpo.vllm_sync_check_steps`
CHECK_LINE = re.compile(r"policy check at step (\d+): log-prob gap to the trainer (\S+), "
                        r"change since the start (\S+)")
DEFAULT_TOKENIZER = REPO_ROOT / ".gpu_val" / "tokenizer"
FIRST_LOSS_RTOL = 1e-3   # same weights and batches; only summation order differs
CURVE_RTOL = 2e-2        # a few bf16 roundings (2**-8 each) of gradients and updates, compounded
# NVLink multicast stays off on the shared multi-GPU hosts (device KINDS.md).
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1"}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# The GPU bundle has no flashinfer (the engine dies at start without this), and no network.
VLLM_OFFLINE = {"VLLM_USE_FLASHINFER_SAMPLER": "0", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}

# Model shapes: GPU (~47M parameters), CPU (tiny, only the logic). Vocabulary = the tokenizer's.
GPU_SHAPE = {"hidden_size": 512, "num_layers": 8, "num_attention_heads": 8, "num_kv_heads": 2,
             "intermediate_size": 1408}
CPU_SHAPE = {"hidden_size": 64, "num_layers": 2, "num_attention_heads": 4, "num_kv_heads": 2,
             "intermediate_size": 128}


@dataclass
class Run:
    name: str
    stage: str
    processes: int                     # training ranks plus any GPU the vLLM server takes
    distributed: str
    reference: str | None = None       # the run its losses are compared with
    exact: bool = True                 # whether the losses are expected to agree
    nodes: int = 1                     # >1: simulated Slurm nodes on this host
    vllm_server: bool = False          # one of the devices serves generation
    result: dict = field(default_factory=dict)


def runs_for(gpus: int) -> list[Run]:
    """In the order they run by default: a time budget cuts the tail."""
    runs = [
        Run("sft-1p", "sft", 1, "none"),
        Run("grpo-ddp", "grpo", gpus, "ddp", reference="grpo-1p", exact=False),
        Run("sft-zero2", "sft", gpus, "zero2", reference="sft-1p"),
        Run("sft-zero3", "sft", gpus, "zero3", reference="sft-1p"),
        Run("sft-ddp", "sft", gpus, "ddp", reference="sft-1p"),
        Run("grpo-1p", "grpo", 1, "none"),
    ]
    if gpus % 2 == 0:
        runs.append(Run("sft-2nodes", "sft", gpus, "ddp", reference="sft-ddp", nodes=2))
    if gpus >= 2:
        runs.append(Run("grpo-server", "grpo", gpus, "zero2", exact=False, vllm_server=True))
    return runs


def overrides(run: Run, model_dir: Path, shape: dict, vocab: int, params: float, cpu: bool,
              run_dir: Path) -> list[str]:
    """The r1exp command line of one run (as a user would type it)."""
    common = [
        "model=qwen2.5-0.5b-instruct", f"model.path={model_dir}", f"model.num_parameters={params}",
        *[f"model.architecture.{k}={v}" for k, v in shape.items()],
        f"model.architecture.vocab_size={vocab}",
        "logger=none", "seed=42", f"hydra.run.dir={run_dir}",
    ]
    if run.vllm_server:
        return [*common, *grpo_server_overrides(run)]
    common += ["hardware=cpu" if cpu else "hardware=1xh100",
               f"hardware.num_nodes={run.nodes}",
               f"hardware.devices_per_node={run.processes // run.nodes}",
               f"hardware.distributed={run.distributed}"]
    if run.stage == "sft":
        return [*common, "experiment=smoke-sft",
                # the smoke recipe holds out 8 rows for eval; no eval here, the whole train split
                "dataset.test_size=null", "dataset.max_samples=null",
                "train.learning_rate=2e-4",
                *(["hardware.per_device_train_batch_size=2", "train.global_batch_size=8",
                   "train.max_steps=3", "train.save_steps=3"] if cpu else
                  ["hardware.per_device_train_batch_size=8", "train.global_batch_size=32",
                   "train.max_steps=10", "train.save_steps=10"])]
    return [*common, "stage=grpo", *GRPO_REWARDS,
            *(["hardware.per_device_train_batch_size=2", "train.global_batch_size=8",
               "grpo.num_generations=4", "grpo.max_completion_length=8",
               "train.max_steps=2", "train.save_steps=2"] if cpu else
              # compiled generation would add ~30 s of compilation per run: not what is checked
              ["hardware.perf.compiled_generation=false",
               "hardware.per_device_train_batch_size=8", "train.global_batch_size=32",
               "grpo.num_generations=8", "grpo.max_completion_length=64",
               "train.max_steps=5", "train.save_steps=5"])]


# Rewards that need no math-verify (not on the GPU machines). A random-weight model never
# writes the format, but its word-level repetition (n-grams of 1) varies between completions,
# so advantages, and so gradients, are not all zero.
GRPO_REWARDS = ("reward=[format,repetition_penalty]", "reward.repetition_penalty.ngram_size=1")


def grpo_server_overrides(run: Run) -> list[str]:
    """The 8xh100 profile's GRPO layout (ZeRO-2 ranks + one vLLM server GPU) on run.processes
    GPUs: the global batch is 8 completions per training rank."""
    ranks = run.processes - 1
    return ["stage=grpo", *GRPO_REWARDS, "hardware=8xh100",
            f"hardware.devices_per_node={run.processes}",
            f"hardware.distributed={run.distributed}",
            "hardware.vllm.gpu_memory_utilization=0.5",
            # Liger's fused GRPO loss is not what this run checks; the vLLM bench runs without it
            "hardware.perf.liger_kernel=false",
            "hardware.per_device_train_batch_size=8", f"train.global_batch_size={8 * ranks}",
            "grpo.num_generations=8", "grpo.max_completion_length=128",
            "train.learning_rate=1e-4", "train.max_steps=10", "train.save_steps=10",
            "grpo.vllm_sync_check_steps=2"]


# --- the per-rank probe ---------------------------------------------------------------------

PROBE = r'''
# Written by tests/bench/multi_gpu_validation.py; active only where R1EXP_PROBE_DIR is set.
import os, sys, time

# GRPO's phases, timed per call (each includes what it calls: training_step holds
# _prepare_inputs, which holds _generate_and_score_completions on the steps that generate).
GRPO_PHASES = ("_generate", "_calculate_rewards", "_generate_and_score_completions",
               "_prepare_inputs", "training_step")
_phase_s = {}


def _now():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def _probe_trainer(module):
    import json
    from transformers.trainer_callback import TrainerCallback

    class StepProbe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.ends = [_now()]

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(_now())

        def on_train_end(self, args, state, control, **kwargs):
            import torch
            rank = int(os.environ.get("RANK", "0"))
            cuda = torch.cuda.is_available()
            record = {
                "rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                "device": torch.cuda.get_device_name() if cuda else "cpu",
                "global_step": state.global_step,
                "step_s": [b - a for a, b in zip(self.ends, self.ends[1:])],
                "phase_s": _phase_s,
                "peak_allocated_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
                "peak_reserved_gb": torch.cuda.max_memory_reserved() / 1e9 if cuda else None,
            }
            name = f"{os.environ.get('R1EXP_PROBE_RUN', 'run')}-rank{rank}.json"
            with open(os.path.join(os.environ["R1EXP_PROBE_DIR"], name), "w") as f:
                json.dump(record, f)

    original = module.Trainer.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(StepProbe())

    module.Trainer.__init__ = __init__


def _probe_grpo(module):
    import functools

    def timed(name, method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            start = _now()
            try:
                return method(*args, **kwargs)
            finally:
                _phase_s.setdefault(name, []).append(_now() - start)
        return wrapper

    for name in GRPO_PHASES:
        if hasattr(module.GRPOTrainer, name):
            setattr(module.GRPOTrainer, name, timed(name, getattr(module.GRPOTrainer, name)))


_PATCHES = {"transformers.trainer": _probe_trainer, "trl.trainer.grpo_trainer": _probe_grpo}


class _Hook:
    """Patches the modules in _PATCHES once they are imported."""

    def find_spec(self, name, path, target=None):
        if name not in _PATCHES:
            return None
        import importlib.machinery
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            _PATCHES[name](module)

        spec.loader.exec_module = patched
        return spec


if os.environ.get("R1EXP_PROBE_DIR"):
    sys.meta_path.insert(0, _Hook())
# A CPU rehearsal of a machine that lacks these packages: None in sys.modules makes `import`
# fail and importlib.util.find_spec return None, as for a package that is not installed.
for _name in filter(None, os.environ.get("R1EXP_PROBE_BLOCK", "").split(",")):
    sys.modules[_name] = None

# Chain to the sitecustomize this one shadows, if the interpreter has one.
_here = os.path.dirname(os.path.abspath(__file__))
for _p in sys.path:
    _f = os.path.join(_p or ".", "sitecustomize.py")
    if os.path.abspath(_p or ".") != _here and os.path.isfile(_f):
        exec(compile(open(_f).read(), _f, "exec"), {"__name__": "sitecustomize", "__file__": _f})
        break
'''


# --- building the model ---------------------------------------------------------------------

def build_model(model_dir: Path, tokenizer_dir: Path, shape: dict) -> tuple[int, float]:
    """A random-weight Qwen2 (fixed seed) with the carried tokenizer; returns (vocab, params)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = len(tokenizer)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_layers"], num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_kv_heads"], intermediate_size=shape["intermediate_size"],
        max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return vocab, float(model.num_parameters())


# --- running and reading --------------------------------------------------------------------

def run_one(args_list: list[str], env: dict, log_path: Path, limit_s: float) -> dict:
    """One `python -m r1exp …` in its own process group, killed whole if it outlives limit_s."""
    return run_together([(args_list, env, log_path)], limit_s)


def run_together(commands: list[tuple[list[str], dict, Path]], limit_s: float) -> dict:
    """Several `python -m r1exp …` at once (the nodes of one job), each in its own process
    group; all are killed with every rank they started if they outlive limit_s together.
    The return code is the first non-zero one."""
    start = time.perf_counter()
    procs, logs = [], []
    try:
        for args_list, env, log_path in commands:
            log = open(log_path, "w")
            logs.append(log)
            log.write("$ python -m r1exp " + " ".join(args_list) + "\n")
            log.flush()
            procs.append(subprocess.Popen([sys.executable, "-m", "r1exp", *args_list],
                                          cwd=REPO_ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(limit_s - (time.perf_counter() - start), 0)))
            except subprocess.TimeoutExpired:
                for other in procs:
                    if other.poll() is None:
                        os.killpg(other.pid, signal.SIGKILL)
                    other.wait()
                return {"returncode": "timeout", "wall_s": time.perf_counter() - start}
    finally:
        for log in logs:
            log.close()
    return {"returncode": next((c for c in codes if c != 0), 0),
            "wall_s": time.perf_counter() - start}


def node_commands(run: Run, cli: list[str], env: dict, logs: Path, cpu: bool,
                  job_id: str = "4242") -> list[tuple[list[str], dict, Path]]:
    """One controller per simulated node, with what Slurm and submitit give the tasks of a
    `--nodes N --ntasks-per-node 1` job (every node is this host) and its share of the GPUs."""
    if run.nodes == 1:
        return [(cli, env, logs / f"{run.name}.log")]
    per_node = run.processes // run.nodes
    hosts = ",".join(["localhost"] * run.nodes)
    commands = []
    for node in range(run.nodes):
        task = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": job_id, "SLURM_JOBID": job_id,
                "SLURM_JOB_NODELIST": hosts, "SLURM_NODELIST": hosts,
                "SLURM_JOB_NUM_NODES": str(run.nodes), "SLURM_NNODES": str(run.nodes),
                "SLURM_NTASKS": str(run.nodes), "SLURM_NPROCS": str(run.nodes),
                "SLURM_NTASKS_PER_NODE": "1", "SLURM_NODEID": str(node),
                "SLURM_PROCID": str(node), "SLURM_LOCALID": "0"}
        if not cpu:
            task["CUDA_VISIBLE_DEVICES"] = ",".join(
                str(gpu) for gpu in range(node * per_node, (node + 1) * per_node))
        name = f"{run.name}.log" if node == 0 else f"{run.name}.node{node}.log"
        commands.append((cli, {**env, **task}, logs / name))
    return commands


def read_results(run: Run, run_dir: Path, probe_dir: Path, log_path: Path) -> dict:
    state_file = run_dir / "model" / "trainer_state.json"
    history = json.loads(state_file.read_text())["log_history"] if state_file.is_file() else []
    losses = {e["step"]: e["loss"] for e in history if "loss" in e}
    ranks = sorted((json.loads(p.read_text()) for p in probe_dir.glob(f"{run.name}-rank*.json")),
                   key=lambda r: r["rank"])
    metrics_file = run_dir / "metrics.json"
    log = log_path.read_text(errors="replace") if log_path.is_file() else ""
    return {
        # logger=none: the policy checks' metrics reach MLflow only; their lines are in the log
        "sync_checks": [{"step": int(m[1]), "gap": float(m[2]), "change": float(m[3])}
                        for m in CHECK_LINE.finditer(log)],
        "losses": losses,
        "loss_points": sum(1 for e in history if "loss" in e),
        "rewards": {e["step"]: e["reward"] for e in history if "reward" in e},
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        "status": ((run_dir / "status").read_text().strip() if (run_dir / "status").is_file()
                   else "-"),
        "ranks": [{
            "rank": r["rank"], "world_size": r["world_size"], "device": r["device"],
            "steps": r["global_step"],
            "first_step_s": r["step_s"][0] if r["step_s"] else None,
            # the first step pays for warm-up (allocator, kernels); the rest is the steady state
            "median_step_s": statistics.median(r["step_s"][1:]) if len(r["step_s"]) > 1 else None,
            "peak_allocated_gb": r["peak_allocated_gb"], "peak_reserved_gb": r["peak_reserved_gb"],
            "phases": {name: {"calls": len(times), "median_s": statistics.median(times),
                              "total_s": sum(times)}
                       for name, times in r.get("phase_s", {}).items() if times},
        } for r in ranks],
    }


def compare(run: Run, by_name: dict[str, Run]) -> dict | None:
    ref = by_name.get(run.reference) if run.reference else None
    if ref is None or not run.result.get("losses") or not ref.result.get("losses"):
        return None
    mine, theirs = run.result["losses"], ref.result["losses"]
    steps = sorted(set(mine) & set(theirs))
    rel = {s: abs(mine[s] - theirs[s]) / max(abs(theirs[s]), 1e-12) for s in steps}
    first, later = rel[steps[0]], max((rel[s] for s in steps[1:]), default=0.0)
    if run.exact:
        verdict = "agree" if first <= FIRST_LOSS_RTOL and later <= CURVE_RTOL else "DIFFER"
    else:  # GRPO: each rank samples its own completions; its loss is ~0 by construction
        verdict = (f"reported only (sampling differs per rank): mean reward "
                   f"{fmt(mean_reward(run))} vs {fmt(mean_reward(ref))}")
    return {"reference": ref.name, "steps": steps, "first_step_rel": first,
            "later_max_rel": later, "verdict": verdict,
            "this": [mine[s] for s in steps], "reference_losses": [theirs[s] for s in steps]}


def mean_reward(run: Run) -> float | None:
    rewards = run.result.get("rewards")
    return statistics.fmean(rewards.values()) if rewards else None


def fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def table(runs: list[Run], device: str) -> str:
    header = ("| run | world size | steps | wall time (s) | s/step (median after step 1) "
              "| first step (s) | peak GPU memory allocated per rank (GB) | loss points / distinct "
              "steps | run status | first loss | loss vs 1 process |")
    lines = [f"device: {device}", "", header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        r = run.result
        if "skipped" in r:
            lines.append(f"| {run.name} | {run.processes} | not run: {r['skipped']} "
                         "| | | | | | | | |")
            continue
        ranks = r.get("ranks", [])
        per_rank = " / ".join(fmt(x["peak_allocated_gb"], ".2f") for x in ranks) or "-"
        median = " / ".join(fmt(x["median_step_s"]) for x in ranks) or "-"
        first_step = " / ".join(fmt(x["first_step_s"], ".2f") for x in ranks) or "-"
        losses = r.get("losses", {})
        cmp = r.get("comparison")
        cmp_text = "-" if cmp is None else cmp["verdict"] if not run.exact else (
            f"{cmp['verdict']}: step 1 rel {cmp['first_step_rel']:.1e}, "
            f"later max rel {cmp['later_max_rel']:.1e} (vs {cmp['reference']})")
        status = r.get("status", "-")
        if r.get("returncode") not in (0, None):
            status = f"{status} (exit {r['returncode']})"
        lines.append(
            f"| {run.name} | {len(ranks) or run.processes} | "
            f"{r.get('metrics', {}).get('train/global_step', '-')} | {r['wall_s']:.1f} | "
            f"{median} | {first_step} | {per_rank} | {r.get('loss_points', 0)} / {len(losses)} | "
            f"{status} | {fmt(losses[min(losses)], '.4f') if losses else '-'} | {cmp_text} |")
    phase_lines = [f"| {run.name} | {rank['rank']} | {name} | {p['calls']} | {p['median_s']:.3f} "
                   f"| {p['total_s']:.2f} |"
                   for run in runs for rank in run.result.get("ranks", [])
                   for name, p in rank.get("phases", {}).items()]
    check_lines = [f"| {run.name} | {c['step']} | {c['gap']:.2e} | {c['change']:.2e} |"
                   for run in runs for c in run.result.get("sync_checks", [])]
    if check_lines:
        lines += ["", "| run | vLLM policy check at step | log-prob gap to the trainer "
                  "| change since the start |", "|---|---|---|---|", *check_lines]
    if phase_lines:
        lines += ["", "| run | rank | GRPO phase | calls | median (s) | total (s) |",
                  "|---|---|---|---|---|---|", *phase_lines]
    return "\n".join(lines)


def device_name(cpu: bool) -> str:
    if cpu:
        return "cpu"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                              "--format=csv,noheader"],
                             check=False, capture_output=True, text=True,
                             timeout=30).stdout.strip()
        return "; ".join(out.splitlines()) or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "trl", "accelerate", "datasets", "deepspeed",
                 "liger-kernel", "hydra-core", "vllm"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/r1exp-2gpu"))
    parser.add_argument("--cpu", action="store_true", help="gloo ranks and a tiny model")
    parser.add_argument("--gpus", type=int, default=2,
                        help="devices of the multi-process runs (CPU: gloo ranks)")
    parser.add_argument("--runs", default=None, help="comma-separated, run in this order: "
                        + ", ".join(r.name for r in runs_for(4)))
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    parser.add_argument("--budget-s", type=float, default=400.0, help="for all runs together")
    parser.add_argument("--run-limit-s", type=float, default=150.0, help="for any one run")
    parser.add_argument("--min-run-s", type=float, default=60.0,
                        help="start no run with less than this left of the budget")
    parser.add_argument("--block-imports", default="",
                        help="comma-separated modules the workers must not need (CPU rehearsal "
                             "of the GPU machine, e.g. mlflow,math_verify,deepspeed)")
    parser.add_argument("--override", action="append", default=[],
                        help="an r1exp override added to every run (repeatable)")
    parser.add_argument("--hand-back", type=Path, default=None,
                        help="copy results.json, table.md and logs.tgz here")
    args = parser.parse_args(argv)

    known = runs_for(args.gpus)
    # On CPU: no ZeRO (validation refuses bf16 there) and no vLLM server (its weight sync is NCCL)
    default = [r.name for r in known
               if not (args.cpu and (r.distributed.startswith("zero") or r.vllm_server))]
    wanted = args.runs.split(",") if args.runs else default
    unknown = set(wanted) - {r.name for r in known}
    if unknown:
        parser.error(f"unknown runs {sorted(unknown)}; choose from {[r.name for r in known]}")
    runs = [next(r for r in known if r.name == name) for name in wanted]  # in the order given

    started = time.perf_counter()
    work = args.out.resolve()
    probe_dir, logs = work / "probe", work / "logs"
    for d in (probe_dir, logs):
        d.mkdir(parents=True, exist_ok=True)
    (probe_dir / "sitecustomize.py").write_text(PROBE)
    shape = CPU_SHAPE if args.cpu else GPU_SHAPE
    model_dir = work / "model"
    vocab, params = build_model(model_dir, args.tokenizer, shape)
    print(f"model: random Qwen2 {shape}, vocab {vocab}, {params / 1e6:.1f}M parameters", flush=True)

    env = {**os.environ, **NO_MULTICAST, **OFFLINE, **VLLM_OFFLINE, "PYTHONUNBUFFERED": "1",
           "R1EXP_PROBE_DIR": str(probe_dir), "R1EXP_CACHE_DIR": str(work / "cache"),
           "R1EXP_PROBE_BLOCK": args.block_imports,
           "PYTHONPATH": os.pathsep.join(p for p in (str(probe_dir), str(REPO_ROOT),
                                                     os.environ.get("PYTHONPATH")) if p)}
    for run in runs:
        left = args.budget_s - (time.perf_counter() - started)
        if left < args.min_run_s:
            run.result = {"skipped": f"time budget ({args.budget_s:.0f} s) spent"}
            continue
        run_dir = work / "runs" / run.name
        # A run dir left by an earlier call would be resumed (or refused) by r1exp: start clean.
        shutil.rmtree(run_dir, ignore_errors=True)
        for stale in probe_dir.glob(f"{run.name}-rank*.json"):
            stale.unlink()
        cli = [*overrides(run, model_dir, shape, vocab, params, args.cpu, run_dir), *args.override]
        print(f"[{time.perf_counter() - started:6.1f}s] {run.name}: starting", flush=True)
        commands = node_commands(run, cli, {**env, "R1EXP_PROBE_RUN": run.name}, logs, args.cpu)
        run.result = run_together(commands, min(left, args.run_limit_s))
        run.result.update(read_results(run, run_dir, probe_dir, commands[0][2]))
        print(f"[{time.perf_counter() - started:6.1f}s] {run.name}: exit "
              f"{run.result['returncode']}, {run.result['wall_s']:.1f} s, losses "
              f"{[round(v, 4) for v in run.result['losses'].values()]}", flush=True)
    by_name = {r.name: r for r in runs}
    for run in runs:
        if "skipped" not in run.result:
            run.result["comparison"] = compare(run, by_name)

    device = device_name(args.cpu)
    report = table(runs, device)
    results = {"device": device, "versions": versions(), "model": {**shape, "vocab": vocab,
               "parameters": params}, "tolerances": {"first_loss_rtol": FIRST_LOSS_RTOL,
               "curve_rtol": CURVE_RTOL},
               "runs": {r.name: {"stage": r.stage, "processes": r.processes,
                                 "distributed": r.distributed, **r.result} for r in runs},
               "total_s": time.perf_counter() - started}
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (work / "table.md").write_text(report + "\n")
    if args.hand_back:
        hand_back(work, args.hand_back)
    print(json.dumps({"versions": results["versions"], "total_s": round(results["total_s"], 1)}))
    print(report)
    ok = all(r.result.get("returncode") == 0 and (r.result.get("comparison") or {}).get(
        "verdict") != "DIFFER" for r in runs if "skipped" not in r.result)
    return 0 if ok else 1


def hand_back(work: Path, dest: Path) -> None:
    """results.json, table.md and one tarball of logs and small run files (no weights)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "table.md"):
        shutil.copy(work / name, dest / name)
    small = ("*.log", "*.json", "*.yaml", "status", "*.txt")
    with tarfile.open(dest / "logs.tgz", "w:gz") as tar:
        for pattern in small:
            for path in sorted(work.rglob(pattern)):
                skip = ("checkpoint-" in str(path) or path.name == "tokenizer.json"
                        or dest.resolve() in path.resolve().parents)
                if not skip and path.stat().st_size < 5_000_000:
                    tar.add(path, arcname=str(path.relative_to(work)))


if __name__ == "__main__":
    sys.exit(main())
