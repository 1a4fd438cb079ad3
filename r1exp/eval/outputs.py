"""What an evaluation writes: an append-only per-sample JSONL, a results JSON, a printed table.

The JSONL is the resume point: each finished sample is one line, flushed and fsynced with its
batch, so an interrupted evaluation restarted on the same run dir generates only what is
missing. A line carries the fingerprint of the settings that produced it (model, prompt,
sampling); lines of other settings are ignored, never mixed in.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from r1exp.rundir import EVAL_RESULTS, write_json_atomically

log = logging.getLogger(__name__)
SAMPLES_GLOB = "samples*.jsonl"
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


def samples_path(out_dir: Path, rank: int, world_size: int) -> Path:
    return out_dir / ("samples.jsonl" if world_size == 1 else f"samples.rank{rank}.jsonl")


def read_samples(out_dir: Path, config_hash: str) -> list[dict]:
    """Every complete sample line of this fingerprint, from all ranks' files.

    A line cut short by a kill is skipped (it is the one sample that is regenerated).
    """
    records, other = [], 0
    for path in sorted(out_dir.glob(SAMPLES_GLOB)):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("config") == config_hash:
                records.append(record)
            else:
                other += 1
    if other:
        log.warning("ignoring %d samples in %s made with other settings", other, out_dir)
    return records


class SampleLog:
    """Append-only JSONL of finished samples; `write` flushes and fsyncs each batch."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        cut_short = path.is_file() and path.stat().st_size and _last_byte(path) != b"\n"
        self._file = open(path, "a", encoding="utf-8")
        if cut_short:  # a kill left half a line: end it, or the next record joins it
            self._file.write("\n")

    def write(self, records: Iterable[dict]) -> None:
        for record in records:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SampleLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


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
