"""The headline numbers of a run, straight from the workload and the engine's timeline (no tables).

``summary.json``'s figures (latency statistics, throughput, bytes, elements x hops, compute) and a sweep
point's row both come from :func:`headline`; the result tables (:mod:`sim.analysis.tables`) are built only
where a run's files are written. Sums of floats use numpy's (pairwise) summation, as pandas does.

Example::

    >>> from sim.engine.simulate import Timeline
    >>> from sim.workload.types import Message, Workload
    >>> msg = Message(frame=0, layer="input", src=0, dst=1, channels=1, elements=250, nnz=250,
    ...               sizes={"dense": 1000, "coo": 3000}, format="dense", bytes=1000, after=None, needed_by=(), final=True)
    >>> wl = Workload(("a", "b"), 0, 1, 1, (), (msg,))
    >>> tl = Timeline([], [], [0.0], [0.01], [2], frame_arrival_s=[0.0], frame_done_s=[0.01], carried_by=[0])
    >>> h = headline(wl, tl)
    >>> h["bytes_by_format"], h["elements_hops"], h["latency_s"]
    ({'dense': 1000, 'coo': 3000, 'auto': 1000}, 500, 0.01)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.analysis.counters import makespan_s, stream_stats
from sim.engine.simulate import Timeline
from sim.workload import wire
from sim.workload.types import Workload


def multicast_copies(workload: Workload, timeline: Timeline) -> list[bool]:
    """Per message: whether its payload rode on an earlier message's multicast transmission (it then
    carries no bytes of its own)."""
    carried = timeline.carried_by
    return [k < len(carried) and carried[k] != k for k in range(len(workload.messages))]


def bytes_by_format(workload: Workload, copies: list[bool]) -> dict[str, int]:
    """Total bytes had every message been sent in each format; ``auto`` is the smallest per message.

    A multicast payload counts once (``copies``: :func:`multicast_copies`). A format some message cannot
    use (too narrow indices) has no total. Channel headers are on the wire in every format, so each total
    includes them.
    """
    totals = dict.fromkeys(wire.FORMATS, 0)
    auto = headers = 0
    unusable: set[str] = set()  # formats some message cannot use
    for m, copy in zip(workload.messages, copies):
        if copy:
            continue
        sizes = m.sizes  # bytes per format, for the formats the message can use
        headers += m.header_bytes
        auto += min(sizes.values(), default=0)
        for f, n in sizes.items():
            totals[f] += n
        if len(sizes) < len(totals):
            unusable.update(f for f in totals if f not in sizes)
    return {**{f: n + headers for f, n in totals.items() if f not in unusable}, "auto": auto + headers}


def auto_saving(totals: dict[str, int]) -> float:
    """The fraction of the dense bytes that ``auto`` saves: ``1 - auto/dense`` (0 when nothing is sent)."""
    return 1.0 - totals["auto"] / totals["dense"] if totals.get("dense") else 0.0


def elements_hops(workload: Workload, timeline: Timeline) -> int:
    """CaP's communication volume: the sum over messages of ``elements x hops`` (values carried times the
    links of its route), over every frame of the run."""
    return sum(m.elements * hops for m, hops in zip(workload.messages, timeline.message_hops))


def elements_max_link(workload: Workload, timeline: Timeline) -> int:
    """Elements carried by the busiest link queue: for every queue, the elements of each distinct message
    that crossed it (chunks counted once), summed; the largest such sum (0 when nothing was sent)."""
    messages = workload.messages
    seen: set[tuple[int, str]] = set()
    per_queue: dict[str, int] = {}
    for hop in timeline.hops:
        key = (hop.message, hop.link.queue_name)
        if key not in seen:
            seen.add(key)
            per_queue[key[1]] = per_queue.get(key[1], 0) + messages[hop.message].elements
    return max(per_queue.values(), default=0)


def headline(workload: Workload, timeline: Timeline, deadline_s: float | None = None) -> dict[str, Any]:
    """The figures of ``summary.json`` that a run's timeline gives, keyed as there: latency statistics
    over frames (seconds; percentiles interpolate linearly between frames, numpy's default), stream
    statistics (:func:`sim.analysis.counters.stream_stats`), makespan, bytes as sent and by format,
    channel-header bytes, messages, elements x hops, FLOPs and compute seconds, and every frame's latency.
    With ``deadline_s``, ``deadline_miss_rate`` is the share of frames whose latency exceeds it; when some
    link can lose packets, ``retransmissions`` counts the lost transmissions of the run."""
    latency = np.asarray(timeline.latency_s, dtype=float)
    extra: dict[str, Any] = {}
    if deadline_s is not None:
        extra["deadline_miss_rate"] = float(np.mean(latency > deadline_s))
    if timeline.retransmissions:
        extra["retransmissions"] = int(sum(timeline.retransmissions))
    copies = multicast_copies(workload, timeline)
    totals = bytes_by_format(workload, copies)
    return {
        "frames": len(latency),
        "latency_s": float(latency.mean()),
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p95_s": float(np.percentile(latency, 95)),
        "latency_p99_s": float(np.percentile(latency, 99)),
        **extra,
        **stream_stats(timeline),  # throughput_fps (sustained), departure_interval_s, offered_fps, keeps_up, ...
        "makespan_s": float(makespan_s(timeline)),
        "bytes_total": sum(m.bytes for m, copy in zip(workload.messages, copies) if not copy),
        "bytes_by_format": totals,
        "auto_saving": auto_saving(totals),
        "header_bytes": sum(m.header_bytes for m in workload.messages),
        "messages": len(workload.messages),
        "elements_hops": elements_hops(workload, timeline),
        "elements_hops_max_link": elements_max_link(workload, timeline),
        "flops_total": float(np.asarray([t.flops for t in workload.tasks], dtype=float).sum()),
        "compute_s_total": float(
            (np.asarray(timeline.task_end_s, dtype=float) - np.asarray(timeline.task_start_s, dtype=float)).sum()
        ),
        "frame_latency_s": [float(x) for x in latency],
    }
