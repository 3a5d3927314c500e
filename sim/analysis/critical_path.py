"""A frame's critical path, and where its latency goes.

:func:`critical_path` is the chain of compute, transfers and waits that sets one frame's latency.
**Latency breakdown.** A frame's latency (docs/design.md §3.7) is split into three parts that add up to it
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
  waiting too, and so is the time from the end of the last final activity to the moment the sink holds the
  outputs, when that is later (a measured run, whose sink takes time to collect them).

So ``compute + transfer + waiting == latency`` for every frame, and a single-device run is all compute.

Example::

    >>> import sim
    >>> from sim.analysis.critical_path import latency_breakdown
    >>> result = sim.run("scenarios/quickstart.yaml")               # doctest: +SKIP
    >>> latency_breakdown(result.workload, result.timeline)          # doctest: +SKIP
    {'latency_compute_s': ..., 'latency_transfer_s': ..., 'latency_waiting_s': ...}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.engine.simulate import Timeline
from sim.workload.types import Workload

BREAKDOWN_COLUMNS = ("latency_compute_s", "latency_transfer_s", "latency_waiting_s")


def critical_path(workload: Workload, timeline: Timeline, frame: int) -> list[dict[str, Any]]:
    """The steps (compute, transfer, wait) that set ``frame``'s latency, in time order; they tile
    ``[arrival, done]`` of the frame exactly (see the module docstring)."""
    tasks = [k for k, t in enumerate(workload.tasks) if t.frame == frame]
    messages = [k for k, m in enumerate(workload.messages) if m.frame == frame]
    return _walk(workload, timeline, frame, tasks, messages)


def critical_paths(workload: Workload, timeline: Timeline) -> list[list[dict[str, Any]]]:
    """:func:`critical_path` of every frame, in frame order; the workload is grouped by frame once, so
    the cost grows with its size, not with its size times the frame count."""
    tasks: dict[int, list[int]] = defaultdict(list)
    messages: dict[int, list[int]] = defaultdict(list)
    for k, t in enumerate(workload.tasks):
        tasks[t.frame].append(k)
    for k, m in enumerate(workload.messages):
        messages[m.frame].append(k)
    return [_walk(workload, timeline, f, tasks[f], messages[f]) for f in range(workload.frames)]


def _walk(
    workload: Workload, timeline: Timeline, frame: int, tasks: list[int], messages: list[int]
) -> list[dict[str, Any]]:
    """The critical path of ``frame``, whose tasks and messages (indices, in workload order) are given."""
    names = workload.devices
    needs: dict[int, list[int]] = defaultdict(list)
    for m in messages:
        for t in workload.messages[m].needed_by:
            needs[t].append(m)
    previous: dict[int, int] = {}
    last_on: dict[int, int] = {}
    for t in tasks:
        device = workload.tasks[t].device
        if device in last_on:
            previous[t] = last_on[device]
        last_on[device] = t

    def span(act: tuple[str, int]) -> tuple[float, float]:
        kind, k = act
        if kind == "t":
            return timeline.task_start_s[k], timeline.task_end_s[k]
        return timeline.message_start_s[k], timeline.message_end_s[k]

    def predecessors(act: tuple[str, int]) -> list[tuple[str, int]]:
        kind, k = act
        if kind == "m":
            after = workload.messages[k].after
            return [] if after is None else [("t", after)]
        return [("m", m) for m in needs[k]] + ([("t", previous[k])] if k in previous else [])

    def latest(acts: list[tuple[str, int]]) -> tuple[str, int]:
        return max(acts, key=lambda a: (span(a)[1], a[0] == "m", -a[1]))

    def step(act: tuple[str, int]) -> dict[str, Any]:
        kind, k = act
        start, end = span(act)
        if kind == "t":
            t = workload.tasks[k]
            return {
                "kind": "compute",
                "device": names[t.device],
                "layer": t.layer,
                "flops": t.flops,
                "start_s": start,
                "end_s": end,
            }
        m = workload.messages[k]
        return {
            "kind": "transfer",
            "src": names[m.src],
            "dst": names[m.dst],
            "layer": m.layer,
            "bytes": m.bytes,
            "hops": timeline.message_hops[k],
            "start_s": start,
            "end_s": end,
        }

    def wait(act: tuple[str, int], start: float, end: float) -> dict[str, Any]:
        kind, k = act
        if kind == "t":
            on = f"device {names[workload.tasks[k].device]}"
        else:
            on = f"link from {names[workload.messages[k].src]}"
        return {"kind": "wait", "on": on, "start_s": start, "end_s": end}

    finals = [("t", t) for t in tasks if workload.tasks[t].final]
    finals += [("m", m) for m in messages if workload.messages[m].final]
    arrival = timeline.frame_arrival_s[frame]
    if not finals:
        return []
    act = latest(finals)
    steps: list[dict[str, Any]] = []
    while True:
        start, _ = span(act)
        steps.append(step(act))
        preds = predecessors(act)
        before_end = span(latest(preds))[1] if preds else arrival
        if start > before_end:
            steps.append(wait(act, before_end, start))
        if not preds:
            break
        act = latest(preds)
    steps.reverse()
    done = timeline.frame_done_s[frame]
    if done > steps[-1]["end_s"]:  # a measured run: the sink held the outputs after the last one arrived
        steps.append(
            {"kind": "wait", "on": f"device {names[workload.sink]}", "start_s": steps[-1]["end_s"], "end_s": done}
        )
    return steps


def step_totals(steps: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each kind of step of a critical path: ``compute``, ``transfer`` and ``wait``."""
    return {
        kind: sum(s["end_s"] - s["start_s"] for s in steps if s["kind"] == kind)
        for kind in ("compute", "transfer", "wait")
    }


def critical_path_summary(workload: Workload, timeline: Timeline) -> dict[str, Any]:
    """The critical path of the slowest frame (the first, on ties) with its compute / transfer / wait
    totals in seconds."""
    latency = timeline.latency_s
    frame = int(np.argmax(latency)) if latency else 0
    steps = critical_path(workload, timeline, frame) if latency else []
    totals = step_totals(steps)
    return {
        "frame": frame,
        "latency_s": latency[frame] if latency else 0.0,
        "compute_s": totals["compute"],
        "transfer_s": totals["transfer"],
        "wait_s": totals["wait"],
        "steps": steps,
    }


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
    of its critical path (:func:`sim.analysis.critical_path.critical_path`, the walk in the module docstring)."""
    return _breakdown(critical_path(workload, timeline, frame), timeline, frame)


def _breakdown(steps: Sequence[dict[str, Any]], timeline: Timeline, frame: int) -> Breakdown:
    """The totals of each kind of step of ``frame``'s critical path ``steps``."""
    total = step_totals(steps)
    if not steps:  # no final activity: the whole latency is waiting
        total["wait"] = timeline.frame_done_s[frame] - timeline.frame_arrival_s[frame]
    return Breakdown(total["compute"], total["transfer"], total["wait"])


def latency_breakdown(workload: Workload, timeline: Timeline) -> dict[str, float]:
    """Mean over frames of each part of the latency, in seconds, keyed by :data:`BREAKDOWN_COLUMNS`."""
    frames = [_breakdown(steps, timeline, f) for f, steps in enumerate(critical_paths(workload, timeline))]
    n = max(1, len(frames))
    return dict(
        zip(
            BREAKDOWN_COLUMNS,
            (
                sum(b.compute_s for b in frames) / n,
                sum(b.transfer_s for b in frames) / n,
                sum(b.waiting_s for b in frames) / n,
            ),
        )
    )
