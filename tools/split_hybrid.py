"""Write a hybrid partition file (docs/design.md §3b): the first ``--rows`` convs split by rows (``spatial``, one band
per device, fused), every later conv by filters (``contiguous``), the linear layers whole on the sink.

Example (the study's files, docs/split.md)::

    python tools/split_hybrid.py scenarios/split/vgg11-hybrid.yaml partitions/split/vgg11-hybrid.json --rows 3
    python tools/split_hybrid.py scenarios/split/resnet18-hybrid.yaml partitions/split/resnet18-hybrid.json --rows 5
"""

from __future__ import annotations

import argparse
import sys

from sim.config.load import load
from sim.model.partition import contiguous_split, save_partition, spatial_split
from sim.pipeline.prepare import trace_model
from sim.workload.types import Split


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, required=True, help="how many convs, from the first, go by rows")
    args = parser.parse_args(argv)
    scenario = load(args.scenario)
    graph = trace_model(scenario)
    names = scenario.device_names
    spatial = spatial_split(graph, len(names), names.index(scenario.sink), fused=True)
    convs = [l.name for l in graph.layers() if l.op == "conv"]
    by_rows = set(convs[: args.rows])
    filters = {
        l.name: spatial.filters[l.name]
        if l.name in by_rows or l.op == "linear"
        else contiguous_split(l.out_channels, len(names))
        for l in graph.layers()
    }
    rows = {name: spatial.rows[name] for name in by_rows}
    save_partition(args.out, scenario.model.name, names, Split(filters, rows, spatial.whole, fused=True))
    print(f"wrote {args.out}: {len(by_rows)} convs by rows (fused), {len(convs) - len(by_rows)} by filters")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
