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
    "elements_hops",
    "elements_hops_max_link",
    "kept_kernels",
    "messages",
    "latency_s",
    *BREAKDOWN_COLUMNS,
    "throughput_fps",
)


def kept_kernel_table(table: pd.DataFrame) -> pd.DataFrame | None:
    """One row per scenario and one column per conv: the kept-kernel fractions (None if nothing was pruned)."""
    if "kept_kernels_per_conv" not in table.columns:
        return None
    rows = [value if isinstance(value, dict) else {} for value in table["kept_kernels_per_conv"]]
    frame = pd.DataFrame(rows)
    frame.insert(0, "scenario", table["scenario"].to_numpy())
    return frame


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
    latency breakdown ``breakdown.png`` there, and for pruned scenarios ``kept_kernels.csv`` (the fraction
    of each conv's original k x k kernels still non-zero, one row per scenario). Every file is validated before any work starts; a scenario
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
    for optional in ("accuracy", "kept_kernels"):
        if table[optional].isna().all():
            table = table.drop(columns=optional)
    table.insert(0, "file", [str(p) for p in scenarios])
    table.insert(0, "scenario", [sc.name for sc in parsed])
    table = table.rename(columns={"bytes_dense": "dense_bytes", "bytes_auto": "packed_bytes"})
    per_conv = kept_kernel_table(table)
    table = table[[c for c in COMPARISON_COLUMNS if c in table.columns]]
    if out is not None:
        write_csv(table, Path(out) / "comparison.csv")
        if per_conv is not None:
            write_csv(per_conv, Path(out) / "kept_kernels.csv")
        plot_breakdown(table, Path(out) / "breakdown.png")
    return table
