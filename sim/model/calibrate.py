"""Measuring this machine: the float32 conv rate torch reaches here (``calibrate: true`` devices).

Not reproducible across machines, by nature.
"""

from __future__ import annotations

import time
from functools import cache

import torch


@cache
def calibrated_flops_per_s(channels: int = 64, size: int = 32, min_seconds: float = 0.5) -> float:
    """This machine's measured float32 conv throughput with torch, in FLOP/s (measured once per process).

    Times a 3x3 conv of ``channels`` to ``channels`` on a ``size`` x ``size`` image (batch 1, no grad) for
    at least ``min_seconds`` after a warm-up, and divides its FLOPs (DESIGN formula) by the mean time.
    """
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
