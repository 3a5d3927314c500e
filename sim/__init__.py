"""dsim: a distributed CNN inference simulator.

The package is layered as the pipeline runs; each layer imports only the layers listed before it:

* :mod:`sim.config`: the scenario file (schema, loading, one-line errors, sweep overrides); no torch;
* :mod:`sim.workload`: the contract the engine reads (tasks, messages, wire formats); numpy only;
* :mod:`sim.model`: the torch side (zoo, data, training, graph, partition, layer shards);
* :mod:`sim.engine`: devices, network, the scenario's engine objects and the SimPy event loop; no torch;
* :mod:`sim.prune`: the pruner (structured and unstructured masks, ADMM / CaP, surgery);
* :mod:`sim.analysis`: pure functions from a workload and a timeline to tables and summaries;
* :mod:`sim.report`: files, figures, traces and terminal text;
* :mod:`sim.pipeline`: one run (prepare, calibrate, evaluate, build cache, describe);
* :mod:`sim.study`: many runs (sweeps, comparisons); :mod:`sim.testbed`: real runs and their validation;
* :mod:`sim.cli`: the ``dsim`` command.

``sim.run(scenario)`` runs a scenario (a path to a YAML file, a dict, or a
:class:`sim.config.schema.Scenario`) and returns a :class:`sim.analysis.result.RunResult` with pandas
tables; ``sim.sweep(scenario, grid)`` runs a parameter sweep and returns its table
(:mod:`sim.study.sweep`); ``sim.load`` validates a scenario; ``sim.save_run`` writes a run's files.
``run`` and ``sweep`` load torch, ``save_run`` matplotlib, ``load`` pydantic, on first use, so ``import sim``
(and ``dsim --help``) stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load", "run", "save_run", "sweep"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from sim.config.load import load

        return load
    if name == "run":
        from sim.pipeline.run import run

        return run
    if name == "sweep":
        from sim.study.sweep import sweep

        return sweep
    if name == "save_run":
        from sim.report.save import save_run

        return save_run
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
