"""How long a task takes on a device: a roofline of compute rate and memory bandwidth, plus an overhead.

A task of ``flops`` FLOPs that reads and writes ``bytes_touched`` bytes takes::

    max(flops / flops_per_s, bytes_touched / mem_bandwidth_Bps) + overhead_s

on a device with a memory bandwidth, and ``flops / flops_per_s + overhead_s`` on one without (DESIGN
section 3, "Compute"). The per-layer overhead is not charged to residual adds.

Board presets live in :mod:`sim.config.presets`; measuring this machine in :mod:`sim.model.calibrate`.

Example::

    >>> rate = DeviceRate(flops_per_s=1e9, overhead_s=0.001, mem_bandwidth_Bps=1e9)
    >>> rate.task_s(2e6, 4e6, "conv")   # memory-bound: 4 MB at 1 GB/s, plus 1 ms
    0.005
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceRate:
    """How fast a device computes.

    ``flops_per_s`` is the compute peak (FLOP/s), ``overhead_s`` a fixed time per conv/linear layer (s),
    ``mem_bandwidth_Bps`` the memory bandwidth (bytes/s) or ``None`` for compute-only timing.
    """

    flops_per_s: float
    overhead_s: float = 0.0
    mem_bandwidth_Bps: float | None = None

    def task_s(self, flops: float, bytes_touched: float, op: str) -> float:
        """Seconds to run a task: the roofline time plus the overhead (none for ``op == "add"``)."""
        busy = flops / self.flops_per_s
        if self.mem_bandwidth_Bps is not None:
            busy = max(busy, bytes_touched / self.mem_bandwidth_Bps)
        return busy + (0.0 if op == "add" else self.overhead_s)
