"""The one exception type for user mistakes.

A :class:`UserError` carries a one-line message that names what is wrong and how to fix it. The CLI prints
it without a traceback and exits with status 2; library callers can catch it like any exception.
"""


class UserError(ValueError):
    """A mistake in user input (scenario, partition file, checkpoint, dataset folder, command line)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of its message`` (at most ``limit`` characters of it), for quoting a library's
    exception inside a one-line :class:`UserError`."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:limit]}" if text else type(exc).__name__
