"""The frozen records a scenario converts into on load, in SI units (built by :mod:`sim.config.setup`).

Example::

    >>> DeviceSetup("cam", flops_per_s=2e9, overhead_s=5e-4, mem_bandwidth_Bps=None).flops_per_s
    2000000000.0
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LinkSetup:
    """One edge ``a``--``b``: rate ``a->b`` (``up_bps``) and ``b->a`` (``down_bps``) in bit/s, its
    propagation delay in seconds and its duplex (``full`` or ``half``)."""

    a: str
    b: str
    up_bps: float
    down_bps: float
    latency_s: float
    duplex: str
    protocol: Any = None  # the link's protocol setting (sim.config.schema.ProtocolSetting), defaults filled in
    shaper: Any = None  # the link's ShaperSpec, or None
    loss: Any = None  # the link's LossSpec (sim.config.schema), defaults filled in, or None
    jitter: Any = None  # the link's JitterSpec (milliseconds), defaults filled in, or None


@dataclass(frozen=True)
class NetworkSetup:
    """The scenario's network in SI units.

    ``links`` are the per-edge settings (``network.links`` first, then GraphML edges not given there);
    ``edges`` are the edges of a ``custom`` topology (GraphML, then ``network.links``), each once.
    ``chunk_bytes`` is None when messages travel whole.
    """

    topology: str
    bandwidth_bps: float
    latency_s: float
    duplex: str
    links: tuple[LinkSetup, ...]
    edges: tuple[tuple[str, str], ...]
    chunk_bytes: int | None
    access_overhead_s: float
    multicast: bool
    interleave: bool = False  # network.interleave
    protocol: Any = None  # network.protocol (sim.config.schema.ProtocolSetting)
    shaper: Any = None  # network.shaper (ShaperSpec or None)
    loss: Any = None  # network.loss (LossSpec or None)
    jitter: Any = None  # network.jitter_ms (JitterSpec or None)
    rto_s: float = 0.2  # network.rto_ms in seconds


@dataclass(frozen=True)
class DeviceSetup:
    """One device: compute rate in FLOP/s (None for ``calibrate: true`` until it is measured, see
    :func:`sim.pipeline.calibrate.calibrated`), per-layer overhead in seconds, memory bandwidth in
    bytes/s (None: compute-only timing)."""

    name: str
    flops_per_s: float | None
    overhead_s: float
    mem_bandwidth_Bps: float | None


@dataclass(frozen=True)
class Paths:
    """The scenario's files and folders, relative ones resolved against the scenario file's folder."""

    checkpoint: Path | None
    dataset: Path | None
    graphml: Path | None
    partition: Path | None
    profiles: tuple[tuple[str, Path | None], ...] = ()  # (device name, its profile JSON) for each profile: device
    save_to: Path | None = None  # partition.save_to
    runtime_profile: Path | None = None  # the top-level profile: (a runtime profile)

    def profile(self, device: str) -> Path | None:
        """The resolved ``profile:`` file of the device named ``device``, or None."""
        return dict(self.profiles).get(device)


@dataclass(frozen=True)
class Setup:
    """Everything of a scenario the engine and the file readers need, in SI units and resolved paths.

    ``interval_s`` is the time between frame arrivals at the source (``1/fps`` when ``fps`` is given).
    """

    network: NetworkSetup
    devices: tuple[DeviceSetup, ...]
    interval_s: float
    paths: Paths
    base_dir: Path | None


def device_setups(devices: Iterable[Any]) -> tuple[DeviceSetup, ...]:
    """Scenario devices (:class:`sim.config.schema.DeviceSpec`) in SI units, in order."""
    return tuple(
        DeviceSetup(
            d.name,
            None if d.gflops is None else d.gflops * 1e9,
            d.overhead_ms / 1e3,
            None if d.mem_bandwidth_GBps is None else d.mem_bandwidth_GBps * 1e9,
        )
        for d in devices
    )


def interval_s(inputs: Any) -> float:
    """Seconds between frame arrivals of a scenario's ``inputs`` (``1/fps`` when ``fps`` is given)."""
    return 1.0 / inputs.fps if inputs.fps is not None else inputs.interval_ms / 1e3
