"""The split-dimension study of docs/split.md: every ``scenarios/split/*.yaml`` (a model and a form, named
``<model>-<form>``) swept over link bandwidth (5 to 100 Mbit/s) on a mesh and a star, one frame at a time.

Writes to ``plots/split-dims/`` (or ``--out``): ``sweep.csv`` (every point; ``variant`` is the form),
``<model>-<topology>.png`` (frame latency against bandwidth, one line per form, crossovers marked) and
``ownership-<scenario>.png`` (who computes what per layer, :func:`sim.report.plots.plot_ownership`).

Example::

    python tools/split_study.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from sim.config.load import load
from sim.fileio import write_csv
from sim.pipeline.describe import ownership_table
from sim.pipeline.prepare import prepare
from sim.report.plots import plot_latency_vs_bandwidth, plot_ownership
from sim.study.sweep import sweep

ROOT = Path(__file__).resolve().parents[1]
BANDWIDTHS_MBPS = [5, 10, 20, 50, 100]
TOPOLOGIES = ["mesh", "star"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "plots" / "split-dims"))
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    out = Path(args.out)
    grid = {"network.topology": TOPOLOGIES, "network.bandwidth_mbps": BANDWIDTHS_MBPS, "inputs.frames": [1]}
    tables = []
    for path in sorted((ROOT / "scenarios" / "split").glob("*.yaml")):
        scenario = load(path)
        model, form = scenario.name.split("-", 1)
        table = sweep(path, grid, jobs=args.jobs, progress=False)
        tables.append(table.assign(model=model, variant=form))
        plot_ownership(ownership_table(prepare(scenario)), out / f"ownership-{scenario.name}.png", title=scenario.name)
        print(f"swept {scenario.name}", flush=True)
    study = pd.concat(tables, ignore_index=True)
    write_csv(study, out / "sweep.csv")
    for (model, topology), rows in study.groupby(["model", "network.topology"], sort=False):
        lines = rows.drop(columns=["model", "network.topology", "inputs.frames"])
        title = f"{model}, 4 devices, {topology}"
        plot_latency_vs_bandwidth(lines, out / f"{model}-{topology}.png", title=title)
    print(f"written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
