"""Errors a user can fix by changing their config or command line."""


class ConfigError(ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed.

    Raised before any model or dataset is loaded, so a bad command costs seconds, not minutes.
    """
