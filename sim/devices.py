"""Device models: how long a task takes on a device (a roofline), board presets, and calibration.

A task of ``flops`` FLOPs that reads and writes ``bytes_touched`` bytes takes::

    max(flops / flops_per_s, bytes_touched / mem_bandwidth_Bps) + overhead_s

on a device with a memory bandwidth, and ``flops / flops_per_s + overhead_s`` on one without (DESIGN
section 3, "Compute"). The per-layer overhead is not charged to residual adds.

Presets are peak figures of real boards (FP32 arithmetic, DRAM bandwidth), each with its source. Peak
rates are upper bounds: real conv kernels reach a fraction of them, so a scenario can override any field
(``{preset: rpi4, gflops: 4}``) or measure this machine with ``calibrate: true``.

This module does not import torch at load time (:func:`calibrated_flops_per_s` imports it when called).

Example::

    >>> rate = DeviceRate(flops_per_s=1e9, overhead_s=0.001, mem_bandwidth_Bps=1e9)
    >>> rate.task_s(2e6, 4e6, "conv")   # memory-bound: 4 MB at 1 GB/s, plus 1 ms
    0.005
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

# Board presets: fields of a scenario device (gflops = 1e9 FP32 FLOP/s, mem_bandwidth_gbps = 1e9 bytes/s).
PRESETS: dict[str, dict[str, Any]] = {
    # Raspberry Pi 4 Model B (BCM2711, 4x Cortex-A72 at 1.5 GHz, CPU only).
    # gflops: High Performance Linpack measured ~8 GFLOPS on a Pi 4 under the 64-bit Raspberry Pi OS
    #   (B. Feiereisen, "Benchmarking the Raspberry Pi 4 with Raspberry Pi OS64", 2022,
    #   https://feiereisen.net/?page_id=924).
    # mem_bandwidth_gbps: LPDDR4-3200 on a 32-bit bus = 3200e6 transfers/s * 4 bytes = 12.8 GB/s
    #   (Raspberry Pi 4 Model B product brief, raspberrypi.com: "LPDDR4-3200 SDRAM").
    "rpi4": {"gflops": 8.0, "mem_bandwidth_gbps": 12.8},
    # NVIDIA Jetson Nano (128 Maxwell CUDA cores at 921.6 MHz).
    # gflops: NVIDIA quotes 472 GFLOPS FP16 (Jetson Nano Developer Kit page, developer.nvidia.com);
    #   FP32 is half of that: 128 cores * 921.6e6 Hz * 2 FLOP per FMA = 235.9 GFLOPS.
    # mem_bandwidth_gbps: 4 GB 64-bit LPDDR4 at 1600 MHz = 25.6 GB/s (Jetson Nano module data sheet).
    "jetson-nano": {"gflops": 235.9, "mem_bandwidth_gbps": 25.6},
    # Phone-class SoC: Qualcomm Snapdragon 855 (Adreno 640 GPU), e.g. 2019 flagship phones.
    # gflops: Adreno 640, 384 ALUs at 585 MHz = 899 GFLOPS FP32
    #   (nanoreview.net, "Snapdragon 855 vs Snapdragon 765G", specifications table).
    # mem_bandwidth_gbps: LPDDR4X at 2133 MHz on 4x16-bit channels = 34.1 GB/s (same source).
    "phone": {"gflops": 899.0, "mem_bandwidth_gbps": 34.1},
}


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


def apply_preset(fields: dict[str, Any]) -> dict[str, Any]:
    """A scenario device's fields with its ``preset`` figures filled in under the fields it gives itself.

    An unknown preset is left for the schema to refuse. ``gflops`` is not filled when ``calibrate`` is set.
    """
    preset = PRESETS.get(fields.get("preset"))  # type: ignore[arg-type]
    if preset is None:
        return fields
    merged = {k: v for k, v in preset.items() if not (k == "gflops" and fields.get("calibrate"))}
    merged.update(fields)
    return merged


@cache
def calibrated_flops_per_s(channels: int = 64, size: int = 32, min_seconds: float = 0.5) -> float:
    """This machine's measured float32 conv throughput with torch, in FLOP/s (measured once per process).

    Times a 3x3 conv of ``channels`` to ``channels`` on a ``size`` x ``size`` image (batch 1, no grad) for
    at least ``min_seconds`` after a warm-up, and divides its FLOPs (DESIGN formula) by the mean time.
    """
    import torch

    with torch.random.fork_rng(devices=[]):  # the weights' random init must not move the global RNG
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
    x = torch.zeros(1, channels, size, size)
    flops = 2 * channels * channels * 9 * size * size
    with torch.no_grad():
        conv(x)
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_seconds:
            conv(x)
            calls += 1
    return flops * calls / elapsed
