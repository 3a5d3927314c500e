"""Energy of a run: each device's compute, idle and radio joules over the run window ``[0, makespan_s]``.

For a device with ``power`` (:class:`sim.config.schema.PowerSpec`):

* compute: ``busy_s * busy_w`` (``busy_s``: the seconds it computed); idle: ``(makespan_s - busy_s) * idle_w``;
* radio: every transmission it puts on a link costs ``bits * tx_nj_per_bit`` nanojoules, every one it
  receives ``bits * rx_nj_per_bit``. Bits are those on the wire (payload, and packet headers when
  ``network.protocol`` is set). A relay on a multi-hop route receives and sends, so it pays both; a switch
  is not a device and pays nothing. On the shared medium only the message's destination (or relay)
  receives; a multicast transmission is received by every destination it carries a message for;
* tail: after each transmission it sends or receives (from the end of sending, or of arrival), its radio
  stays ``tail_s`` at ``tail_w``; tails that overlap merge, so the tail time is the length of the union
  of those intervals (counted in full, also past the makespan).

A device without ``power`` has no energy figures; the run's ``energy_j`` sums the devices that have one.

Example (one 1,000-byte message from ``a`` to ``b``; ``a`` pays 8,000 bits x 100 nJ/bit = 0.8 mJ)::

    >>> from sim.analysis.counters import makespan_s
    >>> from sim.config.schema import PowerSpec
    >>> from sim.engine.network import Link
    >>> from sim.engine.simulate import Hop
    >>> hop = Hop(0, Link("a", "b", 8e6, 0.0), 0.0, 1e-3, 1000)
    >>> radio = radio_energy(["a", "b"], [PowerSpec(idle_w=0, busy_w=0, tx_nj_per_bit=100), None], [hop], [[0]])
    >>> round(radio["a"].tx_j * 1e3, 6)
    0.8
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from sim.analysis.counters import makespan_s
from sim.config.schema import PowerSpec
from sim.engine.simulate import Hop, Timeline
from sim.workload.types import Workload

ENERGY_COLUMNS = ["energy_j", "compute_j", "idle_j", "tx_j", "rx_j", "tail_j"]
NJ = 1e-9  # joules per nanojoule


@dataclass(frozen=True)
class Radio:
    """A device's radio joules: sending (``tx_j``), receiving (``rx_j``) and tails (``tail_j``)."""

    tx_j: float = 0.0
    rx_j: float = 0.0
    tail_j: float = 0.0


@dataclass(frozen=True)
class DeviceEnergy:
    """One device's joules over the run window (module docstring)."""

    compute_j: float
    idle_j: float
    tx_j: float
    rx_j: float
    tail_j: float

    @property
    def energy_j(self) -> float:
        """The total: compute, idle, sending, receiving and tails."""
        return self.compute_j + self.idle_j + self.tx_j + self.rx_j + self.tail_j


def union_s(intervals: Sequence[tuple[float, float]]) -> float:
    """The length of the union of ``[start, end]`` intervals, in seconds.

    >>> union_s([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)])
    4.0
    """
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def radio_energy(
    devices: Sequence[str], powers: Sequence[PowerSpec | None], hops: Sequence[Hop], receivers: Sequence[Sequence[int]]
) -> dict[str, Radio]:
    """Radio joules of each device with power (module docstring). A hop's far end receives it when it is a
    device; a multicast's hop (to a link named after its receivers) is received by ``receivers[m]``, the
    destinations of the messages that message ``m`` carries (:func:`receivers_of`)."""
    index = {name: d for d, name in enumerate(devices)}
    tx = [0.0] * len(devices)
    rx = [0.0] * len(devices)
    tails: list[list[tuple[float, float]]] = [[] for _ in devices]
    for hop in hops:
        bits = hop.nbytes * 8
        src = index.get(hop.link.src)
        if src is not None and powers[src] is not None:
            tx[src] += bits * powers[src].tx_nj_per_bit * NJ  # type: ignore[union-attr]
            tails[src].append((hop.end_s, hop.end_s + powers[src].tail_s))  # type: ignore[union-attr]
        dst = index.get(hop.link.dst)  # None: a switch, or a multicast's receivers ("b,c")
        group = receivers[hop.message]
        takers = [dst] if dst is not None else (group if len(group) > 1 else [])
        arrival_s = hop.end_s + hop.link.latency_s
        for d in takers:
            power = powers[d]
            if power is not None:
                rx[d] += bits * power.rx_nj_per_bit * NJ
                tails[d].append((arrival_s, arrival_s + power.tail_s))
    out = {}
    for d, name in enumerate(devices):
        power = powers[d]
        if power is not None:
            out[name] = Radio(tx[d], rx[d], union_s(tails[d]) * power.tail_w if power.tail_s > 0 else 0.0)
    return out


def receivers_of(workload: Workload, timeline: Timeline) -> list[list[int]]:
    """Per message: the destination devices of the messages its transmissions carry: its own, and when it
    carries a multicast group every member's (:attr:`Timeline.carried_by`)."""
    takers: list[list[int]] = [[m.dst] for m in workload.messages]
    for m, carrier in enumerate(timeline.carried_by):
        if carrier != m and workload.messages[m].dst not in takers[carrier]:
            takers[carrier].append(workload.messages[m].dst)
    return takers


def energy_table(workload: Workload, timeline: Timeline, powers: Sequence[PowerSpec | None]) -> pd.DataFrame:
    """One row per device (scenario order), :data:`ENERGY_COLUMNS` in joules; empty cells for devices
    without power. A device's busy time is the sum of its tasks' durations, the window the run's makespan
    (:func:`sim.analysis.counters.makespan_s`)."""
    radio = radio_energy(workload.devices, powers, timeline.hops, receivers_of(workload, timeline))
    busy_s = [0.0] * len(workload.devices)
    for k, task in enumerate(workload.tasks):
        busy_s[task.device] += timeline.task_end_s[k] - timeline.task_start_s[k]
    span_s = makespan_s(timeline)
    rows: list[list[float | None]] = []
    for d, name in enumerate(workload.devices):
        power = powers[d]
        if power is None:
            rows.append([None] * len(ENERGY_COLUMNS))
            continue
        r = radio[name]
        e = DeviceEnergy(busy_s[d] * power.busy_w, (span_s - busy_s[d]) * power.idle_w, r.tx_j, r.rx_j, r.tail_j)
        rows.append([e.energy_j, e.compute_j, e.idle_j, e.tx_j, e.rx_j, e.tail_j])
    return pd.DataFrame(rows, columns=ENERGY_COLUMNS, dtype=float)
