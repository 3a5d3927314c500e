"""What one run produced: its tables, summary, workload and timeline (a plain record; saving and drawing are
:mod:`sim.report`'s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from sim.analysis.summary import RunSummary
from sim.engine.simulate import Timeline
from sim.workload.types import Workload


@dataclass
class RunResult:
    """Everything one run produced. ``record`` is the typed summary; ``timeline`` and ``workload`` are kept
    for plots and traces."""

    transfers: pd.DataFrame
    compute: pd.DataFrame
    record: RunSummary
    workload: Workload
    timeline: Timeline
    links: pd.DataFrame | None = None  # sim.analysis.counters.link_table: one row per link queue
    devices: pd.DataFrame | None = None  # sim.analysis.counters.device_table: one row per device

    @property
    def summary(self) -> dict[str, Any]:
        """The summary as ``summary.json`` holds it (:meth:`RunSummary.to_dict`; a new dict each time)."""
        return self.record.to_dict()
