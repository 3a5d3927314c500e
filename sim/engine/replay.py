"""Measured message times against the engine's: when each message would have left the wire, had its first
byte gone to the socket when it did, with no CPU cost anywhere (:func:`wire_end_s`; a runtime profile,
:mod:`sim.testbed.runtime_profile`, takes what a measured transit took beyond that), and when a message
starts as a real run measures it (:func:`link_free_starts`, for the measured and the predicted alike).
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


def route_delays(workload: Workload, network: Network) -> dict[tuple[int, int], float]:
    """Per (src, dst) device pair of ``workload``'s messages, the added delay of its route, seconds."""
    names = workload.devices
    return {
        (m.src, m.dst): sum(x.latency_s for x in network.route(names[m.src], names[m.dst])) for m in workload.messages
    }


def link_free_starts(
    workload: Workload,
    sent_s: Sequence[float],
    received: Sequence[float],
    latency_s: dict[tuple[int, int], float] | None = None,
) -> list[float]:
    """Each message's start: when its bytes were handed to the socket (``sent_s``), or, if later, when the message
    before it on the same connection had arrived (one TCP connection per device pair is FIFO, so its first
    byte cannot leave before the previous message's last one; the kernel's send buffer would otherwise
    count that wait as transit); ``latency_s[(src, dst)]``, the route's added delay, is taken off that arrival.
    This is the simulator's start on a pair's own link. A previous arrival no earlier than this message's
    is not one: the kernel merged both messages' bytes into one buffer, stamped when the later came
    (:class:`sim.testbed.transport.Receiver`).

    >>> from types import SimpleNamespace as M
    >>> wl = M(messages=[M(src=0, dst=1), M(src=0, dst=1)])   # one connection; the first arrives at 4 s
    >>> link_free_starts(wl, [1.0, 1.5], [4.0, 6.0])
    [1.0, 4.0]
    """
    starts = list(sent_s)
    previous: dict[tuple[int, int], int] = {}
    for k in sorted(range(len(starts)), key=lambda k: sent_s[k]):
        m = workload.messages[k]
        before = previous.get((m.src, m.dst))
        if before is not None and received[before] < received[k]:  # equal: one kernel buffer, one stamp
            lag = (latency_s or {}).get((m.src, m.dst), 0.0)
            starts[k] = max(starts[k], received[before] - lag)
        previous[(m.src, m.dst)] = k
    return starts
