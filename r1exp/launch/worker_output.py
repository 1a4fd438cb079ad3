"""The workers' output, shown on the terminal as always and kept in `<run dir>/worker.log`.

A failure sends the user to the run dir and its MLflow run, so the log there must hold all the
workers printed: progress bars, warnings, tracebacks. The bytes are copied as they arrive,
stdout to stdout and stderr to stderr, so tqdm's carriage returns still redraw one line and
callers that read either stream see what they saw before.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

# Grandchildren (e.g. a scorer pool) may hold the pipes open after the worker exited; the copy
# must not hang the controller on them.
DRAIN_TIMEOUT_S = 10.0


@contextmanager
def teed_process(argv: list[str], env: dict[str, str], log_path: Path
                 ) -> Iterator[subprocess.Popen]:
    """Start `argv` with both streams copied to the terminal and appended to `log_path`.

    Appended: a resumed run keeps the log of the attempts before it.
    """
    # Unbuffered: through a pipe, Python would otherwise hold prints back until exit.
    env = {**env, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lock = threading.Lock()
        copies = [threading.Thread(target=_copy, args=(source, terminal, log_file, lock),
                                   daemon=True)
                  for source, terminal in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))]
        for copy in copies:
            copy.start()
        try:
            yield proc
        finally:
            for copy in copies:
                copy.join(timeout=DRAIN_TIMEOUT_S if proc.poll() is not None else 0.5)


def _copy(source: BinaryIO, terminal: TextIO, log_file: BinaryIO, lock: threading.Lock) -> None:
    raw = getattr(terminal, "buffer", None)  # pytest's capture and some IDEs have text only
    for chunk in iter(lambda: source.read1(65536), b""):
        with lock:
            log_file.write(chunk)
            log_file.flush()
        try:
            if raw is not None:
                raw.write(chunk)
                raw.flush()
            else:
                terminal.write(chunk.decode(errors="replace"))
                terminal.flush()
        except (OSError, ValueError):  # the terminal went away; the log still gets it all
            raw = None
            terminal = _Discard()


class _Discard:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass
