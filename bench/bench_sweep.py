"""Cost of a sweep point: a 200-point bandwidth sweep of ResNet-18 on 8 devices against one ``run``, and the
whole ``dsim sweep`` command of 10,000 points (figures and terminal report included).

The figure to watch first is the sweep's wall time divided by one run's: the workload (trace, activations,
message sizes) is built once, so each extra point costs only an engine run and its summary numbers (no
tables). The large case is the command a user waits for (target: under 60 s on 2 idle cores): 25
bandwidths x 25 link latencies x 4 speeds of device d1 x 4 formats, 400 lines over bandwidth, no baseline,
so the crossovers between lines and the capped figure are part of it; its 4 workloads come from the build
cache (built once before the timing). Each measurement is repeated (:data:`timing.REPEATS`, or
``--repeats N`` for the large case) and printed as median and range, with the load average: publish only
figures taken on a quiet machine (``../shared/tools/quiet-run -- .venv/bin/python bench/bench_sweep.py``).
Run: ``.venv/bin/python bench/bench_sweep.py`` (``--small`` skips the 10,000-point case).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from timing import REPEATS, loadavg, spread

import sim

ROOT = Path(__file__).resolve().parents[1]
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
LARGE_GRID = [  # dsim sweep options: 25 x 25 x 4 x 4 = 10,000 points
    "--logspace=network.bandwidth_mbps=0.1:1000:25",
    "--logspace=network.latency_ms=0.1:100:25",
    "--set=devices.1.gflops=1,3,10,30",
    "--set=transfer.format=dense,csr,coo,auto",
]


def main() -> None:
    """Print the wall times of one run and of the 200-point sweep, their ratio and the points per second;
    then the 10,000-point command's wall time."""
    sim.run(SCENARIO)  # warm-up: imports, dataset cache
    bandwidths = [float(b) for b in np.geomspace(0.1, 1000, POINTS)]
    one_run_s, sweep_s = [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        sim.run(SCENARIO)
        one_run_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        table = sim.sweep(SCENARIO, {"network.bandwidth_mbps": bandwidths}, progress=False)
        sweep_s.append(time.perf_counter() - start)
        assert len(table) == POINTS and (table["error"] == "").all()
    ratios = [s / r for s, r in zip(sweep_s, one_run_s)]
    print(
        f"ResNet-18, 8 devices, {int(table['messages'].iloc[0])} messages per frame; {os.cpu_count()} cores; {loadavg()}"
    )
    print(f"one run (build + engine)      s {spread(one_run_s, '.3f')}")
    print(f"{POINTS}-point bandwidth sweep     s {spread(sweep_s, '.3f')}")
    print(f"sweep / one run                 {spread(ratios, '.2f')}  (200 separate runs would be ~{POINTS})")
    print(f"points per second               {spread([POINTS / s for s in sweep_s], '.1f')}")
    if "--small" not in sys.argv:
        repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else REPEATS
        large_sweep(repeats)


def large_sweep(repeats: int) -> None:
    """Print the wall time of ``dsim sweep`` over the 10,000 points of :data:`LARGE_GRID`, figures included."""
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "bench.yaml"
        scenario.write_text(yaml.safe_dump(SCENARIO))
        command = [sys.executable, "-m", "sim", "sweep", str(scenario), *LARGE_GRID, "--out", str(Path(tmp) / "out")]
        one_point = [*command[:5], "--set=network.bandwidth_mbps=1", "--out", str(Path(tmp) / "warm")]
        subprocess.run(one_point, cwd=ROOT, check=True, capture_output=True)  # builds the 4 workloads into the cache
        for fmt in ("csr", "coo", "auto"):
            subprocess.run([*one_point, f"--set=transfer.format={fmt}"], cwd=ROOT, check=True, capture_output=True)
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
        assert (Path(tmp) / "out" / "latency_vs_bandwidth.png").is_file()
    print(f"dsim sweep, 10,000 points (bandwidth x latency x speed x format), figures included; {loadavg()}")
    print(f"wall s {spread(walls, '.1f')}; points per second {10_000 / min(walls):.1f} at best")


if __name__ == "__main__":
    main()
