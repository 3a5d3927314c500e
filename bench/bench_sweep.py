"""Cost of a sweep point: a 200-point bandwidth sweep of ResNet-18 on 8 devices against one ``run``, and a
10,000-point sweep (50 bandwidths x 50 speeds of device d1 x 4 formats) of the same scenario.

The figure to watch is the sweep's wall time divided by one run's: the workload (trace, activations,
message sizes) is built once, so each extra point costs only an engine run. The large sweep (target:
< 60 s on 2 cores) builds its 4 workloads once and runs 10,000 engine points on all cores.
Run: ``.venv/bin/python bench/bench_sweep.py`` (``--small`` skips the 10,000-point case).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import sim

POINTS = 200
SCENARIO = {
    "name": "bench-resnet18-8dev",
    "seed": 0,
    "model": {"name": "resnet18", "input_shape": [3, 32, 32]},
    "inputs": {"dataset": "digits", "batch_size": 1, "frames": 1},
    "devices": [{"name": f"d{i}", "gflops": 10.0} for i in range(8)],
    "network": {"topology": "mesh", "bandwidth_mbps": 100, "latency_ms": 1.0},
    "source": "d0",
    "sink": "d0",
}


def main() -> None:
    """Print the wall time of one run, of the sweep, their ratio and the sweep's points per second."""
    sim.run(SCENARIO)  # warm-up: imports, dataset cache
    start = time.perf_counter()
    sim.run(SCENARIO)
    one_run_s = time.perf_counter() - start
    bandwidths = [float(b) for b in np.geomspace(0.1, 1000, POINTS)]
    start = time.perf_counter()
    table = sim.sweep(SCENARIO, {"network.bandwidth_mbps": bandwidths}, progress=False)
    sweep_s = time.perf_counter() - start
    assert len(table) == POINTS and (table["error"] == "").all()
    print(f"ResNet-18, 8 devices, {int(table['messages'].iloc[0])} messages per frame; {os.cpu_count()} cores")
    print(f"one run (build + engine)      {one_run_s:8.3f} s")
    print(f"{POINTS}-point bandwidth sweep     {sweep_s:8.3f} s")
    print(f"sweep / one run               {sweep_s / one_run_s:8.2f}  (200 separate runs would be ~{POINTS})")
    print(f"points per second             {POINTS / sweep_s:8.1f}")
    if "--small" not in sys.argv:
        large_sweep()


def large_sweep() -> None:
    """Print the wall time and points per second of the 10,000-point sweep."""
    grid = {
        "network.bandwidth_mbps": [float(b) for b in np.geomspace(0.1, 1000, 50)],
        "devices.1.gflops": [float(g) for g in np.geomspace(1, 100, 50)],
        "transfer.format": ["dense", "csr", "coo", "auto"],
    }
    start = time.perf_counter()
    table = sim.sweep(SCENARIO, grid, progress=False)
    large_s = time.perf_counter() - start
    assert len(table) == 10_000 and (table["error"] == "").all()
    print(f"10,000-point sweep (bandwidth x device speed x format), {os.cpu_count()} cores: {large_s:8.1f} s")
    print(f"points per second             {len(table) / large_s:8.1f}")


if __name__ == "__main__":
    main()
