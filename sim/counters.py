"""Counters of a run: per-link and per-device busy time, a frame's critical path, and stream statistics.

* :func:`link_table` (``links.csv``): one row per FIFO queue (a link direction, a half-duplex link
  ``a<->b``, or the shared ``medium``): bytes carried, transmissions, busy time, utilisation (busy time /
  makespan), and the total time transmissions waited for it.
* :func:`device_table` (``devices.csv``): one row per device: its rates, tasks, FLOPs, busy time, idle
  time (makespan - busy) and utilisation.
* :func:`critical_path`: the chain of compute, transfers and waits that sets one frame's latency. Walking
  back from the moment the sink holds all outputs, each activity's predecessor is whichever of its
  inputs ended last (for a task: the messages it needs and the previous task of the same frame on its
  device; for a message: the task whose end made it ready); ties go to a message, then to the earlier
  one in workload order (the rule of :func:`sim.compare.frame_breakdown`). A gap between a predecessor's
  end and an activity's start is a **wait** (a device busy with other frames, a link queue busy with other
  transmissions), so the steps tile the frame's latency exactly.
* :func:`stream_stats`: sustained throughput and whether the system keeps up with the arrivals.

Example::

    >>> import sim
    >>> result = sim.run("scenarios/quickstart.yaml")            # doctest: +SKIP
    >>> result.links, result.devices                              # doctest: +SKIP
    >>> result.summary["critical_path"]["steps"][0]               # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sim.devices import DeviceRate
from sim.engine import Timeline
from sim.network import Network
from sim.workload import Workload

LINK_COLUMNS = ["link", "bytes", "transmissions", "busy_s", "utilisation", "wait_s"]
DEVICE_COLUMNS = ["device", "gflops", "mem_bandwidth_gbps", "overhead_s", "tasks", "flops", "busy_s", "idle_s",
                  "utilisation"]  # fmt: skip


def makespan_s(timeline: Timeline) -> float:
    """From the first frame's arrival to the last frame's completion, in seconds."""
    if not timeline.frame_arrival_s:
        return 0.0
    return max(timeline.frame_done_s) - min(timeline.frame_arrival_s)


def link_table(network: Network, timeline: Timeline) -> pd.DataFrame:
    """One row per queue of ``network`` (in link order), with what it carried (:data:`LINK_COLUMNS`)."""
    queues = list(dict.fromkeys(link.queue_name for link in network.links()))
    stats: dict[str, list[float]] = {q: [0, 0, 0.0, 0.0] for q in queues}
    for hop in timeline.hops:
        s = stats.setdefault(hop.link.queue_name, [0, 0, 0.0, 0.0])
        s[0] += hop.nbytes
        s[1] += 1
        s[2] += hop.end_s - hop.start_s
        s[3] += hop.start_s - hop.queued_s
    span = makespan_s(timeline)
    rows = [(q, int(b), int(n), busy, busy / span if span > 0 else 0.0, wait)
            for q, (b, n, busy, wait) in stats.items()]
    return pd.DataFrame(rows, columns=LINK_COLUMNS)


def hop_table(workload: Workload, timeline: Timeline) -> pd.DataFrame:
    """One row per transmission on one queue: ``frame, layer, link, src, dst, bytes, start_s, end_s``.

    ``src`` and ``dst`` are the message's ends (``dst`` lists every receiver of a multicast, comma-separated).
    """
    names = workload.devices
    rows = []
    for h in timeline.hops:
        msg = workload.messages[h.message]
        dst = h.link.dst if "," in h.link.dst else names[msg.dst]
        rows.append((msg.frame, msg.layer, h.link.queue_name, names[msg.src], dst, h.nbytes, h.start_s, h.end_s))
    return pd.DataFrame(rows, columns=["frame", "layer", "link", "src", "dst", "bytes", "start_s", "end_s"])


def device_table(workload: Workload, rates: Sequence[DeviceRate], timeline: Timeline) -> pd.DataFrame:
    """One row per device (scenario order): rates, work, busy and idle time (:data:`DEVICE_COLUMNS`)."""
    busy = [0.0] * len(workload.devices)
    flops = [0.0] * len(workload.devices)
    count = [0] * len(workload.devices)
    for k, task in enumerate(workload.tasks):
        busy[task.device] += timeline.task_end_s[k] - timeline.task_start_s[k]
        flops[task.device] += task.flops
        count[task.device] += 1
    span = makespan_s(timeline)
    rows = []
    for d, name in enumerate(workload.devices):
        r = rates[d]
        mem = None if r.mem_bandwidth_Bps is None else r.mem_bandwidth_Bps / 1e9
        rows.append((name, r.flops_per_s / 1e9, mem, r.overhead_s, count[d], flops[d], busy[d], span - busy[d],
                     busy[d] / span if span > 0 else 0.0))  # fmt: skip
    return pd.DataFrame(rows, columns=DEVICE_COLUMNS)


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON-ready dicts (missing values as None, not NaN)."""
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


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


def _walk(workload: Workload, timeline: Timeline, frame: int, tasks: list[int],
          messages: list[int]) -> list[dict[str, Any]]:  # fmt: skip
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
            return {"kind": "compute", "device": names[t.device], "layer": t.layer, "flops": t.flops,
                    "start_s": start, "end_s": end}  # fmt: skip
        m = workload.messages[k]
        return {"kind": "transfer", "src": names[m.src], "dst": names[m.dst], "layer": m.layer, "bytes": m.bytes,
                "hops": timeline.message_hops[k], "start_s": start, "end_s": end}  # fmt: skip

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
    return steps


def step_totals(steps: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each kind of step of a critical path: ``compute``, ``transfer`` and ``wait``."""
    return {kind: sum(s["end_s"] - s["start_s"] for s in steps if s["kind"] == kind)
            for kind in ("compute", "transfer", "wait")}  # fmt: skip


def critical_path_summary(workload: Workload, timeline: Timeline) -> dict[str, Any]:
    """The critical path of the slowest frame (the first, on ties) with its compute / transfer / wait
    totals in seconds."""
    latency = timeline.latency_s
    frame = int(np.argmax(latency)) if latency else 0
    steps = critical_path(workload, timeline, frame) if latency else []
    totals = step_totals(steps)
    return {"frame": frame, "latency_s": latency[frame] if latency else 0.0, "compute_s": totals["compute"],
            "transfer_s": totals["transfer"], "wait_s": totals["wait"], "steps": steps}  # fmt: skip


def stream_stats(timeline: Timeline) -> dict[str, Any]:
    """Sustained throughput of a stream of frames and whether the system keeps up with it.

    The arrival interval ``interval_s`` is the mean gap between frame arrivals (frames arrive evenly).

    * ``throughput_fps``: for one frame ``1/latency``; for ``n > 1`` frames ``(n-1)`` divided by the time
      from the first to the last completion, the rate at which results leave a pipelined system.
    * ``departure_interval_s``: the mean time between completions (``1/throughput_fps``).
    * ``offered_fps``: the arrival rate ``1/interval_s`` (None when all frames arrive at once).
    * ``keeps_up``: None for a single frame; otherwise True when the mean time between completions is no
      longer than the arrival interval (relative tolerance 1e-9). When it is False, frames arrive faster
      than they leave: queues grow and each frame waits about ``departure_interval_s - interval_s``
      longer than the one before (``latency_growth_s_per_frame``, the least-squares slope of latency
      over frame index).
    """
    done = sorted(timeline.frame_done_s)
    arrivals = timeline.frame_arrival_s
    interval_s = (max(arrivals) - min(arrivals)) / (len(arrivals) - 1) if len(arrivals) > 1 else 0.0
    latency = np.asarray(timeline.latency_s, dtype=float)
    n = len(done)
    if n > 1 and done[-1] > done[0]:
        departure = (done[-1] - done[0]) / (n - 1)
    elif n == 1 and latency[0] > 0:
        departure = float(latency[0])
    else:
        departure = 0.0
    keeps_up = None if n <= 1 else bool(departure <= interval_s * (1 + 1e-9))
    growth = float(np.polyfit(np.arange(n), latency, 1)[0]) if n > 1 else 0.0
    return {
        "throughput_fps": 1.0 / departure if departure > 0 else float("inf"),
        "departure_interval_s": departure,
        "offered_fps": 1.0 / interval_s if interval_s > 0 else None,
        "keeps_up": keeps_up,
        "latency_growth_s_per_frame": growth,
    }
