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


class RunFailure(RuntimeError):
    """A real run (``dsim execute``) that failed for a reason outside the scenario: a device process that
    died or stalled, a link that went down, a run past its ``--timeout``. One line naming the device or
    link; whoever cleans up after it (processes, namespaces) appends what it did to ``cleaned``. The CLI
    prints it without a traceback and exits with status 1.

    >>> exc = RunFailure("dsim execute: link cam-d1 went down during the run")
    >>> exc.cleaned.append("2 device processes ended")
    >>> str(exc)
    'dsim execute: link cam-d1 went down during the run; cleaned up: 2 device processes ended'
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.cleaned: list[str] = []

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}; cleaned up: {', '.join(self.cleaned)}" if self.cleaned else text
