"""Errors that end a run with a clear message instead of a traceback."""


class ObsgapError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 2


class InputError(ObsgapError):
    """Bad usage or unreadable input (exit code 2)."""


class SourceError(ObsgapError):
    """A configured source failed (exit code 3; the report is still written, marked partial)."""

    exit_code = 3
