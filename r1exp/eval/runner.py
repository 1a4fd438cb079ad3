"""Evaluate one model on benchmarks: prompts -> engine -> r1exp's scorer -> outputs + MLflow.

Used by the eval stage and, through `evaluate_model`, by the training stages for
`train.benchmarks`. Several worker processes (the hardware profile's data parallel) each take
every world_size-th problem and commit their samples to the sample store; rank 0 aggregates
once every sample is in (r1exp.inference.samples.wait_for).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from omegaconf import OmegaConf

from r1exp.errors import ConfigError
from r1exp.eval import outputs
from r1exp.eval.benchmarks import benchmark_problems, check_benchmarks, num_samples
from r1exp.eval.evaluators import EVALUATORS, evaluator
from r1exp.eval.passk import k_values, summarize
from r1exp.inference import Problem, Request, Sampling, build_engine, process, samples
from r1exp.inference.options import check_inference
from r1exp.models.loading import resolve_model_dir
from r1exp.rewards import grade_math, start_scoring_workers
from r1exp.rundir import EVAL_DIR, EVAL_RESULTS, RunDir, fingerprint

log = logging.getLogger(__name__)
# The engines r1exp's evaluator runs: those that load the weights evaluated here (samples are
# keyed by those weights, and train.benchmarks evaluates the checkpoint just trained). An
# OpenAI-compatible server serves a model of its own.
EVAL_ENGINES = ("transformers", "vllm")
OWN_EVALUATOR = "r1exp"


def evaluate_model(cfg, model_dir: str | None = None, benchmarks=None,
                   out_dir: str | Path | None = None) -> dict[str, float]:
    """Evaluate `model_dir` (default: cfg.model) on `benchmarks` (default: eval.benchmarks).

    Writes `<out_dir>/results.json` and `<out_dir>/<benchmark>/samples.jsonl` (default
    out_dir: `<run dir>/eval`), prints a table, logs `eval/<benchmark>/<metric>` and the files
    to the run's MLflow run, and returns the metrics. Re-running on the same out_dir
    generates only the samples that are missing.
    """
    names = list(cfg.eval.benchmarks if benchmarks is None else benchmarks)
    check_benchmarks(cfg, names, "eval.benchmarks" if benchmarks is None else "train.benchmarks")
    out = Path(out_dir) if out_dir is not None else RunDir(cfg.paths.output_dir).eval_dir
    model_cfg = cfg.model
    if model_dir is not None:
        model_cfg = OmegaConf.merge(cfg.model, {"path": str(model_dir)})
    rank, world_size = process.rank(), process.world_size()
    run = _tracked_run() if rank == 0 else None
    if cfg.eval.evaluator in EVALUATORS:
        results = _evaluator_results(cfg, model_cfg, names, out, run)
    else:
        results = _generate_and_score(cfg, model_cfg, names, out, rank, world_size, run)
    if rank != 0:
        return {}
    outputs.write_results(out, results)
    # The table itself ends the run's summary block (r1exp.launch.summary), printed once.
    log.info("eval results in %s", out / EVAL_RESULTS)
    if run is not None:
        run.log_artifacts(out, EVAL_DIR)
    return outputs.mlflow_metrics(results)


def evaluating_engine(cfg) -> str | None:
    """The inference engine eval generates with; None where another evaluator generates."""
    return cfg.inference.engine if cfg.eval.evaluator == OWN_EVALUATOR else None


def _generate_and_score(cfg, model_cfg, names, out: Path, rank: int, world_size: int, run) -> dict:
    # Fork the scorers before the model makes this process big; they warm up while it loads.
    start_scoring_workers(wait=False)
    sampling = Sampling.of(cfg.eval, cfg.seed)
    engine = build_engine(cfg.inference.engine, cfg, model_cfg, sampling,
                          key="inference.engine", chat_template=bool(cfg.eval.use_chat_template))
    engine.open()
    model_source = resolve_model_dir(model_cfg, cfg.paths.cache_dir)
    results = {
        "model": model_source, "backend": cfg.inference.engine, "num_samples": cfg.eval.num_samples,
        "sampling": asdict(sampling), "benchmarks": {},
    }
    try:
        for name in names:
            bench_dir = out / name
            problems = benchmark_problems(cfg, name)
            config_hash = fingerprint(_settings(cfg, model_source, name))
            earlier = set(samples.shard_paths(outputs.store_dir(bench_dir)))
            started = time.perf_counter()
            _generate_share(cfg, engine, problems[rank::world_size], num_samples(cfg, name),
                            bench_dir, config_hash, rank, world_size)
            if rank != 0:
                continue
            if world_size > 1:
                _wait_for_ranks(cfg, name, problems, bench_dir, config_hash)
            stats = _new_work(bench_dir, earlier, config_hash, time.perf_counter() - started)
            records = outputs.read_samples(bench_dir, config_hash)
            results["benchmarks"][name] = _summary(cfg, name, problems, records, stats)
            outputs.write_samples(bench_dir, _chosen(cfg, name, problems, records))
            if run is not None:
                only_this = {"benchmarks": {name: results["benchmarks"][name]}}
                run.log_metrics(outputs.mlflow_metrics(only_this))
    finally:
        engine.close()
    return results


def _evaluator_results(cfg, model_cfg, names, out: Path, run) -> dict:
    """Another evaluator generates and scores; its per-sample records are written and
    summarized as r1exp's own are, so results.json, the table and the MLflow metrics read the
    same."""
    problems = {name: benchmark_problems(cfg, name) for name in names}
    try:
        report = evaluator(cfg.eval.evaluator).evaluate(cfg, model_cfg, problems, out)
    except BaseException:
        if run is not None:  # the evaluator's log goes with the run that is about to be FAILED
            run.log_artifacts(out, EVAL_DIR)
        raise
    results = {
        "model": report.model, "backend": cfg.eval.evaluator, "num_samples": cfg.eval.num_samples,
        "sampling": asdict(Sampling.of(cfg.eval, cfg.seed)), "benchmarks": {},
        "peer": report.about,
    }
    for name in names:
        records = report.records[name]
        # "backend": the evaluator's name under the key earlier versions wrote, so its samples
        # keep their fingerprint
        settings = {**_settings(cfg, report.model, name), "backend": cfg.eval.evaluator}
        config_hash = fingerprint(settings)
        outputs.write_samples(out / name, ({**record, "config": config_hash}
                                           for record in records))
        stats = {"seconds": report.seconds, "new_samples": len(records),
                 "new_tokens": sum(r["new_tokens"] for r in records)}
        summary = _summary(cfg, name, problems[name], records, stats)
        results["benchmarks"][name] = {**summary, **report.extra[name]}
        if run is not None:
            run.log_metrics(outputs.mlflow_metrics({"benchmarks": {name: summary}}))
    return results


def _settings(cfg, model_source: str, name: str) -> dict:
    """Everything a sample depends on; `limit` and `num_samples` are not (more reuse more)."""
    e = cfg.eval
    return {
        "model": model_source, "weights": _weights_stamp(model_source),
        "revision": cfg.model.revision, "seed": cfg.seed,
        "benchmark": OmegaConf.to_container(cfg.benchmark[name], resolve=True),
        "prompt": e.prompt, "choice_prompt": e.choice_prompt, "system_prompt": e.system_prompt,
        "use_chat_template": e.use_chat_template, "greedy": e.greedy,
        "temperature": e.temperature, "top_p": e.top_p, "max_new_tokens": e.max_new_tokens,
    }


def _weights_stamp(model_source: str) -> int | None:
    """Newest weight file's mtime of a local model dir: a re-saved model (a resumed training
    run's final save) must not inherit the samples of the weights it replaced."""
    weights = [p for pattern in ("*.safetensors", "*.bin", "*.gguf")
               for p in Path(model_source).glob(pattern)] if Path(model_source).is_dir() else []
    return max((p.stat().st_mtime_ns for p in weights), default=None)


def _generate_share(cfg, engine, problems: list[Problem], k: int, bench_dir: Path,
                    config_hash: str, rank: int, world_size: int) -> None:
    """Generate and score the missing samples (k per problem) of this rank's problems,
    committing each batch."""
    from tqdm.auto import tqdm


    done = {samples.row_key(r, outputs.KEY) for r in outputs.read_samples(bench_dir, config_hash)}
    by_id = {p.id: p for p in problems}
    requests = [Request((problem.id, s), problem.messages) for problem in problems
                for s in range(k) if (problem.id, s) not in done]
    skipped = len(problems) * k - len(requests)
    log.info("%s: %d problems, %d samples to generate (%d already done)",
             bench_dir.name, len(problems), len(requests), skipped)
    new_tokens, correct = 0, 0
    # Counts samples generated and scored, so its ETA covers both; the transformers engine adds
    # a bar per batch over its decoding steps.
    bar = tqdm(total=len(requests), desc=f"eval {bench_dir.name}", unit="sample",
               mininterval=2.0, dynamic_ncols=True, disable=not requests)
    # shard_size 1: each batch is committed, as one shard, once it is scored
    writer = samples.ShardWriter(outputs.store_dir(bench_dir), shard_size=1, interval_s=0,
                                 rank=rank, world_size=world_size)
    with writer, bar:
        for batch in engine.generate(requests):
            failed = [r for r in batch if r.error is not None]
            batch = [r for r in batch if r.error is None]
            golds = [by_id[r.key[0]].answer for r in batch]
            bar.set_postfix_str(f"scoring {len(batch)}")
            grades = grade_math([r.text for r in batch], golds, timeout_s=cfg.eval.score_timeout_s)
            writer.add([_record(r, gold, grade, config_hash)
                        for r, gold, grade in zip(batch, golds, grades)])
            if failed:  # the batch's good samples are kept; a re-run retries the rest
                raise RuntimeError(f"{bench_dir.name}: {len(failed)} requests failed for good, "
                                   f"e.g. {failed[0].key}: {failed[0].error}")
            new_tokens += sum(r.completion_tokens or 0 for r in batch)
            correct += sum(grade.score > 0 for grade in grades)
            bar.set_postfix_str(f"correct {correct}, {new_tokens} tokens", refresh=False)
            bar.update(len(batch))


def _record(result, gold: str, grade, config_hash: str) -> dict:
    problem_id, sample = result.key
    return {
        "problem_id": problem_id, "sample": sample, "completion": result.text,
        "extracted": grade.extracted, "gold": gold, "score": grade.score,
        "status": grade.status, "new_tokens": result.completion_tokens or 0,
        "stopped": result.stopped, "config": config_hash,
    }


def _summary(cfg, name: str, problems: list[Problem], records: list[dict], stats: dict) -> dict:
    k = num_samples(cfg, name)
    chosen = _chosen(cfg, name, problems, records)
    rows = [chosen[i:i + k] for i in range(0, len(chosen), k)]
    seconds = stats["seconds"]
    summary = summarize([[r["score"] for r in per_problem] for per_problem in rows],
                        k_values(k, cfg.eval.pass_k))
    statuses = defaultdict(int)
    for r in chosen:
        statuses[r["status"]] += 1
    return {
        "n_problems": len(problems), "k": k, **summary,
        "tokens_generated": sum(r["new_tokens"] for r in chosen),
        "mean_new_tokens": sum(r["new_tokens"] for r in chosen) / len(chosen),
        "truncated_fraction": sum(not r["stopped"] for r in chosen) / len(chosen),
        "score_errors": statuses["timeout"] + statuses["error"],
        "gold_unparsed": statuses["gold_unparsed"],
        "samples_generated": stats["new_samples"],
        "wall_time_s": seconds,
        "tokens_per_s": stats["new_tokens"] / seconds if seconds > 0 else 0.0,
        "problems_per_s": stats["new_samples"] / k / seconds if seconds > 0 else 0.0,
    }


def _chosen(cfg, name: str, problems: list[Problem], records: list[dict]) -> list[dict]:
    """The k samples of every problem, in problem order: what the results are computed from."""
    k = num_samples(cfg, name)
    found = {samples.row_key(r, outputs.KEY): r for r in records}
    missing = [(p.id, s) for p in problems for s in range(k) if (p.id, s) not in found]
    if missing:
        raise RuntimeError(f"{len(missing)} samples missing after generation, e.g. {missing[:3]}")
    return [found[(p.id, s)] for p in problems for s in range(k)]


def _wait_for_ranks(cfg, name: str, problems: list[Problem], bench_dir: Path,
                    config_hash: str) -> None:
    """Rank 0: wait until the other ranks have committed every sample of this benchmark."""
    k = num_samples(cfg, name)
    expected = {(p.id, s) for p in problems for s in range(k)}
    # Samples of run dirs from before the store count as done; the store holds the rest.
    present = {samples.row_key(r, outputs.KEY) for r in outputs.read_samples(bench_dir,
                                                                              config_hash)}
    samples.wait_for(outputs.store_dir(bench_dir), expected - present, outputs.KEY,
                     select=lambda row: row.get("config") == config_hash)


def _new_work(bench_dir: Path, earlier: set[Path], config_hash: str, seconds: float) -> dict:
    """What this launch generated, over all ranks: the samples of the shards that were not
    there when rank 0 began the benchmark."""
    store = outputs.store_dir(bench_dir)
    shards = [path for path in samples.shard_paths(store) if path not in earlier]
    new = [row for row in samples.iter_rows(store, shards) if row.get("config") == config_hash]
    return {"seconds": seconds, "new_samples": len(new),
            "new_tokens": sum(r["new_tokens"] for r in new)}


def _tracked_run():
    from r1exp.tracking.callback import attached_run

    return attached_run()


def check_eval_settings(cfg) -> None:
    """Cheap checks of the eval knobs shared by the eval stage and train.benchmarks."""
    e = cfg.eval
    if e.num_samples < 1:
        raise ConfigError(f"eval.num_samples={e.num_samples} must be >= 1")
    if e.greedy and e.num_samples != 1:
        raise ConfigError(f"eval.greedy=true with eval.num_samples={e.num_samples}: greedy "
                          "samples are identical; use eval.num_samples=1 or eval.greedy=false")
    by_benchmark = dict(e.num_samples_by_benchmark)
    if any(n < 1 for n in by_benchmark.values()):
        raise ConfigError(f"eval.num_samples_by_benchmark={by_benchmark}: each count must be >= 1")
    fewest = min([e.num_samples, *([] if e.greedy else by_benchmark.values())])
    bad = [k for k in e.pass_k if not 1 <= k <= fewest]
    if bad:
        raise ConfigError(f"eval.pass_k={list(e.pass_k)}: each k must be in 1..{fewest}, the "
                          f"fewest samples per problem (eval.num_samples, "
                          f"eval.num_samples_by_benchmark); {bad} is not")
    if e.max_new_tokens < 1:
        raise ConfigError(f"eval.max_new_tokens={e.max_new_tokens} must be >= 1")
    if e.limit is not None and e.limit < 1:
        raise ConfigError(f"eval.limit={e.limit} must be >= 1 or null (all problems)")
    if not (0.0 < e.top_p <= 1.0) or e.temperature < 0:
        raise ConfigError(f"eval.top_p={e.top_p} must be in (0, 1] and eval.temperature="
                          f"{e.temperature} >= 0")
    if e.evaluator == OWN_EVALUATOR:
        check_inference(cfg, EVAL_ENGINES, "eval.evaluator=r1exp")
