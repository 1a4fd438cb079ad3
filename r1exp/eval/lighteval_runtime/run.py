"""One lighteval evaluation, as r1exp's spec file describes it; run by lighteval's own python.

    <lighteval env>/bin/python run.py <spec.json>

Driven through lighteval's Python API (its `Pipeline`, as `lighteval accelerate|vllm` builds
it) rather than its CLI, for three things the CLI does not give:
- the registry holds only open-r1's tasks (open_r1_tasks.py). lighteval 0.13 otherwise imports
  every built-in task module first, and one of them downloads a file from GitHub at import
  time, so offline the CLI dies before it reads a task;
- every sample's own score and extracted answer: lighteval's pass@k keeps one number per
  problem, and r1exp lists per-sample differences between its scorer and lighteval's;
- lighteval's output folders named after the model, not after the temporary directory r1exp
  hands it (see r1exp/eval/evaluators/lighteval_model.py).
Writes lighteval's own results and details (save_details) under spec.output_dir, one JSON line
per sample to spec.samples_file and lighteval's reported metrics to spec.results_file.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import types
from pathlib import Path

try:  # lighteval's pipeline pulls in torch, transformers and datasets
    import lighteval.pipeline  # noqa: F401
except Exception as err:  # a broken environment shows here, before any model loads
    print(f"lighteval does not import: {type(err).__name__}: {err}", file=sys.stderr)
    sys.exit(3)  # r1exp/eval/evaluators/lighteval.py: IMPORT_FAILED

import open_r1_tasks  # noqa: E402
from lighteval.logging.evaluation_tracker import EvaluationTracker  # noqa: E402
from lighteval.models.model_output import ModelResponse  # noqa: E402
from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters  # noqa: E402
from lighteval.tasks.registry import Registry  # noqa: E402
from lighteval.tasks.requests import Doc  # noqa: E402


def only_these_tasks(custom_tasks=None, load_multilingual=False) -> dict:
    """Registry.load_all_task_configs, minus the built-in task modules (see the docstring)."""
    return Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks))


def model_config(spec: dict):
    if spec["engine"] == "vllm":
        from lighteval.models.vllm.vllm_model import VLLMModelConfig

        return VLLMModelConfig(**spec["model"]), ParallelismManager.VLLM
    from lighteval.models.transformers.transformers_model import TransformersModelConfig

    return TransformersModelConfig(**spec["model"]), ParallelismManager.ACCELERATE


def sample_records(task: dict, details: list, metric, eos_ids: set[int]) -> list[dict]:
    """Each sample of each problem: lighteval's text, its 0/1 score and extracted answers.

    The score is what lighteval's PassAtK computes per sample before it aggregates: the same
    preprocessing (strip) and the same scorer, on the text after reasoning-tag removal.
    """
    passk = metric.sample_level_fn
    records = []
    for detail in details:
        doc, response = detail.doc, detail.model_response
        choices = [passk.preprocess(c) for c in doc.choices]
        for index, text in enumerate(response.final_text[: task["num_samples"]]):
            probe = Doc(query=doc.query, choices=choices, gold_index=doc.gold_index)
            score = passk.compute_score(doc=probe, model_response=ModelResponse(
                text=[passk.preprocess(text)]))
            found = probe.specific or {}
            new_tokens, stopped = token_count(response.output_tokens[index], eos_ids,
                                              task["max_new_tokens"])
            records.append({
                "benchmark": task["benchmark"], "problem_id": doc.specific["problem_id"],
                "sample": index, "completion": response.text[index], "score": float(score),
                "extracted": found.get("extracted_predictions", []),
                "gold_extracted": found.get("extracted_golds", []),
                "new_tokens": new_tokens, "stopped": stopped,
            })
    return records


def token_count(tokens, eos_ids: set[int], max_new_tokens: int) -> tuple[int, bool]:
    """Generated tokens up to and with the first end-of-sequence token, as r1exp counts them.

    The transformers engine returns padded rows (the pad is the EOS token); vLLM returns the
    tokens without the stop token, so a row shorter than the limit stopped at it."""
    tokens = [int(t) for t in tokens]
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return position + 1, True
    if len(tokens) < max_new_tokens:
        return len(tokens) + 1, True
    return len(tokens), False


def main(spec_path: str) -> int:
    # lighteval's CLI sets up its logging; through the API its progress lines need this
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][lighteval][%(name)s] %(message)s",
                        datefmt="%H:%M:%S")
    spec = json.loads(Path(spec_path).read_text())
    Registry.load_all_task_configs = staticmethod(only_these_tasks)
    configs = [open_r1_tasks.task_config(task) for task in spec["tasks"]]
    module = types.ModuleType("r1exp_open_r1_tasks")
    module.TASKS_TABLE = configs
    config, launcher = model_config(spec)
    tracker = EvaluationTracker(output_dir=spec["output_dir"], save_details=True)
    started = time.perf_counter()
    pipeline = Pipeline(
        tasks=",".join(f"{task['name']}|0" for task in spec["tasks"]),
        pipeline_parameters=PipelineParameters(launcher_type=launcher,
                                               custom_tasks_directory=module),
        evaluation_tracker=tracker, model_config=config,
    )
    pipeline.evaluate()
    seconds = time.perf_counter() - started
    pipeline.show_results()
    tracker.general_config_logger.model_name = spec["model_label"]
    pipeline.save_and_push_results()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["model"]["model_name"])
    eos_ids = {tokenizer.eos_token_id}
    details = pipeline.get_details()
    with open(spec["samples_file"], "w", encoding="utf-8") as out:
        for task, task_config in zip(spec["tasks"], configs):
            task_details = details[f"{task['name']}|0"]
            for record in sample_records(task, task_details, task_config.metrics[0], eos_ids):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    reported = pipeline.get_results()["results"]  # keyed "<task>:<few-shots>", and "all"
    by_task = {task["name"]: reported[f"{task['name']}:0"] for task in spec["tasks"]}
    Path(spec["results_file"]).write_text(json.dumps(
        {"results": by_task, "seconds": seconds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
