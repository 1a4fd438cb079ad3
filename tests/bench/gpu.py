"""GPU benchmark: r1exp's profile against plain TRL, and the memory estimate against the card.

    python -m tests.bench.gpu                     # every part, on a GPU machine (~15 min cold)
    python -m tests.bench.gpu --parts sft,grpo    # some parts (sft, grpo, grpo-vllm, memory)
    python -m tests.bench.gpu --explore           # plus one variant per single lever
    python -m tests.bench.gpu --tiny              # CPU and a tiny model: the bench's logic only
    python -m tests.bench.gpu --report a.json b.json   # table + JSON from saved results

Each variant runs in a process of its own (tests/bench/gpu_workloads.py), so compilation
caches, CUDA graphs and allocator state never leak between them and each peak is its own.
Random-weight models of the conf/model shapes; generation lengths fixed; ratios are taken
only between variants of one invocation (machines differ a lot, docs/performance.md).

Prints the tables, then one JSON line: sft_tok_s, sft_mfu, sft_speedup (r1exp's 1xh100 profile,
packed, against the faster of plain TRL padded / packed), grpo_step_s, grpo_speedup_on_policy
(same generation batch and sampling as plain TRL), grpo_speedup (with 4 optimizer steps per
generation batch: same completions per step), memory (measured vs estimated GB per run).
grpo-vllm: r1exp's GRPO beside plain TRL with use_vllm=True, vllm_mode="colocate" (the peer
open-r1's users run) on 16 x 256 and 256 x 1024 (R1-style) completions per step, with the
step's phases; needs vLLM (the GPU bundle, docs/vllm.md). JSON keys, for workload grpo (16 x
256) and grpo_long: <workload>_peer_step_s, <workload>_<variant>_step_s and _speedup (peer /
r1exp) for variant graphs (the 1xh100 profile: graph-recorded transformers generation), vllm
(vLLM colocated) and vllm_text (vLLM without the token-ids lever), <workload>_phases.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tests.bench.gpu_workloads import REPO_ROOT, Variant
from r1exp.launch.allocator import for_vllm
from r1exp.resources import CONF_DIR

PARTS = ("sft", "sft-large", "grpo", "grpo-vllm", "grpo-vllm-levers", "memory")
# Per GRPO workload: the peer open-r1's users run (plain TRL, use_vllm=True, colocate), and
# r1exp's variants against it: its 1xh100 profile as shipped (graph-recorded transformers
# generation), with vLLM colocated, and with vLLM returning text (the token-ids lever off).
WORKLOADS = {
    "grpo": ("grpo_trl_vllm", {"graphs": "grpo_r1exp_on_policy", "vllm": "grpo_r1exp_vllm",
                               "vllm_text": "grpo_r1exp_vllm_text"}),
    "grpo_long": ("grpo_long_trl_vllm", {"graphs": "grpo_long_r1exp",
                                         "vllm": "grpo_long_r1exp_vllm",
                                         "vllm_text": "grpo_long_r1exp_vllm_text"}),
}
# GRPO's step, split (gpu_workloads._phase_timer): seconds per optimizer step
PHASES = ("weight_sync", "generation", "rewards", "scoring_logprobs", "loss_forward",
          "backward", "optimizer_and_rest")
BUDGET_S = 560          # a device call may run 600 s; leave room for the report
VARIANT_LIMIT_S = 330   # one variant never takes more than this (flex compiles ~3 min cold)
SMALLER = "qwen2.5-0.5b-instruct"
LARGER = "qwen2.5-1.5b-instruct"


def catalog(tiny: bool, explore: bool) -> dict[str, list[Variant]]:
    """Every variant, by part. Speed variants also give memory points."""
    sft = dict(kind="sft", seq=128 if tiny else 2048, batch=4 if tiny else 8)
    grpo = dict(kind="grpo", seq=16 if tiny else 256, batch=8 if tiny else 16,
                generations=4 if tiny else 8, prompt_tokens=8 if tiny else 64)
    # R1-style: 32 prompts x 8 completions x 1024 tokens per optimizer step, in micro-batches
    # of 8 (the generation batch is the 256 completions of the whole accumulation)
    long = dict(kind="grpo", seq=24 if tiny else 1024, batch=4 if tiny else 8,
                accumulation=2 if tiny else 32, generations=4 if tiny else 8,
                prompt_tokens=8 if tiny else 128)
    # the 1.5B shape, packed, beside plain TRL with Liger and packing (issue: >= 50% MFU)
    large_sft = dict(kind="sft", model=LARGER, seq=128 if tiny else 2048, batch=4 if tiny else 8)
    quick = dict(warmup=1, measure=2) if tiny else {}
    no_compile = ["hardware.perf.compiled_generation=false"]
    parts = {
        "sft": [
            Variant("sft_trl_padded", side="trl", packing=False, **sft, **quick),
            Variant("sft_trl_packed", side="trl", packing=True, **sft, **quick),
            Variant("sft_r1exp", **sft, **quick),
        ],
        "sft-large": [
            # Liger is Triton: CUDA only, so the tiny CPU run checks the rest of the variant
            Variant("sft_large_trl_liger", side="trl", packing=True, liger=not tiny,
                    **large_sft, **quick),
            Variant("sft_large_r1exp", **large_sft, **quick),
        ],
        "grpo": [
            Variant("grpo_trl", side="trl", **grpo, **(quick or dict(warmup=1, measure=3))),
            Variant("grpo_r1exp_on_policy", **grpo, **(quick or dict(warmup=2, measure=4))),
            Variant("grpo_r1exp_best", steps_per_generation=4, **grpo,
                    **(dict(warmup=4, measure=4) if tiny else dict(warmup=4, measure=8))),
        ],
        "grpo-vllm": [
            Variant("grpo_trl_vllm", side="trl", vllm=True, **grpo,
                    **(quick or dict(warmup=2, measure=5))),
            Variant("grpo_r1exp_vllm", vllm=True, **grpo, **(quick or dict(warmup=2, measure=5))),
            Variant("grpo_long_trl_vllm", side="trl", vllm=True, **long,
                    **(quick or dict(warmup=1, measure=3))),
            Variant("grpo_long_r1exp_vllm", vllm=True, **long,
                    **(quick or dict(warmup=1, measure=3))),
            Variant("grpo_long_r1exp", **long, **(quick or dict(warmup=1, measure=3))),
        ],
        "grpo-vllm-levers": [  # r1exp with vLLM detokenizing and per-token log-prob objects
            Variant("grpo_r1exp_vllm_text", vllm=True, vllm_sampling={}, **grpo,
                    **(quick or dict(warmup=2, measure=5))),
            Variant("grpo_long_r1exp_vllm_text", vllm=True, vllm_sampling={}, **long,
                    **(quick or dict(warmup=1, measure=3))),
        ],
        "memory": [  # sft runs here use r1exp's default unpacked (padded) batches
            Variant("mem_sft_0.5b_ckpt", packing=False, gradient_checkpointing=True,
                    role="memory", **sft, **(quick or dict(warmup=0, measure=3))),
            Variant("mem_sft_1.5b", model=LARGER, packing=False, role="memory",
                    **sft, **(quick or dict(warmup=0, measure=3))),
            Variant("mem_sft_1.5b_ckpt", model=LARGER, packing=False,
                    gradient_checkpointing=True, role="memory", **sft,
                    **(quick or dict(warmup=0, measure=3))),
            Variant("mem_grpo_0.5b_ckpt_beta", gradient_checkpointing=True, beta=0.04,
                    role="memory", **grpo, **(quick or dict(warmup=0, measure=2))),
            Variant("mem_grpo_1.5b", model=LARGER, role="memory",
                    **grpo, **(quick or dict(warmup=0, measure=2))),
            Variant("mem_grpo_1.5b_ckpt_beta", model=LARGER, gradient_checkpointing=True,
                    beta=0.04, role="memory", **grpo, **(quick or dict(warmup=0, measure=2))),
        ],
    }
    if explore:
        parts["sft"] += [
            Variant("sft_r1exp_padded", packing=False, **sft, **quick),
            Variant("sft_r1exp_no_liger", overrides=["hardware.perf.liger_kernel=false"],
                    **sft, **quick),
            Variant("sft_r1exp_compile", overrides=["hardware.perf.torch_compile=true"],
                    **sft, **quick),
            Variant("sft_r1exp_compile_no_liger", overrides=[
                "hardware.perf.torch_compile=true", "hardware.perf.liger_kernel=false"],
                **sft, **quick),
        ]
        parts["memory"] += [  # other shapes of batch, sequence, adapters, generation
            Variant("val_sft_1.5b_seq4096_ckpt", model=LARGER, packing=False,
                    gradient_checkpointing=True, role="memory",
                    **{**sft, "seq": 256 if tiny else 4096, "batch": 4}, warmup=0, measure=3),
            Variant("val_sft_0.5b_pdb16_seq1024", packing=False, role="memory",
                    **{**sft, "seq": 128 if tiny else 1024, "batch": 16}, warmup=0, measure=3),
            Variant("val_sft_1.5b_lora", model=LARGER, packing=False, role="memory",
                    overrides=["train.lora.enabled=true"], **{**sft, "batch": 4},
                    warmup=0, measure=3),
            Variant("val_grpo_0.5b_spg8_c512", steps_per_generation=8, role="memory",
                    **{**grpo, "seq": 32 if tiny else 512}, warmup=0, measure=2),
            Variant("val_grpo_1.5b_pdb8_c512_ckpt", model=LARGER, gradient_checkpointing=True,
                    role="memory", **{**grpo, "seq": 32 if tiny else 512, "batch": 8},
                    warmup=0, measure=2),
        ]
        parts["grpo-vllm"] += [  # r1exp's vLLM worker with the profile's allocator setting
            Variant("grpo_r1exp_vllm_expandable", vllm=True,
                    alloc_conf="expandable_segments:True", **grpo,
                    **(quick or dict(warmup=2, measure=5))),
        ]
        parts["grpo"] += [
            Variant("grpo_r1exp_uncompiled", overrides=no_compile, **grpo,
                    **(quick or dict(warmup=1, measure=3))),
            Variant("grpo_r1exp_spg8", steps_per_generation=8, **grpo,
                    **(dict(warmup=8, measure=8))),
        ]
    if tiny:
        for variants in parts.values():
            for v in variants:
                v.model = SMALLER  # the tiny architecture overrides its shape
    return parts


def run_all(variants: list[Variant], out: Path, tiny: bool, budget_s: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    deadline = time.monotonic() + budget_s
    for variant in variants:
        left = deadline - time.monotonic()
        if left < 45:
            results[variant.name] = {"name": variant.name, "error": "skipped: time budget"}
            continue
        started = time.monotonic()
        results[variant.name] = _spawn(variant, out, tiny, min(left, VARIANT_LIMIT_S))
        results[variant.name]["wall_s"] = round(time.monotonic() - started, 1)
        _attach_peak(results)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"[{time.strftime('%H:%M:%S')}] {variant.name}: "
              f"{_short(results[variant.name])}", flush=True)
    return results


def _attach_peak(results: dict) -> None:
    """Each run's MFU is against the matmul rate measured in the same invocation."""
    peak = (results.get("matmul") or {}).get("bf16_tflops")
    for r in results.values():
        if peak and "variant" in r:
            r.setdefault("bf16_tflops", peak)


def _spawn(variant: Variant, out: Path, tiny: bool, limit_s: float) -> dict:
    work = out / variant.name
    work.mkdir(parents=True, exist_ok=True)
    result_file, log_file = work / "result.json", out / f"{variant.name}.log"
    argv = [sys.executable, "-m", "tests.bench.gpu", "--one", json.dumps(asdict(variant)),
            "--out", str(work), "--result", str(result_file)] + (["--tiny"] if tiny else [])
    with open(log_file, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                env=_environment(variant), start_new_session=True)
        try:
            code = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"name": variant.name, "error": f"timeout after {limit_s:.0f} s"}
    if code != 0 or not result_file.is_file():
        tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
        return {"name": variant.name, "error": f"exit {code}: " + " | ".join(tail)[-400:]}
    return json.loads(result_file.read_text())


def _environment(variant: Variant) -> dict[str, str]:
    """r1exp runs get the profile's environment (as its controller sets it); plain TRL none."""
    from omegaconf import OmegaConf

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    if variant.side == "r1exp":
        profile = OmegaConf.load(CONF_DIR / "hardware" / "1xh100.yaml")
        env.update({k: str(v) for k, v in profile.env.items()})
        if variant.vllm:  # as the controller starts a worker that hosts a vLLM engine
            env = for_vllm(env)
    if variant.alloc_conf is not None:
        env["PYTORCH_CUDA_ALLOC_CONF"] = variant.alloc_conf
    return env


def _short(result: dict) -> str:
    if "error" in result:
        return result["error"][:300]
    keys = ("tokens_per_s", "step_s", "peak_gb", "estimate_gb", "bf16_tflops", "first_steps_s")
    return ", ".join(f"{k}={result[k]:.4g}" for k in keys if isinstance(result.get(k), float))


# --- report ------------------------------------------------------------------------------------


def summary(results: dict) -> dict:
    """The final JSON line's numbers."""
    matmul = _first(results, "matmul")
    peak = matmul.get("bf16_tflops")
    out: dict = {"device": matmul.get("device"), "bf16_tflops": _round(peak)}
    sft = results.get("sft_r1exp", {})
    baselines = [results[n] for n in ("sft_trl_padded", "sft_trl_packed")
                 if results.get(n, {}).get("tokens_per_s")]
    if sft.get("tokens_per_s"):
        out["sft_tok_s"] = round(sft["tokens_per_s"])
        out["sft_mfu"] = _round(_mfu(sft, peak))
        if baselines:
            base = max(baselines, key=lambda r: r["tokens_per_s"])
            out["sft_baseline"] = base["name"]
            out["sft_baseline_tok_s"] = round(base["tokens_per_s"])
            out["sft_speedup"] = _round(sft["tokens_per_s"] / base["tokens_per_s"])
    large, large_peer = results.get("sft_large_r1exp", {}), results.get("sft_large_trl_liger", {})
    if large.get("tokens_per_s"):
        out["sft_large_tok_s"] = round(large["tokens_per_s"])
        out["sft_large_mfu"] = _round(_mfu(large, peak))
        if large_peer.get("tokens_per_s"):
            out["sft_large_peer_mfu"] = _round(_mfu(large_peer, peak))
            out["sft_large_speedup"] = _round(large["tokens_per_s"] / large_peer["tokens_per_s"])
    base = results.get("grpo_trl", {}).get("step_s")
    for key, name in (("grpo_on_policy_step_s", "grpo_r1exp_on_policy"),
                      ("grpo_step_s", "grpo_r1exp_best")):
        step = results.get(name, {}).get("step_s")
        if step:
            out[key] = _round(step)
    if base:
        out["grpo_baseline_step_s"] = _round(base)
        if out.get("grpo_on_policy_step_s"):
            out["grpo_speedup_on_policy"] = _round(base / out["grpo_on_policy_step_s"])
        if out.get("grpo_step_s"):
            out["grpo_speedup"] = _round(base / out["grpo_step_s"])
    for workload, (peer, variants) in WORKLOADS.items():
        peer_s = results.get(peer, {}).get("step_s")
        steps = {label: results.get(name, {}).get("step_s") for label, name in variants.items()}
        if peer_s:
            out[f"{workload}_peer_step_s"] = _round(peer_s)
            out[f"{workload}_phases"] = {peer: phase_row(results[peer])}
        for label, name in variants.items():
            if steps[label] and peer_s:
                out[f"{workload}_{label}_step_s"] = _round(steps[label])
                out[f"{workload}_{label}_speedup"] = _round(peer_s / steps[label])
                out[f"{workload}_phases"][name] = phase_row(results[name])
        if steps["vllm"] and steps["vllm_text"]:  # what the token-ids lever gives vLLM's step
            out[f"{workload}_vllm_token_ids_only_gain"] = _round(steps["vllm_text"] / steps["vllm"])
    betas = [r for n, r in results.items() if r.get("variant", {}).get("beta", 0) > 0
             or (n.startswith("mem_grpo") and "beta" in n)]
    if betas:
        out["grpo_beta_ok"] = all("error" not in r for r in betas)
    rows = memory_rows(results)
    out["memory"] = [[name, measured, estimated] for name, _, measured, estimated in rows]
    planned = [(m, e) for _, what, m, e in rows if what.endswith("(r1exp)")]
    if planned:  # the estimate models r1exp's plans; plain TRL rows are for reference
        out["memory_worst_error"] = _round(max(abs(e / m - 1) for m, e in planned))
    return out


def phase_row(r: dict) -> dict[str, float | None]:
    """PHASES of one GRPO run, seconds per optimizer step; backward and the optimizer are what
    training_step and the step hold beyond the phases timed inside them."""
    phases = r.get("phases") or {}
    row = {name: phases.get(name) for name in PHASES[:5]}
    if "training_step" in phases:
        inside = phases.get("generate_and_score", 0.0) + phases.get("loss_forward", 0.0)
        row["backward"] = _round(phases["training_step"] - inside)
        if r.get("step_s"):
            row["optimizer_and_rest"] = _round(r["step_s"] - phases["training_step"])
    return row


def peer_report(results: dict) -> list[str]:
    """Each GRPO workload's r1exp variants beside the TRL + vLLM peer, with the step's phases."""
    header = (f"\n{'grpo against TRL + vLLM':28} {'s/step':>7} {'vs peer':>8} "
              + " ".join(f"{name[:10]:>10}" for name in PHASES) + f" {'peak GB':>8}")
    lines = [header]
    for peer, variants in WORKLOADS.values():
        peer_s = results.get(peer, {}).get("step_s")
        for name in (peer, *variants.values()):
            r = results.get(name)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"{name:28} {r['error'][:150]}")
                continue
            ratio = peer_s / r["step_s"] if peer_s and r.get("step_s") else None
            cells = [f"{r['step_s']:7.3f}" if r.get("step_s") else " " * 7,
                     f"{ratio:8.2f}" if ratio else " " * 8]
            cells += [f"{v:10.3f}" if isinstance(v, float) else " " * 10
                      for v in phase_row(r).values()]
            cells.append(f"{r['peak_gb']:8.1f}" if r.get("peak_gb") else " " * 8)
            lines.append(f"{name:28} " + " ".join(cells))
    return lines if len(lines) > 1 else []


def reestimate(results: dict) -> None:
    """Replace each run's memory estimate by what the current estimator says (no GPU needed)."""
    from tests.bench.gpu_workloads import compose, estimate_gb

    for r in results.values():
        if r.get("peak_gb") and "variant" in r:
            variant = Variant(**r["variant"])
            cfg, plan = compose(variant, Path("/tmp/r1exp-reestimate"), tiny=False, cuda=True)
            r["estimate_gb"] = estimate_gb(variant, cfg, plan)


def memory_rows(results: dict) -> list[tuple[str, str, float, float]]:
    rows = []
    for name, r in results.items():
        if r.get("peak_gb") and r.get("estimate_gb"):
            v = r["variant"]
            what = (f"{v['model'].split('-')[0]}-{_size(v['model'])} {v['kind']} "
                    f"{'ckpt' if v['gradient_checkpointing'] else 'no-ckpt'} pdb {v['batch']}"
                    + (f" beta {v['beta']}" if v["beta"] else "") + f" ({v['side']})")
            rows.append((name, what, round(r["peak_gb"], 2), round(r["estimate_gb"], 2)))
    return rows


def report(results: dict) -> str:
    matmul = _first(results, "matmul")
    peak = matmul.get("bf16_tflops")
    lines = []
    env = _first(results, "env").get("versions")
    if env:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    if peak:
        lines.append(f"device: {matmul.get('device')}, bf16 matmul {peak:.0f} TFLOP/s")
    lines.append(f"\n{'sft variant':28} {'tok/s':>9} {'MFU':>6} {'step s':>7} {'peak GB':>8} "
                 f"{'warmup s':>9}")
    for name, r in results.items():
        if r.get("variant", {}).get("kind") == "sft" and r["variant"]["role"] == "speed" \
                or (name.startswith("sft") and "error" in r):
            lines.append(_row(name, r, [("tokens_per_s", 9, ".0f"), ("mfu", 6, ".1%"),
                                        ("step_s", 7, ".3f"), ("peak_gb", 8, ".1f"),
                                        ("first_steps_s", 9, ".1f")], peak))
    lines.append(f"\n{'grpo variant':28} {'s/step':>9} {'speedup':>8} {'gen s':>7} "
                 f"{'peak GB':>8} {'warmup s':>9}")
    base = results.get("grpo_trl", {}).get("step_s")
    base_call = results.get("grpo_trl", {}).get("device_call")
    for name, r in results.items():
        if r.get("variant", {}).get("kind") == "grpo" and r["variant"]["role"] == "speed" \
                and not r["variant"].get("vllm") and not name.startswith("grpo_long") \
                or (name.startswith("grpo") and "vllm" not in name and "error" in r):
            same_run = r.get("device_call") == base_call  # ratios only within one run
            r = {**r, "speedup": base / r["step_s"] if base and r.get("step_s") and same_run
                 else None,
                 "gen_s": _generation_s(r)}
            lines.append(_row(name, r, [("step_s", 9, ".3f"), ("speedup", 8, ".2f"),
                                        ("gen_s", 7, ".2f"), ("peak_gb", 8, ".1f"),
                                        ("first_steps_s", 9, ".1f")], peak))
    lines += peer_report(results)
    lines.append(f"\n{'memory run':28} {'what':44} {'measured':>9} {'estimate':>9} {'error':>7}")
    for name, what, measured, estimated in memory_rows(results):
        lines.append(f"{name:28} {what:44} {measured:9.2f} {estimated:9.2f} "
                     f"{estimated / measured - 1:+7.1%}")
    for name, r in results.items():
        if name.startswith("mem") and "error" in r:
            lines.append(f"{name:28} {r['error'][:120]}")
    return "\n".join(lines)


def _first(results: dict, prefix: str) -> dict:
    """`matmul` / `env` of this run, or of the first run when results were merged."""
    return results.get(prefix) or next(
        (r for name, r in results.items() if name.startswith(prefix + "_call")), {})


def _row(name: str, r: dict, columns, peak) -> str:
    if "error" in r:
        return f"{name:28} {r['error'][:150]}"
    r = {**r, "mfu": _mfu(r, peak)}
    cells = []
    for key, width, fmt in columns:
        value = r.get(key)
        cells.append(f"{value:{width}{fmt}}" if isinstance(value, (int, float)) else " " * width)
    return f"{name:28} " + " ".join(cells)


def _mfu(r: dict, peak_tflops: float | None) -> float | None:
    flops = r.get("mfu_flops_per_token")
    peak_tflops = r.get("bf16_tflops") or peak_tflops
    if not (peak_tflops and flops and r.get("tokens_per_s")):
        return None
    return r["tokens_per_s"] * flops / (peak_tflops * 1e12)


def _generation_s(r: dict) -> float | None:
    """Median time of one generate() call after the first (which compiles)."""
    calls = (r.get("generate_s") or [])[1:]
    return sorted(calls)[len(calls) // 2] if calls else None


def _size(model: str) -> str:
    return next((part for part in model.split("-") if part.endswith("b")), model)


def _round(x):
    return None if x is None else round(float(x), 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--explore", action="store_true")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default="multirun_outputs/bench_gpu")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S)
    parser.add_argument("--report", nargs="*", help="saved results.json files to report on")
    parser.add_argument("--re-estimate", action="store_true",
                        help="with --report: recompute the memory estimates with this code")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        from tests.bench.gpu_workloads import main_variant

        main_variant(args.one, args.out, args.result, args.tiny)
        return
    if args.report:
        results = {}
        for path in args.report:
            saved = json.loads(Path(path).read_text())
            _attach_peak(saved)
            results.update(saved)
        if args.re_estimate:
            reestimate(results)
    else:
        parts = catalog(args.tiny, args.explore)
        chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
        unknown = set(chosen) - set(PARTS)
        if unknown:
            parser.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
        variants = [] if args.tiny else [Variant("env", "env"), Variant("matmul", "matmul")]
        variants += [v for part in chosen for v in parts[part]]
        if args.only:  # in the order given
            by_name = {v.name: v for v in variants}
            wanted = [n for n in args.only.split(",") if n]
            missing = [n for n in wanted if n not in by_name]
            if missing:
                parser.error(f"--only: unknown variants {missing}; see --parts/--explore")
            variants = [v for v in variants if v.kind in ("env", "matmul")] + [
                by_name[n] for n in wanted]
        results = run_all(variants, Path(args.out), args.tiny, args.budget_s)
    print(report(results))
    print(json.dumps(summary(results)))


if __name__ == "__main__":
    main()
