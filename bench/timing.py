"""What every benchmark prints with its figures: repeated measurements as median and spread, and how busy
the machine was (``/proc/loadavg``) when they were taken.

A figure is worth publishing only from a quiet machine (``../shared/tools/quiet-run``): on a busy one it
can be off by 25-300 %.

Example::

    >>> spread([3.0, 1.0, 2.0])
    'median 2 (1 .. 3, 3 runs)'
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

REPEATS = 5  # measurements behind each printed median


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages of this machine (Linux), e.g. ``load 0.12 0.30 0.25``."""
    try:
        return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load unknown"


def spread(values: Sequence[float], fmt: str = "g") -> str:
    """The median of ``values`` and their range, as ``median M (LO .. HI, N runs)``."""
    return f"median {statistics.median(values):{fmt}} ({min(values):{fmt}} .. {max(values):{fmt}}, {len(values)} runs)"
