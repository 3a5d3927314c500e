"""Chrome trace export (open ``trace.json`` in Perfetto or chrome://tracing).

One process "devices" with a track per device (compute tasks, and the software time spent on each message
sent or received, when the run charges it); one process "links" with a track per link
queue (a link direction, a half-duplex link, or the shared medium), each transmission drawn on it, and a
counter of the bytes it has carried; and, when given, one process "critical path" with the steps that set
the slowest frame's latency (see :func:`sim.analysis.critical_path.critical_path`). Timestamps are microseconds of
simulated time.
"""

from __future__ import annotations

from typing import Any

from sim.engine.simulate import Timeline
from sim.workload.types import Workload

_US = 1e6


def chrome_trace(workload: Workload, timeline: Timeline, critical: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trace as a JSON-ready dict in the Chrome trace event format; ``critical`` is the summary's
    ``critical_path`` entry."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "devices"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "links"}},
    ]
    for d, name in enumerate(workload.devices):
        events.append({"ph": "M", "pid": 1, "tid": d, "name": "thread_name", "args": {"name": name}})
    for k, task in enumerate(workload.tasks):
        events.append(
            {
                "ph": "X",
                "pid": 1,
                "tid": task.device,
                "name": task.layer,
                "cat": "compute",
                "ts": timeline.task_start_s[k] * _US,
                "dur": (timeline.task_end_s[k] - timeline.task_start_s[k]) * _US,
                "args": {"frame": task.frame, "flops": task.flops}
                | ({"wake_s": timeline.task_wake_s[k]} if timeline.task_wake_s else {}),
            }
        )
    for span in timeline.cpu_spans:
        msg = workload.messages[span.message]
        events.append(
            {
                "ph": "X",
                "pid": 1,
                "tid": span.device,
                "name": f"{span.side} {msg.layer}",
                "cat": f"{span.side}_cpu",
                "ts": span.start_s * _US,
                "dur": (span.end_s - span.start_s) * _US,
                "args": {"frame": msg.frame, "bytes": msg.bytes, "cpu_s": span.cpu_s},
            }
        )
    link_ids: dict[str, int] = {}
    carried: dict[str, int] = {}
    for hop in timeline.hops:
        queue = hop.link.queue_name
        tid = link_ids.setdefault(queue, len(link_ids))
        msg = workload.messages[hop.message]
        events.append(
            {
                "ph": "X",
                "pid": 2,
                "tid": tid,
                "name": msg.layer,
                "cat": "transfer",
                "ts": hop.start_s * _US,
                "dur": (hop.end_s - hop.start_s) * _US,
                "args": {
                    "frame": msg.frame,
                    "bytes": hop.nbytes,
                    "format": msg.format,
                    "hop": hop.link.name,
                    "src": workload.devices[msg.src],
                    "dst": workload.devices[msg.dst],
                },
            }
        )
        carried[queue] = carried.get(queue, 0) + hop.nbytes
        events.append(
            {"ph": "C", "pid": 2, "name": f"bytes {queue}", "ts": hop.end_s * _US, "args": {"bytes": carried[queue]}}
        )
    for name, tid in link_ids.items():
        events.append({"ph": "M", "pid": 2, "tid": tid, "name": "thread_name", "args": {"name": name}})
    if critical and critical.get("steps"):
        events.append(
            {
                "ph": "M",
                "pid": 3,
                "name": "process_name",
                "args": {"name": f"critical path (frame {critical['frame']})"},
            }
        )
        for step in critical["steps"]:
            label = step.get("layer") or step.get("on", "")
            events.append(
                {
                    "ph": "X",
                    "pid": 3,
                    "tid": 0,
                    "name": f"{step['kind']} {label}",
                    "cat": "critical",
                    "ts": step["start_s"] * _US,
                    "dur": (step["end_s"] - step["start_s"]) * _US,
                    "args": step,
                }
            )
    return {"traceEvents": events, "displayTimeUnit": "ms"}
