"""Process-wide counters of scoring trouble (timeouts, errors, unparseable golds).

A reward that silently returns 0.0 for every item looks like a model that learns nothing; these
counters make the difference visible. They are cumulative since the process started; the
training stage logs them through RewardHealthCallback (callback.py).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger("r1exp.rewards")

# Each kind of trouble is logged as a warning this many times, then only counted.
WARNINGS_PER_KIND = 5

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_warned: Counter[str] = Counter()


def count(key: str, n: int = 1) -> None:
    if n:
        with _lock:
            _counts[key] += n


def warn(kind: str, message: str) -> None:
    """Log `message` for the first few occurrences of `kind`; always count it."""
    with _lock:
        _warned[kind] += 1
        seen = _warned[kind]
    if seen <= WARNINGS_PER_KIND:
        suffix = " (further ones are only counted)" if seen == WARNINGS_PER_KIND else ""
        log.warning("%s%s", message, suffix)


def health_metrics() -> dict[str, float]:
    """Cumulative counters, e.g. {'rewards/accuracy/timeouts_total': 2.0, ...}."""
    with _lock:
        return {key: float(value) for key, value in sorted(_counts.items())}
