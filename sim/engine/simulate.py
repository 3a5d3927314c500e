"""The discrete-event engine (SimPy): devices computing tasks and links carrying messages.

Semantics (DESIGN section 3, "Engine" and "Topologies"):

* A device runs its tasks one at a time, in workload order (frame, then topological order). A task
  starts once the device is free, its frame has arrived, and every message it needs has arrived. It takes
  :meth:`sim.engine.devices.DeviceRate.task_s` seconds (``flops / flops_per_s``, or the roofline time when the
  device has a memory bandwidth, plus its per-layer overhead for conv and linear layers).
* A message is ready when the task named by its ``after`` ends (or when its frame arrives, for the
  image). Messages made ready at the same instant are queued in workload order (tensor, then
  destination).
* Each FIFO queue (a link direction; both directions of a half-duplex link; the shared medium) carries
  one transmission at a time, in the order transmissions join it: a transmission of ``n`` bytes holds it
  for ``n*8/bandwidth_bps`` seconds plus the link's access overhead, and arrives at the link's other end
  ``latency_s`` later. Multi-hop routes are store-and-forward over the fewest-hop path.
* With ``chunk_bytes``, a message travels as chunks of at most that many bytes, each stored and forwarded
  on its own, so a long route pipelines; the message arrives with its last chunk.
* With ``multicast`` (a shared medium), messages made ready together that carry the same payload (equal
  ``frame, src, tensor, partial, channel_ids`` and ``bytes``, non-empty ``tensor``) are one transmission, at the
  slowest receiver's rate, arriving at every receiver after the largest of their latencies.
* A frame is done when the sink holds all final outputs; its latency is that time minus its arrival.

A queue's reservations are made in event order, so they are computed directly (start = max(now, when the
queue frees)) rather than with a SimPy resource; this is exactly FIFO and needs one event per hop.
This module does not import torch.

Example::

    >>> from sim.workload.types import Message, Workload
    >>> msg = Message(0, "input", 0, 1, 1, 250, 250, {"dense": 1000}, "dense", 1000, None, (), True)
    >>> wl = Workload(("a", "b"), 0, 1, 1, (), (msg,))
    >>> tl = simulate(wl, [DeviceRate(1e9)] * 2, Network.mesh(["a", "b"], 1e6, 0.002), [0.0])
    >>> round(tl.latency_s[0], 6)    # 1000 bytes at 1 Mbit/s = 8 ms, plus 2 ms of latency
    0.01
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import heappush
from typing import Any, NamedTuple

import simpy
from simpy.events import NORMAL

from sim.engine.devices import DeviceRate
from sim.engine.network import Link, Network
from sim.workload.types import Workload

__all__ = ["DeviceRate", "Hop", "Timeline", "simulate"]


class Hop(NamedTuple):
    """One transmission (a message, or one chunk of it) on one link direction.

    It joined the link's queue at ``queued_s``, held it from ``start_s`` to ``end_s`` and carried ``nbytes``.
    """

    message: int
    link: Link
    start_s: float
    end_s: float
    nbytes: int = 0
    queued_s: float = 0.0


@dataclass
class Timeline:
    """When everything happened, aligned with the workload's ``tasks`` and ``messages``.

    ``carried_by[m]`` is the message whose transmission delivered ``m`` (``m`` itself unless ``m`` rode on
    a multicast); ``events`` counts the SimPy events processed.
    """

    task_start_s: list[float]
    task_end_s: list[float]
    message_start_s: list[float]  # transmission start on the first hop
    message_end_s: list[float]  # arrival at the destination
    message_hops: list[int]
    hops: list[Hop] = field(default_factory=list)
    frame_arrival_s: list[float] = field(default_factory=list)
    frame_done_s: list[float] = field(default_factory=list)
    message_ready_s: list[float] = field(default_factory=list)  # when the message was made ready to send
    carried_by: list[int] = field(default_factory=list)
    events: int = 0

    @property
    def latency_s(self) -> list[float]:
        """Per-frame latency: when the sink holds all outputs minus when the frame entered."""
        return [d - a for a, d in zip(self.frame_arrival_s, self.frame_done_s)]


class _Transit:
    """One chunk (or whole message) in flight, as a SimPy event reused hop after hop.

    The engine schedules it directly on the environment's queue (what :class:`simpy.Timeout` does, without
    allocating a new event per hop); ``k`` is the hop it is on.
    """

    __slots__ = ("callbacks", "group", "k", "last", "nbytes", "route")
    _ok = True  # read by simpy.Environment.step: the event succeeded

    def __init__(self, group: list[int], route: tuple[_RouteHop, ...], nbytes: int, last: bool):
        self.callbacks: tuple | None = None
        self.group, self.route, self.nbytes, self.last, self.k = group, route, nbytes, last, 0


class _RouteHop(NamedTuple):
    """A link of a route with its FIFO queue's index and its constants, looked up once per route."""

    link: Link
    queue: int
    bandwidth_bps: float
    overhead_s: float
    latency_s: float


def chunk_sizes(nbytes: int, chunk_bytes: int | None) -> list[int]:
    """Sizes of the chunks a message of ``nbytes`` travels as: full chunks, then the remainder.

    >>> chunk_sizes(2500, 1000)
    [1000, 1000, 500]
    """
    if chunk_bytes is None or nbytes <= chunk_bytes:
        return [nbytes]
    full, rest = divmod(nbytes, chunk_bytes)
    return [chunk_bytes] * full + ([rest] if rest else [])


def simulate(
    workload: Workload,
    rates: Sequence[DeviceRate],
    network: Network,
    arrivals_s: Sequence[float],
    chunk_bytes: int | None = None,
    multicast: bool = False,
) -> Timeline:
    """Run the workload to completion and return its timeline.

    ``rates`` follows ``workload.devices``; ``arrivals_s[f]`` is when frame ``f`` enters at the source;
    ``chunk_bytes`` splits messages into chunks; ``multicast`` sends equal payloads once (shared medium).
    """
    enabled = gc.isenabled()
    gc.disable()  # the run allocates many short-lived acyclic objects; the collector's passes over the
    try:  # (large) workload would cost more than the simulation itself; cycles are collected afterwards
        return _simulate(workload, rates, network, arrivals_s, chunk_bytes, multicast)
    finally:
        if enabled:
            gc.enable()


def _simulate(
    workload: Workload,
    rates: Sequence[DeviceRate],
    network: Network,
    arrivals_s: Sequence[float],
    chunk_bytes: int | None,
    multicast: bool,
) -> Timeline:
    """:func:`simulate`, with the garbage collector off."""
    env = simpy.Environment()
    schedule: list[Any] = env._queue  # Environment.schedule, inlined for the hops
    eid = env._eid
    tasks, messages = workload.tasks, workload.messages
    names = workload.devices
    n_msg = len(messages)
    timeline = Timeline(
        [0.0] * len(tasks),
        [0.0] * len(tasks),
        [0.0] * n_msg,
        [0.0] * n_msg,
        [0] * n_msg,
        frame_arrival_s=list(arrivals_s),
        frame_done_s=list(arrivals_s),
        message_ready_s=[0.0] * n_msg,
        carried_by=list(range(n_msg)),
    )
    queues: dict[str, int] = {}  # queue name -> index into free_at
    free_at: list[float] = []  # queue index -> when it is next free
    routes: dict[tuple[int, int], tuple[_RouteHop, ...]] = {}  # (src, dst) device indices -> its hops

    def hops_of(links: Sequence[Link]) -> tuple[_RouteHop, ...]:
        hops = []
        for link in links:
            if link.queue_name not in queues:
                queues[link.queue_name] = len(free_at)
                free_at.append(0.0)
            hops.append(_RouteHop(link, queues[link.queue_name], link.bandwidth_bps, link.overhead_s, link.latency_s))
        return tuple(hops)

    def route_of(src: int, dst: int) -> tuple[_RouteHop, ...]:
        route = routes.get((src, dst))
        if route is None:
            route = routes[src, dst] = hops_of(network.route(names[src], names[dst]))
        return route

    arrived = [env.event() for _ in messages]
    waits_for: list[list[int]] = [[] for _ in tasks]  # task -> messages it needs
    released_by: list[list[int]] = [[] for _ in tasks]  # task -> messages it makes ready
    input_of_frame: dict[int, list[int]] = defaultdict(list)
    for m, msg in enumerate(messages):
        for t in msg.needed_by:
            waits_for[t].append(m)
        if msg.after is None:
            input_of_frame[msg.frame].append(m)
        else:
            released_by[msg.after].append(m)
    frame_arrived = [env.timeout(a) for a in arrivals_s]
    frame_done_s, hops_append = timeline.frame_done_s, timeline.hops.append
    new_tuple = tuple.__new__  # Hop(...) without its Python-level __new__
    message_end_s = timeline.message_end_s

    def record_done(frame: int) -> None:
        timeline.frame_done_s[frame] = max(timeline.frame_done_s[frame], env.now)

    def forward(chunk: _Transit) -> None:
        """Put ``chunk`` on hop ``chunk.k`` of its route now; the event that fires when it reaches the hop's
        far end forwards it to the next hop (store-and-forward) or delivers its group."""
        link, queue, bandwidth_bps, overhead_s, latency_s = chunk.route[chunk.k]
        now = env._now
        start = free_at[queue]
        if start < now:
            start = now
        end = start + chunk.nbytes * 8 / bandwidth_bps + overhead_s  # Link.transmit_s, inlined
        free_at[queue] = end
        hops_append(new_tuple(Hop, (chunk.group[0], link, start, end, chunk.nbytes, now)))
        chunk.callbacks = on_arrival
        heappush(schedule, (now + (end + latency_s - now), NORMAL, next(eid), chunk))  # a Timeout, reused

    def arrive(chunk: _Transit) -> None:
        k = chunk.k = chunk.k + 1
        if k < len(chunk.route):
            forward(chunk)
        elif chunk.last:
            now = env._now
            for m in chunk.group:
                message_end_s[m] = now
                msg = messages[m]
                if msg.final and frame_done_s[msg.frame] < now:
                    frame_done_s[msg.frame] = now
                event = arrived[m]  # event.succeed(), inlined
                event._ok, event._value = True, None
                heappush(schedule, (now, NORMAL, next(eid), event))

    on_arrival = (arrive,)

    def multicast_groups(ms: list[int]) -> list[list[int]]:
        groups: dict[tuple, list[int]] = {}
        for m in ms:
            msg = messages[m]
            key = (msg.frame, msg.src, msg.tensor, msg.partial, msg.channel_ids, msg.bytes) if msg.tensor else (m,)
            groups.setdefault(key, []).append(m)
        return list(groups.values())

    def group_route(group: list[int]) -> tuple[_RouteHop, ...]:
        msg = messages[group[0]]
        if len(group) == 1:
            return route_of(msg.src, msg.dst)
        links = [route_of(msg.src, messages[m].dst)[0].link for m in group]  # one hop each on the medium
        receivers = ",".join(names[messages[m].dst] for m in group)
        slowest = Link(
            names[msg.src],
            receivers,
            min(l.bandwidth_bps for l in links),
            max(l.latency_s for l in links),
            links[0].queue_name,
            links[0].overhead_s,
        )
        return hops_of([slowest])

    message_ready_s, message_hops = timeline.message_ready_s, timeline.message_hops
    message_start_s, carried_by, hops = timeline.message_start_s, timeline.carried_by, timeline.hops

    def send(ms: list[int]) -> None:
        now = env._now
        if not multicast:
            for m in ms:
                msg = messages[m]
                route = route_of(msg.src, msg.dst)
                message_ready_s[m] = now
                message_hops[m] = len(route)
                nbytes, group = msg.bytes, [m]
                if chunk_bytes is None or nbytes <= chunk_bytes:
                    forward(_Transit(group, route, nbytes, True))
                    message_start_s[m] = hops[-1].start_s
                    continue
                sizes = chunk_sizes(nbytes, chunk_bytes)
                for i, size in enumerate(sizes):  # chunks join the first queue back to back, in order
                    forward(_Transit(group, route, size, i == len(sizes) - 1))
                    if i == 0:
                        message_start_s[m] = hops[-1].start_s
            return
        for group in multicast_groups(ms):
            route = group_route(group)
            for m in group:
                message_ready_s[m] = now
                message_hops[m] = len(route)
                carried_by[m] = group[0]
            sizes = chunk_sizes(messages[group[0]].bytes, chunk_bytes)
            for i, size in enumerate(sizes):  # chunks join the first queue back to back, in order
                forward(_Transit(group, route, size, i == len(sizes) - 1))
                if i == 0:
                    for m in group:
                        message_start_s[m] = hops[-1].start_s

    def source(frame: int):
        yield frame_arrived[frame]
        send(input_of_frame[frame])

    all_of, timeout = env.all_of, env.timeout  # bound once, not per task
    task_start_s, task_end_s = timeline.task_start_s, timeline.task_end_s

    def device(d: int, own: list[int]):
        rate = rates[d]
        steps = [  # per task: its frame's arrival, the arrivals it needs, duration, final, messages it sends
            (
                t,
                frame_arrived[tasks[t].frame],
                [arrived[m] for m in waits_for[t]],
                rate.task_s(tasks[t].flops, tasks[t].bytes_touched, tasks[t].op),
                tasks[t].final,
                released_by[t],
            )
            for t in own
        ]
        for t, frame, waits, duration, final, releases in steps:
            if frame.callbacks is not None:  # not yet processed
                yield frame
            needed = [event for event in waits if event.callbacks is not None]
            if needed:
                yield all_of(needed)
            task_start_s[t] = env._now
            yield timeout(duration)
            task_end_s[t] = env._now
            if final:
                record_done(tasks[t].frame)
            send(releases)

    for f in range(workload.frames):
        env.process(source(f))
    per_device: dict[int, list[int]] = defaultdict(list)
    for t, task in enumerate(tasks):
        per_device[task.device].append(t)
    for d in range(len(names)):
        env.process(device(d, per_device[d]))
    env.run()
    timeline.events = next(eid)  # every event scheduled was processed: the queue ran empty
    return timeline
