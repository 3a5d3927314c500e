"""The headline figures of a run (``summary.json``): latency statistics over frames, throughput, bytes,
compute time; and the deployment phase's figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.analysis.counters import makespan_s, stream_stats
from sim.analysis.tables import auto_saving, bytes_by_format
from sim.engine.simulate import Timeline
from sim.workload import wire
from sim.workload.types import Workload


def elements_hops(transfers: pd.DataFrame) -> int:
    """CaP's communication volume: the sum over messages of ``elements x hops`` (values carried times the
    links of its route), over every frame of the run."""
    if transfers.empty:
        return 0
    return int((transfers["elements"].astype("int64") * transfers["hops"].astype("int64")).sum())


def elements_max_link(transfers: pd.DataFrame, timeline: Timeline) -> int:
    """Elements carried by the busiest link queue: for every queue, the elements of each distinct message
    that crossed it (chunks counted once), summed; the largest such sum (0 when nothing was sent)."""
    elements = transfers["elements"].to_numpy()
    seen: set[tuple[int, str]] = set()
    per_queue: dict[str, int] = {}
    for hop in timeline.hops:
        key = (hop.message, hop.link.queue_name)
        if key not in seen:
            seen.add(key)
            per_queue[key[1]] = per_queue.get(key[1], 0) + int(elements[hop.message])
    return max(per_queue.values(), default=0)


def summarize(
    name: str,
    resolved: dict[str, Any],
    transfers: pd.DataFrame,
    compute: pd.DataFrame,
    timeline: Timeline,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """Headline figures: latency statistics over frames, throughput, bytes and compute time.

    Percentiles interpolate linearly between frames (numpy's default). With ``deadline_s`` (seconds),
    ``deadline_miss_rate`` is the share of frames whose latency exceeds it; when some link can lose
    packets, ``retransmissions`` counts the lost transmissions of the run.
    """
    latency = np.asarray(timeline.latency_s)
    stream = stream_stats(timeline)
    totals = bytes_by_format(transfers)
    extra: dict[str, Any] = {}
    if deadline_s is not None:
        extra["deadline_miss_rate"] = float(np.mean(latency > deadline_s))
    if timeline.retransmissions:
        extra["retransmissions"] = int(sum(timeline.retransmissions))
    return {
        "name": name,
        "frames": len(latency),
        "latency_s": float(latency.mean()),
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p95_s": float(np.percentile(latency, 95)),
        "latency_p99_s": float(np.percentile(latency, 99)),
        **extra,
        **stream,  # throughput_fps (sustained), departure_interval_s, offered_fps, keeps_up, latency growth
        "makespan_s": float(makespan_s(timeline)),
        "bytes_total": int(transfers["bytes"].sum()),
        "bytes_by_format": totals,
        "auto_saving": auto_saving(totals),
        "header_bytes": int(transfers["header_bytes"].sum()),
        "messages": len(transfers),
        "elements_hops": elements_hops(transfers),
        "elements_hops_max_link": elements_max_link(transfers, timeline),
        "flops_total": float(compute["flops"].sum()),
        "compute_s_total": float((compute["end_s"] - compute["start_s"]).sum()),
        "frame_latency_s": [float(x) for x in latency],
        "scenario": resolved,
    }


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
