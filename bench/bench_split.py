"""Planning a rows split: CPU seconds and peak memory of :func:`sim.workload.plan.plan_workload` for the
``spatial`` strategy (row bands, and fused 2x2 tiles) over 4 devices, for ResNet-18 at 32x32, 64x64 and
128x128 and VGG-11 at 32x32. The element planner keeps a bool mask per device and element of every stage
and stage input, so memory grows with ``devices * channels * H * W``. Times are CPU seconds of this process
(``time.process_time``); peak memory is numpy's and Python's allocations (``tracemalloc``).
Run: ``.venv/bin/python bench/bench_split.py``.
"""

from __future__ import annotations

import time
import tracemalloc

import torch

from sim.model.flowgraph import FlowGraph
from sim.model.partition import spatial_split
from sim.model.zoo import build_model
from sim.workload.plan import plan_workload

CASES = [("vgg11", 32), ("resnet18", 32), ("resnet18", 64), ("resnet18", 128)]
FORMS = {"rows": {}, "fused tiles": {"tiles": (2, 2), "fused": True}}


def main() -> None:
    print(f"{'model':<10} {'input':>7} {'form':<12} {'plan s (CPU)':>13} {'peak MB':>8} {'messages':>9}")
    for name, size in CASES:
        graph = FlowGraph.trace(build_model(name).eval(), torch.zeros(1, 3, size, size))
        for form, settings in FORMS.items():
            split = spatial_split(graph, 4, 0, **settings)
            tracemalloc.start()
            start = time.process_time()
            plan = plan_workload(graph, split, 4, 0, 0)
            seconds = time.process_time() - start
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            print(f"{name:<10} {size:>4}px {form:<12} {seconds:>13.2f} {peak:>8.1f} {len(plan.messages):>9}")


if __name__ == "__main__":
    main()
