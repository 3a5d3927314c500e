"""The one exception type for user mistakes.

A :class:`UserError` carries a one-line message that names what is wrong and how to fix it. The CLI prints
it without a traceback and exits with status 2; library callers can catch it like any exception.
"""


class UserError(ValueError):
    """A mistake in user input (scenario, partition file, checkpoint, dataset folder, command line)."""
