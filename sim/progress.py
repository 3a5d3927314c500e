"""Progress of long work (builds, sweep points, compare rows): a log line per finished item and a bar.

Every finished item logs one INFO line on the ``sim.progress`` logger, with the time since the phase
started and an estimate of the time left (the mean time per item so far, times the items left), e.g.
``build 2/5 done in 3.1 s, about 4.6 s left``. The lines reach whatever handler the caller installs
(``dsim`` prints them to stderr when stderr is not a terminal, and to ``--log FILE``); a tqdm bar shows
the same progress on a terminal. :func:`show_bars` turns the bars off for the whole process (``--quiet``).

Example::

    >>> with Progress(2, "build", "workload", clock=iter([0.0, 1.5, 3.0]).__next__) as p:
    ...     p.step()
    ...     p.step()
    >>> [line for line in p.lines]
    ['build 1/2 done in 1.5 s, about 1.5 s left', 'build 2/2 done in 3.0 s']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

from tqdm import tqdm

LOG = logging.getLogger("sim.progress")
_BARS = [True]  # whether a bar may show (on a terminal); off for the process with show_bars(False)


def show_bars(on: bool) -> None:
    """Allow (the default) or forbid progress bars in this process; the log lines are not affected."""
    _BARS[0] = on


def duration(seconds: float) -> str:
    """A short human reading of a duration in seconds.

    >>> duration(3.14159), duration(42.4), duration(754.0)
    ('3.1 s', '42 s', '12.6 min')
    """
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


class Progress:
    """Count the finished items of one phase of ``total`` items named ``what``; see the module docstring.

    With ``enabled`` false nothing is logged or shown. ``clock`` returns seconds (monotonic); ``lines``
    keeps every line logged, oldest first.
    """

    def __init__(
        self,
        total: int,
        what: str,
        unit: str,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.what, self.enabled, self.clock = total, what, enabled, clock
        self.done = 0
        self.lines: list[str] = []
        self.start_s = clock()
        bar_off = None if enabled and _BARS[0] else True  # None: tqdm shows the bar only on a terminal
        self.bar = tqdm(total=total, desc=what, unit=unit, disable=bar_off)

    def step(self) -> None:
        """One more item finished: log its line and move the bar."""
        self.done += 1
        self.bar.update()
        if not self.enabled:
            return
        elapsed_s = self.clock() - self.start_s
        line = f"{self.what} {self.done}/{self.total} done in {duration(elapsed_s)}"
        if self.done < self.total:
            line += f", about {duration(elapsed_s / self.done * (self.total - self.done))} left"
        self.lines.append(line)
        LOG.info(line)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.close()
