"""Controller-side MLflow calls that a briefly absent tracking server must not fail: opening
the run, its final status, the artifacts at the end.

Each is retried while the server stays away, up to UNREACHABLE_WAIT_S from the first failure;
the deadline is shared by a run's calls, so a server that is gone for good costs that wait
once, not once per call. Then a warning says what did not reach MLflow and the run goes on:
its files in the run dir stay the record. An error that is the server's answer (not an outage)
is raised as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from r1exp.tracking.pending import describe, unreachable

log = logging.getLogger(__name__)
UNREACHABLE_WAIT_S = 120.0  # how long the controller waits for the server to come back
MAX_DELAY_S = 10.0


class Patience:
    def __init__(self, uri: str, wait_s: float | None = None):
        self.uri = uri
        if wait_s is None:  # a local store (sqlite, files) does not come back by waiting
            wait_s = UNREACHABLE_WAIT_S if uri.startswith(("http://", "https://")) else 0.0
        self.wait_s = wait_s
        self.deadline: float | None = None  # set at the first failure, cleared by a success

    def call(self, what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, fn()) once the server takes it; (False, None) after the wait ran out."""
        delay = 1.0
        while True:
            try:
                result = fn()
            except Exception as err:
                if not unreachable(err):
                    raise
                now = time.monotonic()
                if self.deadline is None:
                    self.deadline = now + self.wait_s
                if now < self.deadline and delay == 1.0:
                    log.warning("MLflow tracking server %s is unreachable (%s); waiting up to "
                                "%.0fs for it to %s", self.uri, describe(err),
                                self.deadline - now, what)
                if now >= self.deadline:
                    log.warning("MLflow tracking server %s still unreachable: could not %s "
                                "(%s)", self.uri, what, describe(err))
                    return False, None
                time.sleep(min(delay, MAX_DELAY_S, self.deadline - now))
                delay *= 2
                continue
            if self.deadline is not None:
                log.warning("MLflow tracking server %s is back", self.uri)
                self.deadline = None
            return True, result

