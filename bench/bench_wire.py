"""Encode and decode throughput of each wire format on a 64x56x56 ReLU-like activation.

Throughput is in MB/s of the dense float32 input (1 MB = 1e6 bytes), for float32 values and 32-bit indices.
Run: ``.venv/bin/python bench/bench_wire.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sim.workload import wire

SHAPE = (64, 56 * 56)  # 64 channels of 56x56, as the wire's rows x cols
DENSITIES = (0.1, 0.5, 0.9)
MIN_SECONDS = 0.2  # time each measurement for at least this long


def activation(rng: np.random.Generator, density: float) -> np.ndarray:
    """Random normal values with a fraction ``1 - density`` zeroed, as float32."""
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    x[rng.random(SHAPE) >= density] = 0.0
    return x


def seconds_per_call(fn: Callable[[], object]) -> float:
    """Mean wall time of ``fn()`` in seconds, repeated for at least :data:`MIN_SECONDS` after a warm-up call."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < MIN_SECONDS:
        fn()
        calls += 1
    return elapsed / calls


def main() -> None:
    """Print format, density, encoded bytes, and encode/decode throughput in MB/s."""
    rng = np.random.default_rng(0)
    spec = wire.WireSpec("float32", 32)
    megabytes = SHAPE[0] * SHAPE[1] * 4 / 1e6
    print(f"{SHAPE[0]}x{SHAPE[1]} float32 ({megabytes:.3f} MB dense), float32 values, 32-bit indices")
    print(f"{'format':<8} {'density':>7} {'bytes':>9} {'encode MB/s':>12} {'decode MB/s':>12}")
    matrices = {d: activation(rng, d) for d in DENSITIES}
    for fmt in wire.FORMATS:
        for density, x in matrices.items():
            buf = wire.encode(x, fmt, spec)
            encode_s = seconds_per_call(lambda x=x, fmt=fmt: wire.encode(x, fmt, spec))
            decode_s = seconds_per_call(lambda buf=buf, fmt=fmt: wire.decode(buf, fmt, SHAPE, spec))
            rates = f"{megabytes / encode_s:>12.0f} {megabytes / decode_s:>12.0f}"
            print(f"{fmt:<8} {density:>7.1f} {len(buf):>9} {rates}")


if __name__ == "__main__":
    main()
