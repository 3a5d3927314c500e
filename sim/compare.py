"""Comparing scenarios side by side, and where a frame's latency goes.

**Latency breakdown.** A frame's latency (DESIGN section 3) is split into three parts that add up to it
exactly, found by walking the frame's critical path backwards from the moment the sink holds all outputs:

* start at the last of the frame's final activities to end (a final task on the sink, or a message of
  the final gather);
* an activity is a task (its ``start_s..end_s`` counts as **compute**) or a message (from the start of
  its transmission on its first hop to its arrival, including link latency and any queueing at
  intermediate hops, counts as **transfer**);
* its predecessors within the frame are: for a task, the messages it needs and the previous task of the
  same frame on the same device; for a message, the task whose end made it ready. The walk moves to the
  predecessor that ended last (ties go to a message, then to the earlier one in workload order), and the
  gap between that end and the activity's start counts as **waiting** (a link queue busy with other
  messages, a device busy with another frame);
* when an activity has no predecessor in the frame, the time from the frame's arrival to its start is
  waiting too.

So ``compute + transfer + waiting == latency`` for every frame, and a single-device run is all compute.

Example::

    >>> import sim
    >>> from sim.compare import latency_breakdown
    >>> result = sim.run("scenarios/quickstart.yaml")               # doctest: +SKIP
    >>> latency_breakdown(result.workload, result.timeline)          # doctest: +SKIP
    {'latency_compute_s': ..., 'latency_transfer_s': ..., 'latency_waiting_s': ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.engine import Timeline
from sim.errors import UserError
from sim.workload import Workload

BREAKDOWN_COLUMNS = ("latency_compute_s", "latency_transfer_s", "latency_waiting_s")
COMPARISON_COLUMNS = (
    "scenario", "file", "accuracy", "flops_total", "bytes_total", "dense_bytes", "packed_bytes", "messages",
    "latency_s", *BREAKDOWN_COLUMNS, "throughput_fps",
)  # fmt: skip


@dataclass(frozen=True)
class Breakdown:
    """One frame's latency split along its critical path, in seconds."""

    compute_s: float
    transfer_s: float
    waiting_s: float

    @property
    def latency_s(self) -> float:
        """The sum of the three parts: the frame's latency."""
        return self.compute_s + self.transfer_s + self.waiting_s


def frame_breakdown(workload: Workload, timeline: Timeline, frame: int) -> Breakdown:
    """The compute / transfer / waiting split of ``frame``'s latency: the totals of each kind of step
    of its critical path (:func:`sim.counters.critical_path`, the walk in the module docstring)."""
    from sim.counters import critical_path

    return _breakdown(critical_path(workload, timeline, frame), timeline, frame)


def _breakdown(steps: Sequence[dict[str, Any]], timeline: Timeline, frame: int) -> Breakdown:
    """The totals of each kind of step of ``frame``'s critical path ``steps``."""
    from sim.counters import step_totals

    total = step_totals(steps)
    if not steps:  # no final activity: the whole latency is waiting
        total["wait"] = timeline.frame_done_s[frame] - timeline.frame_arrival_s[frame]
    return Breakdown(total["compute"], total["transfer"], total["wait"])


def latency_breakdown(workload: Workload, timeline: Timeline) -> dict[str, float]:
    """Mean over frames of each part of the latency, in seconds, keyed by :data:`BREAKDOWN_COLUMNS`."""
    from sim.counters import critical_paths

    frames = [_breakdown(steps, timeline, f) for f, steps in enumerate(critical_paths(workload, timeline))]
    n = max(1, len(frames))
    return dict(zip(BREAKDOWN_COLUMNS, (
        sum(b.compute_s for b in frames) / n,
        sum(b.transfer_s for b in frames) / n,
        sum(b.waiting_s for b in frames) / n,
    )))  # fmt: skip


def compare(scenarios: Sequence[str | Path], out: str | Path | None = None, jobs: int | None = None,
            progress: bool = True) -> pd.DataFrame:  # fmt: skip
    """Run each scenario file and return one row per scenario (:data:`COMPARISON_COLUMNS`).

    ``dense_bytes`` is what every message would cost sent dense, ``packed_bytes`` what it costs with
    ``auto`` (the smallest format per message). With ``out``, writes ``comparison.csv`` and the stacked
    latency breakdown ``breakdown.png`` there. Every file is validated before any work starts; a scenario
    that cannot be built stops the comparison (:class:`UserError` naming its file).

    Example::

        >>> compare(["scenarios/quickstart.yaml", "scenarios/bandwidth.yaml"], out="results/cmp")  # doctest: +SKIP
    """
    from sim import plots, sweeps
    from sim.runner import as_scenario

    parsed = [as_scenario(path) for path in scenarios]
    rows = sweeps.run_points(parsed, jobs=jobs, progress=progress)
    for path, row in zip(scenarios, rows):
        if "error" in row:
            raise UserError(f"{path}: {row['error']}")
    table = pd.DataFrame(rows)
    if table["accuracy"].isna().all():
        table = table.drop(columns="accuracy")
    table.insert(0, "file", [str(p) for p in scenarios])
    table.insert(0, "scenario", [sc.name for sc in parsed])
    table = table.rename(columns={"bytes_dense": "dense_bytes", "bytes_auto": "packed_bytes"})
    table = table[[c for c in COMPARISON_COLUMNS if c in table.columns]]
    if out is not None:
        sweeps.write_csv(table, Path(out) / "comparison.csv")
        plots.latency_breakdown(table, Path(out) / "breakdown.png")
    return table


def format_table(table: pd.DataFrame) -> str:
    """The comparison as an aligned text table: latencies in ms, bytes in kB (1 kB = 1e3 bytes)."""
    shown = pd.DataFrame({"scenario": table["scenario"]})
    if "accuracy" in table.columns:
        shown["accuracy %"] = (table["accuracy"] * 100).round(2)
    shown["MFLOP"] = (table["flops_total"] / 1e6).round(3)
    for col, name in (("bytes_total", "sent kB"), ("dense_bytes", "dense kB"), ("packed_bytes", "packed kB")):
        shown[name] = (table[col] / 1e3).round(3)
    shown["latency ms"] = (table["latency_s"] * 1e3).round(3)
    for col in BREAKDOWN_COLUMNS:
        shown[col.split("_")[1] + " ms"] = (table[col] * 1e3).round(3)
    return shown.to_string(index=False)
