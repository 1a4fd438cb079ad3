"""Metrics outlive a tracking server that goes away.

MLflow's client retries a request for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES, 7 by default)
while the training step that logged it waits, then raises, which would end the run; its async
mode drops a batch that fails. So r1exp keeps MLflow's own retries short (r1exp.tracking.
mlflow_run.client_for) and a batch the server does not take is appended to
`<run dir>/mlflow_pending.jsonl` with its step and timestamp. Each later logging call first
sends what is pending, at most once per RETRY_INTERVAL_S while the server stays away, so
training never waits on it; finishing the run sends the rest. Sending a point twice is
harmless: MLflow's stores skip a metric that equals one the run holds (key, value, step and
timestamp), so every step ends up logged exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Callable

from r1exp.rundir import RunDir, write_atomically

log = logging.getLogger(__name__)
RETRY_INTERVAL_S = 10.0  # while the server is away: how often a logging call tries it again
MAX_BATCH = 1000         # MLflow's limit on metrics per log_batch
TRANSIENT_ERROR_CODES = ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
# What a connection error boils down to, inside MLflow's page-long message.
CONNECTION_ERROR = re.compile(r"\[Errno -?\d+\] [^'\")\]]+|Read timed out|Connection aborted")


class TrackingUnreachable(RuntimeError):
    """The tracking server did not answer (down, restarting, network): worth trying later."""


def unreachable(err: BaseException) -> bool:
    """Whether `err` from an MLflow call means "try later", not "the server said no"."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, TrackingUnreachable):
        return True
    if isinstance(err, MlflowException):
        # A refused connection or exhausted retries come as a plain MlflowException, whose
        # code is INTERNAL_ERROR; a request the server rejects carries the reason's code.
        return err.error_code in TRANSIENT_ERROR_CODES
    return isinstance(err, (requests.RequestException, OSError))


class PendingMetrics:
    """The run dir's queue of metric batches the tracking server has not taken yet."""

    def __init__(self, path: Path, uri: str):
        self.path, self.uri = Path(path), uri
        self.down_since: float | None = None
        self.next_try = 0.0

    def log(self, send: Callable[[str, list], None], run_id: str, metrics: list) -> None:
        """Send what is pending, then `metrics` (mlflow Metric entities); keep what the
        server does not take. Never raises for an unreachable server, never waits for it."""
        if self.away():
            self._append(run_id, metrics)
            return
        try:
            self.deliver(send)
        except TrackingUnreachable:
            self._append(run_id, metrics)
            return
        for start in range(0, len(metrics), MAX_BATCH):
            try:
                _call(send, run_id, metrics[start:start + MAX_BATCH])
            except TrackingUnreachable as err:
                self.went_away(err)
                self._append(run_id, metrics[start:])
                return

    def deliver(self, send: Callable[[str, list], None]) -> int:
        """Send every pending batch in order; raise TrackingUnreachable, keeping the unsent
        ones, when the server is still away. Returns how many batches went out."""
        batches = self._read()
        sent = 0
        try:
            for run_id, metrics in batches:
                _call(send, run_id, metrics)
                sent += 1
        except TrackingUnreachable as err:
            self._rewrite(batches[sent:])
            self.went_away(err)
            raise
        if batches:
            self.path.unlink(missing_ok=True)
        if self.down_since is not None or batches:
            away = time.monotonic() - self.down_since if self.down_since is not None else None
            log.warning("MLflow tracking server %s is back%s: sent %d batch(es) of metrics "
                        "logged while it was away", self.uri,
                        f" after {away:.0f}s" if away is not None else "", sent)
        self.down_since = None
        return sent

    def away(self) -> bool:
        """The server was away at the last try and it is not yet time to try again."""
        return self.down_since is not None and time.monotonic() < self.next_try

    def count(self) -> int:
        return len(self._read())

    def went_away(self, err: BaseException) -> None:
        self.next_try = time.monotonic() + RETRY_INTERVAL_S
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("MLflow tracking server %s is unreachable (%s); training goes on, its "
                        "metrics are kept in %s and sent once the server is back",
                        self.uri, describe(err), self.path)

    def _append(self, run_id: str, metrics: list) -> None:
        if not metrics:
            return
        with self.path.open("a") as out:
            out.write(self._line(run_id, metrics))
            out.flush()
            os.fsync(out.fileno())  # a kill right after must not lose the step

    def _line(self, run_id: str, metrics: list) -> str:
        return json.dumps({"uri": self.uri, "run_id": run_id, "metrics": [
            [m.key, m.value, m.timestamp, m.step] for m in metrics]}) + "\n"

    def _read(self) -> list[tuple[str, list]]:
        from mlflow.entities import Metric

        if not self.path.is_file():
            return []
        batches = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line of a process killed mid-write
                continue
            batches.append((record["run_id"], [Metric(k, v, t, s)
                                               for k, v, t, s in record["metrics"]]))
        return batches

    def _rewrite(self, batches: list[tuple[str, list]]) -> None:
        write_atomically(self.path, "".join(self._line(run_id, metrics)
                                            for run_id, metrics in batches))


def _call(send: Callable[[str, list], None], run_id: str, metrics: list) -> None:
    from mlflow.exceptions import MlflowException

    try:
        send(run_id, metrics)
    except Exception as err:
        if unreachable(err):
            raise TrackingUnreachable(describe(err)) from err
        if not isinstance(err, MlflowException):
            raise  # a bug, not the server's answer
        # Refused (a deleted run, a bad value): sending again cannot help, and the metrics
        # are still in the worker log and metrics.json.
        log.warning("MLflow refused %d metric(s) of run %s: %s", len(metrics), run_id,
                    describe(err))


def describe(err: BaseException) -> str:
    """A line that says what went wrong: `[Errno 111] Connection refused`, not MLflow's
    paragraph about connection pools."""
    text = str(err).strip()
    found = CONNECTION_ERROR.search(text)
    if found:
        return found.group(0).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def main(run_dir: str) -> int:
    """`python -m r1exp.tracking.pending <run dir>`: send what a run could not, by hand."""
    from r1exp.tracking.mlflow_run import client_for

    path = RunDir(run_dir).pending_metrics_file
    if not path.is_file():
        print(f"nothing pending in {run_dir}")
        return 0
    uri = json.loads(path.read_text().splitlines()[0])["uri"]
    client = client_for(uri)
    pending = PendingMetrics(path, uri)
    try:
        sent = pending.deliver(lambda run_id, metrics: client.log_batch(run_id, metrics=metrics))
    except TrackingUnreachable as err:
        print(f"MLflow tracking server {uri} still unreachable ({err}); try again later")
        return 1
    print(f"sent {sent} batch(es) of metrics to {uri}")
    return 0


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1]))
