"""Dask scale-out of sweep points: points per second on a ``dask.distributed.LocalCluster`` of 1 and 2
workers against this process and the process pool, and what a Dask point costs beyond its engine run.

The sweep is :mod:`bench_sweep`'s: ResNet-18 on 8 devices, bandwidth x link latency x speed of device d1
x wire format, its 4 workloads built once before the timing. By default a coarse grid of that sweep
(5 x 5 x 4 x 4 = 400 points) keeps the run near two minutes; ``--full`` runs its 10,000 points
(25 x 25 x 4 x 4). Only the point phase is timed (the workloads are built), the way ``dsim sweep`` runs
it: in this process (``--jobs 1``), on a pool of 2 processes (``--jobs 2``), and with ``--scheduler`` on
a LocalCluster of 1 and of 2 single-threaded worker processes, the workloads scattered to its workers
first (:func:`sim.study.sweep.iter_points_dask`; the cluster's start-up is timed apart).

Beside points per second, the two costs that decide how Dask scales over machines:

* **scatter**: the bytes of the scattered workloads (pickled) and the seconds of one broadcast
  ``client.scatter`` to every worker;
* **per-task overhead**: seconds per no-op task submitted and gathered the way the sweep does it (submit
  them all, collect with ``as_completed``), and the Dask point's extra seconds over an in-process point.

Each figure is the median and range of :data:`timing.REPEATS` runs, wall time, with the load average:
publish only figures from a quiet machine
(``../shared/tools/quiet-run -- .venv/bin/python bench/run.py bench_dask``; docs/performance.md says how
they extrapolate to N machines). Run: ``.venv/bin/python bench/run.py bench_dask`` (``--full``: 10,000
points).
"""

from __future__ import annotations

import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from bench_sweep import SCENARIO
from timing import REPEATS, loadavg, spread

from sim.config.overrides import sweep_points
from sim.config.schema import Scenario
from sim.pipeline.cache import build
from sim.pipeline.evaluate import BuiltWorkload, workload_key
from sim.study.sweep import PointJob, _init_worker, _simulate, _start_worker, iter_points_dask, map_items

FORMATS = ["dense", "csr", "coo", "auto"]
SPEEDS_GFLOPS = [1, 3, 10, 30]
NOOP_TASKS = 500  # no-op tasks per measurement of the per-task overhead


def grid(steps: int) -> dict[str, list[Any]]:
    """``bench_sweep``'s axes with ``steps`` bandwidths and ``steps`` latencies (25: its 10,000 points)."""
    return {
        "network.bandwidth_mbps": [float(b) for b in np.geomspace(0.1, 1000, steps)],
        "network.latency_ms": [float(t) for t in np.geomspace(0.1, 100, steps)],
        "devices.1.gflops": SPEEDS_GFLOPS,
        "transfer.format": FORMATS,
    }


def noop(i: int) -> int:
    """A task that does nothing: what remains of its time is Dask's."""
    return i


def timed(run: Callable[..., object], *args: Any) -> float:
    """Wall seconds of ``run(*args)``."""
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def pool_points(points: Sequence[PointJob], workloads: dict[str, BuiltWorkload], jobs: int) -> None:
    """The point phase of ``dsim sweep --jobs JOBS`` (:func:`sim.study.sweep.iter_points`)."""
    _init_worker(workloads)
    try:
        rows = list(map_items(_simulate, list(points), jobs, _start_worker, (workloads,), "point", "point", False))
    finally:
        _init_worker({})
    assert len(rows) == len(points) and not any("error" in row for _, row in rows)


def dask_points(points: Sequence[PointJob], workloads: dict[str, BuiltWorkload], address: str, workers: int) -> None:
    """The point phase of ``dsim sweep --scheduler ADDRESS``: connect, scatter the workloads, run the points."""
    rows = list(iter_points_dask(points, workloads, address, workers, progress=False))
    assert len(rows) == len(points) and not any("error" in row for _, row in rows)


def cluster_costs(address: str, workloads: dict[str, BuiltWorkload]) -> tuple[list[float], list[float]]:
    """Seconds of each broadcast scatter of the workloads, and seconds per no-op task (REPEATS each)."""
    from dask.distributed import Client, as_completed  # dask: only this benchmark and --scheduler need it

    scatter_s, task_s = [], []
    with Client(address) as client:
        for _ in range(REPEATS):
            start = time.perf_counter()
            futures = client.scatter(list(workloads.values()), broadcast=True, hash=False)
            scatter_s.append(time.perf_counter() - start)
            client.cancel(futures)
            start = time.perf_counter()
            for future in as_completed([client.submit(noop, i, pure=False) for i in range(NOOP_TASKS)]):
                future.result()
            task_s.append((time.perf_counter() - start) / NOOP_TASKS)
    return scatter_s, task_s


def main() -> None:
    """Print points per second in this process, on the pool and on LocalClusters of 1 and 2 workers, then
    the scatter cost and the per-task overhead."""
    from dask.distributed import LocalCluster  # dask: only this benchmark and --scheduler need it

    steps = 25 if "--full" in sys.argv else 5
    todo = [sc for _, sc in sweep_points(SCENARIO, grid(steps))]
    assert all(isinstance(sc, Scenario) for sc in todo)
    scenarios: list[Scenario] = [sc for sc in todo if isinstance(sc, Scenario)]
    keys = [workload_key(sc) for sc in scenarios]
    workloads = {key: build(sc).built for key, sc in dict(zip(keys, scenarios)).items()}
    points = [PointJob(i, sc, key, None) for i, (sc, key) in enumerate(zip(scenarios, keys))]
    pickled = sum(len(pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL)) for w in workloads.values())
    n = len(points)
    print(
        f"ResNet-18, 8 devices: {n} points ({steps} bandwidths x {steps} latencies x 4 speeds x 4 formats), "
        f"{len(workloads)} workloads of {pickled:,} pickled bytes in all; {os.cpu_count()} cores; {loadavg()}"
    )
    per_point: dict[str, list[float]] = {}
    for jobs, name in ((1, "in this process (--jobs 1)"), (2, "process pool (--jobs 2)")):
        per_point[name] = [timed(pool_points, points, workloads, jobs) / n for _ in range(REPEATS)]
        print(f"{name:<34} points/s {spread([1 / s for s in per_point[name]], '.1f')}; {loadavg()}")
    costs = {}
    for workers in (1, 2):
        start = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            started_s = time.perf_counter() - start
            address = cluster.scheduler_address
            name = f"Dask LocalCluster, {workers} worker{'s' if workers > 1 else ''}"
            per_point[name] = [timed(dask_points, points, workloads, address, workers) / n for _ in range(REPEATS)]
            print(f"{name:<34} points/s {spread([1 / s for s in per_point[name]], '.1f')}; {loadavg()}")
            costs[workers] = (started_s, *cluster_costs(address, workloads))
    for workers, (started_s, scatter_s, task_s) in costs.items():
        print(
            f"{workers} worker(s): cluster start {started_s:.2f} s; broadcast scatter of {pickled:,} B s "
            f"{spread(scatter_s, '.3f')}; no-op task s {spread(task_s, '.5f')}; {loadavg()}"
        )
    alone = statistics.median(per_point["in this process (--jobs 1)"])
    on_dask = statistics.median(per_point["Dask LocalCluster, 1 worker"])
    print(
        f"a point (median): {alone * 1e3:.2f} ms in this process, {on_dask * 1e3:.2f} ms on a 1-worker Dask "
        f"cluster: {(on_dask - alone) * 1e3:+.2f} ms per point on Dask"
    )


if __name__ == "__main__":
    main()
