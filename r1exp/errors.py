"""Errors a user can fix by changing their config or command line."""

from __future__ import annotations

import sys


class ConfigError(ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed.

    Raised before any model or dataset is loaded, so a bad command costs seconds, not minutes.
    """


def config_error_exit(err: ConfigError, origin: str | None = None) -> None:
    """Exit with status 2 and the error in one line, no traceback. `origin`: where a value the
    error names came from, when not from the user."""
    print(f"r1exp: config error: {err}", file=sys.stderr)
    if origin:
        print(f"r1exp: {origin}", file=sys.stderr)
    sys.exit(2)
