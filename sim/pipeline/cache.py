"""Built workloads through the build cache (:mod:`sim.pipeline.store`): read one back, or build it with
:func:`sim.pipeline.prepare.prepare` (torch) and store it.

Keys: :func:`sim.pipeline.store.workload_digest`. Reading a cached workload does not import torch.

Example::

    >>> from sim.config.load import load
    >>> b = build(load("scenarios/quickstart.yaml"), Store(default_root()))  # doctest: +SKIP
    >>> report = CacheReport(default_root()); report.add(b); report.line()  # doctest: +SKIP
    '1 of 1 workload from the cache (/root/.cache/dsim)'
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sim.config.schema import Scenario
from sim.pipeline.evaluate import BuiltWorkload
from sim.pipeline.store import Store, cacheable, workload_digest

if TYPE_CHECKING:
    from sim.pipeline.prepare import Prepared


@dataclass(frozen=True)
class Build:
    """A built workload and where it came from: ``cached`` (read from the cache) or built; when built,
    ``weights`` says whether trained weights were ``"cached"``, ``"trained"``, or ``""`` (no training)."""

    built: BuiltWorkload
    cached: bool
    weights: str = ""


def build(
    scenario: Scenario, store: Store | None = None, threads: int | None = None, prepared: Prepared | None = None
) -> Build:
    """The scenario's built workload, from ``store`` when it holds it, else built (and stored).

    ``threads`` caps torch's threads when building (sweep workers use 1 each). ``prepared`` is the
    scenario's workload already prepared (by calibration,
    :func:`sim.pipeline.calibrate.calibrated_with_workload`): used (and stored) instead of building it.
    """
    key = workload_digest(scenario) if store is not None and cacheable(scenario) else None
    if prepared is not None:
        if store is not None and key is not None:
            store.put("workload", key, pickle.dumps(prepared.built, protocol=pickle.HIGHEST_PROTOCOL))
        return Build(prepared.built, cached=False, weights=prepared.weights)
    if store is not None and key is not None:
        data = store.get("workload", key)
        if data is not None:
            try:
                return Build(pickle.loads(data), cached=True)
            except Exception:  # a damaged or foreign entry (any unpickling error): build it again
                pass
    from sim.pipeline import prepare as pipeline  # torch: only when the workload is not in the cache

    if threads is not None:
        import torch  # torch: only when building; pipeline has imported it already

        torch.set_num_threads(threads)
    prepared = pipeline.prepare(scenario, store=store if cacheable(scenario) else None)
    if store is not None and key is not None:
        store.put("workload", key, pickle.dumps(prepared.built, protocol=pickle.HIGHEST_PROTOCOL))
    return Build(prepared.built, cached=False, weights=prepared.weights)


@dataclass
class CacheReport:
    """What came from the build cache in one command: counts of workloads and trained weights."""

    root: Path | None = None
    workloads_cached: int = 0
    workloads_built: int = 0
    weights_cached: int = 0
    weights_trained: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, b: Build) -> None:
        """Count one build."""
        if b.cached:
            self.workloads_cached += 1
        else:
            self.workloads_built += 1
        self.weights_cached += b.weights == "cached"
        self.weights_trained += b.weights == "trained"

    def line(self) -> str:
        """One line for the terminal, e.g. ``2 of 2 workloads from the cache (/root/.cache/dsim)``."""
        if self.root is None:
            return "off (--no-cache)"
        total = self.workloads_cached + self.workloads_built
        text = f"{self.workloads_cached} of {total} workload{'s' if total != 1 else ''} from the cache"
        if self.weights_cached or self.weights_trained:
            text += f"; trained weights: {self.weights_cached} from the cache, {self.weights_trained} trained"
        return f"{text} ({self.root})"
