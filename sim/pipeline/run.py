"""One run end to end: calibrate the devices, build the workload (or read it from the build cache), evaluate
it on the engine.

Example::

    >>> import sim
    >>> result = sim.run("scenarios/quickstart.yaml")  # doctest: +SKIP
    >>> round(result.record.latency_s * 1e3, 3)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.analysis.result import RunResult
from sim.config.load import load
from sim.config.schema import Scenario
from sim.pipeline.cache import CacheReport, build
from sim.pipeline.calibrate import calibrated_with_workload
from sim.pipeline.evaluate import baseline_scenario, evaluate
from sim.pipeline.store import Store

__all__ = ["run"]


def run(
    scenario: Scenario | str | Path | dict[str, Any],
    store: Store | None = None,
    report: CacheReport | None = None,
) -> RunResult:
    """Run a scenario end to end and return its tables; nothing is written (see
    :func:`sim.report.save.save_run`).

    Parameters
    ----------
    scenario
        A path to a YAML file, a dict, or a loaded :class:`~sim.config.schema.Scenario`.
    store
        The build cache (:class:`~sim.pipeline.store.Store`); ``None`` builds everything (torch).
        Torch is imported only for what the cache does not hold.
    report
        When given, counts what came from the cache (``dsim run`` prints its line).

    Returns
    -------
    RunResult
        The run's ``transfers``, ``compute``, ``links`` and ``devices`` tables, its typed summary ``record``
        (:class:`~sim.analysis.summary.RunSummary`) and ``summary``, that record as ``summary.json`` holds it.

    Examples
    --------
    >>> import sim
    >>> result = sim.run("scenarios/quickstart.yaml")  # doctest: +SKIP
    >>> sorted(result.summary)[:3]  # doctest: +SKIP
    ['bytes_total', 'compute_s_total', ...]
    """
    sc, prepared = calibrated_with_workload(load(scenario))  # calibrating may prepare the workload already
    report = report if report is not None else CacheReport(None if store is None else store.root)
    main = build(sc, store, prepared=prepared)
    report.add(main)
    baseline = None
    if sc.baseline == "single":
        single = build(baseline_scenario(sc), store)
        report.add(single)
        baseline = single.built
    return evaluate(sc, main.built, baseline)
