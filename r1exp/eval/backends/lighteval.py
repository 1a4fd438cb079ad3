"""`eval.backend=lighteval`: the same model, problems and prompts, evaluated by lighteval.

r1exp hands lighteval exactly what its own path evaluates: the benchmark rows it loaded (after
`eval.limit`, with the multiple-choice letters already shuffled by seed) are written as a local
dataset, and a generated custom-task module gives each benchmark r1exp's prompt, lighteval's
transformers generation (`lighteval accelerate`), and lighteval's own metrics (math pass@k,
GPQA letter pass@k) over `eval.num_samples` samples. So the two results differ only in the
generation loop and the scorer, which is the comparison worth making; lighteval's stock tasks
(own prompts, hub data) are one `lighteval` command away and are not wrapped here.

lighteval pins latex2sympy2_extended 1.0.6 while r1exp's scorer needs >= 1.10, so lighteval
lives in its own environment and runs as a subprocess of `eval.lighteval.python`, by default
the venv made by
    python -m venv --system-site-packages ~/.cache/r1exp/lighteval-venv
    ~/.cache/r1exp/lighteval-venv/bin/pip install lighteval==0.13.0

Offline: lighteval 0.13 imports every task module of its registry, and one of them
(tiny_benchmarks) downloads a pickle from GitHub at import time, so without network access
the whole CLI dies before it reads a task. The launcher below turns that one failed download
(a connection error) into the non-200 answer that lighteval already skips; nothing r1exp asks
lighteval to evaluate uses that file.

STATUS (lighteval 0.13.0 here): NOT RUN END TO END. With the launcher, `lighteval accelerate`
gets as far as loading its task registry, where an LLM-judge task module calls
`HfApi.list_models(model_name=...)`, a keyword huggingface_hub 1.x (which transformers 5
requires) no longer has, so lighteval exits before evaluating. A lighteval release that
supports huggingface_hub 1.x should run this path as written. The scorer comparison does not
need the CLI: r1exp/bench/eval_agreement.py calls lighteval's math metric directly.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from r1exp.errors import ConfigError

log = logging.getLogger(__name__)
LIGHTEVAL_DIR = "lighteval"
TASKS_FILE = "r1exp_tasks.py"
# Runs lighteval's CLI (`lighteval accelerate ...`) with connection errors of requests.get
# answered as HTTP 503, which lighteval's import-time downloads treat as "not available".
LAUNCHER = """
import sys
import requests

_get = requests.get


def offline_safe_get(url, *args, **kwargs):
    try:
        return _get(url, *args, **kwargs)
    except requests.exceptions.ConnectionError:
        response = requests.Response()
        response.status_code, response.url = 503, url
        return response


requests.get = offline_safe_get
from lighteval.__main__ import app

sys.argv[0] = "lighteval"
sys.exit(app())
"""
LIGHTEVAL_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# The generated custom-task module: one task per benchmark, reading the rows r1exp wrote.
TASKS_TEMPLATE = '''"""r1exp problems as lighteval tasks (from r1exp.eval.backends.lighteval)."""
import json

from lighteval.metrics.metrics import Metrics
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc

SPECS = json.loads({specs!r})
LETTERS = "ABCD"


def prompt(line, task_name=None):
    if line["task"] == "choice":
        return Doc(task_name=task_name, query=line["prompt"], choices=list(LETTERS),
                   gold_index=LETTERS.index(line["gold"]))
    return Doc(task_name=task_name, query=line["prompt"], choices=[line["gold"]], gold_index=0)


def metric(spec):
    params = {{"k": 1, "n": spec["num_samples"]}}
    if spec["task"] == "choice":
        return Metrics.gpqa_instruct_pass_at_k(sample_params=params)
    return Metrics.pass_at_k_math(sample_params=params)


TASKS_TABLE = [
    LightevalTaskConfig(
        name=spec["task_name"], prompt_function=prompt, hf_repo=spec["data_dir"],
        hf_subset="default", hf_avail_splits=["train"], evaluation_splits=["train"],
        few_shots_split=None, few_shots_select=None, generation_size=spec["max_new_tokens"],
        metrics=[metric(spec)], stop_sequence=[], version=0,
    )
    for spec in SPECS
]
'''


def interpreter(cfg) -> str | None:
    return shutil.which(os.path.expanduser(cfg.eval.lighteval.python))


def check(cfg, benchmarks) -> None:
    if interpreter(cfg) is None:
        raise ConfigError(
            f"eval.backend=lighteval but eval.lighteval.python={cfg.eval.lighteval.python!r} "
            "is not an executable; lighteval conflicts with r1exp's scorer dependencies, so give "
            "it its own venv (see r1exp/eval/backends/lighteval.py) and point "
            "eval.lighteval.python at its python"
        )
    if cfg.hardware.accelerator == "cpu" and cfg.hardware.devices_per_node > 1:
        raise ConfigError("eval.backend=lighteval runs one process on cpu; "
                          "use hardware.devices_per_node=1")


def evaluate(cfg, model_cfg, benchmarks, out_dir: Path) -> dict:
    from r1exp.eval.benchmarks import load_problems
    from r1exp.models.loading import resolve_model_dir

    work = Path(out_dir) / LIGHTEVAL_DIR
    work.mkdir(parents=True, exist_ok=True)
    specs, sizes = [], {}
    for name in benchmarks:
        problems = load_problems(cfg, name)
        sizes[name] = len(problems)
        specs.append(_write_rows(cfg, name, problems, work))
    tasks_file = work / TASKS_FILE
    tasks_file.write_text(TASKS_TEMPLATE.format(specs=json.dumps(specs)))
    model_dir = resolve_model_dir(model_cfg, cfg.paths.cache_dir)
    model_yaml = work / "model.yaml"
    model_yaml.write_text(json.dumps({"model_parameters": _model_parameters(cfg, model_dir)}))
    argv = [interpreter(cfg), "-c", LAUNCHER, "accelerate", str(model_yaml),
            ",".join(f"{s['task_name']}|0" for s in specs),
            "--custom-tasks", str(tasks_file), "--output-dir", str(work / "output"),
            "--save-details"]
    log.info("running lighteval: %s", " ".join(argv[3:]))
    started = time.perf_counter()
    subprocess.run(argv, check=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    scores = _read_results(work / "output")
    return {
        "model": model_dir, "backend": "lighteval", "num_samples": cfg.eval.num_samples,
        "benchmarks": {
            name: _summary(cfg, spec, sizes[name], scores, seconds)
            for name, spec in zip(benchmarks, specs)
        },
    }


def _write_rows(cfg, name: str, problems, work: Path) -> dict:
    data_dir = work / "data" / name
    data_dir.mkdir(parents=True, exist_ok=True)
    task = cfg.benchmark[name].task
    rows = []
    for p in problems:
        # lighteval adds the system prompt itself (model_parameters.system_prompt).
        user = [m["content"] for m in p.messages if m["role"] == "user"][-1]
        rows.append(json.dumps({"id": p.id, "prompt": user, "gold": p.gold, "task": task}))
    (data_dir / "data.jsonl").write_text("\n".join(rows) + "\n")
    return {"task_name": f"r1exp_{name.replace('-', '_')}", "data_dir": str(data_dir),
            "task": task, "num_samples": cfg.eval.num_samples,
            "max_new_tokens": cfg.eval.max_new_tokens}


def _model_parameters(cfg, model_dir: str) -> dict:
    e = cfg.eval
    generation = {"max_new_tokens": e.max_new_tokens, "seed": cfg.seed}
    generation.update({"temperature": 0.0} if e.greedy else
                      {"temperature": e.temperature, "top_p": e.top_p})
    params = {
        "model_name": model_dir,
        "dtype": LIGHTEVAL_DTYPES[cfg.hardware.dtype],
        "device": "cpu" if cfg.hardware.accelerator == "cpu" else "cuda",
        "batch_size": cfg.hardware.per_device_eval_batch_size,
        "trust_remote_code": bool(cfg.model.trust_remote_code),
        "override_chat_template": bool(e.use_chat_template),
        "generation_parameters": generation,
    }
    if e.system_prompt:
        params["system_prompt"] = e.system_prompt
    for item in filter(None, (e.lighteval.model_args or "").split(",")):
        key, _, value = item.partition("=")
        params[key.strip()] = _yaml_scalar(value.strip())
    return params


def _yaml_scalar(text: str):
    import yaml

    return yaml.safe_load(text)


def _read_results(output: Path) -> dict:
    files = sorted(output.glob("results/**/results_*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise RuntimeError(f"lighteval wrote no results under {output}/results")
    return json.loads(files[-1].read_text())["results"]


def _summary(cfg, spec: dict, n_problems: int, scores: dict, seconds: float) -> dict:
    """lighteval's numbers for one task, under r1exp's result keys."""
    task_scores = next((v for k, v in scores.items()
                        if k.split("|")[0] == spec["task_name"]), None)
    if task_scores is None:
        raise RuntimeError(f"lighteval results lack task {spec['task_name']}; got {list(scores)}")
    value_keys = [k for k in task_scores if not k.endswith("_stderr")]
    if len(value_keys) != 1:
        raise RuntimeError(f"expected one metric for {spec['task_name']}, got {value_keys}")
    key = value_keys[0]
    summary = {
        "n_problems": n_problems, "k": cfg.eval.num_samples, "pass@1": float(task_scores[key]),
        "wall_time_s": seconds,  # the whole lighteval run, all benchmarks together
        "lighteval_metric": key,
    }
    if f"{key}_stderr" in task_scores:
        summary["stderr"] = float(task_scores[f"{key}_stderr"])
    return summary
