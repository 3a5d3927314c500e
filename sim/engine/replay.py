"""Replaying measured sends through the engine: when each message would have left the wire, had its
first byte gone to the socket when it did, with no CPU cost anywhere. A runtime profile
(:mod:`sim.testbed.runtime_profile`) takes what a measured transit took beyond that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sim.engine.devices import DeviceRate
from sim.engine.network import Network
from sim.engine.simulate import simulate
from sim.workload.types import Workload


def wire_end_s(
    workload: Workload, network: Network, starts_s: Sequence[float], interleave: bool = False
) -> list[float]:
    """When each message of ``workload`` would leave the wire at its destination had its first byte gone to
    the socket at ``starts_s[m]``, with no CPU cost anywhere: the engine replaying the measured sends, so
    that a message waits behind the others on its links as it did in the run (``interleave``: as the
    scenario's ``network.interleave``).

    >>> from sim.engine.network import Network
    >>> from sim.workload.types import Message
    >>> m = Message(frame=0, layer="x", src=0, dst=1, channels=1, elements=250, nnz=250, sizes={"dense": 1000},
    ...             format="dense", bytes=1000, after=None, needed_by=(), final=False)
    >>> wl = Workload(("a", "b"), 0, 1, 1, (), (m, m))
    >>> [round(x, 6) for x in wire_end_s(wl, Network.mesh(["a", "b"], 1e6, 0.0), [0.0, 0.004])]  # 8 ms each
    [0.008, 0.016]
    """
    messages = tuple(
        replace(msg, frame=m, after=None, needed_by=(), final=False) for m, msg in enumerate(workload.messages)
    )
    replay = replace(workload, frames=len(messages), tasks=(), messages=messages)
    rates = [DeviceRate(1.0)] * len(workload.devices)
    arrivals = [max(0.0, s) for s in starts_s]
    return simulate(replay, rates, network, arrivals, interleave=interleave).message_end_s
