"""``dsim compare``: run scenario files side by side, one row each (:data:`COMPARISON_COLUMNS`); a run folder
(``dsim run --out`` or ``dsim execute --out``) given instead of a file contributes its saved summary.

Example::

    >>> compare(["scenarios/quickstart.yaml", "scenarios/bandwidth.yaml"], out="results/cmp")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sim.analysis.critical_path import BREAKDOWN_COLUMNS
from sim.analysis.curves import BASELINE_COLUMNS
from sim.config.load import load
from sim.errors import UserError
from sim.fileio import write_csv
from sim.pipeline.cache import CacheReport
from sim.pipeline.store import Store
from sim.report.plots import plot_breakdown
from sim.report.redraw import write_pareto
from sim.study.sweep import check_jobs, run_points

PER_FRAME = {  # total column -> its per-frame column (the total divided by the frames run)
    "flops_total": "flops_per_frame",
    "redundant_flops": "redundant_flops_per_frame",
    "bytes_total": "bytes_per_frame",
    "dense_bytes_total": "dense_bytes_per_frame",
    "packed_bytes_total": "packed_bytes_per_frame",
    "elements_hops": "elements_hops_per_frame",
    "elements_hops_max_link": "elements_hops_max_link_per_frame",
}
COMPARISON_COLUMNS = (
    "scenario",
    "file",
    "frames",
    "accuracy",
    *(c for pair in PER_FRAME.items() for c in pair),
    "kept_kernels",
    "weights_bytes_max",
    "messages",
    "latency_s",
    *BREAKDOWN_COLUMNS,
    "service_latency_s",
    "throughput_fps",
    "keeps_up",
    *BASELINE_COLUMNS,
)


def saved_row(directory: Path) -> dict[str, Any]:
    """The comparison row of a saved run folder (``dsim run`` or ``dsim execute``: its ``summary.json``);
    a measured run is named ``<name> (measured)``. The latency breakdown is the saved mean over frames
    (``latency_breakdown``), else that of the slowest frame's critical path."""
    path = directory / "summary.json"
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{directory}: not a scenario file nor a run folder with a readable summary.json") from None
    crit = s.get("critical_path", {})
    parts = s.get("latency_breakdown") or dict(
        zip(BREAKDOWN_COLUMNS, (crit.get("compute_s"), crit.get("transfer_s"), crit.get("wait_s")))
    )
    by_format = s.get("bytes_by_format", {})
    keys = ("frames", "accuracy", "flops_total", "bytes_total", "messages", "latency_s", "throughput_fps", "keeps_up")
    row = {k: s.get(k) for k in keys}
    row.update(parts, bytes_dense=by_format.get("dense"), bytes_auto=by_format.get("auto"))
    measured = s.get("execution", {}).get("measured", False)
    return {"scenario": f"{s.get('name', directory.name)}{' (measured)' if measured else ''}", **row}


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
    """Run each scenario file (or read each run folder) and return one row per scenario.

    Points that share a built workload share one build, as in :func:`sim.study.sweep.sweep`. Every file is
    validated before any work starts.

    Parameters
    ----------
    scenarios
        Scenario YAML files, or folders written by ``dsim run`` or ``dsim execute`` (read, not re-run).
    out
        A folder to write ``comparison.csv``, the stacked latency breakdown ``breakdown.png``, the Pareto
        front (``pareto.csv``, ``pareto.png``) and, for pruned scenarios, ``kept_kernels.csv`` (the
        fraction of each conv's original k x k kernels still non-zero, one row per scenario) into.
    jobs
        Worker processes (default: the number of cores).
    progress
        Log a line per finished build and scenario, and a bar on a terminal.
    store
        The build cache (:class:`~sim.pipeline.store.Store`); ``None`` builds everything.
    report
        When given, counts what came from the cache.

    Returns
    -------
    pandas.DataFrame
        One row per scenario, with the columns of :data:`COMPARISON_COLUMNS`. ``*_total`` columns (and
        ``elements_hops``, ``redundant_flops``: FLOPs computed twice by fused tiles) sum over every frame
        run, ``weights_bytes_max`` is the conv and linear weights the fullest device holds, ``*_per_frame``
        divide them by ``frames``.
        ``dense_bytes_total`` is what every message would cost sent dense, ``packed_bytes_total`` what it
        costs with ``auto`` (the smallest format per message). ``service_latency_s`` is a frame's latency
        alone in the system, ``keeps_up`` whether the split keeps up with the frame arrivals (empty for
        one frame); with ``baseline: single`` come the single device's latencies, throughput and the three
        speed-ups (:func:`sim.pipeline.evaluate.speedups`), empty for a scenario without it.

    Raises
    ------
    UserError
        A file that is not a valid scenario, or a scenario that cannot be built (naming its file).

    Examples
    --------
    >>> import tempfile
    >>> import yaml
    >>> tiny = {"name": "tiny", "model": {"name": "lenet5"}, "inputs": {"dataset": "synthetic"},
    ...         "devices": [{"name": "a", "gflops": 1}, {"name": "b", "gflops": 1}], "source": "a", "sink": "a"}
    >>> folder = Path(tempfile.mkdtemp())
    >>> for rate in (1, 100):
    ...     tiny.update(name=f"tiny-{rate}mbps", network={"bandwidth_mbps": rate})
    ...     _ = (folder / f"{rate}.yaml").write_text(yaml.safe_dump(tiny))
    >>> table = compare([folder / "1.yaml", folder / "100.yaml"], jobs=1, progress=False)
    >>> table["scenario"].tolist(), table["bytes_total"].tolist()
    (['tiny-1mbps', 'tiny-100mbps'], [11236, 11236])
    """
    check_jobs(jobs)
    saved = {i: saved_row(Path(p)) for i, p in enumerate(scenarios) if Path(p).is_dir()}
    files = [i for i in range(len(scenarios)) if i not in saved]
    parsed = {i: load(scenarios[i]) for i in files}
    for i, row in zip(
        files,
        run_points(list(parsed.values()), jobs=jobs, progress=progress, what="scenario", store=store, report=report),
    ):
        if "error" in row:
            raise UserError(f"{scenarios[i]}: {row['error']}")
        saved[i] = {"scenario": parsed[i].name, **row}
    rows = [saved[i] for i in range(len(scenarios))]
    names = [row.pop("scenario") for row in rows]
    table = pd.DataFrame(rows)
    optional = ("accuracy", "kept_kernels", "redundant_flops", "weights_bytes_max", *BASELINE_COLUMNS)
    empty = [c for c in optional if c in table.columns and table[c].isna().all()]
    table = table.drop(columns=empty)
    table.insert(0, "file", [str(p) for p in scenarios])
    table.insert(0, "scenario", names)
    table = table.rename(columns={"bytes_dense": "dense_bytes_total", "bytes_auto": "packed_bytes_total"})
    for total, per_frame in PER_FRAME.items():
        if total in table.columns:
            table[per_frame] = table[total] / table["frames"]
    per_conv = kept_kernel_table(table)
    table = table[[c for c in COMPARISON_COLUMNS if c in table.columns]]
    if out is not None:
        write_csv(table, Path(out) / "comparison.csv")
        if per_conv is not None:
            write_csv(per_conv, Path(out) / "kept_kernels.csv")
        title = " vs ".join(table["scenario"]) if len(table) <= 3 else f"{len(table)} scenarios"
        plot_breakdown(table, Path(out) / "breakdown.png", title=title)
        write_pareto(table, list(table["scenario"]), out, title=title)
    return table
