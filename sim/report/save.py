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
    """Write a run's files into the folder ``out``, all or none.

    Every file is made in a staging folder first and moved in only when all succeeded
    (:func:`sim.fileio.staged_directory`), so a failure leaves ``out`` as it was; the files of
    :data:`RUN_FILES` that this run did not write (an earlier run's) are removed, other files of ``out``
    are left alone. The files are described
    in ``docs/reference/outputs.md``.

    Parameters
    ----------
    result
        A run, from :func:`sim.pipeline.run.run` or :func:`sim.testbed.execute.execute`.
    out
        The folder to write into (made if missing; files of the same names are replaced).

    Returns
    -------
    list of Path
        The files written, by name: ``compute.csv``, ``devices.csv``, ``hops.csv``, ``links.csv``,
        ``summary.json``, ``timeline.png``, ``trace.json``, ``traffic.csv``, ``traffic.png`` and
        ``transfers.csv``.

    Raises
    ------
    OSError
        ``out`` cannot be written (no permission, or an existing file where a folder is wanted; the
        ``dsim`` commands check this before any work and refuse in one line).

    Examples
    --------
    >>> import tempfile
    >>> import sim
    >>> tiny = {"name": "tiny", "model": {"name": "lenet5"}, "inputs": {"dataset": "synthetic"},
    ...         "devices": [{"name": "a", "gflops": 1}, {"name": "b", "gflops": 1}], "source": "a", "sink": "a"}
    >>> written = save_run(sim.run(tiny), Path(tempfile.mkdtemp()) / "tiny")
    >>> [p.name for p in written]  # doctest: +NORMALIZE_WHITESPACE
    ['compute.csv', 'devices.csv', 'hops.csv', 'links.csv', 'summary.json', 'timeline.png', 'trace.json',
     'traffic.csv', 'traffic.png', 'transfers.csv']
    """
    hops = hop_table(result.workload, result.timeline)
    tables = [("transfers.csv", result.transfers), ("compute.csv", result.compute), ("hops.csv", hops)]
    tables += [(n, t) for n, t in (("links.csv", result.links), ("devices.csv", result.devices)) if t is not None]
    critical = result.record.critical_path
    with staged_directory(out, owned=RUN_FILES) as stage:
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
