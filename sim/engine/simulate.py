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
  and while they pay their per-message software costs; a device waits (FIFO) when all cores are taken,
  or, with ``sharing: processor``, every job runs at once at ``min(1, cores / jobs)`` of a core
  (:class:`sim.engine.cores.SharedCores`).
* A device that pays per-message software costs (:meth:`DeviceRate.send_s`, :meth:`DeviceRate.recv_s`:
  ``send_overhead_s``/``recv_overhead_s`` plus a runtime profile's cost of the message's bytes and format)
  spends the send cost on each message (or multicast payload) a task releases, after the task and before
  its next one; the message is ready when its cost is paid. The frame's input messages pay the source's
  send cost without delaying its tasks. It spends the receive cost on each message a task needs, in
  arrival order, before the task starts (once per message); a final output message counts as held by the
  sink that much after it arrives. Each payment is a :class:`CpuSpan` of ``Timeline.cpu_spans``.
* With ``interleave``, a link queue that is busy holds new transmissions per message and serves the
  messages in turn, one packet (chunk) each (:class:`sim.engine.network.RoundRobin`): the messages one
  device sends to several peers over its one uplink share it packet by packet.
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

from sim.engine.cores import SharedCores
from sim.engine.devices import DeviceRate, Host
from sim.engine.network import Link, Network, RoundRobin, chunk_sizes
from sim.workload.types import Workload

__all__ = ["CpuSpan", "DeviceRate", "Hop", "Host", "Timeline", "chunk_sizes", "simulate"]


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


class CpuSpan(NamedTuple):
    """Software time a device spent on one message: ``side`` ``send`` (before it goes on the wire) or
    ``recv`` (after it arrived), from ``start_s`` to ``end_s`` of wall time, ``cpu_s`` seconds of CPU work."""

    message: int
    device: int
    side: str
    start_s: float
    end_s: float
    cpu_s: float


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
    cpu_spans: list[CpuSpan] = field(default_factory=list)  # per-message software time, when any is charged

    @property
    def latency_s(self) -> list[float]:
        """Per-frame latency: when the sink holds all outputs minus when the frame entered."""
        return [d - a for a, d in zip(self.frame_arrival_s, self.frame_done_s)]


class _Transit:
    """One chunk (or whole message) in flight, as a SimPy event reused hop after hop.

    The engine schedules it directly on the environment's queue (what :class:`simpy.Timeout` does, without
    allocating a new event and a closure per hop); ``k`` is the hop it is on.
    """

    __slots__ = ("callbacks", "group", "k", "last", "nbytes", "route")
    _ok = True  # read by simpy.Environment.step: the event succeeded

    def __init__(self, group: list[int], route: Sequence[Link], nbytes: int, last: bool):
        self.callbacks: tuple | None = None
        self.group, self.route, self.nbytes, self.last, self.k = group, route, nbytes, last, 0


def simulate(
    workload: Workload,
    rates: Sequence[DeviceRate],
    network: Network,
    arrivals_s: Sequence[float],
    chunk_bytes: int | None = None,
    multicast: bool = False,
    hosts: Sequence[Host | None] = (),
    interleave: bool = False,
) -> Timeline:
    """Run the workload to completion and return its timeline.

    ``rates`` follows ``workload.devices``; ``arrivals_s[f]`` is when frame ``f`` enters at the source;
    ``chunk_bytes`` splits messages into chunks; ``multicast`` sends equal payloads once (shared medium);
    ``hosts[d]`` is the host device ``d`` shares (``None`` or missing: a machine of its own);
    ``interleave``: every link queue serves the packets (chunks) of different messages in turn.
    """
    enabled = gc.isenabled()
    gc.disable()  # the run allocates many short-lived acyclic objects; the collector's passes over the
    try:  # (large) workload would cost more than the simulation itself; cycles are collected afterwards
        return _simulate(workload, rates, network, arrivals_s, chunk_bytes, multicast, hosts, interleave)
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
    interleave: bool = False,
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
    )
    free_at: dict[str, float] = defaultdict(float)  # queue name -> when it is next free
    tokens: dict[str, tuple[float, float]] = {}  # shaped queue name -> (bucket level in bytes, as of time s)
    cores: dict[str, simpy.Resource | SharedCores] = {
        h.name: SharedCores(env, h.cores) if h.sharing == "processor" else simpy.Resource(env, capacity=h.cores)
        for h in hosts
        if h is not None
    }
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

    waiting: dict[str, RoundRobin] = defaultdict(RoundRobin)  # interleave: queue -> transmissions waiting
    sending: set[str] = set()  # interleave: queues transmitting now
    started: set[int] = set()  # interleave: messages whose first transmission has started

    def forward(chunk: _Transit) -> None:
        """Put ``chunk`` on hop ``chunk.k`` of its route: now, or (``interleave``) in its message's turn; an
        idle queue starts serving in a zero-delay event, once the messages made ready with it have joined."""
        if not interleave:
            transmit(chunk)
            return
        queue = chunk.route[chunk.k].queue_name
        waiting[queue].push(chunk.group[0], chunk)
        if queue not in sending:
            sending.add(queue)
            env.timeout(0.0).callbacks.append(lambda _event: next_in_turn(queue))

    def next_in_turn(queue: str) -> None:
        """``interleave``: the queue is free; the next waiting transmission, in turn, starts."""
        if not waiting[queue]:
            sending.discard(queue)
            return
        chunk = waiting[queue].pop()
        transmit(chunk)
        if chunk.k == 0 and chunk.group[0] not in started:
            started.add(chunk.group[0])
            for m in chunk.group:
                timeline.message_start_s[m] = timeline.hops[-1].start_s

    def transmit(chunk: _Transit) -> None:
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
        if interleave:
            env.timeout(end - now).callbacks.append(lambda _event: next_in_turn(queue))
        hops_append(new_tuple(Hop, (chunk.group[0], link, start, end, nbytes, now)))
        chunk.callbacks = on_arrival
        heappush(schedule, (now + (end + link.latency_s - now), NORMAL, next(eid), chunk))  # a Timeout, reused

    def arrive(chunk: _Transit) -> None:
        k = chunk.k = chunk.k + 1
        if k < len(chunk.route):
            forward(chunk)
        elif chunk.last:
            delivered(chunk.group)

    on_arrival = (arrive,)
    hops_append, new_tuple = timeline.hops.append, tuple.__new__  # Hop(...) without its Python-level __new__

    def delivered(group: list[int]) -> None:
        for m in group:
            timeline.message_end_s[m] = env.now
            if messages[m].final:
                msg = messages[m]
                cost = rates[msg.dst].recv_s(msg.format, msg.bytes) if not msg.needed_by else 0.0
                if cost > 0:
                    timeline.cpu_spans.append(CpuSpan(m, msg.dst, "recv", env.now, env.now + cost, cost))
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
                forward(_Transit(group, route, msg.bytes, True))
                if not interleave:  # else recorded when its turn comes
                    timeline.message_start_s[m] = timeline.hops[-1].start_s
                continue
            sizes = first.wire_sizes(msg.bytes, chunk_bytes)
            for i, size in enumerate(sizes):  # chunks (packets) join the first queue back to back, in order
                forward(_Transit(group, route, size, i == len(sizes) - 1))
                if i == 0 and not interleave:
                    timeline.message_start_s[m] = timeline.hops[-1].start_s

    def send_group(group: list[int]) -> None:
        route = group_route(group)
        for m in group:
            timeline.message_ready_s[m] = env.now
            timeline.message_hops[m] = len(route)
            timeline.carried_by[m] = group[0]
        sizes = route[0].wire_sizes(messages[group[0]].bytes, chunk_bytes)
        for i, size in enumerate(sizes):  # chunks (packets) join the first queue back to back, in order
            forward(_Transit(group, route, size, i == len(sizes) - 1))
            if i == 0 and not interleave:
                for m in group:
                    timeline.message_start_s[m] = timeline.hops[-1].start_s

    def source(frame: int):
        yield frame_arrived[frame]
        if not rates[workload.source].pays_messages:
            send(input_of_frame[frame])
            return
        for group in groups_of(input_of_frame[frame]):
            yield from pay_send(workload.source, core_of[workload.source], group)
            send_group(group)

    def hold(core: simpy.Resource | SharedCores | None, seconds: float, task: int | None = None):
        """Spend ``seconds`` on a core of ``core`` (waiting for one first, or sharing them all), or on the
        device's own; ``task``: record when it starts."""
        if core is None or isinstance(core, SharedCores):
            if task is not None:
                timeline.task_start_s[task] = env.now
            yield env.timeout(seconds) if core is None else core.run(seconds)
            return
        with core.request() as request:
            yield request
            if task is not None:
                timeline.task_start_s[task] = env.now
            yield env.timeout(seconds)

    def pay(d: int, core: simpy.Resource | SharedCores | None, m: int, side: str, seconds: float):
        """Device ``d`` spends ``seconds`` of software time on message ``m`` (recorded as a :class:`CpuSpan`)."""
        start = env.now
        yield from hold(core, seconds)
        timeline.cpu_spans.append(CpuSpan(m, d, side, start, env.now, seconds))

    def pay_send(d: int, core: simpy.Resource | SharedCores | None, group: list[int]):
        """Device ``d`` spends the send cost of the message (or multicast payload) ``group``."""
        msg = messages[group[0]]
        yield from pay(d, core, group[0], "send", rates[d].send_s(msg.format, msg.bytes))

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
                if not rate.pays_messages:
                    unarrived = [arrived[m] for m in pending if not arrived[m].processed]
                    if unarrived:
                        yield env.all_of(unarrived)
                    received.update(pending)
                    break
                ready = [m for m in pending if arrived[m].processed]
                if not ready:
                    yield env.any_of([arrived[m] for m in pending])
                    continue
                for m in sorted(ready, key=lambda m: (timeline.message_end_s[m], m)):
                    yield from pay(d, core, m, "recv", rate.recv_s(messages[m].format, messages[m].bytes))
                    received.add(m)
                pending = [m for m in pending if m not in received]
            duration = rate.task_s(task.flops, task.bytes_touched, task.op, task.layer, task.kind)
            yield from hold(core, duration, t)
            timeline.task_end_s[t] = env.now
            if task.final:
                record_done(task.frame)
            if not rate.pays_messages:
                send(released_by[t])
                continue
            for group in groups_of(released_by[t]):
                yield from pay_send(d, core, group)
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
                rate.task_s(tasks[t].flops, tasks[t].bytes_touched, tasks[t].op, tasks[t].layer, tasks[t].kind),
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
        plain = core_of[d] is None and not rates[d].pays_messages
        env.process((device if plain else shared_device)(d, per_device[d]))
    env.run()
    timeline.events = next(eid)  # every event scheduled was processed: the queue ran empty
    return timeline
