"""What an evaluation writes: per-sample records, a results JSON, a printed table.

Samples are committed batch by batch to the sample store (`<benchmark>/samples/shard-*.jsonl`,
r1exp.inference.samples), the resume point: an interrupted evaluation restarted on the same
run dir generates only what is missing. A record carries the fingerprint of the settings that
produced it (model, prompt, sampling); records of other settings are ignored, never mixed in.
Once a benchmark is complete, `<benchmark>/samples.jsonl` holds exactly the samples behind
its results, one JSON line each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from r1exp.inference import samples
from r1exp.rundir import EVAL_RESULTS, write_atomically, write_json_atomically

log = logging.getLogger(__name__)
SAMPLES_FILE = "samples.jsonl"
# Run dirs of earlier versions appended samples to samples.jsonl / samples.rank<r>.jsonl
# directly; their lines still count when such a run resumes.
APPENDED_GLOB = "samples*.jsonl"
KEY = ("problem_id", "sample")
# Columns of the printed table: (header, key in a benchmark's results, format).
TABLE_COLUMNS = (
    ("benchmark", None, "{}"),
    ("n", "n_problems", "{:d}"),
    ("k", "k", "{:d}"),
    ("pass@1", "pass@1", "{:.4f}"),
    ("stderr", "stderr", "{:.4f}"),
    ("pass@k", "pass@k", "{:.4f}"),
    ("tokens", "tokens_generated", "{:d}"),
    ("wall s", "wall_time_s", "{:.1f}"),
    ("tok/s", "tokens_per_s", "{:.1f}"),
)


def store_dir(bench_dir: Path) -> Path:
    return bench_dir / samples.SAMPLES_DIR


def read_samples(bench_dir: Path, config_hash: str) -> list[dict]:
    """Every sample of this fingerprint, once per key: the store's, then those of the
    samples*.jsonl files beside it (a line cut short by a kill is skipped)."""
    records, other, seen = [], 0, set()
    for record in _all_records(bench_dir):
        if record.get("config") != config_hash:
            other += 1
        elif (key := samples.row_key(record, KEY)) not in seen:
            seen.add(key)
            records.append(record)
    if other:
        log.warning("ignoring %d samples in %s made with other settings", other, bench_dir)
    return records


def _all_records(bench_dir: Path) -> Iterable[dict]:
    yield from samples.iter_rows(store_dir(bench_dir))
    for path in sorted(bench_dir.glob(APPENDED_GLOB)):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def write_samples(bench_dir: Path, records: Iterable[dict]) -> None:
    """`<benchmark>/samples.jsonl`: the samples behind the results, whole or not at all."""
    bench_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(bench_dir / SAMPLES_FILE, "".join(
        json.dumps(record, ensure_ascii=False) + "\n" for record in records), durable=True)


def write_results(out_dir: Path, results: dict) -> Path:
    path = out_dir / EVAL_RESULTS
    write_json_atomically(path, results)
    return path


def format_table(results: dict) -> str:
    """The table printed at the end, built from the same dict that is written as JSON."""
    rows = [[header for header, _, _ in TABLE_COLUMNS]]
    for name, bench in results["benchmarks"].items():
        row = []
        for _, key, fmt in TABLE_COLUMNS:
            if key == "pass@k":
                key = f"pass@{bench['k']}"
            if key is None:
                row.append(name)
            elif key in bench:
                row.append(fmt.format(bench[key]))
            else:  # a peer backend (lighteval) does not report every column
                row.append("-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in
                       enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def mlflow_metrics(results: dict) -> dict[str, float]:
    """`eval/<benchmark>/<metric>` for every number (r1exp.tracking maps '@' to '_at_')."""
    metrics = {}
    for name, bench in results["benchmarks"].items():
        for key, value in bench.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"eval/{name}/{key}"] = float(value)
    return metrics
