"""The headline figures of a run (``summary.json``): latency statistics over frames, throughput, bytes,
compute time; and the deployment phase's figures.
"""

from __future__ import annotations

from typing import Any

from sim.analysis.headline import headline
from sim.engine.simulate import Timeline
from sim.workload import wire
from sim.workload.types import Workload


def summarize(
    name: str, resolved: dict[str, Any], workload: Workload, timeline: Timeline, deadline_s: float | None = None
) -> dict[str, Any]:
    """Headline figures (:func:`sim.analysis.headline.headline`, with ``deadline_s`` in seconds when the
    scenario sets one) under the run's name, with the resolved scenario."""
    return {"name": name, **headline(workload, timeline, deadline_s), "scenario": resolved}


def deployment_summary(workload: Workload, timeline: Timeline) -> dict[str, Any]:
    """``deploy_s`` (arrival of the last shard, seconds after the start), ``deploy_bytes`` (as sent),
    ``deploy_bytes_by_format`` (had every message gone in each format; ``auto`` the smallest of each) and
    ``deploy_messages``."""
    sizes = [m.sizes for m in workload.messages]
    by_format = {f: sum(s[f] for s in sizes) for f in wire.FORMATS if all(f in s for s in sizes)}
    by_format["auto"] = sum(min(s.values()) for s in sizes)
    return {
        "deploy_s": float(max(timeline.message_end_s, default=0.0)),
        "deploy_bytes": int(sum(m.bytes for m in workload.messages)),
        "deploy_bytes_by_format": by_format,
        "deploy_messages": len(workload.messages),
    }
