"""Service latency: how long one frame takes through the system when it is alone in it (no queueing).

A stream's mean latency includes the time frames wait behind earlier frames (device and link queues),
which grows without bound when the system cannot keep up. The *service latency* is a property of the
split itself: each frame is simulated on its own, in an empty system, and the latencies are averaged.
Together with the sustained throughput (``throughput_fps``, the rate results leave a loaded system) it
says what a split buys over one device without mixing in how fast frames were offered.

Example::

    >>> from sim.engine.devices import DeviceRate
    >>> from sim.engine.network import Network
    >>> from sim.workload.types import Task, Workload
    >>> tasks = tuple(Task(f, "L", 0, 1e9, "conv", True) for f in range(3))   # 1 s of work per frame
    >>> wl = Workload(("a",), 0, 0, 3, tasks, ())
    >>> service_latency_s(wl, [DeviceRate(1e9)], Network.mesh(["a"], 1e6, 0.0))
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sim.engine.devices import DeviceRate, Host
from sim.engine.network import Network
from sim.engine.simulate import simulate
from sim.workload.types import Workload


def frame_alone(workload: Workload, frame: int) -> Workload:
    """The one-frame workload of ``frame``: its tasks and messages (renumbered as frame 0), nothing else."""
    keep = [k for k, t in enumerate(workload.tasks) if t.frame == frame]
    index = {old: new for new, old in enumerate(keep)}
    tasks = tuple(replace(workload.tasks[k], frame=0) for k in keep)
    messages = tuple(
        replace(
            m,
            frame=0,
            after=None if m.after is None else index[m.after],
            needed_by=tuple(index[k] for k in m.needed_by),
        )
        for m in workload.messages
        if m.frame == frame
    )
    return replace(workload, frames=1, tasks=tasks, messages=messages)


def service_latency_s(
    workload: Workload,
    rates: Sequence[DeviceRate],
    network: Network,
    chunk_bytes: int | None = None,
    multicast: bool = False,
    hosts: Sequence[Host | None] = (),
    seed: int = 0,
    interleave: bool = False,
) -> float:
    """Mean over frames of each frame's latency when simulated alone (an empty system), in seconds.

    For a one-frame workload this is its latency. ``rates``, ``network``, ``chunk_bytes``, ``multicast``,
    ``hosts`` and ``interleave`` are as for :func:`sim.engine.simulate.simulate`; frame ``f`` alone runs with
    the seed ``(seed, f)``, so lossy links draw other losses for every frame.
    """
    total = 0.0
    for f in range(workload.frames):
        alone = simulate(
            frame_alone(workload, f), rates, network, [0.0], chunk_bytes, multicast, hosts, (seed, f), interleave
        )
        total += alone.latency_s[0]
    return total / workload.frames if workload.frames else 0.0
