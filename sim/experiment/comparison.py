"""``dsim compare``: run scenario files side by side, one row each (:data:`COMPARISON_COLUMNS`).

Example::

    >>> compare(["scenarios/quickstart.yaml", "scenarios/bandwidth.yaml"], out="results/cmp")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sim.analysis.critical_path import BREAKDOWN_COLUMNS
from sim.config.load import load
from sim.errors import UserError
from sim.experiment.builds import CacheReport
from sim.experiment.store import Store
from sim.experiment.sweeps import run_points
from sim.fileio import write_csv
from sim.report.plots import plot_breakdown

COMPARISON_COLUMNS = (
    "scenario",
    "file",
    "accuracy",
    "flops_total",
    "bytes_total",
    "dense_bytes",
    "packed_bytes",
    "messages",
    "latency_s",
    *BREAKDOWN_COLUMNS,
    "throughput_fps",
)


def compare(
    scenarios: Sequence[str | Path],
    out: str | Path | None = None,
    jobs: int | None = None,
    progress: bool = True,
    store: Store | None = None,
    report: CacheReport | None = None,
) -> pd.DataFrame:
    """Run each scenario file and return one row per scenario (:data:`COMPARISON_COLUMNS`).

        ``dense_bytes`` is what every message would cost sent dense, ``packed_bytes`` what it costs with
        ``auto`` (the smallest format per message). With ``out``, writes ``comparison.csv`` and the stacked
        latency breakdown ``breakdown.png`` there. Every file is validated before any work starts; a scenario
        that cannot be built stops the comparison (:class:`UserError` naming its file). ``store`` is the build
    cache (none by default); ``report`` counts what came from it.

        Example::

            >>> compare(["scenarios/quickstart.yaml", "scenarios/bandwidth.yaml"], out="results/cmp")  # doctest: +SKIP
    """
    parsed = [load(path) for path in scenarios]
    rows = run_points(parsed, jobs=jobs, progress=progress, store=store, report=report)
    for path, row in zip(scenarios, rows):
        if "error" in row:
            raise UserError(f"{path}: {row['error']}")
    table = pd.DataFrame(rows)
    if table["accuracy"].isna().all():
        table = table.drop(columns="accuracy")
    table.insert(0, "file", [str(p) for p in scenarios])
    table.insert(0, "scenario", [sc.name for sc in parsed])
    table = table.rename(columns={"bytes_dense": "dense_bytes", "bytes_auto": "packed_bytes"})
    table = table[[c for c in COMPARISON_COLUMNS if c in table.columns]]
    if out is not None:
        write_csv(table, Path(out) / "comparison.csv")
        plot_breakdown(table, Path(out) / "breakdown.png")
    return table
