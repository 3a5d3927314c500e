"""How long a task takes on a device: a roofline of compute rate and memory bandwidth, plus an overhead,
or a measured per-layer table (``profile:``); and the hosts devices may share.

A task of ``flops`` FLOPs that reads and writes ``bytes_touched`` bytes takes::

    max(flops / flops_per_s, bytes_touched / mem_bandwidth_Bps) + overhead_s

on a device with a memory bandwidth, and ``flops / flops_per_s + overhead_s`` on one without (docs/design.md
§3.6). The per-layer overhead is not charged to residual adds or to pools (rows form). A device with
:class:`LayerTimes` (from a profile written by ``dsim profile``) takes a measured task's median time, and
for a task shape not in the table the profile's fit of its op kind (``units * s_per_unit + overhead_s``).

Board presets live in :mod:`sim.config.presets`; measuring this machine in :mod:`sim.pipeline.profile`.

Example::

    >>> rate = DeviceRate(flops_per_s=1e9, overhead_s=0.001, mem_bandwidth_Bps=1e9)
    >>> rate.task_s(2e6, 4e6, "conv")   # memory-bound: 4 MB at 1 GB/s, plus 1 ms
    0.005
    >>> times = LayerTimes({("conv1", "conv", 2000000, 0): 0.004}, {"conv": (1e-9, 0.001)})
    >>> timed = DeviceRate(1e9, times=times)
    >>> timed.task_s(2e6, 0, "conv", "conv1"), timed.task_s(3e6, 0, "conv", "conv2")  # measured, then fitted
    (0.004, 0.004)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TaskShape = tuple[str, str, int, int]  # (layer label, op, FLOPs rounded to an integer, bytes touched)
ELEMENTWISE_OPS = ("add", "pool")  # zero-FLOP tasks timed by the bytes they touch, without the overhead


def task_shape(layer: str, op: str, flops: float, bytes_touched: int) -> TaskShape:
    """The key of a task in a :class:`LayerTimes` table."""
    return (layer, op, round(flops), int(bytes_touched))


def fit_units(op: str, flops: float, bytes_touched: int) -> float:
    """What a fit of ``op`` scales with: FLOPs for conv and linear, bytes touched for adds (zero FLOPs)."""
    return float(bytes_touched) if op in ELEMENTWISE_OPS else float(flops)


@dataclass(frozen=True)
class LayerTimes:
    """Measured task times of one device (seconds, by :func:`task_shape`) and, per op kind, a fit
    ``(s_per_unit, overhead_s)`` for shapes not measured (units: :func:`fit_units`)."""

    seconds: Mapping[TaskShape, float] = field(default_factory=dict)
    fit: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def lookup(self, layer: str, op: str, flops: float, bytes_touched: int) -> tuple[float, str] | None:
        """``(seconds, "table")`` for a measured shape, ``(seconds, "fit")`` for a fitted op kind, else None."""
        measured = self.seconds.get(task_shape(layer, op, flops, bytes_touched))
        if measured is not None:
            return measured, "table"
        if op in self.fit:
            per_unit, overhead = self.fit[op]
            return fit_units(op, flops, bytes_touched) * per_unit + overhead, "fit"
        return None


@dataclass(frozen=True)
class DeviceRate:
    """How fast a device computes, and what each message costs its software.

    ``flops_per_s`` is the compute peak (FLOP/s), ``overhead_s`` a fixed time per conv/linear layer (s),
    ``mem_bandwidth_Bps`` the memory bandwidth (bytes/s) or ``None`` for compute-only timing. ``times`` is
    a measured table that takes precedence over the roofline. ``send_overhead_s`` and ``recv_overhead_s``
    are the software cost of sending and of receiving one message (s), spent on the device.
    """

    flops_per_s: float
    overhead_s: float = 0.0
    mem_bandwidth_Bps: float | None = None
    times: LayerTimes | None = None
    send_overhead_s: float = 0.0
    recv_overhead_s: float = 0.0

    def task_s(self, flops: float, bytes_touched: float, op: str, layer: str = "") -> float:
        """Seconds to run a task: measured or fitted (``times``), else the roofline time plus the overhead
        (none for the element-wise ``add`` and ``pool``)."""
        if self.times is not None:
            found = self.times.lookup(layer, op, flops, int(bytes_touched))
            if found is not None:
                return found[0]
        busy = flops / self.flops_per_s
        if self.mem_bandwidth_Bps is not None:
            busy = max(busy, bytes_touched / self.mem_bandwidth_Bps)
        return busy + (0.0 if op in ELEMENTWISE_OPS else self.overhead_s)

    def time_source(self, flops: float, bytes_touched: float, op: str, layer: str) -> str:
        """Where :meth:`task_s` takes a task's time from: ``table``, ``fit`` or ``rate``."""
        found = None if self.times is None else self.times.lookup(layer, op, flops, int(bytes_touched))
        return "rate" if found is None else found[1]


@dataclass(frozen=True)
class Host:
    """A machine that several devices share: their compute (and message software) queues for its
    ``cores`` (a FIFO of that capacity)."""

    name: str
    cores: int
