"""Compute profiles: measured time of every layer shard on each device, as ``dsim profile`` writes them.

A profile file is JSON (``format: dsim-profile``, ``version: 1``)::

    {"format": "dsim-profile", "version": 1,
     "scenario": "vgg11-4dev", "model": "vgg11", "batch_size": 1,
     "settings": {"warmup": 3, "repeats": 20, "idle_gap_ms": 0.0},
     "machine": {"torch": "2.13.0", "cpu_count": 2, "platform": "Linux-..."},
     "devices": [
       {"device": "cam", "threads": 1,
        "entries": [{"layer": "features.0", "op": "conv", "flops": 3538944.0, "bytes_touched": 81920,
                     "median_s": 0.00061, "p10_s": 0.00058, "p90_s": 0.00070, "repeats": 20}, ...],
        "fit": {"conv": {"s_per_unit": 4.1e-11, "overhead_s": 0.00052}, ...}}]}

``entries`` hold one row per task shape of the device (layer label, op, FLOPs and bytes touched of one
frame at the profiled batch size): the median, 10th and 90th percentile of ``repeats`` timings, in seconds.
``fit`` is, per op kind, the least-squares line ``seconds = units * s_per_unit + overhead_s`` through the
medians (units: FLOPs for conv and linear, bytes touched for add; both coefficients >= 0); a scenario uses it
for task shapes the table does not hold (another partition, batch size or model).

This module reads and writes the format (no torch); :mod:`sim.pipeline.profile` measures.

Example::

    >>> fit_line([1e6, 2e6, 3e6], [0.002, 0.003, 0.004])
    (1e-09, 0.001)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import UserError
from sim.fileio import read_limited, write_text

FORMAT = "dsim-profile"
VERSION = 1
MAX_PROFILE_BYTES = 64 * 2**20  # a profile of thousands of layer shards on hundreds of devices is far below this


@dataclass(frozen=True)
class ProfileEntry:
    """One measured task shape: seconds per frame (median and spread over ``repeats`` timings)."""

    layer: str
    op: str
    flops: float
    bytes_touched: int
    median_s: float
    p10_s: float
    p90_s: float
    repeats: int

    @property
    def units(self) -> float:
        """What the fit of its op scales with: FLOPs for conv/linear, bytes touched for add."""
        return float(self.bytes_touched) if self.op == "add" else float(self.flops)


@dataclass(frozen=True)
class OpFit:
    """``seconds = units * s_per_unit + overhead_s`` for one op kind."""

    s_per_unit: float
    overhead_s: float


@dataclass(frozen=True)
class DeviceProfile:
    """The measurements of one device and its per-op fits."""

    device: str
    threads: int
    entries: tuple[ProfileEntry, ...]
    fit: dict[str, OpFit] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileFile:
    """A whole profile file (module docstring)."""

    scenario: str
    model: str
    batch_size: int
    settings: dict[str, float]
    machine: dict[str, Any]
    devices: tuple[DeviceProfile, ...]

    def for_device(self, name: str, path: str | Path = "profile") -> DeviceProfile:
        """The profile of device ``name``; the only one when the file holds one device."""
        for d in self.devices:
            if d.device == name:
                return d
        if len(self.devices) == 1:
            return self.devices[0]
        have = ", ".join(d.device for d in self.devices)
        raise UserError(f"{path}: holds no device '{name}' (it has {have}); profile that device with dsim profile")


def fit_line(units: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(s_per_unit, overhead_s)`` of ``seconds = units * s_per_unit + overhead_s`` with both
    coefficients >= 0 (a negative one is set to 0 and the other refitted); one distinct x: through 0."""
    n = len(units)
    if n == 0:
        raise ValueError("no points to fit")
    mx, my = sum(units) / n, sum(seconds) / n
    sxx = sum((x - mx) ** 2 for x in units)
    if sxx > 0:
        slope = sum((x - mx) * (y - my) for x, y in zip(units, seconds)) / sxx
        intercept = my - slope * mx
        if slope >= 0 and intercept >= 0:
            return round(slope, 18), round(intercept, 12)
        if slope < 0:
            return 0.0, round(my, 12)
    xx = sum(x * x for x in units)
    if xx == 0:
        return 0.0, round(my, 12)
    return round(sum(x * y for x, y in zip(units, seconds)) / xx, 18), 0.0


def fit_ops(entries: Sequence[ProfileEntry]) -> dict[str, OpFit]:
    """Per op kind, the fit through the medians of ``entries`` (:func:`fit_line`)."""
    fits = {}
    for op in sorted({e.op for e in entries}):
        rows = [e for e in entries if e.op == op]
        fits[op] = OpFit(*fit_line([e.units for e in rows], [e.median_s for e in rows]))
    return fits


def write_profile(path: str | Path, profile: ProfileFile) -> None:
    """Write ``profile`` to ``path`` as JSON (atomically)."""
    data = {"format": FORMAT, "version": VERSION, **asdict(profile)}
    write_text(path, json.dumps(data, indent=1) + "\n")


def read_profile(path: str | Path) -> ProfileFile:
    """Read a profile file; a missing, unreadable or malformed file is a one-line :class:`UserError`."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"profile: no such file {p}; write one with `dsim profile SCENARIO --out {p}`")
    text = read_limited(p, MAX_PROFILE_BYTES, "profile")  # a regular UTF-8 file of bounded size (not /dev/zero)
    try:
        data = json.loads(text)
    except (RecursionError, json.JSONDecodeError) as exc:
        raise UserError(f"profile: {p} is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"profile: {p} is not a dsim profile (no 'format: {FORMAT}')")
    if data.get("version") != VERSION:
        raise UserError(f"profile: {p} has version {data.get('version')}; this dsim reads version {VERSION}")
    try:
        devices = tuple(
            DeviceProfile(
                str(d["device"]),
                int(d["threads"]),
                tuple(ProfileEntry(**e) for e in d["entries"]),
                {op: OpFit(**f) for op, f in d["fit"].items()},
            )
            for d in data["devices"]
        )
        return ProfileFile(
            str(data["scenario"]),
            str(data["model"]),
            int(data["batch_size"]),
            dict(data["settings"]),
            dict(data["machine"]),
            devices,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"profile: {p} is malformed ({type(exc).__name__}: {exc}); write it again") from None
