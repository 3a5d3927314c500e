"""ResNet-50 at 3x224x224 over 64 devices: build the workload and simulate it, step by step.

Contiguous partition, synthetic input, one frame, 64 devices on a 100 Mbit/s star; once with
``transfer.format: dense`` and once with ``auto`` (every message sized in every format, the smallest
kept). Each step prints its wall time, its CPU time (``time.process_time``: the figure to read on a busy
machine) and the process's peak resident memory so far (``ru_maxrss``); each format runs in a fresh
process, so its peak is its own.
The steps are those of :func:`sim.pipeline.prepare.prepare` and :func:`evaluate`, called one by one.
Targets (an ImageNet-size model must fit a laptop): build + simulate < 60 s and < 4 GiB. Run: ``.venv/bin/python bench/bench_imagenet.py``
(``--format dense`` for one format only).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

from sim.config.load import parse_scenario
from sim.model import data, shards
from sim.model.flowgraph import FlowGraph
from sim.pipeline import prepare as pipeline
from sim.pipeline.evaluate import BuiltWorkload, evaluate
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
    steps: list[tuple[str, float, float, float]] = []
    start, start_cpu = time.perf_counter(), time.process_time()
    last, last_cpu = start, start_cpu

    def step(name: str) -> None:
        nonlocal last, last_cpu
        now, now_cpu = time.perf_counter(), time.process_time()
        steps.append((name, now - last, now_cpu - last_cpu, peak_gib()))
        last, last_cpu = now, now_cpu

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
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print(
        f"-- format {fmt}: {len(workload.tasks)} tasks, {len(workload.messages)} messages, {result.timeline.events} events"
    )
    for name, seconds, cpu, gib in steps:
        print(f"   {name:<26} {seconds:8.2f} s wall {cpu:8.2f} s CPU   peak RSS {gib:5.2f} GiB")
    print(f"   {'total':<26} {total:8.2f} s wall {total_cpu:8.2f} s CPU   peak RSS {peak_gib():5.2f} GiB")
    print(f"   simulated latency {result.summary['latency_s']:.4f} s", flush=True)


def main() -> None:
    if "--format" in sys.argv:
        run(sys.argv[sys.argv.index("--format") + 1])
        return
    for fmt in ("dense", "auto"):  # each in a fresh process: its own peak memory
        subprocess.run([sys.executable, __file__, "--format", fmt], check=True)


if __name__ == "__main__":
    main()
