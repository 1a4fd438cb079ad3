"""vLLM on the GPU: r1exp's vLLM paths end to end, and beside bare vLLM on the same prompts.

    python -m tests.bench.vllm_gpu --out /tmp/vg                   # every part (2 GPUs)
    python -m tests.bench.vllm_gpu --out /tmp/vg --parts eval,colocate

Parts, each `python -m r1exp ...` as a user types it (logger=none; MLflow does not travel):
- eval: `stage=eval inference.engine=vllm` on MATH-500 (greedy), then bare `vllm.LLM.generate` on
  the same prompts in a fresh process; tokens/s of both.
- generate: `stage=generate inference.engine=vllm` on MATH-500 problems, then bare vLLM with
  the same prompts and number of samples.
- colocate: GRPO with TRL's vLLM colocated on 1 GPU, 20 steps, 16 completions x 256 tokens,
  the policy check every 5 steps.
- server: GRPO in the 8xh100 layout in small: 1 training GPU + 1 vLLM server GPU started by
  the controller through TRL's command, weights pushed over NCCL, the policy check every 2 steps.

Random-weight Qwen2 of the 0.5B shape with SmolLM2's tokenizer (carried in
`.gpu_vllm/tokenizer`), bf16; benchmark files from `.gpu_vllm/data`. Prints a table, then one
JSON line. The device call that runs it is in docs/vllm.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.multi_gpu_validation import (
    CHECK_LINE, NO_MULTICAST, OFFLINE, REPO_ROOT, VLLM_OFFLINE, build_model, run_one,
)
from r1exp.resources import CONF_DIR

PARTS = ("eval", "generate", "colocate", "server")
CARRIED = REPO_ROOT / ".gpu_vllm"
SHAPE = {"hidden_size": 896, "num_layers": 24, "num_attention_heads": 14, "num_kv_heads": 2,
         "intermediate_size": 4864}  # conf/model/qwen2.5-0.5b-instruct.yaml's architecture
EVAL_PROBLEMS, EVAL_TOKENS = 500, 512
GENERATE_PROBLEMS, GENERATE_SAMPLES, GENERATE_TOKENS = 128, 4, 512
BARE = r'''
import json, sys, time
from vllm import LLM, SamplingParams
spec = json.load(open(sys.argv[1]))
llm = LLM(model=spec["model"], dtype="bfloat16", gpu_memory_utilization=0.9, seed=0,
          generation_config="vllm")
params = SamplingParams(n=spec["n"], temperature=spec["temperature"], top_p=spec["top_p"],
                        max_tokens=spec["tokens"])
prompts = [{"prompt_token_ids": ids} for ids in spec["prompts"]]
start = time.perf_counter()
outputs = llm.generate(prompts, params, use_tqdm=False)
seconds = time.perf_counter() - start
tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
print("BARE", json.dumps({"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}))
'''


def common(model_dir: Path, params: float, vocab: int, run_dir: Path) -> list[str]:
    return [
        "model=qwen2.5-0.5b-instruct", f"model.path={model_dir}", f"model.num_parameters={params}",
        *[f"model.architecture.{k}={v}" for k, v in SHAPE.items()],
        f"model.architecture.vocab_size={vocab}", "logger=none", "seed=0",
        f"paths.data_dir={CARRIED / 'data'}", f"hydra.run.dir={run_dir}",
    ]


def grpo_overrides(server: bool) -> list[str]:
    layout = (["hardware=8xh100", "hardware.devices_per_node=2", "hardware.distributed=none",
               "hardware.vllm.gpu_memory_utilization=0.5", "train.max_steps=10",
               "grpo.vllm_sync_check_steps=2", "train.learning_rate=1e-4"]
              if server else
              ["hardware=1xh100", "inference.engine=vllm",
               "hardware.vllm.mode=colocate", "train.max_steps=20",
               "grpo.vllm_sync_check_steps=5"])
    # Rewards without math (random weights write no answers); their spread gives gradients.
    return ["stage=grpo", *layout, "hardware.perf.liger_kernel=false",
            "hardware.per_device_train_batch_size=16", "train.global_batch_size=16",
            "train.save_steps=1000", "grpo.num_generations=8", "grpo.max_completion_length=256",
            "reward=[format,repetition_penalty]", "reward.repetition_penalty.ngram_size=1"]


def grpo_result(run_dir: Path, outcome: dict, log: Path) -> dict:
    state = run_dir / "model" / "trainer_state.json"
    history = json.loads(state.read_text())["log_history"] if state.is_file() else []
    steps = [e for e in history if "step_time" in e]
    times = sorted(e["step_time"] for e in steps[2:])  # steps 1-2: start-up and compilation
    # logger=none: the checks' metrics reach MLflow only; their log lines are in the run's log
    checks = [{"step": int(m[1]), "gap": float(m[2]), "change": float(m[3])}
              for m in CHECK_LINE.finditer(log.read_text(errors="replace"))]
    return {**outcome, "steps": len(steps),
            "median_step_s": times[len(times) // 2] if times else None,
            "sync_checks": checks, "status": _status(run_dir)}


def stage_result(run_dir: Path, outcome: dict, stage: str) -> dict:
    if stage == "eval":
        results = run_dir / "eval" / "results.json"
        bench = (json.loads(results.read_text())["benchmarks"]["math500"]
                 if results.is_file() else {})
        return {**outcome, "status": _status(run_dir), "tokens": bench.get("tokens_generated"),
                "seconds": bench.get("wall_time_s"), "tokens_per_s": bench.get("tokens_per_s")}
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return {**outcome, "status": _status(run_dir),
            "seconds": metrics.get("generate/wall_s"),
            "tokens_per_s": metrics.get("generate/completion_tokens_per_s")}


def bare_vllm(name: str, model_dir: Path, prompts: list[list[int]], sampling: dict,
              work: Path, env: dict, limit_s: float) -> dict:
    """Bare `LLM.generate` over the same token prompts, in a fresh process; timed without start."""
    spec = work / f"{name}.json"
    spec.write_text(json.dumps({"model": str(model_dir), "prompts": prompts, **sampling}))
    done = subprocess.run([sys.executable, "-c", BARE, str(spec)], env=env, text=True,
                          capture_output=True, timeout=limit_s)
    (work / f"{name}.log").write_text(done.stdout + done.stderr)
    for line in done.stdout.splitlines():
        if line.startswith("BARE "):
            return json.loads(line[5:])
    return {"error": f"exit {done.returncode}, see {work / f'{name}.log'}"}


def math500_prompts(model_dir: Path, count: int, user_message) -> list[list[int]]:
    """The prompts r1exp builds: `user_message(problem)` in the chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in (CARRIED / "data" / "math500.jsonl").open()][:count]
    return [tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(row["problem"])}], add_generation_prompt=True,
        tokenize=True, return_dict=False) for row in rows]


def conf_value(path: str, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.load(CONF_DIR / path)[key]


def _status(run_dir: Path) -> str:
    path = run_dir / "status"
    return path.read_text().strip() if path.is_file() else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--limit-s", type=float, default=420, help="per run")
    args = parser.parse_args()
    parts = args.parts.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **NO_MULTICAST, **OFFLINE, **VLLM_OFFLINE, "PYTHONUNBUFFERED": "1"}
    one_gpu = {**env, "CUDA_VISIBLE_DEVICES": "0"}
    model_dir = args.out / "model"
    vocab, params = build_model(model_dir, CARRIED / "tokenizer", SHAPE)
    results: dict[str, dict] = {}

    def run(name: str, overrides: list[str], run_env: dict) -> tuple[Path, dict]:
        run_dir = args.out / name
        argv = [*common(model_dir, params, vocab, run_dir), *overrides]
        print(f"--- {name}: python -m r1exp {' '.join(argv)}", flush=True)
        outcome = run_one_logged(name, argv, run_env, args.out / f"{name}.log", args.limit_s)
        return run_dir, outcome

    if "eval" in parts:
        run_dir, outcome = run("eval", [
            "stage=eval", "hardware=1xh100", "inference.engine=vllm", "eval.benchmarks=[math500]",
            "eval.greedy=true", f"eval.max_new_tokens={EVAL_TOKENS}", f"eval.limit={EVAL_PROBLEMS}",
        ], one_gpu)
        results["eval"] = stage_result(run_dir, outcome, "eval")
        prompt = conf_value("eval/default.yaml", "prompt")
        results["eval_bare"] = bare_vllm(
            "eval_bare", model_dir,
            math500_prompts(model_dir, EVAL_PROBLEMS, lambda problem: f"{problem}\n{prompt}"),
            {"n": 1, "temperature": 0.0, "top_p": 1.0, "tokens": EVAL_TOKENS},
            args.out, one_gpu, args.limit_s)
    if "generate" in parts:
        run_dir, outcome = run("generate", [
            "stage=generate", "hardware=1xh100", "dataset=math500", "inference.engine=vllm",
            f"generate.limit={GENERATE_PROBLEMS}", f"generate.num_generations={GENERATE_SAMPLES}",
            f"generate.max_new_tokens={GENERATE_TOKENS}",
        ], one_gpu)
        results["generate"] = stage_result(run_dir, outcome, "generate")
        g = "generate/default.yaml"
        results["generate_bare"] = bare_vllm(
            "generate_bare", model_dir,
            math500_prompts(model_dir, GENERATE_PROBLEMS,
                            lambda problem: conf_value(g, "prompt_template").format(
                                problem=problem)),
            {"n": GENERATE_SAMPLES, "temperature": conf_value(g, "temperature"),
             "top_p": conf_value(g, "top_p"), "tokens": GENERATE_TOKENS},
            args.out, one_gpu, args.limit_s)
    if "colocate" in parts:
        run_dir, outcome = run("colocate", grpo_overrides(server=False), one_gpu)
        results["colocate"] = grpo_result(run_dir, outcome, args.out / "colocate.log")
    if "server" in parts:
        run_dir, outcome = run("server", grpo_overrides(server=True), env)
        results["server"] = grpo_result(run_dir, outcome, args.out / "server.log")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print_table(results)
    print(json.dumps(summary(results)))


def run_one_logged(name: str, argv: list[str], env: dict, log: Path, limit_s: float) -> dict:
    started = time.perf_counter()
    outcome = run_one(argv, env, log, limit_s)
    print(f"    {name}: exit {outcome['returncode']} after {time.perf_counter() - started:.0f} s",
          flush=True)
    return outcome


def summary(results: dict) -> dict:
    out = {}
    if "eval" in results and results["eval"].get("tokens_per_s"):
        bare = results["eval_bare"].get("tokens_per_s")
        out["eval_tok_s"] = round(results["eval"]["tokens_per_s"], 1)
        out["eval_vs_bare"] = round(results["eval"]["tokens_per_s"] / bare, 3) if bare else None
    if "generate" in results and results["generate"].get("tokens_per_s"):
        bare = results["generate_bare"].get("tokens_per_s")
        out["generate_tok_s"] = round(results["generate"]["tokens_per_s"], 1)
        out["generate_vs_bare"] = (round(results["generate"]["tokens_per_s"] / bare, 3)
                                   if bare else None)
    for part in ("colocate", "server"):
        if part in results:
            r = results[part]
            out[f"{part}_status"] = r["status"]
            out[f"{part}_median_step_s"] = r["median_step_s"]
            out[f"{part}_sync_checks"] = r["sync_checks"]
    return out


def print_table(results: dict) -> None:
    print("\n| run | status | seconds | tokens/s | median s/step "
          "| policy checks (step: gap / change) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        checks = ", ".join(f"{c['step']}: {c['gap']:.2e} / {c['change']:.2e}"
                           for c in r.get("sync_checks", [])) or "-"
        cells = [name, r.get("status", r.get("error", "ok")), _fmt(r.get("seconds"), ".1f"),
                 _fmt(r.get("tokens_per_s"), ".0f"), _fmt(r.get("median_step_s"), ".3f"), checks]
        print("| " + " | ".join(cells) + " |")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
