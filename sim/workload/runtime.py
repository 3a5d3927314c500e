"""Runtime profiles: what a real split run pays, measured under the run's own conditions (``dsim profile
--execute``), read back by a scenario's top-level ``profile: FILE``.

A runtime profile is JSON (``format: dsim-runtime-profile``, ``version: 5``)::

    {"format": "dsim-runtime-profile", "version": 5,
     "scenario": "validate-vgg11", "model": "vgg11", "batch_size": 1,
     "run": {"repeats": 3, "frames": 2, "network": "loopback (127.0.0.1), unshaped", "loadavg": [0.4, ...]},
     "sharing": {"processes": 4, "cores": 2},
     "devices": [
       {"device": "cam",
        "entries": [{"layer": "features.0", "op": "conv", "kind": "conv/k9/g1", "flops": 1769472.0,
                     "bytes_touched": 90112, "cpu_s": 0.00031, "wall_s": 0.00058, "samples": 6}, ...],
        "fits": {"conv/k9/g1": {"s_per_flop": 5e-11, "s_per_byte": 1e-10, "overhead_s": 1e-4, "points": 3},
                 "conv": {...}, "add": {...}}}],
     "pooled": {"conv/k9/g1": {...}, "conv": {...}, "*": {...}},
     "send": {"dense": {"s_per_flop": 0.0, "s_per_byte": 2e-10, "overhead_s": 3e-5, "points": 9}},
     "recv": {"dense": {...}},
     "transit": {"dense": {"s_per_flop": 0.0, "s_per_byte": 0.0, "overhead_s": 1e-4, "points": 9,
                           "s_per_wire_s": 0.03}},
     "solo": [{"layer": "features.11", "op": "conv", "units": [9.4e6, 1.9e7, 3.8e7, 7.5e7],
               "seconds": [1.4e-4, 2.3e-4, 3.3e-4, 5.4e-4]}, ...],
     "wake": {"gaps_s": [0.002, 0.01, 0.03, 0.1, 0.3], "extra_s": [2e-5, 9e-5, 2.6e-4, 5.7e-4, 7e-4]}}

* **Compute** (``devices[i].entries``): one row per task shape (layer, op kind, FLOPs and float32 bytes
  touched of one frame). ``wall_s`` is the median measured duration; ``cpu_s`` the median CPU time it
  needed: its thread's CPU time as the testbed measured it, else (a run without that column) the wall time
  with the time it shared a core taken off: ``processes`` device processes shared ``cores`` cores, so
  while ``n`` tasks ran at once on the host each got ``min(1, cores / n)`` of a core.
  ``fits`` are, per op kind (``conv/k<kh*kw>/g1``, ``conv/k<kh*kw>/dw`` for depthwise,
  ``conv/k<kh*kw>/grouped``, ``linear``, ``add``) and per op (``conv``, ``linear``, ``add``), the
  non-negative least-squares line ``cpu_s = flops * s_per_flop + bytes_touched * s_per_byte + overhead_s``
  through the entries' ``cpu_s``. ``pooled`` holds the same fits over every device's entries, plus ``*``
  over all of them: a device or layer the profile has not seen falls back to them.
* **Messages** (``send``, ``recv`` and ``transit``, per wire format), each as
  ``bytes * s_per_byte + overhead_s`` (``s_per_flop`` is 0): the CPU seconds a message costs its sender
  (encoding it, before its bytes go to the socket) and its receiver (reading, decoding, merging it), which
  the engine charges on their host's cores; and ``transit``, the seconds its measured transit took beyond
  the wire time the engine models and the two CPU times (the kernel's hand-off to the receiving socket):
  a delay of its arrival that holds no core. A profile taken over shaped links fits the transit as
  ``wire_s * s_per_wire_s + overhead_s`` instead (``s_per_byte`` 0), ``wire_s`` being the message's time
  on the wire at its route's slowest rate: what a link takes beyond the engine's model of it follows the
  rate. Version 2 files have no ``s_per_wire_s`` (read as 0: transit per byte); version 1 files have no
  ``transit``: their ``recv`` held it, and they are read that way (CPU on the receiver).
* **Sharing**: how many device processes shared how many cores in the profiled run.
* **Solo** (version 4): per layer and residual add, how its cost grows with its share: it (with the
  channel-wise ops that follow it) timed alone in one process, on one thread, at 1/8, 1/4, 1/2 and all of
  its channels (``units``: FLOPs, bytes touched for adds; ``seconds``: median, non-decreasing). A small
  share costs more than its FLOPs say (``features.11`` of VGG-11 above: 1/8 of the FLOPs takes a quarter
  of the time), so another split of a measured layer is scaled along this curve, not per FLOP; the shape of the curve is taken to hold at the run's thread count. Layers whose inputs are
  exchanged as partial sums, and rows splits, have none; older files have none (read as per unit).
* **Wake** (version 5): the CPU seconds a task takes beyond its cost back to back when its device idled
  before it (``extra_s`` after ``gaps_s`` seconds since the device's previous task ended; a device's first
  task takes the last): timed alone after the runs, some of a device's tasks each after an idle gap. On
  this project's machine a task after 100 ms of idling took about 0.6 ms more than back to back, whatever
  its size (docs/validation.md, "Compute after idling"). The engine adds it to a task from the time its
  device has idled before the task (:class:`WakeCurve`); the compute ``entries`` hold each task's CPU time
  with the wake-up of its measured idle gap taken off, so that the two add up again in a run like the
  profiled one. Older files have none (no extra time).

A task's CPU time is looked up in this order: the device's measured shape; the same layer measured in
another shape (another split of it), along the layer's solo curve: ``slope`` times the curve at the new
share plus the layer's fixed part, what its measured CPU seconds hold beyond ``slope`` times the curve at
the measured share (the device's own, else the median over the devices that ran it; at least 0).
``slope`` is the line through every entry with a curve, CPU seconds against the curve at the entry's share
(:func:`sim.engine.assemble.solo_slope`): in this project's runs a task took 1.6 to 2 times its solo time
plus 0.1 to 0.3 ms of the executor's own work, so scaling the whole measured time along the curve scaled
that fixed part too. Without a curve (or fewer than three distinct points for the line): the measured
CPU seconds per unit (FLOPs, bytes touched for element-wise ops). Then the device's fit of the op kind,
of the op, then the pooled fits of the kind, the op and ``*``. Layers differ more from each other than
one layer's shards do (ResNet-18's convs have about the same FLOPs and different costs), so a layer's
own measured cost predicts another split of it better than a fit across layers does. The engine charges
CPU time on the host's cores (``hosts[i].sharing``), so the same profile predicts another device count or
core count.

This module reads and writes the format (numpy, no torch); :mod:`sim.testbed.runtime_profile` measures.

Example::

    >>> line = fit_cost([(1e6, 0), (2e6, 0), (3e6, 0)], [0.002, 0.003, 0.004])
    >>> round(line.seconds(4e6, 0) * 1e3, 6)
    5.0
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from sim.errors import UserError
from sim.fileio import read_limited, write_text

FORMAT = "dsim-runtime-profile"
VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)  # 1: no "transit" (its "recv" held it); 2: no "s_per_wire_s"; 3: no "solo";
# 4: no "wake"
MAX_BYTES = 64 * 2**20  # thousands of task shapes on hundreds of devices stay far below this
ANY_OP = "*"


@dataclass(frozen=True)
class CostLine:
    """``seconds = flops * s_per_flop + nbytes * s_per_byte + wire_s * s_per_wire_s + overhead_s``, fitted
    through ``points`` points; ``wire_s`` is a message's time on the wire (a transit line of a profile
    taken over shaped links grows with it, not with the bytes: it follows the link's rate).

    >>> CostLine(0.0, 0.0, 1e-4, s_per_wire_s=0.03).seconds(0.0, 16_000, wire_s=0.0064)  # 16 KB at 20 Mbit/s
    0.000292
    """

    s_per_flop: float
    s_per_byte: float
    overhead_s: float
    points: int = 0
    s_per_wire_s: float = 0.0

    def seconds(self, flops: float, nbytes: float, wire_s: float = 0.0) -> float:
        """The line at ``flops`` FLOPs, ``nbytes`` bytes and ``wire_s`` seconds on the wire, in seconds."""
        return flops * self.s_per_flop + nbytes * self.s_per_byte + wire_s * self.s_per_wire_s + self.overhead_s


@dataclass(frozen=True)
class ComputeEntry:
    """One measured task shape of one device: median wall and CPU seconds over ``samples`` timings."""

    layer: str
    op: str
    kind: str
    flops: float
    bytes_touched: int
    cpu_s: float
    wall_s: float
    samples: int


@dataclass(frozen=True)
class DeviceCompute:
    """The measured task shapes of one device and its fits per op kind and per op."""

    device: str
    entries: tuple[ComputeEntry, ...]
    fits: dict[str, CostLine] = field(default_factory=dict)


@dataclass(frozen=True)
class SoloCurve:
    """One layer timed alone at several shares: ``seconds[i]`` (median) at ``units[i]`` (FLOPs, bytes touched
    for adds), units increasing.

    >>> curve = SoloCurve("c1", "conv", (1e6, 2e6, 4e6), (0.001, 0.0015, 0.0025))
    >>> [round(curve.seconds_at(u) * 1e3, 6) for u in (3e6, 8e6, 5e5)]   # ms: between, above, below
    [2.0, 4.5, 0.75]
    >>> steep = SoloCurve("c2", "conv", (1e6, 2e6), (0.001, 0.003))   # below: never under proportional
    >>> round(steep.seconds_at(5e5) * 1e3, 6)
    0.5
    """

    layer: str
    op: str
    units: tuple[float, ...]
    seconds: tuple[float, ...]

    def seconds_at(self, units: float) -> float:
        """The curve at ``units``, in seconds: linear between its points; above them along its last segment;
        below them along its first segment, but never less than the first point's seconds per unit times
        ``units`` (continuous, and positive for positive ``units``); with one point, proportional to it."""
        x, y = self.units, self.seconds
        if x[0] <= units <= x[-1]:
            return float(np.interp(units, x, y))
        near, other = (0, 1) if units < x[0] else (len(x) - 1, len(x) - 2)
        proportional = y[near] * units / x[near]
        if len(x) == 1:
            return proportional
        along = y[near] + (y[near] - y[other]) / (x[near] - x[other]) * (units - x[near])
        return max(along, proportional) if near == 0 else along


@dataclass(frozen=True)
class WakeCurve:
    """The CPU seconds a task takes beyond its back-to-back cost after its device idled: ``extra_s[i]`` after
    ``gaps_s[i]`` seconds (gaps increasing and positive, extras non-decreasing and non-negative).

    >>> wake = WakeCurve((0.01, 0.1), (1e-4, 5e-4))
    >>> [round(wake.extra_at(g) * 1e6, 3) for g in (0.0, 0.005, 0.055, 1.0, float("inf"))]   # microseconds
    [0.0, 50.0, 300.0, 500.0, 500.0]
    """

    gaps_s: tuple[float, ...]
    extra_s: tuple[float, ...]

    def extra_at(self, idle_s: float) -> float:
        """Extra seconds after ``idle_s`` seconds of idling (``inf``: a first task): linear between the
        points, from 0 at no idling, the last point's beyond the last gap."""
        if idle_s >= self.gaps_s[-1]:
            return self.extra_s[-1]
        return float(np.interp(max(0.0, idle_s), (0.0, *self.gaps_s), (0.0, *self.extra_s)))


@dataclass(frozen=True)
class Sharing:
    """How many device processes shared how many cores in the profiled run."""

    processes: int
    cores: int


@dataclass(frozen=True)
class RuntimeProfile:
    """A whole runtime profile (module docstring)."""

    scenario: str
    model: str
    batch_size: int
    run: dict[str, Any]
    sharing: Sharing
    devices: tuple[DeviceCompute, ...]
    pooled: dict[str, CostLine]
    send: dict[str, CostLine]  # wire format -> CPU seconds of the sender per message
    recv: dict[str, CostLine]  # wire format -> CPU seconds of the receiver per message
    transit: dict[str, CostLine] = field(default_factory=dict)  # wire format -> delay beyond the wire, s
    solo: tuple[SoloCurve, ...] = ()  # per layer, its cost alone at several shares
    wake: WakeCurve | None = None  # a task's extra CPU seconds after its device idled

    def device(self, name: str) -> DeviceCompute | None:
        """The compute of device ``name``, or None when the profile has not seen it."""
        return next((d for d in self.devices if d.device == name), None)


def op_kind(op: str, kernel_elems: int = 1, groups: int = 1, in_channels: int = 1) -> str:
    """The op kind a fit is keyed by: ``conv/k9/g1``, ``conv/k9/dw`` (depthwise), ``conv/k9/grouped``,
    else ``op`` itself (``linear``, ``add``).

    >>> op_kind("conv", 9, 1), op_kind("conv", 9, 32, 32), op_kind("linear")
    ('conv/k9/g1', 'conv/k9/dw', 'linear')
    """
    if op != "conv":
        return op
    shape = "g1" if groups == 1 else ("dw" if groups == in_channels else "grouped")
    return f"conv/k{kernel_elems}/{shape}"


def fit_cost(points: Sequence[tuple[float, float]], seconds: Sequence[float]) -> CostLine:
    """Non-negative least squares of ``seconds = flops * a + bytes * b + c`` through ``points`` (``(flops,
    bytes)`` pairs). A variable that is zero at every point is left out; the intercept only with more
    distinct points than variables (fewer: a line through the origin)."""
    x = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    y = np.asarray(seconds, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("no points to fit")
    used = [j for j in range(2) if np.any(x[:, j] != 0)]
    distinct = len({tuple(row) for row in x[:, used]})
    columns = [x[:, j] for j in used] + ([np.ones(len(y))] if distinct > len(used) or not used else [])
    a = np.column_stack(columns)
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(a / scale, y)
    coef = coef / scale
    out = [0.0, 0.0, 0.0]
    for j, c in zip([*used, 2][: len(columns)], coef):
        out[j] = float(c)
    return CostLine(out[0], out[1], out[2], len(y))


def fit_entries(entries: Sequence[ComputeEntry]) -> dict[str, CostLine]:
    """Per op kind and per op, the fit through the entries' CPU seconds (:func:`fit_cost`), keys sorted."""
    groups: dict[str, list[ComputeEntry]] = {}
    for e in entries:
        groups.setdefault(e.kind, []).append(e)
        if e.op != e.kind:
            groups.setdefault(e.op, []).append(e)
    return {
        key: fit_cost([(e.flops, e.bytes_touched) for e in rows], [e.cpu_s for e in rows])
        for key, rows in sorted(groups.items())
    }


def pooled_fits(devices: Sequence[DeviceCompute]) -> dict[str, CostLine]:
    """The fits over every device's entries, plus ``*`` over all of them."""
    entries = [e for d in devices for e in d.entries]
    fits = fit_entries(entries)
    if entries:
        fits[ANY_OP] = fit_cost([(e.flops, e.bytes_touched) for e in entries], [e.cpu_s for e in entries])
    return fits


def write_runtime_profile(path: str | Path, profile: RuntimeProfile) -> None:
    """Write ``profile`` to ``path`` as JSON (atomically)."""
    data = {"format": FORMAT, "version": VERSION, **asdict(profile)}
    write_text(path, json.dumps(data, indent=1) + "\n")


def is_runtime_profile(path: str | Path) -> bool:
    """Whether ``path`` is a runtime profile (rather than a per-device ``dsim-profile``)."""
    try:
        head = Path(path).read_text(encoding="utf-8", errors="replace")[:200]
    except OSError:
        return False
    return f'"format": "{FORMAT}"' in head


def _lines(data: Mapping[str, Any]) -> dict[str, CostLine]:
    return {str(k): CostLine(**v) for k, v in data.items()}


def read_runtime_profile(path: str | Path) -> RuntimeProfile:
    """Read a runtime profile; a missing, unreadable or malformed file is a one-line :class:`UserError`."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"profile: no such file {p}; write one with `dsim profile SCENARIO --execute --out {p}`")
    text = read_limited(p, MAX_BYTES, "profile")
    try:
        data = json.loads(text)
    except (RecursionError, json.JSONDecodeError) as exc:
        raise UserError(f"profile: {p} is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(
            f"profile: {p} is not a runtime profile (no 'format: {FORMAT}'); write one with dsim profile --execute"
        )
    if data.get("version") not in READABLE_VERSIONS:
        raise UserError(
            f"profile: {p} has version {data.get('version')}; this dsim reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        devices = tuple(
            DeviceCompute(str(d["device"]), tuple(ComputeEntry(**e) for e in d["entries"]), _lines(d["fits"]))
            for d in data["devices"]
        )
        profile = RuntimeProfile(
            str(data["scenario"]),
            str(data["model"]),
            int(data["batch_size"]),
            dict(data["run"]),
            Sharing(**data["sharing"]),
            devices,
            _lines(data["pooled"]),
            _lines(data["send"]),
            _lines(data["recv"]),
            _lines(data.get("transit", {})),
            tuple(_curve(c) for c in data.get("solo", [])),
            None if data.get("wake") is None else _wake(data["wake"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"profile: {p} is malformed ({type(exc).__name__}: {exc}); write it again") from None
    values = [x for line in _all_lines(profile) for x in asdict(line).values()]
    values += [x for d in devices for e in d.entries for x in (e.cpu_s, e.wall_s, e.flops)]
    values += [x for c in profile.solo for x in (*c.units, *c.seconds)]
    values += [] if profile.wake is None else [*profile.wake.gaps_s, *profile.wake.extra_s]
    if not all(np.isfinite(values)) or min(values, default=0.0) < 0:
        raise UserError(f"profile: {p} holds a negative or non-finite number; write it again")
    return profile


def _curve(data: Mapping[str, Any]) -> SoloCurve:
    curve = SoloCurve(
        str(data["layer"]), str(data["op"]), tuple(map(float, data["units"])), tuple(map(float, data["seconds"]))
    )
    if not curve.units or len(curve.units) != len(curve.seconds) or list(curve.units) != sorted(set(curve.units)):
        raise ValueError(f"solo curve of {curve.layer}: units must be increasing, one per seconds value")
    if list(curve.seconds) != sorted(curve.seconds):
        raise ValueError(f"solo curve of {curve.layer}: seconds must not decrease as units grow")
    if min(curve.units) <= 0 or min(curve.seconds) <= 0:
        raise ValueError(f"solo curve of {curve.layer}: units and seconds must be positive")
    return curve


def _wake(data: Mapping[str, Any]) -> WakeCurve:
    wake = WakeCurve(tuple(map(float, data["gaps_s"])), tuple(map(float, data["extra_s"])))
    if not wake.gaps_s or len(wake.gaps_s) != len(wake.extra_s) or list(wake.gaps_s) != sorted(set(wake.gaps_s)):
        raise ValueError("wake: gaps_s must be increasing, one per extra_s value")
    if min(wake.gaps_s) <= 0 or list(wake.extra_s) != sorted(wake.extra_s):
        raise ValueError("wake: gaps_s must be positive and extra_s must not decrease as gaps grow")
    return wake


def _all_lines(profile: RuntimeProfile) -> list[CostLine]:
    lines = [*profile.pooled.values(), *profile.send.values(), *profile.recv.values(), *profile.transit.values()]
    return lines + [line for d in profile.devices for line in d.fits.values()]
