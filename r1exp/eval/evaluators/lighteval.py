"""`eval.evaluator=lighteval`: lighteval generates and scores, with open-r1's task definitions.

The seeds' published numbers come from `lighteval vllm ... custom|math_500|0|0` with open-r1's
task file. This evaluator runs the same definitions (r1exp/eval/lighteval_runtime/
open_r1_tasks.py: metric, gold, pass@1 over n samples) on the problems r1exp loaded: the rows
after `eval.limit`, the user message as r1exp renders it (eval.prompt; `eval=open-r1` is
open-r1's template), the chat template, max_new_tokens and sampling of the eval config.
Generation is lighteval's transformers backend (`lighteval accelerate`), or its vLLM backend
where lighteval's env has vLLM and the hardware is cuda (eval.lighteval.engine).

lighteval runs as a subprocess of its own environment (r1exp/eval/lighteval_env.py); r1exp
never imports it. Per sample it hands back lighteval's text, score and extracted answers,
which the runner writes as `<benchmark>/samples.jsonl` and summarizes like its own, so
results.json, the table and MLflow's `eval/<benchmark>/pass@1` read the same whichever evaluator
ran. lighteval's own files (results, per-sample details parquet) and its log stay in
`<eval dir>/lighteval/` and go to MLflow with the rest of the eval dir.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from r1exp.errors import ConfigError
from r1exp.eval.benchmarks import num_samples
from r1exp.eval.evaluators import Evaluator, Report, register
from r1exp.eval.evaluators.lighteval_model import local_model_dir, write_view
from r1exp.eval.lighteval_env import LightevalEnvError, check_env, fix_command
from r1exp.models.loading import resolve_model_dir

log = logging.getLogger(__name__)
LIGHTEVAL_DIR = "lighteval"
LOG_FILE = "lighteval.log"
RUNNER = Path(__file__).resolve().parents[1] / "lighteval_runtime" / "run.py"
IMPORT_FAILED = 3  # run.py's exit status when lighteval's modules do not import
ENGINES = ("auto", "transformers", "vllm")
GOLD_FORMATS = ("latex", "expr")
LIGHTEVAL_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
TAIL_LINES = 15


class LightevalFailed(RuntimeError):
    """lighteval exited with an error; the message names its log in the run dir."""


def check(cfg, benchmarks) -> None:
    """Config checks, and (outside dry runs) lighteval's environment, before any model loads."""
    settings = cfg.eval.lighteval
    if settings.engine not in ENGINES:
        raise ConfigError(f"eval.lighteval.engine={settings.engine!r}; choose one of: "
                          f"{', '.join(ENGINES)}")
    for name in benchmarks:
        gold_format = cfg.benchmark[name].lighteval.gold_format
        if cfg.benchmark[name].task == "math" and gold_format not in GOLD_FORMATS:
            raise ConfigError(f"benchmark.{name}.lighteval.gold_format={gold_format!r}; choose "
                              f"one of: {', '.join(GOLD_FORMATS)}")
    hw = cfg.hardware
    if hw.num_nodes * hw.devices_per_node > 1:
        raise ConfigError(
            "eval.evaluator=lighteval runs as one process (lighteval's vLLM engine spreads over "
            "the GPUs itself: inference.vllm.tensor_parallel_size, "
            "eval.lighteval.model_args.data_parallel_size); use hardware.devices_per_node=1")
    if cfg.dry_run:  # a dry run may plan for another machine than this one
        return
    try:
        status = check_env(settings.env)
    except LightevalEnvError as err:
        raise ConfigError(f"eval.evaluator=lighteval: {err}") from None
    if settings.engine == "vllm" and not status.has_vllm:
        raise ConfigError(
            f"eval.lighteval.engine=vllm but the lighteval environment at {settings.env} has no "
            f"vLLM; recreate it with `{fix_command(settings.env, force=True)} --vllm`, or use "
            "eval.lighteval.engine=transformers")


def evaluate(cfg, model_cfg, problems: dict, out_dir: Path) -> Report:
    """Run lighteval on `problems` ({benchmark: [Problem]}) and return its per-sample records."""
    status = check_env(cfg.eval.lighteval.env)
    engine = _engine(cfg, status.has_vllm)
    work = Path(out_dir) / LIGHTEVAL_DIR
    work.mkdir(parents=True, exist_ok=True)
    tasks = [_write_task(cfg, name, rows, work) for name, rows in problems.items()]
    model_source = resolve_model_dir(model_cfg, cfg.paths.cache_dir)
    model_dir = local_model_dir(model_source, model_cfg.revision)
    # lighteval writes its sample cache into the model dir it is given: a throwaway view
    with tempfile.TemporaryDirectory(prefix="r1exp-lighteval-") as tmp:
        view = write_view(model_dir, Path(tmp) / model_dir.name, greedy=bool(cfg.eval.greedy))
        spec = {
            "engine": engine, "model": _model_parameters(cfg, model_cfg, engine, view, tmp),
            "model_label": model_dir.name, "tasks": tasks,
            "output_dir": str(work / "output"), "samples_file": str(work / "samples.jsonl"),
            "results_file": str(work / "results.json"),
        }
        (work / "spec.json").write_text(json.dumps(spec, indent=2))
        returncode = _run(status.python, work)
    if returncode == IMPORT_FAILED:
        raise LightevalEnvError(
            f"lighteval does not import in {cfg.eval.lighteval.env} (see {work / LOG_FILE}); "
            f"recreate it with `{fix_command(cfg.eval.lighteval.env, force=True)}`")
    if returncode != 0:
        raise LightevalFailed(
            f"lighteval exited with status {returncode}; its log is {work / LOG_FILE}, which "
            f"ends:\n{_tail(work / LOG_FILE)}")
    return _report(problems, tasks, work, str(model_source), engine, status.versions)


def _engine(cfg, has_vllm: bool) -> str:
    engine = cfg.eval.lighteval.engine
    if engine == "auto":
        return "vllm" if has_vllm and cfg.hardware.accelerator == "cuda" else "transformers"
    return engine


def task_name(benchmark: str) -> str:
    # lighteval's own tasks are called math_500, aime24, gsm8k: custom ones may not reuse them
    return "r1exp_" + benchmark.replace("-", "_")


def _write_task(cfg, name: str, problems, work: Path) -> dict:
    """The benchmark's problems as a local dataset lighteval loads, and its task's settings."""
    spec = cfg.benchmark[name]
    gold_format = "letter" if spec.task == "choice" else spec.lighteval.gold_format
    data_dir = work / "data" / name
    data_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in problems:
        # the system prompt is lighteval's to add (model_parameters.system_prompt)
        query = [m["content"] for m in p.messages if m["role"] == "user"][-1]
        rows.append(json.dumps({"id": p.id, "query": query, "gold": p.lighteval_gold,
                                "gold_format": gold_format}, ensure_ascii=False))
    (data_dir / "data.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"name": task_name(name), "benchmark": name, "data_dir": str(data_dir),
            "gold_format": gold_format, "num_samples": num_samples(cfg, name),
            "max_new_tokens": int(cfg.eval.max_new_tokens)}


def _model_parameters(cfg, model_cfg, engine: str, view: Path, tmp: str) -> dict:
    e, hw = cfg.eval, cfg.hardware
    # No max_new_tokens here: the task's generation_size carries it. Given here as well,
    # lighteval's transformers backend also cuts every prompt to that many tokens (from the left).
    if e.greedy:
        generation = {"temperature": 0.0}
    else:
        generation = {"temperature": float(e.temperature), "top_p": float(e.top_p),
                      "seed": cfg.seed}
    params = {
        "model_name": str(view), "dtype": LIGHTEVAL_DTYPES[hw.dtype],
        "trust_remote_code": bool(model_cfg.trust_remote_code),
        # r1exp's prompts: the chat template, and no special tokens added on top of it
        "override_chat_template": bool(e.use_chat_template),
        "add_special_tokens": not e.use_chat_template,
        "generation_parameters": generation, "cache_dir": str(Path(tmp) / "cache"),
    }
    if e.system_prompt:
        params["system_prompt"] = e.system_prompt
    if engine == "vllm":  # lighteval's vLLM takes the sizes r1exp's vllm engine reads
        v = cfg.inference.vllm
        params.update(tensor_parallel_size=int(v.tensor_parallel_size),
                      gpu_memory_utilization=float(v.gpu_memory_utilization), seed=cfg.seed)
        if v.max_model_len:
            params["max_model_length"] = int(v.max_model_len)
    else:
        params.update(device="cpu" if hw.accelerator == "cpu" else "cuda",
                      batch_size=int(hw.per_device_eval_batch_size))
    params.update(dict(e.lighteval.model_args))
    return params


def _run(python: Path, work: Path) -> int:
    """run.py in lighteval's env, its output copied to the log file and to this process."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # offline: the model is a local dir and the data local files; nothing may reach the hub
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONNOUSERSITE="1",
               PYTHONUNBUFFERED="1")
    argv = [str(python), str(RUNNER), str(work / "spec.json")]
    log.info("running lighteval in its own environment (%s); log: %s", python, work / LOG_FILE)
    with open(work / LOG_FILE, "w", encoding="utf-8") as logfile:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        for line in proc.stdout:
            logfile.write(line)
            sys.stderr.write(line)
        return proc.wait()


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-TAIL_LINES:])


def _report(problems: dict, tasks: list[dict], work: Path, model: str, engine: str,
             versions: dict) -> Report:
    lines = (work / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    by_benchmark = defaultdict(list)
    for line in lines:
        sample = json.loads(line)
        by_benchmark[sample["benchmark"]].append(sample)
    reported = json.loads((work / "results.json").read_text())
    records, extra = {}, {}
    for task in tasks:
        name = task["benchmark"]
        golds = {p.id: p.answer for p in problems[name]}
        records[name] = [_record(s, golds[s["problem_id"]]) for s in by_benchmark[name]]
        metric, value = _reported_pass_at_1(reported["results"], task)
        ours = sum(r["score"] for r in records[name]) / max(len(records[name]), 1)
        if abs(ours - value) > 1e-9:  # per-sample scores must add up to lighteval's own number
            raise RuntimeError(f"{name}: lighteval reports {metric}={value}, its per-sample "
                               f"scores average {ours}")
        extra[name] = {"lighteval_metric": metric, "lighteval_pass@1": value}
    about = {"name": "lighteval", "versions": versions, "engine": engine,
             "tasks": "open-r1 (r1exp/eval/lighteval_runtime/open_r1_tasks.py)",
             "seconds": reported["seconds"]}
    return Report(model, reported["seconds"], records, extra, about)


def _record(sample: dict, gold: str) -> dict:
    """A lighteval sample as a line of r1exp's samples.jsonl (runner._record's keys)."""
    extracted = sample["extracted"]
    return {
        "problem_id": sample["problem_id"], "sample": sample["sample"],
        "completion": sample["completion"], "extracted": extracted[-1] if extracted else None,
        "gold": gold, "score": sample["score"],
        "status": "ok" if sample["gold_extracted"] else "gold_unparsed",
        "new_tokens": sample["new_tokens"], "stopped": sample["stopped"],
        "lighteval_extracted": extracted, "lighteval_gold": sample["gold_extracted"],
    }


def _reported_pass_at_1(results: dict, task: dict) -> tuple[str, float]:
    scores = results[task["name"]]
    (metric,) = [k for k in scores if not k.endswith("_stderr")]
    return metric, float(scores[metric])


EVALUATOR = register(Evaluator(name="lighteval", check=check, evaluate=evaluate))
