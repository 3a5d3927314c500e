"""The discrete-event engine (SimPy): devices computing tasks and links carrying messages.

Semantics (docs/design.md §3.7 and §3.8):

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
  sink that much after it arrives. Each payment is a :class:`CpuSpan` of ``Timeline.cpu_spans``. A
  runtime profile's transit delay (:meth:`DeviceRate.transit_s` of the receiver) makes a message arrive
  that long after its last byte left the wire, holding no core (``Timeline.transit_s``).
* A device with a runtime profile's ``wake`` curve takes :meth:`DeviceRate.wake_s` seconds more for a
  task, from the time it idled since its previous task ended (a first task: the curve's last value);
  ``Timeline.task_wake_s`` holds them.
* With ``interleave``, a link queue serves the transmissions waiting for it one connection (a device pair;
  a multicast payload) after another in turn, one packet (chunk) each
  (:class:`sim.engine.network.RoundRobin`): the messages one device sends to several peers over its one
  uplink share it packet by packet; messages to one peer, on one TCP connection, keep their order.
* With ``multicast`` (a shared medium), messages made ready together that carry the same payload (equal
  ``frame, src, tensor, partial, channel_ids, position_ids`` and ``bytes``, non-empty ``tensor``) are one transmission, at the
  slowest receiver's rate, arriving at every receiver after the largest of their latencies.
* A link with an ``impairment`` (:mod:`sim.engine.loss`) loses transmissions and delays the others by
  jitter; a lost one joins the same queue again after its recovery wait (seeded by ``seed``).
* A frame is done when the sink holds all final outputs; its latency is that time minus its arrival.

A queue's reservations are made in event order, so they are computed directly (start = max(now, when the
queue frees)) rather than with a SimPy resource; this is exactly FIFO and needs one event per hop.

The code: one :class:`_Run` holds a simulation's state. Its processes are :meth:`_Run.frame_input` (a
frame's image leaves the source) and :meth:`_Run.device` (a device's tasks, in order). A message becomes
transmissions in :meth:`_Run.send`; :meth:`_Run.transmit` puts one on a link queue and schedules its
arrival at the link's far end, where it joins the next link's queue or, at the end of its route,
:meth:`_Run.arrive` marks its messages arrived. The engine schedules its own event objects
(a transmission per hop, a message's arrival, a device's wait for its messages) with the public
:meth:`simpy.Environment.schedule`; they carry the three names SimPy's kernel reads from an event
(``callbacks``, ``_ok``, and ``_value`` for one a process yields), so no :class:`simpy.Event` is built
per hop or per message. This module does not import torch.

Example::

    >>> from sim.workload.types import Message, Workload
    >>> msg = Message(frame=0, layer="input", src=0, dst=1, channels=1, elements=250, nnz=250,
    ...               sizes={"dense": 1000}, format="dense", bytes=1000, after=None, needed_by=(), final=True)
    >>> wl = Workload(("a", "b"), 0, 1, 1, (), (msg,))
    >>> tl = simulate(wl, [DeviceRate(1e9)] * 2, Network.mesh(["a", "b"], 1e6, 0.002), [0.0])
    >>> round(tl.latency_s[0], 6)    # 1000 bytes at 1 Mbit/s = 8 ms, plus 2 ms of latency
    0.01
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import simpy
from simpy.core import EmptySchedule
from simpy.events import NORMAL

from sim.engine.cores import SharedCores
from sim.engine.devices import DeviceRate, Host
from sim.engine.loss import Channels, Seed
from sim.engine.network import MEDIUM, Link, Network, RoundRobin, chunk_sizes
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
    cpu_spans: list[CpuSpan] = field(default_factory=list)  # per-message software time, when any is charged
    transit_s: list[float] = field(default_factory=list)  # per message: arrival after the wire; empty: none
    task_wake_s: list[float] = field(default_factory=list)  # per task: CPU after its device idled; empty: none

    @property
    def latency_s(self) -> list[float]:
        """Per-frame latency: when the sink holds all outputs minus when the frame entered."""
        return [d - a for a, d in zip(self.frame_arrival_s, self.frame_done_s)]


def simulate(
    workload: Workload,
    rates: Sequence[DeviceRate],
    network: Network,
    arrivals_s: Sequence[float],
    chunk_bytes: int | None = None,
    multicast: bool = False,
    hosts: Sequence[Host | None] = (),
    seed: Seed = 0,
    interleave: bool = False,
) -> Timeline:
    """Run the workload to completion and return its timeline.

    ``rates`` follows ``workload.devices``; ``arrivals_s[f]`` is when frame ``f`` enters at the source;
    ``chunk_bytes`` splits messages into chunks; ``multicast`` sends equal payloads once (shared medium);
    ``hosts[d]`` is the host device ``d`` shares (``None`` or missing: a machine of its own); ``seed``
    seeds the loss and jitter of impaired links (:class:`sim.engine.loss.Channels`); ``interleave``: every
    link queue serves the packets (chunks) of different connections (device pairs) in turn.
    """
    enabled = gc.isenabled()
    gc.disable()  # the run allocates many short-lived acyclic objects; the collector's passes over the
    try:  # (large) workload would cost more than the simulation itself; cycles are collected afterwards
        run = _Run(workload, rates, network, arrivals_s, chunk_bytes, multicast, hosts, Channels(seed), interleave)
        return run.run()
    finally:
        if enabled:
            gc.enable()


class _Queue:
    """One FIFO queue (a link direction, both directions of a half-duplex link, or the shared medium): when
    it is next free and, on a shaped link, its token bucket (bytes, as of a time in seconds)."""

    __slots__ = ("free_s", "level_at_s", "level_bytes")

    def __init__(self) -> None:
        self.free_s = 0.0
        self.level_bytes: float | None = None  # None: full, never drawn
        self.level_at_s = 0.0

    def drain_s(self, link: Link, start_s: float, nbytes: int) -> float:
        """Seconds ``nbytes`` hold a shaped queue from ``start_s``: the bucket refills at the link rate since
        it was last drawn, up to ``burst_bytes``; the bytes it lacks go at the link rate."""
        burst, rate_Bps = float(link.burst_bytes or 0), link.bandwidth_bps / 8
        level, since = (burst, start_s) if self.level_bytes is None else (self.level_bytes, self.level_at_s)
        level = min(burst, level + (start_s - since) * rate_Bps)
        wait = max(0.0, nbytes - level) / rate_Bps
        self.level_bytes, self.level_at_s = (level - nbytes if wait == 0.0 else 0.0), start_s + wait
        return wait


Route = tuple[tuple[Link, _Queue], ...]  # the links of a route, each with its queue


def wire_seconds(nbytes: int, links: Sequence[Link]) -> float:
    """A message's time on the wire alone: its bytes at the slowest rate of its route (headers left out).

    >>> wire_seconds(16_000, [Link("a", "b", 20e6, 0.0)])
    0.0064
    """
    return nbytes * 8 / min(link.bandwidth_bps for link in links) if links else 0.0


_new_tuple = tuple.__new__  # Hop(...) without the Python-level __new__ of a NamedTuple


class _Transmission:
    """A message, a chunk or a packet of it, or a multicast payload, in flight: ``nbytes`` over ``route``;
    ``hop`` is the number of the link it joins next (it moves on once the transmission has left a link's
    queue and is not lost). ``left`` (shared by the pieces of one payload; ``None`` for a payload of one
    piece) counts the pieces not yet at the destination: the last one in delivers ``group`` (the message, or
    every message of the multicast); ``after`` is how many pieces of its payload follow it, ``tries`` how
    often it was lost on this link, ``now_s`` the simulated time (s) of its latest step: when it joined a
    queue, or when it reaches the far end of the link it is on.

    It is its own SimPy event, scheduled (:meth:`simpy.Environment.schedule`) at its arrival at the far end
    of each link in turn, where ``callbacks`` takes it on. This is what :class:`simpy.Timeout` does, without
    a new event per hop; ``_ok`` is what the environment reads to see that the event succeeded (module
    docstring). A :class:`simpy.Timeout` per hop would add an object, its Python ``__init__`` and a callback
    list per hop (193,200 hops in ``bench/bench_engine.py``'s run; cProfile counts) for nothing the engine
    needs.
    """

    __slots__ = ("after", "callbacks", "group", "hop", "left", "nbytes", "now_s", "route", "tries")
    _ok = True

    def __init__(
        self, group: tuple[int, ...], route: Route, nbytes: int, now_s: float, left: list[int] | None, after: int = 0
    ):
        self.group, self.route, self.nbytes, self.now_s, self.left = group, route, nbytes, now_s, left
        self.hop, self.after, self.tries = 0, after, 0
        self.callbacks: tuple[Callable[[_Transmission], object], ...] | None = None


class _Arrival:
    """The event of a message's arrival at its destination, scheduled (:meth:`simpy.Environment.schedule`,
    as :meth:`simpy.Event.succeed` does) when it is delivered; ``callbacks`` is ``None`` once it has been
    processed. Never yielded by a process, so it needs no value (module docstring)."""

    __slots__ = ("callbacks",)
    _ok = True
    callbacks: list[Callable[[_Arrival], object]] | None


class _AllProcessed:
    """An event that succeeds once ``count`` of ``events`` (default: all) have been processed.

    :class:`simpy.AllOf` and :class:`simpy.AnyOf` without building their value: the same single event,
    triggered at the same moment, so the order of events is theirs. A process yields it: it has the
    ``callbacks``, ``_ok`` and ``_value`` that :class:`simpy.Process` reads (module docstring).
    """

    __slots__ = ("callbacks", "env", "remaining")
    _ok = True
    _value = None

    def __init__(self, env: simpy.Environment, events: Sequence[_Arrival], count: int | None = None):
        self.env, self.remaining = env, len(events) if count is None else count
        self.callbacks: list[Callable[[_AllProcessed], object]] | None = []
        one_processed = self._one_processed
        for event in events:
            event.callbacks.append(one_processed)  # type: ignore[union-attr]  # pending: callbacks is a list

    def _one_processed(self, _: _Arrival) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.env.schedule(self)  # type: ignore[arg-type]  # as simpy.Event.succeed does


class _Run:
    """One simulation: the SimPy environment, the workload's records, and the timeline being filled."""

    def __init__(
        self,
        workload: Workload,
        rates: Sequence[DeviceRate],
        network: Network,
        arrivals_s: Sequence[float],
        chunk_bytes: int | None,
        multicast: bool,
        hosts: Sequence[Host | None],
        channels: Channels,
        interleave: bool = False,
    ):
        self.env = env = simpy.Environment()
        self.channels = channels
        self.workload, self.rates, self.network = workload, rates, network
        self.tasks, self.messages = workload.tasks, workload.messages
        self.chunk_bytes, self.multicast = chunk_bytes, multicast
        n_msg = len(self.messages)
        self.timeline = Timeline(
            [0.0] * len(self.tasks),
            [0.0] * len(self.tasks),
            [0.0] * n_msg,
            [0.0] * n_msg,
            [0] * n_msg,
            frame_arrival_s=list(arrivals_s),
            frame_done_s=list(arrivals_s),
            message_ready_s=[0.0] * n_msg,
            carried_by=list(range(n_msg)),
            retransmissions=[0] * n_msg if any(l.impairment and l.impairment.loss for l in network.links()) else [],
        )
        cores: dict[str, simpy.Resource | SharedCores] = {
            h.name: SharedCores(env, h.cores) if h.sharing == "processor" else simpy.Resource(env, capacity=h.cores)
            for h in hosts
            if h is not None
        }
        if any(rate.wake is not None for rate in rates):
            self.timeline.task_wake_s = [0.0] * len(self.tasks)
        self.core_of = [cores[h.name] if h is not None else None for h in hosts]
        self.core_of += [None] * (len(workload.devices) - len(hosts))
        self.queues = {link.queue_name: _Queue() for link in network.links()}  # queue name -> its state
        names = workload.devices
        self.routes: dict[tuple[int, int], Route] = {  # (src, dst) device indices -> route, with its queues
            (src, dst): tuple((link, self.queues[link.queue_name]) for link in network.route(names[src], names[dst]))
            for src, dst in {(msg.src, msg.dst) for msg in self.messages}
        }
        self.route_of = [self.routes[msg.src, msg.dst] for msg in self.messages]  # message -> its route
        if any(rate.message_cpu is not None and rate.message_cpu.transit for rate in rates):
            transit = [
                rates[msg.dst].transit_s(msg.format, msg.bytes, wire_seconds(msg.bytes, [l for l, _ in route]))
                for msg, route in zip(self.messages, self.route_of)
            ]
            self.timeline.transit_s = transit if any(transit) else []
        self.cuts = chunk_bytes is not None or any(link.protocol for link in network.links())  # chunks or packets
        self.whole = not (self.cuts or multicast or interleave)  # every message is one transmission of its own
        self.arrived = [_Arrival() for _ in self.messages]  # processed once the message is delivered
        for arrival in self.arrived:  # pending, no callback yet (set here rather than in an __init__: one
            arrival.callbacks = []  # Python call less per message)
        self.needs: list[list[int]] = [[] for _ in self.tasks]  # task -> messages it waits for
        self.releases: list[list[int]] = [[] for _ in self.tasks]  # task -> messages its end makes ready
        self.inputs: list[list[int]] = [[] for _ in range(workload.frames)]  # frame -> its image's messages
        for m, msg in enumerate(self.messages):
            for t in msg.needed_by:
                self.needs[t].append(m)
            (self.inputs[msg.frame] if msg.after is None else self.releases[msg.after]).append(m)
        self.frame_arrived = [env.timeout(a) for a in arrivals_s]
        self.hops = self.timeline.hops
        self.interleave = interleave
        self.waiting: dict[str, RoundRobin] = {}  # interleave: queue name -> transmissions waiting for it
        self.sending: set[str] = set()  # interleave: queues transmitting now
        self.started: set[int] = set()  # interleave: payloads whose first transmission has started
        self.enqueue = self.forward if interleave else self.transmit  # puts a transmission on its link
        self.on_lost = (self.enqueue,)  # a lost transmission joins its queue again when its recovery wait ends
        self.on_next_hop = (self.enqueue,)  # a transmission at the far end of a link that is not its last
        self.on_last_hop = (self.arrive,)  # a transmission at the end of its route

    def run(self) -> Timeline:
        """Start a process per frame and per device, run until no event is left, and return the timeline."""
        env = self.env
        for frame in range(self.workload.frames):
            env.process(self.frame_input(frame))
        own: list[list[int]] = [[] for _ in self.workload.devices]
        for t, task in enumerate(self.tasks):
            own[task.device].append(t)
        for d, tasks in enumerate(own):
            env.process(self.device(d, tasks))
        step, events = env.step, 0
        try:
            while True:
                step()
                events += 1
        except EmptySchedule:
            self.timeline.events = events
        return self.timeline

    # -- processes -------------------------------------------------------------------------------------

    def frame_input(self, frame: int) -> Generator[simpy.Event, Any, None]:
        """The process of frame ``frame``'s image: once it arrives, the source sends its messages."""
        yield self.frame_arrived[frame]
        yield from self.release(self.workload.source, self.inputs[frame], self.env.now)

    def device(self, d: int, tasks: list[int]) -> Generator[simpy.Event, Any, None]:
        """The process of device ``d``: its ``tasks`` one at a time, each once its frame has arrived and the
        messages it needs have (paying their receive cost), on a core of its host when it shares one;
        then the messages the task makes ready go out."""
        env, timeline, rate, core = self.env, self.timeline, self.rates[d], self.core_of[d]
        arrived, pays = self.arrived, rate.pays_messages
        received: set[int] = set()  # messages whose receive cost is paid
        last_end_s, wakes = -math.inf, rate.wake is not None  # when the device's previous task ended
        for t in tasks:
            task = self.tasks[t]
            frame = self.frame_arrived[task.frame]
            if frame.callbacks is not None:  # not yet processed
                yield frame
            needs = self.needs[t]
            if pays:
                yield from self.receive(d, needs, received)
            elif needs:
                waiting = [arrived[m] for m in needs if arrived[m].callbacks is not None]
                if waiting:
                    yield _AllProcessed(env, waiting)  # type: ignore[misc]  # an event to SimPy (its docstring)
            duration = rate.task_s(task.flops, task.bytes_touched, task.op, task.layer, task.kind)
            if core is None:
                timeline.task_start_s[t] = env.now
                yield env.timeout(self.wake(d, t, duration, last_end_s) if wakes else duration)
            elif isinstance(core, SharedCores):
                timeline.task_start_s[t] = env.now
                yield core.run(self.wake(d, t, duration, last_end_s) if wakes else duration)
            else:
                with core.request() as request:
                    yield request
                    timeline.task_start_s[t] = env.now
                    yield env.timeout(self.wake(d, t, duration, last_end_s) if wakes else duration)
            now = last_end_s = timeline.task_end_s[t] = env.now
            if task.final:
                self.frame_done(task.frame, now)
            if pays:
                yield from self.release(d, self.releases[t], now)
            else:
                self.send(self.releases[t], now)

    def wake(self, d: int, t: int, duration_s: float, last_end_s: float) -> float:
        """Task ``t`` of device ``d`` starting now: its ``duration_s`` plus the device's extra CPU seconds
        after idling since ``last_end_s``, when its previous task ended (:meth:`DeviceRate.wake_s`), kept in
        ``Timeline.task_wake_s``."""
        extra = self.timeline.task_wake_s[t] = self.rates[d].wake_s(self.env.now - last_end_s)
        return duration_s + extra

    def receive(self, d: int, needs: list[int], received: set[int]) -> Generator[simpy.Event, Any, None]:
        """Wait for the messages ``needs`` and pay device ``d``'s receive cost for each not yet in
        ``received``, in arrival order (ties: workload order)."""
        pending = [m for m in needs if m not in received]
        while pending:
            ready = [m for m in pending if self.arrived[m].callbacks is None]
            if not ready:
                yield _AllProcessed(self.env, [self.arrived[m] for m in pending], count=1)  # type: ignore[misc]  # an event to SimPy (its docstring)
                continue
            for m in sorted(ready, key=lambda m: (self.timeline.message_end_s[m], m)):
                msg = self.messages[m]
                yield from self.pay(d, m, "recv", self.rates[d].recv_s(msg.format, msg.bytes))
                received.add(m)
            pending = [m for m in pending if m not in received]

    def release(self, d: int, ms: list[int], now_s: float) -> Generator[simpy.Event, Any, None]:
        """Send the messages ``ms`` that device ``d`` made ready at ``now_s`` (the current time), paying its
        send cost for each payload (a message, or a multicast group) before it goes."""
        rate = self.rates[d]
        if not rate.pays_messages:
            self.send(ms, now_s)
            return
        for group in self.payloads(ms):
            msg = self.messages[group[0]]
            yield from self.pay(d, group[0], "send", rate.send_s(msg.format, msg.bytes))
            self.send_payload(group, self.env.now)

    def pay(self, d: int, m: int, side: str, seconds: float) -> Generator[simpy.Event, Any, None]:
        """Device ``d`` spends ``seconds`` of software time on message ``m`` (a :class:`CpuSpan`)."""
        start = self.env.now
        yield from self.hold(d, seconds)
        self.timeline.cpu_spans.append(CpuSpan(m, d, side, start, self.env.now, seconds))

    def hold(self, d: int, seconds: float) -> Generator[simpy.Event, Any, None]:
        """Keep device ``d`` busy for ``seconds``: on a core of its host (waiting for one first, or sharing
        them all), or its own."""
        core = self.core_of[d]
        if core is None:
            yield self.env.timeout(seconds)
            return
        if isinstance(core, SharedCores):
            yield core.run(seconds)
            return
        with core.request() as request:
            yield request
            yield self.env.timeout(seconds)

    # -- messages on the network -----------------------------------------------------------------------

    def payloads(self, ms: list[int]) -> list[tuple[int, ...]]:
        """The messages ``ms`` as payloads to transmit, in order: one each, or with ``multicast`` one per
        group of messages carrying the same data (module docstring)."""
        if not self.multicast:
            return [(m,) for m in ms]
        groups: dict[tuple[object, ...], list[int]] = {}
        for m in ms:
            msg = self.messages[m]
            key = (
                (msg.frame, msg.src, msg.tensor, msg.partial, msg.channel_ids, msg.position_ids, msg.bytes)
                if msg.tensor
                else (m,)
            )
            groups.setdefault(key, []).append(m)
        return [tuple(group) for group in groups.values()]

    def send(self, ms: list[int], now_s: float) -> None:
        """Transmit the messages ``ms``, made ready at ``now_s`` (the current time), in order (as
        :meth:`payloads`)."""
        if not self.whole:
            for group in self.payloads(ms):
                self.send_payload(group, now_s)
            return
        timeline, messages, route_of = self.timeline, self.messages, self.route_of
        for m in ms:  # send_payload of a one-message payload in one piece, without its lists
            route = route_of[m]
            timeline.message_ready_s[m] = now_s
            timeline.message_start_s[m] = self.transmit(_Transmission((m,), route, messages[m].bytes, now_s, None))
            timeline.message_hops[m] = len(route)

    def send_payload(self, group: tuple[int, ...], now_s: float) -> None:
        """Put one payload (a message, or a multicast group) on its route's first queue at ``now_s`` (the
        current time): whole, or as chunks or packets back to back."""
        timeline, first = self.timeline, self.messages[group[0]]
        route = self.route_of[group[0]] if len(group) == 1 else self.multicast_route(group)
        sizes = route[0][0].wire_sizes(first.bytes, self.chunk_bytes) if self.cuts else (first.bytes,)
        left, last = [len(sizes)] if len(sizes) > 1 else None, len(sizes) - 1
        pieces = [_Transmission(group, route, size, now_s, left, last - i) for i, size in enumerate(sizes)]
        if self.interleave:  # its start is recorded when its first piece's turn comes (next_in_turn)
            for tx in pieces:
                self.forward(tx)
        else:
            starts = [self.transmit(tx) for tx in pieces]
        for m in group:
            timeline.message_ready_s[m] = now_s
            if not self.interleave:
                timeline.message_start_s[m] = starts[0]
            timeline.message_hops[m], timeline.carried_by[m] = len(route), group[0]

    def forward(self, tx: _Transmission) -> None:
        """``interleave``: ``tx`` waits for its link's queue, in its connection's turn; an idle queue starts
        serving in a zero-delay event, once the payloads made ready with it have joined."""
        name = tx.route[tx.hop][0].queue_name
        first = self.messages[tx.group[0]]
        flow = ("pair", first.src, first.dst) if len(tx.group) == 1 else ("payload", *tx.group)  # tagged: distinct
        self.waiting.setdefault(name, RoundRobin()).push(flow, tx)
        if name not in self.sending:
            self.sending.add(name)
            self.env.timeout(0.0).callbacks.append(lambda _event: self.next_in_turn(name))

    def next_in_turn(self, name: str) -> None:
        """``interleave``: queue ``name`` is free; the next waiting transmission, in turn, starts."""
        waiting = self.waiting[name]
        if not waiting:
            self.sending.discard(name)
            return
        tx = waiting.pop()
        tx.now_s, first_hop = self.env.now, tx.hop == 0
        start = self.transmit(tx)
        if first_hop and tx.group[0] not in self.started:
            self.started.add(tx.group[0])
            for m in tx.group:
                self.timeline.message_start_s[m] = start

    def transmit(self, tx: _Transmission) -> float:
        """Put ``tx`` on the queue of its link number ``tx.hop`` now (``tx.now_s``). It reaches the link's far
        end ``latency_s`` after leaving the queue, as an event whose callback puts it on the next link (and
        ``tx.hop`` moves on to that link now) or, after the last link, :meth:`arrive`; a lost transmission
        joins the same queue again instead. Returns when it starts."""
        now, nbytes, route, hop = tx.now_s, tx.nbytes, tx.route, tx.hop
        link, queue = route[hop]
        start = queue.free_s if queue.free_s > now else now
        if link.burst_bytes is None:
            end = start + nbytes * 8 / link.bandwidth_bps + link.overhead_s
        else:
            end = start + queue.drain_s(link, start, nbytes) + link.overhead_s
        queue.free_s = end
        if self.interleave:  # the queue serves the next waiting transmission when this one has left it
            self.env.timeout(end - now).callbacks.append(lambda _event: self.next_in_turn(link.queue_name))
        self.hops.append(_new_tuple(Hop, (tx.group[0], link, start, end, nbytes, now)))
        delay = link.latency_s
        retry = None
        if link.impairment is not None:  # lost: it joins this queue again after its recovery wait
            args = (link.name, delay, link.queue_name == MEDIUM, tx.after, tx.tries, end - start)
            retry, delay = self.channels.transmit(link.impairment, *args)
        if retry is None:
            tx.hop = hop = hop + 1
            tx.callbacks = self.on_next_hop if hop < len(route) else self.on_last_hop
            tx.tries = 0
        else:
            tx.callbacks, delay, tx.tries = self.on_lost, retry, tx.tries + 1
            self.timeline.retransmissions[tx.group[0]] += 1
        wait = end + delay - now
        tx.now_s = now + wait  # what the environment computes as the event's time
        self.env.schedule(tx, NORMAL, wait)  # type: ignore[arg-type]
        return start

    def arrive(self, tx: _Transmission) -> None:
        """``tx`` reached the end of its route: when it is its payload's last piece in, the messages of its
        ``group`` are at their destinations now, or their transit delay later (``Timeline.transit_s``); a
        final output counts as held by the sink once its receive cost is paid (when no task pays it)."""
        left = tx.left  # lost pieces, or jitter, may let a later piece overtake: the last one in delivers
        if left is not None:
            left[0] -= 1
            if left[0]:
                return
        now, timeline, messages, arrived, schedule = (
            tx.now_s,
            self.timeline,
            self.messages,
            self.arrived,
            self.env.schedule,
        )
        transit = timeline.transit_s
        for m in tx.group:
            delay = transit[m] if transit else 0.0
            end = timeline.message_end_s[m] = now + delay
            msg = messages[m]
            if msg.final:
                cost = 0.0 if msg.needed_by else self.rates[msg.dst].recv_s(msg.format, msg.bytes)
                if cost > 0:
                    timeline.cpu_spans.append(CpuSpan(m, msg.dst, "recv", end, end + cost, cost))
                self.frame_done(msg.frame, end + cost)
            schedule(arrived[m], NORMAL, delay)  # type: ignore[arg-type]  # as simpy.Event.succeed does

    def frame_done(self, frame: int, at_s: float) -> None:
        """Something the sink needs for ``frame`` is there at ``at_s``: the frame is done no earlier."""
        self.timeline.frame_done_s[frame] = max(self.timeline.frame_done_s[frame], at_s)

    def multicast_route(self, group: tuple[int, ...]) -> Route:
        """The route of a multicast group: the shared medium as one link at the slowest receiver's rate,
        arriving after the largest latency."""
        names, src = self.workload.devices, self.messages[group[0]].src
        links = [self.routes[src, self.messages[m].dst][0][0] for m in group]
        first = links[0]
        slowest = Link(
            names[src],
            ",".join(names[self.messages[m].dst] for m in group),
            min(link.bandwidth_bps for link in links),
            max(link.latency_s for link in links),
            first.queue_name,
            first.overhead_s,
            first.protocol,
            first.burst_bytes,
            first.impairment,
        )
        return ((slowest, self.queues[first.queue_name]),)
