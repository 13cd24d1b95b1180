"""User-facing errors: the CLI prints their message as one line and exits non-zero.

A message names the option at fault as its user wrote it: :func:`option` gives ``--truncation 2``
while the command line runs (:func:`command_line`) and ``truncation=2`` from Python."""
import contextlib
import contextvars

_ON_COMMAND_LINE = contextvars.ContextVar("gankit_on_command_line", default=False)
_UNSET = object()


@contextlib.contextmanager
def command_line():
    """While inside, :func:`option` names options as command-line flags (``gankit.cli.main`` enters it)."""
    token = _ON_COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _ON_COMMAND_LINE.reset(token)


def on_command_line() -> bool:
    """Whether the command line is running (inside :func:`command_line`)."""
    return _ON_COMMAND_LINE.get()


def option(flag: str, value=_UNSET, param: str | None = None) -> str:
    """How a message names an option and its value: ``--tile 8`` (``--rejection`` for ``value=True``) on
    the command line, ``tile=8`` from Python. ``param``: the Python keyword where it is not the
    flag's name (``-o`` is ``out``, ``--class`` is ``label``)."""
    if _ON_COMMAND_LINE.get():
        return flag if value is _UNSET or value is True else f"{flag} {value}"
    name = param or flag.lstrip("-").replace("-", "_")
    return name if value is _UNSET else f"{name}={value!r}"


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
