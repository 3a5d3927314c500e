"""How long a task takes on a device: a roofline of compute rate and memory bandwidth, plus an overhead,
or a measured per-layer table (``profile:``); and the hosts devices may share.

A task of ``flops`` FLOPs that reads and writes ``bytes_touched`` bytes takes::

    max(flops / flops_per_s, bytes_touched / mem_bandwidth_Bps) + overhead_s

on a device with a memory bandwidth, and ``flops / flops_per_s + overhead_s`` on one without (docs/design.md
§3.6). The per-layer overhead is not charged to residual adds or to pools (rows form). A device with
:class:`LayerTimes` (from a profile written by ``dsim profile``) takes a measured task's median time, and
for a task shape not in the table the profile's fit of its op kind (``units * s_per_unit + overhead_s``).
A device with :class:`RuntimeTimes` (a scenario's top-level runtime ``profile:``) takes the CPU seconds its
task needs, and :class:`MessageCpu` the CPU seconds of each message it sends and receives.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sim.workload.runtime import ANY_OP, CostLine, SoloCurve, WakeCurve

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

    def lookup(self, layer: str, op: str, flops: float, bytes_touched: int, kind: str = "") -> tuple[float, str] | None:
        """``(seconds, "table")`` for a measured shape, ``(seconds, "fit")`` for a fitted op kind, else None."""
        measured = self.seconds.get(task_shape(layer, op, flops, bytes_touched))
        if measured is not None:
            return measured, "table"
        if op in self.fit:
            per_unit, overhead = self.fit[op]
            return fit_units(op, flops, bytes_touched) * per_unit + overhead, "fit"
        return None


def layer_scale(curve: SoloCurve | None, units: float) -> float:
    """What a layer's measured cost scales with at ``units`` (FLOPs, bytes touched for adds): its solo curve
    there (seconds alone), else ``units`` themselves."""
    return units if curve is None else curve.seconds_at(units)


@dataclass(frozen=True)
class LayerLine:
    """A measured layer's CPU seconds in another shape: ``fixed_s + per_scale * scale``, ``scale`` being
    :func:`layer_scale` of the task (its solo seconds along the layer's curve, else its units).

    >>> LayerLine(2e-4, 2.0).seconds(1e-3)   # 0.2 ms fixed, twice the 1 ms it takes alone
    0.0022
    """

    fixed_s: float
    per_scale: float

    def seconds(self, scale: float) -> float:
        """The line at ``scale``, in seconds."""
        return self.fixed_s + self.per_scale * scale


@dataclass(frozen=True)
class RuntimeTimes:
    """CPU seconds of tasks from a runtime profile (:mod:`sim.workload.runtime`): a measured shape's median;
    else, for a layer measured in another shape (another split of it), its :class:`LayerLine` (``layers``)
    at :func:`layer_scale` of the task: along the layer's solo curve (``curves``) or, without one, per unit
    (FLOPs, bytes touched for element-wise ops); else the first of ``fits`` (the device's, then the pooled
    ones) that has the task's op kind, its op or ``*``. A layer's partial-sum and rows tasks share its key:
    they are scaled the same way.

    >>> times = RuntimeTimes({}, ({"conv/k9/g1": CostLine(1e-9, 0.0, 0.001)}, {"*": CostLine(2e-9, 0.0, 0.0)}),
    ...                      {("c2", "conv"): LayerLine(0.0, 3e-9)})
    >>> times.lookup("c1", "conv", 1e6, 0, "conv/k9/g1"), times.lookup("fc", "linear", 1e6, 0, "linear")
    ((0.002, 'fit'), (0.002, 'fit'))
    >>> times.lookup("c2", "conv", 2e6, 0, "conv/k9/g1")   # c2 was measured at another size: per FLOP
    (0.006, 'scaled')
    >>> curve = SoloCurve("c2", "conv", (1e6, 2e6), (0.001, 0.0015))   # alone: twice the FLOPs, 1.5 x the time
    >>> along = RuntimeTimes({}, (), {("c2", "conv"): LayerLine(0.0005, 2.0)}, {("c2", "conv"): curve})
    >>> round(along.lookup("c2", "conv", 2e6, 0)[0], 9)   # 0.5 ms + 2 x 1.5 ms
    0.0035
    """

    seconds: Mapping[TaskShape, float] = field(default_factory=dict)
    fits: Sequence[Mapping[str, CostLine]] = ()
    layers: Mapping[tuple[str, str], LayerLine] = field(default_factory=dict)  # (layer, op) -> its line
    curves: Mapping[tuple[str, str], SoloCurve] = field(default_factory=dict)  # (layer, op) -> its solo curve

    def lookup(self, layer: str, op: str, flops: float, bytes_touched: int, kind: str = "") -> tuple[float, str] | None:
        """``(seconds, "table")`` for a measured shape, ``(seconds, "scaled")`` for a layer measured in another
        shape, ``(seconds, "fit")`` for a fitted one, else None."""
        measured = self.seconds.get(task_shape(layer, op, flops, bytes_touched))
        if measured is not None:
            return measured, "table"
        measured_layer = self.layers.get((layer, op))
        units = fit_units(op, flops, bytes_touched)
        if measured_layer is not None and units > 0:
            return measured_layer.seconds(layer_scale(self.curves.get((layer, op)), units)), "scaled"
        for fits in self.fits:
            for key in (kind or op, op, ANY_OP):
                line = fits.get(key)
                if line is not None:
                    return line.seconds(flops, bytes_touched), "fit"
        return None


@dataclass(frozen=True)
class MessageCpu:
    """CPU seconds one message costs its sender and its receiver, and the delay of its arrival beyond the
    wire (``transit``: no CPU), per wire format (a runtime profile's ``send``, ``recv`` and ``transit``); a
    format the profile has not seen takes ``dense``'s line, else the first one.

    >>> cpu = MessageCpu({"dense": CostLine(0.0, 1e-9, 1e-5)}, {"dense": CostLine(0.0, 2e-9, 2e-5)})
    >>> cpu.send_s("dense", 10_000), cpu.recv_s("csr", 10_000), cpu.transit_s("dense", 10_000)
    (2e-05, 4e-05, 0.0)
    """

    send: Mapping[str, CostLine] = field(default_factory=dict)
    recv: Mapping[str, CostLine] = field(default_factory=dict)
    transit: Mapping[str, CostLine] = field(default_factory=dict)

    @staticmethod
    def _seconds(lines: Mapping[str, CostLine], fmt: str, nbytes: int, wire_s: float = 0.0) -> float:
        """``lines``' line for format ``fmt`` (else ``dense``'s, else the first) at ``nbytes`` bytes and
        ``wire_s`` seconds on the wire; 0 without one."""
        line = lines.get(fmt) or lines.get("dense") or next(iter(lines.values()), None)
        return 0.0 if line is None else line.seconds(0.0, nbytes, wire_s)

    def send_s(self, fmt: str, nbytes: int) -> float:
        """Seconds the sender spends on a message of ``nbytes`` bytes in format ``fmt``."""
        return self._seconds(self.send, fmt, nbytes)

    def recv_s(self, fmt: str, nbytes: int) -> float:
        """Seconds the receiver spends on a message of ``nbytes`` bytes in format ``fmt``."""
        return self._seconds(self.recv, fmt, nbytes)

    def transit_s(self, fmt: str, nbytes: int, wire_s: float = 0.0) -> float:
        """Seconds a message of ``nbytes`` bytes in format ``fmt``, ``wire_s`` seconds on the wire, arrives
        after its last byte left the wire."""
        return self._seconds(self.transit, fmt, nbytes, wire_s)


@dataclass(frozen=True)
class DeviceRate:
    """How fast a device computes, and what each message costs its software.

    ``flops_per_s`` is the compute peak (FLOP/s), ``overhead_s`` a fixed time per conv/linear layer (s),
    ``mem_bandwidth_Bps`` the memory bandwidth (bytes/s) or ``None`` for compute-only timing. ``times`` is
    a measured table that takes precedence over the roofline. ``send_overhead_s`` and ``recv_overhead_s``
    are the software cost of sending and of receiving one message (s), spent on the device; ``message_cpu``
    adds a runtime profile's per-message costs, which grow with the message's bytes; ``wake`` its extra CPU
    seconds of a task after the device idled (:meth:`wake_s`).

    >>> DeviceRate(1e9, wake=WakeCurve((0.1,), (5e-4,))).wake_s(0.05)   # half of 0.5 ms after 50 ms idle
    0.00025
    """

    flops_per_s: float
    overhead_s: float = 0.0
    mem_bandwidth_Bps: float | None = None
    times: LayerTimes | RuntimeTimes | None = None
    send_overhead_s: float = 0.0
    recv_overhead_s: float = 0.0
    message_cpu: MessageCpu | None = None
    wake: WakeCurve | None = None

    def wake_s(self, idle_s: float) -> float:
        """Extra seconds of a task that starts after the device idled ``idle_s`` seconds since its previous
        task ended (``inf``: its first task); 0 without a ``wake`` curve."""
        return 0.0 if self.wake is None else self.wake.extra_at(idle_s)

    @property
    def pays_messages(self) -> bool:
        """Whether a message costs this device any software time."""
        return self.send_overhead_s > 0 or self.recv_overhead_s > 0 or self.message_cpu is not None

    def send_s(self, fmt: str, nbytes: int) -> float:
        """Seconds this device spends sending one message of ``nbytes`` bytes in format ``fmt``."""
        extra = 0.0 if self.message_cpu is None else self.message_cpu.send_s(fmt, nbytes)
        return self.send_overhead_s + extra

    def recv_s(self, fmt: str, nbytes: int) -> float:
        """Seconds this device spends receiving one message of ``nbytes`` bytes in format ``fmt``."""
        extra = 0.0 if self.message_cpu is None else self.message_cpu.recv_s(fmt, nbytes)
        return self.recv_overhead_s + extra

    def transit_s(self, fmt: str, nbytes: int, wire_s: float = 0.0) -> float:
        """Seconds a message of ``nbytes`` bytes in format ``fmt`` to this device, ``wire_s`` seconds on the
        wire, arrives after its wire time (a runtime profile's ``transit``; no CPU of this device's)."""
        return 0.0 if self.message_cpu is None else self.message_cpu.transit_s(fmt, nbytes, wire_s)

    def task_s(self, flops: float, bytes_touched: float, op: str, layer: str = "", kind: str = "") -> float:
        """Seconds to run a task: measured or fitted (``times``), else the roofline time plus the overhead
        (none for the element-wise ``add`` and ``pool``)."""
        if self.times is not None:
            found = self.times.lookup(layer, op, flops, int(bytes_touched), kind)
            if found is not None:
                return found[0]
        busy = flops / self.flops_per_s
        if self.mem_bandwidth_Bps is not None:
            busy = max(busy, bytes_touched / self.mem_bandwidth_Bps)
        return busy + (0.0 if op in ELEMENTWISE_OPS else self.overhead_s)

    def time_source(self, flops: float, bytes_touched: float, op: str, layer: str, kind: str = "") -> str:
        """Where :meth:`task_s` takes a task's time from: ``table``, ``scaled``, ``fit`` or ``rate``."""
        found = None if self.times is None else self.times.lookup(layer, op, flops, int(bytes_touched), kind)
        return "rate" if found is None else found[1]


@dataclass(frozen=True)
class Host:
    """A machine that several devices share: their compute (and message software) runs on its ``cores``.

    ``sharing`` is ``fifo`` (a job waits for a free core, then runs at full speed) or ``processor`` (every
    job runs at once, each at ``min(1, cores / jobs)`` of a core, as an operating system time-slices
    processes: two processes on one core each take twice as long).
    """

    name: str
    cores: int
    sharing: str = "fifo"
