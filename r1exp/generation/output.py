"""The generate stage's output dir: a dataset `dataset=jsonl dataset.path=<dir>` reads.

    <dir>/manifest.json          config, counts and provenance (model, dataset, engine,
                                 sampling, git commit, timestamps); status running | complete
    <dir>/train-00000.jsonl ...  the kept samples: problem, answer, generation, messages
                                 [user, assistant], score, finish_reason, token counts, ...
    <dir>/samples/shard-*.jsonl  every sample, errors included (r1exp.inference.samples)

The train files are derived from the samples when every sample is in: two passes (first the
verdicts, then the kept rows), so memory holds keys, not generations.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from r1exp.errors import ConfigError
from r1exp.inference import samples
from r1exp.rundir import write_atomically
from r1exp.generation.filtering import kept_keys, verdict

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
DATA_PREFIX = "train-"
FORMAT = "r1exp.generate/1"
# Fields of a dataset row, in order; the stored samples hold the same fields.
ROW_FIELDS = ("problem_id", "sample_idx", "problem", "answer", "generation", "messages",
              "finish_reason", "prompt_tokens", "completion_tokens", "score", "correct",
              "extracted", "score_status", "error", "attempts", "model")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(out_dir: Path) -> dict | None:
    path = Path(out_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def write_manifest(out_dir: Path, manifest: dict) -> None:
    write_atomically(Path(out_dir) / MANIFEST, json.dumps(manifest, indent=2, default=str),
                     durable=True)


def begin(out_dir: Path, *, settings: dict, fingerprint: str, config: dict,
          provenance: dict) -> dict:
    """Start or continue the output dir; refuse one that holds samples of other settings."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(out_dir)
    if previous is None and samples.shard_paths(out_dir / samples.SAMPLES_DIR):
        raise ConfigError(f"generate.output_dir={str(out_dir)!r} holds samples but no {MANIFEST}; "
                          "point generate.output_dir at a new directory")
    if previous is not None and previous.get("fingerprint") != fingerprint:
        changed = sorted(k for k in set(settings) | set(previous.get("settings", {}))
                         if settings.get(k) != previous.get("settings", {}).get(k))
        raise ConfigError(
            f"generate.output_dir={str(out_dir)!r} holds samples made with other settings "
            f"(differing: {', '.join(changed) or 'format'}); mixing them would corrupt the "
            "dataset. Use another generate.output_dir, or the original settings")
    manifest = {
        "format": FORMAT,
        "status": "running",
        "fingerprint": fingerprint,
        "settings": settings,
        "config": config,
        "provenance": {**provenance,
                       "started_at": (previous or {}).get("provenance", {}).get("started_at",
                                                                                now()),
                       "attempt_started_at": now(),
                       "attempts": (previous or {}).get("provenance", {}).get("attempts", 0) + 1},
        "counts": (previous or {}).get("counts", {}),
    }
    write_manifest(out_dir, manifest)
    return manifest


def finalize(out_dir: Path, manifest: dict, *, keep: str, shard_size: int,
             expected: set[tuple[int, int]]) -> dict:
    """Write the train files from the samples, then the manifest (status complete); counts."""
    out_dir = Path(out_dir)
    samples_dir = out_dir / samples.SAMPLES_DIR
    verdicts, seen = [], set()
    counts: Counter = Counter()
    finish: Counter = Counter()
    for row in samples.iter_rows(samples_dir):
        v = verdict(row)
        if v.key in seen or v.key not in expected:
            continue  # a duplicate, or a sample beyond a lowered limit / num_generations
        seen.add(v.key)
        verdicts.append(v)
        counts["samples"] += 1
        counts["errors"] += not v.ok
        counts["scored"] += v.correct is not None
        counts["correct"] += bool(v.correct)
        counts["completion_tokens"] += row.get("completion_tokens") or 0
        finish[str(row.get("finish_reason"))] += v.ok
    missing = expected - seen
    if missing:
        raise RuntimeError(f"{len(missing)} samples missing from {samples_dir}, e.g. "
                           f"{sorted(missing)[:3]}; re-run the same command to generate them")
    keep_set = kept_keys(verdicts, keep)
    files = _write_train_files(out_dir, samples_dir, keep_set, shard_size)
    problems = {k[0] for k in expected}
    manifest.update(
        status="complete",
        keep=keep,
        files=files,
        counts={
            "problems": len(problems),
            "samples": counts["samples"],
            "errors": counts["errors"],
            "scored": counts["scored"],
            "correct": counts["correct"],
            "kept": len(keep_set),
            "problems_kept": len({k[0] for k in keep_set}),
            "completion_tokens": counts["completion_tokens"],
            "finish_reasons": {k: v for k, v in sorted(finish.items()) if v},
        },
    )
    manifest["provenance"]["finished_at"] = now()
    write_manifest(out_dir, manifest)
    return manifest


def _write_train_files(out_dir: Path, samples_dir: Path, keep: set[tuple[int, int]],
                       shard_size: int) -> list[str]:
    names, buffer, written = [], [], set()

    def flush():
        name = f"{DATA_PREFIX}{len(names):05d}.jsonl"
        write_atomically(out_dir / name, "".join(buffer), durable=True)
        names.append(name)
        buffer.clear()

    for row in samples.iter_rows(samples_dir):
        key = (int(row["problem_id"]), int(row["sample_idx"]))
        if key in keep and key not in written:
            written.add(key)
            buffer.append(json.dumps({f: row.get(f) for f in ROW_FIELDS}, ensure_ascii=False)
                          + "\n")
            if len(buffer) >= shard_size:
                flush()
    if buffer or not names:
        flush()  # an empty train-00000.jsonl when nothing was kept: the dir is still a dataset
    for stale in out_dir.glob(f"{DATA_PREFIX}*.jsonl"):  # from an earlier, larger filtering
        if stale.name not in names:
            stale.unlink()
    return names


def push_to_hub(out_dir: Path, repo_id: str, files: list[str]) -> str | None:
    """Upload the dataset files and manifest to a private hub dataset repo when a token exists.

    Returns the repo URL, or None when no token is configured (then only a warning: the data
    is on disk, the push is optional). The token is never read into r1exp's own logs.
    """
    from huggingface_hub import HfApi, get_token

    if not get_token():
        log.warning("generate.push_to_hub=%s but no Hugging Face token is configured "
                    "(HF_TOKEN or `hf auth login`); the dataset stays in %s", repo_id, out_dir)
        return None
    api = HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)
    api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="dataset",
                      allow_patterns=[*files, MANIFEST], path_in_repo=".",
                      commit_message="r1exp generate: distilled samples")
    log.info("pushed %d files to %s", len(files) + 1, url)
    return str(url)
