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
* With a link ``protocol`` (:class:`sim.engine.network.Protocol`), a message travels as packets instead,
  cut by its route's protocol (every link of a route must have the same one): each packet holds the queue
  for its wire bytes (payload and headers) and is stored and forwarded on its own.
* With a shaper (``burst_bytes``), a queue has a token bucket of that many bytes, full at the start and
  refilled at the link rate; a transmission of ``n`` bytes starting with ``b`` tokens holds the queue
  for ``max(0, n - b) * 8 / bandwidth_bps`` (plus the access overhead) and leaves ``max(0, b - n)`` tokens.
* Devices on one :class:`~sim.engine.devices.Host` (``hosts``) hold one of its cores while they compute
  and while they pay their per-message software costs; a device waits (FIFO) when all cores are taken.
* A device with ``send_overhead_s`` spends it on each message (or multicast payload) a task releases,
  after the task and before its next one; the message is ready when its cost is paid. The frame's input
  messages pay the source's send cost without delaying its tasks. A device with ``recv_overhead_s``
  spends it on each message a task needs, in arrival order, before the task starts (once per message);
  a final output message counts as held by the sink that much after it arrives.
* With ``multicast`` (a shared medium), messages made ready together that carry the same payload (equal
  ``frame, src, tensor, partial, channel_ids`` and ``bytes``, non-empty ``tensor``) are one transmission, at the
  slowest receiver's rate, arriving at every receiver after the largest of their latencies.
* A link with an ``impairment`` (:mod:`sim.engine.loss`) loses transmissions and delays the others by
  jitter; a lost one joins the same queue again after its recovery wait (seeded by ``seed``).
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

from sim.engine.devices import DeviceRate, Host
from sim.engine.loss import Channels, Seed
from sim.engine.network import MEDIUM, Link, Network, chunk_sizes
from sim.workload.types import Workload

__all__ = ["DeviceRate", "Hop", "Host", "Timeline", "chunk_sizes", "simulate"]


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
    a multicast); ``events`` counts the SimPy events processed; ``retransmissions[m]`` counts the lost
    transmissions of ``m`` over all its packets and hops (a list only when some link can lose).
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
    retransmissions: list[int] = field(default_factory=list)  # per message; empty when no link loses

    @property
    def latency_s(self) -> list[float]:
        """Per-frame latency: when the sink holds all outputs minus when the frame entered."""
        return [d - a for a, d in zip(self.frame_arrival_s, self.frame_done_s)]


class _Transit:
    """One chunk (or whole message) in flight, as a SimPy event reused hop after hop.

    The engine schedules it directly on the environment's queue (what :class:`simpy.Timeout` does, without
    allocating a new event and a closure per hop); ``k`` is the hop it is on, ``left`` (shared by the chunks
    of a message) counts its chunks not yet at the destination, ``after`` is the chunks of its message after
    it, ``tries`` how often it was lost on this hop.
    """

    __slots__ = ("after", "callbacks", "group", "k", "left", "nbytes", "route", "tries")
    _ok = True  # read by simpy.Environment.step: the event succeeded

    def __init__(self, group: list[int], route: Sequence[Link], nbytes: int, left: list[int], after: int = 0):
        self.callbacks: tuple | None = None
        self.group, self.route, self.nbytes, self.left, self.k = group, route, nbytes, left, 0
        self.after, self.tries = after, 0


def simulate(
    workload: Workload,
    rates: Sequence[DeviceRate],
    network: Network,
    arrivals_s: Sequence[float],
    chunk_bytes: int | None = None,
    multicast: bool = False,
    hosts: Sequence[Host | None] = (),
    seed: Seed = 0,
) -> Timeline:
    """Run the workload to completion and return its timeline.

    ``rates`` follows ``workload.devices``; ``arrivals_s[f]`` is when frame ``f`` enters at the source;
    ``chunk_bytes`` splits messages into chunks; ``multicast`` sends equal payloads once (shared medium);
    ``hosts[d]`` is the host device ``d`` shares (``None`` or missing: a machine of its own); ``seed``
    seeds the loss and jitter of impaired links (:class:`sim.engine.loss.Channels`).
    """
    enabled = gc.isenabled()
    gc.disable()  # the run allocates many short-lived acyclic objects; the collector's passes over the
    try:  # (large) workload would cost more than the simulation itself; cycles are collected afterwards
        return _simulate(workload, rates, network, arrivals_s, chunk_bytes, multicast, hosts, Channels(seed))
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
    hosts: Sequence[Host | None],
    channels: Channels,
) -> Timeline:
    """:func:`simulate`, with the garbage collector off."""
    env = simpy.Environment()
    schedule: list[Any] = env._queue  # Environment.schedule, inlined for the hops and arrivals
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
        retransmissions=[0] * n_msg if any(l.impairment and l.impairment.loss for l in network.links()) else [],
    )
    free_at: dict[str, float] = defaultdict(float)  # queue name -> when it is next free
    tokens: dict[str, tuple[float, float]] = {}  # shaped queue name -> (bucket level in bytes, as of time s)
    cores = {h.name: simpy.Resource(env, capacity=h.cores) for h in hosts if h is not None}
    core_of = [cores[h.name] if h is not None else None for h in hosts] + [None] * (len(names) - len(hosts))
    arrived = [env.event() for _ in messages]
    waits_for: dict[int, list[int]] = defaultdict(list)  # task -> messages it needs
    released_by: dict[int | None, list[int]] = defaultdict(list)  # task -> messages it makes ready
    input_of_frame: dict[int, list[int]] = defaultdict(list)
    for m, msg in enumerate(messages):
        for t in msg.needed_by:
            waits_for[t].append(m)
        if msg.after is None:
            input_of_frame[msg.frame].append(m)
        else:
            released_by[msg.after].append(m)
    frame_arrived = [env.timeout(a) for a in arrivals_s]

    def record_done(frame: int) -> None:
        timeline.frame_done_s[frame] = max(timeline.frame_done_s[frame], env.now)

    def forward(chunk: _Transit) -> None:
        """Put ``chunk`` (one chunk, or a whole message) on hop ``chunk.k`` of its route now; the event that
        fires when it reaches the hop's far end forwards it to the next hop (store-and-forward) or delivers
        its group."""
        link, now, nbytes = chunk.route[chunk.k], env._now, chunk.nbytes
        queue = link.queue_name
        start = max(now, free_at[queue])
        if link.burst_bytes is None:
            end = start + nbytes * 8 / link.bandwidth_bps + link.overhead_s  # Link.transmit_s, inlined
        else:  # token bucket: refilled at the link rate since it was last drawn, up to burst_bytes
            rate_Bps = link.bandwidth_bps / 8
            level, since = tokens.get(queue, (float(link.burst_bytes), start))
            level = min(float(link.burst_bytes), level + (start - since) * rate_Bps)
            wait = max(0.0, nbytes - level) / rate_Bps
            tokens[queue] = (level - nbytes if wait == 0.0 else 0.0, start + wait)
            end = start + wait + link.overhead_s
        free_at[queue] = end
        hops_append(new_tuple(Hop, (chunk.group[0], link, start, end, nbytes, now)))
        chunk.callbacks, delay = on_arrival, link.latency_s
        if link.impairment is not None:  # lost: it joins this queue again after its recovery wait
            args = (link.name, delay, queue == MEDIUM, chunk.after, chunk.tries, end - start)
            retry, delay = channels.transmit(link.impairment, *args)
            if retry is not None:
                chunk.callbacks, delay, chunk.tries = on_lost, retry, chunk.tries + 1
                timeline.retransmissions[chunk.group[0]] += 1
        heappush(schedule, (now + (end + delay - now), NORMAL, next(eid), chunk))  # a Timeout, reused

    def arrive(chunk: _Transit) -> None:
        chunk.tries = 0
        k = chunk.k = chunk.k + 1
        if k < len(chunk.route):
            forward(chunk)
        else:  # lost chunks, or jitter, may let a later chunk overtake: the last one in delivers
            chunk.left[0] -= 1
            if not chunk.left[0]:
                delivered(chunk.group)

    on_arrival, on_lost = (arrive,), (forward,)
    hops_append, new_tuple = timeline.hops.append, tuple.__new__  # Hop(...) without its Python-level __new__

    def delivered(group: list[int]) -> None:
        for m in group:
            timeline.message_end_s[m] = env.now
            if messages[m].final:
                cost = rates[messages[m].dst].recv_overhead_s if not messages[m].needed_by else 0.0
                frame = messages[m].frame
                timeline.frame_done_s[frame] = max(timeline.frame_done_s[frame], env.now + cost)
            event = arrived[m]  # event.succeed(), inlined
            event._ok, event._value = True, None
            heappush(schedule, (env._now, NORMAL, next(eid), event))

    def multicast_groups(ms: list[int]) -> list[list[int]]:
        groups: dict[tuple, list[int]] = {}
        for m in ms:
            msg = messages[m]
            key = (msg.frame, msg.src, msg.tensor, msg.partial, msg.channel_ids, msg.bytes) if msg.tensor else (m,)
            groups.setdefault(key, []).append(m)
        return list(groups.values())

    pair_routes: dict[tuple[int, int], tuple[Link, ...]] = {}  # (src, dst) device indices -> route

    def route_of(src: int, dst: int) -> tuple[Link, ...]:
        route = pair_routes.get((src, dst))
        if route is None:
            route = pair_routes[src, dst] = network.route(names[src], names[dst])
        return route

    def group_route(group: list[int]) -> tuple[Link, ...]:
        msg = messages[group[0]]
        routes = [route_of(msg.src, messages[m].dst) for m in group]
        if len(group) == 1:
            return routes[0]
        links = [r[0] for r in routes]  # one hop each on the shared medium
        receivers = ",".join(names[messages[m].dst] for m in group)
        slowest = Link(
            names[msg.src],
            receivers,
            min(l.bandwidth_bps for l in links),
            max(l.latency_s for l in links),
            links[0].queue_name,
            links[0].overhead_s,
            links[0].protocol,
            links[0].burst_bytes,
            links[0].impairment,
        )
        return (slowest,)

    def groups_of(ms: list[int]) -> list[list[int]]:
        return multicast_groups(ms) if multicast else [[m] for m in ms]

    def send(ms: list[int]) -> None:
        if multicast:
            for group in multicast_groups(ms):
                send_group(group)
            return
        for m in ms:  # send_group([m]), inlined for the common case
            msg = messages[m]
            route = route_of(msg.src, msg.dst)
            timeline.message_ready_s[m] = env._now
            timeline.message_hops[m] = len(route)
            group = [m]
            first = route[0]
            if first.protocol is None and (chunk_bytes is None or msg.bytes <= chunk_bytes):
                forward(_Transit(group, route, msg.bytes, [1]))
                timeline.message_start_s[m] = timeline.hops[-1].start_s
                continue
            sizes = first.wire_sizes(msg.bytes, chunk_bytes)
            left = [len(sizes)]
            for i, size in enumerate(sizes):  # chunks (packets) join the first queue back to back, in order
                forward(_Transit(group, route, size, left, len(sizes) - 1 - i))
                if i == 0:
                    timeline.message_start_s[m] = timeline.hops[-1].start_s

    def send_group(group: list[int]) -> None:
        route = group_route(group)
        for m in group:
            timeline.message_ready_s[m] = env.now
            timeline.message_hops[m] = len(route)
            timeline.carried_by[m] = group[0]
        sizes = route[0].wire_sizes(messages[group[0]].bytes, chunk_bytes)
        left = [len(sizes)]
        for i, size in enumerate(sizes):  # chunks (packets) join the first queue back to back, in order
            forward(_Transit(group, route, size, left, len(sizes) - 1 - i))
            if i == 0:
                for m in group:
                    timeline.message_start_s[m] = timeline.hops[-1].start_s

    def source(frame: int):
        yield frame_arrived[frame]
        cost = rates[workload.source].send_overhead_s
        if cost == 0.0:
            send(input_of_frame[frame])
            return
        for group in groups_of(input_of_frame[frame]):
            yield from hold(core_of[workload.source], cost)
            send_group(group)

    def hold(core: simpy.Resource | None, seconds: float):
        """Spend ``seconds`` on a core of ``core`` (waiting for one first), or on the device's own."""
        if core is None:
            yield env.timeout(seconds)
            return
        with core.request() as request:
            yield request
            yield env.timeout(seconds)

    def shared_device(d: int, own: list[int]):
        """A device on a host, or paying per-message software costs (module docstring)."""
        rate, core = rates[d], core_of[d]
        received: set[int] = set()
        for t in own:
            task = tasks[t]
            if not frame_arrived[task.frame].processed:
                yield frame_arrived[task.frame]
            pending = [m for m in waits_for[t] if m not in received]
            while pending:
                if rate.recv_overhead_s == 0.0:
                    waiting = [arrived[m] for m in pending if not arrived[m].processed]
                    if waiting:
                        yield env.all_of(waiting)
                    received.update(pending)
                    break
                ready = [m for m in pending if arrived[m].processed]
                if not ready:
                    yield env.any_of([arrived[m] for m in pending])
                    continue
                for m in sorted(ready, key=lambda m: (timeline.message_end_s[m], m)):
                    yield from hold(core, rate.recv_overhead_s)
                    received.add(m)
                pending = [m for m in pending if m not in received]
            duration = rate.task_s(task.flops, task.bytes_touched, task.op, task.layer)
            if core is None:
                timeline.task_start_s[t] = env.now
                yield env.timeout(duration)
            else:
                with core.request() as request:
                    yield request
                    timeline.task_start_s[t] = env.now
                    yield env.timeout(duration)
            timeline.task_end_s[t] = env.now
            if task.final:
                record_done(task.frame)
            if rate.send_overhead_s == 0.0:
                send(released_by[t])
                continue
            for group in groups_of(released_by[t]):
                yield from hold(core, rate.send_overhead_s)
                send_group(group)

    all_of, timeout = env.all_of, env.timeout  # bound once, not per task
    task_start_s, task_end_s = timeline.task_start_s, timeline.task_end_s

    def device(d: int, own: list[int]):
        rate = rates[d]
        steps = [  # per task: its frame's arrival, the arrivals it needs, duration, final, messages it sends
            (
                t,
                frame_arrived[tasks[t].frame],
                [arrived[m] for m in waits_for[t]],
                rate.task_s(tasks[t].flops, tasks[t].bytes_touched, tasks[t].op, tasks[t].layer),
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
        plain = core_of[d] is None and rates[d].send_overhead_s == 0.0 and rates[d].recv_overhead_s == 0.0
        env.process((device if plain else shared_device)(d, per_device[d]))
    env.run()
    timeline.events = next(eid)  # every event scheduled was processed: the queue ran empty
    return timeline
