"""Engine speed: simulated events per second on ResNet-18 over 8 devices on a star, 100 frames.

The ResNet-18 workload is built once for one frame (synthetic input, contiguous partition) and repeated
for 100 frames arriving every 5 ms (the engine only reads sizes, so repeating a frame's messages is the
same work for it as 100 distinct frames). Beside it: a bare SimPy loop doing the same number of
timeouts in the same run, and the ratio of the two rates (how much the engine's bookkeeping costs per
event). SimPy's event queue is a heap: the bare loop's holds one event, the engine's many (every message
in flight and every device waiting), and each push and pop costs a comparison per level. So a second
baseline runs as many bare processes at once as the engine has events pending on average (measured on one
run), with seeded random timeouts: the ratio against it is the engine's own bookkeeping per event, the
first ratio (the target's) includes the deeper heap. All are timed in CPU seconds of this process (``time.process_time``), :data:`REPEATS` times each,
alternating, and printed as median and range; the ratio is the median of the per-repeat ratios. The load
average is printed with the figures: publish them only from a quiet machine
(``../shared/tools/quiet-run -- .venv/bin/python bench/bench_engine.py``).

Beside the times, figures that do not depend on the load: the function calls per event of one run of each
side under :mod:`cProfile` (all calls, and those of Python functions: built-ins such as ``list.append`` or
``heapq.heappush`` cost far less than a Python frame), and the engine's SimPy events per message.
Run: ``.venv/bin/python bench/bench_engine.py``.
"""

from __future__ import annotations

import cProfile
import dataclasses
import pstats
import random
import statistics
import time
from collections.abc import Callable

import simpy
from timing import REPEATS, loadavg, spread

from sim.config.load import parse_scenario
from sim.engine.assemble import device_rates
from sim.engine.assemble import network as assemble_network
from sim.engine.simulate import simulate
from sim.pipeline.prepare import prepare
from sim.workload.types import Workload

FRAMES = 100
SCENARIO = {
    "name": "bench-engine",
    "model": {"name": "resnet18"},
    "inputs": {"dataset": "synthetic", "frames": 1, "interval_ms": 5},
    "devices": [{"name": f"d{i}", "gflops": 10} for i in range(8)],
    "network": {"topology": "star", "bandwidth_mbps": 100, "latency_ms": 0.5},
    "source": "d0",
    "sink": "d0",
}


def repeat_frames(one: Workload, frames: int) -> Workload:
    """``one`` (a single-frame workload) repeated for ``frames`` frames, task indices shifted per frame."""
    n = len(one.tasks)
    tasks, messages = [], []
    for f in range(frames):
        tasks += [dataclasses.replace(t, frame=f) for t in one.tasks]
        messages += [
            dataclasses.replace(
                m,
                frame=f,
                after=None if m.after is None else m.after + f * n,
                needed_by=tuple(t + f * n for t in m.needed_by),
            )
            for m in one.messages
        ]
    return dataclasses.replace(one, frames=frames, tasks=tuple(tasks), messages=tuple(messages))


def bare_simpy(timeouts: int) -> float:
    """Seconds a SimPy process takes to yield ``timeouts`` timeouts of 1."""

    def loop(env: simpy.Environment):
        for _ in range(timeouts):
            yield env.timeout(1)

    env = simpy.Environment()
    env.process(loop(env))
    start = time.process_time()
    env.run()
    return time.process_time() - start


def bare_simpy_concurrent(timeouts: int, processes: int, seed: int = 0) -> float:
    """Seconds ``processes`` SimPy processes take to yield ``timeouts`` timeouts in all (as evenly as they
    divide), of seeded random lengths in [0, 1): the heap then holds ``processes`` events, as the engine's
    does on average."""
    rng = random.Random(seed)
    delays = [rng.random() for _ in range(1024)]

    def loop(env: simpy.Environment, count: int, offset: int):
        for i in range(count):
            yield env.timeout(delays[(i + offset) % len(delays)])

    env = simpy.Environment()
    for p in range(processes):
        env.process(loop(env, timeouts // processes + (p < timeouts % processes), 7 * p))
    start = time.process_time()
    env.run()
    return time.process_time() - start


def mean_pending(run: Callable[[], object]) -> float:
    """The mean number of events in SimPy's queue (heap) when the next is processed, over ``run()``
    (measured by wrapping :meth:`simpy.Environment.step`; reads SimPy's private ``_queue``)."""
    sizes: list[int] = []
    original = simpy.Environment.step

    def step(env: simpy.Environment) -> None:
        sizes.append(len(env._queue))  # type: ignore[attr-defined]
        original(env)

    simpy.Environment.step = step  # type: ignore[method-assign]
    try:
        run()
    finally:
        simpy.Environment.step = original  # type: ignore[method-assign]
    return sum(sizes) / len(sizes)


def calls_per_event(run: Callable[[], object], events: int) -> tuple[float, float]:
    """Function calls per event of ``run()`` under :mod:`cProfile`: all calls, and those of Python functions
    (not built-ins)."""
    profile = cProfile.Profile()
    profile.runcall(run)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, ...)}
    python = sum(nc for (file, _, _), (_, nc, *_) in stats.items() if file != "~")
    total = sum(nc for (_, nc, *_) in stats.values())
    return total / events, python / events


def main() -> None:
    """Print the engine's events/s, the bare SimPy loop's events/s, and their ratio (medians of REPEATS)."""
    scenario = parse_scenario(SCENARIO)
    workload = repeat_frames(prepare(scenario).workload, FRAMES)
    rates, network = device_rates(scenario), assemble_network(scenario)
    arrivals = [f * scenario.setup.interval_s for f in range(FRAMES)]
    pending = mean_pending(lambda: simulate(workload, rates, network, arrivals))
    processes = max(1, round(pending))
    engine_s, bare_s, deep_s, ratios, deep_ratios = [], [], [], [], []
    for _ in range(REPEATS):
        start = time.process_time()
        timeline = simulate(workload, rates, network, arrivals)
        engine_s.append(time.process_time() - start)
        bare_s.append(bare_simpy(timeline.events))
        deep_s.append(bare_simpy_concurrent(timeline.events, processes))
        ratios.append(bare_s[-1] / engine_s[-1])  # = engine events/s over bare events/s
        deep_ratios.append(deep_s[-1] / engine_s[-1])
    events = timeline.events
    print(
        f"ResNet-18, 8 devices, star, {FRAMES} frames: {len(workload.tasks)} tasks, {len(workload.messages)} "
        f"messages, {events} events, {pending:.1f} pending on average; {loadavg()}"
    )
    print(f"{'engine':<12} CPU s {spread(engine_s, '.3f')}; {events / statistics.median(engine_s):12,.0f} events/s")
    print(f"{'bare SimPy':<12} CPU s {spread(bare_s, '.3f')}; {events / statistics.median(bare_s):12,.0f} events/s")
    print(
        f"bare SimPy, {processes} processes: CPU s {spread(deep_s, '.3f')}; "
        f"{events / statistics.median(deep_s):12,.0f} events/s"
    )
    print(f"ratio (engine / bare SimPy events per second): {spread(ratios, '.3f')}")
    print(f"ratio (engine / bare SimPy with {processes} processes, the same heap depth): {spread(deep_ratios, '.3f')}")
    print(f"simulated mean latency {sum(timeline.latency_s) / FRAMES * 1e3:.3f} ms per frame")
    engine_calls = calls_per_event(lambda: simulate(workload, rates, network, arrivals), events)
    bare_calls = calls_per_event(lambda: bare_simpy(events), events)
    for name, (total, python) in (("engine", engine_calls), ("bare SimPy", bare_calls)):
        print(f"{name:<12} function calls per event (cProfile): {total:.2f}, of Python functions {python:.2f}")
    print(f"engine SimPy events per message: {events / len(workload.messages):.3f}")


if __name__ == "__main__":
    main()
