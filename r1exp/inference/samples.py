"""The sample store: every generated sample, committed shard by shard, and the one rank barrier.

Eval (`<eval dir>/<benchmark>/samples/`) and generate (`<output_dir>/samples/`) keep their
samples here; it is their unit of resume. A shard is written under a temporary name, synced
to disk, then renamed over its final name (`r1exp.rundir.write_atomically`), so a shard on
disk is always whole: a process killed at any moment leaves committed shards plus at most a
stale temporary, which is ignored and cleaned up. The keys in committed shards are exactly
what is done; a re-run generates the rest. With several worker processes (the launcher's
RANK / WORLD_SIZE), rank r writes `shard-rR-XXXXX.jsonl`, so no two processes ever write one
file, and rank 0 waits for the others' samples (`wait_for`) before it summarizes.

A row's key is named by the caller: ("problem_id", "sample_idx") for generate, ("problem_id",
"sample") for eval, whose rows also carry the fingerprint of their settings.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from r1exp.rundir import temporary_target, write_atomically

log = logging.getLogger(__name__)
SAMPLES_DIR = "samples"
SHARD_GLOB = "shard-*.jsonl"
GENERATE_KEY = ("problem_id", "sample_idx")
BARRIER_POLL_S = 2.0


def shard_pattern(rank: int, world_size: int) -> re.Pattern:
    prefix = "shard-" if world_size == 1 else f"shard-r{rank}-"
    return re.compile(re.escape(prefix) + r"(\d{5,})\.jsonl")


def shard_name(seq: int, rank: int, world_size: int) -> str:
    return f"shard-{seq:05d}.jsonl" if world_size == 1 else f"shard-r{rank}-{seq:05d}.jsonl"


def shard_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob(SHARD_GLOB)) if directory.is_dir() else []


def iter_rows(directory: Path, shards: Iterable[Path] | None = None) -> Iterator[dict]:
    """Every committed row (of `shards`, default all), shard by shard; shards are whole by
    construction."""
    for path in shard_paths(directory) if shards is None else shards:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def row_key(row: dict, key: tuple[str, str]) -> tuple:
    return tuple(row[field] for field in key)


def committed_keys(directory: Path, key: tuple[str, str] = GENERATE_KEY,
                   select: Callable[[dict], bool] | None = None) -> set[tuple]:
    """The keys of every committed row (that `select` accepts)."""
    return {row_key(row, key) for row in iter_rows(directory) if select is None or select(row)}


def wait_for(directory: Path, expected: set[tuple], key: tuple[str, str] = GENERATE_KEY,
             select: Callable[[dict], bool] | None = None,
             poll_s: float = BARRIER_POLL_S) -> None:
    """The rank barrier: rank 0 returns once every expected key is committed, by any rank.

    It waits for samples, not for processes, so it needs no launch identity and works across
    nodes; accelerate/torchrun end the whole group when a rank fails, so it cannot wait forever
    on a dead rank.
    """
    while True:
        missing = expected - committed_keys(directory, key, select)
        if not missing:
            return
        log.info("waiting for %d samples from the other ranks", len(missing))
        time.sleep(poll_s)


class ShardWriter:
    """Buffers rows and commits them as one shard every `shard_size` rows or `interval_s`."""

    def __init__(self, directory: Path, *, shard_size: int, interval_s: float, rank: int = 0,
                 world_size: int = 1):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_size, self.interval_s = shard_size, interval_s
        self.rank, self.world_size = rank, world_size
        pattern = shard_pattern(rank, world_size)
        mine = [int(m.group(1)) for p in self.directory.iterdir()
                if (m := pattern.fullmatch(p.name))]
        self.next_seq = max(mine, default=-1) + 1
        for stale in self.directory.iterdir():  # left by a killed attempt of this rank
            target = temporary_target(stale.name)
            if target is not None and pattern.fullmatch(target):
                stale.unlink()
        self.buffer: list[dict] = []
        self.last_commit = time.monotonic()
        self.committed_rows = 0

    def add(self, rows: list[dict]) -> int:
        """Buffer rows; commit when due. Returns the number of rows committed by this call."""
        self.buffer.extend(rows)
        due = time.monotonic() - self.last_commit >= self.interval_s
        if len(self.buffer) >= self.shard_size or (due and self.buffer):
            return self.commit()
        return 0

    def commit(self) -> int:
        if not self.buffer:
            return 0
        rows, self.buffer = self.buffer, []
        text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
        write_atomically(self.directory / shard_name(self.next_seq, self.rank, self.world_size),
                         text, durable=True)
        self.next_seq += 1
        self.last_commit = time.monotonic()
        self.committed_rows += len(rows)
        return len(rows)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Also on Ctrl-C or an engine error: what was generated is kept. (A SIGKILL loses the
        # buffer, never a committed shard.)
        self.commit()
