"""dsim: a distributed CNN inference simulator.

``sim.run(scenario)`` runs a scenario (a path to a YAML file, a dict, or a :class:`sim.scenario.Scenario`)
and returns a :class:`sim.results.RunResult` with pandas tables; ``sim.sweep(scenario, grid)`` runs a
parameter sweep and returns its table (see :mod:`sim.sweeps`). Heavy modules load on first use, so
``import sim.engine`` does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "sweep", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from sim.runner import run

        return run
    if name == "sweep":
        from sim.sweeps import sweep

        return sweep
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
