"""Saving a run: every result file written into one folder, all or nothing.

Example::

    >>> import sim
    >>> save_run(sim.run("scenarios/quickstart.yaml"), "results/quickstart")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from sim.analysis.result import RunResult
from sim.analysis.tables import hop_table, traffic_matrix
from sim.fileio import staged_directory, write_csv
from sim.report.plots import plot_timeline, plot_traffic
from sim.report.trace import chrome_trace


def save_run(result: RunResult, out: str | Path) -> list[Path]:
    """Write transfers.csv, compute.csv, hops.csv, traffic.csv, links.csv, devices.csv, summary.json,
    trace.json, timeline.png and traffic.png into ``out``; all are made before any replaces a file of
    ``out`` (:func:`sim.fileio.staged_directory`)."""
    hops = hop_table(result.workload, result.timeline)
    tables = [("transfers.csv", result.transfers), ("compute.csv", result.compute), ("hops.csv", hops)]
    tables += [(n, t) for n, t in (("links.csv", result.links), ("devices.csv", result.devices)) if t is not None]
    critical = result.record.critical_path
    with staged_directory(out) as stage:
        for name, frame in tables:
            write_csv(frame, stage / name)
        traffic_matrix(result.transfers, list(result.workload.devices)).to_csv(stage / "traffic.csv")
        (stage / "summary.json").write_text(json.dumps(result.record.to_dict(), indent=2) + "\n", encoding="utf-8")
        chrome = chrome_trace(result.workload, result.timeline, critical)
        (stage / "trace.json").write_text(json.dumps(chrome) + "\n", encoding="utf-8")
        plot_timeline(
            result.transfers,
            result.compute,
            stage / "timeline.png",
            title=result.record.name,
            hops=hops,
            critical=critical,
            devices=list(result.workload.devices),
        )
        plot_traffic(
            result.transfers, stage / "traffic.png", devices=list(result.workload.devices), title=result.record.name
        )
        names = sorted(p.name for p in stage.iterdir())
    return [Path(out) / name for name in names]
