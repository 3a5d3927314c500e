"""Progress of long work (builds, sweep points, compare rows): a log line per finished item and a bar.

Every finished item logs one INFO line on the ``sim.progress`` logger, with the time since the phase
started and an estimate of the time left, e.g. ``build 2/5 done in 3.1 s, about 4.6 s left``. Items of
one phase may differ in cost (a build that fine-tunes a pruned model takes many times one that does not):
each item has a weight, its expected cost relative to the others, and the estimate is the time per unit
of weight so far times the weight left (with equal weights: the mean time per item times the items left).
Phases are counted apart (builds cost seconds each, sweep points milliseconds), so one phase's estimate
never prices its items at another's rate. The lines reach whatever handler the caller installs
(``dsim`` prints them to stderr when stderr is not a terminal, and to ``--log FILE``); a tqdm bar shows
the same progress on a terminal. :func:`show_bars` turns the bars off for the whole process (``--quiet``).

Example::

    >>> with Progress(2, "build", "workload", clock=iter([0.0, 1.5, 3.0]).__next__) as p:
    ...     p.step()
    ...     p.step()
    >>> [line for line in p.lines]
    ['build 1/2 done in 1.5 s, about 1.5 s left', 'build 2/2 done in 3.0 s']
    >>> with Progress(2, "build", "workload", clock=iter([0.0, 1.5]).__next__, weight=11) as p:
    ...     p.step(weight=1)  # a cheap build first; the one left weighs 10 times as much
    >>> p.lines
    ['build 1/2 done in 1.5 s, about 15 s left']
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
    keeps every line logged, oldest first. ``weight`` is the sum of the items' weights (default: one each),
    and each :meth:`step` says the weight of the item that finished.
    """

    def __init__(
        self,
        total: int,
        what: str,
        unit: str,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        weight: float | None = None,
    ) -> None:
        self.total, self.what, self.enabled, self.clock = total, what, enabled, clock
        self.weight = float(total) if weight is None else weight
        self.done = 0
        self.done_weight = 0.0
        self.lines: list[str] = []
        self.start_s = clock()
        bar_off = None if enabled and _BARS[0] else True  # None: tqdm shows the bar only on a terminal
        self.bar = tqdm(total=total, desc=what, unit=unit, disable=bar_off)

    def step(self, weight: float = 1.0) -> None:
        """One more item, of ``weight``, finished: log its line and move the bar."""
        self.done += 1
        self.done_weight += weight
        self.bar.update()
        if not self.enabled:
            return
        elapsed_s = self.clock() - self.start_s
        line = f"{self.what} {self.done}/{self.total} done in {duration(elapsed_s)}"
        if self.done < self.total and self.done_weight > 0:
            left_s = elapsed_s / self.done_weight * max(0.0, self.weight - self.done_weight)
            line += f", about {duration(left_s)} left"
        self.lines.append(line)
        LOG.info(line)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.close()
