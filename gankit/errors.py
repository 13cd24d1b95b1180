"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class GankitError(Exception):
    """A problem the user can fix (bad config, missing file, corrupt checkpoint)."""


class ConfigError(GankitError):
    """A config key or value is unknown or invalid; the message names the key."""


class UnknownName(ConfigError, KeyError):
    """A registry has no part of that name (a loss, network family, objective, ...). Also a KeyError,
    as a mapping's lookup would raise; the CLI prints it as one line like any config error."""

    __str__ = Exception.__str__  # KeyError's would quote the message


class DataError(GankitError):
    """A dataset is missing or unreadable; the message names the path tried."""


class CheckpointError(GankitError):
    """A checkpoint is missing, truncated or corrupt."""


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after writing a checkpoint; ``exit_code`` is 128 + the signal
    number (130 for SIGINT, 143 for SIGTERM), what a shell reports for a process the signal ended.
    A KeyboardInterrupt, not a GankitError: a loop over runs that goes on past errors (a sweep in a
    notebook) stops when its user interrupts it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)
