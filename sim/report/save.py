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

RUN_FILES = frozenset(
    {
        *("transfers.csv", "compute.csv", "hops.csv", "traffic.csv", "links.csv", "devices.csv"),
        *("summary.json", "trace.json", "timeline.png", "traffic.png"),
    }
)
"""Every file :func:`save_run` may write (a measured run has no ``links.csv`` or ``devices.csv``)."""


def save_run(result: RunResult, out: str | Path) -> list[Path]:
    """Write transfers.csv, compute.csv, hops.csv, traffic.csv, links.csv, devices.csv, summary.json,
    trace.json, timeline.png and traffic.png into ``out``; all are made before any replaces a file of
    ``out`` (:func:`sim.fileio.staged_directory`), and those of :data:`RUN_FILES` that this run did not
    write (an earlier run's) are removed. Other files of ``out`` are left alone."""
    hops = hop_table(result.workload, result.timeline)
    tables = [("transfers.csv", result.transfers), ("compute.csv", result.compute), ("hops.csv", hops)]
    tables += [(n, t) for n, t in (("links.csv", result.links), ("devices.csv", result.devices)) if t is not None]
    critical = result.summary.get("critical_path")
    with staged_directory(out, owned=RUN_FILES) as stage:
        for name, frame in tables:
            write_csv(frame, stage / name)
        traffic_matrix(result.transfers, list(result.workload.devices)).to_csv(stage / "traffic.csv")
        (stage / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
        chrome = chrome_trace(result.workload, result.timeline, critical)
        (stage / "trace.json").write_text(json.dumps(chrome) + "\n", encoding="utf-8")
        plot_timeline(
            result.transfers,
            result.compute,
            stage / "timeline.png",
            title=result.summary["name"],
            hops=hops,
            critical=critical,
            devices=list(result.workload.devices),
        )
        plot_traffic(
            result.transfers, stage / "traffic.png", devices=list(result.workload.devices), title=result.summary["name"]
        )
        names = sorted(p.name for p in stage.iterdir())
    return [Path(out) / name for name in names]
