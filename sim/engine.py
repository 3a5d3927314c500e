"""The discrete-event engine (SimPy): devices computing tasks and links carrying messages.

Semantics (DESIGN section 3, "Engine"):

* A device runs its tasks one at a time, in workload order (frame, then topological order). A task
  starts once the device is free, its frame has arrived, and every message it needs has arrived. It takes
  ``flops / flops_per_s`` seconds, plus the device's ``overhead_s`` for conv and linear layers.
* A message is ready when the task named by its ``after`` ends (or when its frame arrives, for the
  image). Messages made ready at the same instant are queued in workload order (tensor, then
  destination).
* Each link direction is a FIFO queue: a message holds it for ``bytes*8/bandwidth_bps`` seconds and
  arrives ``latency_s`` later. Multi-hop routes are store-and-forward.
* A frame is done when the sink holds all final outputs; its latency is that time minus its arrival.

This module does not import torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy

from sim.network import Link, Network
from sim.workload import Workload


@dataclass(frozen=True)
class DeviceRate:
    """How fast a device computes: FLOP/s and a fixed per-layer overhead in seconds."""

    flops_per_s: float
    overhead_s: float = 0.0


@dataclass(frozen=True)
class Hop:
    """One message crossing one link direction: transmission from ``start_s`` to ``end_s``."""

    message: int
    link: Link
    start_s: float
    end_s: float


@dataclass
class Timeline:
    """When everything happened, aligned with the workload's ``tasks`` and ``messages``."""

    task_start_s: list[float]
    task_end_s: list[float]
    message_start_s: list[float]  # transmission start on the first hop
    message_end_s: list[float]  # arrival at the destination
    message_hops: list[int]
    hops: list[Hop] = field(default_factory=list)
    frame_arrival_s: list[float] = field(default_factory=list)
    frame_done_s: list[float] = field(default_factory=list)

    @property
    def latency_s(self) -> list[float]:
        """Per-frame latency: when the sink holds all outputs minus when the frame entered."""
        return [d - a for a, d in zip(self.frame_arrival_s, self.frame_done_s)]


def simulate(
    workload: Workload, rates: Sequence[DeviceRate], network: Network, arrivals_s: Sequence[float]
) -> Timeline:
    """Run the workload to completion and return its timeline.

    ``rates`` follows ``workload.devices``; ``arrivals_s[f]`` is when frame ``f`` enters at the source.
    """
    env = simpy.Environment()
    tasks, messages = workload.tasks, workload.messages
    names = workload.devices
    queues = {(link.src, link.dst): simpy.Resource(env, capacity=1) for link in network.links()}
    timeline = Timeline(
        [0.0] * len(tasks), [0.0] * len(tasks), [0.0] * len(messages), [0.0] * len(messages),
        [0] * len(messages), frame_arrival_s=list(arrivals_s), frame_done_s=list(arrivals_s),
    )  # fmt: skip
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

    def transfer(m: int):
        msg = messages[m]
        route = network.route(names[msg.src], names[msg.dst])
        timeline.message_hops[m] = len(route)
        for k, link in enumerate(route):
            with queues[link.src, link.dst].request() as slot:
                yield slot
                start = env.now
                if k == 0:
                    timeline.message_start_s[m] = start
                yield env.timeout(link.transmit_s(msg.bytes))
            timeline.hops.append(Hop(m, link, start, env.now))
            yield env.timeout(link.latency_s)
        timeline.message_end_s[m] = env.now
        if msg.final:
            record_done(msg.frame)
        arrived[m].succeed()

    def send(ms: list[int]) -> None:
        for m in ms:
            env.process(transfer(m))

    def source(frame: int):
        yield frame_arrived[frame]
        send(input_of_frame[frame])

    def device(d: int, own: list[int]):
        rate = rates[d]
        for t in own:
            task = tasks[t]
            yield frame_arrived[task.frame]
            needed = [arrived[m] for m in waits_for[t]]
            if needed:
                yield env.all_of(needed)
            timeline.task_start_s[t] = env.now
            overhead = 0.0 if task.op == "add" else rate.overhead_s
            yield env.timeout(task.flops / rate.flops_per_s + overhead)
            timeline.task_end_s[t] = env.now
            if task.final:
                record_done(task.frame)
            send(released_by[t])

    for f in range(workload.frames):
        env.process(source(f))
    per_device: dict[int, list[int]] = defaultdict(list)
    for t, task in enumerate(tasks):
        per_device[task.device].append(t)
    for d in range(len(names)):
        env.process(device(d, per_device[d]))
    env.run()
    return timeline
