"""ResNet-50 at 3x224x224 over 64 devices: build the workload and simulate it, step by step.

Contiguous partition, synthetic input, one frame, 64 devices on a 100 Mbit/s star; once with
``transfer.format: dense`` and once with ``auto`` (every message sized in every format, the smallest
kept). Each step prints its wall time and the process's peak resident memory so far (``ru_maxrss``).
The steps are those of :func:`sim.experiment.pipeline.prepare` and :func:`evaluate`, called one by one.
Targets (issue 13): build + simulate < 60 s and < 4 GiB. Run: ``.venv/bin/python bench/bench_imagenet.py``
(``--format dense`` for one format only).
"""

from __future__ import annotations

import resource
import sys
import time

from sim.config.load import parse_scenario
from sim.experiment import pipeline
from sim.experiment.evaluation import BuiltWorkload, evaluate
from sim.model import data, shards
from sim.model.flowgraph import FlowGraph
from sim.workload import wire
from sim.workload.sizing import build_workload


def scenario_of(fmt: str) -> dict:
    return {
        "name": f"resnet50-64-{fmt}",
        "model": {"name": "resnet50", "num_classes": 1000},
        "inputs": {"dataset": "synthetic", "frames": 1},
        "devices": [{"name": f"d{i}", "gflops": 50} for i in range(64)],
        "network": {"topology": "star", "bandwidth_mbps": 100, "latency_ms": 0.5},
        "source": "d0",
        "sink": "d0",
        "partition": {"strategy": "contiguous"},
        "transfer": {"format": fmt},
    }


def peak_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run(fmt: str) -> None:
    sc = parse_scenario(scenario_of(fmt))
    steps: list[tuple[str, float, float]] = []
    start = last = time.perf_counter()

    def step(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        steps.append((name, now - last, peak_gib()))
        last = now

    shape = pipeline.input_shape(sc.model)
    batches = data.frame_batches("synthetic", shape, 1, 1, sc.seed, None)
    model = pipeline.load_model(sc.model, sc.seed)
    step("model")
    graph = FlowGraph.trace(model, batches[0].images)
    step("trace (fx + activations)")
    parts = pipeline.choose_partition(sc, graph)
    plan = pipeline.make_plan(sc, graph, parts)
    step("partition + plan")
    frames, partials = shards.frame_values(graph, plan, [b.images for b in batches])
    step("frame values (shards)")
    spec = wire.WireSpec(sc.transfer.dtype, sc.transfer.index_bits)
    workload = build_workload(plan, frames, sc.device_names, spec, fmt, batch=1, partials=partials)
    step("sizing (build_workload)")
    result = evaluate(sc, BuiltWorkload(workload))
    step("simulate + analyse")
    total = time.perf_counter() - start
    print(
        f"-- format {fmt}: {len(workload.tasks)} tasks, {len(workload.messages)} messages, {result.timeline.events} events"
    )
    for name, seconds, gib in steps:
        print(f"   {name:<26} {seconds:8.2f} s   peak RSS {gib:5.2f} GiB")
    print(
        f"   {'total':<26} {total:8.2f} s   peak RSS {peak_gib():5.2f} GiB   latency {result.summary['latency_s']:.4f} s"
    )


def main() -> None:
    formats = sys.argv[sys.argv.index("--format") + 1 :][:1] if "--format" in sys.argv else ["dense", "auto"]
    for fmt in formats:
        run(fmt)


if __name__ == "__main__":
    main()
