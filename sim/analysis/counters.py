"""Counters of a run: per-link and per-device busy time, and stream statistics.

* :func:`link_table` (``links.csv``): one row per FIFO queue (a link direction, a half-duplex link
  ``a<->b``, or the shared ``medium``): bytes carried, transmissions, busy time, utilisation (busy time /
  makespan), and the total time transmissions waited for it.
* :func:`device_table` (``devices.csv``): one row per device: its rates, tasks, FLOPs, busy time, idle
  time (makespan - busy), utilisation and the float32 bytes of conv and linear weights it holds
  (``weights_bytes``; empty for a workload that does not say).
* :func:`stream_stats`: sustained throughput and whether the system keeps up with the arrivals.

Example::

    >>> import sim
    >>> result = sim.run("scenarios/quickstart.yaml")            # doctest: +SKIP
    >>> result.links, result.devices                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sim.engine.devices import DeviceRate
from sim.engine.network import Network
from sim.engine.simulate import Timeline
from sim.workload.types import Workload

LINK_COLUMNS = ["link", "bytes", "transmissions", "busy_s", "utilisation", "wait_s"]
DEVICE_COLUMNS = [
    "device",
    "gflops",
    "mem_bandwidth_gbps",
    "overhead_s",
    "tasks",
    "flops",
    "busy_s",
    "idle_s",
    "utilisation",
    "weights_bytes",
]


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
    rows = [
        (q, int(b), int(n), busy, busy / span if span > 0 else 0.0, wait) for q, (b, n, busy, wait) in stats.items()
    ]
    return pd.DataFrame(rows, columns=LINK_COLUMNS)


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
        rows.append(
            (
                name,
                r.flops_per_s / 1e9,
                mem,
                r.overhead_s,
                count[d],
                flops[d],
                busy[d],
                span - busy[d],
                busy[d] / span if span > 0 else 0.0,
                workload.weights_bytes[d] if workload.weights_bytes else None,
            )
        )
    return pd.DataFrame(rows, columns=DEVICE_COLUMNS)


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON-ready dicts (missing values as None, not NaN)."""
    rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    return [{str(k): v for k, v in row.items()} for row in rows]


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
