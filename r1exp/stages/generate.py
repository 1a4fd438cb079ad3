"""The generate stage: distillation data. For every problem of the dataset's train split,
`generate.num_generations` samples from an engine, each scored against the answer column,
committed shard by shard, then filtered (`generate.keep`) into a dataset dir that
`dataset=jsonl dataset.path=<generate.output_dir>` and the sft stage read as is.

Resumable and lossless: every sample is committed to `<output_dir>/samples/` with an atomic
rename; a re-run of the same command skips the (problem_id, sample_idx) pairs already there,
so a kill at any moment loses at most the uncommitted buffer and never duplicates a sample.
A request that keeps failing becomes an error row (kept in samples/, never in the dataset).
Several worker processes (a multi-GPU profile) each take every world_size-th problem; rank 0
writes the dataset once all samples are in.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import OmegaConf

from r1exp import rundir
from r1exp.config.stage import Stage
from r1exp.data.loading import validate_dataset_config
from r1exp.errors import ConfigError
from r1exp.generation import output
from r1exp.generation.filtering import NEEDS_ANSWERS, score_rows
from r1exp.generation.prompts import dataset_problems, requests_for, template_fields
from r1exp.inference import Sampling, build_engine, engine_names, process, samples
from r1exp.inference.options import check_inference
from r1exp.inference.samples import SAMPLES_DIR, SHARD_GLOB
from r1exp.inference.vllm_engine import in_process_use
from r1exp.rewards import start_scoring_workers
from r1exp.stages.registry import register
from r1exp.tracking.source import git_commit

log = logging.getLogger(__name__)
# What this stage reads, so what its MLflow params show (r1exp.tracking.params).
CONFIG_SECTIONS = ("seed", "paths", "model", "dataset", "hardware", "generate", "inference")
BENCHMARKS_KEY = None
LOCK_FILE = ".generate.lock"
# The dataset keys that decide which problem has which id. Not max_samples (a prefix, like
# generate.limit) nor offline_path (a copy of the same data); the problem text of every
# committed sample is compared on resume as well.
DATASET_IDENTITY = ("source", "path", "config_name", "revision", "train_split", "rename",
                    "prompt_column", "answer_column", "generator", "mixture", "shuffle")


def check(cfg) -> None:

    g, d = cfg.generate, cfg.dataset
    for key in ("num_generations", "max_new_tokens", "shard_size"):
        if g[key] < 1:
            raise ConfigError(f"generate.{key}={g[key]} must be >= 1")
    if g.limit is not None and g.limit < 1:
        raise ConfigError(f"generate.limit={g.limit} must be >= 1 or null (every problem)")
    if g.score_timeout_s <= 0:
        raise ConfigError(f"generate.score_timeout_s={g.score_timeout_s} must be > 0")
    if g.commit_interval_s < 0:
        raise ConfigError(f"generate.commit_interval_s={g.commit_interval_s} must be >= 0")
    if g.temperature < 0 or not 0 < g.top_p <= 1:
        raise ConfigError(f"generate.temperature={g.temperature} must be >= 0 and "
                          f"generate.top_p={g.top_p} in (0, 1]")

    check_inference(cfg, engine_names(), "stage=generate")
    if not d.prompt_column:
        raise ConfigError(f"dataset '{d.name}' sets no dataset.prompt_column; the generate stage "
                          "needs one (the problem each prompt is made from)")
    if g.keep in NEEDS_ANSWERS and not d.answer_column:
        raise ConfigError(f"generate.keep={g.keep} needs gold answers, but dataset '{d.name}' sets "
                          "no dataset.answer_column; use generate.keep=all or set the column")
    template_fields(g.prompt_template)
    validate_dataset_config(d)


def resumable(cfg, run_dir) -> bool:
    """Whether an unfinished run dir holds committed samples (for r1exp.launch.resume).

    Only a generate.output_dir inside the run dir (the default) needs the earlier run dir to
    be adopted; a fixed one outside it is continued by any attempt that writes there.
    """
    here, out = Path(cfg.paths.output_dir), Path(cfg.generate.output_dir)
    if not out.is_relative_to(here):
        return False
    return any((Path(run_dir) / out.relative_to(here) / SAMPLES_DIR).glob(SHARD_GLOB))


def run(cfg) -> dict[str, float]:

    check(cfg)
    g = cfg.generate
    rank, world_size = process.rank(), process.world_size()
    out_dir = Path(g.output_dir)
    samples_dir = out_dir / samples.SAMPLES_DIR
    engine = build_engine(cfg.inference.engine, cfg, cfg.model, Sampling.of(g, cfg.seed),
                          key="inference.engine")
    engine.check()
    lock = _claim(out_dir) if rank == 0 else None

    problems = dataset_problems(cfg)
    settings = _sample_settings(cfg, engine.describe())
    # Settings are plain JSON, so rundir's str() fallback never applies: earlier outputs keep
    # their fingerprint.
    fingerprint = rundir.fingerprint(settings)
    manifest = None
    if rank == 0:
        manifest = output.begin(out_dir, settings=settings, fingerprint=fingerprint,
                                config=_config_record(cfg), provenance=_provenance(cfg, settings))
    done = _committed(samples_dir, problems, out_dir)
    requests = requests_for(problems, g.num_generations, done, rank, world_size)
    mine = sum(1 for p in problems if p.id % world_size == rank) * g.num_generations
    log.info("generate: %d problems x %d samples; %d of this worker's %d already committed in %s",
             len(problems), g.num_generations, mine - len(requests), mine, out_dir)

    if requests and any(p.answer is not None for p in problems):
        start_scoring_workers()  # fork the scorers before a model makes this process big
    if requests:
        engine.open()  # before the clock starts: throughput is that of a ready engine
    progress = _Progress(total=mine, initial=mine - len(requests), rank=rank)
    by_id = {p.id: p for p in problems}
    try:
        with samples.ShardWriter(samples_dir, shard_size=g.shard_size,
                                interval_s=g.commit_interval_s, rank=rank,
                                world_size=world_size) as writer:
            for batch in engine.generate(requests):
                rows = [_row(result, by_id[result.key[0]], settings["model"]) for result in batch]
                _score(rows, g.score_timeout_s)
                writer.add(rows)
                progress.update(rows)
    finally:
        engine.close()
    progress.close()
    if rank != 0:
        return {}

    expected = {(p.id, s) for p in problems for s in range(g.num_generations)}
    if world_size > 1:
        samples.wait_for(samples_dir, expected)
    manifest = output.finalize(out_dir, manifest, keep=g.keep, shard_size=g.shard_size,
                               expected=expected)
    if g.push_to_hub:
        output.push_to_hub(out_dir, g.push_to_hub, manifest["files"])
    if progress.run is not None:
        progress.run.log_artifacts(out_dir / output.MANIFEST, "generate")
    lock.close()
    log.info("generate: dataset in %s: %s", out_dir, json.dumps(manifest["counts"]))
    return _final_metrics(manifest["counts"], progress)


def _sample_settings(cfg, engine: dict) -> dict:
    """Everything a sample depends on. A resumed run must match it; the rest (limit,
    num_generations, keep, concurrency, retries, shard size) may change between attempts."""
    g = cfg.generate
    return {
        "engine": engine["engine"],
        "model": engine["model"],
        "dataset": {k: v for k, v in OmegaConf.to_container(cfg.dataset, resolve=True).items()
                    if k in DATASET_IDENTITY},
        "prompt_template": g.prompt_template,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "max_new_tokens": g.max_new_tokens,
        "seed": cfg.seed,
    }


def _config_record(cfg) -> dict:
    keys = ("generate", "inference", "dataset", "model", "hardware")
    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in keys}


def _provenance(cfg, settings: dict) -> dict:

    g = cfg.generate
    return {
        "model": settings["model"], "model_name": cfg.model.name, "dataset": cfg.dataset.name,
        "dataset_path": cfg.dataset.path, "split": cfg.dataset.train_split,
        "engine": cfg.inference.engine, "endpoint": cfg.inference.openai.endpoint,
        "sampling": {"temperature": g.temperature, "top_p": g.top_p,
                     "max_new_tokens": g.max_new_tokens, "num_generations": g.num_generations,
                     "seed": cfg.seed},
        "prompt_template": g.prompt_template, "git_commit": git_commit(),
        "run_dir": cfg.paths.output_dir,
    }


def _committed(samples_dir: Path, problems, out_dir: Path) -> set[tuple[int, int]]:
    """The committed samples' keys. They must belong to the same problems (a hub dataset may
    have changed since the first attempt)."""
    by_id = {p.id: p.text for p in problems}
    done = set()
    for row in samples.iter_rows(samples_dir):
        problem_id, text = int(row["problem_id"]), row["problem"]
        if problem_id in by_id and by_id[problem_id] != text:
            raise ConfigError(
                f"{out_dir} holds samples of problem {problem_id} {text[:60]!r}, but the dataset "
                f"now has {by_id[problem_id][:60]!r} there; the dataset changed since the first "
                "attempt. Use another generate.output_dir")
        done.add((problem_id, int(row["sample_idx"])))
    return done


def _claim(out_dir: Path):
    """An exclusive lock on the output dir: two runs writing it would duplicate samples."""
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"generate.output_dir={str(out_dir)!r} is being written by another "
                          "process; wait for it or choose another generate.output_dir") from None
    return handle  # the lock lives as long as this process holds the handle


def _row(result, problem, model: str) -> dict:
    messages = list(problem.messages)
    if result.text is not None:
        messages.append({"role": "assistant", "content": result.text})
    return {
        "problem_id": problem.id, "sample_idx": result.key[1], "problem": problem.text,
        "answer": problem.answer, "generation": result.text, "messages": messages,
        "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens, "error": result.error,
        "attempts": result.attempts, "model": model,
    }


def _score(rows: list[dict], timeout_s: float) -> None:
    score_rows(rows, timeout_s)


class _Progress:
    """tqdm bar (rate, ETA) plus counts and throughput in the run's MLflow run (rank 0)."""

    def __init__(self, total: int, initial: int, rank: int):
        from tqdm.auto import tqdm

        from r1exp.tracking.callback import attached_run

        self.bar = tqdm(total=total, initial=initial, unit="sample", desc="generate",
                        mininterval=2.0, dynamic_ncols=True)
        self.run = attached_run() if rank == 0 else None
        (self.done, self.new, self.errors, self.correct, self.scored,
         self.tokens) = initial, 0, 0, 0, 0, 0
        self.started = time.perf_counter()
        self.last_log = 0.0

    def update(self, rows: list[dict]) -> None:
        self.new += len(rows)
        self.done += len(rows)
        self.errors += sum(r["error"] is not None for r in rows)
        self.scored += sum(r["correct"] is not None for r in rows)
        self.correct += sum(bool(r["correct"]) for r in rows)
        self.tokens += sum(r["completion_tokens"] or 0 for r in rows)
        self.bar.set_postfix(errors=self.errors, correct=f"{self.correct}/{self.scored}",
                             refresh=False)
        self.bar.update(len(rows))
        if self.run is not None and time.perf_counter() - self.last_log >= 10:
            self.last_log = time.perf_counter()
            self.run.log_metrics(self.metrics(), step=self.done)

    def metrics(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return {
            "generate/samples_done": self.done,
            "generate/samples_new": self.new,
            "generate/errors": self.errors,
            "generate/correct_fraction": self.correct / self.scored if self.scored else 0.0,
            "generate/samples_per_s": self.new / elapsed,
            "generate/completion_tokens_per_s": self.tokens / elapsed,
        }

    def close(self) -> None:
        self.bar.close()
        if self.run is not None and self.new:
            self.run.log_metrics(self.metrics(), step=self.done)


def _final_metrics(counts: dict, progress: _Progress) -> dict[str, float]:
    samples = max(counts["samples"], 1)
    return {
        "generate/problems": counts["problems"],
        "generate/samples": counts["samples"],
        "generate/errors": counts["errors"],
        "generate/kept": counts["kept"],
        "generate/problems_kept": counts["problems_kept"],
        "generate/correct_fraction": (counts["correct"] / counts["scored"] if counts["scored"]
                                      else 0.0),
        "generate/truncated_fraction": counts["finish_reasons"].get("length", 0) / samples,
        "generate/samples_new": progress.new,
        "generate/wall_s": time.perf_counter() - progress.started,
        "generate/samples_per_s": progress.metrics()["generate/samples_per_s"],
        "generate/completion_tokens_per_s": progress.metrics()["generate/completion_tokens_per_s"],
    }


STAGE = register(Stage(
    name="generate", run=run, check=check, resumable=resumable,
    config_sections=CONFIG_SECTIONS, benchmarks_key=BENCHMARKS_KEY,
    vllm=lambda cfg: in_process_use(cfg, cfg.inference.engine),
))
