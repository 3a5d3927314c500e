"""Chrome trace export (open ``trace.json`` in Perfetto or chrome://tracing).

One process "devices" with a track per device (compute tasks), and one process "links" with a track per
link direction (each message hop). Timestamps are microseconds of simulated time.
"""

from __future__ import annotations

from typing import Any

from sim.engine import Timeline
from sim.workload import Workload

_US = 1e6


def chrome_trace(workload: Workload, timeline: Timeline) -> dict[str, Any]:
    """The trace as a JSON-ready dict in the Chrome trace event format."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "devices"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "links"}},
    ]
    for d, name in enumerate(workload.devices):
        events.append({"ph": "M", "pid": 1, "tid": d, "name": "thread_name", "args": {"name": name}})
    for k, task in enumerate(workload.tasks):
        events.append({
            "ph": "X", "pid": 1, "tid": task.device, "name": task.layer, "cat": "compute",
            "ts": timeline.task_start_s[k] * _US, "dur": (timeline.task_end_s[k] - timeline.task_start_s[k]) * _US,
            "args": {"frame": task.frame, "flops": task.flops},
        })  # fmt: skip
    link_ids: dict[str, int] = {}
    for hop in timeline.hops:
        tid = link_ids.setdefault(hop.link.name, len(link_ids))
        msg = workload.messages[hop.message]
        events.append({
            "ph": "X", "pid": 2, "tid": tid, "name": msg.layer, "cat": "transfer",
            "ts": hop.start_s * _US, "dur": (hop.end_s - hop.start_s) * _US,
            "args": {"frame": msg.frame, "bytes": msg.bytes, "format": msg.format,
                     "src": workload.devices[msg.src], "dst": workload.devices[msg.dst]},
        })  # fmt: skip
    for name, tid in link_ids.items():
        events.append({"ph": "M", "pid": 2, "tid": tid, "name": "thread_name", "args": {"name": name}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}
